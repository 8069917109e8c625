//! When the inbox's alarm drains the outbox: right after a new delivery (several accepts share
//! one pending alarm), and after a failed drain step with a delay that doubles from 1 s to 5 min.
//! The object's alarm itself is persistent; this state only spares storage calls and paces
//! retries, so losing it with the object costs one early retry, nothing else.

use std::cell::Cell;

use super::Outcome;

const FIRST_RETRY_MS: i64 = 1000;
const MAX_RETRY_MS: i64 = 300_000;

/// Delay before retrying a drain after `failures` consecutive failures: 1 s doubling to 5 min.
pub fn retry_delay_ms(failures: u32) -> i64 {
    let exp = failures.saturating_sub(1).min(9);
    (FIRST_RETRY_MS << exp).min(MAX_RETRY_MS)
}

#[derive(Debug, Default)]
pub struct Schedule {
    /// An alarm is set and has not started yet: accepts need not set another.
    armed: Cell<bool>,
    failures: Cell<u32>,
}

impl Schedule {
    /// After an accept: when to set the alarm, unless one is pending already or nothing new
    /// was recorded.
    pub fn after_accept(&self, outcome: &Outcome, now_ms: i64) -> Option<i64> {
        if !outcome.is_new() || self.armed.get() {
            return None;
        }
        self.armed.set(true);
        Some(now_ms)
    }

    /// The alarm fired: entries accepted from now on need a new one.
    pub fn alarm_started(&self) {
        self.armed.set(false);
    }

    /// Setting the alarm failed: the next accept tries again.
    pub fn arm_failed(&self) {
        self.armed.set(false);
    }

    /// The outbox was drained to the end.
    pub fn drained(&self) {
        self.failures.set(0);
    }

    /// A drain step failed: when to try again.
    pub fn drain_failed(&self, now_ms: i64) -> i64 {
        let n = self.failures.get().saturating_add(1);
        self.failures.set(n);
        self.armed.set(true);
        now_ms + retry_delay_ms(n)
    }

    /// Consecutive failed drain steps.
    pub fn failures(&self) -> u32 {
        self.failures.get()
    }
}
