//! Services of the core area: first-run setup, organizations, queue probes, the audit key.

use edgeplane_core::audit::checkpoint::origin;
use edgeplane_core::audit::retention::RetentionDays;
use edgeplane_core::audit::{Actor, AuditAction, Event, PLATFORM_CHAIN};
use edgeplane_core::auth::credential::{mint, CredentialKind};
use edgeplane_core::auth::{Role, Scope, Scopes};
use edgeplane_core::ids::{ApiKeyId, OrgId, ProbeId, TypedId, UserId};
use edgeplane_core::queue::ReviewQueueMessage;
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::views::core::{
    AccessView, AuditRetentionView, CheckView, CheckpointKeyView, CronView, HealthChecks,
    HealthView, OrgView, OrgWithAccess, ProbeQueued, ProbeView, SetupKey, SetupOrg, SetupOwner,
    SetupView,
};
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::{OrgBatch, Stmt};
use serde::Deserialize;
use serde_json::json;

use crate::audit;
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::http::log;
use crate::service::access::api_keys::{insert_key, NewKeyRow};

/// What first-run setup creates.
pub struct SetupRequest {
    pub org_name: String,
    pub org_slug: String,
    pub owner_email: String,
}

/// Creates the first organization, its owner and an owner API key, once: a guard in the batch
/// refuses when any organization exists.
pub async fn setup(cx: &Cx<'_>, req: SetupRequest) -> Result<SetupView, ApiError> {
    let now = now_ms();
    let org_id = OrgId::generate(now)?;
    let user_id = UserId::generate(now)?;
    let key_id = ApiKeyId::generate(now)?;
    let key = mint(CredentialKind::ApiKey)?;
    // Every scope but `scim`, which a key holds alone (`Scopes::validate_scim_only`).
    let scopes = Scopes::all().without(Scope::Scim);
    let SetupRequest {
        org_name: name,
        org_slug: slug,
        owner_email: email,
    } = req;
    // The org does not exist before this batch: its rows are written as the platform's.
    let stmts = vec![
        Stmt::guard(
            "NOT EXISTS (SELECT 1 FROM orgs)",
            args![],
            ApiError::new(ErrorCode::Conflict, "this deployment is already set up"),
        ),
        Stmt::new(
            "INSERT INTO users (id, email, display_name, created_at_ms) VALUES (?, ?, NULL, ?)",
            args![user_id.as_str(), &email, now],
        ),
        Stmt::new(
            "INSERT INTO orgs (id, slug, name, created_at_ms, created_by) VALUES (?, ?, ?, ?, ?)",
            args![org_id.as_str(), &slug, &name, now, user_id.as_str()],
        ),
    ];
    let org_writes = insert_key(
        OrgBatch::new(org_id.as_str()).insert(
            "memberships",
            &["user_id", "role", "created_at_ms"],
            args![user_id.as_str(), Role::Owner.as_str(), now],
        ),
        &NewKeyRow {
            id: &key_id,
            name: "setup owner key",
            key: &key,
            scopes,
            created_by: Some(user_id.as_str()),
            created_at_ms: now,
            expires_at_ms: None,
            rotated_from: None,
        },
    );
    let mut all = stmts;
    all.extend(org_writes.into_stmts());
    let actor = Actor::system("setup");
    let events = [
        Event::new(AuditAction::OrgCreated, "org", org_id.as_str())
            .by(actor.clone())
            .in_org(org_id.as_str())
            .meta(json!({"slug": slug, "name": name, "owner_user_id": user_id, "via": "setup"})),
        Event::new(AuditAction::ApiKeyCreated, "api_key", key_id.as_str())
            .by(actor)
            .in_org(org_id.as_str())
            .meta(json!({"name": "setup owner key", "scopes": scopes.names()})),
    ];
    cx.commit(all, events).await?;
    Ok(SetupView {
        org: SetupOrg {
            id: org_id,
            slug,
            name,
        },
        owner: SetupOwner { id: user_id, email },
        api_key: SetupKey {
            id: key_id,
            key: key.plaintext,
            hint: key.hint,
            scopes,
        },
    })
}

#[derive(Deserialize)]
struct OrgRow {
    id: String,
    slug: String,
    name: String,
    created_at_ms: i64,
    audit_retention_days: i64,
}

/// The org the request acts in, and the caller's standing there.
pub async fn get_org(cx: &Cx<'_>) -> Result<OrgWithAccess, ApiError> {
    let access = cx.org()?;
    let row: OrgRow = cx
        .db()
        .first(
            "SELECT id, slug, name, created_at_ms, audit_retention_days FROM orgs \
             WHERE id = ? AND deleted_at_ms IS NULL",
            args![&access.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    Ok(OrgWithAccess {
        org: OrgView {
            id: OrgId::parse(&row.id).map_err(|_| ApiError::internal())?,
            slug: row.slug,
            name: row.name,
            created_at: rfc3339_millis(row.created_at_ms),
            audit_retention_days: row.audit_retention_days,
        },
        access: AccessView {
            role: access.role,
            scopes: access.scopes,
        },
    })
}

/// Sets how long the org keeps its audit events (owners only: the route's access rule). The
/// change and its `audit.retention_changed` event (old and new value) are one batch; the cron
/// applies the new retention on its next run.
pub async fn set_audit_retention(
    cx: &Cx<'_>,
    days: RetentionDays,
) -> Result<AuditRetentionView, ApiError> {
    let org = get_org(cx).await?.org;
    let writes =
        OrgBatch::new(org.id.as_str()).update_org("audit_retention_days = ?", args![days.days()]);
    let event = Event::new(AuditAction::AuditRetentionChanged, "org", org.id.as_str())
        .meta(json!({"old_days": org.audit_retention_days, "new_days": days.days()}));
    cx.commit(writes, [event]).await?;
    Ok(AuditRetentionView {
        audit_retention_days: days.days(),
    })
}

fn check<T, E>(r: Result<T, E>, what: &str) -> CheckView {
    CheckView {
        ok: r.is_ok(),
        detail: r.is_err().then(|| what.to_owned()),
    }
}

#[derive(Deserialize)]
struct LastCron {
    finished_at_ms: Option<i64>,
}

/// The deployment's health, as `/healthz` reports it and the console's overview shows it: really
/// touches D1, a Durable Object, R2 and the queue binding (without enqueueing), and reads when
/// the last cron run finished.
pub async fn health(cx: &Cx<'_>) -> HealthView {
    let d1 = cx
        .db()
        .first::<serde_json::Value>("SELECT 1 AS ok", args![])
        .await;
    let last_cron = cx
        .db()
        .first::<LastCron>(
            "SELECT finished_at_ms FROM cron_runs ORDER BY started_at_ms DESC LIMIT 1",
            args![],
        )
        .await
        .ok()
        .flatten()
        .and_then(|r| r.finished_at_ms);
    let durable = ping_durable_object(cx).await;
    let r2 = match cx.env.bucket("MODELS") {
        Ok(b) => b.head("__healthz").await.map(|_| ()),
        Err(e) => Err(e),
    };
    let queue = cx.env.queue("REVIEW_QUEUE").map(|_| ());
    let checks = HealthChecks {
        d1: check(d1, "D1 query failed"),
        durable_object: check(durable, "Durable Object did not answer"),
        r2: check(r2, "R2 head failed"),
        queue: check(queue, "queue binding missing"),
    };
    HealthView {
        status: if checks.all_ok() { "ok" } else { "degraded" }.into(),
        checks,
        cron: CronView {
            last_run_finished_at_ms: last_cron,
        },
    }
}

async fn ping_durable_object(cx: &Cx<'_>) -> worker::Result<()> {
    let stub = cx
        .env
        .durable_object("RATE_LIMITER")?
        .get_by_name("__healthz")?;
    let resp = stub.fetch_with_str("https://rate-limiter/ping").await?;
    if resp.status_code() == 200 {
        Ok(())
    } else {
        Err(worker::Error::RustError(
            "durable object ping failed".into(),
        ))
    }
}

/// More than the queue's `max_retries` can fail, which is the point: it proves dead-lettering.
pub const MAX_FAIL_TIMES: u32 = 20;

/// Sends a queue probe along the review jobs' path; it fails its first `fail_times` deliveries.
pub async fn create_probe(cx: &Cx<'_>, fail_times: u32) -> Result<ProbeQueued, ApiError> {
    if fail_times > MAX_FAIL_TIMES {
        return Err(ApiError::validation(format!(
            "fail_times must be at most {MAX_FAIL_TIMES}"
        )));
    }
    let org_id = cx.org()?.org_id.clone();
    let now = now_ms();
    let id = ProbeId::generate(now)?;
    let batch = OrgBatch::new(&org_id).insert(
        "queue_probes",
        &["id", "status", "fail_times", "attempts", "created_at_ms"],
        args![id.as_str(), "queued", fail_times, 0i64, now],
    );
    let event = Event::new(AuditAction::QueueProbeCreated, "queue_probe", id.as_str())
        .meta(json!({"fail_times": fail_times}));
    cx.commit(batch, [event]).await?;

    let msg = ReviewQueueMessage::Probe {
        org_id: org_id.clone(),
        probe_id: id.to_string(),
    };
    let sent = match cx.env.queue("REVIEW_QUEUE") {
        Ok(q) => q.send(&msg).await,
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        log::error("enqueue probe", &e.to_string());
        let _ = cx
            .db()
            .run_unaudited(
                "UPDATE queue_probes SET status = 'enqueue_failed' WHERE id = ? AND org_id = ?",
                args![id.as_str(), &org_id],
            )
            .await;
        return Err(
            ApiError::new(ErrorCode::Unavailable, "the queue did not accept the job")
                .with_retry_after(5),
        );
    }
    Ok(ProbeQueued {
        id,
        status: "queued".into(),
        fail_times,
    })
}

#[derive(Deserialize)]
struct ProbeRow {
    id: String,
    status: String,
    fail_times: i64,
    attempts: i64,
    created_at_ms: i64,
    processed_at_ms: Option<i64>,
    last_error: Option<String>,
}

pub async fn get_probe(cx: &Cx<'_>, id: &ProbeId) -> Result<ProbeView, ApiError> {
    let p: ProbeRow = cx
        .db()
        .first(
            "SELECT id, status, fail_times, attempts, created_at_ms, processed_at_ms, last_error \
             FROM queue_probes WHERE id = ? AND org_id = ?",
            args![id.as_str(), &cx.org()?.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("queue probe"))?;
    Ok(ProbeView {
        id: ProbeId::parse(&p.id).map_err(|_| ApiError::internal())?,
        status: p.status,
        fail_times: p.fail_times,
        attempts: p.attempts,
        created_at: rfc3339_millis(p.created_at_ms),
        processed_at: p.processed_at_ms.map(rfc3339_millis),
        last_error: p.last_error,
    })
}

/// The audit checkpoint key, published so checkpoints can be verified without this deployment.
pub fn checkpoint_key(cx: &Cx<'_>) -> Result<CheckpointKeyView, ApiError> {
    let signer = audit::signer(&cx.cfg.root);
    let platform = audit::verifier(cx, PLATFORM_CHAIN)?;
    Ok(CheckpointKeyView {
        algorithm: "ed25519".into(),
        public_key: signer.public_key_base64(),
        origin_prefix: origin(&cx.cfg.issuer, ""),
        platform_verifier_key: platform.to_string(),
    })
}
