-- edgeplane D1 schema (canonical). `migrations/` must produce exactly this schema; scripts/test
-- checks that (scripts/check-schema). Timestamps are integer milliseconds since the Unix epoch.

CREATE TABLE orgs (
  id            TEXT PRIMARY KEY,
  slug          TEXT NOT NULL UNIQUE,
  name          TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  created_by    TEXT,
  deleted_at_ms INTEGER,
  -- How long the org's audit events are kept (30..=3650 days, checked by the API).
  audit_retention_days INTEGER NOT NULL DEFAULT 365
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

-- One hash chain per org (chain = org id, or '_platform'). Only the chain's sequencer writes here;
-- (chain, seq) and id make a second, racing sequencer fail as a whole.
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

-- The signed anchor of a chain's pruned prefix (retention): a checkpoint at the prefix's size,
-- one row per chain, replaced by each later prune. Verification starts there.
CREATE TABLE audit_anchors (
  chain         TEXT PRIMARY KEY,
  size          INTEGER NOT NULL,
  head_hash     TEXT NOT NULL,
  note          TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
);

-- Audit export jobs, written to R2 by the cron (`audit::export_job`).
CREATE TABLE audit_export_jobs (
  id               TEXT PRIMARY KEY,
  org_id           TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
  format           TEXT NOT NULL CHECK (format IN ('jsonl', 'csv')),
  filters          TEXT NOT NULL,
  state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'ready', 'failed', 'expired')),
  created_by       TEXT NOT NULL,
  created_at_ms    INTEGER NOT NULL,
  started_at_ms    INTEGER,
  finished_at_ms   INTEGER,
  object_key       TEXT,
  upload_id        TEXT,
  events           INTEGER,
  bytes            INTEGER,
  parts            INTEGER,
  chain_size       INTEGER,
  checkpoint       TEXT,
  anchor           TEXT,
  file_expires_at_ms INTEGER,
  error            TEXT
);

-- The cron's work list (oldest queued first, stale running, files past their time) and the
-- per-org cap on jobs waiting or running.
CREATE INDEX audit_export_jobs_by_state ON audit_export_jobs (state, created_at_ms);
CREATE INDEX audit_export_jobs_by_org ON audit_export_jobs (org_id, state);

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

-- (end of identity)


-- ===========================================================================================
-- Organization access administration (migrations/0005_access.sql)
-- ===========================================================================================


-- An invitation token is stored only as SHA-256; it is accepted once, by the signed-in user
-- whose email matches, before it expires.
CREATE TABLE invitations (
  id             TEXT PRIMARY KEY,
  org_id         TEXT NOT NULL REFERENCES orgs(id),
  email          TEXT NOT NULL,
  role           TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
  token_hash     TEXT NOT NULL UNIQUE,
  invited_by     TEXT NOT NULL,
  created_at_ms  INTEGER NOT NULL,
  expires_at_ms  INTEGER NOT NULL,
  accepted_at_ms INTEGER,
  accepted_by    TEXT,
  revoked_at_ms  INTEGER
);
CREATE INDEX invitations_by_org ON invitations (org_id, created_at_ms);

-- (end of access administration)


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
-- A device's memberships are read with its revocation check on every device request.
CREATE INDEX fl_device_group_members_by_device ON fl_device_group_members (device_id);

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
  published_version_id TEXT,
  -- Why a `failed` round failed (`non_finite_result`); migrations/0007_round_outcomes.sql.
  failure              TEXT
);
CREATE INDEX fl_rounds_by_org_state ON fl_rounds (org_id, state);

-- Deployments: an approved version shipped to device groups through a staged rollout, and what
-- devices report running. Which devices a stage covers is computed (edgeplane_core::fl::rollout),
-- never stored, so promotion is one row update however large the fleet.
CREATE TABLE fl_deployments (
  id            TEXT PRIMARY KEY,
  org_id        TEXT NOT NULL REFERENCES orgs(id),
  model_id      TEXT NOT NULL REFERENCES fl_models(id),
  version_id    TEXT NOT NULL REFERENCES fl_model_versions(id),
  -- The version the model's newest earlier deployment delivered, kept for the record.
  previous_version_id TEXT REFERENCES fl_model_versions(id),
  -- JSON list of strictly increasing percentages ending at 100.
  stages        TEXT NOT NULL,
  stage_index   INTEGER NOT NULL,
  state         TEXT NOT NULL CHECK (state IN ('active', 'paused', 'completed', 'rolled_back')),
  created_by    TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL
);
CREATE INDEX fl_deployments_by_org_model ON fl_deployments (org_id, model_id, created_at_ms);

CREATE TABLE fl_deployment_groups (
  deployment_id TEXT NOT NULL REFERENCES fl_deployments(id),
  group_id      TEXT NOT NULL REFERENCES fl_device_groups(id),
  PRIMARY KEY (deployment_id, group_id)
);
CREATE INDEX fl_deployment_groups_by_group ON fl_deployment_groups (group_id);

-- What a device last reported about a model (observed state, or a sync's inventory):
-- bookkeeping like a heartbeat, not audited.
CREATE TABLE fl_device_models (
  org_id            TEXT NOT NULL REFERENCES orgs(id),
  device_id         TEXT NOT NULL REFERENCES fl_devices(id),
  model_id          TEXT NOT NULL,
  installed_version TEXT,
  active_version    TEXT,
  status            TEXT NOT NULL CHECK (status IN ('pending', 'downloading', 'installed', 'active', 'failed')),
  last_error        TEXT,
  reported_at_ms    INTEGER NOT NULL,
  PRIMARY KEY (device_id, model_id)
);
CREATE INDEX fl_device_models_by_model ON fl_device_models (org_id, model_id);

-- A device's history (migrations/0009_device_history.sql; edgeplane_core::fl::history):
-- bookkeeping like a heartbeat, not audited.
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
-- batch as the round's end (so once); a running round's are in its coordinator. Kept as long
-- as the round.
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

-- (end of federated learning)


-- ===========================================================================================
-- Code review (migrations/0004_review.sql)
-- ===========================================================================================

-- A connected git platform. Tokens and secrets are sealed (AES-256-GCM, key derived from
-- ROOT_SECRET for integration secrets, `<id>/<field>` as associated data, stored base64url);
-- NULL when absent.
CREATE TABLE integrations (
  id                            TEXT PRIMARY KEY,
  org_id                        TEXT NOT NULL REFERENCES orgs(id),
  platform                      TEXT NOT NULL CHECK (platform IN ('github', 'gitlab', 'bitbucket')),
  deployment                    TEXT NOT NULL CHECK (deployment IN ('cloud', 'datacenter')),
  name                          TEXT NOT NULL,
  api_base_url                  TEXT NOT NULL,
  llm_provider_id               TEXT,
  access_token_sealed           TEXT,
  webhook_secret_sealed         TEXT,
  previous_secret_sealed        TEXT,
  previous_secret_expires_at_ms INTEGER,
  signing_token_sealed          TEXT,
  enabled                       INTEGER NOT NULL DEFAULT 1,
  created_by                    TEXT,
  created_at_ms                 INTEGER NOT NULL,
  updated_at_ms                 INTEGER NOT NULL,
  secret_rotated_at_ms          INTEGER,
  deleted_at_ms                 INTEGER
);
CREATE INDEX integrations_by_org ON integrations (org_id, created_at_ms);

-- BYOK LLM providers. The API key is sealed to the review worker's public key (X25519 + HKDF +
-- AES-256-GCM, `<id>/api_key` as associated data): the gateway can seal, only the review worker
-- can open. `key_kid` names the review key pair it was sealed to.
CREATE TABLE llm_providers (
  id                TEXT PRIMARY KEY,
  org_id            TEXT NOT NULL REFERENCES orgs(id),
  name              TEXT NOT NULL,
  kind              TEXT NOT NULL CHECK (kind IN ('anthropic', 'openai', 'gemini', 'openai_compatible')),
  base_url          TEXT NOT NULL,
  model             TEXT NOT NULL,
  embedding_model   TEXT,
  max_input_tokens  INTEGER NOT NULL,
  max_output_tokens INTEGER NOT NULL,
  api_key_sealed    TEXT NOT NULL,
  key_kid           TEXT NOT NULL,
  is_default        INTEGER NOT NULL DEFAULT 0,
  created_by        TEXT,
  created_at_ms     INTEGER NOT NULL,
  updated_at_ms     INTEGER NOT NULL,
  key_set_at_ms     INTEGER NOT NULL
);
CREATE INDEX llm_providers_by_org ON llm_providers (org_id, created_at_ms);
CREATE UNIQUE INDEX llm_providers_one_default ON llm_providers (org_id) WHERE is_default = 1;

-- Every verified webhook delivery, once: (integration, delivery id) de-duplicates redeliveries.
CREATE TABLE webhook_deliveries (
  id             TEXT PRIMARY KEY,
  org_id         TEXT NOT NULL,
  integration_id TEXT NOT NULL,
  delivery_id    TEXT NOT NULL,
  event          TEXT NOT NULL,
  outcome        TEXT NOT NULL CHECK (outcome IN ('queued', 'ignored', 'duplicate_head')),
  reason         TEXT,
  review_id      TEXT,
  secret_slot    TEXT NOT NULL,
  received_at_ms INTEGER NOT NULL,
  UNIQUE (integration_id, delivery_id)
);
CREATE INDEX webhook_deliveries_by_integration ON webhook_deliveries (integration_id, received_at_ms);

-- One review per (integration, repository, pull request, head commit): the unique key is what
-- makes redelivered webhooks and queue messages harmless. Nothing of the source is stored:
-- `work_sealed` holds findings between the provider call and the last posted comment, sealed
-- with a key only the review worker has, and is cleared when the review ends.
CREATE TABLE reviews (
  id                 TEXT PRIMARY KEY,
  org_id             TEXT NOT NULL,
  integration_id     TEXT NOT NULL,
  platform           TEXT NOT NULL,
  repo_id            TEXT NOT NULL,
  repo_name          TEXT NOT NULL,
  pr_number          INTEGER NOT NULL,
  head_sha           TEXT NOT NULL,
  base_sha           TEXT,
  trigger            TEXT NOT NULL,
  status             TEXT NOT NULL CHECK (status IN ('queued', 'fetching', 'indexing', 'reviewing', 'commenting', 'done', 'failed', 'skipped')),
  status_reason      TEXT,
  error              TEXT,
  attempts           INTEGER NOT NULL DEFAULT 0,
  lease_until_ms     INTEGER,
  superseded_by      TEXT,
  llm_provider_id    TEXT,
  model              TEXT,
  created_at_ms      INTEGER NOT NULL,
  fetching_at_ms     INTEGER,
  indexing_at_ms     INTEGER,
  reviewing_at_ms    INTEGER,
  commenting_at_ms   INTEGER,
  finished_at_ms     INTEGER,
  files_changed      INTEGER,
  files_reviewed     INTEGER,
  files_skipped      INTEGER,
  chunks_indexed     INTEGER,
  context_chunks     INTEGER,
  embeddings_used    INTEGER,
  prompt_tokens      INTEGER,
  completion_tokens  INTEGER,
  findings_total     INTEGER,
  findings_dropped   INTEGER,
  comments_posted    INTEGER,
  comments_fallback  INTEGER,
  skipped_files      TEXT,
  platform_review_id TEXT,
  work_sealed        TEXT,
  UNIQUE (integration_id, repo_id, pr_number, head_sha)
);
CREATE INDEX reviews_by_org ON reviews (org_id, id);
CREATE INDEX reviews_by_pull_request ON reviews (integration_id, repo_id, pr_number, status);

-- Inline comments already posted for a review, so a retried commenting step resumes instead of
-- posting twice. Positions only; the comment text is not kept.
CREATE TABLE review_comments (
  review_id           TEXT NOT NULL,
  idx                 INTEGER NOT NULL,
  path                TEXT NOT NULL,
  line                INTEGER NOT NULL,
  side                TEXT NOT NULL,
  state               TEXT NOT NULL CHECK (state IN ('posted', 'fallback')),
  platform_comment_id TEXT,
  created_at_ms       INTEGER NOT NULL,
  PRIMARY KEY (review_id, idx)
);

-- Embedding vectors of code chunks, keyed by the chunk's SHA-256 so unchanged code is not
-- embedded twice. Vectors only (base64 of little-endian f32); no source text.
CREATE TABLE review_embeddings (
  org_id         TEXT NOT NULL,
  model          TEXT NOT NULL,
  content_sha256 TEXT NOT NULL,
  dims           INTEGER NOT NULL,
  vector         TEXT NOT NULL,
  created_at_ms  INTEGER NOT NULL,
  PRIMARY KEY (org_id, model, content_sha256)
);

-- (end of code review)
-- SCIM 2.0 provisioning (issue 14): an org's IdP manages its people and groups at /scim/v2.
--
-- A SCIM user is an account (users, by email) as one org's IdP sees it: its userName,
-- externalId and names belong to the org, so they live here and never in users. active = 0 keeps
-- the resource (an IdP re-activates by PATCH) while the membership is gone.
CREATE TABLE scim_users (
  org_id        TEXT NOT NULL REFERENCES orgs(id),
  user_id       TEXT NOT NULL REFERENCES users(id),
  user_name     TEXT NOT NULL,
  external_id   TEXT,
  display_name  TEXT,
  given_name    TEXT,
  family_name   TEXT,
  active        INTEGER NOT NULL CHECK (active IN (0, 1)),
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL,
  PRIMARY KEY (org_id, user_id)
);
-- userName is unique per org, without regard to case (RFC 7643: caseExact false).
CREATE UNIQUE INDEX scim_users_by_name ON scim_users (org_id, user_name COLLATE NOCASE);

CREATE TABLE scim_groups (
  id            TEXT PRIMARY KEY,
  org_id        TEXT NOT NULL REFERENCES orgs(id),
  display_name  TEXT NOT NULL,
  external_id   TEXT,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX scim_groups_by_name ON scim_groups (org_id, display_name);

-- Members carry their org so every write is an OrgBatch write (the org bound in each statement).
CREATE TABLE scim_group_members (
  org_id   TEXT NOT NULL REFERENCES orgs(id),
  group_id TEXT NOT NULL REFERENCES scim_groups(id),
  user_id  TEXT NOT NULL REFERENCES users(id),
  PRIMARY KEY (group_id, user_id)
);
CREATE INDEX scim_group_members_by_user ON scim_group_members (org_id, user_id);

-- The org's mapping from an IdP group (by displayName) to a role; never owner.
CREATE TABLE scim_group_roles (
  org_id     TEXT NOT NULL REFERENCES orgs(id),
  group_name TEXT NOT NULL,
  role       TEXT NOT NULL CHECK (role IN ('admin', 'member')),
  PRIMARY KEY (org_id, group_name)
);
