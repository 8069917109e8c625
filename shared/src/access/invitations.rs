//! Invitations: single-use, expiring, addressed to one email address.

use crate::error::{ApiError, ErrorCode};

pub const DEFAULT_TTL_HOURS: u32 = 72;
pub const MAX_TTL_HOURS: u32 = 14 * 24;

pub fn ttl_ms(hours: Option<u32>) -> Result<i64, ApiError> {
    let h = hours.unwrap_or(DEFAULT_TTL_HOURS);
    if h == 0 || h > MAX_TTL_HOURS {
        return Err(ApiError::validation(format!(
            "ttl_hours must be between 1 and {MAX_TTL_HOURS}"
        )));
    }
    Ok(i64::from(h) * 3_600_000)
}

/// The state of an invitation row, decided in one place for listing and accepting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationState {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

impl InvitationState {
    pub fn of(
        accepted_at_ms: Option<i64>,
        revoked_at_ms: Option<i64>,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Self {
        if accepted_at_ms.is_some() {
            InvitationState::Accepted
        } else if revoked_at_ms.is_some() {
            InvitationState::Revoked
        } else if expires_at_ms <= now_ms {
            InvitationState::Expired
        } else {
            InvitationState::Pending
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InvitationState::Pending => "pending",
            InvitationState::Accepted => "accepted",
            InvitationState::Revoked => "revoked",
            InvitationState::Expired => "expired",
        }
    }

    /// Why an invitation cannot be accepted. A used, revoked or expired invitation is a 409:
    /// the token was real, the state forbids it.
    pub fn accept_error(self) -> Option<ApiError> {
        let msg = match self {
            InvitationState::Pending => return None,
            InvitationState::Accepted => "this invitation has already been used",
            InvitationState::Revoked => "this invitation has been revoked",
            InvitationState::Expired => "this invitation has expired",
        };
        Some(ApiError::new(ErrorCode::Conflict, msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_bounds() {
        assert_eq!(ttl_ms(None).unwrap(), 72 * 3_600_000);
        assert!(ttl_ms(Some(0)).is_err());
        assert!(ttl_ms(Some(MAX_TTL_HOURS + 1)).is_err());
    }

    #[test]
    fn states() {
        assert_eq!(
            InvitationState::of(None, None, 10, 5),
            InvitationState::Pending
        );
        assert_eq!(
            InvitationState::of(None, None, 10, 10),
            InvitationState::Expired
        );
        assert_eq!(
            InvitationState::of(Some(1), None, 10, 50),
            InvitationState::Accepted
        );
        assert_eq!(
            InvitationState::of(None, Some(1), 10, 5),
            InvitationState::Revoked
        );
        assert!(InvitationState::Pending.accept_error().is_none());
        assert_eq!(
            InvitationState::Expired.accept_error().unwrap().status(),
            409
        );
    }
}
