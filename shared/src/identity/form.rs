//! `application/x-www-form-urlencoded` bodies, the format OAuth endpoints take (RFC 6749 §3.2).

use crate::error::{ApiError, ErrorCode};

/// Decoded parameters. A parameter sent twice is an error (RFC 6749 §3.1: parameters MUST NOT be
/// included more than once); unrecognized ones are kept but callers ignore them, as the RFC asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Result<Form, ApiError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "the body is not UTF-8"))?;
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in url::form_urlencoded::parse(text.as_bytes()) {
            if out.iter().any(|(seen, _)| *seen == k) {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("parameter `{k}` is repeated"),
                ));
            }
            out.push((k.into_owned(), v.into_owned()));
        }
        Ok(Form(out))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A required parameter, or `invalid_request` naming it.
    pub fn require(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("missing parameter `{name}`"),
            )
        })
    }
}

/// OAuth endpoints take only form bodies (optionally with a charset parameter).
pub fn require_form_content_type(content_type: Option<&str>) -> Result<(), ApiError> {
    let ok = content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "this endpoint accepts only Content-Type: application/x-www-form-urlencoded",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decodes_and_refuses_repeats() {
        let f = Form::parse(b"grant_type=refresh_token&refresh_token=a%2Bb+c&x=").unwrap();
        assert_eq!(f.get("grant_type"), Some("refresh_token"));
        assert_eq!(f.get("refresh_token"), Some("a+b c"));
        assert_eq!(f.get("x"), None);
        assert_eq!(
            f.require("client_id").unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert!(Form::parse(b"a=1&a=2").is_err());
        assert!(Form::parse(&[0xff, 0xfe]).is_err());
        assert!(require_form_content_type(Some(
            "application/x-www-form-urlencoded; charset=UTF-8"
        ))
        .is_ok());
        assert_eq!(
            require_form_content_type(Some("application/json"))
                .unwrap_err()
                .status(),
            415
        );
    }
}
