//! Audit export jobs: `POST …/audit-events/export-jobs` records a job, the cron writes its file
//! to R2, `GET …/export-jobs/{job}` shows it with a short-lived signed link, and
//! `GET /v1/audit-export-jobs/{job}/download` serves the file to whoever holds that link. What a
//! job is and may become is `edgeplane_core::audit::export_job`; this module binds it to D1, R2
//! and the cron.
//!
//! **Why the cron runs the jobs.** Of the platform's background paths, the cron is the one that
//! already holds everything a job needs in the worker that owns it: the D1 binding, the `MODELS`
//! bucket and the checkpoint key (derived from `ROOT_SECRET`) are the gateway's, and its
//! maintenance already works through bounded batches each run. The queue's consumer is the
//! review worker, which has no bucket and no reason to read audit chains; a Durable Object
//! alarm would add a class (and a migration) only to wake up once per job. The price is latency:
//! a job starts at the next cron run (every 5 minutes), which suits a log too long to stream
//! interactively. A run works on at most [`JOBS_PER_RUN`] jobs; a job whose run was cut off
//! (its isolate died) is failed by a later run after [`RUN_LEASE_MS`], its upload aborted.
//!
//! **Same bytes as the stream.** The file is written from
//! [`super::audit::ExportPlan::page`], the reader the streaming export sends from, with the
//! same snapshot rules, so for the same filters and chain size both hold the same bytes.
//!
//! **Bounded memory.** Pages are pushed into a [`PartBuffer`], which hands out parts of exactly
//! [`edgeplane_core::audit::export_job::PART_BYTES`] (R2's minimum); each is uploaded as soon
//! as it is complete. A file smaller than one part is a single `put`.

use edgeplane_core::audit::export_job::{
    self, object_key, sql, CreateExportJob, ExportJob, ExportJobView, FileFacts, JobRow, JobState,
    PartBuffer, Phase, TooManyParts, FILE_TTL_MS, JOBS_PER_RUN, MAX_ACTIVE_PER_ORG, RUN_LEASE_MS,
};
use edgeplane_core::audit::{AuditAction, Event, Facts};
use edgeplane_core::crypto::kdf::KeyPurpose;
use edgeplane_core::ids::AuditExportJobId;
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::audit::commit_with_facts;
use edgeplane_runtime::db::{Db, OrInternal, OrgBatch, Stmt};
use serde_json::json;
use worker::{Bucket, Env, Response};

use super::audit::{set_export_headers, ExportPlan};
use crate::config::{self, Config};
use crate::cx::Cx;
use crate::http::ctx::{now_ms, now_secs};
use crate::http::log;
use crate::http::signed_url;

/// The bucket the files go to: the deployment's one bucket, under `audit-exports/{org}/`.
fn bucket(env: &Env) -> Result<Bucket, ApiError> {
    env.bucket("MODELS").or_internal("r2 binding")
}

fn link_key(cfg: &Config) -> [u8; 32] {
    cfg.root.derive(KeyPurpose::DownloadUrls)
}

fn corrupt(e: impl std::fmt::Display) -> ApiError {
    log::error("audit export job row", &e.to_string());
    ApiError::internal()
}

async fn read(
    db: &Db,
    sql: &str,
    args: Vec<edgeplane_runtime::db::Val>,
) -> Result<Option<ExportJob>, ApiError> {
    let row: Option<JobRow> = db.first(sql, args).await?;
    row.map(ExportJob::from_row).transpose().map_err(corrupt)
}

/// Records a queued job for the org's export of `body`'s format and filters (validated by the
/// streaming export's own parser), audited in the same batch. At most
/// [`MAX_ACTIVE_PER_ORG`] jobs wait or run per org (a guard in the batch): more is 409.
pub async fn create(cx: &Cx<'_>, body: CreateExportJob) -> Result<ExportJobView, ApiError> {
    let q = body.query()?;
    let org = cx.org()?.org_id.clone();
    let now = now_ms();
    let id = AuditExportJobId::generate(now)?;
    let filters = q.filters();
    let batch = OrgBatch::new(&org)
        .guard(
            sql::UNDER_CAP,
            args![org.as_str(), MAX_ACTIVE_PER_ORG],
            ApiError::conflict(format!(
                "this org already has {MAX_ACTIVE_PER_ORG} audit export jobs queued or running; \
                 wait for one to finish"
            )),
        )
        .insert(
            "audit_export_jobs",
            &[
                "id",
                "format",
                "filters",
                "state",
                "created_by",
                "created_at_ms",
            ],
            args![
                id.as_str(),
                q.format.name(),
                filters.to_string(),
                "queued",
                cx.principal.id.as_str(),
                now
            ],
        );
    let event = Event::new(
        AuditAction::AuditExportJobCreated,
        "audit_export_job",
        id.as_str(),
    )
    .meta(json!({"format": q.format.name(), "filters": filters}));
    cx.commit(batch, [event]).await?;
    let job = read(
        cx.db(),
        &sql::select_in_org(),
        args![id.as_str(), org.as_str()],
    )
    .await?
    .ok_or_else(ApiError::internal)?;
    Ok(job.view(None))
}

/// One of the org's jobs (another org's is the same 404 as a missing one); a ready job comes
/// with a fresh download link until its file's time has passed.
pub async fn get(cx: &Cx<'_>, id: &AuditExportJobId) -> Result<ExportJobView, ApiError> {
    let org = &cx.org()?.org_id;
    let job = read(
        cx.db(),
        &sql::select_in_org(),
        args![id.as_str(), org.as_str()],
    )
    .await?
    .ok_or_else(|| ApiError::not_found("audit export job"))?;
    let link = job
        .downloadable_file(now_ms())
        .map(|_| export_job::sign_link(&link_key(&cx.cfg), &cx.cfg.issuer, &job.id, now_secs()));
    Ok(job.view(link))
}

/// The file of a ready job, for whoever holds its signed link: the signature and expiry are
/// checked (constant time) before anything is read; a file past its time is refused even before
/// the cron deletes it. Each served download is audited (`audit.export_downloaded`, in the
/// job's org, by the anonymous actor: the link is the only authority; its metadata names the
/// job, never the link), then the object streams from R2 with the checkpoint and anchor in the
/// streaming export's headers.
pub async fn download(
    cx: &Cx<'_>,
    id: &AuditExportJobId,
    expires: i64,
    signature: &str,
) -> Result<Response, ApiError> {
    export_job::verify_link(&link_key(&cx.cfg), id, expires, signature, now_secs()).map_err(
        |e| signed_url::refused(e, "download link", "read the job again for a fresh one"),
    )?;
    let gone = || ApiError::not_found("audit export file");
    let job = read(cx.db(), &sql::select_by_id(), args![id.as_str()])
        .await?
        .ok_or_else(gone)?;
    let file = job.downloadable_file(now_ms()).ok_or_else(gone)?;
    let obj = bucket(cx.env)?
        .get(&file.object_key)
        .execute()
        .await
        .or_internal("r2 get")?
        .ok_or_else(gone)?;
    let body = obj.body().ok_or_else(gone)?;
    let event = Event::new(
        AuditAction::AuditExportDownloaded,
        "audit_export_job",
        job.id.as_str(),
    )
    .in_org(&job.org_id)
    .meta(json!({"job": job.id.as_str(), "format": job.query.format.name(), "bytes": file.bytes}));
    cx.commit(Vec::<Stmt>::new(), [event]).await?;
    let mut resp =
        Response::from_body(body.response_body().or_internal("r2 body")?).or_internal("body")?;
    let h = resp.headers_mut();
    set_export_headers(
        h,
        job.query.format,
        file.chain_size,
        file.checkpoint.as_deref(),
        file.anchor.as_deref(),
    );
    let _ = h.set(
        "content-disposition",
        &format!(
            "attachment; filename=\"audit-{}.{}\"",
            job.id,
            job.query.format.name()
        ),
    );
    Ok(resp)
}

/// Why a job failed: the reason its row (and its audit event) states. It names the kind of
/// failure, never a secret or a URL.
#[derive(Debug)]
enum JobFailure {
    Read(String),
    Storage(String),
    TooLarge(TooManyParts),
    Interrupted,
}

impl std::fmt::Display for JobFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Read(e) => write!(f, "reading the audit log failed: {e}"),
            Self::Storage(e) => write!(f, "writing to R2 failed: {e}"),
            Self::TooLarge(e) => write!(f, "{e}"),
            Self::Interrupted => f.write_str("the job's run was cut off before it finished"),
        }
    }
}

impl From<TooManyParts> for JobFailure {
    fn from(e: TooManyParts) -> Self {
        Self::TooLarge(e)
    }
}

fn r2(e: worker::Error) -> JobFailure {
    JobFailure::Storage(e.to_string())
}

fn read_failed(e: ApiError) -> JobFailure {
    JobFailure::Read(e.message)
}

/// An R2 multipart upload in progress; its id is kept (here and in the row) so a failure, or
/// a later cron run after a cut-off one, aborts it.
struct Upload {
    id: String,
    upload: worker::MultipartUpload,
    parts: Vec<worker::UploadedPart>,
}

/// Writes the job's file: the plan's pages, cut into parts as they come.
async fn write_file(
    env: &Env,
    db: &Db,
    cfg: &Config,
    job: &ExportJob,
    upload: &mut Option<Upload>,
) -> Result<FileFacts, JobFailure> {
    let plan = ExportPlan::take(env, db, cfg, &job.org_id, &job.query)
        .await
        .map_err(read_failed)?;
    let key = object_key(&job.org_id, &job.id, job.query.format);
    let bucket = bucket(env).map_err(read_failed)?;
    let mut buf = PartBuffer::new();
    let mut after = Some(plan.start);
    let mut events = 0i64;
    while let Some(a) = after {
        // A fresh retry budget per page, as the stream has.
        let page_db = Db::from_env(env).map_err(read_failed)?;
        let page = plan.page(&page_db, a).await.map_err(read_failed)?;
        events += page.events as i64;
        after = page.next_after;
        buf.push(&page.bytes);
        while let Some((number, part)) = buf.take_full()? {
            if upload.is_none() {
                let started = bucket
                    .create_multipart_upload(key.clone())
                    .execute()
                    .await
                    .map_err(r2)?;
                let upload_id = started.upload_id().await;
                // Held before the row is written: if that write fails, the caller's error path
                // still has the id to abort the upload with.
                *upload = Some(Upload {
                    id: upload_id.clone(),
                    upload: started,
                    parts: Vec::new(),
                });
                db.run_unaudited(sql::SET_UPLOAD, args![upload_id.as_str(), job.id.as_str()])
                    .await
                    .map_err(read_failed)?;
            }
            if let Some(u) = upload.as_mut() {
                u.parts
                    .push(u.upload.upload_part(number, part).await.map_err(r2)?);
            }
        }
    }
    let end = buf.finish()?;
    match upload.as_mut() {
        Some(u) => {
            // None when the file was an exact multiple of the part size.
            if let Some((number, last)) = end.last {
                u.parts
                    .push(u.upload.upload_part(number, last).await.map_err(r2)?);
            }
            let parts = std::mem::take(&mut u.parts);
            // `complete` takes the upload: a failure leaves its id to abort with.
            let done = bucket
                .resume_multipart_upload(key.clone(), u.id.clone())
                .map_err(r2)?;
            done.complete(parts).await.map_err(r2)?;
            *upload = None;
        }
        None => {
            let whole = end.last.map(|(_, bytes)| bytes).unwrap_or_default();
            bucket.put(key.clone(), whole).execute().await.map_err(r2)?;
        }
    }
    Ok(FileFacts {
        object_key: key,
        events,
        bytes: end.bytes as i64,
        parts: i64::from(end.parts),
        chain_size: plan.size,
        checkpoint: plan.checkpoint,
        anchor: plan.anchor,
    })
}

/// Aborts an unfinished multipart upload (a failed or cut-off job's). A leftover is logged: R2
/// also expires unfinished uploads by itself.
async fn abort(env: &Env, key: &str, upload_id: &str) {
    let aborted = match bucket(env) {
        Ok(b) => match b.resume_multipart_upload(key, upload_id) {
            Ok(u) => u.abort().await,
            Err(e) => Err(e),
        },
        Err(_) => return,
    };
    if let Err(e) = aborted {
        log::warn("audit export abort", &e.to_string());
    }
}

/// Deletes a job's file, if there is one: on a job that ended without a `ready` row (its end
/// could not be recorded, its run was cut off after `complete`, it failed) and on one past its
/// time. R2's delete is idempotent, so calling this for a key never written is harmless. A
/// failure is logged; the bucket's lifecycle rule on `audit-exports/` (README) is the backstop.
async fn delete_file(env: &Env, key: &str) -> bool {
    let deleted = match bucket(env) {
        Ok(b) => b.delete(key).await,
        Err(_) => return false,
    };
    match deleted {
        Ok(()) => true,
        Err(e) => {
            log::warn("audit export delete", &e.to_string());
            false
        }
    }
}

/// The cron's record of a job's move: the row's update (guarded on `from`, so a raced move
/// changes nothing) and its audit event (`action`) in one batch, by the one path for code that
/// serves no request.
async fn record_move(
    env: &Env,
    db: &Db,
    job: &ExportJob,
    from: &str,
    update: Stmt,
    action: AuditAction,
    meta: serde_json::Value,
) -> Result<(), ApiError> {
    let stmts = vec![
        Stmt::guard(
            "EXISTS (SELECT 1 FROM audit_export_jobs WHERE id = ? AND state = ?)",
            args![job.id.as_str(), from],
            ApiError::conflict(format!("the export job is no longer {from}")),
        ),
        update,
    ];
    let event = Event::new(action, "audit_export_job", job.id.as_str())
        .in_org(&job.org_id)
        .meta(meta);
    // The job's row is written unscoped here (as the cron's audit prune writes): the event
    // names its org itself.
    let facts = Facts::system_unscoped("cron");
    commit_with_facts(env, db, stmts, [event], facts).await?;
    Ok(())
}

/// A job's end (`ready` or `failed`) with `audit.export_job_finished`.
async fn record_end(
    env: &Env,
    db: &Db,
    job: &ExportJob,
    from: &str,
    update: Stmt,
    meta: serde_json::Value,
) -> Result<(), ApiError> {
    let action = AuditAction::AuditExportJobFinished;
    record_move(env, db, job, from, update, action, meta).await
}

async fn fail(env: &Env, db: &Db, job: &ExportJob, from: &str, why: &JobFailure, now: i64) {
    let reason = why.to_string();
    log::warn("audit export job failed", &format!("{}: {reason}", job.id));
    let update = Stmt::new(sql::FAIL, args![now, reason.as_str(), job.id.as_str()]);
    let meta = json!({"state": "failed", "error": reason});
    if let Err(e) = record_end(env, db, job, from, update, meta).await {
        log::error("audit export job", &format!("{}: {}", job.id, e.message));
    }
}

/// Fails a queued job whose row cannot be read (its filters or id no longer parse), by its
/// raw id, with `audit.export_job_finished` in the same batch, guarded on `queued`.
async fn fail_unreadable(
    env: &Env,
    db: &Db,
    row: &JobRow,
    why: &export_job::RowError,
    now: i64,
) -> &'static str {
    log::error("audit export job row", &format!("{}: {why}", row.id));
    let reason = "the job's stored row cannot be read";
    let stmts = vec![
        Stmt::guard(
            "EXISTS (SELECT 1 FROM audit_export_jobs WHERE id = ? AND state = 'queued')",
            args![row.id.as_str()],
            ApiError::conflict("the export job is no longer queued"),
        ),
        Stmt::new(sql::FAIL, args![now, reason, row.id.as_str()]),
    ];
    let event = Event::new(
        AuditAction::AuditExportJobFinished,
        "audit_export_job",
        row.id.as_str(),
    )
    .in_org(&row.org_id)
    .meta(json!({"state": "failed", "error": reason}));
    match commit_with_facts(env, db, stmts, [event], Facts::system_unscoped("cron")).await {
        Ok(_) => "failed",
        Err(e) => {
            log::error(
                "audit export job",
                &format!("{}: {}", row.id, ApiError::from(e).message),
            );
            "error"
        }
    }
}

/// Claims a queued job and runs it to `ready` or `failed`.
async fn run_job(env: &Env, db: &Db, cfg: &Config, job: ExportJob) -> &'static str {
    let started = now_ms();
    match db
        .run_unaudited(sql::CLAIM, args![started, job.id.as_str()])
        .await
    {
        Ok(w) if w.changes == 1 => {}
        // Another run claimed it first.
        Ok(_) => return "skipped",
        Err(_) => return "error",
    }
    let mut upload = None;
    match write_file(env, db, cfg, &job, &mut upload).await {
        Ok(file) => {
            let now = now_ms();
            let update = Stmt::new(
                sql::FINISH,
                args![
                    now,
                    file.object_key.as_str(),
                    file.events,
                    file.bytes,
                    file.parts,
                    file.chain_size,
                    file.checkpoint.clone(),
                    file.anchor.clone(),
                    now + FILE_TTL_MS,
                    job.id.as_str()
                ],
            );
            let meta = json!({
                "state": "ready",
                "events": file.events,
                "bytes": file.bytes,
                "parts": file.parts,
                "chain_size": file.chain_size,
            });
            match record_end(env, db, &job, "running", update, meta).await {
                Ok(()) => "ready",
                Err(e) => {
                    // No `ready` row points at the file: nothing would ever delete it. The job
                    // stays `running` and a later run fails it (deleting again, harmlessly).
                    // Unless the batch did land and only its answer was lost: then the row is
                    // `ready`, and its file must stay.
                    log::error("audit export job", &format!("{}: {}", job.id, e.message));
                    let landed = read(db, &sql::select_by_id(), args![job.id.as_str()])
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|j| j.phase.state() == JobState::Ready);
                    if !landed {
                        delete_file(env, &file.object_key).await;
                    }
                    "error"
                }
            }
        }
        Err(why) => {
            let key = object_key(&job.org_id, &job.id, job.query.format);
            if let Some(u) = upload {
                abort(env, &key, &u.id).await;
            }
            delete_file(env, &key).await;
            fail(env, db, &job, "running", &why, now_ms()).await;
            "failed"
        }
    }
}

/// The cron's task: fails jobs cut off mid-run (aborting their uploads), deletes files past
/// their time, then runs the oldest queued jobs.
pub async fn run_cron(env: &Env, db: &Db, now: i64) -> serde_json::Value {
    let Ok(cfg) = config::load(env) else {
        return json!({"error": true});
    };
    let list = |sql: String, arg: i64| async move {
        // A failed read skips this step for this run (logged); the next run tries again.
        let rows: Vec<JobRow> = match db.all(&sql, args![arg]).await {
            Ok(rows) => rows,
            Err(e) => {
                log::error("audit export jobs", &e.message);
                Vec::new()
            }
        };
        rows.into_iter()
            .filter_map(|r| match ExportJob::from_row(r) {
                Ok(j) => Some(j),
                Err(e) => {
                    log::error("audit export job row", &e.to_string());
                    None
                }
            })
            .collect::<Vec<_>>()
    };
    let mut interrupted = 0;
    for job in list(sql::select_stale(), now - RUN_LEASE_MS).await {
        let upload: Option<String> = db
            .first::<UploadRow>(
                "SELECT upload_id FROM audit_export_jobs WHERE id = ?",
                args![job.id.as_str()],
            )
            .await
            .ok()
            .flatten()
            .and_then(|r| r.upload_id);
        let key = object_key(&job.org_id, &job.id, job.query.format);
        if let Some(id) = upload {
            abort(env, &key, &id).await;
        }
        // The run may have been cut off after `complete` (or its end not recorded): the file
        // may exist with no row that would ever delete it.
        delete_file(env, &key).await;
        fail(env, db, &job, "running", &JobFailure::Interrupted, now).await;
        interrupted += 1;
    }
    let mut expired = 0;
    for job in list(sql::select_expiring(), now).await {
        let Phase::Ready { file, .. } = &job.phase else {
            continue;
        };
        // The file first: a failed record leaves the job `ready` (its downloads already refused
        // past its time) and the next run deletes again, harmlessly, and records it then.
        if !delete_file(env, &file.object_key).await {
            continue;
        }
        let update = Stmt::new(sql::EXPIRE, args![job.id.as_str()]);
        let meta = json!({"state": "expired", "object_deleted": true});
        let action = AuditAction::AuditExportJobExpired;
        match record_move(env, db, &job, "ready", update, action, meta).await {
            Ok(()) => expired += 1,
            Err(e) => log::error("audit export job", &format!("{}: {}", job.id, e.message)),
        }
    }
    let mut outcomes = serde_json::Map::new();
    let queued: Vec<JobRow> = match db.all(&sql::select_queued(), args![JOBS_PER_RUN]).await {
        Ok(rows) => rows,
        Err(e) => {
            log::error("audit export jobs", &e.message);
            Vec::new()
        }
    };
    for row in queued {
        let id = row.id.clone();
        let outcome = match ExportJob::from_row(row.clone()) {
            Ok(job) => run_job(env, db, &cfg, job).await,
            // Skipping it would leave it first in its org's queue forever: fail it by id.
            Err(e) => fail_unreadable(env, db, &row, &e, now).await,
        };
        outcomes.insert(id, outcome.into());
    }
    json!({"ok": true, "interrupted": interrupted, "expired": expired, "jobs": outcomes})
}

#[derive(serde::Deserialize)]
struct UploadRow {
    upload_id: Option<String>,
}
