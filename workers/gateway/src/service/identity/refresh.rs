//! Refresh-token rotation, shared by web sessions (`POST /v1/auth/refresh`) and CLI tokens
//! (`POST /oauth/token`, `grant_type=refresh_token`). See `edgeplane_core::identity::session`
//! for the family rules and the grace window.

use edgeplane_core::audit::{Actor, AuditAction, Event};
use edgeplane_core::auth::credential::hash_presented;
use edgeplane_core::auth::Scopes;
use edgeplane_core::identity::session::{
    decide_refresh, session_live, RefreshDecision, RefreshState, SessionKind,
};
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;
use serde::Deserialize;
use serde_json::json;

use super::issue::{self, refresh_kind, Issued};
use crate::authn;
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::http::log;

pub fn invalid_refresh() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidGrant,
        "the refresh token is invalid, expired or revoked",
    )
}

#[derive(Deserialize)]
struct Row {
    session_id: String,
    status: String,
    rotated_at_ms: Option<i64>,
    successor_unused: i64,
    user_id: String,
    kind: String,
    org_id: Option<String>,
    scopes: Option<String>,
    created_at_ms: i64,
    last_refreshed_at_ms: i64,
    revoked_at_ms: Option<i64>,
    disabled_at_ms: Option<i64>,
}

pub struct Rotated {
    pub issued: Issued,
    pub user_id: String,
    pub scopes: Option<Scopes>,
}

pub async fn rotate(cx: &Cx<'_>, presented: &str, kind: SessionKind) -> Result<Rotated, ApiError> {
    let hash = hash_presented(refresh_kind(kind), presented.trim()).ok_or_else(invalid_refresh)?;
    let row: Row = cx
        .db()
        .first(
            "SELECT r.session_id, r.status, r.rotated_at_ms, \
             EXISTS (SELECT 1 FROM refresh_tokens c WHERE c.parent_hash = r.token_hash \
                     AND c.status = 'active') AS successor_unused, \
             s.user_id, s.kind, s.org_id, s.scopes, s.created_at_ms, s.last_refreshed_at_ms, \
             s.revoked_at_ms, u.disabled_at_ms \
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
             JOIN users u ON u.id = s.user_id WHERE r.token_hash = ?",
            args![&hash],
        )
        .await?
        .ok_or_else(invalid_refresh)?;
    let now = now_ms();
    if SessionKind::parse(&row.kind) != Some(kind)
        || row.disabled_at_ms.is_some()
        || !session_live(
            kind,
            row.created_at_ms,
            row.last_refreshed_at_ms,
            row.revoked_at_ms.is_some(),
            now,
        )
    {
        return Err(invalid_refresh());
    }
    let scopes = match &row.scopes {
        Some(s) => {
            Some(Scopes::parse_list(s.split_whitespace()).map_err(|_| ApiError::internal())?)
        }
        None => None,
    };
    let org = match (&row.org_id, scopes) {
        (Some(o), Some(s)) => Some((o.as_str(), s)),
        _ => None,
    };
    // A CLI token outlives nothing: its person must still be a member of its org.
    if let Some((org_id, _)) = org {
        if authn::membership(cx.db(), &row.user_id, org_id)
            .await?
            .is_none()
        {
            return Err(invalid_refresh());
        }
    }
    let state = RefreshState::from_row(&row.status, row.rotated_at_ms, row.successor_unused != 0)
        .ok_or_else(ApiError::internal)?;
    let (resource, reused, refreshed) = match kind {
        SessionKind::Web => (
            "session",
            AuditAction::SessionRefreshReuseDetected,
            AuditAction::SessionRefreshed,
        ),
        SessionKind::Cli => (
            "cli_token",
            AuditAction::CliTokenRefreshReuseDetected,
            AuditAction::CliTokenRefreshed,
        ),
    };
    let decision = decide_refresh(state, now);
    if decision == RefreshDecision::ReuseDetected {
        let stmts = vec![Stmt::new(
            "UPDATE sessions SET revoked_at_ms = ?, revoked_reason = 'refresh_token_reuse' \
             WHERE id = ? AND revoked_at_ms IS NULL",
            args![now, &row.session_id],
        )];
        let event = Event::new(reused, resource, &row.session_id)
            .by(Actor::system("refresh-reuse-detection"))
            .in_org_if(row.org_id.as_deref())
            .meta(json!({"user_id": row.user_id, "revoked": true}));
        cx.commit(stmts, [event]).await?;
        authn::forget_sessions(std::slice::from_ref(&row.session_id));
        log::warn(
            "refresh token reuse",
            &format!("session {} revoked", row.session_id),
        );
        return Err(ApiError::new(
            ErrorCode::InvalidGrant,
            "this refresh token was already used; the session has been revoked",
        ));
    }

    let mut stmts = match decision {
        RefreshDecision::Rotate => vec![
            Stmt::guard(
                "(SELECT status FROM refresh_tokens WHERE token_hash = ?) = 'active'",
                args![&hash],
                ApiError::conflict("the refresh token was used concurrently; retry"),
            ),
            Stmt::new(
                "UPDATE refresh_tokens SET status = 'rotated', rotated_at_ms = ? WHERE token_hash = ?",
                args![now, &hash],
            ),
        ],
        _ => vec![
            Stmt::guard(
                "(SELECT count(*) FROM refresh_tokens WHERE parent_hash = ? AND status = 'active') = 1",
                args![&hash],
                ApiError::conflict("the refresh token was used concurrently; retry"),
            ),
            Stmt::new(
                "UPDATE refresh_tokens SET status = 'superseded' WHERE parent_hash = ? \
                 AND status = 'active'",
                args![&hash],
            ),
        ],
    };
    stmts.push(Stmt::guard(
        "EXISTS (SELECT 1 FROM sessions WHERE id = ? AND revoked_at_ms IS NULL)",
        args![&row.session_id],
        invalid_refresh(),
    ));
    let (insert, refresh_token) = issue::refresh_insert(kind, &row.session_id, Some(&hash), now)?;
    stmts.push(insert);
    stmts.push(Stmt::new(
        "UPDATE sessions SET last_refreshed_at_ms = ?, last_used_at_ms = ?, ip = ?, \
         user_agent = ? WHERE id = ?",
        args![
            now,
            now,
            cx.rc.ip.clone(),
            cx.rc.user_agent.clone(),
            &row.session_id
        ],
    ));
    let event = Event::new(refreshed, resource, &row.session_id)
        .by(Actor::user(&row.user_id))
        .in_org_if(row.org_id.as_deref())
        .meta(json!({"grace_retry": decision == RefreshDecision::RetryWithinGrace}));
    cx.commit(stmts, [event]).await?;
    let access_token = issue::sign_access(&cx.cfg, &row.user_id, &row.session_id, kind, org, now)?;
    Ok(Rotated {
        issued: Issued {
            session_id: row.session_id,
            access_token,
            refresh_token,
        },
        user_id: row.user_id,
        scopes,
    })
}
