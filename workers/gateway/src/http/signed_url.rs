//! The HTTP edge of signed URLs ([`edgeplane_core::crypto::signed_url`]): reading a request's
//! `expires` and `signature`, and answering a refused link, for every route a signed URL
//! reaches (upload parts, audit export downloads).

use edgeplane_core::crypto::signed_url::{QueryError, SignedQuery, UrlError};
use edgeplane_core::{ApiError, ErrorCode};

use crate::cx::Cx;

/// The request's `expires` and `signature`, each exactly once and nothing else. A URL missing
/// either is refused like one with a bad signature (401), before anything is read; any other
/// parameter is a 400.
pub fn signed_query(cx: &Cx<'_>, what: &str) -> Result<SignedQuery, ApiError> {
    SignedQuery::parse(cx.query()?).map_err(|e| match e {
        QueryError::Unexpected => ApiError::new(ErrorCode::InvalidQuery, e.to_string()),
        QueryError::Incomplete => ApiError::new(
            ErrorCode::InvalidSignature,
            format!("the {what} is incomplete"),
        ),
    })
}

/// A refused signed URL as the API answers it: an expired one says how to get a fresh one.
pub fn refused(e: UrlError, what: &str, renew: &str) -> ApiError {
    match e {
        UrlError::Expired => ApiError::new(
            ErrorCode::TokenExpired,
            format!("the {what} has expired; {renew}"),
        ),
        UrlError::BadSignature => ApiError::new(
            ErrorCode::InvalidSignature,
            format!("the {what}'s signature is invalid"),
        ),
    }
}
