//! A person's sessions and CLI tokens: list, revoke one (or the current one: sign-out), sign out
//! everywhere. Revocation is immediate: the revoking isolate forgets the session's cached state
//! before answering, so the very next request with its access token is refused.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::identity::session::{session_live, SessionKind};
use edgeplane_core::ids::{OrgId, SessionId, TypedId};
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::views::identity::{RevokedCount, SessionView, SessionsView};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;
use serde::Deserialize;
use serde_json::json;

use crate::authn;
use crate::cx::Cx;
use crate::http::ctx::now_ms;

#[derive(Deserialize)]
struct SessionRow {
    id: String,
    kind: String,
    org_id: Option<String>,
    scopes: Option<String>,
    auth_method: String,
    created_at_ms: i64,
    last_refreshed_at_ms: i64,
    last_used_at_ms: i64,
    ip: Option<String>,
    user_agent: Option<String>,
}

fn internal<E>(_: E) -> ApiError {
    ApiError::internal()
}

/// The live sessions and CLI tokens of `user`; `current` is the one the request used.
pub async fn list(cx: &Cx<'_>, user: &str, current: &str) -> Result<SessionsView, ApiError> {
    let rows: Vec<SessionRow> = cx
        .db()
        .all(
            "SELECT id, kind, org_id, scopes, auth_method, created_at_ms, last_refreshed_at_ms, \
             last_used_at_ms, ip, user_agent FROM sessions \
             WHERE user_id = ? AND revoked_at_ms IS NULL ORDER BY created_at_ms DESC LIMIT 200",
            args![user],
        )
        .await?;
    let now = now_ms();
    let mut sessions = Vec::with_capacity(rows.len());
    for r in rows {
        let kind = SessionKind::parse(&r.kind).ok_or_else(ApiError::internal)?;
        if !session_live(kind, r.created_at_ms, r.last_refreshed_at_ms, false, now) {
            continue;
        }
        sessions.push(SessionView {
            current: current == r.id,
            id: SessionId::parse(&r.id).map_err(internal)?,
            kind,
            org_id: r
                .org_id
                .as_deref()
                .map(OrgId::parse)
                .transpose()
                .map_err(internal)?,
            scopes: r
                .scopes
                .map(|s| s.split_whitespace().map(str::to_owned).collect()),
            auth_method: r.auth_method,
            created_at: rfc3339_millis(r.created_at_ms),
            last_used_at: rfc3339_millis(r.last_used_at_ms),
            last_refreshed_at: rfc3339_millis(r.last_refreshed_at_ms),
            ip: r.ip,
            user_agent: r.user_agent,
        });
    }
    Ok(SessionsView { sessions })
}

#[derive(Deserialize)]
struct Target {
    user_id: String,
    kind: String,
    org_id: Option<String>,
    revoked_at_ms: Option<i64>,
}

/// Revokes one session of `owner`; `reason` is stored and audited. Another person's session
/// answers 404, the same as one that does not exist.
pub async fn revoke(
    cx: &Cx<'_>,
    owner: &str,
    id: &SessionId,
    reason: &str,
) -> Result<(), ApiError> {
    let not_found = || ApiError::not_found("session");
    let row: Target = cx
        .db()
        .first(
            "SELECT user_id, kind, org_id, revoked_at_ms FROM sessions WHERE id = ?",
            args![id.as_str()],
        )
        .await?
        .filter(|r: &Target| r.user_id == owner)
        .ok_or_else(not_found)?;
    if row.revoked_at_ms.is_some() {
        return Err(not_found());
    }
    let now = now_ms();
    let (action, resource) = match SessionKind::parse(&row.kind).ok_or_else(ApiError::internal)? {
        SessionKind::Cli => (AuditAction::CliTokenRevoked, "cli_token"),
        SessionKind::Web => (AuditAction::SessionRevoked, "session"),
    };
    let stmts = vec![Stmt::new(
        "UPDATE sessions SET revoked_at_ms = ?, revoked_reason = ? \
         WHERE id = ? AND user_id = ? AND revoked_at_ms IS NULL",
        args![now, reason, id.as_str(), owner],
    )];
    let event = Event::new(action, resource, id.as_str())
        .in_org_if(row.org_id.as_deref())
        .meta(json!({"user_id": owner, "reason": reason}));
    cx.commit(stmts, [event]).await?;
    authn::forget_sessions(&[id.to_string()]);
    Ok(())
}

#[derive(Deserialize)]
struct IdRow {
    id: String,
}

/// Which of a person's sessions a sign-out ends.
#[derive(Debug, Clone, Copy)]
pub enum SignOutScope<'a> {
    /// Every session and CLI token, but `keep` when given (the console's "sign out all other
    /// sessions" keeps the one it is used from).
    Everywhere { keep: Option<&'a SessionId> },
    /// What reaches one org: every web session (a web session is not bound to an org, so it
    /// cannot be cut for one org only) and the CLI tokens of that org. An org's IdP
    /// deprovisioning a person leaves the CLI tokens they hold for other orgs alone.
    ReachingOrg(&'a OrgId),
    /// Only the CLI tokens bound to one org. An org's IdP deprovisioning a person who is still
    /// a member of another org must not sign them out of the web: removing the membership is
    /// what cuts their web access to this org.
    OrgTokens(&'a OrgId),
}

/// A sign-out planned, not yet committed: its statement and audit event go into the batch of
/// the change that calls for it (a person's own sign-out, or SCIM deprovisioning with the
/// membership's removal), and [`SignOut::forget`] runs once that batch has committed, so this
/// isolate refuses the revoked access tokens from the very next request on.
pub struct SignOut {
    user: String,
    ids: Vec<String>,
    all_cached: bool,
    pub stmt: Stmt,
    pub event: Event,
}

impl SignOut {
    /// Drops the revoked sessions from this isolate's caches.
    pub fn forget(&self) {
        if self.all_cached {
            authn::forget_user_sessions(&self.user);
        }
        authn::forget_sessions(&self.ids);
    }
}

/// Plans signing `user` out of the sessions `scope` names.
pub async fn plan_sign_out(
    cx: &Cx<'_>,
    user: &str,
    scope: SignOutScope<'_>,
) -> Result<SignOut, ApiError> {
    // A session id never equals the empty string: with no `keep` every session matches; with
    // no org, `? IS NULL` lets every kind through; `web` says whether web sessions go too.
    let (kept, org, web) = match scope {
        SignOutScope::Everywhere { keep } => (keep.map_or("", |k| k.as_str()), None, 1i64),
        SignOutScope::ReachingOrg(org) => ("", Some(org.as_str()), 1),
        SignOutScope::OrgTokens(org) => ("", Some(org.as_str()), 0),
    };
    const WHICH: &str = "user_id = ? AND revoked_at_ms IS NULL AND id != ? \
                         AND (? IS NULL OR (kind = 'web' AND ? = 1) OR org_id = ?)";
    let live: Vec<IdRow> = cx
        .db()
        .all(
            &format!("SELECT id FROM sessions WHERE {WHICH}"),
            args![user, kept, org, web, org],
        )
        .await?;
    let ids: Vec<String> = live.into_iter().map(|r| r.id).collect();
    let stmt = Stmt::new(
        format!(
            "UPDATE sessions SET revoked_at_ms = ?, revoked_reason = 'signed_out_everywhere' \
             WHERE {WHICH}"
        ),
        args![now_ms(), user, kept, org, web, org],
    );
    let mut meta = json!({"sessions": ids});
    if let SignOutScope::Everywhere { keep: Some(k) } = scope {
        meta["kept"] = json!(k.as_str());
    }
    if let Some(o) = org {
        meta["org_id"] = json!(o);
    }
    if web == 0 {
        meta["cli_only"] = json!(true);
    }
    Ok(SignOut {
        user: user.to_owned(),
        all_cached: kept.is_empty() && web == 1,
        ids,
        stmt,
        event: Event::new(AuditAction::SessionRevokedAll, "user", user).meta(meta),
    })
}

/// Signs `user` out everywhere: every session and CLI token — but `keep`, when given.
pub async fn revoke_all(
    cx: &Cx<'_>,
    user: &str,
    keep: Option<&SessionId>,
) -> Result<RevokedCount, ApiError> {
    let plan = plan_sign_out(cx, user, SignOutScope::Everywhere { keep }).await?;
    let changed = cx
        .commit(vec![plan.stmt.clone()], [plan.event.clone()])
        .await?;
    plan.forget();
    Ok(RevokedCount {
        revoked: changed.first().copied().unwrap_or(0),
    })
}
