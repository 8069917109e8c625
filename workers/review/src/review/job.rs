//! A review job: what one run of a review holds (the review, its integration and provider with
//! their opened secrets, the network), how a stage stops, and how a job is prepared. The stages
//! (`fetch`, `context`, `post`) and the run in `mod.rs` all work on a [`Job`].

use std::time::Duration;

use edgeplane_core::audit::Facts;
use edgeplane_core::review::byok::ReviewSecret;
use edgeplane_core::review::config::{Deployment, PlatformApi, ProviderKind};
use edgeplane_core::review::egress::EgressPolicy;
use edgeplane_core::review::findings::Finding;
use edgeplane_core::review::git_platform::Platform;
use edgeplane_core::review::http::{classify_status, Failure};
use edgeplane_core::review::platform::{Anchor, PullRequestInfo, Target};
use edgeplane_core::review::provider;
use edgeplane_core::review::sealed::Field;
use edgeplane_core::review::select::SkipReason;
use edgeplane_core::ApiError;
use edgeplane_runtime::{args, log, Db};
use serde::{Deserialize, Serialize};
use worker::Env;

use super::store::ReviewRow;
use crate::net::{Net, NetError, Response};
use crate::secrets;

const PLATFORM_TIMEOUT: Duration = Duration::from_secs(30);
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a review stopped before `done`.
pub enum Stop {
    /// Worth retrying through the queue (5xx, 429, timeouts, D1 hiccups).
    Transient {
        reason: String,
        retry_after: Option<u32>,
    },
    /// Retrying will not help: the review fails with this reason.
    Permanent(String),
    /// Nothing to review (closed, superseded by a newer head): ends as skipped.
    Skip(&'static str),
    /// The review left our hands (superseded mid-step): stop quietly.
    Gone,
}

impl From<ApiError> for Stop {
    fn from(e: ApiError) -> Self {
        Stop::Transient {
            reason: format!("storage: {}", e.code.as_str()),
            retry_after: None,
        }
    }
}

/// Maps a failed upstream call to a stop. `what` names the call for the review's error field;
/// it never includes bodies (which may echo credentials).
pub fn upstream(who: &str, what: &str, r: Result<Response, NetError>) -> Result<Response, Stop> {
    match r {
        Ok(resp) if resp.ok() => Ok(resp),
        Ok(resp) => {
            let reason = format!("{who} answered {} to {what}", resp.status);
            match classify_status(resp.status, resp.retry_after) {
                Failure::Transient { retry_after } => Err(Stop::Transient {
                    reason,
                    retry_after,
                }),
                Failure::Permanent => Err(Stop::Permanent(reason)),
            }
        }
        Err(NetError::Egress(e)) => Err(Stop::Permanent(format!("{what}: egress refused ({e})"))),
        // The same upstream will send the same body again: not worth a retry.
        Err(NetError::TooLarge { limit }) => Err(Stop::Permanent(format!(
            "{who}'s answer to {what} is larger than the {limit} bytes allowed"
        ))),
        Err(e) => Err(Stop::Transient {
            reason: format!("{what}: {e}"),
            retry_after: None,
        }),
    }
}

#[derive(Deserialize)]
struct IntegrationRow {
    platform: Platform,
    deployment: Deployment,
    api_base_url: String,
    llm_provider_id: Option<String>,
    access_token_sealed: Option<String>,
    enabled: i64,
    deleted_at_ms: Option<i64>,
}

#[derive(Deserialize)]
struct ProviderRow {
    id: String,
    kind: ProviderKind,
    base_url: String,
    model: String,
    embedding_model: Option<String>,
    max_input_tokens: i64,
    max_output_tokens: i64,
    api_key_sealed: String,
}

/// The provider, with its key open in memory for this job only.
pub struct Provider {
    pub id: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub model: String,
    pub embedding_model: Option<String>,
    pub max_input_tokens: u32,
    pub max_output_tokens: u32,
    auth: (&'static str, String),
}

impl Provider {
    pub fn auth(&self) -> &(&'static str, String) {
        &self.auth
    }
}

/// Everything one job needs, resolved once.
pub struct Job {
    /// For the audit sequencer a finished review pokes.
    pub env: Env,
    pub db: Db,
    pub row: ReviewRow,
    pub api: PlatformApi,
    pub base_url: String,
    pub platform_auth: (&'static str, String),
    pub provider: Provider,
    pub net: Net,
    pub review_secret: ReviewSecret,
}

impl Job {
    pub fn target(&self) -> Target<'_> {
        Target {
            api: self.api,
            base_url: &self.base_url,
            repo_id: &self.row.repo_id,
            repo_name: &self.row.repo_name,
            number: self.row.pr_number as u64,
        }
    }

    pub fn platform_name(&self) -> &'static str {
        match self.api {
            PlatformApi::GitHub => "github",
            PlatformApi::GitLab => "gitlab",
            PlatformApi::BitbucketCloud | PlatformApi::BitbucketDataCenter => "bitbucket",
        }
    }

    pub async fn platform(
        &self,
        call: &edgeplane_core::review::http::Call,
    ) -> Result<Response, NetError> {
        self.net
            .send(call, Some(&self.platform_auth), PLATFORM_TIMEOUT)
            .await
    }

    pub async fn provider_call(
        &self,
        call: &edgeplane_core::review::http::Call,
    ) -> Result<Response, NetError> {
        self.net
            .send(call, Some(self.provider.auth()), PROVIDER_TIMEOUT)
            .await
    }
}

/// What survives between the provider call and the last posted comment, sealed at rest.
#[derive(Serialize, Deserialize)]
pub struct Work {
    pub info: PullRequestInfo,
    pub summary: String,
    pub findings: Vec<Finding>,
    pub anchors: Vec<Anchor>,
    pub not_reviewed: Vec<(String, SkipReason)>,
    pub dropped: usize,
}

/// What the review worker's changes are recorded with: the worker acting on its own, in the
/// review's org.
pub fn facts(org_id: &str) -> Facts {
    Facts::system("review-worker", org_id)
}

/// Resolves the integration, the provider and their secrets. A review whose integration or
/// provider is gone fails with a reason the org can act on.
pub(super) async fn prepare(env: &Env, db: Db, row: ReviewRow) -> Result<Job, (Db, Stop)> {
    macro_rules! tri {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(stop) => return Err((db, stop)),
            }
        };
    }
    let integ: Option<IntegrationRow> = tri!(db
        .first(
            "SELECT platform, deployment, api_base_url, llm_provider_id, access_token_sealed, enabled, deleted_at_ms \
             FROM integrations WHERE id = ? AND org_id = ?",
            args![&row.integration_id, &row.org_id],
        )
        .await
        .map_err(Stop::from));
    let Some(integ) = integ.filter(|i| i.deleted_at_ms.is_none()) else {
        return Err((db, Stop::Skip("integration_removed")));
    };
    if integ.enabled == 0 {
        return Err((db, Stop::Skip("integration_disabled")));
    }
    let api = PlatformApi::of(integ.platform, integ.deployment);
    let key = tri!(secrets::integration_key(env).map_err(|e| {
        log::error("config", &e);
        Stop::Transient {
            reason: "the review worker is misconfigured".into(),
            retry_after: None,
        }
    }));
    let token = tri!(integ
        .access_token_sealed
        .as_deref()
        .and_then(|s| secrets::open_integration(&key, &row.integration_id, Field::AccessToken, s))
        .ok_or_else(|| Stop::Permanent(
            "the integration's access token could not be opened".into()
        )));
    let provider: Option<ProviderRow> = tri!(db
        .first(
            "SELECT id, kind, base_url, model, embedding_model, max_input_tokens, max_output_tokens, api_key_sealed \
             FROM llm_providers WHERE org_id = ? AND (id = ? OR (? IS NULL AND is_default = 1)) LIMIT 1",
            args![&row.org_id, integ.llm_provider_id.clone(), integ.llm_provider_id.clone()],
        )
        .await
        .map_err(Stop::from));
    let Some(p) = provider else {
        return Err((
            db,
            Stop::Permanent("no LLM provider is configured for this organization".into()),
        ));
    };
    let review_secret = tri!(secrets::review_secret(env).map_err(|e| {
        log::error("config", &e);
        Stop::Transient {
            reason: "the review worker is misconfigured".into(),
            retry_after: None,
        }
    }));
    let api_key = tri!(secrets::open_api_key(&review_secret, &p.id, &p.api_key_sealed).ok_or_else(|| Stop::Permanent(
        "the provider's API key could not be opened (sealed to another review key?): set it again".into()
    )));
    let kind = p.kind;
    let mut policy = EgressPolicy::new(secrets::allow_loopback(env));
    policy.allow_base(&integ.api_base_url);
    policy.allow_base(&p.base_url);
    let _ = db
        .run_unaudited(
            "UPDATE reviews SET llm_provider_id = ?, model = ? WHERE id = ?",
            args![&p.id, &p.model, &row.id],
        )
        .await;
    Ok(Job {
        platform_auth: edgeplane_core::review::platform::auth_header(api, &token),
        provider: Provider {
            auth: provider::auth_header(kind, &api_key),
            id: p.id,
            kind,
            base_url: p.base_url,
            model: p.model,
            embedding_model: p.embedding_model,
            max_input_tokens: p.max_input_tokens.clamp(1, u32::MAX as i64) as u32,
            max_output_tokens: p.max_output_tokens.clamp(1, u32::MAX as i64) as u32,
        },
        api,
        base_url: integ.api_base_url,
        net: Net::new(policy),
        review_secret,
        env: env.clone(),
        db,
        row,
    })
}
