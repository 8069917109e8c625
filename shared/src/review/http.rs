//! Outbound HTTP as plain data: the request a wire format wants sent, and how an upstream's
//! answer is classified for retrying. The worker turns a [`Call`] into a `fetch`, after the
//! egress check, adding the credential header itself.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The most a 2xx answer's body may hold unless its call says otherwise: JSON objects such as a
/// pull request or a created comment are a few KB.
pub const DEFAULT_RESPONSE_LIMIT: usize = 1024 * 1024;

/// One request. Credentials are not part of it: the worker adds the auth header last, so a
/// `Call` can be logged or compared without ever holding a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<String>,
    /// The most bytes of a successful answer's body the worker reads; a longer body is refused
    /// while it streams in (a Worker has 128 MB, and an upstream decides what it sends).
    pub response_limit: usize,
}

impl Call {
    pub fn get(url: String) -> Self {
        Self {
            method: "GET",
            url,
            headers: Vec::new(),
            body: None,
            response_limit: DEFAULT_RESPONSE_LIMIT,
        }
    }

    pub fn post_json(url: String, body: &serde_json::Value) -> Self {
        Self {
            method: "POST",
            url,
            headers: vec![("content-type", "application/json".into())],
            body: Some(body.to_string()),
            response_limit: DEFAULT_RESPONSE_LIMIT,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn response_limit(mut self, bytes: usize) -> Self {
        self.response_limit = bytes;
        self
    }
}

/// What to do about a failed upstream call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Try again later: 5xx, 429, 408, timeouts, network errors. `retry_after` when the upstream
    /// said how long to wait.
    Transient { retry_after: Option<u32> },
    /// Retrying will not help (bad credentials, missing resource, rejected request).
    Permanent,
}

pub fn classify_status(status: u16, retry_after: Option<u32>) -> Failure {
    match status {
        408 | 425 | 429 | 500..=599 => Failure::Transient { retry_after },
        // GitHub's secondary rate limit answers 403 with Retry-After.
        403 if retry_after.is_some() => Failure::Transient { retry_after },
        _ => Failure::Permanent,
    }
}

/// `Retry-After` as seconds or an HTTP date, capped at an hour (a longer wait is better spent
/// as a queue delay computed by backoff).
pub fn retry_after_seconds(value: Option<&str>, now_secs: i64) -> Option<u32> {
    let v = value?.trim();
    let secs = match v.parse::<i64>() {
        Ok(s) => s,
        Err(_) => chrono::DateTime::parse_from_rfc2822(v).ok()?.timestamp() - now_secs,
    };
    Some(secs.clamp(0, 3600) as u32)
}

/// Everything but RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters, so a `/`
/// inside a segment cannot become a separator).
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Encodes each `/`-separated segment of a path, keeping the separators.
pub fn encode_path(p: &str) -> String {
    p.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_and_retry_after() {
        assert_eq!(
            classify_status(503, None),
            Failure::Transient { retry_after: None }
        );
        assert_eq!(
            classify_status(429, Some(7)),
            Failure::Transient {
                retry_after: Some(7)
            }
        );
        assert_eq!(classify_status(403, None), Failure::Permanent);
        assert_eq!(
            classify_status(403, Some(60)),
            Failure::Transient {
                retry_after: Some(60)
            }
        );
        assert_eq!(classify_status(401, None), Failure::Permanent);
        assert_eq!(classify_status(422, None), Failure::Permanent);
        assert_eq!(retry_after_seconds(Some("12"), 0), Some(12));
        assert_eq!(retry_after_seconds(Some("999999"), 0), Some(3600));
        assert_eq!(
            retry_after_seconds(Some("Wed, 21 Oct 2015 07:28:00 GMT"), 1_445_412_470),
            Some(10)
        );
        assert_eq!(retry_after_seconds(Some("soon"), 0), None);
        assert_eq!(retry_after_seconds(None, 0), None);
    }

    #[test]
    fn encoding() {
        assert_eq!(encode_segment("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(encode_segment("ü~-._%"), "%C3%BC~-._%25");
        assert_eq!(encode_path("src/my file.rs"), "src/my%20file.rs");
    }
}
