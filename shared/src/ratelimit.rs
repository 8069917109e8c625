//! Token buckets: the pure arithmetic behind the rate-limiter Durable Object.

use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// What a per-address limit counts against: an IPv4 address itself, but an IPv6 address's /64.
/// One subscriber is routinely given a whole /64 and can pick any address in it, so a limit per
/// full IPv6 address would be a limit per request. An IPv4-mapped IPv6 address counts as its IPv4
/// address. Text that is not an address (a missing or malformed header) is `None`: the caller
/// puts all of those in one shared bucket rather than one per distinct string.
pub fn address_bucket(ip: &str) -> Option<String> {
    match ip.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(v4.to_string()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Some(v4.to_string()),
            None => {
                let s = v6.segments();
                let net = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                Some(format!("{net}/64"))
            }
        },
    }
}

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

    #[test]
    fn ipv6_counts_per_64_and_ipv4_per_address() {
        let a = address_bucket("2001:db8:1:2:aaaa::1").unwrap();
        assert_eq!(a, "2001:db8:1:2::/64");
        // Rotating within the /64 lands in the same bucket; the next /64 does not.
        assert_eq!(
            address_bucket("2001:0db8:0001:0002:ffff:ffff:ffff:fffe").unwrap(),
            a
        );
        assert_ne!(address_bucket("2001:db8:1:3::1").unwrap(), a);
        assert_eq!(address_bucket("203.0.113.9").unwrap(), "203.0.113.9");
        assert_ne!(
            address_bucket("203.0.113.10"),
            address_bucket("203.0.113.9")
        );
        assert_eq!(address_bucket("::ffff:203.0.113.9").unwrap(), "203.0.113.9");
        assert_eq!(address_bucket(" 192.0.2.1 ").unwrap(), "192.0.2.1");
        for junk in ["", "unknown", "2001:db8::1%eth0", "1.2.3", "[::1]"] {
            assert_eq!(address_bucket(junk), None, "{junk}");
        }
    }
}
