//! Request bodies: size limits and strict JSON.

use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// The most bytes a route reads. Enforced from `Content-Length` before reading and again while
/// streaming (a missing or lying header does not get past it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

impl BodyLimit {
    pub const NONE: BodyLimit = BodyLimit(0);
    /// Small control-plane JSON: names, settings, ids.
    pub const SMALL: BodyLimit = BodyLimit(16 * 1024);
    /// Larger JSON documents (webhook payloads, update metadata).
    pub const MEDIUM: BodyLimit = BodyLimit(1024 * 1024);

    pub fn check_declared(self, content_length: Option<u64>) -> Result<(), ApiError> {
        match content_length {
            Some(n) if n > self.0 as u64 => Err(self.too_large()),
            _ => Ok(()),
        }
    }

    pub fn too_large(self) -> ApiError {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "request body exceeds the {} byte limit of this route",
                self.0
            ),
        )
    }
}

/// JSON routes take `application/json` (optionally with parameters such as `charset=utf-8`).
pub fn require_json_content_type(content_type: Option<&str>) -> Result<(), ApiError> {
    let ok = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "this route accepts only Content-Type: application/json",
        ))
    }
}

/// Malformed JSON is 400 `invalid_json`; JSON that is well-formed but does not fit the route's
/// schema (unknown or missing fields, wrong types) is 422 `validation_failed`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "request body is empty",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                ErrorCode::InvalidJson,
                format!("malformed JSON at line {} column {}", e.line(), e.column()),
            ),
            Category::Data => ApiError::new(ErrorCode::ValidationFailed, schema_message(&e)),
        }
    })
}

/// serde's data errors name the field and the expectation, never echo input values at length;
/// still cap the length so a pathological message cannot balloon a response.
fn schema_message(e: &serde_json::Error) -> String {
    let mut msg = e.to_string();
    if msg.len() > 300 {
        let mut cut = 300;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg.truncate(cut);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Thing {
        name: String,
    }

    #[test]
    fn classifies_json_errors() {
        assert_eq!(
            parse_json::<Thing>(b"{\"name\": ").unwrap_err().code,
            ErrorCode::InvalidJson
        );
        assert_eq!(
            parse_json::<Thing>(b"").unwrap_err().code,
            ErrorCode::InvalidJson
        );
        assert_eq!(
            parse_json::<Thing>(b"{\"name\": 1}").unwrap_err().code,
            ErrorCode::ValidationFailed
        );
        assert_eq!(
            parse_json::<Thing>(b"{\"name\": \"a\", \"extra\": 1}")
                .unwrap_err()
                .code,
            ErrorCode::ValidationFailed
        );
        assert!(parse_json::<Thing>(b"{\"name\": \"a\"}").is_ok());
    }

    #[test]
    fn content_type_and_limits() {
        assert!(require_json_content_type(Some("application/json; charset=utf-8")).is_ok());
        assert!(require_json_content_type(Some("Application/JSON")).is_ok());
        assert_eq!(
            require_json_content_type(Some("text/plain"))
                .unwrap_err()
                .status(),
            415
        );
        assert_eq!(require_json_content_type(None).unwrap_err().status(), 415);
        assert_eq!(
            BodyLimit(10).check_declared(Some(11)).unwrap_err().status(),
            413
        );
        assert!(BodyLimit(10).check_declared(Some(10)).is_ok());
    }
}
