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

-- Minted by the customer's backend with an API key; single use, bound to one device identifier.
CREATE TABLE fl_bootstrap_tokens (
  id                TEXT PRIMARY KEY,
  org_id            TEXT NOT NULL REFERENCES orgs(id),
  token_hash        TEXT NOT NULL UNIQUE,
  device_identifier TEXT NOT NULL,
  scopes            TEXT NOT NULL,
  created_by        TEXT NOT NULL,
  created_at_ms     INTEGER NOT NULL,
  expires_at_ms     INTEGER NOT NULL,
  used_at_ms        INTEGER
);

CREATE TABLE fl_devices (
  id                TEXT PRIMARY KEY,
  org_id            TEXT NOT NULL REFERENCES orgs(id),
  device_identifier TEXT NOT NULL,
  tags              TEXT NOT NULL DEFAULT '[]',
  created_at_ms     INTEGER NOT NULL,
  last_seen_at_ms   INTEGER,
  revoked_at_ms     INTEGER,
  revoked_reason    TEXT,
  heartbeat         TEXT,
  heartbeat_at_ms   INTEGER,
  UNIQUE (org_id, device_identifier)
);

-- One family per bootstrap: every rotated refresh token and every access token of one device
-- session. Revoking the family ends them all at once.
CREATE TABLE fl_device_families (
  id             TEXT PRIMARY KEY,
  org_id         TEXT NOT NULL REFERENCES orgs(id),
  device_id      TEXT NOT NULL REFERENCES fl_devices(id),
  scopes         TEXT NOT NULL,
  access_ttl_s   INTEGER NOT NULL,
  created_at_ms  INTEGER NOT NULL,
  revoked_at_ms  INTEGER,
  revoked_reason TEXT
);
CREATE INDEX fl_device_families_by_device ON fl_device_families (device_id);

CREATE TABLE fl_device_refresh_tokens (
  id            TEXT PRIMARY KEY,
  family_id     TEXT NOT NULL REFERENCES fl_device_families(id),
  token_hash    TEXT NOT NULL UNIQUE,
  created_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL,
  rotated_at_ms INTEGER
);
CREATE INDEX fl_device_refresh_tokens_by_family ON fl_device_refresh_tokens (family_id);

CREATE TABLE fl_models (
  id            TEXT PRIMARY KEY,
  org_id        TEXT NOT NULL REFERENCES orgs(id),
  name          TEXT NOT NULL,
  description   TEXT,
  created_by    TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  UNIQUE (org_id, name)
);

-- A version's bytes are a safetensors file stored in R2 as ordered pieces (`pieces`: JSON list of
-- {key, size}); `layout` is its tensor manifest (names, dtypes, shapes in canonical order).
CREATE TABLE fl_model_versions (
  id             TEXT PRIMARY KEY,
  org_id         TEXT NOT NULL REFERENCES orgs(id),
  model_id       TEXT NOT NULL REFERENCES fl_models(id),
  version        INTEGER NOT NULL,
  parent_id      TEXT REFERENCES fl_model_versions(id),
  round_id       TEXT,
  status         TEXT NOT NULL CHECK (status IN ('ready', 'approved')),
  sha256         TEXT NOT NULL,
  size_bytes     INTEGER NOT NULL,
  parameters     INTEGER NOT NULL,
  layout         TEXT NOT NULL,
  pieces         TEXT NOT NULL,
  aggregation    TEXT,
  created_by     TEXT NOT NULL,
  created_at_ms  INTEGER NOT NULL,
  approved_by    TEXT,
  approved_at_ms INTEGER,
  UNIQUE (model_id, version)
);

-- Targeting: a group selects devices by tags (all listed tags present) or explicit membership.
CREATE TABLE fl_device_groups (
  id            TEXT PRIMARY KEY,
  org_id        TEXT NOT NULL REFERENCES orgs(id),
  name          TEXT NOT NULL,
  tags          TEXT,
  created_by    TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  UNIQUE (org_id, name)
);

CREATE TABLE fl_device_group_members (
  group_id  TEXT NOT NULL REFERENCES fl_device_groups(id),
  device_id TEXT NOT NULL REFERENCES fl_devices(id),
  PRIMARY KEY (group_id, device_id)
);

CREATE TABLE fl_rounds (
  id                   TEXT PRIMARY KEY,
  org_id               TEXT NOT NULL REFERENCES orgs(id),
  model_id             TEXT NOT NULL REFERENCES fl_models(id),
  base_version_id      TEXT NOT NULL REFERENCES fl_model_versions(id),
  plan_id              TEXT NOT NULL UNIQUE,
  state                TEXT NOT NULL,
  target               INTEGER NOT NULL,
  min_updates          INTEGER NOT NULL,
  max_participants     INTEGER NOT NULL,
  deadline_at_ms       INTEGER NOT NULL,
  device_group_id      TEXT REFERENCES fl_device_groups(id),
  aggregation          TEXT NOT NULL,
  plan                 TEXT NOT NULL,
  created_by           TEXT NOT NULL,
  created_at_ms        INTEGER NOT NULL,
  closed_at_ms         INTEGER,
  published_version_id TEXT
);
CREATE INDEX fl_rounds_by_org_state ON fl_rounds (org_id, state);

-- (end of federated learning)


-- ===========================================================================================
-- Code review (migrations/0004_review.sql)
-- ===========================================================================================

-- (end of code review)
