-- Each org's device epoch: a counter that moves whenever anything a device request decides with
-- changes (a device's revocation or tags, a token family's revocation, an explicit group's
-- members). The gateway keeps what it read about a device while the org's epoch stands, and
-- reads the epoch itself at most every few seconds, so a fleet's polls read D1 only after a
-- change (see `identity::epoch_cache`). Triggers move it, in the transaction of the change, so
-- no writer, present or future, can forget to.
CREATE TABLE fl_device_epochs (
  org_id TEXT PRIMARY KEY REFERENCES orgs(id),
  epoch  INTEGER NOT NULL
);

CREATE TRIGGER fl_device_epochs_on_device_change
AFTER UPDATE OF tags, revoked_at_ms ON fl_devices
WHEN OLD.tags IS NOT NEW.tags OR OLD.revoked_at_ms IS NOT NEW.revoked_at_ms
BEGIN
  INSERT OR IGNORE INTO fl_device_epochs (org_id, epoch) VALUES (NEW.org_id, 0);
  UPDATE fl_device_epochs SET epoch = epoch + 1 WHERE org_id = NEW.org_id;
END;

CREATE TRIGGER fl_device_epochs_on_device_delete
AFTER DELETE ON fl_devices
BEGIN
  INSERT OR IGNORE INTO fl_device_epochs (org_id, epoch) VALUES (OLD.org_id, 0);
  UPDATE fl_device_epochs SET epoch = epoch + 1 WHERE org_id = OLD.org_id;
END;

CREATE TRIGGER fl_device_epochs_on_family_revoked
AFTER UPDATE OF revoked_at_ms ON fl_device_families
WHEN OLD.revoked_at_ms IS NOT NEW.revoked_at_ms
BEGIN
  INSERT OR IGNORE INTO fl_device_epochs (org_id, epoch) VALUES (NEW.org_id, 0);
  UPDATE fl_device_epochs SET epoch = epoch + 1 WHERE org_id = NEW.org_id;
END;

CREATE TRIGGER fl_device_epochs_on_member_added
AFTER INSERT ON fl_device_group_members
BEGIN
  INSERT OR IGNORE INTO fl_device_epochs (org_id, epoch)
    SELECT org_id, 0 FROM fl_devices WHERE id = NEW.device_id;
  UPDATE fl_device_epochs SET epoch = epoch + 1
    WHERE org_id = (SELECT org_id FROM fl_devices WHERE id = NEW.device_id);
END;

CREATE TRIGGER fl_device_epochs_on_member_removed
AFTER DELETE ON fl_device_group_members
BEGIN
  INSERT OR IGNORE INTO fl_device_epochs (org_id, epoch)
    SELECT org_id, 0 FROM fl_devices WHERE id = OLD.device_id;
  UPDATE fl_device_epochs SET epoch = epoch + 1
    WHERE org_id = (SELECT org_id FROM fl_devices WHERE id = OLD.device_id);
END;
