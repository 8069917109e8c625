//! Federated learning: reading rounds (with their coordinator's live counts), devices and
//! device groups as the shared views.

pub mod deployments;
pub mod devices;
pub mod digest;
pub mod groups;
pub mod ingest;
pub mod models;
pub mod round_lifecycle;
pub mod rounds;
pub mod versions;

use edgeplane_core::ids::TypedId;
use edgeplane_core::ApiError;
use edgeplane_runtime::log;

/// A stored id of kind `T` (D1 holds what the code wrote; anything else is corruption).
pub(crate) fn stored_id<T: TypedId>(s: &str) -> Result<T, ApiError> {
    T::parse(s).map_err(|_| corrupt(T::KIND))
}

/// A stored value that does not parse as what the code wrote: logged, answered as internal.
pub(crate) fn corrupt(what: &str) -> ApiError {
    log::error("stored federation row", what);
    ApiError::internal()
}
