//! Building responses: JSON bodies, errors in the one documented shape, common headers.

use edgeplane_core::scim::{ScimError, CONTENT_TYPE as SCIM_CONTENT_TYPE};
use edgeplane_core::ApiError;
use serde::Serialize;
use worker::{Headers, Response, ResponseBuilder};

use edgeplane_runtime::db::OrInternal;

pub type HttpResult = Result<Response, ApiError>;

pub fn json<T: Serialize>(status: u16, body: &T) -> HttpResult {
    Ok(Response::from_json(body)
        .or_internal("serialize response")?
        .with_status(status))
}

pub fn ok<T: Serialize>(body: &T) -> HttpResult {
    json(200, body)
}

pub fn created<T: Serialize>(body: &T) -> HttpResult {
    json(201, body)
}

pub fn no_content() -> HttpResult {
    Ok(Response::empty()
        .or_internal("empty response")?
        .with_status(204))
}

/// `{"error": {"code", "message", "request_id"}}`, plus `Retry-After` when the error has one.
pub fn error(err: &ApiError, request_id: &str) -> Response {
    let body = serde_json::to_vec(&err.body(request_id)).unwrap_or_default();
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    if let Some(s) = err.retry_after {
        let _ = headers.set("retry-after", &s.to_string());
    }
    ResponseBuilder::new()
        .with_status(err.status())
        .with_headers(headers)
        .fixed(body)
}

/// `{"error", "error_description"}` (RFC 6749 §5.2) for the `/oauth/*` endpoints, with the
/// status the error code decides and `Retry-After` when it has one.
pub fn oauth_error(err: &ApiError) -> Response {
    let body = serde_json::to_vec(&err.oauth_body()).unwrap_or_default();
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    if let Some(s) = err.retry_after {
        let _ = headers.set("retry-after", &s.to_string());
    }
    ResponseBuilder::new()
        .with_status(err.status())
        .with_headers(headers)
        .fixed(body)
}

/// A SCIM resource or message (`application/scim+json`).
pub fn scim(status: u16, body: &serde_json::Value) -> HttpResult {
    // A `Value` always serializes (its map keys are strings).
    let bytes = serde_json::to_vec(body).map_err(|_| ApiError::internal())?;
    let headers = Headers::new();
    let _ = headers.set("content-type", SCIM_CONTENT_TYPE);
    Ok(ResponseBuilder::new()
        .with_status(status)
        .with_headers(headers)
        .fixed(bytes))
}

/// RFC 7644 §3.12's error body for the `/scim/v2` routes.
pub fn scim_error(err: &ScimError) -> Response {
    let body = serde_json::to_vec(&err.body()).unwrap_or_default();
    let headers = Headers::new();
    let _ = headers.set("content-type", SCIM_CONTENT_TYPE);
    ResponseBuilder::new()
        .with_status(err.status)
        .with_headers(headers)
        .fixed(body)
}

/// Headers on every response.
pub fn finish(resp: &mut Response, request_id: &str) {
    let h = resp.headers_mut();
    let _ = h.set("x-request-id", request_id);
    let _ = h.set("x-content-type-options", "nosniff");
    let _ = h.set("cache-control", "no-store");
}
