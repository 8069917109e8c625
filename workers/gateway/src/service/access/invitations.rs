//! Invitations: an owner or admin offers a role to an email address; the signed-in user with that
//! address accepts once, before expiry. The token is shown once (to be mailed or shared) and
//! stored only as SHA-256; holding it is not enough without the matching signed-in identity.

use edgeplane_core::access::invitations::{self as rules, ttl_hours, InvitationState};
use edgeplane_core::access::members::acting_role;
use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::auth::credential::{hash_presented, mint, CredentialKind};
use edgeplane_core::auth::policy::may_invite_as;
use edgeplane_core::auth::Role;
use edgeplane_core::ids::{InvitationId, OrgId, TypedId, UserId};
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::views::access::{
    InvitationAccepted, InvitationCreated, InvitationView, InvitationsView, MembershipView,
};
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::OrgBatch;
use serde::Deserialize;
use serde_json::json;

use crate::authn;
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::service::identity::{mailer, settings};

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

impl InvitationRow {
    fn state(&self, now: i64) -> InvitationState {
        InvitationState::of(
            self.accepted_at_ms,
            self.revoked_at_ms,
            self.expires_at_ms,
            now,
        )
    }

    fn role(&self) -> Result<Role, ApiError> {
        Role::parse(&self.role).ok_or_else(ApiError::internal)
    }

    fn view(&self, now: i64) -> Result<InvitationView, ApiError> {
        Ok(InvitationView {
            id: InvitationId::parse(&self.id).map_err(|_| ApiError::internal())?,
            email: self.email.clone(),
            role: self.role()?,
            status: self.state(now),
            invited_by: self.invited_by.clone(),
            created_at: rfc3339_millis(self.created_at_ms),
            expires_at: rfc3339_millis(self.expires_at_ms),
            accepted_at: self.accepted_at_ms.map(rfc3339_millis),
        })
    }
}

/// What an inviter asks for.
pub struct NewInvitation {
    pub email: String,
    pub role: Role,
    pub ttl_hours: Option<u32>,
}

pub async fn create(cx: &Cx<'_>, req: NewInvitation) -> Result<InvitationCreated, ApiError> {
    let org = cx.org()?.clone();
    may_invite_as(acting_role(&org), req.role)?;
    let hours = ttl_hours(req.ttl_hours)?;
    let ttl = i64::from(hours) * 3_600_000;
    let now = now_ms();
    let id = InvitationId::generate(now)?;
    let token = mint(CredentialKind::Invitation)?;
    let email = req.email;
    let batch = OrgBatch::new(&org.org_id)
        .guard(
            "NOT EXISTS (SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.org_id = ? AND u.email = ?)",
            args![&org.org_id, &email],
            ApiError::new(ErrorCode::AlreadyExists, "that person is already a member"),
        )
        // A new invitation replaces any pending one for the same address.
        .update(
            "invitations",
            "revoked_at_ms = ?",
            args![now],
            "email = ? AND accepted_at_ms IS NULL AND revoked_at_ms IS NULL",
            args![&email],
        )
        .insert(
            "invitations",
            &[
                "id",
                "email",
                "role",
                "token_hash",
                "invited_by",
                "created_at_ms",
                "expires_at_ms",
            ],
            args![
                id.as_str(),
                &email,
                req.role.as_str(),
                &token.hash,
                &cx.principal.id,
                now,
                now + ttl
            ],
        );
    let event = Event::new(AuditAction::InvitationCreated, "invitation", id.as_str())
        .meta(json!({"email": email, "role": req.role.as_str(), "expires_at_ms": now + ttl}));
    cx.commit(batch, [event]).await?;
    let row = load(cx, &id).await?;
    // The invitation stands whether or not the email goes out: the response carries the link
    // too, so the inviter can deliver it another way.
    let settings = settings::load(cx.env, &cx.cfg);
    let accept_url = rules::link(&settings.app_base_url, &token.plaintext);
    let org_name = org_name(cx, &org.org_id).await?;
    let message = rules::message(&email, &org_name, req.role.as_str(), &accept_url, hours);
    let email_sent = mailer::send(cx, &settings, &message).await.is_ok();
    Ok(InvitationCreated {
        invitation: row.view(now)?,
        // Shown once. Only the signed-in user with the invited address can accept it.
        token: token.plaintext,
        accept_url,
        email_sent,
    })
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

async fn load(cx: &Cx<'_>, id: &InvitationId) -> Result<InvitationRow, ApiError> {
    cx.db()
        .first(
            &format!("SELECT {COLUMNS} FROM invitations WHERE id = ? AND org_id = ?"),
            args![id.as_str(), &cx.org()?.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("invitation"))
}

pub async fn list(cx: &Cx<'_>, include_all: bool) -> Result<InvitationsView, ApiError> {
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
    Ok(InvitationsView {
        invitations: rows
            .iter()
            .filter(|r| include_all || r.state(now) == InvitationState::Pending)
            .map(|r| r.view(now))
            .collect::<Result<_, _>>()?,
    })
}

pub async fn revoke(cx: &Cx<'_>, id: &InvitationId) -> Result<(), ApiError> {
    let row = load(cx, id).await?;
    let now = now_ms();
    if row.state(now) != InvitationState::Pending {
        return Ok(());
    }
    let batch = OrgBatch::new(&cx.org()?.org_id).update(
        "invitations",
        "revoked_at_ms = ?",
        args![now],
        "id = ? AND accepted_at_ms IS NULL",
        args![id.as_str()],
    );
    let event = Event::new(AuditAction::InvitationRevoked, "invitation", id.as_str())
        .meta(json!({"email": row.email}));
    cx.commit(batch, [event]).await?;
    Ok(())
}

#[derive(Deserialize)]
struct EmailRow {
    email: String,
}

/// The signed-in `user` accepts the invitation `token` names. The org is the invitation's:
/// every write of the acceptance is bound to it, and guarded on the invitation still pending.
pub async fn accept(
    cx: &Cx<'_>,
    user: &UserId,
    token: &str,
) -> Result<InvitationAccepted, ApiError> {
    let unknown = || ApiError::not_found("invitation");
    let hash = hash_presented(CredentialKind::Invitation, token.trim()).ok_or_else(unknown)?;
    let row: InvitationRow = cx
        .db()
        .first(
            &format!("SELECT {COLUMNS} FROM invitations WHERE token_hash = ?"),
            args![&hash],
        )
        .await?
        .ok_or_else(unknown)?;
    let now = now_ms();
    if let Some(err) = row.state(now).accept_error() {
        return Err(err);
    }
    let me: EmailRow = cx
        .db()
        .first("SELECT email FROM users WHERE id = ?", args![user.as_str()])
        .await?
        .ok_or_else(ApiError::internal)?;
    if me.email != row.email {
        return Err(ApiError::forbidden(
            "this invitation was sent to a different email address",
        ));
    }
    let org = OrgId::parse(&row.org_id).map_err(|_| ApiError::internal())?;
    let role = row.role()?;
    let batch = OrgBatch::new(org.as_str())
        .guard(
            "(SELECT accepted_at_ms IS NULL AND revoked_at_ms IS NULL AND expires_at_ms > ? \
             FROM invitations WHERE id = ? AND org_id = ?)",
            args![now, &row.id, org.as_str()],
            ApiError::new(ErrorCode::Conflict, "this invitation has already been used"),
        )
        .guard(
            "NOT EXISTS (SELECT 1 FROM memberships WHERE org_id = ? AND user_id = ?)",
            args![org.as_str(), user.as_str()],
            ApiError::new(
                ErrorCode::AlreadyExists,
                "you are already a member of this organization",
            ),
        )
        .update(
            "invitations",
            "accepted_at_ms = ?, accepted_by = ?",
            args![now, user.as_str()],
            "id = ?",
            args![&row.id],
        )
        .insert(
            "memberships",
            &["user_id", "role", "created_at_ms"],
            args![user.as_str(), role.as_str(), now],
        );
    let event = Event::new(AuditAction::InvitationAccepted, "membership", user.as_str())
        .in_org(org.as_str())
        .meta(json!({"invitation_id": row.id, "role": role.as_str()}));
    cx.commit(batch, [event]).await?;
    authn::forget_memberships(user.as_str());
    Ok(InvitationAccepted {
        membership: MembershipView {
            org_id: org,
            user_id: user.clone(),
            role,
        },
    })
}
