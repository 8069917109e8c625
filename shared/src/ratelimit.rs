//! Token buckets: the pure arithmetic behind the rate-limiter Durable Object.

use serde::{Deserialize, Serialize};

/// A limit: at most `capacity` in a burst, refilled at `capacity / window_seconds` per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    pub capacity: u32,
    pub window_seconds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub tokens: f64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    pub remaining: u32,
    /// Whole seconds until `cost` tokens are available again (0 when allowed).
    pub retry_after_seconds: u32,
}

impl Bucket {
    pub fn full(limit: Limit, now_ms: i64) -> Self {
        Self {
            tokens: limit.capacity as f64,
            updated_ms: now_ms,
        }
    }

    /// Refills for the time elapsed, then takes `cost` tokens if there are enough.
    pub fn take(&mut self, limit: Limit, cost: u32, now_ms: i64) -> Decision {
        let capacity = limit.capacity.max(1) as f64;
        let rate_per_ms = capacity / (limit.window_seconds.max(1) as f64 * 1000.0);
        let elapsed = (now_ms - self.updated_ms).max(0) as f64;
        self.tokens = (self.tokens + elapsed * rate_per_ms).min(capacity);
        self.updated_ms = now_ms.max(self.updated_ms);
        let cost = cost as f64;
        if self.tokens >= cost {
            self.tokens -= cost;
            Decision {
                allowed: true,
                remaining: self.tokens.floor() as u32,
                retry_after_seconds: 0,
            }
        } else {
            let wait_ms = (cost - self.tokens) / rate_per_ms;
            Decision {
                allowed: false,
                remaining: self.tokens.floor() as u32,
                retry_after_seconds: (wait_ms / 1000.0).ceil().max(1.0) as u32,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let limit = Limit {
            capacity: 3,
            window_seconds: 60,
        };
        let mut b = Bucket::full(limit, 0);
        for _ in 0..3 {
            assert!(b.take(limit, 1, 0).allowed);
        }
        let d = b.take(limit, 1, 0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_seconds, 20);
        assert!(!b.take(limit, 1, 19_000).allowed);
        assert!(b.take(limit, 1, 20_001).allowed);
    }

    #[test]
    fn never_exceeds_capacity_and_tolerates_clock_skew() {
        let limit = Limit {
            capacity: 2,
            window_seconds: 1,
        };
        let mut b = Bucket::full(limit, 1_000);
        b.take(limit, 1, 1_000_000);
        assert!(b.tokens <= 2.0);
        // A clock that goes backwards does not mint tokens.
        let before = b.tokens;
        b.take(limit, 0, 0);
        assert!(b.tokens <= before);
    }
}
