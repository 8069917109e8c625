-- Code review: integrations, BYOK LLM providers, webhook deliveries, reviews.

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
