//! A busy database (`SQLITE_BUSY`, "database is locked", "overloaded") applied nothing, so a
//! call is retried with jittered exponential backoff while the request's budget lasts
//! ([`Backoff`]); only then does it become a 503 with `Retry-After`.

use std::time::Duration;

use super::error::DbError;
use crate::clock;

/// How long a request keeps retrying a busy database, from the moment its `Db` was made: well
/// inside the platform's request limits, and long enough for the lock holder (another batch in
/// the same database) to finish.
pub const DEFAULT_BUDGET_MS: i64 = 4_000;

/// Retry delays for a busy database: exponential from 10 ms, capped at 500 ms, with full jitter
/// (so requests that collided once do not collide again in lockstep), and never past the
/// deadline. Pure: the clock and the randomness are passed in.
#[derive(Debug, Clone)]
pub struct Backoff {
    deadline_ms: i64,
    attempt: u32,
}

impl Backoff {
    const FIRST_MS: i64 = 10;
    const CAP_MS: i64 = 500;

    pub fn until(deadline_ms: i64) -> Self {
        Self {
            deadline_ms,
            attempt: 0,
        }
    }

    /// The delay before the next attempt, or `None` when the budget would run out. `random` is
    /// any uniformly random number.
    pub fn next_delay(&mut self, now_ms: i64, random: u32) -> Option<i64> {
        let ceiling = (Self::FIRST_MS << self.attempt.min(16)).min(Self::CAP_MS);
        // At least half the ceiling, so the retries really back off.
        let delay = ceiling / 2 + i64::from(random) % (ceiling / 2 + 1);
        if now_ms + delay >= self.deadline_ms {
            return None;
        }
        self.attempt += 1;
        Some(delay)
    }
}

/// The clock, randomness and sleep a retry loop uses: the runtime's in production, a fake clock
/// in the native tests.
pub trait RetryEnv {
    fn now_ms(&self) -> i64;
    fn random(&self) -> u32;
    fn sleep(&self, ms: i64) -> impl std::future::Future<Output = ()>;
}

pub(super) struct Runtime;

impl RetryEnv for Runtime {
    fn now_ms(&self) -> i64 {
        clock::now_ms()
    }

    fn random(&self) -> u32 {
        edgeplane_core::crypto::random_bytes::<4>()
            .map(u32::from_le_bytes)
            .unwrap_or(0)
    }

    fn sleep(&self, ms: i64) -> impl std::future::Future<Output = ()> {
        worker::Delay::from(Duration::from_millis(ms.max(0) as u64))
    }
}

/// Why one D1 call failed: before it ran (binding arguments), or with the runtime's message.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    Prepare(DbError),
    Call(String),
}

/// Calls `op` again while it fails with a busy database ([`DbError::classify`]) and the backoff
/// allows another attempt before `deadline_ms`; returns the first other outcome, or the last
/// busy failure. A busy call applied nothing, so repeating it is safe.
pub async fn retry_busy<T, F, Fut, E: RetryEnv>(
    env: &E,
    deadline_ms: i64,
    mut op: F,
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut backoff = Backoff::until(deadline_ms);
    loop {
        match op().await {
            Err(Failure::Call(msg)) if DbError::classify(&msg) == DbError::Busy => {
                match backoff.next_delay(env.now_ms(), env.random()) {
                    Some(ms) => env.sleep(ms).await,
                    None => return Err(Failure::Call(msg)),
                }
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_jitters_and_stops_at_the_deadline() {
        let mut b = Backoff::until(2_000);
        let mut now = 0;
        let mut delays = Vec::new();
        while let Some(d) = b.next_delay(now, 7_919 * delays.len() as u32) {
            delays.push(d);
            now += d;
        }
        assert!(delays.len() >= 6, "{delays:?}");
        assert!(now < 2_000);
        for (n, d) in delays.iter().enumerate() {
            let ceiling = (10i64 << n).min(500);
            assert!(
                (ceiling / 2..=ceiling).contains(d),
                "attempt {n}: {d} of {ceiling}"
            );
        }
        // Past the deadline there is no retry at all.
        assert_eq!(Backoff::until(100).next_delay(100, 0), None);
    }

    /// A clock that the fake sleep advances; the futures are always ready.
    struct FakeRuntime(std::cell::Cell<i64>);

    impl RetryEnv for FakeRuntime {
        fn now_ms(&self) -> i64 {
            self.0.get()
        }
        fn random(&self) -> u32 {
            12_345
        }
        fn sleep(&self, ms: i64) -> impl std::future::Future<Output = ()> {
            self.0.set(self.0.get() + ms);
            std::future::ready(())
        }
    }

    fn run_now<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the fake runtime never waits"),
        }
    }

    /// Issue 14: `SQLITE_BUSY` on a write was a bare 500 although the same request succeeded
    /// when sent again. The call is now repeated, with backoff, until it succeeds.
    #[test]
    fn a_busy_database_is_retried_until_it_answers() {
        let rt = FakeRuntime(std::cell::Cell::new(0));
        let calls = std::cell::Cell::new(0);
        let result = run_now(retry_busy(&rt, DEFAULT_BUDGET_MS, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 4 {
                    Err(Failure::Call(
                        "D1_ERROR: SQLITE_BUSY: database is locked".into(),
                    ))
                } else {
                    Ok(n)
                }
            }
        }));
        assert_eq!(result, Ok(4));
        assert!(rt.now_ms() > 0, "it waited between attempts");
    }

    #[test]
    fn busy_past_the_budget_and_other_failures_are_not_retried_forever() {
        let rt = FakeRuntime(std::cell::Cell::new(0));
        let calls = std::cell::Cell::new(0u32);
        let busy = run_now(retry_busy(&rt, DEFAULT_BUDGET_MS, || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(Failure::Call("database is locked".into())) }
        }));
        assert_eq!(busy, Err(Failure::Call("database is locked".into())));
        assert!(rt.now_ms() < DEFAULT_BUDGET_MS, "gave up within the budget");
        assert!(calls.get() > 3);
        // A constraint failure is an answer, not a reason to wait.
        calls.set(0);
        let unique = run_now(retry_busy(&rt, i64::MAX, || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(Failure::Call("UNIQUE constraint failed: orgs.slug".into())) }
        }));
        assert!(unique.is_err());
        assert_eq!(calls.get(), 1);
    }
}
