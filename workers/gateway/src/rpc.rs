//! The internal request/response convention between the gateway and its federated-learning
//! Durable Objects: a JSON body in, `{"ok": T}` or `{"err": {kind, message}}` out, so a refusal
//! decided inside an object reaches the device as the same 4xx the gateway would have given.

use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::db::OrInternal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use worker::{Method, Request, RequestInit, Response, Stub};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    NotFound,
    Conflict,
    Forbidden,
    InvalidToken,
    Validation,
    PayloadTooLarge,
    Unavailable,
    Internal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireError {
    pub kind: Kind,
    pub message: String,
}

impl From<ApiError> for WireError {
    fn from(e: ApiError) -> Self {
        let kind = match e.code {
            ErrorCode::NotFound | ErrorCode::RouteNotFound => Kind::NotFound,
            ErrorCode::Conflict | ErrorCode::AlreadyExists | ErrorCode::Gone => Kind::Conflict,
            ErrorCode::Forbidden | ErrorCode::InsufficientScope => Kind::Forbidden,
            ErrorCode::Unauthenticated | ErrorCode::InvalidToken | ErrorCode::TokenExpired => {
                Kind::InvalidToken
            }
            ErrorCode::PayloadTooLarge => Kind::PayloadTooLarge,
            ErrorCode::RateLimited | ErrorCode::Unavailable => Kind::Unavailable,
            ErrorCode::Internal | ErrorCode::UpstreamFailed => Kind::Internal,
            _ => Kind::Validation,
        };
        WireError {
            kind,
            message: e.message,
        }
    }
}

impl From<WireError> for ApiError {
    fn from(w: WireError) -> Self {
        let code = match w.kind {
            Kind::NotFound => ErrorCode::NotFound,
            Kind::Conflict => ErrorCode::Conflict,
            Kind::Forbidden => ErrorCode::Forbidden,
            Kind::InvalidToken => ErrorCode::InvalidToken,
            Kind::Validation => ErrorCode::ValidationFailed,
            Kind::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            Kind::Unavailable => {
                return ApiError::new(ErrorCode::Unavailable, w.message).with_retry_after(1)
            }
            Kind::Internal => return ApiError::internal(),
        };
        ApiError::new(code, w.message)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Envelope<T> {
    Ok(T),
    Err(WireError),
}

/// A Durable Object's answer.
pub fn reply<T: Serialize>(result: Result<T, ApiError>) -> worker::Result<Response> {
    match result {
        Ok(v) => Response::from_json(&Envelope::Ok(v)),
        Err(e) => Response::from_json(&Envelope::<()>::Err(e.into())),
    }
}

/// Calls `path` on a Durable Object with a JSON body.
pub async fn call<B: Serialize, T: DeserializeOwned>(
    stub: &Stub,
    path: &str,
    body: &B,
) -> Result<T, ApiError> {
    let text = serde_json::to_string(body).map_err(|_| ApiError::internal())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(text.into()));
    let req = Request::new_with_init(&format!("https://fl.internal{path}"), &init)
        .or_internal("do request")?;
    let mut resp = stub.fetch_with_request(req).await.or_internal("do fetch")?;
    let env: Envelope<T> = resp.json().await.or_internal("do reply")?;
    match env {
        Envelope::Ok(v) => Ok(v),
        Envelope::Err(e) => Err(e.into()),
    }
}
