-- Per-org audit retention, and the signed anchor that keeps a pruned chain verifiable.
--
-- Each org keeps its audit events audit_retention_days (30..=3650, checked by the API; 365 by
-- default); the cron deletes older events as a prefix of the chain, after signing an anchor: a
-- checkpoint at the prefix's size, whose head hash is the last pruned event's hash. Verification
-- starts at the anchor instead of the genesis.
ALTER TABLE orgs ADD COLUMN audit_retention_days INTEGER NOT NULL DEFAULT 365;

-- The newest anchor of each chain (one row, replaced by each later prune in the same batch that
-- deletes the events it covers). Only the signed note is trusted; size and head_hash are for
-- reading the table.
CREATE TABLE audit_anchors (
  chain         TEXT PRIMARY KEY,
  size          INTEGER NOT NULL,
  head_hash     TEXT NOT NULL,
  note          TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
);
