//! What a round's coordinator talks to, adapted to the traits its driver is written against:
//! its aggregator shards (Durable Object stubs) and D1 (the round's end, with its audit record).

use edgeplane_core::audit::{Actor, NewEvent};
use edgeplane_core::fl::ledger::records::Ended;
use edgeplane_core::fl::ledger::run::{Aggregators, Registry, RemoteError, RoundEnd};
use edgeplane_core::fl::wire::{
    AggStatus, FoldReply, FoldRequest, PublishReply, PublishRequest, RoundConfig, StatusRequest,
};
use edgeplane_core::fl::RoundState;
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::db::{Db, Stmt};
use edgeplane_runtime::{args, log};
use serde::Deserialize;
use worker::Env;

use crate::clients::round::ShardClient;

fn remote(e: ApiError) -> RemoteError {
    RemoteError {
        retry: matches!(e.code, ErrorCode::Unavailable | ErrorCode::Internal),
        message: format!("{}: {}", e.code.as_str(), e.message),
    }
}

/// The round's shards, by their object names.
pub struct StubShards {
    pub env: Env,
    pub cfg: RoundConfig,
}

impl StubShards {
    fn shard(&self, k: usize) -> Result<ShardClient, RemoteError> {
        ShardClient::for_shard(&self.env, &self.cfg, k).map_err(remote)
    }
}

impl Aggregators for StubShards {
    async fn status(&self, k: usize, req: &StatusRequest) -> Result<AggStatus, RemoteError> {
        self.shard(k)?.status(req).await.map_err(remote)
    }

    async fn fold(&self, k: usize, req: &FoldRequest) -> Result<FoldReply, RemoteError> {
        self.shard(k)?.fold(req).await.map_err(remote)
    }

    async fn publish(&self, k: usize, req: &PublishRequest) -> Result<PublishReply, RemoteError> {
        self.shard(k)?.publish(req).await.map_err(remote)
    }

    async fn drop_all(&self, k: usize) -> Result<(), RemoteError> {
        self.shard(k)?.drop_all().await.map_err(remote)
    }
}

/// D1 as the coordinator writes it.
pub struct D1Registry {
    pub db: Db,
}

const TERMINAL: &str = "('published', 'insufficient_updates', 'cancelled', 'failed')";

#[derive(Deserialize)]
struct StateRow {
    state: String,
}

fn event(
    cfg: &RoundConfig,
    actor: Actor,
    action: &str,
    resource: (&str, &str),
    metadata: serde_json::Value,
) -> NewEvent {
    NewEvent {
        chain: cfg.org_id.to_string(),
        org_id: Some(cfg.org_id.to_string()),
        actor,
        action: action.into(),
        resource_type: resource.0.into(),
        resource_id: resource.1.into(),
        ip: None,
        user_agent: None,
        request_id: None,
        metadata,
    }
}

fn coordinator() -> Actor {
    Actor::system("round_coordinator")
}

impl D1Registry {
    async fn state_in_d1(&self, cfg: &RoundConfig) -> Result<Option<String>, RemoteError> {
        let row: Option<StateRow> = self
            .db
            .first(
                "SELECT state FROM fl_rounds WHERE id = ?",
                args![cfg.round_id.as_str()],
            )
            .await
            .map_err(remote)?;
        Ok(row.map(|r| r.state))
    }

    /// Commits the end unless D1 already has it: a repeat after a lost answer changes nothing.
    async fn commit_once(
        &self,
        cfg: &RoundConfig,
        state: RoundState,
        stmts: Vec<Stmt>,
        events: Vec<NewEvent>,
        at_ms: i64,
    ) -> Result<(), RemoteError> {
        if self.state_in_d1(cfg).await?.as_deref() == Some(state.as_str()) {
            return Ok(());
        }
        let mut all = vec![Stmt::guard(
            &format!("(SELECT state FROM fl_rounds WHERE id = ?) NOT IN {TERMINAL}"),
            args![cfg.round_id.as_str()],
            ApiError::conflict("the round's end is already recorded"),
        )];
        all.extend(stmts);
        match self.db.commit_audited(all, events, at_ms).await {
            Ok(_) => Ok(()),
            Err(e) => {
                if self.state_in_d1(cfg).await?.as_deref() == Some(state.as_str()) {
                    return Ok(());
                }
                Err(remote(e))
            }
        }
    }
}

impl Registry for D1Registry {
    async fn mirror(&self, cfg: &RoundConfig, state: RoundState) -> Result<(), RemoteError> {
        self.db
            .run_unaudited(
                &format!("UPDATE fl_rounds SET state = ? WHERE id = ? AND state NOT IN {TERMINAL}"),
                args![state.as_str(), cfg.round_id.as_str()],
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                log::warn("round state mirror", &e.message);
                remote(e)
            })
    }

    async fn record_end(&self, cfg: &RoundConfig, end: &RoundEnd<'_>) -> Result<(), RemoteError> {
        let round = cfg.round_id.as_str();
        match end {
            RoundEnd::Published(v) => {
                let json = |r: serde_json::Result<String>| {
                    r.map_err(|e| RemoteError {
                        message: e.to_string(),
                        retry: false,
                    })
                };
                let stmts = vec![
                    Stmt::new(
                        "INSERT INTO fl_model_versions (id, org_id, model_id, version, parent_id, round_id, \
                         status, sha256, size_bytes, parameters, layout, pieces, aggregation, created_by, \
                         created_at_ms) SELECT ?, ?, ?, coalesce(max(version), 0) + 1, ?, ?, 'ready', ?, ?, \
                         ?, ?, ?, ?, ?, ? FROM fl_model_versions WHERE model_id = ?",
                        args![
                            v.version_id.as_str(),
                            cfg.org_id.as_str(),
                            cfg.model_id.as_str(),
                            cfg.base_version_id.as_str(),
                            round,
                            v.sha256.as_str(),
                            v.size as i64,
                            cfg.layout.total_elements() as i64,
                            json(serde_json::to_string(&cfg.layout))?,
                            json(serde_json::to_string(&v.pieces))?,
                            v.aggregation.to_string(),
                            "round_coordinator",
                            v.at_ms,
                            cfg.model_id.as_str()
                        ],
                    ),
                    Stmt::new(
                        "UPDATE fl_rounds SET state = 'published', published_version_id = ?, closed_at_ms = ? \
                         WHERE id = ?",
                        args![v.version_id.as_str(), v.at_ms, round],
                    ),
                ];
                let events = vec![
                    event(
                        cfg,
                        coordinator(),
                        "round.published",
                        ("round", round),
                        serde_json::json!({
                            "model_id": cfg.model_id, "version_id": v.version_id,
                            "accepted": v.accepted, "total_samples": v.total_samples,
                            "sha256": v.sha256,
                        }),
                    ),
                    event(
                        cfg,
                        coordinator(),
                        "model_version.created",
                        ("model_version", v.version_id.as_str()),
                        serde_json::json!({
                            "model_id": cfg.model_id, "round_id": cfg.round_id,
                            "parent_id": cfg.base_version_id, "aggregation": v.aggregation,
                        }),
                    ),
                ];
                self.commit_once(cfg, RoundState::Published, stmts, events, v.at_ms)
                    .await
            }
            RoundEnd::Other { ended, at_ms } => {
                let (state, failure, actor, action, metadata, facts) = match ended {
                    Ended::Cancelled {
                        previous,
                        requester,
                    } => (
                        RoundState::Cancelled,
                        None,
                        Actor {
                            kind: requester.actor_type.clone(),
                            id: requester.actor_id.clone(),
                        },
                        "round.cancelled",
                        serde_json::json!({"previous_state": previous.as_str()}),
                        Some(requester),
                    ),
                    Ended::InsufficientUpdates { accepted } => (
                        RoundState::InsufficientUpdates,
                        None,
                        coordinator(),
                        "round.insufficient_updates",
                        serde_json::json!({"accepted": accepted, "min": cfg.min}),
                        None,
                    ),
                    Ended::Failed { failure, detail } => (
                        RoundState::Failed,
                        Some(failure.as_str()),
                        coordinator(),
                        "round.failed",
                        serde_json::json!({"failure": failure.as_str(), "detail": detail}),
                        None,
                    ),
                    Ended::Published { .. } => return Ok(()),
                };
                let mut ev = event(cfg, actor, action, ("round", round), metadata);
                if let Some(r) = facts {
                    ev.ip = r.ip.clone();
                    ev.user_agent = r.user_agent.clone();
                    ev.request_id = r.request_id.clone();
                }
                let stmts = vec![Stmt::new(
                    "UPDATE fl_rounds SET state = ?, failure = ?, closed_at_ms = ? WHERE id = ?",
                    args![state.as_str(), failure, *at_ms, round],
                )];
                self.commit_once(cfg, state, stmts, vec![ev], *at_ms).await
            }
        }
    }
}
