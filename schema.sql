-- edgeplane D1 schema (canonical). `migrations/` must produce exactly this schema; scripts/test
-- checks that (scripts/check-schema). Timestamps are integer milliseconds since the Unix epoch.

CREATE TABLE orgs (
  id            TEXT PRIMARY KEY,
  slug          TEXT NOT NULL UNIQUE,
  name          TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  created_by    TEXT,
  deleted_at_ms INTEGER
);

CREATE TABLE users (
  id             TEXT PRIMARY KEY,
  email          TEXT NOT NULL UNIQUE,
  display_name   TEXT,
  created_at_ms  INTEGER NOT NULL,
  disabled_at_ms INTEGER
);

CREATE TABLE memberships (
  org_id        TEXT NOT NULL REFERENCES orgs(id),
  user_id       TEXT NOT NULL REFERENCES users(id),
  role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
  created_at_ms INTEGER NOT NULL,
  PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id);

-- Keys are stored only as SHA-256 of the full key and looked up by that hash.
CREATE TABLE api_keys (
  id              TEXT PRIMARY KEY,
  org_id          TEXT NOT NULL REFERENCES orgs(id),
  name            TEXT NOT NULL,
  key_hash        TEXT NOT NULL UNIQUE,
  hint            TEXT NOT NULL,
  scopes          TEXT NOT NULL,
  created_by      TEXT,
  created_at_ms   INTEGER NOT NULL,
  expires_at_ms   INTEGER,
  revoked_at_ms   INTEGER,
  last_used_at_ms INTEGER,
  rotated_from    TEXT
);
CREATE INDEX api_keys_by_org ON api_keys (org_id, created_at_ms);

-- One hash chain per org (chain = org id, or '_platform'); (chain, seq) makes appends race-safe.
CREATE TABLE audit_events (
  id            TEXT PRIMARY KEY,
  chain         TEXT NOT NULL,
  seq           INTEGER NOT NULL,
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
  created_at_ms INTEGER NOT NULL,
  prev_hash     TEXT NOT NULL,
  hash          TEXT NOT NULL,
  UNIQUE (chain, seq)
);
CREATE INDEX audit_by_org_time ON audit_events (org_id, created_at_ms);
CREATE INDEX audit_by_org_action ON audit_events (org_id, action);
CREATE INDEX audit_by_org_actor ON audit_events (org_id, actor_id);

-- Guard rows live only inside a batch (inserted and deleted by it); the CHECK aborts the batch.
CREATE TABLE batch_guards (
  ok INTEGER NOT NULL CHECK (ok = 1)
);

CREATE TABLE queue_probes (
  id              TEXT PRIMARY KEY,
  org_id          TEXT NOT NULL REFERENCES orgs(id),
  status          TEXT NOT NULL,
  fail_times      INTEGER NOT NULL,
  attempts        INTEGER NOT NULL,
  created_at_ms   INTEGER NOT NULL,
  processed_at_ms INTEGER,
  last_error      TEXT
);

CREATE TABLE cron_runs (
  id             TEXT PRIMARY KEY,
  cron           TEXT NOT NULL,
  started_at_ms  INTEGER NOT NULL,
  finished_at_ms INTEGER,
  tasks          TEXT NOT NULL
);

-- ===========================================================================================
-- Identity and access (migrations/0002_identity.sql)
-- ===========================================================================================

-- (end of identity)


-- ===========================================================================================
-- Federated learning (migrations/0003_federation.sql)
-- ===========================================================================================

-- (end of federated learning)


-- ===========================================================================================
-- Code review (migrations/0004_review.sql)
-- ===========================================================================================

-- (end of code review)
