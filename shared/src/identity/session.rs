//! Sessions: a short-lived access token (EdDSA JWT, 15 minutes) plus an opaque refresh token that
//! rotates on every use. All refresh tokens of one session form its *family*; presenting one that
//! was already rotated away means two parties hold the family, so the whole session is revoked.
//!
//! Grace window: a client that lost the response to a refresh may retry with the same token for
//! [`REFRESH_GRACE_MS`] as long as the successor it never received is still unused. The retry
//! supersedes that successor (it stops working) and issues a new one, so at most one live
//! refresh token exists per session at any time.

use serde::{Deserialize, Serialize};

use crate::auth::access_token::{AUD_CLI, AUD_USER};

/// Access tokens (user and CLI) live 15 minutes.
pub const ACCESS_TOKEN_TTL_SECS: i64 = 15 * 60;
/// A retry of a just-rotated refresh token within this window is not treated as reuse.
pub const REFRESH_GRACE_MS: i64 = 30_000;

const DAY_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// A person signed in (magic link or identity provider).
    Web,
    /// A CLI token from the device-code grant, bound to one org.
    Cli,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Web => "web",
            SessionKind::Cli => "cli",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "web" => Some(SessionKind::Web),
            "cli" => Some(SessionKind::Cli),
            _ => None,
        }
    }

    /// The access-token audience, so a CLI token never passes where a user session is required.
    pub fn audience(self) -> &'static str {
        match self {
            SessionKind::Web => AUD_USER,
            SessionKind::Cli => AUD_CLI,
        }
    }

    /// How long the session may go without a refresh before it ends.
    pub fn idle_ttl_ms(self) -> i64 {
        match self {
            SessionKind::Web => 14 * DAY_MS,
            SessionKind::Cli => 90 * DAY_MS,
        }
    }

    /// The longest a session lives, refreshed or not: then the person signs in again.
    pub fn absolute_ttl_ms(self) -> i64 {
        match self {
            SessionKind::Web => 30 * DAY_MS,
            SessionKind::Cli => 365 * DAY_MS,
        }
    }
}

/// The kind-specific claims of a session access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// Session id: what revocation is checked against.
    pub sid: String,
    /// CLI tokens: the one org they act in (informational; the session row is authoritative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// CLI tokens: the granted scopes, space-separated (informational, as `org`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Whether a session is still usable at `now` (not revoked, within idle and absolute lifetimes).
pub fn session_live(
    kind: SessionKind,
    created_at_ms: i64,
    last_refreshed_at_ms: i64,
    revoked: bool,
    now_ms: i64,
) -> bool {
    !revoked
        && now_ms < created_at_ms + kind.absolute_ttl_ms()
        && now_ms < last_refreshed_at_ms + kind.idle_ttl_ms()
}

/// A stored refresh token's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshState {
    /// The session's current token.
    Active,
    /// Used once; `successor_unused` says the token it was exchanged for has not been used.
    Rotated {
        rotated_at_ms: i64,
        successor_unused: bool,
    },
    /// Issued by a grace retry and then replaced by another one: never valid again.
    Superseded,
}

impl RefreshState {
    pub fn from_row(
        status: &str,
        rotated_at_ms: Option<i64>,
        successor_unused: bool,
    ) -> Option<Self> {
        match status {
            "active" => Some(RefreshState::Active),
            "rotated" => Some(RefreshState::Rotated {
                rotated_at_ms: rotated_at_ms?,
                successor_unused,
            }),
            "superseded" => Some(RefreshState::Superseded),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshDecision {
    /// Exchange it for a new token; it becomes `rotated`.
    Rotate,
    /// A retry within the grace window: supersede the unused successor and issue another.
    RetryWithinGrace,
    /// A rotated-out token came back: revoke the whole family.
    ReuseDetected,
}

pub fn decide_refresh(state: RefreshState, now_ms: i64) -> RefreshDecision {
    match state {
        RefreshState::Active => RefreshDecision::Rotate,
        RefreshState::Rotated {
            rotated_at_ms,
            successor_unused: true,
        } if now_ms - rotated_at_ms <= REFRESH_GRACE_MS => RefreshDecision::RetryWithinGrace,
        RefreshState::Rotated { .. } | RefreshState::Superseded => RefreshDecision::ReuseDetected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_rotates_and_old_tokens_are_reuse_after_grace() {
        assert_eq!(
            decide_refresh(RefreshState::Active, 0),
            RefreshDecision::Rotate
        );
        let rotated = |unused| RefreshState::Rotated {
            rotated_at_ms: 1_000,
            successor_unused: unused,
        };
        assert_eq!(
            decide_refresh(rotated(true), 1_000 + REFRESH_GRACE_MS),
            RefreshDecision::RetryWithinGrace
        );
        assert_eq!(
            decide_refresh(rotated(true), 1_001 + REFRESH_GRACE_MS),
            RefreshDecision::ReuseDetected
        );
        // The successor was used: whoever presents the old token now is not the client that
        // lost a response.
        assert_eq!(
            decide_refresh(rotated(false), 1_001),
            RefreshDecision::ReuseDetected
        );
        assert_eq!(
            decide_refresh(RefreshState::Superseded, 0),
            RefreshDecision::ReuseDetected
        );
    }

    #[test]
    fn rows_map_to_states() {
        assert_eq!(
            RefreshState::from_row("active", None, false),
            Some(RefreshState::Active)
        );
        assert_eq!(RefreshState::from_row("rotated", None, true), None);
        assert_eq!(RefreshState::from_row("bogus", Some(1), true), None);
    }

    #[test]
    fn lifetimes() {
        let k = SessionKind::Web;
        assert!(session_live(k, 0, 0, false, 1));
        assert!(!session_live(k, 0, 0, true, 1));
        assert!(!session_live(k, 0, 0, false, k.idle_ttl_ms()));
        // Refreshing keeps it alive past the idle TTL, but never past the absolute one.
        assert!(session_live(
            k,
            0,
            k.idle_ttl_ms(),
            false,
            k.idle_ttl_ms() + 1
        ));
        assert!(!session_live(
            k,
            0,
            k.absolute_ttl_ms() - 1,
            false,
            k.absolute_ttl_ms()
        ));
        assert_eq!(SessionKind::Cli.audience(), AUD_CLI);
        assert_eq!(SessionKind::parse("cli"), Some(SessionKind::Cli));
    }

    #[test]
    fn claims_round_trip_without_empty_fields() {
        let c = SessionClaims {
            sid: "ses_1".into(),
            org: None,
            scope: None,
        };
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({"sid": "ses_1"})
        );
    }
}
