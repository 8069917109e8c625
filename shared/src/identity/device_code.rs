//! The RFC 8628 device authorization grant: user codes, and what a poll of the token endpoint
//! answers in each state.
//!
//! User codes are 8 characters from a 20-letter alphabet without vowels (no words, no
//! look-alikes), shown as `XXXX-XXXX`: 20^8 ≈ 2.6·10^10 codes (~34 bits). With codes living 10
//! minutes and verification attempts rate limited per user and per IP, guessing a live code is
//! hopeless; input is forgiving (case, spaces and dashes are ignored).

use crate::crypto::{random_bytes, sha256_hex};
use crate::error::ApiError;

/// RFC 8628 §6.1's suggested base-20 alphabet.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
pub const USER_CODE_LEN: usize = 8;
/// Default lifetime of a device code; deployments may shorten it (`DEVICE_CODE_TTL_SECONDS`).
pub const DEFAULT_TTL_SECS: i64 = 600;
/// The polling interval a client starts with.
pub const DEFAULT_INTERVAL_SECS: i64 = 5;
/// `slow_down` adds this to the interval (RFC 8628 §3.5).
pub const SLOW_DOWN_STEP_SECS: i64 = 5;

/// A fresh user code, `XXXX-XXXX`. Bytes are drawn by rejection sampling so every letter is
/// equally likely.
pub fn generate_user_code() -> Result<String, ApiError> {
    let mut letters = Vec::with_capacity(USER_CODE_LEN);
    while letters.len() < USER_CODE_LEN {
        for b in random_bytes::<16>()? {
            // 240 = 12 * 20: bytes above it would bias the low letters.
            if b < 240 && letters.len() < USER_CODE_LEN {
                letters.push(USER_CODE_ALPHABET[(b % 20) as usize]);
            }
        }
    }
    Ok(format_code(&letters))
}

fn format_code(letters: &[u8]) -> String {
    let s: String = letters.iter().map(|b| *b as char).collect();
    format!("{}-{}", &s[..4], &s[4..])
}

/// The canonical `XXXX-XXXX` form of what a person typed, or `None` if it cannot be a code.
pub fn normalize_user_code(input: &str) -> Option<String> {
    if input.len() > 32 {
        return None;
    }
    let letters: Vec<u8> = input
        .bytes()
        .filter(|b| !matches!(b, b'-' | b' ' | b'\t'))
        .map(|b| b.to_ascii_uppercase())
        .collect();
    (letters.len() == USER_CODE_LEN && letters.iter().all(|b| USER_CODE_ALPHABET.contains(b)))
        .then(|| format_code(&letters))
}

/// User codes are stored only as SHA-256 of the canonical form, like every other credential.
pub fn user_code_hash(normalized: &str) -> String {
    sha256_hex(format!("user-code:{normalized}").as_bytes())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    Pending,
    Approved,
    Denied,
    /// Tokens were issued: the device code is spent.
    Consumed,
}

impl DeviceStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeviceStatus::Pending,
            "approved" => DeviceStatus::Approved,
            "denied" => DeviceStatus::Denied,
            "consumed" => DeviceStatus::Consumed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Approved => "approved",
            DeviceStatus::Denied => "denied",
            DeviceStatus::Consumed => "consumed",
        }
    }
}

/// What the token endpoint knows about a device code when it is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceGrant {
    pub status: DeviceStatus,
    pub expires_at_ms: i64,
    pub interval_secs: i64,
    pub last_poll_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    /// `authorization_pending`; record the poll time.
    Pending,
    /// `slow_down`; the interval becomes `new_interval_secs` and the poll time is recorded.
    SlowDown { new_interval_secs: i64 },
    /// `access_denied`.
    Denied,
    /// `expired_token`.
    Expired,
    /// Approved: issue the CLI token (exactly once; the issuing write is conditional).
    Issue,
    /// The code was already exchanged: `invalid_grant`.
    AlreadyUsed,
}

pub fn poll(g: DeviceGrant, now_ms: i64) -> PollOutcome {
    match g.status {
        DeviceStatus::Consumed => return PollOutcome::AlreadyUsed,
        _ if now_ms >= g.expires_at_ms => return PollOutcome::Expired,
        DeviceStatus::Denied => return PollOutcome::Denied,
        DeviceStatus::Approved => return PollOutcome::Issue,
        DeviceStatus::Pending => {}
    }
    match g.last_poll_at_ms {
        Some(last) if now_ms - last < g.interval_secs * 1000 => PollOutcome::SlowDown {
            new_interval_secs: g.interval_secs + SLOW_DOWN_STEP_SECS,
        },
        _ => PollOutcome::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_have_the_documented_shape() {
        for _ in 0..200 {
            let c = generate_user_code().unwrap();
            assert_eq!(c.len(), 9);
            assert_eq!(&c[4..5], "-");
            assert!(c
                .bytes()
                .filter(|b| *b != b'-')
                .all(|b| USER_CODE_ALPHABET.contains(&b)));
            assert_eq!(normalize_user_code(&c).as_deref(), Some(c.as_str()));
        }
        assert_ne!(generate_user_code().unwrap(), generate_user_code().unwrap());
    }

    #[test]
    fn normalization_forgives_case_and_separators_only() {
        assert_eq!(
            normalize_user_code(" bcdf ghjk ").as_deref(),
            Some("BCDF-GHJK")
        );
        assert_eq!(
            normalize_user_code("bcdfghjk").as_deref(),
            Some("BCDF-GHJK")
        );
        for bad in [
            "BCDF-GHJ",
            "BCDF-GHJKL",
            "ABCD-EFGH",
            "BCDF-GHJ1",
            "",
            &"B".repeat(40),
        ] {
            assert_eq!(normalize_user_code(bad), None, "{bad}");
        }
        assert_ne!(user_code_hash("BCDF-GHJK"), user_code_hash("BCDF-GHJL"));
    }

    #[test]
    fn every_poll_state() {
        let g = DeviceGrant {
            status: DeviceStatus::Pending,
            expires_at_ms: 600_000,
            interval_secs: 5,
            last_poll_at_ms: None,
        };
        assert_eq!(poll(g, 0), PollOutcome::Pending);
        let polled = DeviceGrant {
            last_poll_at_ms: Some(10_000),
            ..g
        };
        assert_eq!(
            poll(polled, 14_999),
            PollOutcome::SlowDown {
                new_interval_secs: 10
            }
        );
        assert_eq!(poll(polled, 15_000), PollOutcome::Pending);
        assert_eq!(poll(g, 600_000), PollOutcome::Expired);
        let approved = DeviceGrant {
            status: DeviceStatus::Approved,
            ..polled
        };
        // Approval is answered at once, however fast the client polls.
        assert_eq!(poll(approved, 10_001), PollOutcome::Issue);
        assert_eq!(poll(approved, 600_001), PollOutcome::Expired);
        let denied = DeviceGrant {
            status: DeviceStatus::Denied,
            ..g
        };
        assert_eq!(poll(denied, 1), PollOutcome::Denied);
        let consumed = DeviceGrant {
            status: DeviceStatus::Consumed,
            ..g
        };
        assert_eq!(poll(consumed, 1), PollOutcome::AlreadyUsed);
        assert_eq!(poll(consumed, 700_000), PollOutcome::AlreadyUsed);
        assert_eq!(
            DeviceStatus::parse("approved"),
            Some(DeviceStatus::Approved)
        );
    }
}
