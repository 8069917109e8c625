//! Audit export jobs: the export of [`super::export`], written to R2 in the background for a log
//! too long to stream to a client in one request, then fetched through a short-lived link.
//!
//! A job is a D1 row. Its life is a small state machine ([`Phase`]):
//!
//! ```text
//! queued --claim (cron)--> running --finish--> ready --file deleted (cron, FILE_TTL_MS)--> expired
//!    \                        \
//!     `--------fail-----------`--> failed (reason; a partial multipart upload is aborted)
//! ```
//!
//! The file's bytes are the streaming export's for the same filters: the worker reads the same
//! pages ([`super::export::ExportQuery::page_sql`]) and encodes them with the same
//! [`super::export::line`]; this module only cuts those bytes into R2 parts ([`PartBuffer`]) and
//! decides what a row means. Which columns a state sets is checked when a row is read
//! ([`ExportJob::from_row`]), so a job in hand is always one of the shapes below and code never
//! meets, say, a `ready` job without a file.

use serde::{Deserialize, Serialize};

use crate::crypto::signed_url::{self, Grant, UrlError};
use crate::error::ApiError;
use crate::ids::{AuditExportJobId, TypedId};
use crate::time::rfc3339_millis;

use super::export::{ExportQuery, Format};

/// R2's smallest part of a multipart upload (every part but the last must be at least this
/// big, and all but the last the same size). The job uses exactly this size: the smallest legal
/// part is the least memory a part can take, and one page of events is far smaller.
pub const PART_BYTES: usize = 5 * 1024 * 1024;
/// R2's largest part count; with [`PART_BYTES`] parts a file may reach 50 GiB.
pub const MAX_PARTS: u16 = 10_000;
/// How long a download link stays valid once handed out (Unix seconds): long enough to start a
/// download, short enough that a link pasted into a ticket is dead by the time someone reads it.
pub const LINK_TTL_SECONDS: i64 = 10 * 60;
/// How long a finished job's file is kept in R2 before the cron deletes it.
pub const FILE_TTL_MS: i64 = 24 * 3600 * 1000;
/// A job still `running` this long after it was claimed was cut off (its isolate died with the
/// cron run): the cron fails it and aborts its upload. A cron run's own limit is far shorter.
pub const RUN_LEASE_MS: i64 = 30 * 60 * 1000;
/// Jobs an org may have queued or running at once: each costs a cron run's time.
pub const MAX_ACTIVE_PER_ORG: i64 = 3;
/// Jobs one cron run works on: each org's oldest queued job, oldest first, at most one per org
/// (so one org's queue never holds back another's); the rest wait for the next run.
pub const JOBS_PER_RUN: i64 = 2;

/// A job's state, as the API shows it and the row stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Ready,
    Failed,
    /// It was ready; its file has been deleted after [`FILE_TTL_MS`].
    Expired,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Ready => "ready",
            JobState::Failed => "failed",
            JobState::Expired => "expired",
        }
    }

    /// The stored name; anything else is an error, never a default.
    pub fn parse(s: &str) -> Result<Self, RowError> {
        Ok(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "ready" => JobState::Ready,
            "failed" => JobState::Failed,
            "expired" => JobState::Expired,
            other => return Err(RowError(format!("unknown state `{other}`"))),
        })
    }
}

/// A stored job row that does not have the shape its state requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit export job row: {0}")]
pub struct RowError(pub String);

/// `POST …/audit-events/export-jobs`: the streaming export's query parameters as a JSON body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateExportJob {
    pub format: Option<String>,
    pub actor: Option<String>,
    pub actor_type: Option<String>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

impl CreateExportJob {
    /// The export this body asks for, validated by the streaming export's own parser, so a job
    /// accepts exactly what `GET …/export` accepts.
    pub fn query(self) -> Result<ExportQuery, ApiError> {
        let pairs = [
            ("format", self.format),
            ("actor", self.actor),
            ("actor_type", self.actor_type),
            ("action", self.action),
            ("resource_type", self.resource_type),
            ("resource", self.resource),
            ("since", self.since),
            ("until", self.until),
        ];
        ExportQuery::parse(
            pairs
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_owned(), v?)))
                .collect(),
        )
    }
}

/// The query a stored job runs: its format and its filters as [`ExportQuery::filters`] recorded
/// them (which is also what its audit event says), parsed again by the same parser.
pub fn stored_query(format: &str, filters: &str) -> Result<ExportQuery, RowError> {
    let bad = |e: String| RowError(format!("filters: {e}"));
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(filters).map_err(|e| bad(e.to_string()))?;
    let mut pairs = vec![("format".to_owned(), format.to_owned())];
    for (k, v) in map {
        let v = v.as_str().ok_or_else(|| bad(format!("{k} is not text")))?;
        pairs.push((k, v.to_owned()));
    }
    ExportQuery::parse(pairs).map_err(|e| bad(e.message))
}

/// Where a job's file lives in the bucket: under the org's own prefix, so a listing or a
/// lifecycle rule can be scoped to one org.
pub fn object_key(org_id: &str, job: &AuditExportJobId, format: Format) -> String {
    let ext = match format {
        Format::Jsonl => "jsonl",
        Format::Csv => "csv",
    };
    format!("audit-exports/{org_id}/{job}.{ext}")
}

/// What a finished file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    pub object_key: String,
    pub events: i64,
    pub bytes: i64,
    pub parts: i64,
    /// The chain size the export stops at (the checkpoint's), when the chain has one.
    pub chain_size: Option<i64>,
    /// The signed checkpoint note the export stops at; sent with the download, as the streaming
    /// export sends it.
    pub checkpoint: Option<String>,
    /// The signed anchor of a pruned chain's prefix, which the export starts after.
    pub anchor: Option<String>,
}

/// Where a job is, with exactly the facts that state has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Queued,
    Running {
        started_at_ms: i64,
    },
    Ready {
        started_at_ms: i64,
        finished_at_ms: i64,
        file: FileFacts,
        file_expires_at_ms: i64,
    },
    Failed {
        finished_at_ms: i64,
        reason: String,
    },
    Expired {
        finished_at_ms: i64,
        events: i64,
        bytes: i64,
    },
}

impl Phase {
    pub fn state(&self) -> JobState {
        match self {
            Phase::Queued => JobState::Queued,
            Phase::Running { .. } => JobState::Running,
            Phase::Ready { .. } => JobState::Ready,
            Phase::Failed { .. } => JobState::Failed,
            Phase::Expired { .. } => JobState::Expired,
        }
    }
}

/// A transition the state machine does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an export job cannot go from {from:?} to {to:?}")]
pub struct IllegalTransition {
    pub from: JobState,
    pub to: JobState,
}

/// Whether `from -> to` is a transition of the job's state machine. The SQL that moves a row
/// guards on the same `from` ([`sql`]), so two cron runs racing for one job move it once.
pub fn check_transition(from: JobState, to: JobState) -> Result<(), IllegalTransition> {
    use JobState::*;
    match (from, to) {
        (Queued, Running) | (Running, Ready) | (Queued | Running, Failed) | (Ready, Expired) => {
            Ok(())
        }
        _ => Err(IllegalTransition { from, to }),
    }
}

/// One job, read from its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportJob {
    pub id: AuditExportJobId,
    pub org_id: String,
    pub query: ExportQuery,
    pub created_by: String,
    pub created_at_ms: i64,
    pub phase: Phase,
}

/// A job row as D1 returns it ([`sql::COLUMNS`]); [`ExportJob::from_row`] decides what it means.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobRow {
    pub id: String,
    pub org_id: String,
    pub format: String,
    pub filters: String,
    pub state: String,
    pub created_by: String,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub object_key: Option<String>,
    pub upload_id: Option<String>,
    pub events: Option<i64>,
    pub bytes: Option<i64>,
    pub parts: Option<i64>,
    pub chain_size: Option<i64>,
    pub checkpoint: Option<String>,
    pub anchor: Option<String>,
    pub file_expires_at_ms: Option<i64>,
    pub error: Option<String>,
}

impl ExportJob {
    pub fn from_row(row: JobRow) -> Result<Self, RowError> {
        let need = |v: Option<i64>, what: &str| {
            v.ok_or_else(|| RowError(format!("{} job without {what}", row.state)))
        };
        let state = JobState::parse(&row.state)?;
        let phase = match state {
            JobState::Queued => Phase::Queued,
            JobState::Running => Phase::Running {
                started_at_ms: need(row.started_at_ms, "started_at_ms")?,
            },
            JobState::Ready => Phase::Ready {
                started_at_ms: need(row.started_at_ms, "started_at_ms")?,
                finished_at_ms: need(row.finished_at_ms, "finished_at_ms")?,
                file: FileFacts {
                    object_key: row
                        .object_key
                        .clone()
                        .ok_or_else(|| RowError("ready job without object_key".into()))?,
                    events: need(row.events, "events")?,
                    bytes: need(row.bytes, "bytes")?,
                    parts: need(row.parts, "parts")?,
                    chain_size: row.chain_size,
                    checkpoint: row.checkpoint.clone(),
                    anchor: row.anchor.clone(),
                },
                file_expires_at_ms: need(row.file_expires_at_ms, "file_expires_at_ms")?,
            },
            JobState::Failed => Phase::Failed {
                finished_at_ms: need(row.finished_at_ms, "finished_at_ms")?,
                reason: row
                    .error
                    .clone()
                    .ok_or_else(|| RowError("failed job without a reason".into()))?,
            },
            JobState::Expired => Phase::Expired {
                finished_at_ms: need(row.finished_at_ms, "finished_at_ms")?,
                events: need(row.events, "events")?,
                bytes: need(row.bytes, "bytes")?,
            },
        };
        Ok(Self {
            id: AuditExportJobId::parse(&row.id).map_err(|e| RowError(e.to_string()))?,
            query: stored_query(&row.format, &row.filters)?,
            org_id: row.org_id,
            created_by: row.created_by,
            created_at_ms: row.created_at_ms,
            phase,
        })
    }

    /// The file a download may serve at `now_ms`: a ready job's, and only before its
    /// `file_expires_at_ms`. Past that time the file is refused (and no link is signed) even
    /// before the cron has deleted it and marked the job `expired`.
    pub fn downloadable_file(&self, now_ms: i64) -> Option<&FileFacts> {
        match &self.phase {
            Phase::Ready {
                file,
                file_expires_at_ms,
                ..
            } if now_ms < *file_expires_at_ms => Some(file),
            _ => None,
        }
    }

    /// The API's view; `download` is the signed link, given only for a ready job.
    pub fn view(&self, download: Option<DownloadLink>) -> ExportJobView {
        let mut v = ExportJobView {
            id: self.id.clone(),
            state: self.phase.state(),
            format: self.query.format.name().to_owned(),
            filters: self.query.filters(),
            created_at: rfc3339_millis(self.created_at_ms),
            started_at: None,
            finished_at: None,
            events: None,
            bytes: None,
            parts: None,
            chain_size: None,
            file_expires_at: None,
            error: None,
            download: None,
        };
        match &self.phase {
            Phase::Queued => {}
            Phase::Running { started_at_ms } => v.started_at = Some(rfc3339_millis(*started_at_ms)),
            Phase::Ready {
                started_at_ms,
                finished_at_ms,
                file,
                file_expires_at_ms,
            } => {
                v.started_at = Some(rfc3339_millis(*started_at_ms));
                v.finished_at = Some(rfc3339_millis(*finished_at_ms));
                v.events = Some(file.events);
                v.bytes = Some(file.bytes);
                v.parts = Some(file.parts);
                v.chain_size = file.chain_size;
                v.file_expires_at = Some(rfc3339_millis(*file_expires_at_ms));
                v.download = download;
            }
            Phase::Failed {
                finished_at_ms,
                reason,
            } => {
                v.finished_at = Some(rfc3339_millis(*finished_at_ms));
                v.error = Some(reason.clone());
            }
            Phase::Expired {
                finished_at_ms,
                events,
                bytes,
            } => {
                v.finished_at = Some(rfc3339_millis(*finished_at_ms));
                v.events = Some(*events);
                v.bytes = Some(*bytes);
            }
        }
        v
    }
}

/// `GET …/audit-events/export-jobs/{id}` (and the answer to creating one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportJobView {
    pub id: AuditExportJobId,
    pub state: JobState,
    pub format: String,
    pub filters: serde_json::Value,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub events: Option<i64>,
    pub bytes: Option<i64>,
    pub parts: Option<i64>,
    pub chain_size: Option<i64>,
    /// When the cron deletes the file (a ready job).
    pub file_expires_at: Option<String>,
    /// Why the job failed.
    pub error: Option<String>,
    /// A ready job's download link, fresh on every read.
    pub download: Option<DownloadLink>,
}

/// A signed, short-lived link to a ready job's file. It is the only authority the download
/// needs, so it is handed out only in a read by someone allowed to export, never logged (access
/// logs carry no query strings) and never recorded in audit metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadLink {
    pub url: String,
    pub expires_at: String,
}

/// The purpose and fields a download link is bound to: the job (whose row names its org).
fn grant<'a>(job: &'a [&'a str; 1]) -> Grant<'a> {
    Grant {
        purpose: "audit-export-download",
        fields: job,
    }
}

/// The path of a job's download, without its signature.
pub fn download_path(job: &AuditExportJobId) -> String {
    format!("/v1/audit-export-jobs/{job}/download")
}

/// A link to `job`'s file under `base_url`, valid until `now_secs + LINK_TTL_SECONDS`.
pub fn sign_link(
    key: &[u8; 32],
    base_url: &str,
    job: &AuditExportJobId,
    now_secs: i64,
) -> DownloadLink {
    let expires = now_secs + LINK_TTL_SECONDS;
    let sig = signed_url::sign(key, grant(&[job.as_str()]), expires);
    DownloadLink {
        url: format!(
            "{base_url}{}?expires={expires}&signature={sig}",
            download_path(job)
        ),
        expires_at: rfc3339_millis(expires * 1000),
    }
}

/// Checks a download link's signature (constant time), then its expiry.
pub fn verify_link(
    key: &[u8; 32],
    job: &AuditExportJobId,
    expires: i64,
    signature: &str,
    now_secs: i64,
) -> Result<(), UrlError> {
    signed_url::verify(key, grant(&[job.as_str()]), expires, signature, now_secs)
}

/// Cuts the export's bytes into R2 parts as they are produced: every part it hands out is
/// exactly [`PART_BYTES`] long (R2 wants all parts but the last the same size) and the rest
/// waits for more bytes or [`PartBuffer::finish`]. It never holds more than one part plus the
/// last page pushed, however long the export.
#[derive(Debug, Default)]
pub struct PartBuffer {
    buf: Vec<u8>,
    part_bytes: usize,
    parts: u16,
    bytes: u64,
}

/// Why the file cannot be cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the export is larger than {MAX_PARTS} parts of {PART_BYTES} bytes")]
pub struct TooManyParts;

impl PartBuffer {
    pub fn new() -> Self {
        Self::with_part_size(PART_BYTES)
    }

    /// A buffer cutting `part_bytes` parts (tests use small ones; the worker uses
    /// [`PART_BYTES`]).
    pub fn with_part_size(part_bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            part_bytes: part_bytes.max(1),
            parts: 0,
            bytes: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        self.buf.extend_from_slice(bytes);
    }

    /// The next full part and its number (1-based), if one is complete.
    pub fn take_full(&mut self) -> Result<Option<(u16, Vec<u8>)>, TooManyParts> {
        if self.buf.len() < self.part_bytes {
            return Ok(None);
        }
        let rest = self.buf.split_off(self.part_bytes);
        let part = std::mem::replace(&mut self.buf, rest);
        Ok(Some((self.next_number()?, part)))
    }

    /// Whether any part was handed out (then the file is a multipart upload; otherwise what
    /// [`PartBuffer::finish`] returns is the whole file).
    pub fn started(&self) -> bool {
        self.parts > 0
    }

    /// The last part (possibly shorter; possibly empty when nothing was handed out) and its
    /// number, with the totals. When parts were handed out and nothing is left (the file is an
    /// exact multiple of the part size) there is no last part: the file ends with the last full
    /// one, and a file of exactly [`MAX_PARTS`] full parts fits.
    pub fn finish(mut self) -> Result<FinishedParts, TooManyParts> {
        let last = if self.started() && self.buf.is_empty() {
            None
        } else {
            Some((self.next_number()?, std::mem::take(&mut self.buf)))
        };
        Ok(FinishedParts {
            last,
            parts: self.parts,
            bytes: self.bytes,
        })
    }

    fn next_number(&mut self) -> Result<u16, TooManyParts> {
        if self.parts >= MAX_PARTS {
            return Err(TooManyParts);
        }
        self.parts += 1;
        Ok(self.parts)
    }
}

/// The end of a [`PartBuffer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedParts {
    /// The part still to upload (or, when none was handed out, the whole file), if any.
    pub last: Option<(u16, Vec<u8>)>,
    /// Parts in the file, the last included.
    pub parts: u16,
    pub bytes: u64,
}

/// The statements that move a job (columns in [`COLUMNS`] order when read). Every update
/// names the state it moves from, so a race between two cron runs moves a job once.
pub mod sql {
    pub const COLUMNS: &str = "id, org_id, format, filters, state, created_by, created_at_ms, \
        started_at_ms, finished_at_ms, object_key, upload_id, events, bytes, parts, chain_size, \
        checkpoint, anchor, file_expires_at_ms, error";

    /// One org's job: another org's id matches nothing (answered 404 like a missing one).
    pub fn select_in_org() -> String {
        format!("SELECT {COLUMNS} FROM audit_export_jobs WHERE id = ? AND org_id = ?")
    }

    pub fn select_by_id() -> String {
        format!("SELECT {COLUMNS} FROM audit_export_jobs WHERE id = ?")
    }

    /// The next queued jobs: each org's oldest (ties by id), oldest first, at most one per
    /// org: `[limit]`.
    pub fn select_queued() -> String {
        format!(
            "SELECT {COLUMNS} FROM audit_export_jobs AS j WHERE state = 'queued' \
             AND id = (SELECT q.id FROM audit_export_jobs AS q WHERE q.org_id = j.org_id \
             AND q.state = 'queued' ORDER BY q.created_at_ms, q.id LIMIT 1) \
             ORDER BY created_at_ms, id LIMIT ?"
        )
    }

    /// Jobs running since before `[cutoff]` (cut off mid-run).
    pub fn select_stale() -> String {
        format!(
            "SELECT {COLUMNS} FROM audit_export_jobs WHERE state = 'running' \
             AND started_at_ms < ? LIMIT 20"
        )
    }

    /// Ready jobs whose file is past its time: `[now]`.
    pub fn select_expiring() -> String {
        format!(
            "SELECT {COLUMNS} FROM audit_export_jobs WHERE state = 'ready' \
             AND file_expires_at_ms < ? LIMIT 100"
        )
    }

    /// The guard of a new job: fewer than the cap queued or running in the org: `[org, cap]`.
    pub const UNDER_CAP: &str = "(SELECT COUNT(*) FROM audit_export_jobs WHERE org_id = ? \
        AND state IN ('queued', 'running')) < ?";

    /// `[started_at_ms, id]`; changes one row only if the job was still queued.
    pub const CLAIM: &str = "UPDATE audit_export_jobs SET state = 'running', started_at_ms = ? \
        WHERE id = ? AND state = 'queued'";

    /// `[upload_id, id]`: the multipart upload the running job writes, so a cut-off run's upload
    /// can be aborted.
    pub const SET_UPLOAD: &str =
        "UPDATE audit_export_jobs SET upload_id = ? WHERE id = ? AND state = 'running'";

    /// `[finished_at_ms, object_key, events, bytes, parts, chain_size, checkpoint, anchor,
    /// file_expires_at_ms, id]`.
    pub const FINISH: &str = "UPDATE audit_export_jobs SET state = 'ready', finished_at_ms = ?, \
        object_key = ?, events = ?, bytes = ?, parts = ?, chain_size = ?, checkpoint = ?, \
        anchor = ?, file_expires_at_ms = ?, upload_id = NULL WHERE id = ? AND state = 'running'";

    /// `[finished_at_ms, error, id]`.
    pub const FAIL: &str = "UPDATE audit_export_jobs SET state = 'failed', finished_at_ms = ?, \
        error = ?, upload_id = NULL WHERE id = ? AND state IN ('queued', 'running')";

    /// `[id]`: the file was deleted.
    pub const EXPIRE: &str = "UPDATE audit_export_jobs SET state = 'expired', object_key = NULL, \
        checkpoint = NULL, anchor = NULL WHERE id = ? AND state = 'ready'";
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(state: &str) -> JobRow {
        JobRow {
            id: id().into_string(),
            org_id: "org_1".into(),
            format: "jsonl".into(),
            filters: "{}".into(),
            state: state.into(),
            created_by: "usr_1".into(),
            created_at_ms: 1_000,
            ..Default::default()
        }
    }

    fn id() -> AuditExportJobId {
        AuditExportJobId::generate(1_000).unwrap()
    }

    #[test]
    fn the_body_is_the_streaming_exports_query() {
        let body: CreateExportJob = serde_json::from_str(
            r#"{"format":"csv","action":"api_key.*","until":"2026-12-01T08:00:00Z"}"#,
        )
        .unwrap();
        let q = body.query().unwrap();
        let same = ExportQuery::parse(vec![
            ("format".into(), "csv".into()),
            ("action".into(), "api_key.*".into()),
            ("until".into(), "2026-12-01T08:00:00Z".into()),
        ])
        .unwrap();
        assert_eq!(q, same);
        // What the row stores (the audit event's filters) reads back as the same query.
        let stored = stored_query("csv", &q.filters().to_string()).unwrap();
        assert_eq!(stored, q);
        assert_eq!(stored.page_sql(), same.page_sql());
        // Bad input is the parser's 4xx, never a panic.
        for bad in [
            r#"{"format":"xml"}"#,
            r#"{"since":"yesterday"}"#,
            r#"{"since":"2026-12-02T00:00:00Z","until":"2026-12-01T00:00:00Z"}"#,
        ] {
            let b: CreateExportJob = serde_json::from_str(bad).unwrap();
            assert!(b.query().unwrap_err().status() < 500, "{bad}");
        }
        assert!(serde_json::from_str::<CreateExportJob>(r#"{"limit":"1"}"#).is_err());
        assert!(stored_query("jsonl", r#"{"actor":1}"#).is_err());
        assert!(stored_query("xml", "{}").is_err());
    }

    #[test]
    fn the_state_machine_has_only_its_edges() {
        use JobState::*;
        let all = [Queued, Running, Ready, Failed, Expired];
        let legal = [
            (Queued, Running),
            (Running, Ready),
            (Queued, Failed),
            (Running, Failed),
            (Ready, Expired),
        ];
        for from in all {
            for to in all {
                assert_eq!(
                    check_transition(from, to).is_ok(),
                    legal.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
            assert_eq!(JobState::parse(from.as_str()), Ok(from));
            assert_eq!(
                serde_json::to_value(from).unwrap(),
                serde_json::json!(from.as_str())
            );
        }
        assert!(JobState::parse("done").is_err());
    }

    #[test]
    fn a_row_is_read_only_in_its_states_shape() {
        assert_eq!(
            ExportJob::from_row(row("queued")).unwrap().phase,
            Phase::Queued
        );
        // A running job without its start, a ready one without its file, a failed one without
        // a reason: errors, never defaults.
        assert!(ExportJob::from_row(row("running")).is_err());
        assert!(ExportJob::from_row(row("ready")).is_err());
        assert!(ExportJob::from_row(row("failed")).is_err());
        assert!(ExportJob::from_row(row("paused")).is_err());
        let ready = JobRow {
            started_at_ms: Some(2_000),
            finished_at_ms: Some(3_000),
            object_key: Some("audit-exports/org_1/x.jsonl".into()),
            events: Some(5),
            bytes: Some(900),
            parts: Some(1),
            chain_size: Some(7),
            checkpoint: Some("note".into()),
            file_expires_at_ms: Some(3_000 + FILE_TTL_MS),
            ..row("ready")
        };
        let job = ExportJob::from_row(ready.clone()).unwrap();
        assert_eq!(job.phase.state(), JobState::Ready);
        let link = sign_link(&[1; 32], "https://ep.test", &job.id, 100);
        let v = job.view(Some(link.clone()));
        assert_eq!((v.events, v.bytes, v.parts), (Some(5), Some(900), Some(1)));
        assert_eq!(v.download, Some(link));
        // Downloadable while ready and before its file's time, not after (cron or no cron).
        let expires_at = 3_000 + FILE_TTL_MS;
        assert!(job.downloadable_file(expires_at - 1).is_some());
        assert!(job.downloadable_file(expires_at).is_none());
        assert!(ExportJob::from_row(row("queued"))
            .unwrap()
            .downloadable_file(0)
            .is_none());
        let failed = JobRow {
            finished_at_ms: Some(3_000),
            error: Some("r2: boom".into()),
            ..row("failed")
        };
        let v = ExportJob::from_row(failed).unwrap().view(None);
        assert_eq!(v.error.as_deref(), Some("r2: boom"));
        assert!(v.download.is_none());
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["state"], "failed");
    }

    #[test]
    fn links_are_bound_to_the_job_and_short_lived() {
        let key = [9u8; 32];
        let job = id();
        let link = sign_link(&key, "https://ep.test", &job, 1_000);
        let url = url_parts(&link.url);
        assert_eq!(url.0, format!("https://ep.test{}", download_path(&job)));
        let (expires, sig) = (url.1, url.2);
        assert_eq!(expires, 1_000 + LINK_TTL_SECONDS);
        assert_eq!(verify_link(&key, &job, expires, &sig, 1_001), Ok(()));
        assert_eq!(
            verify_link(&key, &job, expires, &sig, expires + 1),
            Err(UrlError::Expired)
        );
        // Another job, a later expiry, a changed signature: refused.
        let other = AuditExportJobId::generate(2_000).unwrap();
        assert_eq!(
            verify_link(&key, &other, expires, &sig, 1_001),
            Err(UrlError::BadSignature)
        );
        assert_eq!(
            verify_link(&key, &job, expires + 60, &sig, 1_001),
            Err(UrlError::BadSignature)
        );
        let mut tampered = sig.clone();
        tampered.replace_range(0..1, if sig.starts_with('0') { "1" } else { "0" });
        assert_eq!(
            verify_link(&key, &job, expires, &tampered, 1_001),
            Err(UrlError::BadSignature)
        );
        // Upload-part URLs are signed under another purpose: one never passes for the other.
        let part = crate::fl::upload_url::sign(&key, job.as_str(), "", 0, expires);
        assert_eq!(
            verify_link(&key, &job, expires, &part, 1_001),
            Err(UrlError::BadSignature)
        );
    }

    fn url_parts(url: &str) -> (String, i64, String) {
        let (path, query) = url.split_once('?').unwrap();
        let mut expires = 0;
        let mut sig = String::new();
        for kv in query.split('&') {
            match kv.split_once('=').unwrap() {
                ("expires", v) => expires = v.parse().unwrap(),
                ("signature", v) => sig = v.to_owned(),
                _ => panic!("{kv}"),
            }
        }
        (path.to_owned(), expires, sig)
    }

    #[test]
    fn parts_are_fixed_size_and_memory_stays_bounded() {
        let mut b = PartBuffer::with_part_size(10);
        let mut parts = Vec::new();
        let mut whole = Vec::new();
        for n in 0..37u8 {
            let page = vec![n; (n % 7) as usize];
            whole.extend_from_slice(&page);
            b.push(&page);
            while let Some(p) = b.take_full().unwrap() {
                parts.push(p);
            }
            // At most one part's worth waits after draining.
            assert!(b.buf.len() < 10);
        }
        assert!(b.started());
        let end = b.finish().unwrap();
        assert!(parts.iter().all(|(_, p)| p.len() == 10));
        let numbers: Vec<u16> = parts.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, (1..=parts.len() as u16).collect::<Vec<_>>());
        let (last_number, last) = end.last.unwrap();
        assert_eq!(last_number as usize, parts.len() + 1);
        assert_eq!(end.parts as usize, parts.len() + 1);
        assert_eq!(end.bytes as usize, whole.len());
        let mut joined: Vec<u8> = parts.into_iter().flat_map(|(_, p)| p).collect();
        joined.extend_from_slice(&last);
        assert_eq!(joined, whole);
    }

    #[test]
    fn a_small_file_is_one_piece_and_the_part_count_is_capped() {
        let mut b = PartBuffer::new();
        b.push(b"short");
        assert_eq!(b.take_full().unwrap(), None);
        assert!(!b.started());
        let end = b.finish().unwrap();
        assert_eq!(end.last, Some((1, b"short".to_vec())));
        assert_eq!((end.parts, end.bytes), (1, 5));
        let mut b = PartBuffer::with_part_size(1);
        b.push(&vec![0u8; MAX_PARTS as usize + 1]);
        for _ in 0..MAX_PARTS {
            assert!(b.take_full().unwrap().is_some());
        }
        assert_eq!(b.take_full(), Err(TooManyParts));
    }

    #[test]
    fn an_exact_multiple_of_the_part_size_ends_with_its_last_full_part() {
        let mut b = PartBuffer::with_part_size(10);
        b.push(&[7u8; 30]);
        let mut numbers = Vec::new();
        while let Some((n, p)) = b.take_full().unwrap() {
            assert_eq!(p.len(), 10);
            numbers.push(n);
        }
        assert_eq!(numbers, vec![1, 2, 3]);
        let end = b.finish().unwrap();
        // No empty fourth part: R2 would refuse a zero-byte part after full ones.
        assert_eq!(end.last, None);
        assert_eq!((end.parts, end.bytes), (3, 30));
        // Exactly MAX_PARTS full parts fit: no TooManyParts for a part that is not there.
        let mut b = PartBuffer::with_part_size(1);
        b.push(&vec![0u8; MAX_PARTS as usize]);
        for _ in 0..MAX_PARTS {
            assert!(b.take_full().unwrap().is_some());
        }
        let end = b.finish().unwrap();
        assert_eq!(end.last, None);
        assert_eq!(end.parts, MAX_PARTS);
        // An empty export is still one (empty) file.
        let end = PartBuffer::with_part_size(10).finish().unwrap();
        assert_eq!(end.last, Some((1, Vec::new())));
    }

    /// The cron's pick against the real schema: each org's oldest queued job, oldest first,
    /// one per org, so an org with a long queue holds back no one.
    #[test]
    fn the_cron_picks_one_queued_job_per_org_oldest_first() {
        use crate::store::testing::MemSql;
        use crate::store::SqlExec;

        let db = MemSql::with_d1_schema();
        for org in ["org_a", "org_b", "org_c"] {
            db.exec(
                "INSERT INTO orgs (id, slug, name, created_at_ms) VALUES (?, ?, ?, 0)",
                &[org.into(), org.into(), org.into()],
            )
            .unwrap();
        }
        // org_a queued three jobs first; org_b one later; org_c one, but it is running.
        let jobs = [
            ("aex_a1", "org_a", 10, "queued"),
            ("aex_a2", "org_a", 11, "queued"),
            ("aex_a3", "org_a", 12, "queued"),
            ("aex_b1", "org_b", 20, "queued"),
            ("aex_c1", "org_c", 5, "running"),
        ];
        for (id, org, at, state) in jobs {
            db.exec(
                "INSERT INTO audit_export_jobs (id, org_id, format, filters, state, created_by, \
                 created_at_ms) VALUES (?, ?, 'jsonl', '{}', ?, 'usr_1', ?)",
                &[id.into(), org.into(), state.into(), i64::from(at).into()],
            )
            .unwrap();
        }
        let picked = |limit: i64| -> Vec<String> {
            db.query(&sql::select_queued(), &[limit.into()])
                .unwrap()
                .iter()
                .map(|r| r.get::<String>(0).unwrap())
                .collect()
        };
        assert_eq!(picked(2), ["aex_a1", "aex_b1"]);
        assert_eq!(picked(10), ["aex_a1", "aex_b1"]);
        assert_eq!(picked(1), ["aex_a1"]);
    }

    #[test]
    fn files_live_under_their_orgs_prefix() {
        let job = id();
        assert_eq!(
            object_key("org_1", &job, Format::Csv),
            format!("audit-exports/org_1/{job}.csv")
        );
    }
}
