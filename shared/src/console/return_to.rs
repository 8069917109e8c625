//! Where a person goes once signed in: back to the console page that sent them to sign in (an
//! invitation, a CLI approval with its code, a round's live page), not to the org list.
//!
//! The destination rides along as `?next=` on the sign-in page, then in a short-lived HttpOnly
//! cookie across the email round trip or the identity provider's redirects. It is an open
//! redirect waiting to happen, so every hop re-checks it with [`safe`]: only a path on this
//! origin is ever followed.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters is encoded: safe in a cookie value and in a
/// query parameter alike.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Longer destinations are dropped (a cookie has room for about 4 KB, and no page needs more).
pub const MAX_LEN: usize = 1024;

/// How long the destination cookie lives: a magic link's lifetime, with room to spare.
pub const COOKIE_MAX_AGE_SECS: i64 = 30 * 60;

/// `candidate` if it is a path on this origin worth returning to, else `None`.
///
/// A path starts with one `/`. `//host` and `/\host` are other origins to a browser; control
/// characters and spaces have no place in a path the console makes; and the sign-in pages
/// themselves would loop. The fragment is kept (an invitation's token travels in it).
pub fn safe(candidate: &str) -> Option<&str> {
    let ok = candidate.len() <= MAX_LEN
        && candidate.starts_with('/')
        && !candidate.starts_with("//")
        && !candidate.contains('\\')
        && !candidate
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
        && !is_sign_in(candidate);
    ok.then_some(candidate)
}

fn is_sign_in(path: &str) -> bool {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    let p = &path[..end];
    p == "/sign-in" || p.starts_with("/sign-in/") || p == "/sign-out"
}

/// The sign-in page that comes back to `next` (when it is [`safe`]).
pub fn sign_in_path(next: Option<&str>) -> String {
    match next.and_then(safe) {
        Some(n) => format!("/sign-in?next={}", encode(n)),
        None => "/sign-in".to_owned(),
    }
}

/// The path and query of `url` when it is on `our_origin` (htmx names the page a fragment was
/// polled from in `HX-Current-URL`, a whole URL).
pub fn from_current_url(url: &str, our_origin: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    if u.origin().ascii_serialization() != our_origin {
        return None;
    }
    let path = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    };
    safe(&path).map(str::to_owned)
}

/// `next` as a cookie value or query parameter: only unreserved characters and `%XX`.
pub fn encode(next: &str) -> String {
    utf8_percent_encode(next, ENCODED).to_string()
}

/// A destination read back from a cookie, checked again.
pub fn decode(value: &str) -> Option<String> {
    let s = percent_decode_str(value).decode_utf8().ok()?;
    safe(&s).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_origin_are_followed() {
        for good in [
            "/orgs",
            "/orgs/acme/rounds/r1/live",
            "/device?user_code=ABCD-EFGH",
            "/invitations/accept#token=epin_x",
        ] {
            assert_eq!(safe(good), Some(good), "{good}");
        }
        for bad in [
            "",
            "orgs",
            "https://evil.test/",
            "//evil.test/x",
            "/\\evil.test",
            "/orgs\n/x",
            "/a b",
            "/sign-in",
            "/sign-in?next=/orgs",
            "/sign-in/magic-link#token=x",
            "/sign-out",
        ] {
            assert_eq!(safe(bad), None, "{bad:?}");
        }
        assert_eq!(safe(&format!("/{}", "a".repeat(MAX_LEN))), None);
        // A page whose name merely starts like the sign-in page is still a page.
        assert!(safe("/sign-into").is_some());
    }

    #[test]
    fn a_destination_survives_the_cookie_and_is_checked_again() {
        let next = "/device?user_code=ABCD-EFGH#x=ü";
        let v = encode(next);
        assert!(v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "%-._~".contains(c)));
        assert_eq!(decode(&v).as_deref(), Some(next));
        assert_eq!(decode(&encode("//evil.test")), None);
        assert_eq!(decode("%ff%fe"), None);
    }

    #[test]
    fn sign_in_path_carries_only_safe_destinations() {
        assert_eq!(
            sign_in_path(Some("/orgs/a-b?x=1")),
            "/sign-in?next=%2Forgs%2Fa-b%3Fx%3D1"
        );
        assert_eq!(sign_in_path(Some("//evil.test")), "/sign-in");
        assert_eq!(sign_in_path(None), "/sign-in");
    }

    #[test]
    fn the_current_url_counts_only_on_our_origin() {
        let ours = "http://127.0.0.1:8787";
        assert_eq!(
            from_current_url("http://127.0.0.1:8787/orgs/a/rounds/r/live?x=1", ours).as_deref(),
            Some("/orgs/a/rounds/r/live?x=1")
        );
        assert_eq!(from_current_url("http://evil.test/orgs", ours), None);
        assert_eq!(from_current_url("not a url", ours), None);
    }
}
