//! A person's sessions and CLI tokens: list, revoke one, sign out (this one), sign out
//! everywhere. Revocation is immediate: the revoking isolate forgets the session's cached state
//! before answering, so the very next request with its access token is refused.

use edgeplane_core::auth::{Principal, PrincipalKind};
use edgeplane_core::identity::session::{session_live, SessionKind};
use edgeplane_core::ids::looks_like_id;
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;
use serde::Deserialize;
use serde_json::json;

use super::require_user;
use crate::authn;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;

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

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    let (user_id, current) = require_user(&cx.principal)?;
    let rows: Vec<SessionRow> = cx
        .db()
        .all(
            "SELECT id, kind, org_id, scopes, auth_method, created_at_ms, last_refreshed_at_ms, \
             last_used_at_ms, ip, user_agent FROM sessions \
             WHERE user_id = ? AND revoked_at_ms IS NULL ORDER BY created_at_ms DESC LIMIT 200",
            args![user_id],
        )
        .await?;
    let now = now_ms();
    let sessions: Vec<_> = rows
        .into_iter()
        .filter(|r| {
            SessionKind::parse(&r.kind)
                .is_some_and(|k| session_live(k, r.created_at_ms, r.last_refreshed_at_ms, false, now))
        })
        .map(|r| {
            json!({
                "id": r.id,
                "kind": r.kind,
                "org_id": r.org_id,
                "scopes": r.scopes.map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>()),
                "auth_method": r.auth_method,
                "created_at": rfc3339_millis(r.created_at_ms),
                "last_used_at": rfc3339_millis(r.last_used_at_ms),
                "last_refreshed_at": rfc3339_millis(r.last_refreshed_at_ms),
                "ip": r.ip,
                "user_agent": r.user_agent,
                "current": current == r.id,
            })
        })
        .collect();
    respond::ok(&json!({ "sessions": sessions }))
}

#[derive(Deserialize)]
struct Target {
    user_id: String,
    kind: String,
    org_id: Option<String>,
    revoked_at_ms: Option<i64>,
}

/// Revokes one session of its owner; `reason` is stored and audited.
async fn revoke_one(cx: &Cx<'_>, actor_user: &str, id: &str, reason: &str) -> Result<(), ApiError> {
    let not_found = || ApiError::not_found("session");
    if !looks_like_id(id, "ses") {
        return Err(not_found());
    }
    let row: Target = cx
        .db()
        .first(
            "SELECT user_id, kind, org_id, revoked_at_ms FROM sessions WHERE id = ?",
            args![id],
        )
        .await?
        .filter(|r: &Target| r.user_id == actor_user)
        .ok_or_else(not_found)?;
    if row.revoked_at_ms.is_some() {
        return Err(not_found());
    }
    let now = now_ms();
    let (action, resource) = if row.kind == "cli" {
        ("cli_token.revoked", "cli_token")
    } else {
        ("session.revoked", "session")
    };
    let stmts = vec![Stmt::new(
        "UPDATE sessions SET revoked_at_ms = ?, revoked_reason = ? WHERE id = ? AND revoked_at_ms IS NULL",
        args![now, reason, id],
    )];
    let event = cx.rc.audit(
        &cx.principal,
        row.org_id.as_deref(),
        action,
        resource,
        id,
        json!({"user_id": actor_user, "reason": reason}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;
    authn::forget_sessions(&[id.to_owned()]);
    Ok(())
}

pub async fn revoke(cx: &mut Cx<'_>) -> HttpResult {
    let (user_id, _) = require_user(&cx.principal)?;
    let user_id = user_id.to_owned();
    let id = cx.param("session")?.to_owned();
    revoke_one(cx, &user_id, &id, "revoked_by_user").await?;
    respond::no_content()
}

/// `POST /v1/auth/sign-out`: ends the session (or CLI token) the request authenticated with.
pub async fn sign_out(cx: &mut Cx<'_>) -> HttpResult {
    let p: &Principal = &cx.principal;
    let (Some(user_id), Some(sid)) = (p.user_id.clone(), p.session_id.clone()) else {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only a session or CLI token can sign out",
        ));
    };
    if !matches!(p.kind, PrincipalKind::User | PrincipalKind::CliToken) {
        return Err(ApiError::forbidden(
            "only a session or CLI token can sign out",
        ));
    }
    revoke_one(cx, &user_id, &sid, "signed_out").await?;
    respond::no_content()
}

#[derive(Deserialize)]
struct IdRow {
    id: String,
}

/// `DELETE /v1/sessions`: signs out everywhere — every session and CLI token of the caller.
pub async fn revoke_all(cx: &mut Cx<'_>) -> HttpResult {
    let (user_id, _) = require_user(&cx.principal)?;
    let user_id = user_id.to_owned();
    let live: Vec<IdRow> = cx
        .db()
        .all(
            "SELECT id FROM sessions WHERE user_id = ? AND revoked_at_ms IS NULL",
            args![&user_id],
        )
        .await?;
    let ids: Vec<String> = live.into_iter().map(|r| r.id).collect();
    let now = now_ms();
    let stmts = vec![Stmt::new(
        "UPDATE sessions SET revoked_at_ms = ?, revoked_reason = 'signed_out_everywhere' \
         WHERE user_id = ? AND revoked_at_ms IS NULL",
        args![now, &user_id],
    )];
    let event = cx.rc.audit(
        &cx.principal,
        None,
        "session.revoked_all",
        "user",
        &user_id,
        json!({"sessions": ids}),
    );
    let changed = cx.db().commit_audited(stmts, vec![event], now).await?;
    authn::forget_user_sessions(&user_id);
    authn::forget_sessions(&ids);
    respond::ok(&json!({"revoked": changed.first().copied().unwrap_or(0)}))
}
