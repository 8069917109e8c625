//! Magic-link sign-in: single-use, 15 minutes, stored as SHA-256 only.
//!
//! The link carries the token in the URL *fragment* (`…/sign-in/magic-link#token=epml_…`):
//! browsers never send fragments to servers, so the token stays out of access logs, proxies and
//! `Referer` headers, and mail scanners that prefetch links cannot spend it. The page there (the
//! web app) posts the token to `POST /v1/auth/magic-link/verify`.

use super::email::{html_escape, Message};
use crate::error::{ApiError, ErrorCode};

pub const TTL_MS: i64 = 15 * 60 * 1000;

pub fn link(app_base_url: &str, token: &str) -> String {
    format!(
        "{}/sign-in/magic-link#token={token}",
        app_base_url.trim_end_matches('/')
    )
}

pub fn message(to: &str, link: &str) -> Message {
    let minutes = TTL_MS / 60_000;
    Message {
        to: to.to_owned(),
        subject: "Your edgeplane sign-in link".into(),
        text: format!(
            "Sign in to edgeplane with this link:\n\n{link}\n\nIt works once and expires in \
             {minutes} minutes. If you did not ask to sign in, ignore this email.\n"
        ),
        html: format!(
            "<p>Sign in to edgeplane:</p><p><a href=\"{l}\">Sign in</a></p><p>The link works once \
             and expires in {minutes} minutes. If you did not ask to sign in, ignore this \
             email.</p>",
            l = html_escape(link)
        ),
    }
}

/// Whether a stored link may still be spent. One answer for unknown, used and expired links, so
/// the response says nothing about which.
pub fn check_spendable(
    expires_at_ms: i64,
    consumed_at_ms: Option<i64>,
    now_ms: i64,
) -> Result<(), ApiError> {
    if consumed_at_ms.is_none() && now_ms < expires_at_ms {
        Ok(())
    } else {
        Err(invalid_link())
    }
}

pub fn invalid_link() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidGrant,
        "the sign-in link is invalid, expired or already used",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_keeps_the_token_in_the_fragment() {
        let l = link("https://app.ep.test/", "epml_abc");
        assert_eq!(l, "https://app.ep.test/sign-in/magic-link#token=epml_abc");
        let m = message("ada@example.com", &l);
        assert!(m.text.contains(&l) && m.html.contains("epml_abc"));
        assert!(m.text.contains("15 minutes"));
    }

    #[test]
    fn single_use_and_fifteen_minutes() {
        assert!(check_spendable(TTL_MS, None, TTL_MS - 1).is_ok());
        assert_eq!(
            check_spendable(TTL_MS, None, TTL_MS).unwrap_err().code,
            ErrorCode::InvalidGrant
        );
        assert!(check_spendable(TTL_MS, Some(5), 10).is_err());
    }
}
