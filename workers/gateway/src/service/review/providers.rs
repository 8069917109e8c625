//! BYOK LLM providers. The API key is sealed to the review worker's public key on the way in:
//! from then on no gateway code path can read it, and responses only say that one is set.
//! Setting, rotating and deleting keys is audited (never with the key).

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::ids::ProviderId;
use edgeplane_core::review::config::{self, ProviderKind};
use edgeplane_core::review::sealed::{self, Field};
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::views::review::ProviderView;
use edgeplane_core::{validate, ApiError};
use serde::Deserialize;
use serde_json::json;

use super::update::Update;
use super::{nullable, secrets};
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use edgeplane_runtime::args;
use edgeplane_runtime::db::OrgBatch;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProvider {
    pub name: String,
    pub kind: ProviderKind,
    #[serde(default)]
    pub base_url: Option<String>,
    pub model: String,
    #[serde(default)]
    pub embedding_model: Option<String>,
    pub api_key: String,
    #[serde(default)]
    pub max_input_tokens: Option<u32>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub is_default: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateProvider {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub embedding_model: Option<Option<String>>,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub max_input_tokens: Option<u32>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub is_default: Option<bool>,
}

#[derive(Deserialize)]
struct ProviderRow {
    id: ProviderId,
    name: String,
    kind: ProviderKind,
    base_url: String,
    model: String,
    embedding_model: Option<String>,
    max_input_tokens: u32,
    max_output_tokens: u32,
    key_kid: String,
    is_default: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
    key_set_at_ms: i64,
}

const COLUMNS: &str = "id, name, kind, base_url, model, embedding_model, max_input_tokens, \
    max_output_tokens, key_kid, is_default, created_at_ms, updated_at_ms, key_set_at_ms";

fn view(r: ProviderRow) -> ProviderView {
    ProviderView {
        id: r.id,
        name: r.name,
        kind: r.kind,
        base_url: r.base_url,
        model: r.model,
        embedding_model: r.embedding_model,
        max_input_tokens: r.max_input_tokens,
        max_output_tokens: r.max_output_tokens,
        is_default: r.is_default != 0,
        // The key column is NOT NULL: a provider always has one.
        has_api_key: true,
        api_key_sealed_to: r.key_kid,
        api_key_set_at: rfc3339_millis(r.key_set_at_ms),
        created_at: rfc3339_millis(r.created_at_ms),
        updated_at: rfc3339_millis(r.updated_at_ms),
    }
}

async fn load(cx: &Cx<'_>, id: &ProviderId) -> Result<ProviderRow, ApiError> {
    cx.db()
        .first(
            &format!("SELECT {COLUMNS} FROM llm_providers WHERE id = ? AND org_id = ?"),
            args![id.as_str(), &cx.org()?.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("LLM provider"))
}

fn embedding_model(kind: ProviderKind, m: Option<&str>) -> Result<Option<String>, ApiError> {
    match m {
        None => Ok(None),
        Some(_) if !kind.offers_embeddings() => Err(ApiError::validation(format!(
            "{} has no embeddings endpoint; leave embedding_model unset (lexical retrieval is used)",
            kind.as_str()
        ))),
        Some(m) => config::model_name(m, "embedding_model").map(Some),
    }
}

fn seal_key(cx: &Cx<'_>, id: &ProviderId, api_key: &str) -> Result<(String, String), ApiError> {
    let public = secrets::byok_public_key(cx.env)?;
    let key = config::secret(api_key, "api_key", 8)?;
    Ok((
        sealed::encode(&public.seal(&sealed::aad(id.as_str(), Field::ApiKey), key.as_bytes())?),
        public.kid(),
    ))
}

pub async fn create(cx: &Cx<'_>, body: CreateProvider) -> Result<ProviderView, ApiError> {
    let kind = body.kind;
    let name = validate::display_name(&body.name, "name")?;
    let base = config::base_url(
        body.base_url.as_deref(),
        kind.default_base_url(),
        secrets::allow_loopback(cx.env),
        "base_url",
    )?;
    let model = config::model_name(&body.model, "model")?;
    let embedding = embedding_model(kind, body.embedding_model.as_deref())?;
    let max_in = config::in_range(
        body.max_input_tokens
            .unwrap_or(config::DEFAULT_MAX_INPUT_TOKENS),
        config::INPUT_TOKENS_RANGE,
        "max_input_tokens",
    )?;
    let max_out = config::in_range(
        body.max_output_tokens
            .unwrap_or(config::DEFAULT_MAX_OUTPUT_TOKENS),
        config::OUTPUT_TOKENS_RANGE,
        "max_output_tokens",
    )?;
    let org_id = cx.org()?.org_id.clone();
    let now = now_ms();
    let id = ProviderId::generate(now)?;
    let (sealed_key, kid) = seal_key(cx, &id, &body.api_key)?;
    let mut batch = OrgBatch::new(&org_id);
    // The first provider of an org becomes its default; an explicit default takes over.
    let make_default = body.is_default.unwrap_or(false);
    if make_default {
        batch = batch.update(
            "llm_providers",
            "is_default = 0",
            args![],
            "is_default = 1",
            args![],
        );
    }
    let batch = batch.insert_select(
        "llm_providers",
        &[
            "id",
            "name",
            "kind",
            "base_url",
            "model",
            "embedding_model",
            "max_input_tokens",
            "max_output_tokens",
            "api_key_sealed",
            "key_kid",
            "is_default",
            "created_by",
            "created_at_ms",
            "updated_at_ms",
            "key_set_at_ms",
        ],
        "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, \
         CASE WHEN ? = 1 OR NOT EXISTS (SELECT 1 FROM llm_providers WHERE org_id = ? AND is_default = 1) THEN 1 ELSE 0 END, \
         ?, ?, ?, ?",
        args![
            id.as_str(), &name, kind.as_str(), &base, &model, embedding.clone(), max_in, max_out,
            sealed_key, &kid, make_default, &org_id, &cx.principal.id, now, now, now
        ],
    );
    let event = Event::new(AuditAction::LlmProviderKeySet, "llm_provider", id.as_str()).meta(
        json!({"name": name, "kind": kind.as_str(), "base_url": base, "model": model,
               "embedding_model": embedding, "sealed_to": kid}),
    );
    cx.commit(batch, [event]).await?;
    Ok(view(load(cx, &id).await?))
}

pub async fn list(cx: &Cx<'_>) -> Result<Vec<ProviderView>, ApiError> {
    let rows: Vec<ProviderRow> = cx
        .db()
        .all(
            &format!("SELECT {COLUMNS} FROM llm_providers WHERE org_id = ? ORDER BY created_at_ms, id LIMIT 200"),
            args![&cx.org()?.org_id],
        )
        .await?;
    Ok(rows.into_iter().map(view).collect())
}

pub async fn get(cx: &Cx<'_>, id: &ProviderId) -> Result<ProviderView, ApiError> {
    Ok(view(load(cx, id).await?))
}

pub async fn update(
    cx: &Cx<'_>,
    id: &ProviderId,
    body: UpdateProvider,
) -> Result<ProviderView, ApiError> {
    let row = load(cx, id).await?;
    let kind = row.kind;
    let org_id = cx.org()?.org_id.clone();
    let now = now_ms();
    let mut u = Update::default();
    if let Some(n) = &body.name {
        u.set(
            "name",
            "name = ?",
            vec![validate::display_name(n, "name")?.into()],
        );
    }
    if let Some(b) = &body.base_url {
        let base = config::base_url(Some(b), None, secrets::allow_loopback(cx.env), "base_url")?;
        // The key is sent to this URL: pointing it elsewhere requires re-entering the key.
        if base != row.base_url && body.api_key.is_none() {
            return Err(ApiError::validation(
                "changing base_url requires api_key in the same request",
            ));
        }
        u.set("base_url", "base_url = ?", vec![base.into()]);
    }
    if let Some(m) = &body.model {
        u.set(
            "model",
            "model = ?",
            vec![config::model_name(m, "model")?.into()],
        );
    }
    if let Some(m) = &body.embedding_model {
        u.set(
            "embedding_model",
            "embedding_model = ?",
            vec![embedding_model(kind, m.as_deref())?.into()],
        );
    }
    if let Some(v) = body.max_input_tokens {
        let v = config::in_range(v, config::INPUT_TOKENS_RANGE, "max_input_tokens")?;
        u.set("max_input_tokens", "max_input_tokens = ?", vec![v.into()]);
    }
    if let Some(v) = body.max_output_tokens {
        let v = config::in_range(v, config::OUTPUT_TOKENS_RANGE, "max_output_tokens")?;
        u.set("max_output_tokens", "max_output_tokens = ?", vec![v.into()]);
    }
    let mut kid = None;
    if let Some(k) = &body.api_key {
        let (sealed_key, k) = seal_key(cx, id, k)?;
        u.set(
            "api_key",
            "api_key_sealed = ?, key_kid = ?, key_set_at_ms = ?",
            vec![sealed_key.into(), k.clone().into(), now.into()],
        );
        kid = Some(k);
    }
    let mut batch = OrgBatch::new(&org_id);
    if let Some(d) = body.is_default {
        if d {
            batch = batch.update(
                "llm_providers",
                "is_default = 0",
                args![],
                "id <> ? AND is_default = 1",
                args![id.as_str()],
            );
        }
        u.set("is_default", "is_default = ?", vec![d.into()]);
    }
    let (batch, changed) = u.apply(batch, "llm_providers", "", now, id.as_str())?;
    let mut events = Vec::new();
    if kid.is_some() {
        events.push(
            Event::new(
                AuditAction::LlmProviderKeyRotated,
                "llm_provider",
                id.as_str(),
            )
            .meta(json!({"name": row.name, "sealed_to": kid})),
        );
    }
    let other: Vec<&str> = changed
        .iter()
        .copied()
        .filter(|c| *c != "api_key")
        .collect();
    if !other.is_empty() {
        events.push(
            Event::new(AuditAction::LlmProviderUpdated, "llm_provider", id.as_str()).meta(json!({
                "changed": other, "model": body.model, "base_url": body.base_url,
                "embedding_model": body.embedding_model, "is_default": body.is_default,
            })),
        );
    }
    cx.commit(batch, events).await?;
    Ok(view(load(cx, id).await?))
}

pub async fn delete(cx: &Cx<'_>, id: &ProviderId) -> Result<(), ApiError> {
    let row = load(cx, id).await?;
    // The sealed key is destroyed with the row; integrations pinned to it fall back to the
    // org's default provider.
    let batch = OrgBatch::new(&cx.org()?.org_id)
        .update(
            "integrations",
            "llm_provider_id = NULL, updated_at_ms = ?",
            args![now_ms()],
            "llm_provider_id = ?",
            args![id.as_str()],
        )
        .delete("llm_providers", "id = ?", args![id.as_str()]);
    let event = Event::new(
        AuditAction::LlmProviderKeyDeleted,
        "llm_provider",
        id.as_str(),
    )
    .meta(json!({"name": row.name, "kind": row.kind}));
    cx.commit(batch, [event]).await?;
    Ok(())
}
