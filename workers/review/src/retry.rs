//! What becomes of a queue message once a handler is done with it, and the backoff between
//! redeliveries. Its own module so the job dispatch (`jobs`) and the review pipeline (`review`)
//! both depend on it without depending on each other.

use worker::Env;

/// Backoff between redeliveries: `QUEUE_RETRY_BASE_SECONDS * 2^(attempt-1)`, capped.
pub const RETRY_CAP_SECONDS: u32 = 300;

pub enum Outcome {
    /// Acknowledge the message: the work is done, or will never be.
    Done,
    /// Redeliver the message after the delay.
    Retry { delay_seconds: u32 },
}

/// The backoff's base, `QUEUE_RETRY_BASE_SECONDS` (5 unless configured).
pub fn retry_base(env: &Env) -> u32 {
    env.var("QUEUE_RETRY_BASE_SECONDS")
        .ok()
        .and_then(|v| v.to_string().parse().ok())
        .unwrap_or(5)
}
