//! SCIM's own error answer (RFC 7644 §3.12): `urn:ietf:params:scim:api:messages:2.0:Error`,
//! `status` as a string, `scimType` where the RFC names one. IdPs read `scimType` to decide
//! whether to retry or to report a configuration problem, so it is a closed enum, never a
//! free string.

use serde::Serialize;

use crate::error::{ApiError, ErrorCode};

pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The `scimType` values RFC 7644 §3.12 defines (those this service can answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
}

/// An error on its way to a SCIM client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<ScimType>,
    /// Shown to the client: never a secret, a token or internal detail.
    pub detail: String,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<ScimType>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    /// 400 with a `scimType`: the request is wrong in the way `scim_type` says.
    pub fn bad(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type), detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(404, None, format!("{what} not found"))
    }

    /// Stored data that does not parse: a defect, never the request's doing.
    pub fn internal() -> Self {
        Self::new(500, None, "internal error")
    }

    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(409, Some(ScimType::Uniqueness), detail)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = serde_json::json!(t);
        }
        body
    }
}

impl std::fmt::Display for ScimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}: {}", self.status, self.scim_type, self.detail)
    }
}

impl std::error::Error for ScimError {}

/// The platform's errors (authentication, routing, body limits, database guards) keep their
/// status; the ones that are about the request's content get the `scimType` RFC 7644 gives
/// that kind of mistake.
impl From<ApiError> for ScimError {
    fn from(e: ApiError) -> Self {
        let scim_type = match e.code {
            ErrorCode::InvalidJson => Some(ScimType::InvalidSyntax),
            ErrorCode::ValidationFailed | ErrorCode::InvalidRequest => Some(ScimType::InvalidValue),
            ErrorCode::InvalidQuery => Some(ScimType::InvalidFilter),
            ErrorCode::AlreadyExists => Some(ScimType::Uniqueness),
            _ => None,
        };
        // A body that is not JSON, or not the resource's shape, is a 400 in SCIM (RFC 7644
        // §3.12 has no 422); the platform's other statuses mean the same in both.
        let status = match e.code {
            ErrorCode::InvalidJson | ErrorCode::ValidationFailed => 400,
            c => c.status(),
        };
        Self::new(status, scim_type, e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_rfc_shape() {
        let e = ScimError::bad(ScimType::InvalidFilter, "unknown operator `xx`");
        assert_eq!(
            e.body(),
            serde_json::json!({"schemas": [ERROR_SCHEMA], "status": "400",
                "scimType": "invalidFilter", "detail": "unknown operator `xx`"})
        );
        let nf = ScimError::not_found("user").body();
        assert_eq!(nf["status"], "404");
        assert!(nf.get("scimType").is_none());
    }

    #[test]
    fn platform_errors_keep_their_status_and_gain_a_type() {
        let e = ScimError::from(ApiError::validation("bad"));
        assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidValue)));
        let e = ScimError::from(ApiError::new(ErrorCode::InvalidJson, "x"));
        assert_eq!(
            (e.status, e.scim_type),
            (400, Some(ScimType::InvalidSyntax))
        );
        let e = ScimError::from(ApiError::new(ErrorCode::InsufficientScope, "x"));
        assert_eq!((e.status, e.scim_type), (403, None));
        let e = ScimError::from(ApiError::new(ErrorCode::PayloadTooLarge, "x"));
        assert_eq!(e.status, 413);
        let e = ScimError::from(ApiError::new(ErrorCode::AlreadyExists, "x"));
        assert_eq!((e.status, e.scim_type), (409, Some(ScimType::Uniqueness)));
    }
}
