-- Identity: sessions and refresh-token families, magic links, identity-provider sign-in,
-- device-code (CLI) authorizations, the local email outbox.

-- A sign-in session or a CLI token (device-code grant): one refresh-token family. Revoking the
-- row ends every token of the family at once; access tokens carry its id (`sid`) and are
-- checked against it on every request. CLI tokens are bound to one org and carry their scopes.
CREATE TABLE sessions (
  id                   TEXT PRIMARY KEY,
  user_id              TEXT NOT NULL REFERENCES users(id),
  kind                 TEXT NOT NULL CHECK (kind IN ('web', 'cli')),
  org_id               TEXT REFERENCES orgs(id),
  scopes               TEXT,
  auth_method          TEXT NOT NULL,
  created_at_ms        INTEGER NOT NULL,
  last_refreshed_at_ms INTEGER NOT NULL,
  last_used_at_ms      INTEGER NOT NULL,
  ip                   TEXT,
  user_agent           TEXT,
  revoked_at_ms        INTEGER,
  revoked_reason       TEXT,
  CHECK ((kind = 'cli') = (org_id IS NOT NULL))
);
CREATE INDEX sessions_by_user ON sessions (user_id, created_at_ms);

-- Refresh tokens, SHA-256 only. One `active` token per session; a used one becomes `rotated`
-- (its successor's `parent_hash` points back to it); a grace retry marks the unused successor
-- `superseded`.
CREATE TABLE refresh_tokens (
  token_hash    TEXT PRIMARY KEY,
  session_id    TEXT NOT NULL REFERENCES sessions(id),
  parent_hash   TEXT,
  status        TEXT NOT NULL CHECK (status IN ('active', 'rotated', 'superseded')),
  created_at_ms INTEGER NOT NULL,
  rotated_at_ms INTEGER
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_by_parent ON refresh_tokens (parent_hash);

-- Magic sign-in links, SHA-256 only; single use (consumed_at_ms), 15 minutes.
CREATE TABLE magic_links (
  token_hash     TEXT PRIMARY KEY,
  email          TEXT NOT NULL,
  created_at_ms  INTEGER NOT NULL,
  expires_at_ms  INTEGER NOT NULL,
  consumed_at_ms INTEGER,
  ip             TEXT
);
CREATE INDEX magic_links_by_expiry ON magic_links (expires_at_ms);

-- Authorization-code flows in progress: the state's hash and the hash of the browser binding
-- cookie. The PKCE verifier and nonce are derived from the state, never stored.
CREATE TABLE signin_flows (
  state_hash     TEXT PRIMARY KEY,
  provider       TEXT NOT NULL,
  binding_hash   TEXT NOT NULL,
  created_at_ms  INTEGER NOT NULL,
  expires_at_ms  INTEGER NOT NULL,
  consumed_at_ms INTEGER
);
CREATE INDEX signin_flows_by_expiry ON signin_flows (expires_at_ms);

-- A user's accounts at identity providers (provider name + the provider's stable subject).
CREATE TABLE user_identities (
  provider        TEXT NOT NULL,
  subject         TEXT NOT NULL,
  user_id         TEXT NOT NULL REFERENCES users(id),
  email           TEXT,
  created_at_ms   INTEGER NOT NULL,
  last_used_at_ms INTEGER NOT NULL,
  PRIMARY KEY (provider, subject)
);
CREATE INDEX user_identities_by_user ON user_identities (user_id);

-- RFC 8628 device authorizations. Device and user codes are stored as SHA-256 only.
CREATE TABLE device_codes (
  id               TEXT PRIMARY KEY,
  device_code_hash TEXT NOT NULL UNIQUE,
  user_code_hash   TEXT NOT NULL UNIQUE,
  client_id        TEXT NOT NULL,
  scopes           TEXT,
  status           TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'consumed')),
  interval_secs    INTEGER NOT NULL,
  created_at_ms    INTEGER NOT NULL,
  expires_at_ms    INTEGER NOT NULL,
  last_poll_at_ms  INTEGER,
  ip               TEXT,
  user_agent       TEXT,
  decided_by       TEXT REFERENCES users(id),
  decided_at_ms    INTEGER,
  org_id           TEXT REFERENCES orgs(id),
  session_id       TEXT REFERENCES sessions(id)
);
CREATE INDEX device_codes_by_expiry ON device_codes (expires_at_ms);

-- Local outbox mode (development, tests, benchmarks only; refused in production): messages kept
-- in D1 instead of being sent, readable through the development-only outbox endpoint.
CREATE TABLE email_outbox (
  id            TEXT PRIMARY KEY,
  recipient     TEXT NOT NULL,
  subject       TEXT NOT NULL,
  text_body     TEXT NOT NULL,
  html_body     TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
);
CREATE INDEX email_outbox_by_recipient ON email_outbox (recipient, created_at_ms);
