-- Federated learning: devices and their credentials, models and versions, device groups, rounds.
-- A round's live state (participants, uploads, the running sum) lives in its RoundCoordinator and
-- RoundAggregator Durable Objects; D1 holds what is listed, joined and audited.

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
