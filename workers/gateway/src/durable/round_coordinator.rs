//! `RoundCoordinator`: one object per training round. It owns the round's state (participants,
//! uploads, counts) in its SQLite storage and drives the round's aggregators.
//!
//! The path of an update: the device initiates an upload (a row here), PUTs parts (the gateway
//! stages them in R2 and reports each here), and completes. The gateway then streams the staged
//! bytes through the validator and reports the verdict; acceptance assigns the update the next
//! sequence number and records its weight in one synchronous (atomic) write. The *pump* folds
//! accepted updates into every aggregator shard in sequence order; an accepted update's staged
//! bytes are deleted only once every shard has checkpointed past it. At quorum, or at the
//! deadline (a Durable Object alarm), the round publishes: each shard writes its slice of the new
//! version, this object adds the header, hashes the result and records it in D1.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Range;
use std::rc::Rc;

use edgeplane_core::audit::{Actor, NewEvent};
use edgeplane_core::fl::aggregate::clip_scale;
use edgeplane_core::fl::layout::ModelLayout;
use edgeplane_core::fl::participation::{
    decide_initiate, decide_join, decide_part, part_count, JoinDecision, Participation,
    ParticipationState, RoundView, UploadState,
};
use edgeplane_core::fl::round::{
    closing, AggregationSpec, Closing, MetricMeans, Quorum, RejectReason, RoundState,
};
use edgeplane_core::fl::safetensors::encode_header;
use edgeplane_core::fl::shard::segments;
use edgeplane_core::fl::validate::{max_upload_size, UpdateMeta, UpdateSource, Validated};
use edgeplane_core::ids::new_id;
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::db::{Db, Stmt};
use edgeplane_runtime::{args, log};
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State, Storage,
};

use super::round_aggregator::{
    AggStatus, FoldReply, FoldRequest, FoldSource, NoiseSpec, PublishReply, PublishRequest,
    StatusRequest,
};
use super::rpc::{call, reply};
use super::sql::{self, int, real, text};
use crate::http::ctx::now_ms;
use crate::routes::federation::blob::{self, Piece};

/// Everything a round needs to run, fixed at creation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundConfig {
    pub round_id: String,
    pub org_id: String,
    pub model_id: String,
    pub base_version_id: String,
    pub base_version: i64,
    pub plan_id: String,
    pub layout: ModelLayout,
    pub base_pieces: Vec<Piece>,
    pub base_tensor_starts: Vec<u64>,
    pub shards: Vec<(u64, u64)>,
    pub target: u32,
    pub min: u32,
    pub max: u32,
    pub deadline_at_ms: i64,
    pub aggregation: AggregationSpec,
}

impl RoundConfig {
    fn quorum(&self) -> Result<Quorum> {
        Quorum::new(self.target, self.min, self.max)
            .map_err(|e| worker::Error::RustError(e.message))
    }

    fn shard_ranges(&self) -> Vec<Range<u64>> {
        self.shards.iter().map(|(a, b)| *a..*b).collect()
    }

    pub fn shard_starts(&self) -> Vec<u64> {
        self.shards.iter().map(|(a, _)| *a).collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub participation_id: String,
    pub device_id: String,
    pub capabilities: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinReply {
    pub participation_id: String,
    pub state: ParticipationState,
    pub joined_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitiateRequest {
    pub upload_id: String,
    pub participation_id: String,
    pub device_id: String,
    pub meta: UpdateMeta,
    pub part_count: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitiateReply {
    pub upload_id: String,
    pub parts: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartRequest {
    pub upload_id: String,
    pub part: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartDone {
    pub upload_id: String,
    pub part: u32,
    pub key: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompleteBegin {
    pub upload_id: String,
    pub device_id: String,
    pub meta: Option<UpdateMeta>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Accepted {
        participation_id: String,
        seq: i64,
        sample_count: i64,
    },
    Rejected {
        reason: RejectReason,
        message: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "next", rename_all = "snake_case")]
pub enum CompleteBeginReply {
    Validate {
        meta: UpdateMeta,
        pieces: Vec<Piece>,
        layout: ModelLayout,
        shard_starts: Vec<u64>,
    },
    Done {
        outcome: Outcome,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompleteFinish {
    pub upload_id: String,
    pub verdict: std::result::Result<Validated, (RejectReason, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRequest {
    pub device_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub state: RoundState,
    pub target: u32,
    pub min: u32,
    pub max: u32,
    pub deadline_at_ms: i64,
    pub joined: u64,
    pub uploading: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<String, u64>,
    pub total_samples: i64,
    pub metrics: BTreeMap<String, f64>,
    pub folded: i64,
    pub shards: usize,
    pub published_version_id: Option<String>,
    pub closed_at_ms: Option<i64>,
    pub device_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CancelReply {
    pub previous: RoundState,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS round (id INTEGER PRIMARY KEY CHECK (id = 1), config TEXT NOT NULL, \
     state TEXT NOT NULL, accepted INTEGER NOT NULL DEFAULT 0, total_weight REAL NOT NULL DEFAULT 0, \
     total_samples INTEGER NOT NULL DEFAULT 0, folded INTEGER NOT NULL DEFAULT 0, \
     version_id TEXT, noise_seed TEXT, closed_at_ms INTEGER)",
    "CREATE TABLE IF NOT EXISTS participants (id TEXT PRIMARY KEY, device_id TEXT NOT NULL UNIQUE, \
     state TEXT NOT NULL, joined_at_ms INTEGER NOT NULL, capabilities TEXT NOT NULL, upload_id TEXT)",
    "CREATE TABLE IF NOT EXISTS uploads (id TEXT PRIMARY KEY, participation_id TEXT NOT NULL, \
     device_id TEXT NOT NULL, state TEXT NOT NULL, meta TEXT NOT NULL, parts INTEGER NOT NULL, \
     created_at_ms INTEGER NOT NULL, seq INTEGER UNIQUE, weight REAL, source TEXT, \
     reject_reason TEXT, reject_message TEXT, released INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS parts (upload_id TEXT NOT NULL, part INTEGER NOT NULL, key TEXT NOT NULL, \
     size INTEGER NOT NULL, PRIMARY KEY (upload_id, part))",
    "CREATE TABLE IF NOT EXISTS revoked (device_id TEXT PRIMARY KEY)",
];

#[derive(Debug, Clone, Deserialize)]
struct RoundRow {
    config: String,
    state: String,
    accepted: i64,
    total_weight: f64,
    total_samples: i64,
    folded: i64,
    version_id: Option<String>,
    noise_seed: Option<String>,
    closed_at_ms: Option<i64>,
}

struct Loaded {
    cfg: RoundConfig,
    row: RoundRow,
    state: RoundState,
}

#[derive(Debug, Clone, Deserialize)]
struct PartRow {
    id: String,
    device_id: String,
    state: String,
    joined_at_ms: i64,
}

#[derive(Debug, Clone, Deserialize)]
struct UploadRow {
    id: String,
    participation_id: String,
    device_id: String,
    state: String,
    meta: String,
    parts: i64,
    seq: Option<i64>,
    reject_reason: Option<String>,
    reject_message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct AcceptedRow {
    id: String,
    seq: i64,
    weight: f64,
    source: String,
}

#[derive(Debug, Clone, Deserialize)]
struct PieceRow {
    key: String,
    size: i64,
}

fn pstate(s: &str) -> ParticipationState {
    match s {
        "uploading" => ParticipationState::Uploading,
        "accepted" => ParticipationState::Accepted,
        "revoked" => ParticipationState::Revoked,
        _ => ParticipationState::Joined,
    }
}

fn ustate(s: &str) -> UploadState {
    match s {
        "completing" => UploadState::Completing,
        "accepted" => UploadState::Accepted,
        "rejected" => UploadState::Rejected,
        "abandoned" => UploadState::Abandoned,
        _ => UploadState::Uploading,
    }
}

fn reason_of(s: &str) -> RejectReason {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .unwrap_or(RejectReason::Malformed)
}

/// What a background task (the pump, the publisher) needs: cheap to clone, `'static`.
#[derive(Clone)]
struct Core {
    storage: Rc<Storage>,
    env: Env,
    pumping: Rc<Cell<bool>>,
    /// Each shard's folded sequence number as last reported (None: ask the shards).
    cursors: Rc<RefCell<Option<Vec<AggStatus>>>>,
}

/// An absolute alarm time (a bare integer would be taken as an offset from now).
use super::sql::alarm_at as at;

/// Clears the pumping flag however the pump ends.
struct PumpGuard(Rc<Cell<bool>>);

impl Drop for PumpGuard {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

fn shard_stub(env: &Env, round_id: &str, k: usize) -> std::result::Result<worker::Stub, ApiError> {
    use edgeplane_runtime::db::OrInternal;
    env.durable_object("ROUND_AGGREGATOR")
        .or_internal("aggregator binding")?
        .get_by_name(&format!("{round_id}/{k}"))
        .or_internal("aggregator stub")
}

fn system_event(
    cfg: &RoundConfig,
    action: &str,
    resource_type: &str,
    resource_id: &str,
    metadata: serde_json::Value,
) -> NewEvent {
    NewEvent {
        chain: cfg.org_id.clone(),
        org_id: Some(cfg.org_id.clone()),
        actor: Actor::system("round_coordinator"),
        action: action.into(),
        resource_type: resource_type.into(),
        resource_id: resource_id.into(),
        ip: None,
        user_agent: None,
        request_id: None,
        metadata,
    }
}

impl Core {
    fn sql(&self) -> SqlStorage {
        self.storage.sql()
    }

    fn load(&self) -> std::result::Result<Option<Loaded>, ApiError> {
        let sql = self.sql();
        for s in SCHEMA {
            sql::exec(&sql, s, vec![])?;
        }
        let Some(row) = sql::one::<RoundRow>(
            &sql,
            "SELECT config, state, accepted, total_weight, total_samples, folded, version_id, noise_seed, \
             closed_at_ms FROM round WHERE id = 1",
            vec![],
        )?
        else {
            return Ok(None);
        };
        let cfg: RoundConfig =
            serde_json::from_str(&row.config).map_err(|_| ApiError::internal())?;
        let state = RoundState::parse(&row.state).ok_or_else(ApiError::internal)?;
        Ok(Some(Loaded { cfg, row, state }))
    }

    fn loaded(&self) -> std::result::Result<Loaded, ApiError> {
        self.load()?.ok_or_else(|| ApiError::not_found("round"))
    }

    fn view(&self, l: &Loaded) -> std::result::Result<RoundView, ApiError> {
        let joined: Option<Count> = sql::one(
            &self.sql(),
            "SELECT count(*) AS n FROM participants",
            vec![],
        )?;
        Ok(RoundView {
            state: l.state,
            deadline_ms: l.cfg.deadline_at_ms,
            now_ms: now_ms(),
            joined: joined.map(|c| c.n as u32).unwrap_or(0),
            max: l.cfg.max,
        })
    }

    fn participation(&self, q: &str, key: &str) -> std::result::Result<Option<PartRow>, ApiError> {
        sql::one(&self.sql(), q, vec![text(key)])
    }

    fn upload(&self, id: &str) -> std::result::Result<Option<UploadRow>, ApiError> {
        sql::one(
            &self.sql(),
            "SELECT id, participation_id, device_id, state, meta, parts, seq, reject_reason, reject_message \
             FROM uploads WHERE id = ?",
            vec![text(id)],
        )
    }

    fn staged_pieces(&self, upload_id: &str) -> std::result::Result<Vec<Piece>, ApiError> {
        Ok(sql::rows::<PieceRow>(
            &self.sql(),
            "SELECT key, size FROM parts WHERE upload_id = ? ORDER BY part",
            vec![text(upload_id)],
        )?
        .into_iter()
        .map(|r| Piece {
            key: r.key,
            size: r.size as u64,
        })
        .collect())
    }

    async fn release_staging(&self, upload_ids: &[String]) {
        let Ok(bucket) = blob::bucket(&self.env) else {
            return;
        };
        for id in upload_ids {
            let Ok(pieces) = self.staged_pieces(id) else {
                continue;
            };
            blob::delete_all(&bucket, &pieces).await;
            let _ = sql::exec(
                &self.sql(),
                "UPDATE uploads SET released = 1 WHERE id = ?",
                vec![text(id)],
            );
        }
    }

    /// Marks an upload rejected (terminal for the upload, not for the participation).
    fn reject(
        &self,
        u: &UploadRow,
        reason: RejectReason,
        message: &str,
    ) -> std::result::Result<Outcome, ApiError> {
        let sql = self.sql();
        sql::exec(
            &sql,
            "UPDATE uploads SET state = 'rejected', reject_reason = ?, reject_message = ? WHERE id = ?",
            vec![text(reason.as_str()), text(message), text(&u.id)],
        )?;
        sql::exec(
            &sql,
            "UPDATE participants SET state = 'joined', upload_id = NULL \
             WHERE id = ? AND state = 'uploading' AND upload_id = ?",
            vec![text(&u.participation_id), text(&u.id)],
        )?;
        Ok(Outcome::Rejected {
            reason,
            message: message.to_owned(),
        })
    }

    async fn mirror_state(&self, cfg: &RoundConfig, state: RoundState) {
        if let Ok(db) = Db::from_env(&self.env) {
            let _ = db
                .run_unaudited(
                    "UPDATE fl_rounds SET state = ? WHERE id = ? AND state NOT IN \
                     ('published', 'insufficient_updates', 'cancelled')",
                    args![state.as_str(), &cfg.round_id],
                )
                .await;
        }
    }

    // ---- the pump -----------------------------------------------------------------------------

    /// Folds every accepted update not yet in every shard, in sequence order. Returns the lowest
    /// folded sequence number across shards.
    async fn pump(&self) -> std::result::Result<i64, ApiError> {
        if self.pumping.replace(true) {
            return Ok(-1);
        }
        let _guard = PumpGuard(self.pumping.clone());
        let l = self.loaded()?;
        let ranges = l.cfg.shard_ranges();
        let cursors = self.cursors.borrow().clone();
        let mut cursors = match cursors {
            Some(c) if c.len() == ranges.len() => c,
            _ => {
                let mut c = Vec::with_capacity(ranges.len());
                for (k, r) in ranges.iter().enumerate() {
                    let stub = shard_stub(&self.env, &l.cfg.round_id, k)?;
                    c.push(
                        call::<_, AggStatus>(
                            &stub,
                            "/status",
                            &StatusRequest {
                                len: r.end - r.start,
                            },
                        )
                        .await?,
                    );
                }
                c
            }
        };
        loop {
            let accepted: Option<Count> = sql::one(
                &self.sql(),
                "SELECT coalesce(max(seq), 0) AS n FROM uploads WHERE state = 'accepted'",
                vec![],
            )?;
            let top = accepted.map(|c| c.n).unwrap_or(0);
            let low = cursors
                .iter()
                .map(|c| c.folded_through)
                .min()
                .unwrap_or(top);
            if low >= top {
                break;
            }
            let futs = ranges.iter().enumerate().map(|(k, r)| {
                let cfg = &l.cfg;
                let cur = cursors[k];
                async move { self.fold_shard(cfg, k, r.clone(), cur, top).await }
            });
            let results = join_all(futs).await;
            let mut failed = None;
            for (k, res) in results.into_iter().enumerate() {
                match res {
                    Ok(st) => cursors[k] = st,
                    Err(e) => failed = Some(e),
                }
            }
            *self.cursors.borrow_mut() = Some(cursors.clone());
            if let Some(e) = failed {
                // Forget cursors: a shard may have dropped its sum; ask again next time.
                *self.cursors.borrow_mut() = None;
                return Err(e);
            }
        }
        *self.cursors.borrow_mut() = Some(cursors.clone());
        let folded = cursors.iter().map(|c| c.folded_through).min().unwrap_or(0);
        let checkpointed = cursors
            .iter()
            .map(|c| c.checkpointed_through)
            .min()
            .unwrap_or(0);
        sql::exec(
            &self.sql(),
            "UPDATE round SET folded = ? WHERE id = 1",
            vec![int(folded)],
        )?;
        // Staged bytes are needed until every shard's checkpoint includes the update.
        let releasable: Vec<Count2> = sql::rows(
            &self.sql(),
            "SELECT id FROM uploads WHERE state = 'accepted' AND released = 0 AND seq <= ?",
            vec![int(checkpointed)],
        )?;
        let ids: Vec<String> = releasable.into_iter().map(|r| r.id).collect();
        self.release_staging(&ids).await;
        Ok(folded)
    }

    async fn fold_shard(
        &self,
        cfg: &RoundConfig,
        k: usize,
        range: Range<u64>,
        mut cur: AggStatus,
        top: i64,
    ) -> std::result::Result<AggStatus, ApiError> {
        let stub = shard_stub(&self.env, &cfg.round_id, k)?;
        while cur.folded_through < top {
            let seq = cur.folded_through + 1;
            let row: AcceptedRow = sql::one(
                &self.sql(),
                "SELECT id, seq, weight, source FROM uploads WHERE seq = ? AND state = 'accepted'",
                vec![int(seq)],
            )?
            .ok_or_else(ApiError::internal)?;
            let source: UpdateSource =
                serde_json::from_str(&row.source).map_err(|_| ApiError::internal())?;
            let pieces = self.staged_pieces(&row.id)?;
            let fold_source = match source {
                UpdateSource::Safetensors { tensor_starts } => FoldSource::Safetensors {
                    segments: segments(&cfg.layout, &tensor_starts, range.clone()),
                    pieces,
                },
                UpdateSource::PlaintextJson { shard_offsets } => {
                    let start = *shard_offsets.get(k).ok_or_else(ApiError::internal)?;
                    let end = shard_offsets
                        .get(k + 1)
                        .copied()
                        .unwrap_or_else(|| blob::total(&pieces));
                    FoldSource::PlaintextJson { pieces, start, end }
                }
            };
            let req = FoldRequest {
                len: range.end - range.start,
                seq: row.seq,
                weight: row.weight,
                source: fold_source,
            };
            let r: FoldReply = call(&stub, "/fold", &req).await?;
            cur = r.status;
        }
        Ok(cur)
    }

    // ---- closing ------------------------------------------------------------------------------

    async fn publish(&self) -> std::result::Result<(), ApiError> {
        let l = self.loaded()?;
        if l.state != RoundState::Aggregating {
            return Ok(());
        }
        let folded = self.pump().await?;
        let accepted = l.row.accepted;
        if folded < accepted {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                "folding still in progress",
            ));
        }
        let cfg = &l.cfg;
        // Fix the version id and the noise seed before any byte is written, so a retried publish
        // (after a crash) writes the same version, once.
        let (version_id, seed) = match (&l.row.version_id, &l.row.noise_seed) {
            (Some(v), Some(s)) => (v.clone(), s.clone()),
            _ => {
                let v = new_id("mv", now_ms())?;
                let s = hex::encode(edgeplane_core::crypto::random_bytes::<32>()?);
                sql::exec(
                    &self.sql(),
                    "UPDATE round SET version_id = ?, noise_seed = ? WHERE id = 1",
                    vec![text(&v), text(&s)],
                )?;
                (v, s)
            }
        };
        let sigma = cfg.aggregation.noise_sigma(accepted as u64);
        let prefix = format!("models/{}/{}", cfg.model_id, version_id);
        let bucket = blob::bucket(&self.env)?;
        let mut shard_pieces: Vec<Vec<Piece>> = Vec::new();
        let futs = cfg.shard_ranges().into_iter().enumerate().map(|(k, r)| {
            let req = PublishRequest {
                len: r.end - r.start,
                expect_folded: accepted,
                total_weight: l.row.total_weight,
                base_pieces: cfg.base_pieces.clone(),
                base_segments: segments(&cfg.layout, &cfg.base_tensor_starts, r),
                noise: sigma.map(|sigma| NoiseSpec {
                    sigma,
                    seed: seed.clone(),
                    stream: k as u64,
                }),
                out_prefix: format!("{prefix}/s{k:03}"),
            };
            let env = self.env.clone();
            let round_id = cfg.round_id.clone();
            async move {
                let stub = shard_stub(&env, &round_id, k)?;
                call::<_, PublishReply>(&stub, "/publish", &req).await
            }
        });
        for r in join_all(futs).await {
            shard_pieces.push(r?.pieces);
        }
        let mut metadata = BTreeMap::new();
        metadata.insert("edgeplane.round_id".to_string(), cfg.round_id.clone());
        metadata.insert(
            "edgeplane.parent_version_id".to_string(),
            cfg.base_version_id.clone(),
        );
        let header = encode_header(&cfg.layout, &metadata);
        let header_key = format!("{prefix}/header");
        let header_size = header.len() as u64;
        {
            use edgeplane_runtime::db::OrInternal;
            bucket
                .put(&header_key, header)
                .execute()
                .await
                .or_internal("r2 put header")?;
        }
        let mut pieces = vec![Piece {
            key: header_key,
            size: header_size,
        }];
        pieces.extend(shard_pieces.into_iter().flatten());
        let size = blob::total(&pieces);
        let mut hasher = Sha256::new();
        blob::for_each_window(&bucket, &pieces, 0, size, |w| {
            hasher.update(w);
            Ok(true)
        })
        .await?;
        let sha = hex::encode(hasher.finalize());
        let aggregation = serde_json::json!({
            "algorithm": cfg.aggregation.algorithm,
            "clip_norm": cfg.aggregation.clip_norm,
            "noise_multiplier": cfg.aggregation.noise_multiplier,
            "noise_sigma": sigma,
            "participants": accepted,
            "total_samples": l.row.total_samples,
            "shards": cfg.shards.len(),
        });
        let now = now_ms();
        let db = Db::from_env(&self.env)?;
        let stmts = vec![
            Stmt::guard(
                "NOT EXISTS (SELECT 1 FROM fl_model_versions WHERE id = ?)",
                args![&version_id],
                ApiError::conflict("already published"),
            ),
            Stmt::new(
                "INSERT INTO fl_model_versions (id, org_id, model_id, version, parent_id, round_id, status, \
                 sha256, size_bytes, parameters, layout, pieces, aggregation, created_by, created_at_ms) \
                 SELECT ?, ?, ?, coalesce(max(version), 0) + 1, ?, ?, 'ready', ?, ?, ?, ?, ?, ?, ?, ? \
                 FROM fl_model_versions WHERE model_id = ?",
                args![
                    &version_id,
                    &cfg.org_id,
                    &cfg.model_id,
                    &cfg.base_version_id,
                    &cfg.round_id,
                    &sha,
                    size as i64,
                    cfg.layout.total_elements() as i64,
                    serde_json::to_string(&cfg.layout).map_err(|_| ApiError::internal())?,
                    serde_json::to_string(&pieces).map_err(|_| ApiError::internal())?,
                    aggregation.to_string(),
                    "round_coordinator",
                    now,
                    &cfg.model_id
                ],
            ),
            Stmt::new(
                "UPDATE fl_rounds SET state = 'published', published_version_id = ?, closed_at_ms = ? WHERE id = ?",
                args![&version_id, now, &cfg.round_id],
            ),
        ];
        let events = vec![
            system_event(
                cfg,
                "round.published",
                "round",
                &cfg.round_id,
                serde_json::json!({
                    "model_id": cfg.model_id, "version_id": version_id, "accepted": accepted,
                    "total_samples": l.row.total_samples, "sha256": sha,
                }),
            ),
            system_event(
                cfg,
                "model_version.created",
                "model_version",
                &version_id,
                serde_json::json!({
                    "model_id": cfg.model_id, "round_id": cfg.round_id, "parent_id": cfg.base_version_id,
                    "aggregation": aggregation,
                }),
            ),
        ];
        match db.commit_audited(stmts, events, now).await {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::Conflict && e.message == "already published" => {}
            Err(e) => return Err(e),
        }
        sql::exec(
            &self.sql(),
            "UPDATE round SET state = 'published', closed_at_ms = ? WHERE id = 1",
            vec![int(now)],
        )?;
        self.cleanup(cfg).await;
        Ok(())
    }

    async fn close_insufficient(&self, l: &Loaded) -> std::result::Result<(), ApiError> {
        let now = now_ms();
        let db = Db::from_env(&self.env)?;
        db.commit_audited(
            vec![Stmt::new(
                "UPDATE fl_rounds SET state = 'insufficient_updates', closed_at_ms = ? WHERE id = ?",
                args![now, &l.cfg.round_id],
            )],
            vec![system_event(&l.cfg, "round.insufficient_updates", "round", &l.cfg.round_id, serde_json::json!({
                "accepted": l.row.accepted, "min": l.cfg.min,
            }))],
            now,
        )
        .await?;
        sql::exec(
            &self.sql(),
            "UPDATE round SET state = 'insufficient_updates', closed_at_ms = ? WHERE id = 1",
            vec![int(now)],
        )?;
        self.cleanup(&l.cfg).await;
        Ok(())
    }

    /// After a round ends: staged bytes and aggregator state are no longer needed.
    async fn cleanup(&self, cfg: &RoundConfig) {
        let sql = self.sql();
        let _ = sql::exec(
            &sql,
            "UPDATE uploads SET state = 'abandoned' WHERE state IN ('uploading', 'completing')",
            vec![],
        );
        let ids: Vec<Count2> = sql::rows(&sql, "SELECT id FROM uploads WHERE released = 0", vec![])
            .unwrap_or_default();
        let ids: Vec<String> = ids.into_iter().map(|r| r.id).collect();
        self.release_staging(&ids).await;
        for k in 0..cfg.shards.len() {
            if let Ok(stub) = shard_stub(&self.env, &cfg.round_id, k) {
                let _ = call::<_, ()>(&stub, "/drop", &()).await;
            }
        }
        *self.cursors.borrow_mut() = None;
    }

    /// The alarm: deadline, publish, or a retry of a stalled pump.
    async fn tick(&self) -> std::result::Result<(), ApiError> {
        let Some(l) = self.load()? else { return Ok(()) };
        if l.state.is_accepting() && now_ms() >= l.cfg.deadline_at_ms {
            match closing(
                l.cfg.quorum().map_err(|_| ApiError::internal())?,
                l.row.accepted as u32,
                true,
            ) {
                Closing::Insufficient => return self.close_insufficient(&l).await,
                _ => {
                    sql::exec(
                        &self.sql(),
                        "UPDATE round SET state = 'aggregating' WHERE id = 1",
                        vec![],
                    )?;
                    self.mirror_state(&l.cfg, RoundState::Aggregating).await;
                }
            }
        }
        let Some(l) = self.load()? else { return Ok(()) };
        match l.state {
            RoundState::Aggregating => self.publish().await,
            s if s.is_accepting() => self.pump().await.map(|_| ()),
            _ => Ok(()),
        }
    }
}

#[derive(Deserialize)]
struct Count {
    n: i64,
}

#[derive(Deserialize)]
struct Count2 {
    id: String,
}

#[durable_object(alarm)]
pub struct RoundCoordinator {
    state: State,
    core: Core,
}

impl RoundCoordinator {
    fn sql(&self) -> SqlStorage {
        self.core.sql()
    }

    /// Runs the pump after the response, keeping the object alive until it finishes.
    fn kick(&self) {
        let core = self.core.clone();
        self.state.wait_until(async move {
            if let Err(e) = core.pump().await {
                log::warn("round pump", &e.message);
                // Try again shortly: the alarm retries the pump.
                let _ = core.storage.set_alarm(at(now_ms() + 1000)).await;
            }
        });
    }

    async fn arm(&self, at_ms: i64) -> std::result::Result<(), ApiError> {
        use edgeplane_runtime::db::OrInternal;
        self.core
            .storage
            .set_alarm(at(at_ms))
            .await
            .or_internal("set alarm")
    }

    async fn init(&self, cfg: RoundConfig) -> std::result::Result<(), ApiError> {
        if self.core.load()?.is_some() {
            return Ok(());
        }
        cfg.quorum().map_err(|_| ApiError::internal())?;
        sql::exec(
            &self.sql(),
            "INSERT INTO round (id, config, state) VALUES (1, ?, 'open')",
            vec![text(
                serde_json::to_string(&cfg).map_err(|_| ApiError::internal())?,
            )],
        )?;
        self.arm(cfg.deadline_at_ms).await
    }

    async fn join(&self, req: JoinRequest) -> std::result::Result<JoinReply, ApiError> {
        let l = self.core.loaded()?;
        let view = self.core.view(&l)?;
        let by_id = self.core.participation(
            "SELECT id, device_id, state, joined_at_ms FROM participants WHERE id = ?",
            &req.participation_id,
        )?;
        let by_device = self.core.participation(
            "SELECT id, device_id, state, joined_at_ms FROM participants WHERE device_id = ?",
            &req.device_id,
        )?;
        let as_p = |r: &PartRow| Participation {
            id: "",
            device_id: "",
            state: pstate(&r.state),
        };
        let by_id_p = by_id.as_ref().map(|r| Participation {
            id: &r.id,
            device_id: &r.device_id,
            ..as_p(r)
        });
        let by_dev_p = by_device.as_ref().map(|r| Participation {
            id: &r.id,
            device_id: &r.device_id,
            ..as_p(r)
        });
        let revoked: Option<Count> = sql::one(
            &self.sql(),
            "SELECT count(*) AS n FROM revoked WHERE device_id = ?",
            vec![text(&req.device_id)],
        )?;
        if revoked.is_some_and(|c| c.n > 0) {
            return Err(RejectReason::DeviceRevoked.to_error("this device was revoked"));
        }
        match decide_join(&view, &req.device_id, by_id_p.as_ref(), by_dev_p.as_ref())? {
            JoinDecision::Again => {
                let r = by_id.ok_or_else(ApiError::internal)?;
                Ok(JoinReply {
                    participation_id: r.id,
                    state: pstate(&r.state),
                    joined_at_ms: r.joined_at_ms,
                })
            }
            JoinDecision::Admit => {
                let now = now_ms();
                let caps = req.capabilities.to_string();
                if caps.len() > 4096 {
                    return Err(ApiError::validation(
                        "capabilities must be at most 4 KiB of JSON",
                    ));
                }
                let sql = self.sql();
                sql::exec(
                    &sql,
                    "INSERT INTO participants (id, device_id, state, joined_at_ms, capabilities) VALUES (?, ?, 'joined', ?, ?)",
                    vec![text(&req.participation_id), text(&req.device_id), int(now), text(caps)],
                )?;
                if l.state == RoundState::Open {
                    sql::exec(
                        &sql,
                        "UPDATE round SET state = 'collecting' WHERE id = 1 AND state = 'open'",
                        vec![],
                    )?;
                    self.core.mirror_state(&l.cfg, RoundState::Collecting).await;
                }
                Ok(JoinReply {
                    participation_id: req.participation_id,
                    state: ParticipationState::Joined,
                    joined_at_ms: now,
                })
            }
        }
    }

    async fn initiate(&self, req: InitiateRequest) -> std::result::Result<InitiateReply, ApiError> {
        let l = self.core.loaded()?;
        let view = self.core.view(&l)?;
        let p = self.core.participation(
            "SELECT id, device_id, state, joined_at_ms FROM participants WHERE id = ?",
            &req.participation_id,
        )?;
        let pp = p.as_ref().map(|r| Participation {
            id: &r.id,
            device_id: &r.device_id,
            state: pstate(&r.state),
        });
        decide_initiate(&view, &req.device_id, pp.as_ref())?;
        let max = max_upload_size(&l.cfg.layout, req.meta.format);
        req.meta
            .check(max)
            .map_err(|(reason, msg)| reason.to_error(&msg))?;
        let parts = part_count(req.meta.size, req.part_count)?;
        let sql = self.sql();
        // A newer upload replaces one still in flight for the same participation.
        let old: Vec<Count2> = sql::rows(
            &sql,
            "SELECT id FROM uploads WHERE participation_id = ? AND state = 'uploading'",
            vec![text(&req.participation_id)],
        )?;
        sql::exec(
            &sql,
            "UPDATE uploads SET state = 'abandoned' WHERE participation_id = ? AND state = 'uploading'",
            vec![text(&req.participation_id)],
        )?;
        sql::exec(
            &sql,
            "INSERT INTO uploads (id, participation_id, device_id, state, meta, parts, created_at_ms) \
             VALUES (?, ?, ?, 'uploading', ?, ?, ?)",
            vec![
                text(&req.upload_id),
                text(&req.participation_id),
                text(&req.device_id),
                text(serde_json::to_string(&req.meta).map_err(|_| ApiError::internal())?),
                int(parts as i64),
                int(now_ms()),
            ],
        )?;
        sql::exec(
            &sql,
            "UPDATE participants SET state = 'uploading', upload_id = ? WHERE id = ?",
            vec![text(&req.upload_id), text(&req.participation_id)],
        )?;
        let old: Vec<String> = old.into_iter().map(|r| r.id).collect();
        self.core.release_staging(&old).await;
        Ok(InitiateReply {
            upload_id: req.upload_id,
            parts,
        })
    }

    fn upload_for_part(
        &self,
        upload_id: &str,
        part: u32,
    ) -> std::result::Result<UploadRow, ApiError> {
        let l = self.core.loaded()?;
        let view = self.core.view(&l)?;
        let u = self
            .core
            .upload(upload_id)?
            .ok_or_else(|| ApiError::not_found("upload"))?;
        let revoked: Option<Count> = sql::one(
            &self.sql(),
            "SELECT count(*) AS n FROM revoked WHERE device_id = ?",
            vec![text(&u.device_id)],
        )?;
        let is_revoked = revoked.is_some_and(|c| c.n > 0)
            || u.reject_reason.as_deref() == Some(RejectReason::DeviceRevoked.as_str());
        decide_part(&view, ustate(&u.state), is_revoked, part, u.parts as u32)?;
        Ok(u)
    }

    async fn part_done(&self, req: PartDone) -> std::result::Result<(), ApiError> {
        // Re-checked after the bytes were written: the upload may have been completed, replaced
        // or revoked meanwhile, and then these bytes must not count.
        let checked = self.upload_for_part(&req.upload_id, req.part);
        let bucket = blob::bucket(&self.core.env)?;
        if let Err(e) = checked {
            let _ = bucket.delete(&req.key).await;
            return Err(e);
        }
        let old: Option<PieceRow> = sql::one(
            &self.sql(),
            "SELECT key, size FROM parts WHERE upload_id = ? AND part = ?",
            vec![text(&req.upload_id), int(req.part as i64)],
        )?;
        sql::exec(
            &self.sql(),
            "INSERT OR REPLACE INTO parts (upload_id, part, key, size) VALUES (?, ?, ?, ?)",
            vec![
                text(&req.upload_id),
                int(req.part as i64),
                text(&req.key),
                int(req.size as i64),
            ],
        )?;
        if let Some(old) = old {
            if old.key != req.key {
                let _ = bucket.delete(&old.key).await;
            }
        }
        Ok(())
    }

    fn outcome_of(u: &UploadRow) -> Option<Outcome> {
        match ustate(&u.state) {
            UploadState::Accepted => {
                let meta: UpdateMeta = serde_json::from_str(&u.meta).ok()?;
                Some(Outcome::Accepted {
                    participation_id: u.participation_id.clone(),
                    seq: u.seq.unwrap_or(0),
                    sample_count: meta.sample_count,
                })
            }
            UploadState::Rejected => Some(Outcome::Rejected {
                reason: reason_of(u.reject_reason.as_deref().unwrap_or("malformed")),
                message: u.reject_message.clone().unwrap_or_default(),
            }),
            _ => None,
        }
    }

    async fn complete_begin(
        &self,
        req: CompleteBegin,
    ) -> std::result::Result<CompleteBeginReply, ApiError> {
        let l = self.core.loaded()?;
        let u = self
            .core
            .upload(&req.upload_id)?
            .filter(|u| u.device_id == req.device_id)
            .ok_or_else(|| ApiError::not_found("upload"))?;
        if let Some(outcome) = Self::outcome_of(&u) {
            return Ok(CompleteBeginReply::Done { outcome });
        }
        let state = ustate(&u.state);
        if state == UploadState::Abandoned {
            return Err(ApiError::conflict(
                "this upload was replaced or the round closed; start a new one",
            ));
        }
        let mut meta: UpdateMeta =
            serde_json::from_str(&u.meta).map_err(|_| ApiError::internal())?;
        if state == UploadState::Uploading {
            if !l.state.is_accepting() {
                let outcome = self.core.reject(
                    &u,
                    RejectReason::RoundClosed,
                    "the round closed before this upload completed",
                )?;
                return Ok(CompleteBeginReply::Done { outcome });
            }
            if let Some(m) = req.meta {
                if m.sha256 != meta.sha256 || m.size != meta.size || m.format != meta.format {
                    return Err(ApiError::validation(
                        "meta.sha256, meta.size and meta.format must match what the upload was started with",
                    ));
                }
                meta.sample_count = m.sample_count;
                if !m.metrics.is_empty() {
                    meta.metrics = m.metrics;
                }
            }
            if let Err((reason, msg)) = meta.check(max_upload_size(&l.cfg.layout, meta.format)) {
                let outcome = self.core.reject(&u, reason, &msg)?;
                return Ok(CompleteBeginReply::Done { outcome });
            }
            let have: Option<Count> = sql::one(
                &self.sql(),
                "SELECT count(*) AS n FROM parts WHERE upload_id = ?",
                vec![text(&u.id)],
            )?;
            let have = have.map(|c| c.n).unwrap_or(0);
            if have < u.parts {
                return Err(RejectReason::IncompleteUpload.to_error(&format!(
                    "{have} of {} parts were received; PUT the rest, then complete again",
                    u.parts
                )));
            }
            sql::exec(
                &self.sql(),
                "UPDATE uploads SET state = 'completing', meta = ? WHERE id = ?",
                vec![
                    text(serde_json::to_string(&meta).map_err(|_| ApiError::internal())?),
                    text(&u.id),
                ],
            )?;
        }
        Ok(CompleteBeginReply::Validate {
            meta,
            pieces: self.core.staged_pieces(&u.id)?,
            layout: l.cfg.layout.clone(),
            shard_starts: l.cfg.shard_starts(),
        })
    }

    async fn complete_finish(&self, req: CompleteFinish) -> std::result::Result<Outcome, ApiError> {
        let l = self.core.loaded()?;
        let u = self
            .core
            .upload(&req.upload_id)?
            .ok_or_else(|| ApiError::not_found("upload"))?;
        if let Some(outcome) = Self::outcome_of(&u) {
            return Ok(outcome);
        }
        if ustate(&u.state) != UploadState::Completing {
            return Err(ApiError::conflict("this upload is not being completed"));
        }
        let validated = match req.verdict {
            Err((reason, msg)) => {
                let outcome = self.core.reject(&u, reason, &msg)?;
                self.core.release_staging(std::slice::from_ref(&u.id)).await;
                return Ok(outcome);
            }
            Ok(v) => v,
        };
        if !l.state.is_accepting() {
            let outcome = self.core.reject(
                &u,
                RejectReason::RoundClosed,
                "the round closed before this upload completed",
            )?;
            self.core.release_staging(std::slice::from_ref(&u.id)).await;
            return Ok(outcome);
        }
        let p = self.core.participation(
            "SELECT id, device_id, state, joined_at_ms FROM participants WHERE id = ?",
            &u.participation_id,
        )?;
        if p.as_ref().map(|p| pstate(&p.state)) == Some(ParticipationState::Accepted) {
            return Err(ApiError::conflict(
                "this participation already has an accepted update",
            ));
        }
        let meta: UpdateMeta = serde_json::from_str(&u.meta).map_err(|_| ApiError::internal())?;
        let scale = clip_scale(validated.norm, l.cfg.aggregation.clip_norm);
        let weight = meta.sample_count as f64 * scale;
        let seq = l.row.accepted + 1;
        let quorum = l.cfg.quorum().map_err(|_| ApiError::internal())?;
        let close = closing(quorum, seq as u32, false) == Closing::Publish;
        // One synchronous batch: the acceptance, its sequence number, the running totals and
        // (at quorum) the state change commit together or not at all.
        let sql = self.sql();
        sql::exec(
            &sql,
            "UPDATE uploads SET state = 'accepted', seq = ?, weight = ?, source = ? WHERE id = ?",
            vec![
                int(seq),
                real(weight),
                text(serde_json::to_string(&validated.source).map_err(|_| ApiError::internal())?),
                text(&u.id),
            ],
        )?;
        sql::exec(
            &sql,
            "UPDATE participants SET state = 'accepted' WHERE id = ?",
            vec![text(&u.participation_id)],
        )?;
        sql::exec(
            &sql,
            "UPDATE round SET accepted = ?, total_weight = total_weight + ?, total_samples = total_samples + ?, \
             state = CASE WHEN ? THEN 'aggregating' ELSE state END WHERE id = 1",
            vec![int(seq), real(weight), int(meta.sample_count), int(close as i64)],
        )?;
        if close {
            self.core
                .mirror_state(&l.cfg, RoundState::Aggregating)
                .await;
            self.arm(now_ms()).await?;
        } else {
            self.kick();
        }
        Ok(Outcome::Accepted {
            participation_id: u.participation_id,
            seq,
            sample_count: meta.sample_count,
        })
    }

    async fn revoke_device(&self, req: DeviceRequest) -> std::result::Result<(), ApiError> {
        if self.core.load()?.is_none() {
            return Ok(());
        }
        let sql = self.sql();
        let inflight: Vec<Count2> = sql::rows(
            &sql,
            "SELECT id FROM uploads WHERE device_id = ? AND state IN ('uploading', 'completing')",
            vec![text(&req.device_id)],
        )?;
        sql::exec(
            &sql,
            "INSERT OR IGNORE INTO revoked (device_id) VALUES (?)",
            vec![text(&req.device_id)],
        )?;
        sql::exec(
            &sql,
            "UPDATE uploads SET state = 'rejected', reject_reason = ?, reject_message = ? \
             WHERE device_id = ? AND state IN ('uploading', 'completing')",
            vec![
                text(RejectReason::DeviceRevoked.as_str()),
                text("the device was revoked during the upload"),
                text(&req.device_id),
            ],
        )?;
        sql::exec(
            &sql,
            "UPDATE participants SET state = 'revoked' WHERE device_id = ? AND state != 'accepted'",
            vec![text(&req.device_id)],
        )?;
        let ids: Vec<String> = inflight.into_iter().map(|r| r.id).collect();
        self.core.release_staging(&ids).await;
        Ok(())
    }

    async fn cancel(&self) -> std::result::Result<CancelReply, ApiError> {
        let l = self.core.loaded()?;
        if !l.state.can_become(RoundState::Cancelled) {
            return Err(ApiError::conflict(format!(
                "a round that is {} cannot be cancelled",
                l.state.as_str()
            )));
        }
        sql::exec(
            &self.sql(),
            "UPDATE round SET state = 'cancelled', closed_at_ms = ? WHERE id = 1",
            vec![int(now_ms())],
        )?;
        self.core.cleanup(&l.cfg).await;
        Ok(CancelReply { previous: l.state })
    }

    fn progress(&self) -> std::result::Result<Progress, ApiError> {
        let l = self.core.loaded()?;
        let sql = self.sql();
        #[derive(Deserialize)]
        struct StateCount {
            state: String,
            n: i64,
        }
        #[derive(Deserialize)]
        struct ReasonCount {
            reject_reason: Option<String>,
            n: i64,
        }
        #[derive(Deserialize)]
        struct MetaRow {
            meta: String,
        }
        #[derive(Deserialize)]
        struct DevRow {
            device_id: String,
        }
        let pstates: Vec<StateCount> = sql::rows(
            &sql,
            "SELECT state, count(*) AS n FROM participants GROUP BY state",
            vec![],
        )?;
        let joined = pstates.iter().map(|s| s.n as u64).sum();
        let uploading = pstates
            .iter()
            .filter(|s| s.state == "uploading")
            .map(|s| s.n as u64)
            .sum();
        let reasons: Vec<ReasonCount> = sql::rows(
            &sql,
            "SELECT reject_reason, count(*) AS n FROM uploads WHERE state = 'rejected' GROUP BY reject_reason",
            vec![],
        )?;
        let mut means = MetricMeans::default();
        for m in sql::rows::<MetaRow>(
            &sql,
            "SELECT meta FROM uploads WHERE state = 'accepted'",
            vec![],
        )? {
            if let Ok(meta) = serde_json::from_str::<UpdateMeta>(&m.meta) {
                means.add(meta.sample_count as f64, &meta.metrics);
            }
        }
        let devices: Vec<DevRow> = sql::rows(
            &sql,
            "SELECT device_id FROM participants ORDER BY joined_at_ms",
            vec![],
        )?;
        Ok(Progress {
            state: l.state,
            target: l.cfg.target,
            min: l.cfg.min,
            max: l.cfg.max,
            deadline_at_ms: l.cfg.deadline_at_ms,
            joined,
            uploading,
            accepted: l.row.accepted as u64,
            rejected: reasons
                .into_iter()
                .map(|r| {
                    (
                        r.reject_reason.unwrap_or_else(|| "unknown".into()),
                        r.n as u64,
                    )
                })
                .collect(),
            total_samples: l.row.total_samples,
            metrics: means.means(),
            folded: l.row.folded,
            shards: l.cfg.shards.len(),
            published_version_id: if l.state == RoundState::Published {
                l.row.version_id.clone()
            } else {
                None
            },
            closed_at_ms: l.row.closed_at_ms,
            device_ids: devices.into_iter().map(|d| d.device_id).collect(),
        })
    }
}

impl DurableObject for RoundCoordinator {
    fn new(state: State, env: Env) -> Self {
        let storage = Rc::new(state.storage());
        Self {
            state,
            core: Core {
                storage,
                env,
                pumping: Rc::new(Cell::new(false)),
                cursors: Rc::new(RefCell::new(None)),
            },
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match req.path().as_str() {
            "/init" => reply(self.init(req.json().await?).await),
            "/join" => reply(self.join(req.json().await?).await),
            "/initiate" => reply(self.initiate(req.json().await?).await),
            "/part-begin" => {
                let r: PartRequest = req.json().await?;
                reply(
                    self.upload_for_part(&r.upload_id, r.part)
                        .map(|u| u.device_id),
                )
            }
            "/part-done" => reply(self.part_done(req.json().await?).await),
            "/complete-begin" => reply(self.complete_begin(req.json().await?).await),
            "/complete-finish" => reply(self.complete_finish(req.json().await?).await),
            "/revoke-device" => reply(self.revoke_device(req.json().await?).await),
            "/cancel" => reply(self.cancel().await),
            "/progress" => reply(self.progress()),
            _ => Response::error("not found", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let result = self.core.tick().await;
        // Keep the deadline armed while the round is open; retry soon after a failure.
        if let Ok(Some(l)) = self.core.load() {
            if let Err(e) = &result {
                log::warn("round alarm", &e.message);
                let _ = self.arm(now_ms() + 2000).await;
            } else if l.state.is_accepting() {
                let _ = self.arm(l.cfg.deadline_at_ms).await;
            }
        }
        Response::ok("ok")
    }
}
