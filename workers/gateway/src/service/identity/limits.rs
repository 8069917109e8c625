//! Rate limits on sign-in and code endpoints, per client IP and per account, in the
//! `RateLimiter` Durable Object (429 with `Retry-After` when exhausted). Account keys are hashed
//! so email addresses never become object names.

use edgeplane_core::crypto::sha256_hex;
use edgeplane_core::ratelimit::{address_bucket, Limit};
use edgeplane_core::ApiError;

use crate::cx::Cx;
use crate::ratelimit;

const fn per(capacity: u32, window_seconds: u32) -> Limit {
    Limit {
        capacity,
        window_seconds,
    }
}

/// Sign-in starts (magic-link requests, provider redirects) from one IP.
pub const SIGNIN_PER_IP: Limit = per(30, 600);
/// Magic links sent to one address: enough for a mistyped attempt or two, not a mail bomb.
pub const MAGIC_LINK_PER_EMAIL: Limit = per(5, 900);
/// Spending one-time grants (magic links, provider callbacks) from one IP.
pub const GRANT_PER_IP: Limit = per(30, 600);
/// Refreshes from one IP.
pub const REFRESH_PER_IP: Limit = per(120, 60);
/// Device authorizations started from one IP.
pub const DEVICE_START_PER_IP: Limit = per(20, 600);
/// User-code look-ups, approvals and denials: what bounds guessing.
pub const USER_CODE_PER_USER: Limit = per(10, 600);
pub const USER_CODE_PER_IP: Limit = per(30, 600);
/// Organizations one user creates.
pub const ORGS_PER_USER: Limit = per(10, 3600);

/// Per client address: an IPv4 address, or an IPv6 address's /64 (`address_bucket`), so
/// rotating through one's own /64 does not multiply the budget. Requests without a usable
/// address share one bucket.
pub async fn per_ip(cx: &Cx<'_>, scope: &str, limit: Limit) -> Result<(), ApiError> {
    let bucket = cx
        .rc
        .ip
        .as_deref()
        .and_then(address_bucket)
        .unwrap_or_else(|| "unknown".to_owned());
    ratelimit::check(cx.env, &format!("{scope}:ip:{bucket}"), limit, 1).await
}

pub async fn per_account(
    cx: &Cx<'_>,
    scope: &str,
    account: &str,
    limit: Limit,
) -> Result<(), ApiError> {
    let key = format!("{scope}:acct:{}", &sha256_hex(account.as_bytes())[..32]);
    ratelimit::check(cx.env, &key, limit, 1).await
}
