//! CLI tokens through the OAuth 2.0 Device Authorization Grant (RFC 8628): starting one, the
//! CLI's polling, and the signed-in person's look-up, approval or denial of a user code. The
//! OAuth form handling lives in `routes::identity::device`.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::auth::credential::{hash_presented, mint, CredentialKind};
use edgeplane_core::auth::{Scope, Scopes};
use edgeplane_core::identity::device_code::{
    generate_user_code, normalize_user_code, poll, user_code_hash, DeviceGrant, DeviceStatus,
    PollOutcome, DEFAULT_INTERVAL_SECS,
};
use edgeplane_core::identity::session::SessionKind;
use edgeplane_core::ids::{new_id, OrgId, TypedId};
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::views::identity::{
    DeviceAuthorizationStarted, DeviceAuthorizationView, DeviceDecisionView, OAuthToken,
};
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::{Stmt, Val};
use serde::Deserialize;
use serde_json::json;

use super::issue::{self, SessionSpec};
use super::limits;
use super::settings::IdentitySettings;
use crate::authn;
use crate::cx::Cx;
use crate::http::ctx::now_ms;

/// `POST /oauth/device_authorization` for `client_id` (already checked), asking for `scopes`.
pub async fn authorize(
    cx: &Cx<'_>,
    settings: &IdentitySettings,
    client_id: &str,
    scopes: Option<Scopes>,
) -> Result<DeviceAuthorizationStarted, ApiError> {
    limits::per_ip(cx, "device-start", limits::DEVICE_START_PER_IP).await?;
    let now = now_ms();
    let id = new_id("dva", now)?;
    let device_code = mint(CredentialKind::DeviceCode)?;
    let expires_in = settings.device_code_ttl_secs;
    // A user-code collision with another stored code fails the unique index; draw again.
    for _ in 0..3 {
        let user_code = generate_user_code()?;
        let stmts = vec![Stmt::new(
            "INSERT INTO device_codes (id, device_code_hash, user_code_hash, client_id, scopes, \
             status, interval_secs, created_at_ms, expires_at_ms, ip, user_agent) \
             VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
            args![
                &id,
                &device_code.hash,
                user_code_hash(&user_code),
                client_id,
                scopes.map(Scopes::to_space_separated),
                DEFAULT_INTERVAL_SECS,
                now,
                now + expires_in * 1000,
                cx.rc.ip.clone(),
                cx.rc.user_agent.clone()
            ],
        )];
        let event = Event::new(
            AuditAction::DeviceAuthorizationCreated,
            "device_authorization",
            &id,
        )
        .meta(json!({"client_id": client_id, "scopes": scopes}));
        match cx.commit(stmts, [event]).await {
            Err(e) if e.is_unique_in("device_codes") => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {
                let uri = format!("{}/device", settings.app_base_url);
                return Ok(DeviceAuthorizationStarted {
                    device_code: device_code.plaintext,
                    verification_uri_complete: format!("{uri}?user_code={user_code}"),
                    user_code,
                    verification_uri: uri,
                    expires_in,
                    interval: DEFAULT_INTERVAL_SECS,
                });
            }
        }
    }
    Err(ApiError::internal())
}

#[derive(Deserialize)]
struct PollRow {
    id: String,
    client_id: String,
    status: String,
    expires_at_ms: i64,
    interval_secs: i64,
    last_poll_at_ms: Option<i64>,
    scopes: Option<String>,
    decided_by: Option<String>,
    org_id: Option<String>,
}

fn grant_error(code: ErrorCode, message: &str) -> ApiError {
    ApiError::new(code, message)
}

/// The CLI polls with its device code: pending, slow down, denied, expired — or its token.
pub async fn device_code_grant(
    cx: &Cx<'_>,
    client_id: &str,
    presented: &str,
) -> Result<OAuthToken, ApiError> {
    let unknown = || grant_error(ErrorCode::InvalidGrant, "the device code is invalid");
    let hash = hash_presented(CredentialKind::DeviceCode, presented).ok_or_else(unknown)?;
    let row: PollRow = cx
        .db()
        .first(
            "SELECT id, client_id, status, expires_at_ms, interval_secs, last_poll_at_ms, scopes, \
             decided_by, org_id FROM device_codes WHERE device_code_hash = ?",
            args![&hash],
        )
        .await?
        .filter(|r: &PollRow| r.client_id == client_id)
        .ok_or_else(unknown)?;
    let now = now_ms();
    let status = DeviceStatus::parse(&row.status).ok_or_else(ApiError::internal)?;
    let outcome = poll(
        DeviceGrant {
            status,
            expires_at_ms: row.expires_at_ms,
            interval_secs: row.interval_secs,
            last_poll_at_ms: row.last_poll_at_ms,
        },
        now,
    );
    match outcome {
        PollOutcome::Pending => {
            cx.db()
                .run_unaudited(
                    "UPDATE device_codes SET last_poll_at_ms = ? WHERE id = ?",
                    args![now, &row.id],
                )
                .await?;
            Err(grant_error(
                ErrorCode::AuthorizationPending,
                "the user has not yet approved this request",
            ))
        }
        PollOutcome::SlowDown { new_interval_secs } => {
            cx.db()
                .run_unaudited(
                    "UPDATE device_codes SET last_poll_at_ms = ?, interval_secs = ? WHERE id = ?",
                    args![now, new_interval_secs, &row.id],
                )
                .await?;
            Err(grant_error(
                ErrorCode::SlowDown,
                &format!(
                    "polling too fast; wait at least {new_interval_secs} seconds between requests"
                ),
            ))
        }
        PollOutcome::Denied => Err(grant_error(
            ErrorCode::AccessDenied,
            "the user denied this request",
        )),
        PollOutcome::Expired => Err(grant_error(
            ErrorCode::ExpiredToken,
            "the device code has expired; start again",
        )),
        PollOutcome::AlreadyUsed => Err(grant_error(
            ErrorCode::InvalidGrant,
            "the device code was already exchanged",
        )),
        PollOutcome::Issue => issue_cli_token(cx, &row, &hash, now).await,
    }
}

async fn issue_cli_token(
    cx: &Cx<'_>,
    row: &PollRow,
    hash: &str,
    now: i64,
) -> Result<OAuthToken, ApiError> {
    let (Some(user_id), Some(org_id), Some(raw_scopes)) =
        (&row.decided_by, &row.org_id, &row.scopes)
    else {
        return Err(ApiError::internal());
    };
    let scopes =
        Scopes::parse_list(raw_scopes.split_whitespace()).map_err(|_| ApiError::internal())?;
    // The approver must still be a member; the token's scopes are capped again per request.
    if authn::membership(cx.db(), user_id, org_id).await?.is_none() {
        return Err(grant_error(
            ErrorCode::AccessDenied,
            "the approving user is no longer a member of the organization",
        ));
    }
    let (mut stmts, event, issued) = issue::new_session(
        cx,
        &SessionSpec {
            user_id,
            kind: SessionKind::Cli,
            org: Some((org_id, scopes)),
            auth_method: "device_code",
        },
        now,
    )?;
    stmts.insert(
        0,
        Stmt::guard(
            "(SELECT status FROM device_codes WHERE device_code_hash = ?) = 'approved'",
            args![hash],
            grant_error(
                ErrorCode::InvalidGrant,
                "the device code was already exchanged",
            ),
        ),
    );
    stmts.push(Stmt::new(
        "UPDATE device_codes SET status = 'consumed', session_id = ? WHERE id = ?",
        args![&issued.session_id, &row.id],
    ));
    cx.commit(stmts, [event]).await?;
    Ok(issue::oauth_body(issued, scopes))
}

#[derive(Deserialize)]
struct PendingRow {
    id: String,
    client_id: String,
    scopes: Option<String>,
    created_at_ms: i64,
    expires_at_ms: i64,
    ip: Option<String>,
    user_agent: Option<String>,
}

fn no_such_code() -> ApiError {
    ApiError::not_found("device authorization (unknown, expired or already decided user code)")
}

/// Every look-up spends from the person's and the IP's guessing budget, found or not.
async fn pending(cx: &Cx<'_>, user_id: &str, raw_code: &str) -> Result<PendingRow, ApiError> {
    limits::per_account(cx, "user-code", user_id, limits::USER_CODE_PER_USER).await?;
    limits::per_ip(cx, "user-code", limits::USER_CODE_PER_IP).await?;
    let code = normalize_user_code(raw_code).ok_or_else(no_such_code)?;
    cx.db()
        .first(
            "SELECT id, client_id, scopes, created_at_ms, expires_at_ms, ip, user_agent \
             FROM device_codes WHERE user_code_hash = ? AND status = 'pending' \
             AND expires_at_ms > ?",
            args![user_code_hash(&code), now_ms()],
        )
        .await?
        .ok_or_else(no_such_code)
}

fn requested(row: &PendingRow) -> Result<Option<Scopes>, ApiError> {
    match &row.scopes {
        Some(s) => Ok(Some(
            Scopes::parse_list(s.split_whitespace()).map_err(|_| ApiError::internal())?,
        )),
        None => Ok(None),
    }
}

/// The signed-in `user` looks up what a user code would grant.
pub async fn verify(
    cx: &Cx<'_>,
    user: &str,
    user_code: &str,
) -> Result<DeviceAuthorizationView, ApiError> {
    let row = pending(cx, user, user_code).await?;
    Ok(DeviceAuthorizationView {
        requested_scopes: requested(&row)?,
        id: row.id,
        client_id: row.client_id,
        created_at: rfc3339_millis(row.created_at_ms),
        expires_at: rfc3339_millis(row.expires_at_ms),
        ip: row.ip,
        user_agent: row.user_agent,
    })
}

/// Records a decision on a pending device authorization, if it is still pending when the batch
/// runs (another tab may have decided it first).
fn decide(id: &str, set: &str, mut args: Vec<Val>) -> Vec<Stmt> {
    args.push(Val::from(id));
    vec![
        Stmt::guard(
            "(SELECT status FROM device_codes WHERE id = ?) = 'pending'",
            args![id],
            no_such_code(),
        ),
        Stmt::new(format!("UPDATE device_codes SET {set} WHERE id = ?"), args),
    ]
}

/// The signed-in `user` approves a user code for one org (`org`: id or slug), optionally
/// narrowing the scopes.
pub async fn approve(
    cx: &Cx<'_>,
    user: &str,
    user_code: &str,
    org: &str,
    narrow: Option<Scopes>,
) -> Result<DeviceDecisionView, ApiError> {
    let row = pending(cx, user, user_code).await?;
    let (org_id, role) = authn::membership(cx.db(), user, org)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    // What the token gets: what was asked for (everything if nothing was), narrowed by the
    // approver, never beyond the approver's role.
    let mut scopes = requested(&row)?.unwrap_or_else(Scopes::all);
    if let Some(narrow) = narrow {
        scopes = scopes.intersect(narrow);
    }
    // A CLI token never holds `scim`: that scope is an IdP's key's, and opens only /scim/v2.
    scopes = scopes.intersect(role.scopes()).without(Scope::Scim);
    if scopes.is_empty() {
        return Err(ApiError::validation(
            "none of the requested scopes is available to your role in this organization",
        ));
    }
    let stmts = decide(
        &row.id,
        "status = 'approved', decided_by = ?, decided_at_ms = ?, org_id = ?, scopes = ?",
        args![user, now_ms(), &org_id, scopes.to_space_separated()],
    );
    let event = Event::new(
        AuditAction::DeviceAuthorizationApproved,
        "device_authorization",
        &row.id,
    )
    .in_org(&org_id)
    .meta(json!({"client_id": row.client_id, "scopes": scopes, "role": role}));
    cx.commit(stmts, [event]).await?;
    Ok(DeviceDecisionView {
        id: row.id,
        status: "approved".into(),
        org_id: Some(OrgId::parse(&org_id).map_err(|_| ApiError::internal())?),
        scopes: Some(scopes),
    })
}

/// The signed-in `user` denies a user code.
pub async fn deny(
    cx: &Cx<'_>,
    user: &str,
    user_code: &str,
) -> Result<DeviceDecisionView, ApiError> {
    let row = pending(cx, user, user_code).await?;
    let stmts = decide(
        &row.id,
        "status = 'denied', decided_by = ?, decided_at_ms = ?",
        args![user, now_ms()],
    );
    let event = Event::new(
        AuditAction::DeviceAuthorizationDenied,
        "device_authorization",
        &row.id,
    )
    .meta(json!({"client_id": row.client_id}));
    cx.commit(stmts, [event]).await?;
    Ok(DeviceDecisionView {
        id: row.id,
        status: "denied".into(),
        org_id: None,
        scopes: None,
    })
}
