//! User sessions and CLI tokens as bearers (issue: identity and access).
//!
//! Not yet implemented: every user or CLI access token is refused until sessions exist.

use edgeplane_core::auth::Principal;
use edgeplane_core::crypto::jwt::Claims;
use edgeplane_core::ApiError;
use edgeplane_runtime::db::Db;

use super::invalid_token;

pub async fn resolve_user(
    _db: &Db,
    _claims: &Claims<serde_json::Value>,
) -> Result<Principal, ApiError> {
    Err(invalid_token())
}

pub async fn resolve_cli(
    _db: &Db,
    _claims: &Claims<serde_json::Value>,
) -> Result<Principal, ApiError> {
    Err(invalid_token())
}
