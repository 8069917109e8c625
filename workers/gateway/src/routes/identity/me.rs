//! The signed-in person: profile and memberships, their organizations, creating one, and what
//! the caller may do inside an org.

use edgeplane_core::auth::{PrincipalKind, Role};
use edgeplane_core::ids::new_id;
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::{validate, ApiError};
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;
use serde::Deserialize;
use serde_json::json;

use super::{limits, require_user, signin::UserRow};
use crate::authn;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;

/// People (and their CLI tokens) only: API keys and devices have no "me".
fn person(cx: &Cx<'_>) -> Result<String, ApiError> {
    match cx.principal.kind {
        PrincipalKind::User | PrincipalKind::CliToken => {
            cx.principal.user_id.clone().ok_or_else(ApiError::internal)
        }
        _ => Err(ApiError::forbidden(
            "this route is for signed-in people (a session or CLI token)",
        )),
    }
}

#[derive(Deserialize)]
struct MemberOrg {
    id: String,
    slug: String,
    name: String,
    role: String,
    joined_at_ms: i64,
}

/// The caller's orgs; a CLI token sees only its own.
async fn member_orgs(cx: &Cx<'_>, user_id: &str) -> Result<Vec<serde_json::Value>, ApiError> {
    let rows: Vec<MemberOrg> = cx
        .db()
        .all(
            "SELECT o.id, o.slug, o.name, m.role, m.created_at_ms AS joined_at_ms \
             FROM memberships m JOIN orgs o ON o.id = m.org_id \
             WHERE m.user_id = ? AND o.deleted_at_ms IS NULL ORDER BY o.name",
            args![user_id],
        )
        .await?;
    let only = cx.principal.bound.as_ref().map(|b| b.org_id.clone());
    Ok(rows
        .into_iter()
        .filter(|r| only.as_ref().is_none_or(|o| *o == r.id))
        .map(|r| {
            json!({"org": {"id": r.id, "slug": r.slug, "name": r.name}, "role": r.role,
                   "joined_at": rfc3339_millis(r.joined_at_ms)})
        })
        .collect())
}

#[derive(Deserialize)]
struct Profile {
    id: String,
    email: String,
    display_name: Option<String>,
    created_at_ms: i64,
}

pub async fn get_me(cx: &mut Cx<'_>) -> HttpResult {
    let user_id = person(cx)?;
    let u: Profile = cx
        .db()
        .first(
            "SELECT id, email, display_name, created_at_ms FROM users WHERE id = ?",
            args![&user_id],
        )
        .await?
        .ok_or_else(ApiError::internal)?;
    let memberships = member_orgs(cx, &user_id).await?;
    respond::ok(&json!({
        "user": {"id": u.id, "email": u.email, "display_name": u.display_name,
                 "created_at": rfc3339_millis(u.created_at_ms)},
        "memberships": memberships,
        "session": {"id": cx.principal.session_id, "kind": cx.principal.kind.as_str()},
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateMe {
    display_name: String,
}

pub async fn update_me(cx: &mut Cx<'_>) -> HttpResult {
    let (user_id, _) = require_user(&cx.principal)?;
    let user_id = user_id.to_owned();
    let body: UpdateMe = cx.json().await?;
    let name = validate::display_name(&body.display_name, "display_name")?;
    let now = now_ms();
    let stmts = vec![Stmt::new(
        "UPDATE users SET display_name = ? WHERE id = ?",
        args![&name, &user_id],
    )];
    let event = cx.rc.audit(
        &cx.principal,
        None,
        "user.updated",
        "user",
        &user_id,
        json!({"display_name": name}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;
    let u: UserRow = cx
        .db()
        .first(
            "SELECT id, email, display_name, disabled_at_ms FROM users WHERE id = ?",
            args![&user_id],
        )
        .await?
        .ok_or_else(ApiError::internal)?;
    respond::ok(&json!({"user": u.view()}))
}

pub async fn list_orgs(cx: &mut Cx<'_>) -> HttpResult {
    let user_id = person(cx)?;
    respond::ok(&json!({"orgs": member_orgs(cx, &user_id).await?}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrg {
    name: String,
    #[serde(default)]
    slug: Option<String>,
}

/// A signed-in person creates an org and becomes its owner (the only way anyone starts as owner).
pub async fn create_org(cx: &mut Cx<'_>) -> HttpResult {
    let (user_id, _) = require_user(&cx.principal)?;
    let user_id = user_id.to_owned();
    let body: CreateOrg = cx.json().await?;
    let name = validate::display_name(&body.name, "name")?;
    let slug = match body.slug {
        Some(s) => s,
        None => validate::slugify(&name),
    };
    validate::slug(&slug)?;
    limits::per_account(cx, "org-create", &user_id, limits::ORGS_PER_USER).await?;
    let now = now_ms();
    let org_id = new_id("org", now)?;
    let stmts = vec![
        Stmt::new(
            "INSERT INTO orgs (id, slug, name, created_at_ms, created_by) VALUES (?, ?, ?, ?, ?)",
            args![&org_id, &slug, &name, now, &user_id],
        ),
        Stmt::new(
            "INSERT INTO memberships (org_id, user_id, role, created_at_ms) VALUES (?, ?, ?, ?)",
            args![&org_id, &user_id, Role::Owner.as_str(), now],
        ),
    ];
    let event = cx.rc.audit(
        &cx.principal,
        Some(&org_id),
        "org.created",
        "org",
        &org_id,
        json!({"slug": slug, "name": name, "owner_user_id": user_id}),
    );
    cx.db()
        .commit_audited(stmts, vec![event], now)
        .await
        .map_err(|e| match e.code {
            edgeplane_core::ErrorCode::AlreadyExists => {
                ApiError::new(e.code, "an organization with this slug already exists")
            }
            _ => e,
        })?;
    authn::forget_memberships(&user_id);
    respond::created(&json!({
        "org": {"id": org_id, "slug": slug, "name": name, "created_at": rfc3339_millis(now)},
        "role": Role::Owner,
    }))
}

/// `GET /v1/orgs/{org}/me`: the caller's standing in the org — role and effective scopes —
/// answered from the resolved access alone.
pub async fn org_me(cx: &mut Cx<'_>) -> HttpResult {
    let access = cx.org()?;
    respond::ok(&json!({
        "org_id": access.org_id,
        "principal": {"kind": cx.principal.kind.as_str(), "id": cx.principal.id,
                      "user_id": cx.principal.user_id},
        "role": access.role,
        "scopes": access.scopes,
    }))
}
