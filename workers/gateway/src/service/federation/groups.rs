//! Device groups: the targets of rounds and deployments. A group selects devices either by tags
//! (a device belongs when it carries every tag of the group) or by explicit membership.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::fl::presence::LastSeen;
use edgeplane_core::ids::{looks_like_id, new_id};
use edgeplane_core::{validate, ApiError};
use edgeplane_runtime::args;
use edgeplane_runtime::db::{OnDuplicate, OrgBatch};
use serde::Deserialize;
use serde_json::json;

use super::deployments::forget_rollouts;
use super::devices::validate_tags;
use super::{corrupt, group_selects_device};
use crate::authn::forget_device_facts;
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use edgeplane_core::time::IsoMillis;
use edgeplane_core::views::federation::{DeviceGroup, DeviceGroupList, GroupSelector};

const MAX_EXPLICIT: usize = 1000;

/// `POST /v1/orgs/{org}/device-groups`'s body: tags, or explicit device ids (or none).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub name: String,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub device_ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct GroupRow {
    id: String,
    name: String,
    tags: Option<String>,
    created_at_ms: i64,
    members: i64,
    eligible_now: i64,
}

/// Members (revoked devices excluded), and of them the ones online now (binds the earliest
/// heartbeat time that counts as online).
const GROUP_SELECT: &str = concat!(
    "SELECT g.id, g.name, g.tags, g.created_at_ms, \
     (SELECT count(*) FROM fl_devices d WHERE d.org_id = g.org_id AND d.revoked_at_ms IS NULL AND ",
    group_selects_device!(),
    ") AS members, \
     (SELECT count(*) FROM fl_devices d WHERE d.org_id = g.org_id AND d.revoked_at_ms IS NULL \
       AND d.heartbeat_at_ms >= ? AND ",
    group_selects_device!(),
    ") AS eligible_now FROM fl_device_groups g"
);

fn online_from() -> i64 {
    LastSeen::Online.window(now_ms()).0
}

fn view(g: GroupRow) -> Result<DeviceGroup, ApiError> {
    let tags = g
        .tags
        .map(|t| serde_json::from_str::<Vec<String>>(&t).map_err(|_| corrupt("group tags")))
        .transpose()?;
    Ok(DeviceGroup {
        id: g.id.parse().map_err(|_| corrupt("group id"))?,
        name: g.name,
        selector: if tags.is_some() {
            GroupSelector::Tags
        } else {
            GroupSelector::Explicit
        },
        tags,
        members: g.members,
        eligible_now: g.eligible_now,
        created_at: IsoMillis(g.created_at_ms),
    })
}

async fn load(cx: &Cx<'_>, id: &str) -> Result<GroupRow, ApiError> {
    if !looks_like_id(id, "dgr") {
        return Err(ApiError::not_found("device group"));
    }
    cx.db()
        .first(
            &format!("{GROUP_SELECT} WHERE g.id = ? AND g.org_id = ?"),
            args![online_from(), id, &cx.org()?.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("device group"))
}

/// Checks that every id names a device of this org (404 otherwise, as for another tenant's).
async fn check_devices(cx: &Cx<'_>, ids: &[String]) -> Result<(), ApiError> {
    if ids.len() > MAX_EXPLICIT {
        return Err(ApiError::validation(format!(
            "at most {MAX_EXPLICIT} devices at once"
        )));
    }
    #[derive(Deserialize)]
    struct N {
        n: i64,
    }
    let mut unique = ids.to_vec();
    unique.sort();
    unique.dedup();
    let json = serde_json::to_string(&unique).map_err(|_| ApiError::internal())?;
    let found: Option<N> = cx
        .db()
        .first(
            "SELECT count(*) AS n FROM fl_devices WHERE org_id = ? AND id IN (SELECT value FROM json_each(?))",
            args![&cx.org()?.org_id, json],
        )
        .await?;
    if found.map(|f| f.n).unwrap_or(0) != unique.len() as i64 {
        return Err(ApiError::not_found("device"));
    }
    Ok(())
}

/// Adds explicit members (already members stay as they are). A row is written only when both
/// the group and the device are this org's.
fn add(mut batch: OrgBatch, group: &str, devices: &[String]) -> OrgBatch {
    for d in devices {
        batch = batch.insert_linked(
            "fl_device_group_members",
            &["group_id", "device_id"],
            args![group, d],
            &[("fl_device_groups", group), ("fl_devices", d)],
            OnDuplicate::Ignore,
        );
    }
    batch
}

pub async fn create(cx: &Cx<'_>, body: CreateGroup) -> Result<DeviceGroup, ApiError> {
    let name = validate::display_name(&body.name, "name")?;
    let org_id = cx.org()?.org_id.clone();
    let now = now_ms();
    let id = new_id("dgr", now)?;
    let (tags_json, members) = match (&body.tags, &body.device_ids) {
        (Some(tags), None) => {
            if tags.is_empty() {
                return Err(ApiError::validation("a tag group needs at least one tag"));
            }
            validate_tags(tags)?;
            let mut t = tags.clone();
            t.sort();
            t.dedup();
            (
                Some(serde_json::to_string(&t).map_err(|_| ApiError::internal())?),
                Vec::new(),
            )
        }
        (None, ids) => {
            let ids = ids.clone().unwrap_or_default();
            check_devices(cx, &ids).await?;
            (None, ids)
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "a group selects devices by tags or by device_ids, not both",
            ))
        }
    };
    let batch = OrgBatch::new(&org_id).insert(
        "fl_device_groups",
        &["id", "name", "tags", "created_by", "created_at_ms"],
        args![&id, &name, tags_json, &cx.principal.id, now],
    );
    let event = Event::new(AuditAction::DeviceGroupCreated, "device_group", &id)
        .meta(json!({"name": name, "tags": body.tags, "device_ids": body.device_ids}));
    let committed = cx.commit(add(batch, &id, &members), [event]).await;
    forget_rollouts(&org_id);
    forget_device_facts(&org_id);
    committed?;
    get(cx, &id).await
}

pub async fn list(cx: &Cx<'_>) -> Result<DeviceGroupList, ApiError> {
    let rows: Vec<GroupRow> = cx
        .db()
        .all(
            &format!("{GROUP_SELECT} WHERE g.org_id = ? ORDER BY g.name LIMIT 500"),
            args![online_from(), &cx.org()?.org_id],
        )
        .await?;
    Ok(DeviceGroupList {
        device_groups: rows.into_iter().map(view).collect::<Result<_, _>>()?,
    })
}

/// Group `id` of the org `cx` acts in (another org's, or no such id: 404).
pub async fn get(cx: &Cx<'_>, id: &str) -> Result<DeviceGroup, ApiError> {
    view(load(cx, id).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMembers {
    pub device_ids: Vec<String>,
}

/// Adds explicit members to an explicit group (a tag group's members are chosen by tags: 409).
pub async fn add_members(cx: &Cx<'_>, id: &str, body: AddMembers) -> Result<DeviceGroup, ApiError> {
    let g = load(cx, id).await?;
    if g.tags.is_some() {
        return Err(ApiError::conflict(
            "a tag group's members are chosen by tags",
        ));
    }
    if body.device_ids.is_empty() {
        return Err(ApiError::validation("device_ids must not be empty"));
    }
    check_devices(cx, &body.device_ids).await?;
    let batch = add(OrgBatch::new(&cx.org()?.org_id), id, &body.device_ids);
    let event = Event::new(AuditAction::DeviceGroupMembersAdded, "device_group", id)
        .meta(json!({"device_ids": body.device_ids}));
    let committed = cx.commit(batch, [event]).await;
    // Membership is kept with each device's facts (moved on by the org's device epoch), and
    // the group change drops the org's rollouts too: every targeting input changes through
    // one door.
    forget_rollouts(&cx.org()?.org_id);
    forget_device_facts(&cx.org()?.org_id);
    committed?;
    get(cx, id).await
}
