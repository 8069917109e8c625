//! CLI tokens through the OAuth 2.0 Device Authorization Grant (RFC 8628).
//!
//! `POST /oauth/device_authorization` starts one; the person enters the user code on the web app,
//! which looks it up (`POST /v1/device/verify`) and approves it for one org
//! (`POST /v1/device/approve`) or denies it (`POST /v1/device/deny`); the CLI polls
//! `POST /oauth/token` until it gets its org-bound token. `/oauth/*` take form bodies and answer
//! RFC 6749 errors (rendered in `lib.rs`); unrecognized parameters are ignored, as RFC 6749 §3.1
//! requires.

use edgeplane_core::auth::credential::{hash_presented, mint, CredentialKind};
use edgeplane_core::auth::Scopes;
use edgeplane_core::identity::device_code::{
    generate_user_code, normalize_user_code, poll, user_code_hash, DeviceGrant, DeviceStatus,
    PollOutcome, DEFAULT_INTERVAL_SECS,
};
use edgeplane_core::identity::form::{require_form_content_type, Form};
use edgeplane_core::identity::session::SessionKind;
use edgeplane_core::ids::new_id;
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;
use serde::Deserialize;
use serde_json::json;

use super::issue::{self, SessionSpec};
use super::settings::{self, IdentitySettings};
use super::{limits, refresh, require_user};
use crate::authn;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;

const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn form(cx: &mut Cx<'_>) -> Result<Form, ApiError> {
    let ct = cx.req.headers().get("content-type").ok().flatten();
    require_form_content_type(ct.as_deref())?;
    Form::parse(&cx.raw_body().await?)
}

fn client(settings: &IdentitySettings, f: &Form) -> Result<String, ApiError> {
    let id = f.require("client_id")?;
    if settings.cli_client_ids.iter().any(|c| c == id) {
        Ok(id.to_owned())
    } else {
        Err(ApiError::new(ErrorCode::InvalidClient, "unknown client_id"))
    }
}

fn parse_scopes(raw: Option<&str>) -> Result<Option<Scopes>, ApiError> {
    match raw {
        None => Ok(None),
        Some(s) => {
            let scopes = Scopes::parse_list(s.split_whitespace())
                .map_err(|e| ApiError::new(ErrorCode::InvalidScope, e))?;
            if scopes.is_empty() {
                Err(ApiError::new(ErrorCode::InvalidScope, "scope is empty"))
            } else {
                Ok(Some(scopes))
            }
        }
    }
}

/// `POST /oauth/device_authorization`.
pub async fn authorize(cx: &mut Cx<'_>) -> HttpResult {
    let f = form(cx).await?;
    let settings = settings::load(cx.env, &cx.cfg);
    let client_id = client(&settings, &f)?;
    let scopes = parse_scopes(f.get("scope"))?;
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
                &client_id,
                scopes.map(Scopes::to_space_separated),
                DEFAULT_INTERVAL_SECS,
                now,
                now + expires_in * 1000,
                cx.rc.ip.clone(),
                cx.rc.user_agent.clone()
            ],
        )];
        let event = cx.rc.audit(
            &cx.principal,
            None,
            "device_authorization.created",
            "device_authorization",
            &id,
            json!({"client_id": client_id, "scopes": scopes}),
        );
        match cx.db().commit_audited(stmts, vec![event], now).await {
            Err(e) if e.code == ErrorCode::AlreadyExists => continue,
            Err(e) => return Err(e),
            Ok(_) => {
                let uri = format!("{}/device", settings.app_base_url);
                return respond::ok(&json!({
                    "device_code": device_code.plaintext,
                    "user_code": user_code,
                    "verification_uri": uri,
                    "verification_uri_complete": format!("{uri}?user_code={user_code}"),
                    "expires_in": expires_in,
                    "interval": DEFAULT_INTERVAL_SECS,
                }));
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

/// `POST /oauth/token`: the device-code grant and CLI refresh.
pub async fn token(cx: &mut Cx<'_>) -> HttpResult {
    let f = form(cx).await?;
    let settings = settings::load(cx.env, &cx.cfg);
    match f.require("grant_type")? {
        DEVICE_CODE_GRANT => {
            let client_id = client(&settings, &f)?;
            device_code_grant(cx, &client_id, f.require("device_code")?).await
        }
        "refresh_token" => {
            client(&settings, &f)?;
            limits::per_ip(cx, "refresh", limits::REFRESH_PER_IP).await?;
            let r = refresh::rotate(cx, f.require("refresh_token")?, SessionKind::Cli).await?;
            respond::ok(&issue::oauth_body(&r.issued, r.scopes.unwrap_or_default()))
        }
        _ => Err(ApiError::new(
            ErrorCode::UnsupportedGrantType,
            "grant_type must be urn:ietf:params:oauth:grant-type:device_code or refresh_token",
        )),
    }
}

async fn device_code_grant(cx: &Cx<'_>, client_id: &str, presented: &str) -> HttpResult {
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

async fn issue_cli_token(cx: &Cx<'_>, row: &PollRow, hash: &str, now: i64) -> HttpResult {
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
    cx.db().commit_audited(stmts, vec![event], now).await?;
    respond::ok(&issue::oauth_body(&issued, scopes))
}

// ----------------------------------------------------------------------------------------------
// The verification side: a signed-in person looks up, approves or denies a user code.
// ----------------------------------------------------------------------------------------------

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    user_code: String,
}

pub async fn verify(cx: &mut Cx<'_>) -> HttpResult {
    let (user_id, _) = require_user(&cx.principal)?;
    let user_id = user_id.to_owned();
    let body: CodeBody = cx.json().await?;
    let row = pending(cx, &user_id, &body.user_code).await?;
    respond::ok(&json!({"device_authorization": {
        "id": row.id,
        "client_id": row.client_id,
        "requested_scopes": requested(&row)?,
        "created_at": rfc3339_millis(row.created_at_ms),
        "expires_at": rfc3339_millis(row.expires_at_ms),
        "ip": row.ip,
        "user_agent": row.user_agent,
    }}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Approve {
    user_code: String,
    /// The one org the CLI token will act in (id or slug).
    org: String,
    /// Narrows the grant further (optional).
    #[serde(default)]
    scopes: Option<Scopes>,
}

pub async fn approve(cx: &mut Cx<'_>) -> HttpResult {
    let (user_id, _) = require_user(&cx.principal)?;
    let user_id = user_id.to_owned();
    let body: Approve = cx.json().await?;
    let row = pending(cx, &user_id, &body.user_code).await?;
    let (org_id, role) = authn::membership(cx.db(), &user_id, &body.org)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    // What the token gets: what was asked for (everything if nothing was), narrowed by the
    // approver, never beyond the approver's role.
    let mut scopes = requested(&row)?.unwrap_or_else(Scopes::all);
    if let Some(narrow) = body.scopes {
        scopes = scopes.intersect(narrow);
    }
    scopes = scopes.intersect(role.scopes());
    if scopes.is_empty() {
        return Err(ApiError::validation(
            "none of the requested scopes is available to your role in this organization",
        ));
    }
    let now = now_ms();
    let stmts = vec![
        Stmt::guard(
            "(SELECT status FROM device_codes WHERE id = ?) = 'pending'",
            args![&row.id],
            no_such_code(),
        ),
        Stmt::new(
            "UPDATE device_codes SET status = 'approved', decided_by = ?, decided_at_ms = ?, \
             org_id = ?, scopes = ? WHERE id = ?",
            args![&user_id, now, &org_id, scopes.to_space_separated(), &row.id],
        ),
    ];
    let event = cx.rc.audit(
        &cx.principal,
        Some(&org_id),
        "device_authorization.approved",
        "device_authorization",
        &row.id,
        json!({"client_id": row.client_id, "scopes": scopes, "role": role}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;
    respond::ok(&json!({"device_authorization": {
        "id": row.id, "status": "approved", "org_id": org_id, "scopes": scopes,
    }}))
}

pub async fn deny(cx: &mut Cx<'_>) -> HttpResult {
    let (user_id, _) = require_user(&cx.principal)?;
    let user_id = user_id.to_owned();
    let body: CodeBody = cx.json().await?;
    let row = pending(cx, &user_id, &body.user_code).await?;
    let now = now_ms();
    let stmts = vec![
        Stmt::guard(
            "(SELECT status FROM device_codes WHERE id = ?) = 'pending'",
            args![&row.id],
            no_such_code(),
        ),
        Stmt::new(
            "UPDATE device_codes SET status = 'denied', decided_by = ?, decided_at_ms = ? WHERE id = ?",
            args![&user_id, now, &row.id],
        ),
    ];
    let event = cx.rc.audit(
        &cx.principal,
        None,
        "device_authorization.denied",
        "device_authorization",
        &row.id,
        json!({"client_id": row.client_id}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;
    respond::ok(&json!({"device_authorization": {"id": row.id, "status": "denied"}}))
}
