//! One code review, from claim to posted comments. Each phase is a conditional state
//! transition in D1 (queued -> fetching -> indexing -> reviewing -> commenting -> done), so a
//! superseded review stops at its next step and a redelivered message finds the work done.
//! Source code lives only in this invocation's memory; what crosses a retry is sealed.

mod context;
mod fetch;
mod post;
mod store;

use std::time::Duration;

use edgeplane_core::audit::{AuditAction, Event, Facts};
use edgeplane_core::queue::retry_delay_seconds;
use edgeplane_core::review::byok::ReviewSecret;
use edgeplane_core::review::config::{Deployment, PlatformApi, ProviderKind};
use edgeplane_core::review::diff::FileDiff;
use edgeplane_core::review::egress::EgressPolicy;
use edgeplane_core::review::findings::{self, Finding};
use edgeplane_core::review::http::{classify_status, Failure};
use edgeplane_core::review::platform::{Anchor, PullRequestInfo, Target};
use edgeplane_core::review::prompt::{self, Budget};
use edgeplane_core::review::provider;
use edgeplane_core::review::sealed::Field;
use edgeplane_core::review::select::SkipReason;
use edgeplane_core::review::status::ReviewStatus;
use edgeplane_core::views::review::SkippedFile;
use edgeplane_core::webhook::Platform;
use edgeplane_core::ApiError;
use edgeplane_runtime::audit::commit_with_facts;
use edgeplane_runtime::clock::now_ms;
use edgeplane_runtime::db::OrgBatch;
use edgeplane_runtime::{args, log, Db};
use serde::{Deserialize, Serialize};
use worker::Env;

use crate::net::{Net, NetError, Response};
use crate::retry::{retry_base, Outcome, RETRY_CAP_SECONDS};
use crate::secrets;
use store::{Claim, ReviewRow};

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

pub async fn run(env: &Env, org_id: &str, review_id: &str) -> Outcome {
    let db = match Db::from_env(env) {
        Ok(db) => db,
        Err(_) => {
            return Outcome::Retry {
                delay_seconds: retry_base(env),
            }
        }
    };
    let now = now_ms();
    let row = match store::claim(&db, org_id, review_id, now).await {
        Ok(Claim::Claimed(r)) => *r,
        Ok(Claim::Finished) => {
            // A redelivery of a review that has ended: acknowledged, nothing redone. Logged so
            // an operator (and the end-to-end suite) can see the message was handled.
            log::info(
                "review already finished; message acknowledged",
                serde_json::json!({"review": review_id}),
            );
            return Outcome::Done;
        }
        Ok(Claim::Missing) => return Outcome::Done,
        Ok(Claim::Busy { retry_in_secs }) => {
            return Outcome::Retry {
                delay_seconds: retry_in_secs,
            }
        }
        Err(_) => {
            return Outcome::Retry {
                delay_seconds: retry_base(env),
            }
        }
    };
    let attempts = row.attempts.max(1) as u32;
    let id = row.id.clone();
    let job = match prepare(env, db, row).await {
        Ok(job) => job,
        Err((db, stop)) => return conclude(env, &db, org_id, &id, attempts, stop).await,
    };
    match pipeline(&job).await {
        Ok(()) => Outcome::Done,
        Err(stop) => conclude(env, &job.db, org_id, &id, attempts, stop).await,
    }
}

async fn conclude(
    env: &Env,
    db: &Db,
    org_id: &str,
    id: &str,
    attempts: u32,
    stop: Stop,
) -> Outcome {
    let result = match stop {
        Stop::Gone => return Outcome::Done,
        Stop::Transient {
            reason,
            retry_after,
        } => {
            log::warn("review will be retried", &format!("{id}: {reason}"));
            let backoff = retry_delay_seconds(attempts, retry_base(env), RETRY_CAP_SECONDS);
            let _ = store::release(db, id, &reason).await;
            return Outcome::Retry {
                delay_seconds: backoff.max(retry_after.unwrap_or(0)),
            };
        }
        Stop::Permanent(reason) => {
            log::warn("review failed", &format!("{id}: {reason}"));
            finish_unsuccessful(
                env,
                db,
                org_id,
                id,
                ReviewStatus::Failed,
                None,
                Some(&reason),
            )
            .await
        }
        Stop::Skip(reason) => {
            finish_unsuccessful(
                env,
                db,
                org_id,
                id,
                ReviewStatus::Skipped,
                Some(reason),
                None,
            )
            .await
        }
    };
    match result {
        Ok(()) => Outcome::Done,
        Err(_) => Outcome::Retry {
            delay_seconds: retry_base(env),
        },
    }
}

/// Ends a review as failed or skipped (an unfinished one only); failures are audited.
pub async fn finish_unsuccessful(
    env: &Env,
    db: &Db,
    org_id: &str,
    id: &str,
    status: ReviewStatus,
    reason: Option<&str>,
    error: Option<&str>,
) -> Result<(), ApiError> {
    let batch = OrgBatch::new(org_id).update(
        "reviews",
        "status = ?, status_reason = coalesce(?, status_reason), error = coalesce(?, error), \
         finished_at_ms = ?, lease_until_ms = NULL, work_sealed = NULL",
        args![status.as_str(), reason, error, now_ms()],
        &format!("id = ? AND status IN {}", ReviewStatus::UNFINISHED_SQL),
        args![id],
    );
    let events = if status == ReviewStatus::Failed {
        vec![Event::new(AuditAction::ReviewFailed, "review", id)
            .meta(serde_json::json!({"error": error}))]
    } else {
        vec![]
    };
    commit_with_facts(env, db, batch, events, facts(org_id)).await?;
    Ok(())
}

/// What the review worker's changes are recorded with: the worker acting on its own, in the
/// review's org.
pub fn facts(org_id: &str) -> Facts {
    Facts::system("review-worker", org_id)
}

/// Resolves the integration, the provider and their secrets. A review whose integration or
/// provider is gone fails with a reason the org can act on.
async fn prepare(env: &Env, db: Db, row: ReviewRow) -> Result<Job, (Db, Stop)> {
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

async fn pipeline(job: &Job) -> Result<(), Stop> {
    let resuming = job.row.status == ReviewStatus::Commenting && job.row.work_sealed.is_some();
    if resuming {
        let sealed = job.row.work_sealed.as_deref().unwrap_or_default();
        let work = edgeplane_core::review::sealed::decode(sealed)
            .and_then(|b| job.review_secret.open_work(&job.row.id, &b).ok())
            .and_then(|b| serde_json::from_slice::<Work>(&b).ok())
            .ok_or_else(|| {
                Stop::Permanent("the sealed work in progress could not be opened".into())
            })?;
        return post::post(job, &work, true).await;
    }
    // A retry that stopped in an earlier phase starts over from fetching.
    if job.row.status != ReviewStatus::Fetching
        && !store::advance(
            &job.db,
            &job.row.id,
            job.row.status,
            ReviewStatus::Fetching,
            now_ms(),
        )
        .await?
    {
        return Err(Stop::Gone);
    }
    let fetched = fetch::fetch(job).await?;
    if !store::advance(
        &job.db,
        &job.row.id,
        ReviewStatus::Fetching,
        ReviewStatus::Indexing,
        now_ms(),
    )
    .await?
    {
        return Err(Stop::Gone);
    }
    let ctx = context::build(job, &fetched).await?;
    if !store::advance(
        &job.db,
        &job.row.id,
        ReviewStatus::Indexing,
        ReviewStatus::Reviewing,
        now_ms(),
    )
    .await?
    {
        return Err(Stop::Gone);
    }
    let work = review(job, &fetched, &ctx).await?;
    post::post(job, &work, false).await
}

/// Asks the provider and validates its findings; seals the result and enters `commenting`.
async fn review(job: &Job, f: &fetch::Fetched, ctx: &context::Context) -> Result<Work, Stop> {
    let files: Vec<&FileDiff> = f.selected.iter().map(|s| &s.diff).collect();
    let chunks: Vec<_> = ctx.picked.iter().map(|i| &ctx.chunks[*i]).collect();
    let p = prompt::build(
        &f.info.title,
        &files,
        &chunks,
        &Budget {
            max_input_tokens: job.provider.max_input_tokens,
        },
    );
    let mut not_reviewed: Vec<(String, SkipReason)> = f.skipped.clone();
    not_reviewed.extend(
        p.omitted
            .iter()
            .map(|path| (path.clone(), SkipReason::TokenBudget)),
    );
    let included: Vec<&FileDiff> = files
        .iter()
        .copied()
        .filter(|d| p.included.contains(&d.path))
        .collect();
    let (summary, accepted, dropped, usage) = if included.is_empty() {
        (
            "No file in this change could be reviewed; see the list below.".to_owned(),
            Vec::new(),
            0,
            (Some(0), Some(0)),
        )
    } else {
        let call = provider::chat(
            job.provider.kind,
            &job.provider.base_url,
            &job.provider.model,
            p.system,
            &p.user,
            job.provider.max_output_tokens,
        );
        let resp = upstream(
            "the LLM provider",
            "the review request",
            job.provider_call(&call).await,
        )?;
        let completion =
            provider::parse_chat(job.provider.kind, &resp.body).map_err(Stop::Permanent)?;
        let out = findings::parse_output(&completion.text).map_err(|_| {
            Stop::Permanent(if completion.truncated {
                "the model's answer was cut off at max_output_tokens".into()
            } else {
                "the model's answer was not the requested JSON".into()
            })
        })?;
        let (ok, dropped) = findings::validate(&out.findings, &included);
        (
            out.summary,
            ok,
            dropped.len(),
            (
                completion.input_tokens.or(Some(p.estimated_tokens)),
                completion.output_tokens,
            ),
        )
    };
    let anchors: Vec<Anchor> = accepted
        .iter()
        .filter_map(|fd| {
            included
                .iter()
                .find(|d| d.path == fd.path)
                .and_then(|d| Anchor::of(d, fd))
        })
        .collect();
    if anchors.len() != accepted.len() {
        return Err(Stop::Permanent(
            "a validated finding lost its anchor".into(),
        ));
    }
    let work = Work {
        info: f.info.clone(),
        summary,
        findings: accepted,
        anchors,
        not_reviewed,
        dropped,
    };
    let plain = serde_json::to_vec(&work)
        .map_err(|_| Stop::Permanent("could not encode the review".into()))?;
    let sealed =
        edgeplane_core::review::sealed::encode(&job.review_secret.seal_work(&job.row.id, &plain)?);
    let skipped: Vec<SkippedFile> = work
        .not_reviewed
        .iter()
        .map(|(path, reason)| SkippedFile {
            path: path.clone(),
            reason: *reason,
        })
        .collect();
    let skipped_json = serde_json::to_string(&skipped)
        .map_err(|_| Stop::Permanent("could not encode the skipped files".into()))?;
    let w = job
        .db
        .run_unaudited(
            "UPDATE reviews SET status = 'commenting', commenting_at_ms = ?, work_sealed = ?, files_changed = ?, \
             files_reviewed = ?, files_skipped = ?, chunks_indexed = ?, context_chunks = ?, embeddings_used = ?, \
             prompt_tokens = ?, completion_tokens = ?, findings_total = ?, findings_dropped = ?, skipped_files = ? \
             WHERE id = ? AND status = 'reviewing'",
            args![
                now_ms(),
                sealed,
                (f.selected.len() + f.skipped.len()) as i64,
                p.included.len() as i64,
                work.not_reviewed.len() as i64,
                ctx.chunks.len() as i64,
                p.context_chunks as i64,
                ctx.embeddings_used,
                usage.0.map(i64::from),
                usage.1.map(i64::from),
                work.findings.len() as i64,
                work.dropped as i64,
                skipped_json,
                &job.row.id
            ],
        )
        .await?;
    if w.changes != 1 {
        return Err(Stop::Gone);
    }
    Ok(work)
}

/// The dead-letter consumer's part: a review whose retries are exhausted is marked failed, with
/// the last error the worker recorded.
pub async fn dead_lettered(env: &Env, org_id: &str, review_id: &str) -> Outcome {
    let Ok(db) = Db::from_env(env) else {
        return Outcome::Retry {
            delay_seconds: retry_base(env),
        };
    };
    #[derive(Deserialize)]
    struct Last {
        error: Option<String>,
    }
    let last: Option<Last> = db
        .first(
            "SELECT error FROM reviews WHERE id = ? AND org_id = ?",
            args![review_id, org_id],
        )
        .await
        .ok()
        .flatten();
    let reason = format!(
        "retries exhausted; last error: {}",
        last.and_then(|l| l.error)
            .unwrap_or_else(|| "none recorded".into())
    );
    match finish_unsuccessful(
        env,
        &db,
        org_id,
        review_id,
        ReviewStatus::Failed,
        Some("retries_exhausted"),
        Some(&reason),
    )
    .await
    {
        Ok(()) => Outcome::Done,
        Err(_) => Outcome::Retry {
            delay_seconds: retry_base(env),
        },
    }
}
