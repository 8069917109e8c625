//! The edgeplane review Worker: the consumer of the review queue and its dead-letter queue.
//!
//! Delivery is at least once, so every handler is idempotent: state transitions in D1 are
//! conditional on the current state, and a redelivered message finds its work already done.
#![forbid(unsafe_code)]

mod jobs;
mod net;
mod retry;
mod review;
mod secrets;

use edgeplane_core::queue::ReviewQueueMessage;
use edgeplane_runtime::log;
use worker::{event, Context, Env, MessageBatch, MessageExt, Result};

use retry::Outcome;

#[event(queue)]
async fn queue(batch: MessageBatch<serde_json::Value>, env: Env, _ctx: Context) -> Result<()> {
    let dead_letters = env
        .var("DLQ_NAME")
        .map(|v| v.to_string() == batch.queue())
        .unwrap_or(false);
    for msg in batch.iter() {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                log::error("queue message", &e.to_string());
                continue;
            }
        };
        let parsed = serde_json::from_value::<ReviewQueueMessage>(msg.body().clone());
        let Ok(job) = parsed else {
            // A message we cannot read will not become readable by retrying: drop it loudly.
            log::error(
                "queue message",
                "unrecognised message shape; acknowledged and dropped",
            );
            msg.ack();
            continue;
        };
        let outcome = if dead_letters {
            jobs::dead_lettered(&env, &job).await
        } else {
            jobs::handle(&env, &job).await
        };
        match outcome {
            Outcome::Done => msg.ack(),
            Outcome::Retry { delay_seconds } => {
                msg.retry_with_options(
                    &worker::QueueRetryOptionsBuilder::new()
                        .with_delay_seconds(delay_seconds)
                        .build(),
                );
            }
        }
    }
    Ok(())
}
