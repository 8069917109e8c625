//! The signed-in person: profile and memberships, their organizations, creating one, and what
//! the caller may do inside an org.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::auth::{PrincipalKind, Role};
use edgeplane_core::ids::{OrgId, TypedId, UserId};
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::views::core::OrgView;
use edgeplane_core::views::identity::{
    CredentialRef, MeView, OrgCreated, OrgMeView, OrgMembershipView, OrgSummary, OrgsView,
    PrincipalView, ProfileView, UserEnvelope,
};
use edgeplane_core::{validate, ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::{OrgBatch, Stmt};
use serde::Deserialize;
use serde_json::json;

use super::limits;
use super::signin::user_by_id;
use crate::authn;
use crate::cx::Cx;
use crate::http::ctx::now_ms;

fn internal<E>(_: E) -> ApiError {
    ApiError::internal()
}

/// People (and their CLI tokens) only: API keys and devices have no "me".
pub fn person(cx: &Cx<'_>) -> Result<String, ApiError> {
    match cx.principal.kind {
        PrincipalKind::User | PrincipalKind::CliToken => {
            cx.principal.user_id.clone().ok_or_else(ApiError::internal)
        }
        _ => Err(ApiError::forbidden(
            "this route is for signed-in people (a session or CLI token)",
        )),
    }
}

/// The caller's orgs; a CLI token sees only its own. Always read from D1 (a list shows an org
/// joined a moment ago on another isolate).
async fn member_orgs(cx: &Cx<'_>, user_id: &str) -> Result<Vec<OrgMembershipView>, ApiError> {
    let rows = authn::read_memberships(cx.db(), user_id).await?;
    let only = cx.principal.bound.as_ref().map(|b| b.org_id.clone());
    rows.iter()
        .filter(|r| only.as_ref().is_none_or(|o| *o == r.org_id))
        .map(membership_view)
        .collect()
}

/// A membership as the API and the console show it.
pub fn membership_view(m: &authn::Membership) -> Result<OrgMembershipView, ApiError> {
    Ok(OrgMembershipView {
        org: OrgSummary {
            id: OrgId::parse(&m.org_id).map_err(internal)?,
            slug: m.slug.clone(),
            name: m.name.clone(),
        },
        role: Role::parse(&m.role).ok_or_else(ApiError::internal)?,
        joined_at: rfc3339_millis(m.joined_at_ms),
    })
}

#[derive(Deserialize)]
struct Profile {
    id: String,
    email: String,
    display_name: Option<String>,
    created_at_ms: i64,
}

pub async fn get_me(cx: &Cx<'_>) -> Result<MeView, ApiError> {
    let user_id = person(cx)?;
    let u: Profile = cx
        .db()
        .first(
            "SELECT id, email, display_name, created_at_ms FROM users WHERE id = ?",
            args![&user_id],
        )
        .await?
        .ok_or_else(ApiError::internal)?;
    Ok(MeView {
        user: ProfileView {
            id: UserId::parse(&u.id).map_err(internal)?,
            email: u.email,
            display_name: u.display_name,
            created_at: rfc3339_millis(u.created_at_ms),
        },
        memberships: member_orgs(cx, &user_id).await?,
        session: CredentialRef {
            id: cx.principal.session_id.clone(),
            kind: cx.principal.kind.as_str().to_owned(),
        },
    })
}

/// Renames the signed-in `user` (an already validated display name).
pub async fn update_me(cx: &Cx<'_>, user: &str, name: &str) -> Result<UserEnvelope, ApiError> {
    let stmts = vec![Stmt::new(
        "UPDATE users SET display_name = ? WHERE id = ?",
        args![name, user],
    )];
    let event =
        Event::new(AuditAction::UserUpdated, "user", user).meta(json!({"display_name": name}));
    cx.commit(stmts, [event]).await?;
    Ok(UserEnvelope {
        user: user_by_id(cx, user).await?.view()?,
    })
}

pub async fn list_orgs(cx: &Cx<'_>) -> Result<OrgsView, ApiError> {
    let user_id = person(cx)?;
    Ok(OrgsView {
        orgs: member_orgs(cx, &user_id).await?,
    })
}

/// A signed-in person creates an org and becomes its owner (the only way anyone starts as
/// owner). `name` is validated; `slug`, made from the name when not given, too.
pub async fn create_org(
    cx: &Cx<'_>,
    user: &str,
    name: &str,
    slug: Option<&str>,
) -> Result<OrgCreated, ApiError> {
    let name = &validate::display_name(name, "name")?;
    let slug = &slug.map_or_else(|| validate::slugify(name), str::to_owned);
    validate::slug(slug)?;
    limits::per_account(cx, "org-create", user, limits::ORGS_PER_USER).await?;
    let now = now_ms();
    let org_id = OrgId::generate(now)?;
    // The org row is the platform's (it has no org_id column); its first membership is the
    // new org's own write.
    let mut stmts = vec![Stmt::new(
        "INSERT INTO orgs (id, slug, name, created_at_ms, created_by) VALUES (?, ?, ?, ?, ?)",
        args![org_id.as_str(), slug, name, now, user],
    )];
    stmts.extend(
        OrgBatch::new(org_id.as_str())
            .insert(
                "memberships",
                &["user_id", "role", "created_at_ms"],
                args![user, Role::Owner.as_str(), now],
            )
            .into_stmts(),
    );
    let event = Event::new(AuditAction::OrgCreated, "org", org_id.as_str())
        .in_org(org_id.as_str())
        .meta(json!({"slug": slug, "name": name, "owner_user_id": user}));
    match cx.commit(stmts, [event]).await {
        Err(e) if e.is_unique_in("orgs") => {
            return Err(ApiError::new(
                ErrorCode::AlreadyExists,
                "an organization with this slug already exists",
            ))
        }
        other => other?,
    };
    authn::forget_memberships(user);
    Ok(OrgCreated {
        org: OrgView {
            id: org_id,
            slug: slug.to_owned(),
            name: name.to_owned(),
            created_at: rfc3339_millis(now),
            audit_retention_days: edgeplane_core::audit::retention::RetentionDays::DEFAULT.days(),
        },
        role: Role::Owner,
    })
}

/// The caller's standing in the org — role and effective scopes — from the resolved access.
pub fn org_me(cx: &Cx<'_>) -> Result<OrgMeView, ApiError> {
    let access = cx.org()?;
    Ok(OrgMeView {
        org_id: OrgId::parse(&access.org_id).map_err(internal)?,
        principal: PrincipalView {
            kind: cx.principal.kind.as_str().to_owned(),
            id: cx.principal.id.clone(),
            user_id: cx.principal.user_id.clone(),
        },
        role: access.role,
        scopes: access.scopes,
    })
}
