//! Integrations: an org's connection to a git platform. Tokens and secrets are write-only: they
//! are sealed on the way in and the API only ever says whether each is present.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::ids::{DeliveryRowId, IntegrationId, ProviderId, ReviewId};
use edgeplane_core::review::config::{self, Deployment, PlatformApi};
use edgeplane_core::review::git_platform::Platform;
use edgeplane_core::review::sealed::Field;
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::views::review::{DeliveryView, IntegrationView};
use edgeplane_core::webhook::inbox::DeliveryOutcome;
use edgeplane_core::webhook::Slot;
use edgeplane_core::{validate, ApiError};
use serde::Deserialize;
use serde_json::json;

use super::update::Update;
use super::{hook_secrets, nullable, secrets};
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use edgeplane_runtime::args;
use edgeplane_runtime::db::{OrgBatch, Val};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIntegration {
    pub name: String,
    pub platform: Platform,
    #[serde(default)]
    pub deployment: Option<Deployment>,
    #[serde(default)]
    pub api_base_url: Option<String>,
    pub access_token: String,
    pub webhook_secret: String,
    #[serde(default)]
    pub signing_token: Option<String>,
    #[serde(default)]
    pub llm_provider_id: Option<ProviderId>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateIntegration {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub api_base_url: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub signing_token: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub llm_provider_id: Option<Option<ProviderId>>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    pub webhook_secret: String,
    #[serde(default)]
    pub overlap_seconds: Option<u32>,
}

#[derive(Deserialize)]
struct IntegrationRow {
    id: IntegrationId,
    platform: Platform,
    deployment: Deployment,
    name: String,
    api_base_url: String,
    llm_provider_id: Option<ProviderId>,
    access_token_sealed: Option<String>,
    webhook_secret_sealed: Option<String>,
    previous_secret_sealed: Option<String>,
    previous_secret_expires_at_ms: Option<i64>,
    signing_token_sealed: Option<String>,
    enabled: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
    secret_rotated_at_ms: Option<i64>,
}

const COLUMNS: &str = "id, platform, deployment, name, api_base_url, llm_provider_id, \
    access_token_sealed, webhook_secret_sealed, previous_secret_sealed, \
    previous_secret_expires_at_ms, signing_token_sealed, enabled, created_at_ms, updated_at_ms, \
    secret_rotated_at_ms";

fn view(cx: &Cx<'_>, r: IntegrationRow, now: i64) -> IntegrationView {
    let overlap = r.previous_secret_sealed.is_some()
        && r.previous_secret_expires_at_ms.is_some_and(|t| t > now);
    IntegrationView {
        webhook_url: format!("{}/hooks/{}/{}", cx.cfg.issuer, r.platform.as_str(), r.id),
        id: r.id,
        name: r.name,
        platform: r.platform,
        deployment: r.deployment,
        api_base_url: r.api_base_url,
        llm_provider_id: r.llm_provider_id,
        enabled: r.enabled != 0,
        has_access_token: r.access_token_sealed.is_some(),
        has_webhook_secret: r.webhook_secret_sealed.is_some(),
        has_signing_token: r.signing_token_sealed.is_some(),
        previous_webhook_secret_expires_at: r
            .previous_secret_expires_at_ms
            .filter(|_| overlap)
            .map(rfc3339_millis),
        secret_rotated_at: r.secret_rotated_at_ms.map(rfc3339_millis),
        created_at: rfc3339_millis(r.created_at_ms),
        updated_at: rfc3339_millis(r.updated_at_ms),
    }
}

async fn load(cx: &Cx<'_>, id: &IntegrationId) -> Result<IntegrationRow, ApiError> {
    cx.db()
        .first(
            &format!("SELECT {COLUMNS} FROM integrations WHERE id = ? AND org_id = ? AND deleted_at_ms IS NULL"),
            args![id.as_str(), &cx.org()?.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("integration"))
}

/// The named provider must be this org's, checked inside the write's own batch.
/// The provider an integration is pinned to must be one of the org's (checked in the batch).
fn provider_guard(batch: OrgBatch, provider_id: &ProviderId) -> OrgBatch {
    let org_id = batch.org_id().to_owned();
    batch.guard(
        "EXISTS (SELECT 1 FROM llm_providers WHERE id = ? AND org_id = ?)",
        args![provider_id.as_str(), org_id],
        ApiError::validation("llm_provider_id does not name a provider of this organization"),
    )
}

pub async fn create(cx: &Cx<'_>, body: CreateIntegration) -> Result<IntegrationView, ApiError> {
    let platform = body.platform;
    let deployment = body.deployment.unwrap_or(Deployment::Cloud);
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
    let id = IntegrationId::generate(now)?;
    let key = secrets::integration_key(cx);
    let mut batch = OrgBatch::new(&org_id);
    if let Some(p) = &body.llm_provider_id {
        batch = provider_guard(batch, p);
    }
    let batch = batch.insert(
        "integrations",
        &[
            "id",
            "platform",
            "deployment",
            "name",
            "api_base_url",
            "llm_provider_id",
            "access_token_sealed",
            "webhook_secret_sealed",
            "signing_token_sealed",
            "enabled",
            "created_by",
            "created_at_ms",
            "updated_at_ms",
        ],
        args![
            id.as_str(),
            platform.as_str(),
            deployment.as_str(),
            &name,
            &base,
            body.llm_provider_id.as_ref().map(ProviderId::as_str),
            secrets::seal(&key, id.as_str(), Field::AccessToken, &token)?,
            secrets::seal(&key, id.as_str(), Field::WebhookSecret, &hook_secret)?,
            signing
                .as_deref()
                .map(|s| secrets::seal(&key, id.as_str(), Field::SigningToken, s))
                .transpose()?,
            body.enabled.unwrap_or(true),
            &cx.principal.id,
            now,
            now
        ],
    );
    let event = Event::new(AuditAction::IntegrationCreated, "integration", id.as_str()).meta(
        json!({"name": name, "platform": platform.as_str(), "deployment": deployment.as_str(),
               "api_base_url": base, "llm_provider_id": body.llm_provider_id,
               "has_signing_token": signing.is_some()}),
    );
    cx.commit(batch, [event]).await?;
    Ok(view(cx, load(cx, &id).await?, now))
}

pub async fn list(cx: &Cx<'_>) -> Result<Vec<IntegrationView>, ApiError> {
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
    Ok(rows.into_iter().map(|r| view(cx, r, now)).collect())
}

pub async fn get(cx: &Cx<'_>, id: &IntegrationId) -> Result<IntegrationView, ApiError> {
    Ok(view(cx, load(cx, id).await?, now_ms()))
}

pub async fn update(
    cx: &Cx<'_>,
    id: &IntegrationId,
    body: UpdateIntegration,
) -> Result<IntegrationView, ApiError> {
    let row = load(cx, id).await?;
    let org_id = cx.org()?.org_id.clone();
    let (platform, deployment) = (row.platform, row.deployment);
    let key = secrets::integration_key(cx);
    let now = now_ms();
    let mut u = Update::default();
    let mut batch = OrgBatch::new(&org_id);
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
            vec![secrets::seal(&key, id.as_str(), Field::AccessToken, &t)?.into()],
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
                id.as_str(),
                Field::SigningToken,
                &config::secret(s, "signing_token", 16)?,
            )?),
            None => Val::Null,
        };
        u.set("signing_token", "signing_token_sealed = ?", vec![sealed]);
    }
    if let Some(p) = &body.llm_provider_id {
        if let Some(p) = p {
            batch = provider_guard(batch, p);
        }
        u.set(
            "llm_provider_id",
            "llm_provider_id = ?",
            vec![p.as_ref().map(ProviderId::as_str).into()],
        );
    }
    if let Some(e) = body.enabled {
        u.set("enabled", "enabled = ?", vec![e.into()]);
    }
    let (batch, changed) = u.apply(
        batch,
        "integrations",
        " AND deleted_at_ms IS NULL",
        now,
        id.as_str(),
    )?;
    let action = if changed == ["access_token"] {
        AuditAction::IntegrationAccessTokenRotated
    } else {
        AuditAction::IntegrationUpdated
    };
    let event = Event::new(action, "integration", id.as_str()).meta(
        json!({"changed": changed, "enabled": body.enabled, "name": body.name,
               "llm_provider_id": body.llm_provider_id, "api_base_url": body.api_base_url}),
    );
    cx.commit(batch, [event]).await?;
    hook_secrets::invalidate(id);
    Ok(view(cx, load(cx, id).await?, now))
}

pub async fn delete(cx: &Cx<'_>, id: &IntegrationId) -> Result<(), ApiError> {
    let row = load(cx, id).await?;
    let now = now_ms();
    // Soft delete keeps review history pointing somewhere; the secrets are destroyed now.
    let batch = OrgBatch::new(&cx.org()?.org_id).update(
        "integrations",
        "deleted_at_ms = ?, updated_at_ms = ?, enabled = 0, access_token_sealed = NULL, \
         webhook_secret_sealed = NULL, previous_secret_sealed = NULL, \
         previous_secret_expires_at_ms = NULL, signing_token_sealed = NULL",
        args![now, now],
        "id = ? AND deleted_at_ms IS NULL",
        args![id.as_str()],
    );
    let event = Event::new(AuditAction::IntegrationDeleted, "integration", id.as_str())
        .meta(json!({"name": row.name, "platform": row.platform}));
    cx.commit(batch, [event]).await?;
    hook_secrets::invalidate(id);
    Ok(())
}

pub async fn rotate_webhook_secret(
    cx: &Cx<'_>,
    id: &IntegrationId,
    body: RotateSecret,
) -> Result<IntegrationView, ApiError> {
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
    let row = load(cx, id).await?;
    let key = secrets::integration_key(cx);
    let now = now_ms();
    let expires = now + i64::from(overlap) * 1000;
    // The current secret becomes the previous one in the same statement, so two concurrent
    // rotations cannot both keep the original.
    let batch = OrgBatch::new(&cx.org()?.org_id).update(
        "integrations",
        "previous_secret_sealed = CASE WHEN ? > 0 THEN webhook_secret_sealed END, \
         previous_secret_expires_at_ms = CASE WHEN ? > 0 THEN ? END, webhook_secret_sealed = ?, \
         secret_rotated_at_ms = ?, updated_at_ms = ?",
        args![
            overlap,
            overlap,
            expires,
            secrets::seal(&key, id.as_str(), Field::WebhookSecret, &secret)?,
            now,
            now
        ],
        "id = ? AND deleted_at_ms IS NULL",
        args![id.as_str()],
    );
    let event = Event::new(
        AuditAction::IntegrationWebhookSecretRotated,
        "integration",
        id.as_str(),
    )
    .meta(json!({"overlap_seconds": overlap, "name": row.name}));
    cx.commit(batch, [event]).await?;
    hook_secrets::invalidate(id);
    Ok(view(cx, load(cx, id).await?, now))
}

#[derive(Deserialize)]
struct DeliveryRow {
    id: DeliveryRowId,
    delivery_id: String,
    event: String,
    outcome: DeliveryOutcome,
    reason: Option<String>,
    review_id: Option<ReviewId>,
    secret_slot: Slot,
    received_at_ms: i64,
}

/// The integration's newest recorded deliveries (at most 100).
pub async fn deliveries(cx: &Cx<'_>, id: &IntegrationId) -> Result<Vec<DeliveryView>, ApiError> {
    load(cx, id).await?;
    let rows: Vec<DeliveryRow> = cx
        .db()
        .all(
            "SELECT id, delivery_id, event, outcome, reason, review_id, secret_slot, received_at_ms \
             FROM webhook_deliveries WHERE integration_id = ? AND org_id = ? \
             ORDER BY received_at_ms DESC, id DESC LIMIT 100",
            args![id.as_str(), &cx.org()?.org_id],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|d| DeliveryView {
            id: d.id,
            delivery_id: d.delivery_id,
            event: d.event,
            outcome: d.outcome,
            reason: d.reason,
            review_id: d.review_id,
            secret: d.secret_slot,
            received_at: rfc3339_millis(d.received_at_ms),
        })
        .collect())
}
