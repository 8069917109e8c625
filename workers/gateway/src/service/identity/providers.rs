//! Sign-in through identity providers (OIDC, and GitHub's OAuth): authorization code + PKCE
//! (S256) + state + nonce.
//!
//! `GET …/{provider}/start` records the flow (state hash, browser-binding hash; 10 minutes,
//! single use), sets the binding cookie and redirects to the provider. The provider redirects
//! back to `GET …/{provider}/callback`, which must come from the same browser (binding cookie:
//! no login CSRF), spends the state, re-derives the verifier and nonce from it, exchanges the
//! code, validates the ID token (or asks GitHub's API), and opens a session.

use std::cell::RefCell;
use std::rc::Rc;

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::crypto::kdf::KeyPurpose;
use edgeplane_core::crypto::{constant_time_eq, random_token, sha256_hex};
use edgeplane_core::identity::cache::TtlCache;
use edgeplane_core::identity::oidc::id_token::{self, Expectations, IdTokenError, Jwks};
use edgeplane_core::identity::oidc::{
    authorization_url, github_identity, token_request_form, Discovery, ExternalIdentity, Protocol,
    ProviderConfig, TokenResponse,
};
use edgeplane_core::identity::pkce::{plausible_state, state_hash, FlowSecrets};
use edgeplane_core::views::identity::{ProviderView, ProvidersView, SessionIssued};
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;
use serde::Deserialize;
use serde_json::json;
use worker::Method;

use super::outbound::{self, Answer};
use super::settings::{self, IdentitySettings};
use super::{limits, signin};
use crate::cx::Cx;
use crate::http::ctx::{now_ms, now_secs};
use crate::http::log;

const FLOW_TTL_MS: i64 = 10 * 60 * 1000;
/// Provider metadata (discovery documents, JWKS) is kept per isolate this long.
const METADATA_TTL_MS: i64 = 3_600_000;

thread_local! {
    static DISCOVERY: RefCell<TtlCache<Rc<Discovery>>> = RefCell::new(TtlCache::new(METADATA_TTL_MS, 64));
    static JWKS: RefCell<TtlCache<Rc<Jwks>>> = RefCell::new(TtlCache::new(METADATA_TTL_MS, 64));
}

fn provider<'s>(s: &'s IdentitySettings, name: &str) -> Result<&'s ProviderConfig, ApiError> {
    s.provider(name)
        .ok_or_else(|| ApiError::not_found("sign-in provider"))
}

fn upstream(what: &str) -> ApiError {
    log::error("sign-in provider", what);
    ApiError::new(
        ErrorCode::UpstreamFailed,
        "the identity provider could not be reached or answered unexpectedly",
    )
}

async fn get(url: &str, bearer: Option<&str>) -> Result<Answer, ApiError> {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("accept", "application/json"), ("user-agent", "edgeplane")];
    if let Some(a) = auth.as_deref() {
        headers.push(("authorization", a));
    }
    outbound::call(Method::Get, url, &headers, None)
        .await
        .map_err(|_| upstream("unreachable"))
}

async fn discovery(p: &ProviderConfig, s: &IdentitySettings) -> Result<Rc<Discovery>, ApiError> {
    let Protocol::Oidc {
        issuer,
        discovery_url,
    } = &p.protocol
    else {
        return Err(ApiError::internal());
    };
    if let Some(d) = DISCOVERY.with(|c| c.borrow().get(&p.name, now_ms())) {
        return Ok(d);
    }
    let a = get(discovery_url, None).await?;
    if !a.ok() {
        return Err(upstream(&format!("discovery answered HTTP {}", a.status)));
    }
    let d = Rc::new(Discovery::parse(&a.body, issuer, s.allow_loopback).map_err(|e| upstream(&e))?);
    DISCOVERY.with(|c| c.borrow_mut().put(&p.name, d.clone(), now_ms()));
    Ok(d)
}

async fn jwks(p: &ProviderConfig, uri: &str, fresh: bool) -> Result<Rc<Jwks>, ApiError> {
    if !fresh {
        if let Some(k) = JWKS.with(|c| c.borrow().get(&p.name, now_ms())) {
            return Ok(k);
        }
    }
    let a = get(uri, None).await?;
    if !a.ok() {
        return Err(upstream(&format!("JWKS answered HTTP {}", a.status)));
    }
    let k = Rc::new(Jwks::parse(&a.body).map_err(|_| upstream("JWKS is not valid"))?);
    JWKS.with(|c| c.borrow_mut().put(&p.name, k.clone(), now_ms()));
    Ok(k)
}

fn redirect_uri(cx: &Cx<'_>, name: &str) -> String {
    format!("{}/v1/auth/providers/{name}/callback", cx.cfg.issuer)
}

fn flow_key(cx: &Cx<'_>) -> [u8; 32] {
    cx.cfg.root.derive(KeyPurpose::SignInFlows)
}

/// `GET /v1/auth/providers`: what a sign-in page offers.
pub fn list(cx: &Cx<'_>) -> ProvidersView {
    let s = settings::load(cx.env, &cx.cfg);
    ProvidersView {
        providers: s
            .providers
            .iter()
            .map(|p| ProviderView {
                name: p.name.clone(),
                display_name: p.display_name.clone(),
                preset: p.preset.as_str().to_owned(),
                start_url: format!("{}/v1/auth/providers/{}/start", cx.cfg.issuer, p.name),
            })
            .collect(),
    }
}

/// A started sign-in: where to send the browser, and the value of its binding cookie.
pub struct Started {
    pub authorization_url: String,
    pub binding: String,
}

/// How long a started sign-in stays usable (and its binding cookie lives), in seconds.
pub const FLOW_TTL_SECS: i64 = FLOW_TTL_MS / 1000;

/// `GET /v1/auth/providers/{provider}/start[?login_hint=…]`: records the flow.
pub async fn start(cx: &Cx<'_>, name: &str, login_hint: Option<&str>) -> Result<Started, ApiError> {
    let s = settings::load(cx.env, &cx.cfg);
    let p = provider(&s, name)?;
    if login_hint.is_some_and(|h| h.len() > 254) {
        return Err(ApiError::validation("login_hint is too long"));
    }
    limits::per_ip(cx, "signin", limits::SIGNIN_PER_IP).await?;
    let endpoint = match &p.protocol {
        Protocol::Oidc { .. } => discovery(p, &s).await?.authorization_endpoint.clone(),
        Protocol::GitHub {
            authorization_endpoint,
            ..
        } => authorization_endpoint.clone(),
    };
    let flow = FlowSecrets::new(&flow_key(cx))?;
    let binding = random_token("")?;
    let now = now_ms();
    let stmts = vec![Stmt::new(
        "INSERT INTO signin_flows (state_hash, provider, binding_hash, created_at_ms, \
         expires_at_ms) VALUES (?, ?, ?, ?, ?)",
        args![
            flow.state_hash(),
            name,
            sha256_hex(binding.as_bytes()),
            now,
            now + FLOW_TTL_MS
        ],
    )];
    let event = Event::new(
        AuditAction::SignInStarted,
        "sign_in_flow",
        &flow.state_hash()[..16],
    )
    .meta(json!({"provider": name}));
    cx.commit(stmts, [event]).await?;
    let authorization_url =
        authorization_url(&endpoint, p, &redirect_uri(cx, name), &flow, login_hint)
            .map_err(|e| upstream(&e))?;
    Ok(Started {
        authorization_url,
        binding,
    })
}

fn invalid_flow() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidGrant,
        "this sign-in is unknown, expired, already finished or was started in another browser",
    )
}

#[derive(Deserialize)]
struct FlowRow {
    provider: String,
    binding_hash: String,
    expires_at_ms: i64,
    consumed_at_ms: Option<i64>,
}

/// What the provider's redirect back carried.
pub struct Callback {
    pub error: Option<String>,
    pub state: Option<String>,
    pub code: Option<String>,
    /// The browser's binding cookie.
    pub binding: Option<String>,
}

/// `GET /v1/auth/providers/{provider}/callback?code=…&state=…`: finishes the sign-in.
pub async fn callback(cx: &Cx<'_>, name: &str, back: Callback) -> Result<SessionIssued, ApiError> {
    let s = settings::load(cx.env, &cx.cfg);
    let p = provider(&s, name)?.clone();
    limits::per_ip(cx, "grant", limits::GRANT_PER_IP).await?;
    if let Some(err) = back.error {
        let err: String = err
            .chars()
            .filter(|c| c.is_ascii_lowercase() || *c == '_')
            .take(64)
            .collect();
        return Err(ApiError::forbidden(format!(
            "the identity provider did not authorize the sign-in ({err})"
        )));
    }
    let state = back
        .state
        .filter(|st| plausible_state(st))
        .ok_or_else(invalid_flow)?;
    let binding = back.binding.ok_or_else(invalid_flow)?;
    let hash = state_hash(&state);
    let row: FlowRow = cx
        .db()
        .first(
            "SELECT provider, binding_hash, expires_at_ms, consumed_at_ms FROM signin_flows \
             WHERE state_hash = ?",
            args![&hash],
        )
        .await?
        .ok_or_else(invalid_flow)?;
    let now = now_ms();
    let bound = constant_time_eq(
        sha256_hex(binding.as_bytes()).as_bytes(),
        row.binding_hash.as_bytes(),
    );
    if row.provider != name || row.consumed_at_ms.is_some() || now >= row.expires_at_ms || !bound {
        return Err(invalid_flow());
    }
    // Spent before the code exchange: a state is good for one attempt, whatever its outcome.
    let spent = cx
        .db()
        .run_unaudited(
            "UPDATE signin_flows SET consumed_at_ms = ? WHERE state_hash = ? AND consumed_at_ms IS NULL",
            args![now, &hash],
        )
        .await?;
    if spent.changes != 1 {
        return Err(invalid_flow());
    }
    let code = back
        .code
        .filter(|c| !c.is_empty() && c.len() <= 2048)
        .ok_or_else(|| ApiError::bad_request("the provider's redirect carries no code"))?;
    let flow = FlowSecrets::for_state(&flow_key(cx), state);
    let identity = exchange(cx, &s, &p, name, &code, &flow).await?;
    signin::by_identity(cx, name, &identity).await
}

async fn exchange(
    cx: &Cx<'_>,
    s: &IdentitySettings,
    p: &ProviderConfig,
    name: &str,
    code: &str,
    flow: &FlowSecrets,
) -> Result<ExternalIdentity, ApiError> {
    let token_endpoint = match &p.protocol {
        Protocol::Oidc { .. } => discovery(p, s).await?.token_endpoint.clone(),
        Protocol::GitHub { token_endpoint, .. } => token_endpoint.clone(),
    };
    let form = token_request_form(p, code, &redirect_uri(cx, name), &flow.code_verifier);
    let a = outbound::call(
        Method::Post,
        &token_endpoint,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
            ("user-agent", "edgeplane"),
        ],
        Some(form),
    )
    .await
    .map_err(|_| upstream("token endpoint unreachable"))?;
    let answer: Option<TokenResponse> = serde_json::from_slice(&a.body).ok();
    let refused = answer.as_ref().and_then(|t| t.error.as_deref());
    if !a.ok() || refused.is_some() {
        return Err(match refused {
            // Wrong verifier, replayed or expired code: the provider's own single-use check.
            Some("invalid_grant") => ApiError::new(
                ErrorCode::InvalidGrant,
                "the identity provider refused the authorization code",
            ),
            _ => upstream(&format!("token endpoint answered HTTP {}", a.status)),
        });
    }
    let tokens = answer.ok_or_else(|| upstream("token answer is not valid"))?;
    match &p.protocol {
        Protocol::Oidc { issuer, .. } => {
            let raw = tokens
                .id_token
                .ok_or_else(|| upstream("token answer has no id_token"))?;
            let d = discovery(p, s).await?;
            let want = Expectations {
                issuer,
                client_id: &p.client_id,
                nonce: &flow.nonce,
                now_secs: now_secs(),
            };
            let mut keys = jwks(p, &d.jwks_uri, false).await?;
            let mut result = id_token::validate(&raw, &keys, &want);
            if result == Err(IdTokenError::UnknownKey) {
                // Keys rotate: one fresh fetch before refusing.
                keys = jwks(p, &d.jwks_uri, true).await?;
                result = id_token::validate(&raw, &keys, &want);
            }
            let claims = result.map_err(|e| {
                log::warn("id token refused", e.as_str());
                ApiError::new(ErrorCode::InvalidToken, e.as_str())
            })?;
            Ok(ExternalIdentity {
                subject: format!("{}|{}", claims.issuer, claims.subject),
                email: claims.email,
                email_verified: claims.email_verified,
                name: claims.name,
            })
        }
        Protocol::GitHub { api_base, .. } => {
            let token = tokens
                .access_token
                .ok_or_else(|| upstream("token answer has no access_token"))?;
            let user = get(&format!("{api_base}/user"), Some(&token)).await?;
            let emails = get(&format!("{api_base}/user/emails"), Some(&token)).await?;
            if !user.ok() || !emails.ok() {
                return Err(upstream("GitHub user API refused the token"));
            }
            github_identity(&user.body, &emails.body).map_err(|e| upstream(&e))
        }
    }
}
