//! Scheduled maintenance. Each task is idempotent and bounded, so a missed or doubled run is
//! harmless; each run is recorded in `cron_runs` (visible in `/healthz`).

use edgeplane_core::fl::history::{self, HeartbeatHourRow};
use edgeplane_core::ids::new_id;
use serde_json::json;
use worker::Env;

use crate::audit;
use crate::config;
use crate::http::ctx::now_ms;
use crate::http::log;
use edgeplane_core::audit::checkpoint::{origin, CheckpointError};
use edgeplane_core::audit::retention::{self, Anchor, PruneError, RetentionDays};
use edgeplane_core::audit::sql as audit_sql;
use edgeplane_core::audit::{AuditAction, Event, Facts};
use edgeplane_core::store::StoreError;
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::audit::commit_with_facts;
use edgeplane_runtime::db::{Db, Stmt};

/// Queue probes are diagnostics; a week is plenty to look at one.
const PROBE_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// Spent or expired one-time sign-in artifacts are kept a day for investigation, then deleted.
const SIGNIN_ARTIFACT_RETENTION_MS: i64 = 24 * 3600 * 1000;
/// Sessions revoked (or past their longest lifetime) this long ago are deleted with their
/// refresh tokens; the audit log keeps their history.
const DEAD_SESSION_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;
/// The longest any session lives (CLI tokens: a year).
const LONGEST_SESSION_MS: i64 = 365 * 24 * 3600 * 1000;

/// Chains with events still waiting (a poke lost with its isolate, or one that failed, or a
/// sequencer run that failed) are sequenced here, at most this many per run.
const AUDIT_CHAINS_PER_RUN: i64 = 100;

async fn sequence_audit_chains(env: &Env, db: &Db) -> serde_json::Value {
    let rows = match db
        .rows(audit_sql::PENDING_CHAINS, args![AUDIT_CHAINS_PER_RUN])
        .await
    {
        Ok(rows) => rows,
        Err(_) => return json!({"error": true}),
    };
    let chains: Vec<String> = rows.iter().filter_map(|r| r.get(0).ok()).collect();
    futures_util::future::join_all(chains.iter().map(|c| audit::sync(env, c))).await;
    json!({"ok": true, "chains": chains.len()})
}

/// Why one org's chain was not pruned this run (logged; the next run tries again).
#[derive(Debug)]
enum PruneFailure {
    /// The stored retention is outside the documented bounds (written behind the API's back).
    Retention(i64),
    /// The stored anchor does not verify under this deployment's key.
    ForgedAnchor(CheckpointError),
    /// A link in the prefix does not verify: anchoring over it would hide the tampering.
    Broken(PruneError),
    Sign(CheckpointError),
    Row(StoreError),
    Db(String),
}

impl std::fmt::Display for PruneFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Retention(d) => write!(f, "stored retention of {d} days is out of bounds"),
            Self::ForgedAnchor(e) => write!(f, "the stored anchor does not verify: {e}"),
            Self::Broken(e) => write!(f, "{e}"),
            Self::Sign(e) => write!(f, "could not sign the anchor: {e}"),
            Self::Row(e) => write!(f, "audit row: {e}"),
            Self::Db(e) => write!(f, "d1: {e}"),
        }
    }
}

fn db_failure(e: impl std::fmt::Debug) -> PruneFailure {
    PruneFailure::Db(format!("{e:?}"))
}

/// Deletes each org's audit events older than its retention (`audit::retention`), at most
/// [`retention::PRUNE_BATCH`] events in each of at most [`retention::ORGS_PER_RUN`] orgs per
/// run; a longer backlog is worked off by later runs.
async fn prune_audit_chains(env: &Env, db: &Db, now: i64) -> serde_json::Value {
    let Ok(cfg) = config::load(env) else {
        return json!({"error": true});
    };
    let rows = match db
        .rows(
            retention::ORGS_TO_PRUNE,
            args![now, retention::ORGS_PER_RUN],
        )
        .await
    {
        Ok(rows) => rows,
        Err(_) => return json!({"error": true}),
    };
    let (mut orgs, mut events, mut failed) = (0u64, 0u64, 0u64);
    for row in &rows {
        let (Ok(org), Ok(days)) = (row.get::<String>(0), row.get::<i64>(1)) else {
            failed += 1;
            continue;
        };
        match prune_chain(env, db, &cfg, &org, days, now).await {
            Ok(0) => {}
            Ok(n) => {
                orgs += 1;
                events += n;
            }
            Err(e) => {
                failed += 1;
                log::error("audit prune", &format!("{org}: {e}"));
            }
        }
    }
    json!({"ok": failed == 0, "orgs": orgs, "events": events, "failed": failed})
}

/// Prunes one org's chain: verifies the old prefix from the current anchor, signs the anchor
/// of the new prefix, and in one batch stores it, deletes the events and checkpoints it covers
/// and records `audit.pruned` (with the count and the anchor). A guard makes a second,
/// concurrent run of the same prune change nothing.
async fn prune_chain(
    env: &Env,
    db: &Db,
    cfg: &config::Config,
    org: &str,
    days: i64,
    now: i64,
) -> Result<u64, PruneFailure> {
    let retention = RetentionDays::new(days).map_err(|_| PruneFailure::Retention(days))?;
    let signer = audit::signer(&cfg.root);
    let origin = origin(&cfg.issuer, org);
    let key = signer.verifier(&origin).map_err(PruneFailure::Sign)?;
    let start = match audit::anchor_note(db, org).await.map_err(db_failure)? {
        Some(note) => Some(Anchor::open(&key, &note).map_err(PruneFailure::ForgedAnchor)?),
        None => None,
    };
    let after = start.as_ref().map_or(0, |a| a.head.seq);
    let head_rows = db
        .rows(audit_sql::SELECT_HEAD, args![org])
        .await
        .map_err(db_failure)?;
    let head = audit_sql::head_from_rows(&head_rows).map_err(PruneFailure::Row)?;
    let rows = db
        .rows(
            audit_sql::EVENTS_AFTER,
            args![org, after, retention::PRUNE_BATCH],
        )
        .await
        .map_err(db_failure)?;
    let oldest = rows
        .iter()
        .map(audit_sql::event_from_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(PruneFailure::Row)?;
    let plan = retention::plan(
        start.as_ref().map(|a| &a.head),
        &oldest,
        head.seq,
        retention.cutoff_ms(now),
    )
    .map_err(PruneFailure::Broken)?;
    let Some(prune) = plan else {
        return Ok(0);
    };
    let anchor = Anchor::sign(&signer, &origin, &prune.through).map_err(PruneFailure::Sign)?;
    let mut stmts = vec![Stmt::guard(
        "EXISTS (SELECT 1 FROM audit_events WHERE chain = ? AND seq = ?)",
        args![org, prune.through.seq],
        ApiError::conflict("this prefix was already pruned"),
    )];
    stmts.extend(
        retention::prune_statements(org, &anchor, now)
            .into_iter()
            .map(Stmt::from),
    );
    let event = Event::new(AuditAction::AuditPruned, "org", org)
        .in_org(org)
        .meta(json!({
            "count": prune.count,
            "retention_days": retention.days(),
            "anchor": {
                "size": anchor.head.seq,
                "head_hash": anchor.head.hash,
                "note": anchor.note,
            },
        }));
    // The audit tables are not an org's rows (no org_id to bind): the writes are unscoped, and
    // the event names its org itself.
    let facts = Facts::system_unscoped("cron");
    commit_with_facts(env, db, stmts, [event], facts)
        .await
        .map_err(db_failure)?;
    Ok(prune.count)
}

pub async fn run(env: &Env, cron: &str) {
    let Ok(db) = Db::from_env(env) else {
        log::error("cron", "no D1 binding");
        return;
    };
    let started = now_ms();
    let Ok(run_id) = new_id("crn", started) else {
        return;
    };
    let mut tasks = serde_json::Map::new();

    let cutoff = started - SIGNIN_ARTIFACT_RETENTION_MS;
    let dead = started - DEAD_SESSION_RETENTION_MS;
    let ancient = started - LONGEST_SESSION_MS - DEAD_SESSION_RETENTION_MS;
    let plan: Vec<(&str, Vec<Stmt>)> = vec![
        (
            "prune_queue_probes",
            vec![Stmt::new(
                "DELETE FROM queue_probes WHERE created_at_ms < ?",
                args![started - PROBE_RETENTION_MS],
            )],
        ),
        (
            "prune_identity",
            vec![
                Stmt::new("DELETE FROM magic_links WHERE expires_at_ms < ?", args![cutoff]),
                Stmt::new("DELETE FROM signin_flows WHERE expires_at_ms < ?", args![cutoff]),
                Stmt::new(
                    "DELETE FROM device_codes WHERE expires_at_ms < ? AND (session_id IS NULL OR \
                     session_id IN (SELECT id FROM sessions WHERE revoked_at_ms < ?))",
                    args![cutoff, dead],
                ),
                Stmt::new("DELETE FROM email_outbox WHERE created_at_ms < ?", args![cutoff]),
                Stmt::new(
                    "DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE \
                     revoked_at_ms < ? OR created_at_ms < ?)",
                    args![dead, ancient],
                ),
                Stmt::new(
                    "DELETE FROM sessions WHERE (revoked_at_ms < ? OR created_at_ms < ?) AND id NOT IN \
                     (SELECT session_id FROM device_codes WHERE session_id IS NOT NULL)",
                    args![dead, ancient],
                ),
            ],
        ),
        (
            // A device's heartbeat timeline keeps its last 168 hours (`fl::history`).
            "prune_heartbeat_hours",
            vec![Stmt::new(
                HeartbeatHourRow::PRUNE,
                args![
                    history::window_start(started),
                    HeartbeatHourRow::PRUNE_LIMIT
                ],
            )],
        ),
        (
            // As long as the webhook inboxes remember delivery ids for de-duplication.
            "prune_webhook_deliveries",
            vec![Stmt::new(
                "DELETE FROM webhook_deliveries WHERE received_at_ms < ?",
                args![started - edgeplane_core::webhook::inbox::RETENTION_MS],
            )],
        ),
    ];
    for (name, stmts) in plan {
        let outcome = match db.batch_unaudited(stmts).await {
            Ok(()) => json!({"ok": true}),
            Err(_) => json!({"error": true}),
        };
        tasks.insert(name.into(), outcome);
    }
    tasks.insert(
        "sequence_audit_chains".into(),
        sequence_audit_chains(env, &db).await,
    );
    tasks.insert(
        "prune_audit_chains".into(),
        prune_audit_chains(env, &db, started).await,
    );
    // The run is recorded (and logged) before the export jobs: a job is the one task that may
    // use up the invocation's CPU limit, and an isolate killed there must not take the record
    // of everything else this run did with it.
    let finished = now_ms();
    tasks.insert("audit_export_jobs".into(), json!({"pending": true}));
    let record = db
        .run_unaudited(
            "INSERT INTO cron_runs (id, cron, started_at_ms, finished_at_ms, tasks) \
             VALUES (?, ?, ?, ?, ?)",
            args![
                &run_id,
                cron,
                started,
                finished,
                serde_json::Value::Object(tasks.clone()).to_string()
            ],
        )
        .await;
    if record.is_err() {
        log::error("cron", "could not record the run");
    }
    log::info(
        "cron run",
        json!({"cron": cron, "tasks": tasks, "duration_ms": finished - started}),
    );

    // After the chains are sequenced, so a job's snapshot holds what was committed before it.
    let exports = crate::service::access::export_jobs::run_cron(env, &db, started).await;
    let done = now_ms();
    let updated = db
        .run_unaudited(
            "UPDATE cron_runs SET tasks = json_set(tasks, '$.audit_export_jobs', json(?)) \
             WHERE id = ?",
            args![exports.to_string(), &run_id],
        )
        .await;
    if updated.is_err() {
        log::error("cron", "could not record the export jobs' outcome");
    }
    log::info(
        "cron export jobs",
        json!({"cron": cron, "audit_export_jobs": exports, "duration_ms": done - finished}),
    );
}
