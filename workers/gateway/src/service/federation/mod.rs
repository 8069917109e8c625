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

/// SQL true when device group `g` selects device `d`: an explicit member, or (a tag group)
/// the device carries every tag of the group. A macro so that constant SQL can `concat!` it.
macro_rules! group_selects_device {
    () => {
        "((g.tags IS NULL AND EXISTS (SELECT 1 FROM fl_device_group_members m \
         WHERE m.group_id = g.id AND m.device_id = d.id)) \
         OR (g.tags IS NOT NULL AND NOT EXISTS (SELECT 1 FROM json_each(g.tags) t \
         WHERE t.value NOT IN (SELECT value FROM json_each(d.tags)))))"
    };
}
pub(crate) use group_selects_device;

/// A stored id of kind `T` (D1 holds what the code wrote; anything else is corruption).
pub(crate) fn stored_id<T: TypedId>(s: &str) -> Result<T, ApiError> {
    T::parse(s).map_err(|_| corrupt(T::KIND))
}

/// A stored value that does not parse as what the code wrote: logged, answered as internal.
pub(crate) fn corrupt(what: &str) -> ApiError {
    log::error("stored federation row", what);
    ApiError::internal()
}
