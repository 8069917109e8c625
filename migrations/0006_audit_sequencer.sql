-- The audit log without append contention, and with signed checkpoints.
--
-- Events are committed with their change into audit_pending (no chain position, so concurrent
-- writers never conflict) and placed in audit_events by one sequencer per chain, which also
-- signs a checkpoint of the new head into audit_checkpoints. Existing chains are unchanged; they
-- get their first checkpoint with their next event.

-- Audit events committed in the same batch as their change, waiting for the chain's sequencer to
-- place them (usually within milliseconds; cron sweeps what a missed poke left). No position is
-- taken here, so concurrent writers never conflict. pending_id is the commit order.
CREATE TABLE audit_pending (
  pending_id    INTEGER PRIMARY KEY AUTOINCREMENT,
  id            TEXT NOT NULL UNIQUE,
  chain         TEXT NOT NULL,
  org_id        TEXT,
  actor_type    TEXT NOT NULL,
  actor_id      TEXT NOT NULL,
  action        TEXT NOT NULL,
  resource_type TEXT NOT NULL,
  resource_id   TEXT NOT NULL,
  ip            TEXT,
  user_agent    TEXT,
  request_id    TEXT,
  metadata      TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
);
CREATE INDEX audit_pending_by_chain ON audit_pending (chain, pending_id);

-- A signed checkpoint (C2SP signed note over origin, size, head hash) per sequencing batch, so
-- verification catches a chain cut short or rewritten at its end.
CREATE TABLE audit_checkpoints (
  chain         TEXT NOT NULL,
  size          INTEGER NOT NULL,
  head_hash     TEXT NOT NULL,
  note          TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  PRIMARY KEY (chain, size)
);
