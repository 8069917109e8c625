-- A device's history (edgeplane_core::fl::history): its heartbeats per hour, and how each ended
-- round went for it. Both are bookkeeping, not audited.

-- One row per device and hour: how many heartbeats arrived and the last one's signals, written
-- in the heartbeat's own batch. The cron deletes hours older than 7 days.
CREATE TABLE fl_heartbeat_hours (
  org_id         TEXT NOT NULL REFERENCES orgs(id),
  device_id      TEXT NOT NULL REFERENCES fl_devices(id),
  hour_ms        INTEGER NOT NULL,
  count          INTEGER NOT NULL,
  last_heartbeat TEXT NOT NULL,
  last_at_ms     INTEGER NOT NULL,
  PRIMARY KEY (device_id, hour_ms)
);
CREATE INDEX fl_heartbeat_hours_by_hour ON fl_heartbeat_hours (hour_ms);

-- One row per device and ended round, written by the round's coordinator in the same guarded
-- batch as the round's end (so once). Kept as long as the round.
CREATE TABLE fl_participations (
  org_id           TEXT NOT NULL REFERENCES orgs(id),
  round_id         TEXT NOT NULL REFERENCES fl_rounds(id),
  device_id        TEXT NOT NULL REFERENCES fl_devices(id),
  participation_id TEXT NOT NULL,
  outcome          TEXT NOT NULL CHECK (outcome IN ('accepted', 'rejected', 'dropped', 'revoked')),
  joined_at_ms     INTEGER NOT NULL,
  accepted_at_ms   INTEGER,
  rejected_updates INTEGER NOT NULL,
  reject_reason    TEXT,
  reject_message   TEXT,
  rejected_at_ms   INTEGER,
  PRIMARY KEY (round_id, device_id)
);
CREATE INDEX fl_participations_by_device ON fl_participations (org_id, device_id, round_id);
