//! `integrations list|show|create|rotate-secret|deliveries`, `providers list|create|set-key`,
//! `reviews list|show|requeue`.
//!
//! Secrets go in through stdin or a hidden prompt, never argv ([`crate::secret`]): a
//! platform's access token, a provider's API key. A webhook secret is generated here (256
//! bits) and printed once, for pasting into the platform's webhook settings; the API itself
//! never shows a secret again (`has_…: true`).

use serde_json::{json, Value};

use crate::error::Result;
use crate::output::cell;
use crate::{secret, seg, Ctx};

#[derive(Debug, clap::Subcommand)]
pub enum IntegrationsCmd {
    /// The org's git platform integrations.
    List,
    /// One integration.
    Show { integration: String },
    /// Connect a git platform. The access token is read from stdin or a hidden prompt; a
    /// webhook secret is generated and printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["github", "gitlab", "bitbucket"])]
        platform: String,
        /// `cloud` (default) or, for Bitbucket, `datacenter`.
        #[arg(long)]
        deployment: Option<String>,
        /// The platform's API root (default: the platform's cloud API).
        #[arg(long)]
        api_base_url: Option<String>,
        /// The LLM provider that reviews this integration's pull requests.
        #[arg(long)]
        provider: Option<String>,
    },
    /// Replace the webhook secret with a freshly generated one (printed once); the old one
    /// keeps verifying for the overlap.
    RotateSecret {
        integration: String,
        /// Seconds the old secret keeps verifying (default: the server's).
        #[arg(long)]
        overlap_seconds: Option<u32>,
    },
    /// Verified webhook deliveries and what became of each.
    Deliveries { integration: String },
}

const INTEGRATION_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("PLATFORM", "platform"),
    ("DEPLOYMENT", "deployment"),
    ("PROVIDER", "llm_provider_id"),
    ("ENABLED", "enabled"),
    ("WEBHOOK URL", "webhook_url"),
];

const INTEGRATION_FIELDS: &[(&str, &str)] = &[
    ("id", "id"),
    ("name", "name"),
    ("platform", "platform"),
    ("deployment", "deployment"),
    ("api base url", "api_base_url"),
    ("provider", "llm_provider_id"),
    ("enabled", "enabled"),
    ("webhook url", "webhook_url"),
    ("has access token", "has_access_token"),
    ("has webhook secret", "has_webhook_secret"),
    ("secret rotated", "secret_rotated_at"),
    ("old secret until", "previous_webhook_secret_expires_at"),
    ("created", "created_at"),
];

pub fn integrations(ctx: &Ctx, cmd: IntegrationsCmd) -> Result<()> {
    match cmd {
        IntegrationsCmd::List => {
            let v = ctx.api.get(&ctx.org_path("/integrations")?)?;
            ctx.out.table(&v, "integrations", INTEGRATION_COLUMNS);
        }
        IntegrationsCmd::Show { integration } => {
            let v = ctx.api.get(&integration_path(ctx, &integration, "")?)?;
            ctx.out.object(&v, &v["integration"], INTEGRATION_FIELDS);
        }
        IntegrationsCmd::Create {
            name,
            platform,
            deployment,
            api_base_url,
            provider,
        } => {
            let access_token = secret::read("the platform access token")?;
            let webhook_secret = secret::generate("whs_")?;
            let mut body = json!({
                "name": name, "platform": platform,
                "access_token": access_token, "webhook_secret": webhook_secret,
            });
            if let Some(d) = deployment {
                body["deployment"] = json!(d);
            }
            if let Some(u) = api_base_url {
                body["api_base_url"] = json!(u);
            }
            if let Some(p) = provider {
                body["llm_provider_id"] = json!(p);
            }
            let v = ctx.api.post(&ctx.org_path("/integrations")?, &body)?;
            show_webhook_secret(ctx, v, &webhook_secret, "Integration");
        }
        IntegrationsCmd::RotateSecret {
            integration,
            overlap_seconds,
        } => {
            let webhook_secret = secret::generate("whs_")?;
            let mut body = json!({ "webhook_secret": webhook_secret });
            if let Some(s) = overlap_seconds {
                body["overlap_seconds"] = json!(s);
            }
            let v = ctx.api.post(
                &integration_path(ctx, &integration, "/webhook-secret/rotate")?,
                &body,
            )?;
            show_webhook_secret(ctx, v, &webhook_secret, "Rotated the secret of integration");
        }
        IntegrationsCmd::Deliveries { integration } => {
            let v = ctx
                .api
                .get(&integration_path(ctx, &integration, "/deliveries")?)?;
            ctx.out.table(
                &v,
                "deliveries",
                &[
                    ("RECEIVED", "received_at"),
                    ("DELIVERY", "delivery_id"),
                    ("EVENT", "event"),
                    ("OUTCOME", "outcome"),
                    ("REASON", "reason"),
                    ("REVIEW", "review_id"),
                    ("SECRET", "secret"),
                ],
            );
        }
    }
    Ok(())
}

fn integration_path(ctx: &Ctx, integration: &str, rest: &str) -> Result<String> {
    ctx.org_path(&format!("/integrations/{}{rest}", seg(integration)))
}

/// The integration's answer with the webhook secret the CLI generated: with `--json` one
/// document holding both, else the description on stderr and the secret alone on stdout.
fn show_webhook_secret(ctx: &Ctx, mut v: Value, webhook_secret: &str, what: &str) {
    if ctx.out.json {
        v["webhook_secret"] = json!(webhook_secret);
        ctx.out.raw(&v);
        return;
    }
    let i = &v["integration"];
    let mut about = vec![format!(
        "{what} {} ({}). Point the platform's webhook at {}",
        cell(&i["id"]),
        cell(&i["name"]),
        cell(&i["webhook_url"]),
    )];
    if let Some(until) = i["previous_webhook_secret_expires_at"].as_str() {
        about.push(format!("The old secret verifies until {until}."));
    }
    about.push("with the webhook secret below (shown only once).".into());
    secret::show_once(&about, webhook_secret);
}

#[derive(Debug, clap::Subcommand)]
pub enum ProvidersCmd {
    /// The org's LLM providers.
    List,
    /// Add a provider. Its API key is read from stdin or a hidden prompt.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["anthropic", "openai", "gemini", "openai_compatible"])]
        kind: String,
        #[arg(long)]
        model: String,
        /// The API root (required for openai_compatible; default: the vendor's).
        #[arg(long)]
        base_url: Option<String>,
        #[arg(long)]
        embedding_model: Option<String>,
        /// Make it the org's default provider.
        #[arg(long)]
        default: bool,
    },
    /// Replace a provider's API key, read from stdin or a hidden prompt.
    SetKey { provider: String },
}

const PROVIDER_FIELDS: &[(&str, &str)] = &[
    ("id", "id"),
    ("name", "name"),
    ("kind", "kind"),
    ("model", "model"),
    ("base url", "base_url"),
    ("embedding model", "embedding_model"),
    ("default", "is_default"),
    ("has api key", "has_api_key"),
    ("key sealed to", "api_key_sealed_to"),
    ("key set", "api_key_set_at"),
];

pub fn providers(ctx: &Ctx, cmd: ProvidersCmd) -> Result<()> {
    let v = match cmd {
        ProvidersCmd::List => {
            let v = ctx.api.get(&ctx.org_path("/llm-providers")?)?;
            ctx.out.table(
                &v,
                "llm_providers",
                &[
                    ("ID", "id"),
                    ("NAME", "name"),
                    ("KIND", "kind"),
                    ("MODEL", "model"),
                    ("DEFAULT", "is_default"),
                    ("HAS KEY", "has_api_key"),
                    ("KEY SET", "api_key_set_at"),
                ],
            );
            return Ok(());
        }
        ProvidersCmd::Create {
            name,
            kind,
            model,
            base_url,
            embedding_model,
            default,
        } => {
            let api_key = secret::read("the provider's API key")?;
            let mut body = json!({"name": name, "kind": kind, "model": model, "api_key": api_key});
            if let Some(u) = base_url {
                body["base_url"] = json!(u);
            }
            if let Some(m) = embedding_model {
                body["embedding_model"] = json!(m);
            }
            if default {
                body["is_default"] = json!(true);
            }
            ctx.api.post(&ctx.org_path("/llm-providers")?, &body)?
        }
        ProvidersCmd::SetKey { provider } => {
            let api_key = secret::read("the provider's API key")?;
            ctx.api.patch(
                &ctx.org_path(&format!("/llm-providers/{}", seg(&provider)))?,
                &json!({ "api_key": api_key }),
            )?
        }
    };
    ctx.out.object(&v, &v["llm_provider"], PROVIDER_FIELDS);
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum ReviewsCmd {
    /// Reviews, newest first.
    List {
        /// queued, fetching, indexing, reviewing, commenting, completed, skipped, failed, ...
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        integration: Option<String>,
        #[arg(long)]
        pull_request: Option<u64>,
        /// 1 to 100 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// The previous page's `next_cursor`.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One review: status, timings, counts, skipped files.
    Show { review: String },
    /// Restart a failed review, or re-send a stuck one (harmless for a finished one).
    Requeue { review: String },
}

const REVIEW_FIELDS: &[(&str, &str)] = &[
    ("id", "id"),
    ("status", "status"),
    ("reason", "reason"),
    ("error", "error"),
    ("integration", "integration_id"),
    ("platform", "platform"),
    ("repository", "repository.name"),
    ("pull request", "pull_request"),
    ("head", "head_sha"),
    ("attempts", "attempts"),
    ("model", "model"),
    ("queued", "timings.queued_at"),
    ("finished", "timings.finished_at"),
    ("total ms", "timings.total_ms"),
    ("files reviewed", "counts.files_reviewed"),
    ("files skipped", "counts.files_skipped"),
    ("findings", "counts.findings"),
    ("comments posted", "counts.comments_posted"),
];

pub fn reviews(ctx: &Ctx, cmd: ReviewsCmd) -> Result<()> {
    let v = match cmd {
        ReviewsCmd::List {
            status,
            integration,
            pull_request,
            limit,
            cursor,
        } => {
            let path = ctx.org_query(
                "/reviews",
                [
                    ("status", status),
                    ("integration", integration),
                    ("pull_request", pull_request.map(|n| n.to_string())),
                    ("limit", limit.map(|n| n.to_string())),
                    ("cursor", cursor),
                ],
            )?;
            let v = ctx.api.get(&path)?;
            ctx.out.table(
                &v,
                "reviews",
                &[
                    ("ID", "id"),
                    ("STATUS", "status"),
                    ("REPOSITORY", "repository.name"),
                    ("PR", "pull_request"),
                    ("HEAD", "head_sha"),
                    ("FINDINGS", "counts.findings"),
                    ("QUEUED", "timings.queued_at"),
                ],
            );
            ctx.out.next_page(&v, "next_cursor", "cursor");
            return Ok(());
        }
        ReviewsCmd::Show { review } => ctx.api.get(&review_path(ctx, &review, "")?)?,
        ReviewsCmd::Requeue { review } => ctx
            .api
            .post(&review_path(ctx, &review, "/requeue")?, &json!({}))?,
    };
    ctx.out.object(&v, &v["review"], REVIEW_FIELDS);
    Ok(())
}

fn review_path(ctx: &Ctx, review: &str, rest: &str) -> Result<String> {
    ctx.org_path(&format!("/reviews/{}{rest}", seg(review)))
}
