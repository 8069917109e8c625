-- Audit export jobs: an export of an org's chain written to R2 in the background by the cron,
-- for logs too long to stream to a client in one request (`edgeplane_core::audit::export_job`).
--
-- One row a job. `state` moves queued -> running -> ready | failed, and ready -> expired when the
-- cron deletes the file (24 h after it was written). Which columns are set follows the state and
-- is checked when a row is read (`ExportJob::from_row`): a row that breaks it is an error, never
-- a default. `filters` is the export's filters as JSON, as its audit event records them;
-- `upload_id` is the R2 multipart upload in progress (kept so a job cut off mid-run is aborted).
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
