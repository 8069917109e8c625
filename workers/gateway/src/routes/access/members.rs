//! Members and roles. Role changes and removals follow `edgeplane_core::auth::policy` and
//! `edgeplane_core::access::members`; the last owner is protected by a guard evaluated inside
//! the same batch as the change, so two concurrent demotions cannot both succeed.

use edgeplane_core::access::members::{acting_role, may_remove};
use edgeplane_core::auth::policy::may_change_role;
use edgeplane_core::auth::Role;
use edgeplane_core::ids::looks_like_id;
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;
use serde::Deserialize;
use serde_json::json;

use crate::authn;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;

#[derive(Deserialize)]
struct MemberRow {
    user_id: String,
    email: String,
    display_name: Option<String>,
    role: String,
    created_at_ms: i64,
}

fn view(m: MemberRow) -> serde_json::Value {
    json!({
        "user_id": m.user_id,
        "email": m.email,
        "display_name": m.display_name,
        "role": m.role,
        "joined_at": rfc3339_millis(m.created_at_ms),
    })
}

const SELECT: &str = "SELECT m.user_id, u.email, u.display_name, m.role, m.created_at_ms \
                      FROM memberships m JOIN users u ON u.id = m.user_id";

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    let rows: Vec<MemberRow> = cx
        .db()
        .all(
            &format!("{SELECT} WHERE m.org_id = ? ORDER BY m.created_at_ms, m.user_id"),
            args![&cx.org()?.org_id],
        )
        .await?;
    respond::ok(&json!({"members": rows.into_iter().map(view).collect::<Vec<_>>()}))
}

async fn load(cx: &Cx<'_>, user_id: &str) -> Result<(MemberRow, Role), ApiError> {
    if !looks_like_id(user_id, "usr") {
        return Err(ApiError::not_found("member"));
    }
    let row: MemberRow = cx
        .db()
        .first(
            &format!("{SELECT} WHERE m.org_id = ? AND m.user_id = ?"),
            args![&cx.org()?.org_id, user_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    let role = Role::parse(&row.role).ok_or_else(ApiError::internal)?;
    Ok((row, role))
}

/// Whether the caller is `user_id` acting as themselves. Sessions and CLI tokens act as their
/// person (they carry a membership role); an API key is org automation, never "oneself", even
/// though it records who created it.
fn acts_as(cx: &Cx<'_>, user_id: &str) -> Result<bool, ApiError> {
    Ok(cx.org()?.role.is_some() && cx.principal.user_id.as_deref() == Some(user_id))
}

/// At least one owner other than `user_id` remains: checked inside the batch.
fn another_owner_remains(org_id: &str, user_id: &str) -> Stmt {
    Stmt::guard(
        "(SELECT COUNT(*) FROM memberships WHERE org_id = ? AND role = 'owner' AND user_id != ?) >= 1",
        args![org_id, user_id],
        ApiError::new(
            ErrorCode::Conflict,
            "an organization must keep at least one owner: make someone else owner first",
        ),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRole {
    role: String,
}

pub async fn change_role(cx: &mut Cx<'_>) -> HttpResult {
    let body: ChangeRole = cx.json().await?;
    let new = Role::parse(&body.role)
        .ok_or_else(|| ApiError::validation("role must be one of owner, admin, member"))?;
    let target = cx.param("user")?.to_owned();
    let (row, current) = load(cx, &target).await?;
    let org = cx.org()?.clone();
    let actor_is_target = acts_as(cx, &target)?;
    may_change_role(acting_role(&org), actor_is_target, current, new)?;
    if current == new {
        return respond::ok(&json!({"member": view(row)}));
    }
    let now = now_ms();
    let mut stmts = vec![Stmt::guard(
        "(SELECT role FROM memberships WHERE org_id = ? AND user_id = ?) = ?",
        args![&org.org_id, &target, current.as_str()],
        ApiError::conflict("the member's role changed concurrently; retry"),
    )];
    if current == Role::Owner {
        stmts.push(another_owner_remains(&org.org_id, &target));
    }
    stmts.push(Stmt::new(
        "UPDATE memberships SET role = ? WHERE org_id = ? AND user_id = ?",
        args![new.as_str(), &org.org_id, &target],
    ));
    let event = cx.rc.audit(
        &cx.principal,
        Some(&org.org_id),
        "member.role_changed",
        "membership",
        &target,
        json!({"from": current.as_str(), "to": new.as_str()}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;
    authn::forget_memberships(&target);
    let (row, _) = load(cx, &target).await?;
    respond::ok(&json!({"member": view(row)}))
}

async fn remove_member(cx: &mut Cx<'_>, target: &str, action: &str) -> HttpResult {
    let (_, role) = load(cx, target).await?;
    let org = cx.org()?.clone();
    let actor_is_target = acts_as(cx, target)?;
    if !may_remove(acting_role(&org), actor_is_target, role) {
        return Err(ApiError::forbidden("only an owner can remove an owner"));
    }
    let mut stmts = Vec::new();
    if role == Role::Owner {
        stmts.push(another_owner_remains(&org.org_id, target));
    }
    stmts.push(Stmt::new(
        "DELETE FROM memberships WHERE org_id = ? AND user_id = ?",
        args![&org.org_id, target],
    ));
    let event = cx.rc.audit(
        &cx.principal,
        Some(&org.org_id),
        action,
        "membership",
        target,
        json!({"role": role.as_str()}),
    );
    cx.db().commit_audited(stmts, vec![event], now_ms()).await?;
    authn::forget_memberships(target);
    respond::no_content()
}

pub async fn remove(cx: &mut Cx<'_>) -> HttpResult {
    let target = cx.param("user")?.to_owned();
    remove_member(cx, &target, "member.removed").await
}

/// A person leaves an org themselves (any role; the last owner cannot).
pub async fn leave(cx: &mut Cx<'_>) -> HttpResult {
    // Only a person acting as themselves (a session or CLI token, which carry a role) leaves;
    // an API key has no membership to give up.
    let me = match (cx.org()?.role, cx.principal.user_id.clone()) {
        (Some(_), Some(user)) => user,
        _ => {
            return Err(ApiError::forbidden(
                "only a member signed in as themselves can leave an organization",
            ))
        }
    };
    remove_member(cx, &me, "member.left").await
}
