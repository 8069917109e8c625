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
use edgeplane_core::scim::filter::{self, Attribute};
use edgeplane_core::scim::list::ListQuery;
use edgeplane_core::scim::roles::{SYNC_FILTER, SYNC_SET};
use edgeplane_core::scim::ScimError;
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::{DbError, OrgBatch, Val};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::cx::Cx;

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
struct Count {
    n: i64,
}

/// How a resource is listed: its tables, the column naming its org, its columns and order.
pub(crate) struct Listing {
    pub from: &'static str,
    pub org_column: &'static str,
    pub columns: &'static str,
    pub order: &'static str,
}

/// One page of a listing filtered by `q` over `A`'s attributes, and the number of all matches.
pub(crate) async fn page<A: Attribute, R: DeserializeOwned>(
    cx: &Cx<'_>,
    org: &OrgId,
    q: &ListQuery,
    l: &Listing,
) -> Result<(u64, Vec<R>), ScimError> {
    let mut args: Vec<Val> = args![org.as_str()];
    let cond = match &q.filter {
        Some(f) => {
            let c = filter::parse::<A>(f)?.to_sql()?;
            args.extend(c.args);
            c.sql
        }
        None => "1".to_owned(),
    };
    let filter = format!("FROM {} WHERE {} = ? AND {cond}", l.from, l.org_column);
    let total = cx
        .db()
        .first::<Count>(&format!("SELECT COUNT(*) AS n {filter}"), args.clone())
        .await?
        .map_or(0, |c| c.n.max(0) as u64);
    if q.count == 0 {
        return Ok((total, Vec::new()));
    }
    args.extend(args![i64::from(q.count), q.offset()]);
    let rows = cx
        .db()
        .all(
            &format!(
                "SELECT {} {filter} ORDER BY {} LIMIT ? OFFSET ?",
                l.columns, l.order
            ),
            args,
        )
        .await?;
    Ok((total, rows))
}
