//! Invitations: single-use, expiring, addressed to one email address.

use crate::error::{ApiError, ErrorCode};
use crate::identity::email::{html_escape, Message};

pub const DEFAULT_TTL_HOURS: u32 = 72;
pub const MAX_TTL_HOURS: u32 = 14 * 24;

/// The invitation's lifetime in hours, validated.
pub fn ttl_hours(hours: Option<u32>) -> Result<u32, ApiError> {
    let h = hours.unwrap_or(DEFAULT_TTL_HOURS);
    if h == 0 || h > MAX_TTL_HOURS {
        return Err(ApiError::validation(format!(
            "ttl_hours must be between 1 and {MAX_TTL_HOURS}"
        )));
    }
    Ok(h)
}

/// Where the invitee accepts: the web app's page, with the token in the fragment so it never
/// reaches a server log.
pub fn link(app_base_url: &str, token: &str) -> String {
    format!(
        "{}/invitations/accept#token={token}",
        app_base_url.trim_end_matches('/')
    )
}

pub fn message(to: &str, org_name: &str, role: &str, link: &str, ttl_hours: u32) -> Message {
    Message {
        to: to.to_owned(),
        subject: format!("You are invited to {org_name} on edgeplane"),
        text: format!(
            "You have been invited to join {org_name} on edgeplane as {role}.\n\nAccept while \
             signed in with this address:\n\n{link}\n\nThe invitation works once and expires \
             in {ttl_hours} hours.\n"
        ),
        html: format!(
            "<p>You have been invited to join <strong>{o}</strong> on edgeplane as {r}.</p>\
             <p><a href=\"{l}\">Accept the invitation</a> while signed in with this address.</p>\
             <p>It works once and expires in {ttl_hours} hours.</p>",
            o = html_escape(org_name),
            r = html_escape(role),
            l = html_escape(link)
        ),
    }
}

/// The state of an invitation row, decided in one place for listing and accepting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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
        assert_eq!(ttl_hours(None).unwrap(), 72);
        assert!(ttl_hours(Some(0)).is_err());
        assert!(ttl_hours(Some(MAX_TTL_HOURS + 1)).is_err());
    }

    #[test]
    fn message_escapes_and_links() {
        let l = link("https://app.example/", "epin_abc");
        assert_eq!(l, "https://app.example/invitations/accept#token=epin_abc");
        let m = message("a@b.co", "<Acme>", "admin", &l, 72);
        assert!(m.html.contains("&lt;Acme&gt;"));
        assert!(m.text.contains(&l) && m.text.contains("72 hours"));
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
