//! SCIM provisioning bound to D1: users, groups, and the owner's group → role mapping. The
//! decisions (what a body or a PATCH means, which filter selects what, which role a group
//! grants) are `edgeplane_core::scim`'s; here they become reads and one audited batch each.
//!
//! SCIM routes act for an org API key, not in an `Access::Org` route, so their writes state the
//! org themselves (every org row through an `OrgBatch`) and their events name its chain.

pub mod groups;
pub mod mapping;
pub mod users;

use edgeplane_core::ids::OrgId;
use edgeplane_core::scim::roles::{SYNC_FILTER, SYNC_SET};
use edgeplane_core::scim::ScimError;
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::{DbError, OrgBatch};
use serde::Deserialize;

/// Adds the role sync (`edgeplane_core::scim::roles`) to a batch that changed something a role
/// depends on, so the roles are right when the batch commits.
pub(crate) fn sync_roles(batch: OrgBatch, org: &OrgId) -> OrgBatch {
    batch.update(
        "memberships",
        SYNC_SET,
        args![],
        SYNC_FILTER,
        args![org.as_str(), org.as_str()],
    )
}

pub(crate) fn db_error(e: DbError) -> ScimError {
    ScimError::from(ApiError::from(e))
}

#[derive(Deserialize)]
pub(crate) struct Count {
    pub n: i64,
}
