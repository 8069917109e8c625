//! The owner's SCIM group → role mapping (`GET`/`PUT /v1/orgs/{org}/scim/group-roles`). A PUT
//! replaces the whole mapping and re-applies it to the org's SCIM-managed members in the same
//! audited batch; an empty mapping puts the SCIM-managed admins back to `member`.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::ids::{OrgId, TypedId};
use edgeplane_core::scim::roles::{
    GroupRole, GroupRoleInput, GroupRolesInput, GroupRolesView, MappedRole,
};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::OrgBatch;
use serde::Deserialize;
use serde_json::json;

use super::sync_roles;
use crate::authn;
use crate::cx::Cx;

#[derive(Deserialize)]
struct Row {
    group_name: String,
    role: String,
}

fn org(cx: &Cx<'_>) -> Result<OrgId, ApiError> {
    OrgId::parse(&cx.org()?.org_id).map_err(|_| ApiError::internal())
}

pub async fn get(cx: &Cx<'_>) -> Result<GroupRolesView, ApiError> {
    let rows: Vec<Row> = cx
        .db()
        .all(
            "SELECT group_name, role FROM scim_group_roles WHERE org_id = ? ORDER BY group_name",
            args![org(cx)?.as_str()],
        )
        .await?;
    let mappings = rows
        .into_iter()
        .map(|r| {
            Ok(GroupRole {
                role: MappedRole::parse(&r.role).ok_or_else(ApiError::internal)?,
                group: r.group_name,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(GroupRolesView { mappings })
}

pub async fn put(cx: &Cx<'_>, input: GroupRolesInput) -> Result<GroupRolesView, ApiError> {
    let mappings = input.validate()?;
    let org = org(cx)?;
    let rows: Vec<GroupRoleInput> = mappings.iter().map(GroupRoleInput::from).collect();
    let rows = serde_json::to_string(&rows).map_err(|_| ApiError::internal())?;
    let batch = OrgBatch::new(org.as_str())
        .delete("scim_group_roles", "1", args![])
        .insert_select(
            "scim_group_roles",
            &["group_name", "role"],
            "json_extract(value, '$.group'), json_extract(value, '$.role') FROM json_each(?)",
            args![rows],
        );
    // With no mapping left the sync touches nothing, so the roles the old mapping granted would
    // stay: SCIM-managed admins go back to `member` here, in the same batch (owners stay).
    let emptied = mappings.is_empty();
    let batch = if emptied {
        batch.update(
            "memberships",
            "role = 'member'",
            args![],
            "role = 'admin' AND user_id IN (SELECT user_id FROM scim_users WHERE org_id = ?)",
            args![org.as_str()],
        )
    } else {
        sync_roles(batch, &org)
    };
    let mut meta = json!({"mappings": mappings});
    if emptied {
        meta["scim_admins_reset_to"] = json!("member");
    }
    let event = Event::new(AuditAction::ScimGroupRolesUpdated, "org", org.as_str()).meta(meta);
    cx.commit(batch, [event]).await?;
    authn::forget_org_memberships(org.as_str());
    Ok(GroupRolesView { mappings })
}
