-- A device's own group memberships are read with its revocation check on every device request
-- (the device control routes match them against the org's cached rollouts), so they need an
-- index by device. (`IF NOT EXISTS`: a development database may have it from this file's
-- first number, 0009.)
CREATE INDEX IF NOT EXISTS fl_device_group_members_by_device ON fl_device_group_members (device_id);
