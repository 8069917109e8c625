//! Job handlers, one per message kind.

use edgeplane_core::queue::{retry_delay_seconds, ReviewQueueMessage};
use edgeplane_runtime::clock::now_ms;
use edgeplane_runtime::{args, log, Db};
use serde::Deserialize;
use worker::Env;

use crate::retry::{retry_base, Outcome, RETRY_CAP_SECONDS};
use crate::review;

pub async fn handle(env: &Env, job: &ReviewQueueMessage) -> Outcome {
    let result = match job {
        ReviewQueueMessage::Probe { org_id, probe_id } => probe(env, org_id, probe_id).await,
        ReviewQueueMessage::Review { org_id, review_id } => {
            return review::run(env, org_id, review_id).await
        }
    };
    match result {
        Ok(o) => o,
        Err(e) => {
            // Infrastructure trouble (D1 unavailable): retry with the base delay.
            log::error("job failed", &e.to_string());
            Outcome::Retry {
                delay_seconds: retry_base(env),
            }
        }
    }
}

pub async fn dead_lettered(env: &Env, job: &ReviewQueueMessage) -> Outcome {
    let result = match job {
        ReviewQueueMessage::Probe { org_id, probe_id } => {
            mark_probe_dead(env, org_id, probe_id).await
        }
        ReviewQueueMessage::Review { org_id, review_id } => {
            return review::dead_lettered(env, org_id, review_id).await
        }
    };
    match result {
        Ok(()) => Outcome::Done,
        Err(e) => {
            log::error("dead-letter handling failed", &e.to_string());
            Outcome::Retry {
                delay_seconds: retry_base(env),
            }
        }
    }
}

#[derive(Deserialize)]
struct Attempt {
    attempts: i64,
    fail_times: i64,
}

async fn probe(
    env: &Env,
    org_id: &str,
    probe_id: &str,
) -> Result<Outcome, edgeplane_core::ApiError> {
    let db = Db::from_env(env)?;
    // Counting the attempt and reading the plan in one statement keeps redeliveries honest.
    let attempt: Option<Attempt> = db
        .first(
            "UPDATE queue_probes SET attempts = attempts + 1 \
             WHERE id = ? AND org_id = ? AND status = 'queued' RETURNING attempts, fail_times",
            args![probe_id, org_id],
        )
        .await?;
    let Some(a) = attempt else {
        // Already processed or dead-lettered: a redelivery. Nothing to do.
        return Ok(Outcome::Done);
    };
    if a.attempts <= a.fail_times {
        db.run_unaudited(
            "UPDATE queue_probes SET last_error = ? WHERE id = ?",
            args![
                format!("induced failure on attempt {}", a.attempts),
                probe_id
            ],
        )
        .await?;
        let delay = retry_delay_seconds(a.attempts as u32, retry_base(env), RETRY_CAP_SECONDS);
        return Ok(Outcome::Retry {
            delay_seconds: delay,
        });
    }
    db.run_unaudited(
        "UPDATE queue_probes SET status = 'processed', processed_at_ms = ? \
         WHERE id = ? AND status = 'queued'",
        args![now_ms(), probe_id],
    )
    .await?;
    Ok(Outcome::Done)
}

async fn mark_probe_dead(
    env: &Env,
    org_id: &str,
    probe_id: &str,
) -> Result<(), edgeplane_core::ApiError> {
    let db = Db::from_env(env)?;
    db.run_unaudited(
        "UPDATE queue_probes SET status = 'dead_lettered', processed_at_ms = ? \
         WHERE id = ? AND org_id = ? AND status = 'queued'",
        args![now_ms(), probe_id, org_id],
    )
    .await?;
    Ok(())
}
