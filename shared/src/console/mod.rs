//! The web console's pure half: the security headers, CSRF tokens bound to a session, the
//! session cookies, the embedded content-hashed assets, and the page templates (`pages`, maud).
//! The gateway's `routes/console` binds them to requests and to the service layer; every page
//! renders the same view types (`crate::views`) the JSON API answers.

pub mod chart;
pub mod pages;
pub mod return_to;

use std::sync::OnceLock;

use crate::crypto::hash::{constant_time_eq, hmac_sha256, sha256_hex};

/// The Content-Security-Policy of every console page: no inline script or style anywhere.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Headers every console answer carries, pages and assets alike.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CSP),
    ("referrer-policy", "same-origin"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
];

/// Assets are immutable under their content-hashed path.
pub const ASSET_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

const CSS: &[u8] = include_bytes!("assets/console.css");
const JS: &[u8] = include_bytes!("assets/console.js");
/// htmx, as the npm package `htmx.org` pinned in package-lock.json ships it
/// (`dist/htmx.min.js`; a test checks the copy against `node_modules`).
const HTMX: &[u8] = include_bytes!("assets/htmx.min.js");

/// `/assets/{stem}.{first 16 hex digits of its SHA-256}.{ext}`, computed once.
fn hashed(cell: &'static OnceLock<String>, stem: &str, ext: &str, body: &[u8]) -> &'static str {
    cell.get_or_init(|| format!("/assets/{stem}.{}.{ext}", &sha256_hex(body)[..16]))
}

/// The stylesheet's path (its content hash in the name).
pub fn css_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    hashed(&PATH, "console", "css", CSS)
}

/// The script's path (its content hash in the name).
pub fn js_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    hashed(&PATH, "console", "js", JS)
}

/// htmx's path (its content hash in the name).
pub fn htmx_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    hashed(&PATH, "htmx", "js", HTMX)
}

/// htmx's settings for a strict CSP (read from `<meta name="htmx-config">`): no style element
/// of its own, no `eval`, no script tags run from swapped content, and no copies of pages in
/// the browser's storage.
pub const HTMX_CONFIG: &str = r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"historyCacheSize":0}"#;

/// The asset served at `path`: its content type and bytes. Only the current hashes are served.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    const JS_TYPE: &str = "text/javascript; charset=utf-8";
    if path == css_path() {
        Some(("text/css; charset=utf-8", CSS))
    } else if path == js_path() {
        Some((JS_TYPE, JS))
    } else if path == htmx_path() {
        Some((JS_TYPE, HTMX))
    } else {
        None
    }
}

/// The CSRF token of a session: an HMAC of its id under a key only the deployment holds, so a
/// page of another origin cannot know it, and it dies with the session.
pub fn csrf_token(key: &[u8; 32], session_id: &str) -> String {
    hex::encode(hmac_sha256(
        key,
        format!("console-csrf/{session_id}").as_bytes(),
    ))
}

/// Whether `presented` is the session's CSRF token (compared in constant time).
pub fn csrf_ok(key: &[u8; 32], session_id: &str, presented: Option<&str>) -> bool {
    match presented {
        Some(p) => constant_time_eq(csrf_token(key, session_id).as_bytes(), p.as_bytes()),
        None => false,
    }
}

/// A state-changing console request must say it comes from the console's own origin. Browsers
/// send `Origin` with every form POST, so a missing one is refused too.
pub fn same_origin(origin: Option<&str>, ours: &str) -> bool {
    origin.is_some_and(|o| o.trim_end_matches('/') == ours.trim_end_matches('/'))
}

/// The session cookies' names: `__Host-` (Secure, host-only, `Path=/`) over https; plain names
/// on a plain-http development origin, where a browser refuses `Secure` cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieNames {
    pub access: &'static str,
    pub refresh: &'static str,
    /// Where to go once signed in (`return_to`), across the email or identity-provider hop.
    pub next: &'static str,
}

pub fn cookie_names(https: bool) -> CookieNames {
    if https {
        CookieNames {
            access: "__Host-ep_session",
            refresh: "__Host-ep_refresh",
            next: "__Host-ep_next",
        }
    } else {
        CookieNames {
            access: "ep_session",
            refresh: "ep_refresh",
            next: "ep_next",
        }
    }
}

/// A `Set-Cookie` value: HttpOnly (scripts cannot read it), SameSite=Lax, `Path=/`, `Secure`
/// over https. `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, https: bool, max_age_secs: i64) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{}",
        if https { "; Secure" } else { "" }
    )
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_is_bound_to_the_session() {
        let key = [7u8; 32];
        let t = csrf_token(&key, "ses_a");
        assert!(csrf_ok(&key, "ses_a", Some(&t)));
        assert!(!csrf_ok(&key, "ses_b", Some(&t)));
        assert!(!csrf_ok(&[8u8; 32], "ses_a", Some(&t)));
        assert!(!csrf_ok(&key, "ses_a", None));
        assert!(!csrf_ok(&key, "ses_a", Some("")));
    }

    #[test]
    fn origin_must_match_exactly() {
        assert!(same_origin(
            Some("http://127.0.0.1:8787"),
            "http://127.0.0.1:8787"
        ));
        assert!(!same_origin(
            Some("http://evil.test"),
            "http://127.0.0.1:8787"
        ));
        assert!(!same_origin(Some("null"), "http://127.0.0.1:8787"));
        assert!(!same_origin(None, "http://127.0.0.1:8787"));
    }

    #[test]
    fn cookies() {
        let n = cookie_names(true);
        assert!(n.access.starts_with("__Host-"));
        let c = set_cookie(n.access, "v", true, 60);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Secure"));
        assert!(c.contains("Path=/") && !c.contains("Domain"));
        assert!(!set_cookie("ep_session", "v", false, 60).contains("Secure"));
        assert_eq!(
            cookie("a=1; ep_session=x.y; b=2", "ep_session"),
            Some("x.y")
        );
        assert_eq!(cookie("a=1", "ep_session"), None);
    }

    #[test]
    fn assets_are_content_hashed() {
        assert!(css_path().starts_with("/assets/console.") && css_path().ends_with(".css"));
        assert!(asset(css_path()).is_some() && asset(js_path()).is_some());
        assert!(asset(htmx_path()).is_some() && htmx_path().starts_with("/assets/htmx."));
        assert!(asset("/assets/console.css").is_none());
    }

    /// The embedded htmx is the pinned npm package's file, byte for byte (`scripts/setup`
    /// installs it; after changing the pin, copy `dist/htmx.min.js` into `assets/`).
    #[test]
    fn htmx_is_the_pinned_package() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let lock = std::fs::read_to_string(format!("{root}/package-lock.json")).unwrap();
        let lock: serde_json::Value = serde_json::from_str(&lock).unwrap();
        let pinned = lock["packages"]["node_modules/htmx.org"]["version"]
            .as_str()
            .unwrap();
        let dir = format!("{root}/node_modules/htmx.org");
        let installed = std::fs::read_to_string(format!("{dir}/package.json"))
            .expect("node_modules/htmx.org is missing: run scripts/setup");
        let installed: serde_json::Value = serde_json::from_str(&installed).unwrap();
        assert_eq!(installed["version"].as_str(), Some(pinned));
        let shipped = std::fs::read(format!("{dir}/dist/htmx.min.js")).unwrap();
        assert!(
            shipped == HTMX,
            "assets/htmx.min.js is not htmx.org {pinned}'s dist/htmx.min.js"
        );
    }
}
