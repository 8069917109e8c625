//! Scheduled maintenance. Each task is idempotent and bounded, so a missed or doubled run is
//! harmless; each run is recorded in `cron_runs` (visible in `/healthz`).

use edgeplane_core::fl::history::{self, HeartbeatHourRow};
use edgeplane_core::ids::new_id;
use serde_json::json;
use worker::Env;

use crate::audit;
use crate::http::ctx::now_ms;
use crate::http::log;
use edgeplane_core::audit::sql as audit_sql;
use edgeplane_runtime::args;
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

    let finished = now_ms();
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
}
