//! Integrations: an org's connection to a git platform. Tokens and secrets are write-only: they
//! are sealed on the way in and the API only ever says whether each is present.

use edgeplane_core::ids::{looks_like_id, new_id};
use edgeplane_core::review::config::{self, Deployment, PlatformApi};
use edgeplane_core::review::sealed::Field;
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::webhook::Platform;
use edgeplane_core::{validate, ApiError};
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::hook_secrets;
use super::secrets;
use super::update::Update;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;
use edgeplane_runtime::args;
use edgeplane_runtime::db::{Stmt, Val};

/// Distinguishes "field absent" (`None`) from "field set to null" (`Some(None)`).
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateIntegration {
    name: String,
    platform: String,
    #[serde(default)]
    deployment: Option<String>,
    #[serde(default)]
    api_base_url: Option<String>,
    access_token: String,
    webhook_secret: String,
    #[serde(default)]
    signing_token: Option<String>,
    #[serde(default)]
    llm_provider_id: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UpdateIntegration {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    api_base_url: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    signing_token: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    llm_provider_id: Option<Option<String>>,
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateSecret {
    webhook_secret: String,
    #[serde(default)]
    overlap_seconds: Option<u32>,
}

#[derive(Deserialize)]
pub struct IntegrationRow {
    pub id: String,
    pub platform: String,
    pub deployment: String,
    pub name: String,
    pub api_base_url: String,
    pub llm_provider_id: Option<String>,
    pub access_token_sealed: Option<String>,
    pub webhook_secret_sealed: Option<String>,
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_expires_at_ms: Option<i64>,
    pub signing_token_sealed: Option<String>,
    pub enabled: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub secret_rotated_at_ms: Option<i64>,
}

pub const COLUMNS: &str = "id, platform, deployment, name, api_base_url, llm_provider_id, \
    access_token_sealed, webhook_secret_sealed, previous_secret_sealed, \
    previous_secret_expires_at_ms, signing_token_sealed, enabled, created_at_ms, updated_at_ms, \
    secret_rotated_at_ms";

fn view(cx: &Cx<'_>, r: &IntegrationRow, now: i64) -> serde_json::Value {
    let overlap = r.previous_secret_sealed.is_some()
        && r.previous_secret_expires_at_ms.is_some_and(|t| t > now);
    json!({
        "id": r.id,
        "name": r.name,
        "platform": r.platform,
        "deployment": r.deployment,
        "api_base_url": r.api_base_url,
        "llm_provider_id": r.llm_provider_id,
        "enabled": r.enabled != 0,
        "webhook_url": format!("{}/hooks/{}/{}", cx.cfg.issuer, r.platform, r.id),
        "has_access_token": r.access_token_sealed.is_some(),
        "has_webhook_secret": r.webhook_secret_sealed.is_some(),
        "has_signing_token": r.signing_token_sealed.is_some(),
        "previous_webhook_secret_expires_at": if overlap { r.previous_secret_expires_at_ms.map(rfc3339_millis) } else { None },
        "secret_rotated_at": r.secret_rotated_at_ms.map(rfc3339_millis),
        "created_at": rfc3339_millis(r.created_at_ms),
        "updated_at": rfc3339_millis(r.updated_at_ms),
    })
}

fn integration_id(cx: &Cx<'_>) -> Result<String, ApiError> {
    let id = cx.param("integration")?;
    if looks_like_id(id, "int") {
        Ok(id.to_owned())
    } else {
        Err(ApiError::not_found("integration"))
    }
}

pub async fn load(cx: &Cx<'_>, id: &str) -> Result<IntegrationRow, ApiError> {
    cx.db()
        .first(
            &format!("SELECT {COLUMNS} FROM integrations WHERE id = ? AND org_id = ? AND deleted_at_ms IS NULL"),
            args![id, &cx.org()?.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("integration"))
}

fn provider_guard(org_id: &str, provider_id: &str) -> Result<Stmt, ApiError> {
    if !looks_like_id(provider_id, "llm") {
        return Err(ApiError::validation(
            "llm_provider_id does not name a provider of this organization",
        ));
    }
    Ok(Stmt::guard(
        "EXISTS (SELECT 1 FROM llm_providers WHERE id = ? AND org_id = ?)",
        args![provider_id, org_id],
        ApiError::validation("llm_provider_id does not name a provider of this organization"),
    ))
}

pub async fn create(cx: &mut Cx<'_>) -> HttpResult {
    let body: CreateIntegration = cx.json().await?;
    let platform = Platform::parse(&body.platform)
        .ok_or_else(|| ApiError::validation("platform must be one of github, gitlab, bitbucket"))?;
    let deployment = match body.deployment.as_deref() {
        None => Deployment::Cloud,
        Some(d) => Deployment::parse(d)
            .ok_or_else(|| ApiError::validation("deployment must be cloud or datacenter"))?,
    };
    let api = PlatformApi::of(platform, deployment);
    let loopback = secrets::allow_loopback(cx.env);
    let base = config::base_url(
        body.api_base_url.as_deref(),
        api.default_base_url(),
        loopback,
        "api_base_url",
    )?;
    let name = validate::display_name(&body.name, "name")?;
    let token = config::secret(&body.access_token, "access_token", 1)?;
    let hook_secret = config::secret(&body.webhook_secret, "webhook_secret", 16)?;
    let signing = match body.signing_token.as_deref() {
        Some(_) if platform != Platform::GitLab => {
            return Err(ApiError::validation(
                "signing_token applies to GitLab integrations only",
            ))
        }
        Some(s) => Some(config::secret(s, "signing_token", 16)?),
        None => None,
    };
    let org_id = cx.org()?.org_id.clone();
    let now = now_ms();
    let id = new_id("int", now)?;
    let key = secrets::integration_key(cx);
    let mut stmts = Vec::new();
    if let Some(p) = &body.llm_provider_id {
        stmts.push(provider_guard(&org_id, p)?);
    }
    stmts.push(Stmt::new(
        "INSERT INTO integrations (id, org_id, platform, deployment, name, api_base_url, llm_provider_id, \
         access_token_sealed, webhook_secret_sealed, signing_token_sealed, enabled, created_by, created_at_ms, \
         updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        args![
            &id,
            &org_id,
            platform.as_str(),
            deployment.as_str(),
            &name,
            &base,
            body.llm_provider_id.clone(),
            secrets::seal(&key, &id, Field::AccessToken, &token)?,
            secrets::seal(&key, &id, Field::WebhookSecret, &hook_secret)?,
            signing.as_deref().map(|s| secrets::seal(&key, &id, Field::SigningToken, s)).transpose()?,
            body.enabled.unwrap_or(true),
            &cx.principal.id,
            now,
            now
        ],
    ));
    let event = cx.rc.audit(
        &cx.principal,
        Some(&org_id),
        "integration.created",
        "integration",
        &id,
        json!({"name": name, "platform": platform.as_str(), "deployment": deployment.as_str(),
               "api_base_url": base, "llm_provider_id": body.llm_provider_id,
               "has_signing_token": signing.is_some()}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;
    let row = load(cx, &id).await?;
    respond::created(&json!({"integration": view(cx, &row, now)}))
}

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    let rows: Vec<IntegrationRow> = cx
        .db()
        .all(
            &format!(
                "SELECT {COLUMNS} FROM integrations WHERE org_id = ? AND deleted_at_ms IS NULL \
                 ORDER BY created_at_ms, id LIMIT 500"
            ),
            args![&cx.org()?.org_id],
        )
        .await?;
    let now = now_ms();
    let items: Vec<_> = rows.iter().map(|r| view(cx, r, now)).collect();
    respond::ok(&json!({"integrations": items}))
}

pub async fn get(cx: &mut Cx<'_>) -> HttpResult {
    let row = load(cx, &integration_id(cx)?).await?;
    respond::ok(&json!({"integration": view(cx, &row, now_ms())}))
}

pub async fn update(cx: &mut Cx<'_>) -> HttpResult {
    let id = integration_id(cx)?;
    let body: UpdateIntegration = cx.json().await?;
    let row = load(cx, &id).await?;
    let org_id = cx.org()?.org_id.clone();
    let platform = Platform::parse(&row.platform).ok_or_else(ApiError::internal)?;
    let deployment = Deployment::parse(&row.deployment).ok_or_else(ApiError::internal)?;
    let key = secrets::integration_key(cx);
    let now = now_ms();
    let mut u = Update::default();
    let mut stmts = Vec::new();
    if let Some(n) = &body.name {
        u.set(
            "name",
            "name = ?",
            vec![validate::display_name(n, "name")?.into()],
        );
    }
    if let Some(b) = &body.api_base_url {
        let api = PlatformApi::of(platform, deployment);
        let base = config::base_url(
            Some(b),
            api.default_base_url(),
            secrets::allow_loopback(cx.env),
            "api_base_url",
        )?;
        // The token would follow the URL: moving it to another host requires re-entering it.
        if base != row.api_base_url && body.access_token.is_none() {
            return Err(ApiError::validation(
                "changing api_base_url requires access_token in the same request",
            ));
        }
        u.set("api_base_url", "api_base_url = ?", vec![base.into()]);
    }
    if let Some(t) = &body.access_token {
        let t = config::secret(t, "access_token", 1)?;
        u.set(
            "access_token",
            "access_token_sealed = ?",
            vec![secrets::seal(&key, &id, Field::AccessToken, &t)?.into()],
        );
    }
    if let Some(s) = &body.signing_token {
        if platform != Platform::GitLab {
            return Err(ApiError::validation(
                "signing_token applies to GitLab integrations only",
            ));
        }
        let sealed = match s {
            Some(s) => Val::from(secrets::seal(
                &key,
                &id,
                Field::SigningToken,
                &config::secret(s, "signing_token", 16)?,
            )?),
            None => Val::Null,
        };
        u.set("signing_token", "signing_token_sealed = ?", vec![sealed]);
    }
    if let Some(p) = &body.llm_provider_id {
        if let Some(p) = p {
            stmts.push(provider_guard(&org_id, p)?);
        }
        u.set(
            "llm_provider_id",
            "llm_provider_id = ?",
            vec![p.clone().into()],
        );
    }
    if let Some(e) = body.enabled {
        u.set("enabled", "enabled = ?", vec![e.into()]);
    }
    let (stmt, changed) = u.statement(
        "integrations",
        " AND deleted_at_ms IS NULL",
        now,
        &id,
        &org_id,
    )?;
    stmts.push(stmt);
    let action = if changed == ["access_token"] {
        "integration.access_token_rotated"
    } else {
        "integration.updated"
    };
    let event = cx.rc.audit(
        &cx.principal,
        Some(&org_id),
        action,
        "integration",
        &id,
        json!({"changed": changed, "enabled": body.enabled, "name": body.name,
               "llm_provider_id": body.llm_provider_id, "api_base_url": body.api_base_url}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;
    hook_secrets::invalidate(&id);
    let row = load(cx, &id).await?;
    respond::ok(&json!({"integration": view(cx, &row, now)}))
}

pub async fn delete(cx: &mut Cx<'_>) -> HttpResult {
    let id = integration_id(cx)?;
    let row = load(cx, &id).await?;
    let org_id = cx.org()?.org_id.clone();
    let now = now_ms();
    // Soft delete keeps review history pointing somewhere; the secrets are destroyed now.
    let stmts = vec![Stmt::new(
        "UPDATE integrations SET deleted_at_ms = ?, updated_at_ms = ?, enabled = 0, \
         access_token_sealed = NULL, webhook_secret_sealed = NULL, previous_secret_sealed = NULL, \
         previous_secret_expires_at_ms = NULL, signing_token_sealed = NULL \
         WHERE id = ? AND org_id = ? AND deleted_at_ms IS NULL",
        args![now, now, &id, &org_id],
    )];
    let event = cx.rc.audit(
        &cx.principal,
        Some(&org_id),
        "integration.deleted",
        "integration",
        &id,
        json!({"name": row.name, "platform": row.platform}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;
    hook_secrets::invalidate(&id);
    respond::no_content()
}

pub async fn rotate_webhook_secret(cx: &mut Cx<'_>) -> HttpResult {
    let id = integration_id(cx)?;
    let body: RotateSecret = cx.json().await?;
    let secret = config::secret(&body.webhook_secret, "webhook_secret", 16)?;
    let overlap = body
        .overlap_seconds
        .unwrap_or(config::DEFAULT_OVERLAP_SECONDS);
    if overlap > config::MAX_OVERLAP_SECONDS {
        return Err(ApiError::validation(format!(
            "overlap_seconds must be at most {}",
            config::MAX_OVERLAP_SECONDS
        )));
    }
    let row = load(cx, &id).await?;
    let org_id = cx.org()?.org_id.clone();
    let key = secrets::integration_key(cx);
    let now = now_ms();
    let expires = now + i64::from(overlap) * 1000;
    // The current secret becomes the previous one in the same statement, so two concurrent
    // rotations cannot both keep the original.
    let stmts = vec![Stmt::new(
        "UPDATE integrations SET previous_secret_sealed = CASE WHEN ? > 0 THEN webhook_secret_sealed END, \
         previous_secret_expires_at_ms = CASE WHEN ? > 0 THEN ? END, webhook_secret_sealed = ?, \
         secret_rotated_at_ms = ?, updated_at_ms = ? WHERE id = ? AND org_id = ? AND deleted_at_ms IS NULL",
        args![
            overlap,
            overlap,
            expires,
            secrets::seal(&key, &id, Field::WebhookSecret, &secret)?,
            now,
            now,
            &id,
            &org_id
        ],
    )];
    let event = cx.rc.audit(
        &cx.principal,
        Some(&org_id),
        "integration.webhook_secret_rotated",
        "integration",
        &id,
        json!({"overlap_seconds": overlap, "name": row.name}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;
    hook_secrets::invalidate(&id);
    let row = load(cx, &id).await?;
    respond::ok(&json!({"integration": view(cx, &row, now)}))
}

#[derive(Deserialize)]
struct DeliveryRow {
    id: String,
    delivery_id: String,
    event: String,
    outcome: String,
    reason: Option<String>,
    review_id: Option<String>,
    secret_slot: String,
    received_at_ms: i64,
}

pub async fn deliveries(cx: &mut Cx<'_>) -> HttpResult {
    let id = integration_id(cx)?;
    load(cx, &id).await?;
    let rows: Vec<DeliveryRow> = cx
        .db()
        .all(
            "SELECT id, delivery_id, event, outcome, reason, review_id, secret_slot, received_at_ms \
             FROM webhook_deliveries WHERE integration_id = ? AND org_id = ? \
             ORDER BY received_at_ms DESC, id DESC LIMIT 100",
            args![&id, &cx.org()?.org_id],
        )
        .await?;
    let items: Vec<_> = rows
        .into_iter()
        .map(|d| {
            json!({"id": d.id, "delivery_id": d.delivery_id, "event": d.event, "outcome": d.outcome,
                   "reason": d.reason, "review_id": d.review_id, "secret": d.secret_slot,
                   "received_at": rfc3339_millis(d.received_at_ms)})
        })
        .collect();
    respond::ok(&json!({"deliveries": items}))
}
