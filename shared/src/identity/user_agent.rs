//! A session's `User-Agent`, in words a person recognises on the sessions page: the browser (or
//! command-line client) and the operating system. A classifier of the few families that matter,
//! not a database of every agent: the order of the checks is the whole trick, because browsers
//! name their ancestors (Edge says "Chrome" and "Safari", Chrome says "Safari", every one says
//! "Mozilla"). Anything it does not know is shown as it is, shortened.

/// A user agent, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// "Firefox 133", "Chrome 156", "edgeplane CLI 0.1.0", or the agent itself when unknown.
    pub browser: String,
    /// "Windows", "macOS", "Linux", "Android", "iOS", "ChromeOS", or `None` when unknown.
    pub os: Option<&'static str>,
}

/// How much of an unknown agent is shown.
const UNKNOWN_MAX_CHARS: usize = 40;

/// The version after `token/` (its major part), if the agent carries that token.
fn version_after<'a>(ua: &'a str, token: &str) -> Option<&'a str> {
    let at = ua.find(token)? + token.len();
    let rest = ua[at..].strip_prefix('/')?;
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .unwrap_or(rest.len());
    let full = &rest[..end];
    Some(full.split('.').next().unwrap_or(full))
}

fn named(name: &str, ua: &str, token: &str) -> String {
    match version_after(ua, token) {
        Some(v) if !v.is_empty() => format!("{name} {v}"),
        _ => name.to_owned(),
    }
}

/// The browser or client, most specific family first.
fn browser(ua: &str) -> String {
    // Command-line and library clients, which name themselves first (`edgeplane-cli/0.1.0`).
    let clients = [
        ("edgeplane-cli", "edgeplane CLI"),
        ("curl", "curl"),
        ("python-requests", "Python requests"),
        ("python-httpx", "Python httpx"),
        ("okhttp", "OkHttp"),
    ];
    for (token, name) in clients {
        if let Some(rest) = ua.strip_prefix(token) {
            // The CLI's full version matters (it is ours); the others' major is enough.
            if token == "edgeplane-cli" {
                let v = rest
                    .strip_prefix('/')
                    .and_then(|r| r.split_whitespace().next());
                return v.map_or(name.to_owned(), |v| format!("{name} {v}"));
            }
            return named(name, ua, token);
        }
    }
    // Browsers that build on another engine come before the engine's own browser.
    let browsers = [
        ("Edg", "Edge"),
        ("OPR", "Opera"),
        ("SamsungBrowser", "Samsung Internet"),
        ("Firefox", "Firefox"),
        ("FxiOS", "Firefox"),
        ("CriOS", "Chrome"),
        ("HeadlessChrome", "Headless Chrome"),
        ("Chromium", "Chromium"),
        ("Chrome", "Chrome"),
    ];
    for (token, name) in browsers {
        if version_after(ua, token).is_some() {
            return named(name, ua, token);
        }
    }
    // Safari says its version in `Version/`; its `Safari/` token is the WebKit build.
    if ua.contains("Safari/") {
        return named("Safari", ua, "Version");
    }
    let shown: String = ua.chars().take(UNKNOWN_MAX_CHARS).collect();
    if shown.len() < ua.len() {
        format!("{shown}…")
    } else {
        shown
    }
}

/// The operating system, checked from the most specific: Android says "Linux", iOS says
/// "like Mac OS X", ChromeOS says "X11".
fn os(ua: &str) -> Option<&'static str> {
    let systems: [(&str, &'static str); 9] = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("CrOS", "ChromeOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Macintosh", "macOS"),
        ("Linux", "Linux"),
        ("FreeBSD", "FreeBSD"),
    ];
    systems
        .into_iter()
        .find(|(token, _)| ua.contains(token))
        .map(|(_, name)| name)
}

/// Describes a `User-Agent` header value.
pub fn describe(ua: &str) -> Client {
    let ua = ua.trim();
    Client {
        browser: browser(ua),
        os: os(ua),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ua: &str) -> (String, Option<&'static str>) {
        let c = describe(ua);
        (c.browser, c.os)
    }

    #[test]
    fn browsers_are_told_apart_from_the_engines_they_name() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86",
                "Edge 131",
                Some("Windows"),
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like \
                 Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome 131",
                Some("macOS"),
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                "Firefox 133",
                Some("Linux"),
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like \
                 Gecko) Version/18.1 Safari/605.1.15",
                "Safari 18",
                Some("macOS"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                "Safari 18",
                Some("iOS"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.6778.104 Mobile Safari/537.36",
                "Chrome 131",
                Some("Android"),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
                "Opera 115",
                Some("Windows"),
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 HeadlessChrome/156.0.0.0 Safari/537.36",
                "Headless Chrome 156",
                Some("Linux"),
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Safari/537.36",
                "Chrome 131",
                Some("ChromeOS"),
            ),
        ];
        for (ua, browser, os) in cases {
            assert_eq!(d(ua), (browser.to_owned(), os), "{ua}");
        }
    }

    #[test]
    fn command_line_clients_and_unknown_agents() {
        assert_eq!(
            d("edgeplane-cli/0.1.0"),
            ("edgeplane CLI 0.1.0".to_owned(), None)
        );
        assert_eq!(d("curl/8.5.0"), ("curl 8".to_owned(), None));
        assert_eq!(
            d("python-requests/2.32.3"),
            ("Python requests 2".to_owned(), None)
        );
        let long = "x".repeat(100);
        let (shown, os) = d(&long);
        assert_eq!(shown.chars().count(), UNKNOWN_MAX_CHARS + 1);
        assert!(shown.ends_with('…') && os.is_none());
        assert_eq!(d(""), (String::new(), None));
        // A token without a version is not that browser.
        assert_eq!(d("Chrome").0, "Chrome");
    }
}
