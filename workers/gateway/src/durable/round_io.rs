//! What a round's coordinator talks to, adapted to the traits its driver is written against:
//! its aggregator shards (Durable Object stubs) and D1 (the round's end, with its audit record
//! and the devices' participations).

use edgeplane_core::audit::{Actor, AuditAction, Event, Facts};
use edgeplane_core::fl::history::{ParticipationRows, ParticipationSummary};
use edgeplane_core::fl::ledger::records::Ended;
use edgeplane_core::fl::ledger::run::{Aggregators, Registry, RemoteError, RoundEnd};
use edgeplane_core::fl::versions::NewVersion;
use edgeplane_core::fl::wire::{
    AggStatus, FoldReply, FoldRequest, PublishReply, PublishRequest, RoundConfig, StatusRequest,
};
use edgeplane_core::fl::RoundState;
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::audit::commit_with_facts;
use edgeplane_runtime::db::{Db, OrgBatch};
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

/// D1 as the coordinator writes it, and the audit sequencers it pokes after writing a round's
/// end.
pub struct D1Registry {
    pub db: Db,
    pub env: Env,
}

const TERMINAL: &str = "('published', 'insufficient_updates', 'cancelled', 'failed')";

#[derive(Deserialize)]
struct StateRow {
    state: String,
}

/// The round's coordinator, acting on its own (publication, the deadline, a failure).
const COORDINATOR: &str = "round_coordinator";

impl D1Registry {
    async fn state_in_d1(&self, cfg: &RoundConfig) -> Result<Option<String>, RemoteError> {
        let row: Option<StateRow> = self
            .db
            .first(
                "SELECT state FROM fl_rounds WHERE id = ? AND org_id = ?",
                args![cfg.round_id.as_str(), cfg.org_id.as_str()],
            )
            .await
            .map_err(remote)?;
        Ok(row.map(|r| r.state))
    }

    /// The start of a round's end: its org's writes, guarded so that only the first end of a
    /// round is ever written, with each participation's row (`fl::history`) — so the devices'
    /// history of the round is written exactly when, and as often as, its end.
    fn end_batch(
        cfg: &RoundConfig,
        participations: &[ParticipationSummary],
    ) -> Result<OrgBatch, RemoteError> {
        let round = cfg.round_id.as_str();
        let org = cfg.org_id.as_str();
        let mut batch = OrgBatch::new(org).guard(
            &format!("(SELECT state FROM fl_rounds WHERE id = ?) NOT IN {TERMINAL}"),
            args![round],
            ApiError::conflict("the round's end is already recorded"),
        );
        let chunks =
            ParticipationRows::chunks(round, org, participations).map_err(|e| RemoteError {
                message: format!("participations: {e}"),
                retry: false,
            })?;
        for values in chunks {
            batch = batch.insert_select(
                ParticipationRows::TABLE,
                ParticipationRows::COLUMNS,
                ParticipationRows::SELECT,
                values,
            );
        }
        Ok(batch)
    }

    /// Commits the end (`writes`, begun by [`D1Registry::end_batch`]) with its events, unless D1
    /// already has it: a repeat after a lost answer changes nothing. The org's audit sequencer
    /// is poked once it is written.
    async fn commit_once(
        &self,
        cfg: &RoundConfig,
        state: RoundState,
        writes: OrgBatch,
        events: Vec<Event>,
        facts: Facts,
    ) -> Result<(), RemoteError> {
        if self.state_in_d1(cfg).await?.as_deref() == Some(state.as_str()) {
            return Ok(());
        }
        match commit_with_facts(&self.env, &self.db, writes, events, facts).await {
            Ok(_) => Ok(()),
            Err(e) => {
                if self.state_in_d1(cfg).await?.as_deref() == Some(state.as_str()) {
                    return Ok(());
                }
                Err(remote(e.into()))
            }
        }
    }
}

impl Registry for D1Registry {
    async fn mirror(&self, cfg: &RoundConfig, state: RoundState) -> Result<(), RemoteError> {
        self.db
            .run_unaudited(
                &format!(
                    "UPDATE fl_rounds SET state = ? WHERE org_id = ? AND id = ? \
                     AND state NOT IN {TERMINAL}"
                ),
                args![state.as_str(), cfg.org_id.as_str(), cfg.round_id.as_str()],
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                log::warn("round state mirror", &e.message);
                remote(e)
            })
    }

    async fn record_end(
        &self,
        cfg: &RoundConfig,
        end: &RoundEnd<'_>,
        participations: &[ParticipationSummary],
    ) -> Result<(), RemoteError> {
        let round = cfg.round_id.as_str();
        let org = cfg.org_id.as_str();
        match end {
            RoundEnd::Published(v) => {
                let json = |r: serde_json::Result<String>| {
                    r.map_err(|e| RemoteError {
                        message: e.to_string(),
                        retry: false,
                    })
                };
                let version = NewVersion {
                    id: v.version_id.as_str(),
                    model_id: cfg.model_id.as_str(),
                    parent_id: Some(cfg.base_version_id.as_str()),
                    round_id: Some(round),
                    sha256: &v.sha256,
                    size_bytes: v.size as i64,
                    parameters: cfg.layout.total_elements() as i64,
                    layout: json(serde_json::to_string(&cfg.layout))?,
                    pieces: json(serde_json::to_string(&v.pieces))?,
                    aggregation: Some(v.aggregation.to_string()),
                    created_by: COORDINATOR,
                    created_at_ms: v.at_ms,
                };
                let writes = Self::end_batch(cfg, participations)?
                    .insert_select(
                        NewVersion::TABLE,
                        NewVersion::COLUMNS,
                        NewVersion::SELECT,
                        version.values(),
                    )
                    .update(
                        "fl_rounds",
                        "state = 'published', published_version_id = ?, closed_at_ms = ?",
                        args![v.version_id.as_str(), v.at_ms],
                        "id = ?",
                        args![round],
                    );
                let events = vec![
                    Event::new(AuditAction::RoundPublished, "round", round).meta(
                        serde_json::json!({
                            "model_id": cfg.model_id, "version_id": v.version_id,
                            "accepted": v.accepted, "total_samples": v.total_samples,
                            "sha256": v.sha256,
                        }),
                    ),
                    Event::new(
                        AuditAction::ModelVersionCreated,
                        "model_version",
                        v.version_id.as_str(),
                    )
                    .meta(serde_json::json!({
                        "model_id": cfg.model_id, "round_id": cfg.round_id,
                        "parent_id": cfg.base_version_id, "aggregation": v.aggregation,
                    })),
                ];
                let facts = Facts::system(COORDINATOR, org);
                self.commit_once(cfg, RoundState::Published, writes, events, facts)
                    .await
            }
            RoundEnd::Other { ended, at_ms } => {
                let (state, failure, action, metadata, facts) = match ended {
                    Ended::Cancelled {
                        previous,
                        requester,
                    } => (
                        RoundState::Cancelled,
                        None,
                        AuditAction::RoundCancelled,
                        serde_json::json!({"previous_state": previous.as_str()}),
                        // On the request of whoever cancelled, recorded with the cancel.
                        Facts {
                            actor: Actor {
                                kind: requester.actor_type.clone(),
                                id: requester.actor_id.clone(),
                            },
                            org_id: Some(org.to_owned()),
                            ip: requester.ip.clone(),
                            user_agent: requester.user_agent.clone(),
                            request_id: requester.request_id.clone(),
                        },
                    ),
                    Ended::InsufficientUpdates { accepted } => (
                        RoundState::InsufficientUpdates,
                        None,
                        AuditAction::RoundInsufficientUpdates,
                        serde_json::json!({"accepted": accepted, "min": cfg.min}),
                        Facts::system(COORDINATOR, org),
                    ),
                    Ended::Failed { failure, detail } => (
                        RoundState::Failed,
                        Some(failure.as_str()),
                        AuditAction::RoundFailed,
                        serde_json::json!({"failure": failure.as_str(), "detail": detail}),
                        Facts::system(COORDINATOR, org),
                    ),
                    Ended::Published { .. } => return Ok(()),
                };
                let writes = Self::end_batch(cfg, participations)?.update(
                    "fl_rounds",
                    "state = ?, failure = ?, closed_at_ms = ?",
                    args![state.as_str(), failure, *at_ms],
                    "id = ?",
                    args![round],
                );
                let event = Event::new(action, "round", round).meta(metadata);
                self.commit_once(cfg, state, writes, vec![event], facts)
                    .await
            }
        }
    }
}
