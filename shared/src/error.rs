//! The one error type every surface answers with, and the one place it maps to HTTP.
//!
//! Handlers never pick a status code themselves: they pick an [`ErrorCode`], and the code decides the
//! status. That keeps "bad input is 4xx, never 500" checkable in a single table.

use serde::Serialize;

/// Stable, machine-readable error codes. The string form is part of the public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // 400
    InvalidJson,
    InvalidRequest,
    InvalidQuery,
    /// A one-time grant (sign-in link, OIDC state or code, device code, refresh token) that is
    /// unknown, expired, already used or revoked. Also an RFC 6749 error name.
    InvalidGrant,
    // 400, RFC 8628 device-code polling answers (only on `/oauth/*`).
    AuthorizationPending,
    SlowDown,
    AccessDenied,
    ExpiredToken,
    UnsupportedGrantType,
    InvalidScope,
    // 401
    Unauthenticated,
    InvalidToken,
    TokenExpired,
    InvalidSignature,
    /// An OAuth client that is not registered (RFC 6749).
    InvalidClient,
    // 403
    Forbidden,
    InsufficientScope,
    // 404
    NotFound,
    RouteNotFound,
    // 405
    MethodNotAllowed,
    // 409
    Conflict,
    AlreadyExists,
    // 410
    Gone,
    // 413
    PayloadTooLarge,
    // 415
    UnsupportedMediaType,
    // 422
    ValidationFailed,
    // 429
    RateLimited,
    // 500 / 502 / 503
    Internal,
    UpstreamFailed,
    Unavailable,
}

impl ErrorCode {
    pub const fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidJson | InvalidRequest | InvalidQuery | InvalidGrant | AuthorizationPending
            | SlowDown | AccessDenied | ExpiredToken | UnsupportedGrantType | InvalidScope => 400,
            Unauthenticated | InvalidToken | TokenExpired | InvalidSignature | InvalidClient => 401,
            Forbidden | InsufficientScope => 403,
            NotFound | RouteNotFound => 404,
            MethodNotAllowed => 405,
            Conflict | AlreadyExists => 409,
            Gone => 410,
            PayloadTooLarge => 413,
            UnsupportedMediaType => 415,
            ValidationFailed => 422,
            RateLimited => 429,
            Internal => 500,
            UpstreamFailed => 502,
            Unavailable => 503,
        }
    }

    pub const fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidJson => "invalid_json",
            InvalidRequest => "invalid_request",
            InvalidQuery => "invalid_query",
            InvalidGrant => "invalid_grant",
            AuthorizationPending => "authorization_pending",
            SlowDown => "slow_down",
            AccessDenied => "access_denied",
            ExpiredToken => "expired_token",
            UnsupportedGrantType => "unsupported_grant_type",
            InvalidScope => "invalid_scope",
            Unauthenticated => "unauthenticated",
            InvalidToken => "invalid_token",
            TokenExpired => "token_expired",
            InvalidSignature => "invalid_signature",
            InvalidClient => "invalid_client",
            Forbidden => "forbidden",
            InsufficientScope => "insufficient_scope",
            NotFound => "not_found",
            RouteNotFound => "route_not_found",
            MethodNotAllowed => "method_not_allowed",
            Conflict => "conflict",
            AlreadyExists => "already_exists",
            Gone => "gone",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            ValidationFailed => "validation_failed",
            RateLimited => "rate_limited",
            Internal => "internal",
            UpstreamFailed => "upstream_failed",
            Unavailable => "unavailable",
        }
    }

    /// The RFC 6749 (section 5.2) / RFC 8628 error name `/oauth/*` routes answer with, so OAuth
    /// clients see only names they know: the OAuth-specific codes keep theirs, everything else
    /// (body parsing, limits, routing) folds into the closest registered one.
    pub const fn oauth_name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidGrant | AuthorizationPending | SlowDown | AccessDenied | ExpiredToken
            | UnsupportedGrantType | InvalidScope | InvalidClient => self.as_str(),
            RateLimited => "slow_down",
            Forbidden | InsufficientScope => "access_denied",
            Unauthenticated | InvalidToken | TokenExpired | InvalidSignature => "invalid_client",
            Internal => "server_error",
            UpstreamFailed | Unavailable => "temporarily_unavailable",
            InvalidJson | InvalidRequest | InvalidQuery | NotFound | RouteNotFound
            | MethodNotAllowed | Conflict | AlreadyExists | Gone | PayloadTooLarge
            | UnsupportedMediaType | ValidationFailed => "invalid_request",
        }
    }
}

/// An error on its way to becoming a response. The message is shown to the caller, so it must never
/// contain a secret, a token, or internal detail (SQL, stack traces): log those separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds, for 429/503 answers that carry `Retry-After`.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    /// The same answer whether the resource does not exist or belongs to another tenant.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, message)
    }
    /// For failures whose detail must stay in the logs: the caller sees only a generic message.
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// The RFC 6749 error body `/oauth/*` routes answer with.
    pub fn oauth_body(&self) -> serde_json::Value {
        serde_json::json!({"error": self.code.oauth_name(), "error_description": self.message})
    }

    /// The JSON body every non-OAuth error answers with.
    pub fn body(&self, request_id: &str) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str(),
                message: &self.message,
                request_id: request_id.to_owned(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    pub code: &'static str,
    pub message: &'a str,
    pub request_id: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_documented_shape() {
        let err = ApiError::new(ErrorCode::PayloadTooLarge, "body exceeds 1024 bytes");
        let json = serde_json::to_value(err.body("req_1")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "payload_too_large",
                "message": "body exceeds 1024 bytes", "request_id": "req_1"}})
        );
        assert_eq!(err.status(), 413);
    }

    #[test]
    fn only_server_side_codes_are_5xx() {
        use ErrorCode::*;
        for code in [
            InvalidJson,
            InvalidRequest,
            InvalidQuery,
            InvalidGrant,
            AuthorizationPending,
            SlowDown,
            AccessDenied,
            ExpiredToken,
            UnsupportedGrantType,
            InvalidScope,
            InvalidClient,
            Unauthenticated,
            InvalidToken,
            TokenExpired,
            InvalidSignature,
            Forbidden,
            InsufficientScope,
            NotFound,
            RouteNotFound,
            MethodNotAllowed,
            Conflict,
            AlreadyExists,
            Gone,
            PayloadTooLarge,
            UnsupportedMediaType,
            ValidationFailed,
            RateLimited,
        ] {
            assert!((400..500).contains(&code.status()), "{code:?}");
        }
        for code in [Internal, UpstreamFailed, Unavailable] {
            assert!(code.status() >= 500);
        }
    }

    #[test]
    fn oauth_names_are_registered_ones() {
        use ErrorCode::*;
        let registered = [
            "invalid_request",
            "invalid_client",
            "invalid_grant",
            "unsupported_grant_type",
            "invalid_scope",
            "access_denied",
            "server_error",
            "temporarily_unavailable",
            "authorization_pending",
            "slow_down",
            "expired_token",
        ];
        for code in [
            InvalidJson,
            PayloadTooLarge,
            UnsupportedMediaType,
            ValidationFailed,
            RateLimited,
            Internal,
            SlowDown,
            ExpiredToken,
            InvalidClient,
            MethodNotAllowed,
            InvalidToken,
        ] {
            assert!(registered.contains(&code.oauth_name()), "{code:?}");
        }
        let body = ApiError::new(ExpiredToken, "the device code expired").oauth_body();
        assert_eq!(
            body,
            serde_json::json!({"error": "expired_token", "error_description": "the device code expired"})
        );
        assert_eq!(InvalidClient.status(), 401);
        assert_eq!(SlowDown.status(), 400);
    }
}
