//! `RoundAggregator`: one slice (a contiguous element range) of one round's running sum.
//!
//! The coordinator folds accepted updates into it strictly in sequence order. The sum lives in
//! memory and is checkpointed to the object's SQLite every few folds, atomically with the sequence
//! number it includes; the coordinator keeps every accepted update's staged bytes until a
//! checkpoint covers it. So after an eviction or a restart the object reloads its checkpoint and
//! the coordinator replays exactly the sequence numbers after it: nothing is lost, nothing is
//! counted twice. A fold that fails half way drops the in-memory sum for the same reason.

use std::cell::{Cell, RefCell};

use edgeplane_core::fl::aggregate::{fold_slice, publish_slice};
use edgeplane_core::fl::envelope::NumberReader;
use edgeplane_core::fl::noise::Gaussian;
use edgeplane_core::fl::shard::Segment;
use edgeplane_core::ApiError;
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use super::rpc::reply;
use super::sql::{self, int, V};
use crate::routes::federation::blob::{self, Piece, PieceWriter, READ_WINDOW};

/// Folds between checkpoints: bounds both the replay after a restart and the staged bytes kept.
pub const CHECKPOINT_EVERY: i64 = 8;
/// f64 elements per checkpoint row (1 MiB, under the 2 MB row limit).
const ROW_ELEMENTS: usize = 128 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FoldSource {
    Safetensors {
        pieces: Vec<Piece>,
        segments: Vec<Segment>,
    },
    PlaintextJson {
        pieces: Vec<Piece>,
        start: u64,
        end: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FoldRequest {
    pub len: u64,
    pub seq: i64,
    pub weight: f64,
    pub source: FoldSource,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct AggStatus {
    pub folded_through: i64,
    pub checkpointed_through: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FoldReply {
    /// False when the request was not the next sequence number (see `status`).
    pub applied: bool,
    pub status: AggStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoiseSpec {
    pub sigma: f64,
    /// Hex of 32 secret random bytes, fresh per round.
    pub seed: String,
    pub stream: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishRequest {
    pub len: u64,
    pub expect_folded: i64,
    pub total_weight: f64,
    pub base_pieces: Vec<Piece>,
    pub base_segments: Vec<Segment>,
    pub noise: Option<NoiseSpec>,
    pub out_prefix: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishReply {
    pub pieces: Vec<Piece>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusRequest {
    pub len: u64,
}

struct Sum {
    values: Vec<f64>,
    folded_through: i64,
    checkpointed_through: i64,
}

impl Sum {
    fn status(&self) -> AggStatus {
        AggStatus {
            folded_through: self.folded_through,
            checkpointed_through: self.checkpointed_through,
        }
    }
}

#[durable_object(fetch)]
pub struct RoundAggregator {
    state: State,
    env: Env,
    sum: RefCell<Option<Sum>>,
    busy: Cell<bool>,
}

#[derive(Deserialize)]
struct MetaRow {
    len: i64,
    folded_through: i64,
}

fn init_schema(sql: &SqlStorage) -> std::result::Result<(), ApiError> {
    sql::exec(
        sql,
        "CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), len INTEGER NOT NULL, \
         folded_through INTEGER NOT NULL)",
        vec![],
    )?;
    sql::exec(
        sql,
        "CREATE TABLE IF NOT EXISTS acc (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)",
        vec![],
    )
}

/// Releases the busy flag however the operation ends.
struct Busy<'a>(&'a Cell<bool>);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl RoundAggregator {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    fn claim(&self) -> std::result::Result<Busy<'_>, ApiError> {
        if self.busy.replace(true) {
            return Err(ApiError::new(
                edgeplane_core::ErrorCode::Unavailable,
                "aggregator busy",
            ));
        }
        Ok(Busy(&self.busy))
    }

    /// The sum, from memory or from the last checkpoint (zeros before the first).
    fn take_sum(&self, len: u64) -> std::result::Result<Sum, ApiError> {
        if let Some(s) = self.sum.borrow_mut().take() {
            return Ok(s);
        }
        let sql = self.sql();
        init_schema(&sql)?;
        let meta: Option<MetaRow> = sql::one(
            &sql,
            "SELECT len, folded_through FROM meta WHERE id = 1",
            vec![],
        )?;
        let mut values = vec![0.0f64; len as usize];
        let mut folded = 0;
        if let Some(m) = meta {
            if m.len as u64 != len {
                return Err(ApiError::internal());
            }
            folded = m.folded_through;
            for (row, bytes) in sql::blobs(&sql, "SELECT data FROM acc ORDER BY idx", vec![])?
                .iter()
                .enumerate()
            {
                let at = row * ROW_ELEMENTS;
                for (j, b) in bytes.chunks_exact(8).enumerate() {
                    if let Some(slot) = values.get_mut(at + j) {
                        *slot =
                            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                    }
                }
            }
        }
        Ok(Sum {
            values,
            folded_through: folded,
            checkpointed_through: folded,
        })
    }

    /// Writes the whole sum and its sequence number in one synchronous (atomic) batch.
    fn checkpoint(&self, s: &mut Sum) -> std::result::Result<(), ApiError> {
        let sql = self.sql();
        init_schema(&sql)?;
        for (idx, chunk) in s.values.chunks(ROW_ELEMENTS).enumerate() {
            let mut bytes = Vec::with_capacity(chunk.len() * 8);
            for v in chunk {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            sql::exec(
                &sql,
                "INSERT OR REPLACE INTO acc (idx, data) VALUES (?, ?)",
                vec![int(idx as i64), V::Blob(bytes)],
            )?;
        }
        sql::exec(
            &sql,
            "INSERT OR REPLACE INTO meta (id, len, folded_through) VALUES (1, ?, ?)",
            vec![int(s.values.len() as i64), int(s.folded_through)],
        )?;
        s.checkpointed_through = s.folded_through;
        Ok(())
    }

    async fn fold(&self, req: FoldRequest) -> std::result::Result<FoldReply, ApiError> {
        let _busy = self.claim()?;
        let mut s = self.take_sum(req.len)?;
        if req.seq != s.folded_through + 1 {
            let status = s.status();
            *self.sum.borrow_mut() = Some(s);
            return Ok(FoldReply {
                applied: false,
                status,
            });
        }
        // On any error below, `s` is dropped: the partially folded sum is discarded and the next
        // request reloads the checkpoint.
        let bucket = blob::bucket(&self.env)?;
        match &req.source {
            FoldSource::Safetensors { pieces, segments } => {
                for seg in segments {
                    let size = seg.dtype.size() as u64;
                    let window = (READ_WINDOW / size).max(1) * size;
                    let (mut at, end) = (seg.byte_start, seg.byte_end());
                    let mut acc = seg.acc_offset as usize;
                    while at < end {
                        let hi = (at + window).min(end);
                        let buf = blob::read_range(&bucket, pieces, at, hi).await?;
                        let n = buf.len() / size as usize;
                        let slot = s
                            .values
                            .get_mut(acc..acc + n)
                            .ok_or_else(ApiError::internal)?;
                        fold_slice(seg.dtype, &buf, slot, req.weight);
                        acc += n;
                        at = hi;
                    }
                }
            }
            FoldSource::PlaintextJson { pieces, start, end } => {
                let mut reader = NumberReader::default();
                let want = req.len;
                let values = &mut s.values;
                let w = req.weight;
                let mut i = 0usize;
                let mut add = |v: f64| {
                    if let Some(slot) = values.get_mut(i) {
                        *slot += w * v;
                    }
                    i += 1;
                };
                blob::for_each_window(&bucket, pieces, *start, *end, |chunk| {
                    reader
                        .feed(chunk, want, &mut add)
                        .map(|done| !done)
                        .map_err(|_| ApiError::internal())
                })
                .await?;
                reader
                    .flush(want, &mut add)
                    .map_err(|_| ApiError::internal())?;
                if reader.read != want {
                    return Err(ApiError::internal());
                }
            }
        }
        s.folded_through = req.seq;
        if s.folded_through - s.checkpointed_through >= CHECKPOINT_EVERY {
            self.checkpoint(&mut s)?;
        }
        let status = s.status();
        *self.sum.borrow_mut() = Some(s);
        Ok(FoldReply {
            applied: true,
            status,
        })
    }

    async fn publish(&self, req: PublishRequest) -> std::result::Result<PublishReply, ApiError> {
        let _busy = self.claim()?;
        let mut s = self.take_sum(req.len)?;
        if s.folded_through != req.expect_folded {
            let msg = format!(
                "aggregator has folded {} of {}",
                s.folded_through, req.expect_folded
            );
            *self.sum.borrow_mut() = Some(s);
            return Err(ApiError::conflict(msg));
        }
        if s.checkpointed_through != s.folded_through {
            self.checkpoint(&mut s)?;
        }
        let bucket = blob::bucket(&self.env)?;
        let mut noise = match &req.noise {
            Some(n) => {
                let mut seed = [0u8; 32];
                hex::decode_to_slice(&n.seed, &mut seed).map_err(|_| ApiError::internal())?;
                Some((Gaussian::new(seed, n.stream), n.sigma))
            }
            None => None,
        };
        let mut writer = PieceWriter::new(req.out_prefix.clone());
        let mut out = Vec::new();
        for seg in &req.base_segments {
            let size = seg.dtype.size() as u64;
            let window = (READ_WINDOW / size).max(1) * size;
            let (mut at, end) = (seg.byte_start, seg.byte_end());
            let mut acc = seg.acc_offset as usize;
            while at < end {
                let hi = (at + window).min(end);
                let base = blob::read_range(&bucket, &req.base_pieces, at, hi).await?;
                let n = base.len() / size as usize;
                let slot = s.values.get(acc..acc + n).ok_or_else(ApiError::internal)?;
                out.clear();
                publish_slice(
                    seg.dtype,
                    &base,
                    slot,
                    req.total_weight,
                    noise.as_mut().map(|(g, sigma)| (g, *sigma)),
                    &mut out,
                );
                writer.write(&bucket, &out).await?;
                acc += n;
                at = hi;
            }
        }
        let pieces = writer.finish(&bucket).await?;
        *self.sum.borrow_mut() = Some(s);
        Ok(PublishReply { pieces })
    }

    fn status(&self, req: StatusRequest) -> std::result::Result<AggStatus, ApiError> {
        if self.busy.get() {
            return Err(ApiError::new(
                edgeplane_core::ErrorCode::Unavailable,
                "aggregator busy",
            ));
        }
        let s = self.take_sum(req.len)?;
        let st = s.status();
        *self.sum.borrow_mut() = Some(s);
        Ok(st)
    }

    async fn drop_all(&self) -> std::result::Result<(), ApiError> {
        let _busy = self.claim()?;
        self.sum.borrow_mut().take();
        let sql = self.sql();
        init_schema(&sql)?;
        sql::exec(&sql, "DELETE FROM acc", vec![])?;
        sql::exec(&sql, "DELETE FROM meta", vec![])
    }
}

impl DurableObject for RoundAggregator {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            sum: RefCell::new(None),
            busy: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match req.path().as_str() {
            "/fold" => {
                let body: FoldRequest = req.json().await?;
                reply(self.fold(body).await)
            }
            "/publish" => {
                let body: PublishRequest = req.json().await?;
                reply(self.publish(body).await)
            }
            "/status" => {
                let body: StatusRequest = req.json().await?;
                reply(self.status(body))
            }
            "/drop" => reply(self.drop_all().await),
            _ => Response::error("not found", 404),
        }
    }
}
