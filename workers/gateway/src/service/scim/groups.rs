//! SCIM Groups: an org's directory groups and their members (the org's SCIM users), which
//! decide roles through the owner's mapping (`edgeplane_core::scim::roles`). Every change
//! re-applies the mapping in its own batch.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::ids::{OrgId, ScimGroupId};
use edgeplane_core::scim::list::{self, ListQuery};
use edgeplane_core::scim::patch::{self, GroupEdit};
use edgeplane_core::scim::resource::{GroupAttr, GroupFields, GroupRecord, GROUP_MEMBERS_SQL};
use edgeplane_core::scim::ScimError;
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::OrgBatch;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{db_error, page, sync_roles, Listing};
use crate::authn;
use crate::cx::Cx;
use crate::http::ctx::now_ms;

/// Most members one group's answer lists (the cap holds per group, so no group of a page is
/// cut short by the others). An IdP manages membership by PATCH and never needs the whole list
/// back; the cap keeps one answer's memory bounded whatever the group's size, and an IdP that
/// asks for `excludedAttributes=members` has no members read at all.
const MAX_MEMBERS_SHOWN: i64 = 10_000;
/// Most members one answer lists across all its groups: a page of 200 groups would otherwise
/// read up to 2,000,000 member ids. A listing page shares this budget evenly between its
/// groups (IdPs list groups with `excludedAttributes=members` and read members one group at a
/// time, where a group gets the whole [`MAX_MEMBERS_SHOWN`]).
const MAX_MEMBERS_PER_ANSWER: i64 = 20_000;

#[derive(Deserialize)]
struct Row {
    id: String,
    display_name: String,
    external_id: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

#[derive(Deserialize)]
struct MemberRow {
    group_id: String,
    user_id: String,
}

const LISTING: Listing = Listing {
    from: "scim_groups g",
    org_column: "g.org_id",
    columns: "g.id, g.display_name, g.external_id, g.created_at_ms, g.updated_at_ms",
    order: "g.created_at_ms, g.id",
};

/// The members of `groups`, at most [`MAX_MEMBERS_SHOWN`] of each and
/// [`MAX_MEMBERS_PER_ANSWER`] in all, in one read; none when the answer leaves members out
/// (`with_members` false).
async fn members_of(
    cx: &Cx<'_>,
    org: &OrgId,
    groups: &[String],
    with_members: bool,
) -> Result<Vec<MemberRow>, ScimError> {
    if groups.is_empty() || !with_members {
        return Ok(Vec::new());
    }
    let ids = serde_json::to_string(groups).map_err(|_| ScimError::internal())?;
    Ok(cx
        .db()
        .all(
            GROUP_MEMBERS_SQL,
            args![org.as_str(), ids, per_group_cap(groups.len())],
        )
        .await?)
}

/// Each group's share of the answer's member budget.
fn per_group_cap(groups: usize) -> i64 {
    let groups = i64::try_from(groups.max(1)).unwrap_or(i64::MAX);
    (MAX_MEMBERS_PER_ANSWER / groups).clamp(1, MAX_MEMBERS_SHOWN)
}

fn records(rows: Vec<Row>, members: Vec<MemberRow>) -> Vec<GroupRecord> {
    rows.into_iter()
        .map(|r| GroupRecord {
            members: members
                .iter()
                .filter(|m| m.group_id == r.id)
                .map(|m| m.user_id.clone())
                .collect(),
            id: r.id,
            display_name: r.display_name,
            external_id: r.external_id,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
        })
        .collect()
}

/// The group's row, if it is this org's.
async fn load(cx: &Cx<'_>, org: &OrgId, group: &ScimGroupId) -> Result<Row, ScimError> {
    cx.db()
        .first(
            &format!(
                "SELECT {} FROM {} WHERE g.org_id = ? AND g.id = ?",
                LISTING.columns, LISTING.from
            ),
            args![org.as_str(), group.as_str()],
        )
        .await?
        .ok_or_else(|| ScimError::not_found("group"))
}

/// The group's SCIM answer; `with_members` false leaves its member list unread (empty).
pub async fn get(
    cx: &Cx<'_>,
    org: &OrgId,
    group: &ScimGroupId,
    base: &str,
    with_members: bool,
) -> Result<Value, ScimError> {
    let row = load(cx, org, group).await?;
    let members = members_of(cx, org, std::slice::from_ref(&row.id), with_members).await?;
    records(vec![row], members)
        .pop()
        .map(|g| g.to_json(base))
        .ok_or_else(ScimError::internal)
}

pub async fn list(
    cx: &Cx<'_>,
    org: &OrgId,
    q: &ListQuery,
    base: &str,
    with_members: bool,
) -> Result<Value, ScimError> {
    let (total, rows) = page::<GroupAttr, Row>(cx, org, q, &LISTING).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let members = members_of(cx, org, &ids, with_members).await?;
    let resources = records(rows, members)
        .iter()
        .map(|g| g.to_json(base))
        .collect();
    Ok(list::response(total, q.start_index, resources))
}

/// Every named member is a SCIM user of this org (checked inside the batch): a group never
/// reaches another org's people, and an unknown id is the client's mistake, not a silent drop.
fn members_exist(batch: OrgBatch, org: &OrgId, ids: &str) -> OrgBatch {
    batch.guard(
        "NOT EXISTS (SELECT 1 FROM json_each(?) WHERE value NOT IN \
         (SELECT user_id FROM scim_users WHERE org_id = ?))",
        args![ids, org.as_str()],
        ApiError::validation("every member must be a user provisioned in this org"),
    )
}

fn add_members(
    batch: OrgBatch,
    org: &OrgId,
    group: &str,
    members: &[String],
) -> Result<OrgBatch, ScimError> {
    if members.is_empty() {
        return Ok(batch);
    }
    let ids = serde_json::to_string(members).map_err(|_| ScimError::internal())?;
    Ok(members_exist(batch, org, &ids).insert_select(
        "scim_group_members",
        &["group_id", "user_id"],
        "?, value FROM json_each(?) WHERE value NOT IN \
         (SELECT user_id FROM scim_group_members WHERE group_id = ?)",
        args![group, ids, group],
    ))
}

fn remove_members(batch: OrgBatch, group: &str, members: &[String]) -> Result<OrgBatch, ScimError> {
    let ids = serde_json::to_string(members).map_err(|_| ScimError::internal())?;
    Ok(batch.delete(
        "scim_group_members",
        "group_id = ? AND user_id IN (SELECT value FROM json_each(?))",
        args![group, ids],
    ))
}

fn remove_all_members(batch: OrgBatch, group: &str) -> OrgBatch {
    batch.delete("scim_group_members", "group_id = ?", args![group])
}

/// Commits a group change with its role sync, then drops this isolate's cached memberships of
/// the org (the change may have moved several roles).
async fn commit(cx: &Cx<'_>, org: &OrgId, batch: OrgBatch, event: Event) -> Result<(), ScimError> {
    // The `OrgBatch` itself, not its statements: the commit then checks that the writes are
    // the org's the facts name, and binds the batch's org to the change.
    let batch = sync_roles(batch, org);
    cx.commit(batch, [event.in_org(org.as_str())])
        .await
        .map_err(|e| {
            if e.is_unique_in("scim_groups") {
                ScimError::uniqueness("a group with this displayName exists in this org")
            } else {
                db_error(e)
            }
        })?;
    authn::forget_org_memberships(org.as_str());
    Ok(())
}

/// `POST /Groups`.
pub async fn create(
    cx: &Cx<'_>,
    org: &OrgId,
    body: &Value,
    base: &str,
) -> Result<Value, ScimError> {
    let f = GroupFields::from_json(body)?;
    let now = now_ms();
    let id = ScimGroupId::generate(now)?;
    let batch = OrgBatch::new(org.as_str()).insert(
        "scim_groups",
        &[
            "id",
            "display_name",
            "external_id",
            "created_at_ms",
            "updated_at_ms",
        ],
        args![
            id.as_str(),
            &f.display_name,
            f.external_id.clone(),
            now,
            now
        ],
    );
    let batch = add_members(batch, org, id.as_str(), &f.members)?;
    let event = Event::new(AuditAction::ScimGroupCreated, "scim_group", id.as_str())
        .meta(json!({"display_name": f.display_name, "members_added": f.members}));
    commit(cx, org, batch, event).await?;
    get(cx, org, &id, base, true).await
}

fn touch(batch: OrgBatch, group: &str, now: i64) -> OrgBatch {
    batch.update(
        "scim_groups",
        "updated_at_ms = ?",
        args![now],
        "id = ?",
        args![group],
    )
}

/// `PUT /Groups/{id}`: name, externalId and the whole member list.
pub async fn replace(
    cx: &Cx<'_>,
    org: &OrgId,
    group: &ScimGroupId,
    body: &Value,
    base: &str,
) -> Result<Value, ScimError> {
    let f = GroupFields::from_json(body)?;
    load(cx, org, group).await?;
    let g = group.as_str();
    let batch = OrgBatch::new(org.as_str()).update(
        "scim_groups",
        "display_name = ?, external_id = ?, updated_at_ms = ?",
        args![&f.display_name, f.external_id.clone(), now_ms()],
        "id = ?",
        args![g],
    );
    let batch = add_members(remove_all_members(batch, g), org, g, &f.members)?;
    let event = Event::new(AuditAction::ScimGroupUpdated, "scim_group", g)
        .meta(json!({"display_name": f.display_name, "members_replaced": f.members}));
    commit(cx, org, batch, event).await?;
    get(cx, org, group, base, true).await
}

/// `PATCH /Groups/{id}`: the edits in the order the PATCH gave them, in one batch.
pub async fn patch(
    cx: &Cx<'_>,
    org: &OrgId,
    group: &ScimGroupId,
    body: &Value,
    base: &str,
) -> Result<Value, ScimError> {
    let edits = patch::group_edits(&patch::parse(body)?, group.as_str())?;
    load(cx, org, group).await?;
    let g = group.as_str();
    let mut batch = touch(OrgBatch::new(org.as_str()), g, now_ms());
    let mut summary = Vec::with_capacity(edits.len());
    for edit in &edits {
        batch = match edit {
            GroupEdit::SetDisplayName(n) => {
                summary.push(json!({"display_name": n}));
                batch.update(
                    "scim_groups",
                    "display_name = ?",
                    args![n],
                    "id = ?",
                    args![g],
                )
            }
            GroupEdit::SetExternalId(x) => {
                summary.push(json!({"external_id": x}));
                batch.update(
                    "scim_groups",
                    "external_id = ?",
                    args![x.clone()],
                    "id = ?",
                    args![g],
                )
            }
            GroupEdit::AddMembers(ids) => {
                summary.push(json!({"members_added": ids}));
                add_members(batch, org, g, ids)?
            }
            GroupEdit::RemoveMembers(ids) => {
                summary.push(json!({"members_removed": ids}));
                remove_members(batch, g, ids)?
            }
            GroupEdit::ReplaceMembers(ids) => {
                summary.push(json!({"members_replaced": ids}));
                add_members(remove_all_members(batch, g), org, g, ids)?
            }
            GroupEdit::RemoveAllMembers => {
                summary.push(json!({"members_removed": "all"}));
                remove_all_members(batch, g)
            }
        };
    }
    let event =
        Event::new(AuditAction::ScimGroupUpdated, "scim_group", g).meta(json!({"edits": summary}));
    commit(cx, org, batch, event).await?;
    get(cx, org, group, base, true).await
}

/// `DELETE /Groups/{id}`: the group and its memberships; roles follow.
pub async fn delete(cx: &Cx<'_>, org: &OrgId, group: &ScimGroupId) -> Result<(), ScimError> {
    let name = load(cx, org, group).await?.display_name;
    let g = group.as_str();
    let batch = remove_all_members(OrgBatch::new(org.as_str()), g).delete(
        "scim_groups",
        "id = ?",
        args![g],
    );
    let event = Event::new(AuditAction::ScimGroupDeleted, "scim_group", g)
        .meta(json!({"display_name": name}));
    commit(cx, org, batch, event).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reads_a_bounded_number_of_members_however_many_groups_it_lists() {
        assert_eq!(per_group_cap(1), MAX_MEMBERS_SHOWN);
        assert_eq!(per_group_cap(0), MAX_MEMBERS_SHOWN);
        for groups in [2usize, 3, 7, 200] {
            let cap = per_group_cap(groups);
            assert!((1..=MAX_MEMBERS_SHOWN).contains(&cap));
            assert!(
                cap * groups as i64 <= MAX_MEMBERS_PER_ANSWER,
                "{groups} groups"
            );
        }
        assert_eq!(per_group_cap(200), 100);
    }
}
