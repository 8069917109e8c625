-- A device's own group memberships are read with its revocation check on every device request
-- (the device control routes match them against the org's cached rollouts), so they need an
-- index by device.
CREATE INDEX fl_device_group_members_by_device ON fl_device_group_members (device_id);
