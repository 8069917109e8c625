//! Issuing sessions: the session row (the refresh family), its first refresh token, and access
//! tokens — and the JSON they are handed out in.

use edgeplane_core::audit::{Actor, AuditAction, Event};
use edgeplane_core::auth::credential::{mint, CredentialKind};
use edgeplane_core::auth::Scopes;
use edgeplane_core::crypto::jwt::Claims;
use edgeplane_core::crypto::random_token;
use edgeplane_core::identity::session::{SessionClaims, SessionKind, ACCESS_TOKEN_TTL_SECS};
use edgeplane_core::ids::{SessionId, TypedId};
use edgeplane_core::views::identity::{OAuthToken, SessionIssued, SessionRef, UserView};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;
use serde_json::json;

use crate::config::Config;
use crate::cx::Cx;

pub fn refresh_kind(kind: SessionKind) -> CredentialKind {
    match kind {
        SessionKind::Web => CredentialKind::SessionRefresh,
        SessionKind::Cli => CredentialKind::CliRefresh,
    }
}

/// What a new session is for.
pub struct SessionSpec<'a> {
    pub user_id: &'a str,
    pub kind: SessionKind,
    /// CLI tokens only: the org and the granted scopes.
    pub org: Option<(&'a str, Scopes)>,
    /// `magic_link`, `provider:<name>`, `device_code`.
    pub auth_method: &'a str,
}

/// Freshly issued credentials. The plaintexts leave only in the issuing response.
pub struct Issued {
    pub session_id: String,
    pub access_token: String,
    pub refresh_token: String,
}

pub fn sign_access(
    cfg: &Config,
    user_id: &str,
    session_id: &str,
    kind: SessionKind,
    org: Option<(&str, Scopes)>,
    now_ms: i64,
) -> Result<String, ApiError> {
    let now = now_ms / 1000;
    let claims = Claims {
        iss: cfg.issuer.clone(),
        aud: kind.audience().to_owned(),
        sub: user_id.to_owned(),
        iat: now,
        nbf: now,
        exp: now + ACCESS_TOKEN_TTL_SECS,
        jti: random_token("")?,
        extra: SessionClaims {
            sid: session_id.to_owned(),
            org: org.map(|(o, _)| o.to_owned()),
            scope: org.map(|(_, s)| s.to_space_separated()),
        },
    };
    cfg.jwt_keys
        .signing_key()
        .sign(&claims)
        .map_err(|_| ApiError::internal())
}

/// The first refresh token of a family (or the next one on rotation).
pub fn refresh_insert(
    kind: SessionKind,
    session_id: &str,
    parent_hash: Option<&str>,
    now_ms: i64,
) -> Result<(Stmt, String), ApiError> {
    let token = mint(refresh_kind(kind))?;
    Ok((
        Stmt::new(
            "INSERT INTO refresh_tokens (token_hash, session_id, parent_hash, status, \
             created_at_ms) VALUES (?, ?, ?, 'active', ?)",
            args![&token.hash, session_id, parent_hash, now_ms],
        ),
        token.plaintext,
    ))
}

/// The statements creating a session, its audit event (`session.created` in the platform chain,
/// or `cli_token.issued` in the token's org), and the credentials.
pub fn new_session(
    cx: &Cx<'_>,
    spec: &SessionSpec<'_>,
    now_ms: i64,
) -> Result<(Vec<Stmt>, Event, Issued), ApiError> {
    let session_id = SessionId::generate(now_ms)?.into_string();
    let (org_id, scopes) = match spec.org {
        Some((o, s)) => (Some(o.to_owned()), Some(s.to_space_separated())),
        None => (None, None),
    };
    let (refresh_stmt, refresh_token) = refresh_insert(spec.kind, &session_id, None, now_ms)?;
    let stmts = vec![
        Stmt::new(
            "INSERT INTO sessions (id, user_id, kind, org_id, scopes, auth_method, created_at_ms, \
             last_refreshed_at_ms, last_used_at_ms, ip, user_agent) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            args![
                &session_id,
                spec.user_id,
                spec.kind.as_str(),
                org_id.clone(),
                scopes.clone(),
                spec.auth_method,
                now_ms,
                now_ms,
                now_ms,
                cx.rc.ip.clone(),
                cx.rc.user_agent.clone()
            ],
        ),
        refresh_stmt,
    ];
    let (action, resource) = match spec.kind {
        SessionKind::Web => (AuditAction::SessionCreated, "session"),
        SessionKind::Cli => (AuditAction::CliTokenIssued, "cli_token"),
    };
    let event = Event::new(action, resource, &session_id)
        .by(Actor::user(spec.user_id))
        .in_org_if(org_id.as_deref())
        .meta(json!({"user_id": spec.user_id, "method": spec.auth_method, "scopes": scopes}));
    let access_token = sign_access(
        &cx.cfg,
        spec.user_id,
        &session_id,
        spec.kind,
        spec.org,
        now_ms,
    )?;
    Ok((
        stmts,
        event,
        Issued {
            session_id,
            access_token,
            refresh_token,
        },
    ))
}

/// The product's token answer (sign-in and `POST /v1/auth/refresh`).
pub fn session_body(issued: Issued, user: UserView) -> Result<SessionIssued, ApiError> {
    Ok(SessionIssued {
        access_token: issued.access_token,
        token_type: "Bearer".into(),
        expires_in: ACCESS_TOKEN_TTL_SECS,
        refresh_token: issued.refresh_token,
        session: SessionRef {
            id: SessionId::parse(&issued.session_id).map_err(|_| ApiError::internal())?,
            kind: SessionKind::Web,
        },
        user,
        new_user: None,
    })
}

/// The RFC 6749 §5.1 token answer (`/oauth/token`).
pub fn oauth_body(issued: Issued, scopes: Scopes) -> OAuthToken {
    OAuthToken {
        access_token: issued.access_token,
        token_type: "Bearer".into(),
        expires_in: ACCESS_TOKEN_TTL_SECS,
        refresh_token: issued.refresh_token,
        scope: scopes.to_space_separated(),
    }
}
