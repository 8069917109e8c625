//! Federated-learning devices as bearers (issue: federated learning).
//!
//! Not yet implemented: every device access token is refused until device auth exists.

use edgeplane_core::auth::Principal;
use edgeplane_core::crypto::jwt::Claims;
use edgeplane_core::ApiError;
use edgeplane_runtime::db::Db;

use super::invalid_token;

pub async fn resolve(_db: &Db, _claims: &Claims<serde_json::Value>) -> Result<Principal, ApiError> {
    Err(invalid_token())
}
