//! The asynchronous half of a round: what the coordinator does between ledger decisions, over
//! the three things outside it — its aggregator shards, object storage, and D1.
//!
//! Every step is safe to repeat: the pump asks the shards where they are before folding, a
//! publication reuses the version id and noise seed fixed on its first attempt, and the end of a
//! round is written to D1 by a guarded, idempotent record. So an eviction or a failed call at any
//! point is recovered by running the same step again (the alarm does), never by guessing.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use futures_util::future::join_all;
use sha2::{Digest, Sha256};

use super::records::Ended;
use super::{Effects, LedgerError, Publication, RoundLedger, Tick};
use crate::fl::history::ParticipationSummary;
use crate::fl::pieces::{self, BlobError, Blobs, Piece};
use crate::fl::round::{RoundFailure, RoundState};
use crate::fl::safetensors::encode_header;
use crate::fl::shard::segments;
use crate::fl::wire::{
    AggStatus, FoldReply, FoldRequest, NoiseSpec, PublishReply, PublishRequest, RoundConfig,
    StatusRequest,
};
use crate::ids::ModelVersionId;
use crate::store::{SqlExec, StoreError};

/// A call to another object (a shard, D1) failed. `retry` says whether trying again later can
/// help (busy, unavailable) or not (a refusal).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub message: String,
    pub retry: bool,
}

impl RemoteError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("remote call: {0}")]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The step must wait for another (folding still running): try again shortly.
    #[error("not ready: {0}")]
    NotReady(String),
}

impl From<StoreError> for DriveError {
    fn from(e: StoreError) -> Self {
        DriveError::Ledger(LedgerError::Store(e))
    }
}

/// The round's aggregator shards.
#[allow(async_fn_in_trait)] // Workers are single-threaded: no `Send` bound is wanted.
pub trait Aggregators {
    async fn status(&self, k: usize, req: &StatusRequest) -> Result<AggStatus, RemoteError>;
    async fn fold(&self, k: usize, req: &FoldRequest) -> Result<FoldReply, RemoteError>;
    async fn publish(&self, k: usize, req: &PublishRequest) -> Result<PublishReply, RemoteError>;
    async fn drop_all(&self, k: usize) -> Result<(), RemoteError>;
}

/// A new model version, as D1 records it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVersion {
    pub version_id: ModelVersionId,
    pub sha256: String,
    pub size: u64,
    pub pieces: Vec<Piece>,
    pub aggregation: serde_json::Value,
    pub accepted: i64,
    pub total_samples: i64,
    pub at_ms: i64,
}

/// How a round ended, for the record in D1 and the audit log.
#[derive(Debug, Clone, PartialEq)]
pub enum RoundEnd<'a> {
    Published(&'a NewVersion),
    Other { ended: &'a Ended, at_ms: i64 },
}

/// D1, as the coordinator writes it.
#[allow(async_fn_in_trait)]
pub trait Registry {
    /// The round's non-terminal state for listings (best effort: the live view asks the
    /// coordinator).
    async fn mirror(&self, cfg: &RoundConfig, state: RoundState) -> Result<(), RemoteError>;
    /// Writes the round's end with its audit record, and with it how the round went for each
    /// device (`participations`, the devices' history: written with the end, so exactly once).
    /// Idempotent: once written, a repeat changes nothing and succeeds.
    async fn record_end(
        &self,
        cfg: &RoundConfig,
        end: &RoundEnd<'_>,
        participations: &[ParticipationSummary],
    ) -> Result<(), RemoteError>;
}

/// What the coordinator keeps in memory between requests: each shard's position as last
/// reported (None: ask them), and whether a pump is running.
#[derive(Debug, Default)]
pub struct Memory {
    cursors: RefCell<Option<Vec<AggStatus>>>,
    pumping: Cell<bool>,
}

struct Pumping<'a>(&'a Cell<bool>);

impl Drop for Pumping<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// When the alarm should fire next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Never,
    At(i64),
}

/// After a failed step, the alarm retries this soon.
pub const RETRY_MS: i64 = 2_000;

pub struct Driver<'a, E: SqlExec, A: Aggregators, B: Blobs, R: Registry> {
    pub ledger: RoundLedger<'a, E>,
    pub shards: &'a A,
    pub blobs: &'a B,
    pub registry: &'a R,
    pub memory: &'a Memory,
}

impl<E: SqlExec, A: Aggregators, B: Blobs, R: Registry> Driver<'_, E, A, B, R> {
    /// Carries out a decision's effects. Only the pump and the end are left to the caller
    /// (the worker runs the pump after answering).
    pub async fn apply(&self, fx: &Effects) -> Result<(), DriveError> {
        if let Some(state) = fx.mirror {
            if let Some(r) = self.ledger.round()? {
                // Best effort by design: listings lag, the live view asks the coordinator.
                let _ = self.registry.mirror(&r.config, state).await;
            }
        }
        if !fx.delete.is_empty() {
            self.blobs.delete(fx.delete.clone()).await?;
        }
        for id in &fx.release {
            let staged = self.ledger.staged(id)?;
            self.blobs
                .delete(staged.into_iter().map(|p| p.key).collect())
                .await?;
            self.ledger.mark_released(id)?;
        }
        Ok(())
    }

    /// Drops the cached shard positions after any shard refusal: a shard may have been evicted
    /// and lost the folds since its checkpoint, so the next pump asks every shard where it is.
    fn forget_cursors(&self) {
        *self.memory.cursors.borrow_mut() = None;
    }

    async fn cursors(&self, cfg: &RoundConfig) -> Result<Vec<AggStatus>, DriveError> {
        let ranges = cfg.shard_ranges();
        let known = self.memory.cursors.borrow().clone();
        match known {
            Some(c) if c.len() == ranges.len() => Ok(c),
            _ => {
                let mut c = Vec::with_capacity(ranges.len());
                for (k, r) in ranges.iter().enumerate() {
                    let req = StatusRequest {
                        len: r.end - r.start,
                    };
                    c.push(self.shards.status(k, &req).await?);
                }
                Ok(c)
            }
        }
    }

    async fn fold_shard(
        &self,
        cfg: &RoundConfig,
        k: usize,
        mut at: AggStatus,
        top: i64,
    ) -> Result<AggStatus, DriveError> {
        while at.folded_through < top {
            let req = self.ledger.fold_request(cfg, at.folded_through + 1, k)?;
            at = self.shards.fold(k, &req).await?.status;
        }
        Ok(at)
    }

    /// Folds every accepted update not yet in every shard, strictly in sequence order, then
    /// releases the staged bytes every shard's checkpoint covers. Returns the lowest folded
    /// sequence number (-1 when another pump is already running).
    pub async fn pump(&self) -> Result<i64, DriveError> {
        if self.memory.pumping.replace(true) {
            return Ok(-1);
        }
        let _pumping = Pumping(&self.memory.pumping);
        let Some(r) = self.ledger.round()? else {
            return Ok(0);
        };
        if r.state.is_terminal() {
            return Ok(r.folded);
        }
        let cfg = r.config;
        let mut cursors = self.cursors(&cfg).await?;
        loop {
            // Re-read: updates accepted while the last batch folded join this one.
            let top = self.ledger.round()?.map(|r| r.accepted).unwrap_or(0);
            let low = cursors
                .iter()
                .map(|c| c.folded_through)
                .min()
                .unwrap_or(top);
            if low >= top {
                break;
            }
            let results = join_all(
                cursors
                    .iter()
                    .enumerate()
                    .map(|(k, at)| self.fold_shard(&cfg, k, *at, top)),
            )
            .await;
            let mut failed = None;
            for (k, res) in results.into_iter().enumerate() {
                match res {
                    Ok(at) => cursors[k] = at,
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                self.forget_cursors();
                return Err(e);
            }
            *self.memory.cursors.borrow_mut() = Some(cursors.clone());
        }
        *self.memory.cursors.borrow_mut() = Some(cursors.clone());
        let folded = cursors.iter().map(|c| c.folded_through).min().unwrap_or(0);
        let checkpointed = cursors
            .iter()
            .map(|c| c.checkpointed_through)
            .min()
            .unwrap_or(0);
        let release = self.ledger.folded(folded, checkpointed)?;
        self.apply(&Effects {
            release,
            ..Effects::default()
        })
        .await?;
        Ok(folded)
    }

    /// Writes the new version once every accepted update is folded: each shard its slice, then
    /// the header, the checksum, and the D1 record. A result that is not finite in the base
    /// dtype fails the round instead.
    pub async fn publish(&self, now_ms: i64) -> Result<(), DriveError> {
        let Some(r) = self.ledger.round()? else {
            return Ok(());
        };
        if r.state != RoundState::Aggregating {
            return Ok(());
        }
        let folded = self.pump().await?;
        if folded < r.accepted {
            return Err(DriveError::NotReady(format!(
                "folded {folded} of {} updates",
                r.accepted
            )));
        }
        let p = self.ledger.publication(now_ms)?;
        let cfg = &r.config;
        let prefix = format!("models/{}/{}", cfg.model_id, p.version_id);
        let requests: Vec<PublishRequest> = cfg
            .shard_ranges()
            .into_iter()
            .enumerate()
            .map(|(k, range)| PublishRequest {
                len: range.end - range.start,
                expect_folded: p.accepted,
                total_weight: p.total_weight,
                base_pieces: cfg.base_pieces.clone(),
                base_segments: segments(&cfg.layout, &cfg.base_tensor_starts, range),
                noise: p.noise_sigma.map(|sigma| NoiseSpec {
                    sigma,
                    seed: p.noise_seed.clone(),
                    stream: k as u64,
                }),
                out_prefix: format!("{prefix}/s{k:03}"),
            })
            .collect();
        let replies = join_all(
            requests
                .iter()
                .enumerate()
                .map(|(k, req)| self.shards.publish(k, req)),
        )
        .await;
        if let Some(e) = replies.iter().find_map(|r| r.as_ref().err()) {
            // A shard that lost folds since its last checkpoint (evicted while the coordinator
            // stayed up) refuses as not folded.
            self.forget_cursors();
            return Err(e.clone().into());
        }
        let mut shard_pieces = Vec::new();
        let mut non_finite = 0u64;
        for reply in replies {
            match reply? {
                PublishReply::Written { pieces } => shard_pieces.extend(pieces),
                PublishReply::NonFinite { count } => non_finite += count,
            }
        }
        if non_finite > 0 {
            self.blobs
                .delete(shard_pieces.into_iter().map(|p| p.key).collect())
                .await?;
            let detail = format!(
                "{non_finite} averaged values overflow the base version's dtype; nothing was published"
            );
            let fx = self
                .ledger
                .fail(RoundFailure::NonFiniteResult, &detail, now_ms)?;
            self.apply(&fx).await?;
            return self.record().await;
        }
        let version = self.assemble(cfg, &p, shard_pieces, now_ms).await?;
        let participations = self.ledger.participations()?;
        self.registry
            .record_end(cfg, &RoundEnd::Published(&version), &participations)
            .await?;
        let fx = self.ledger.published(&p.version_id, now_ms)?;
        self.apply(&fx).await?;
        self.cleanup(cfg).await
    }

    /// Header, pieces and checksum of the new version.
    async fn assemble(
        &self,
        cfg: &RoundConfig,
        p: &Publication,
        shard_pieces: Vec<Piece>,
        now_ms: i64,
    ) -> Result<NewVersion, DriveError> {
        let mut metadata = BTreeMap::new();
        metadata.insert("edgeplane.round_id".to_string(), cfg.round_id.to_string());
        metadata.insert(
            "edgeplane.parent_version_id".to_string(),
            cfg.base_version_id.to_string(),
        );
        let header = encode_header(&cfg.layout, &metadata);
        let header_key = format!("models/{}/{}/header", cfg.model_id, p.version_id);
        let header_piece = Piece {
            key: header_key.clone(),
            size: header.len() as u64,
        };
        self.blobs.put(&header_key, header).await?;
        let mut all = vec![header_piece];
        all.extend(shard_pieces);
        let size = pieces::total(&all);
        let mut hasher = Sha256::new();
        for w in pieces::windows(0..size) {
            hasher.update(self.blobs.read(&all, w).await?);
        }
        Ok(NewVersion {
            version_id: p.version_id.clone(),
            sha256: hex::encode(hasher.finalize()),
            size,
            pieces: all,
            aggregation: serde_json::json!({
                "algorithm": cfg.aggregation.algorithm,
                "clip_norm": cfg.aggregation.clip_norm,
                "noise_multiplier": cfg.aggregation.noise_multiplier,
                "noise_sigma": p.noise_sigma,
                "max_sample_count": cfg.aggregation.sample_cap(),
                "participants": p.accepted,
                "total_samples": p.total_samples,
                "shards": cfg.shards.len(),
            }),
            accepted: p.accepted,
            total_samples: p.total_samples,
            at_ms: now_ms,
        })
    }

    /// Writes a round's end (other than a publication) to D1 with its audit record, then
    /// forgets the shards' sums.
    pub async fn record(&self) -> Result<(), DriveError> {
        let Some(r) = self.ledger.round()? else {
            return Ok(());
        };
        if !r.state.is_terminal() || r.recorded {
            return Ok(());
        }
        let ended = r
            .ended
            .as_ref()
            .ok_or_else(|| StoreError::corrupt("a terminal round without its end"))?;
        let participations = self.ledger.participations()?;
        self.registry
            .record_end(
                &r.config,
                &RoundEnd::Other {
                    ended,
                    at_ms: r.closed_at_ms.unwrap_or(0),
                },
                &participations,
            )
            .await?;
        self.ledger.recorded()?;
        self.cleanup(&r.config).await
    }

    /// After the end: every staged byte released and the shards' sums forgotten. Repeated by the
    /// alarm until it completes.
    pub async fn cleanup(&self, cfg: &RoundConfig) -> Result<(), DriveError> {
        self.forget_cursors();
        let release = self.ledger.unreleased()?;
        self.apply(&Effects {
            release,
            ..Effects::default()
        })
        .await?;
        for k in 0..cfg.shards.len() {
            self.shards.drop_all(k).await?;
        }
        self.ledger.cleaned()?;
        Ok(())
    }

    /// The alarm: close at the deadline, publish, record an end, or retry a stalled fold.
    /// Returns when to wake next.
    pub async fn tick(&self, now_ms: i64) -> Result<Next, DriveError> {
        let (tick, fx) = self.ledger.tick(now_ms)?;
        self.apply(&fx).await?;
        match tick {
            Tick::Idle => Ok(Next::Never),
            Tick::Record => self.record().await.map(|_| Next::Never),
            Tick::Cleanup => match self.ledger.round()? {
                Some(r) => self.cleanup(&r.config).await.map(|_| Next::Never),
                None => Ok(Next::Never),
            },
            Tick::Publish => self.publish(now_ms).await.map(|_| Next::Never),
            Tick::Pump { deadline_at_ms } => {
                self.pump().await?;
                Ok(Next::At(deadline_at_ms))
            }
        }
    }
}
