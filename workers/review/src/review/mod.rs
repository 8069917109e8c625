//! One code review, from claim to posted comments. Each phase is a conditional state
//! transition in D1 (queued -> fetching -> indexing -> reviewing -> commenting -> done), so a
//! superseded review stops at its next step and a redelivered message finds the work done.
//! Source code lives only in this invocation's memory; what crosses a retry is sealed.

mod context;
mod fetch;
mod job;
mod post;
mod store;

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::queue::retry_delay_seconds;
use edgeplane_core::review::diff::FileDiff;
use edgeplane_core::review::findings::{self};
use edgeplane_core::review::platform::Anchor;
use edgeplane_core::review::prompt::{self, Budget};
use edgeplane_core::review::provider;
use edgeplane_core::review::select::SkipReason;
use edgeplane_core::review::status::ReviewStatus;
use edgeplane_core::views::review::SkippedFile;
use edgeplane_core::ApiError;
use edgeplane_runtime::audit::commit_with_facts;
use edgeplane_runtime::clock::now_ms;
use edgeplane_runtime::db::OrgBatch;
use edgeplane_runtime::{args, log, Db};
use serde::Deserialize;
use worker::Env;

use crate::retry::{retry_base, Outcome, RETRY_CAP_SECONDS};
use job::{facts, prepare, upstream, Job, Stop, Work};
use store::Claim;

pub async fn run(env: &Env, org_id: &str, review_id: &str) -> Outcome {
    let db = match Db::from_env(env) {
        Ok(db) => db,
        Err(_) => {
            return Outcome::Retry {
                delay_seconds: retry_base(env),
            }
        }
    };
    let now = now_ms();
    let row = match store::claim(&db, org_id, review_id, now).await {
        Ok(Claim::Claimed(r)) => *r,
        Ok(Claim::Finished) => {
            // A redelivery of a review that has ended: acknowledged, nothing redone. Logged so
            // an operator (and the end-to-end suite) can see the message was handled.
            log::info(
                "review already finished; message acknowledged",
                serde_json::json!({"review": review_id}),
            );
            return Outcome::Done;
        }
        Ok(Claim::Missing) => return Outcome::Done,
        Ok(Claim::Busy { retry_in_secs }) => {
            return Outcome::Retry {
                delay_seconds: retry_in_secs,
            }
        }
        Err(_) => {
            return Outcome::Retry {
                delay_seconds: retry_base(env),
            }
        }
    };
    let attempts = row.attempts.max(1) as u32;
    let id = row.id.clone();
    let job = match prepare(env, db, row).await {
        Ok(job) => job,
        Err((db, stop)) => return conclude(env, &db, org_id, &id, attempts, stop).await,
    };
    match pipeline(&job).await {
        Ok(()) => Outcome::Done,
        Err(stop) => conclude(env, &job.db, org_id, &id, attempts, stop).await,
    }
}

async fn conclude(
    env: &Env,
    db: &Db,
    org_id: &str,
    id: &str,
    attempts: u32,
    stop: Stop,
) -> Outcome {
    let result = match stop {
        Stop::Gone => return Outcome::Done,
        Stop::Transient {
            reason,
            retry_after,
        } => {
            log::warn("review will be retried", &format!("{id}: {reason}"));
            let backoff = retry_delay_seconds(attempts, retry_base(env), RETRY_CAP_SECONDS);
            let _ = store::release(db, id, &reason).await;
            return Outcome::Retry {
                delay_seconds: backoff.max(retry_after.unwrap_or(0)),
            };
        }
        Stop::Permanent(reason) => {
            log::warn("review failed", &format!("{id}: {reason}"));
            finish_unsuccessful(
                env,
                db,
                org_id,
                id,
                ReviewStatus::Failed,
                None,
                Some(&reason),
            )
            .await
        }
        Stop::Skip(reason) => {
            finish_unsuccessful(
                env,
                db,
                org_id,
                id,
                ReviewStatus::Skipped,
                Some(reason),
                None,
            )
            .await
        }
    };
    match result {
        Ok(()) => Outcome::Done,
        Err(_) => Outcome::Retry {
            delay_seconds: retry_base(env),
        },
    }
}

/// Ends a review as failed or skipped (an unfinished one only); failures are audited.
pub async fn finish_unsuccessful(
    env: &Env,
    db: &Db,
    org_id: &str,
    id: &str,
    status: ReviewStatus,
    reason: Option<&str>,
    error: Option<&str>,
) -> Result<(), ApiError> {
    let batch = OrgBatch::new(org_id).update(
        "reviews",
        "status = ?, status_reason = coalesce(?, status_reason), error = coalesce(?, error), \
         finished_at_ms = ?, lease_until_ms = NULL, work_sealed = NULL",
        args![status.as_str(), reason, error, now_ms()],
        &format!("id = ? AND status IN {}", ReviewStatus::UNFINISHED_SQL),
        args![id],
    );
    let events = if status == ReviewStatus::Failed {
        vec![Event::new(AuditAction::ReviewFailed, "review", id)
            .meta(serde_json::json!({"error": error}))]
    } else {
        vec![]
    };
    commit_with_facts(env, db, batch, events, facts(org_id)).await?;
    Ok(())
}

async fn pipeline(job: &Job) -> Result<(), Stop> {
    let resuming = job.row.status == ReviewStatus::Commenting && job.row.work_sealed.is_some();
    if resuming {
        let sealed = job.row.work_sealed.as_deref().unwrap_or_default();
        let work = edgeplane_core::review::sealed::decode(sealed)
            .and_then(|b| job.review_secret.open_work(&job.row.id, &b).ok())
            .and_then(|b| serde_json::from_slice::<Work>(&b).ok())
            .ok_or_else(|| {
                Stop::Permanent("the sealed work in progress could not be opened".into())
            })?;
        return post::post(job, &work, true).await;
    }
    // A retry that stopped in an earlier phase starts over from fetching.
    if job.row.status != ReviewStatus::Fetching
        && !store::advance(
            &job.db,
            &job.row.id,
            job.row.status,
            ReviewStatus::Fetching,
            now_ms(),
        )
        .await?
    {
        return Err(Stop::Gone);
    }
    let fetched = fetch::fetch(job).await?;
    if !store::advance(
        &job.db,
        &job.row.id,
        ReviewStatus::Fetching,
        ReviewStatus::Indexing,
        now_ms(),
    )
    .await?
    {
        return Err(Stop::Gone);
    }
    let ctx = context::build(job, &fetched).await?;
    if !store::advance(
        &job.db,
        &job.row.id,
        ReviewStatus::Indexing,
        ReviewStatus::Reviewing,
        now_ms(),
    )
    .await?
    {
        return Err(Stop::Gone);
    }
    let work = review(job, &fetched, &ctx).await?;
    post::post(job, &work, false).await
}

/// Asks the provider and validates its findings; seals the result and enters `commenting`.
async fn review(job: &Job, f: &fetch::Fetched, ctx: &context::Context) -> Result<Work, Stop> {
    let files: Vec<&FileDiff> = f.selected.iter().map(|s| &s.diff).collect();
    let chunks: Vec<_> = ctx.picked.iter().map(|i| &ctx.chunks[*i]).collect();
    let p = prompt::build(
        &f.info.title,
        &files,
        &chunks,
        &Budget {
            max_input_tokens: job.provider.max_input_tokens,
        },
    );
    let mut not_reviewed: Vec<(String, SkipReason)> = f.skipped.clone();
    not_reviewed.extend(
        p.omitted
            .iter()
            .map(|path| (path.clone(), SkipReason::TokenBudget)),
    );
    let included: Vec<&FileDiff> = files
        .iter()
        .copied()
        .filter(|d| p.included.contains(&d.path))
        .collect();
    let (summary, accepted, dropped, usage) = if included.is_empty() {
        (
            "No file in this change could be reviewed; see the list below.".to_owned(),
            Vec::new(),
            0,
            (Some(0), Some(0)),
        )
    } else {
        let call = provider::chat(
            job.provider.kind,
            &job.provider.base_url,
            &job.provider.model,
            p.system,
            &p.user,
            job.provider.max_output_tokens,
        );
        let resp = upstream(
            "the LLM provider",
            "the review request",
            job.provider_call(&call).await,
        )?;
        let completion =
            provider::parse_chat(job.provider.kind, &resp.body).map_err(Stop::Permanent)?;
        let out = findings::parse_output(&completion.text).map_err(|_| {
            Stop::Permanent(if completion.truncated {
                "the model's answer was cut off at max_output_tokens".into()
            } else {
                "the model's answer was not the requested JSON".into()
            })
        })?;
        let (ok, dropped) = findings::validate(&out.findings, &included);
        (
            out.summary,
            ok,
            dropped.len(),
            (
                completion.input_tokens.or(Some(p.estimated_tokens)),
                completion.output_tokens,
            ),
        )
    };
    let anchors: Vec<Anchor> = accepted
        .iter()
        .filter_map(|fd| {
            included
                .iter()
                .find(|d| d.path == fd.path)
                .and_then(|d| Anchor::of(d, fd))
        })
        .collect();
    if anchors.len() != accepted.len() {
        return Err(Stop::Permanent(
            "a validated finding lost its anchor".into(),
        ));
    }
    let work = Work {
        info: f.info.clone(),
        summary,
        findings: accepted,
        anchors,
        not_reviewed,
        dropped,
    };
    let plain = serde_json::to_vec(&work)
        .map_err(|_| Stop::Permanent("could not encode the review".into()))?;
    let sealed =
        edgeplane_core::review::sealed::encode(&job.review_secret.seal_work(&job.row.id, &plain)?);
    let skipped: Vec<SkippedFile> = work
        .not_reviewed
        .iter()
        .map(|(path, reason)| SkippedFile {
            path: path.clone(),
            reason: *reason,
        })
        .collect();
    let skipped_json = serde_json::to_string(&skipped)
        .map_err(|_| Stop::Permanent("could not encode the skipped files".into()))?;
    let w = job
        .db
        .run_unaudited(
            "UPDATE reviews SET status = 'commenting', commenting_at_ms = ?, work_sealed = ?, files_changed = ?, \
             files_reviewed = ?, files_skipped = ?, chunks_indexed = ?, context_chunks = ?, embeddings_used = ?, \
             prompt_tokens = ?, completion_tokens = ?, findings_total = ?, findings_dropped = ?, skipped_files = ? \
             WHERE id = ? AND status = 'reviewing'",
            args![
                now_ms(),
                sealed,
                (f.selected.len() + f.skipped.len()) as i64,
                p.included.len() as i64,
                work.not_reviewed.len() as i64,
                ctx.chunks.len() as i64,
                p.context_chunks as i64,
                ctx.embeddings_used,
                usage.0.map(i64::from),
                usage.1.map(i64::from),
                work.findings.len() as i64,
                work.dropped as i64,
                skipped_json,
                &job.row.id
            ],
        )
        .await?;
    if w.changes != 1 {
        return Err(Stop::Gone);
    }
    Ok(work)
}

/// The dead-letter consumer's part: a review whose retries are exhausted is marked failed, with
/// the last error the worker recorded.
pub async fn dead_lettered(env: &Env, org_id: &str, review_id: &str) -> Outcome {
    let Ok(db) = Db::from_env(env) else {
        return Outcome::Retry {
            delay_seconds: retry_base(env),
        };
    };
    #[derive(Deserialize)]
    struct Last {
        error: Option<String>,
    }
    let last: Option<Last> = db
        .first(
            "SELECT error FROM reviews WHERE id = ? AND org_id = ?",
            args![review_id, org_id],
        )
        .await
        .ok()
        .flatten();
    let reason = format!(
        "retries exhausted; last error: {}",
        last.and_then(|l| l.error)
            .unwrap_or_else(|| "none recorded".into())
    );
    match finish_unsuccessful(
        env,
        &db,
        org_id,
        review_id,
        ReviewStatus::Failed,
        Some("retries_exhausted"),
        Some(&reason),
    )
    .await
    {
        Ok(()) => Outcome::Done,
        Err(_) => Outcome::Retry {
            delay_seconds: retry_base(env),
        },
    }
}
