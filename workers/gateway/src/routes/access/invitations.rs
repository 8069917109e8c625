//! Invitations: an owner or admin offers a role to an email address; the signed-in user with that
//! address accepts once, before expiry. The token is shown once (to be mailed or shared) and
//! stored only as SHA-256; holding it is not enough without the matching signed-in identity.

use edgeplane_core::access::invitations::{self as rules, ttl_hours, InvitationState};
use edgeplane_core::access::members::acting_role;
use edgeplane_core::auth::credential::{hash_presented, mint, CredentialKind};
use edgeplane_core::auth::policy::may_invite_as;
use edgeplane_core::auth::Role;
use edgeplane_core::ids::{looks_like_id, new_id};
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::{validate, ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;
use serde::Deserialize;
use serde_json::json;

use crate::authn;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::routes::identity::{mailer, require_user, settings};
use crate::routes::Cx;

#[derive(Deserialize)]
struct InvitationRow {
    id: String,
    org_id: String,
    email: String,
    role: String,
    invited_by: String,
    created_at_ms: i64,
    expires_at_ms: i64,
    accepted_at_ms: Option<i64>,
    revoked_at_ms: Option<i64>,
}

const COLUMNS: &str = "id, org_id, email, role, invited_by, created_at_ms, expires_at_ms, \
                       accepted_at_ms, revoked_at_ms";

fn state(row: &InvitationRow, now: i64) -> InvitationState {
    InvitationState::of(
        row.accepted_at_ms,
        row.revoked_at_ms,
        row.expires_at_ms,
        now,
    )
}

fn view(row: &InvitationRow, now: i64) -> serde_json::Value {
    json!({
        "id": row.id,
        "email": row.email,
        "role": row.role,
        "status": state(row, now).as_str(),
        "invited_by": row.invited_by,
        "created_at": rfc3339_millis(row.created_at_ms),
        "expires_at": rfc3339_millis(row.expires_at_ms),
        "accepted_at": row.accepted_at_ms.map(rfc3339_millis),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInvitation {
    email: String,
    role: String,
    #[serde(default)]
    ttl_hours: Option<u32>,
}

pub async fn create(cx: &mut Cx<'_>) -> HttpResult {
    let body: CreateInvitation = cx.json().await?;
    let email = validate::email(&body.email)?;
    let role = Role::parse(&body.role)
        .ok_or_else(|| ApiError::validation("role must be one of owner, admin, member"))?;
    let org = cx.org()?.clone();
    may_invite_as(acting_role(&org), role)?;
    let hours = ttl_hours(body.ttl_hours)?;
    let ttl = i64::from(hours) * 3_600_000;
    let now = now_ms();
    let id = new_id("inv", now)?;
    let token = mint(CredentialKind::Invitation)?;
    let stmts = vec![
        Stmt::guard(
            "NOT EXISTS (SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.org_id = ? AND u.email = ?)",
            args![&org.org_id, &email],
            ApiError::new(ErrorCode::AlreadyExists, "that person is already a member"),
        ),
        // A new invitation replaces any pending one for the same address.
        Stmt::new(
            "UPDATE invitations SET revoked_at_ms = ? WHERE org_id = ? AND email = ? \
             AND accepted_at_ms IS NULL AND revoked_at_ms IS NULL",
            args![now, &org.org_id, &email],
        ),
        Stmt::new(
            "INSERT INTO invitations (id, org_id, email, role, token_hash, invited_by, \
             created_at_ms, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            args![
                &id,
                &org.org_id,
                &email,
                role.as_str(),
                &token.hash,
                &cx.principal.id,
                now,
                now + ttl
            ],
        ),
    ];
    let event = cx.rc.audit(
        &cx.principal,
        Some(&org.org_id),
        "invitation.created",
        "invitation",
        &id,
        json!({"email": email, "role": role.as_str(), "expires_at_ms": now + ttl}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;
    let row = load(cx, &id).await?;
    // The invitation stands whether or not the email goes out: the response carries the link
    // too, so the inviter can deliver it another way.
    let settings = settings::load(cx.env, &cx.cfg);
    let accept_url = rules::link(&settings.app_base_url, &token.plaintext);
    let org_name = org_name(cx, &org.org_id).await?;
    let message = rules::message(&email, &org_name, role.as_str(), &accept_url, hours);
    let email_sent = mailer::send(cx, &settings, &message).await.is_ok();
    respond::created(&json!({
        "invitation": view(&row, now),
        // Shown once. Only the signed-in user with the invited address can accept it.
        "token": token.plaintext,
        "accept_url": accept_url,
        "email_sent": email_sent,
    }))
}

#[derive(Deserialize)]
struct OrgName {
    name: String,
}

async fn org_name(cx: &Cx<'_>, org_id: &str) -> Result<String, ApiError> {
    Ok(cx
        .db()
        .first::<OrgName>("SELECT name FROM orgs WHERE id = ?", args![org_id])
        .await?
        .map(|o| o.name)
        .unwrap_or_default())
}

async fn load(cx: &Cx<'_>, id: &str) -> Result<InvitationRow, ApiError> {
    if !looks_like_id(id, "inv") {
        return Err(ApiError::not_found("invitation"));
    }
    cx.db()
        .first(
            &format!("SELECT {COLUMNS} FROM invitations WHERE id = ? AND org_id = ?"),
            args![id, &cx.org()?.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("invitation"))
}

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    let mut include_all = false;
    for (k, v) in cx.query()? {
        match (k.as_str(), v.as_str()) {
            ("status", "pending") => include_all = false,
            ("status", "all") => include_all = true,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    "the only query parameter is status=pending|all",
                ))
            }
        }
    }
    let now = now_ms();
    let rows: Vec<InvitationRow> = cx
        .db()
        .all(
            &format!(
                "SELECT {COLUMNS} FROM invitations WHERE org_id = ? ORDER BY created_at_ms DESC LIMIT 500"
            ),
            args![&cx.org()?.org_id],
        )
        .await?;
    let views: Vec<_> = rows
        .iter()
        .filter(|r| include_all || state(r, now) == InvitationState::Pending)
        .map(|r| view(r, now))
        .collect();
    respond::ok(&json!({"invitations": views}))
}

pub async fn revoke(cx: &mut Cx<'_>) -> HttpResult {
    let id = cx.param("invitation")?.to_owned();
    let row = load(cx, &id).await?;
    let now = now_ms();
    if state(&row, now) != InvitationState::Pending {
        return respond::no_content();
    }
    let stmts = vec![Stmt::new(
        "UPDATE invitations SET revoked_at_ms = ? WHERE id = ? AND accepted_at_ms IS NULL",
        args![now, &id],
    )];
    let event = cx.rc.audit(
        &cx.principal,
        Some(&row.org_id),
        "invitation.revoked",
        "invitation",
        &id,
        json!({"email": row.email}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;
    respond::no_content()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Accept {
    token: String,
}

#[derive(Deserialize)]
struct EmailRow {
    email: String,
}

pub async fn accept(cx: &mut Cx<'_>) -> HttpResult {
    let body: Accept = cx.json().await?;
    let user_id = require_user(&cx.principal)?.0.to_owned();
    let unknown = || ApiError::not_found("invitation");
    let hash = hash_presented(CredentialKind::Invitation, body.token.trim()).ok_or_else(unknown)?;
    let row: InvitationRow = cx
        .db()
        .first(
            &format!("SELECT {COLUMNS} FROM invitations WHERE token_hash = ?"),
            args![&hash],
        )
        .await?
        .ok_or_else(unknown)?;
    let now = now_ms();
    if let Some(err) = state(&row, now).accept_error() {
        return Err(err);
    }
    let me: EmailRow = cx
        .db()
        .first("SELECT email FROM users WHERE id = ?", args![&user_id])
        .await?
        .ok_or_else(ApiError::internal)?;
    if me.email != row.email {
        return Err(ApiError::forbidden(
            "this invitation was sent to a different email address",
        ));
    }
    let stmts = vec![
        Stmt::guard(
            "(SELECT accepted_at_ms IS NULL AND revoked_at_ms IS NULL AND expires_at_ms > ? \
             FROM invitations WHERE id = ?)",
            args![now, &row.id],
            ApiError::new(ErrorCode::Conflict, "this invitation has already been used"),
        ),
        Stmt::guard(
            "NOT EXISTS (SELECT 1 FROM memberships WHERE org_id = ? AND user_id = ?)",
            args![&row.org_id, &user_id],
            ApiError::new(
                ErrorCode::AlreadyExists,
                "you are already a member of this organization",
            ),
        ),
        Stmt::new(
            "UPDATE invitations SET accepted_at_ms = ?, accepted_by = ? WHERE id = ?",
            args![now, &user_id, &row.id],
        ),
        Stmt::new(
            "INSERT INTO memberships (org_id, user_id, role, created_at_ms) VALUES (?, ?, ?, ?)",
            args![&row.org_id, &user_id, &row.role, now],
        ),
    ];
    let event = cx.rc.audit(
        &cx.principal,
        Some(&row.org_id),
        "invitation.accepted",
        "membership",
        &user_id,
        json!({"invitation_id": row.id, "role": row.role}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;
    authn::forget_memberships(&user_id);
    respond::ok(
        &json!({"membership": {"org_id": row.org_id, "user_id": user_id, "role": row.role}}),
    )
}
