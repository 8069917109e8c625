//! One aggregator shard: a contiguous element range of a round's running sum.
//!
//! The coordinator folds accepted updates into a shard strictly in sequence order. The sum lives
//! in memory and is checkpointed to the shard's own storage every [`CHECKPOINT_EVERY`] folds,
//! atomically with the sequence number it includes; the coordinator keeps each accepted update's
//! staged bytes until every shard's checkpoint covers it. So after an eviction the shard reloads
//! its checkpoint and the coordinator replays exactly the later sequence numbers: nothing is
//! lost, nothing is counted twice. A fold that fails half way drops the in-memory sum for the
//! same reason (the next call reloads the checkpoint).
//!
//! The Durable Object class only adapts storage: this module holds the sum, the checkpoint codec
//! and the one windowed loop that both folding and publishing walk.

use std::cell::{Cell, RefCell};
use std::ops::Range;

use super::aggregate::{fold_slice, publish_slice};
use super::dtype::DType;
use super::envelope::NumberReader;
use super::noise::Gaussian;
use super::pieces::{self, BlobError, Blobs, PieceCutter, READ_WINDOW};
use super::shard::Segment;
use super::wire::{AggStatus, FoldReply, FoldRequest, FoldSource, PublishReply, PublishRequest};
use crate::store::{SqlExec, StoreError, Value};
use crate::vals;

/// Folds between checkpoints: bounds both the replay after a restart and the staged bytes kept.
pub const CHECKPOINT_EVERY: i64 = 8;
/// `f64` elements per checkpoint row (1 MiB, under the 2 MB row limit).
pub const ROW_ELEMENTS: usize = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AggError {
    /// Another fold or publish is running in this shard; the coordinator retries.
    #[error("aggregator busy")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// Staged bytes that validated once no longer parse, or a request that does not fit the
    /// shard: a bug or tampering, never retried into a sum.
    #[error("aggregator: {0}")]
    Invalid(String),
    /// Publishing was asked before every accepted update was folded here.
    #[error("aggregator has folded {have} of {want}")]
    NotFolded { have: i64, want: i64 },
}

/// A shard's running sum and how far it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSum {
    pub values: Vec<f64>,
    pub folded_through: i64,
    pub checkpointed_through: i64,
}

impl ShardSum {
    pub fn status(&self) -> AggStatus {
        AggStatus {
            folded_through: self.folded_through,
            checkpointed_through: self.checkpointed_through,
        }
    }

    pub fn checkpoint_due(&self) -> bool {
        self.folded_through - self.checkpointed_through >= CHECKPOINT_EVERY
    }
}

fn migrate(sql: &impl SqlExec) -> Result<(), StoreError> {
    sql.exec(
        "CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), len INTEGER NOT NULL, \
         folded_through INTEGER NOT NULL)",
        &[],
    )?;
    sql.exec(
        "CREATE TABLE IF NOT EXISTS acc (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)",
        &[],
    )
}

/// The sum as of the last checkpoint (zeros before the first). Rows stream straight into the
/// sum: besides the sum itself, at most one 1 MiB row is in memory, so a shard at its largest
/// slice still reloads within an isolate's memory.
pub fn load(sql: &impl SqlExec, len: u64) -> Result<ShardSum, StoreError> {
    migrate(sql)?;
    let len_usize = usize::try_from(len).map_err(|_| StoreError::corrupt("shard length"))?;
    let mut values = vec![0.0f64; len_usize];
    let mut folded = 0;
    if let Some(m) = sql.one("SELECT len, folded_through FROM meta WHERE id = 1", &[])? {
        let stored: u64 = m.get(0)?;
        if stored != len {
            return Err(StoreError::corrupt(format!(
                "checkpoint of {stored} elements for a shard of {len}"
            )));
        }
        folded = m.get(1)?;
        let mut seen = 0usize;
        sql.for_each("SELECT idx, data FROM acc ORDER BY idx", &[], &mut |row| {
            let idx: u64 = row.get(0)?;
            let data: Vec<u8> = row.get(1)?;
            let at = (idx as usize).saturating_mul(ROW_ELEMENTS);
            let slots = values
                .get_mut(at..at + data.len() / 8)
                .ok_or_else(|| StoreError::corrupt("checkpoint row beyond the shard"))?;
            for (slot, b) in slots.iter_mut().zip(data.chunks_exact(8)) {
                let mut le = [0u8; 8];
                le.copy_from_slice(b);
                *slot = f64::from_le_bytes(le);
            }
            seen += slots.len();
            Ok(())
        })?;
        if seen != len_usize {
            return Err(StoreError::corrupt(format!(
                "checkpoint holds {seen} of {len} elements"
            )));
        }
    }
    Ok(ShardSum {
        values,
        folded_through: folded,
        checkpointed_through: folded,
    })
}

/// Writes the whole sum and its sequence number in one synchronous (atomic) stretch.
pub fn checkpoint(sql: &impl SqlExec, s: &mut ShardSum) -> Result<(), StoreError> {
    migrate(sql)?;
    for (idx, chunk) in s.values.chunks(ROW_ELEMENTS).enumerate() {
        let mut bytes = Vec::with_capacity(chunk.len() * 8);
        for v in chunk {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        sql.exec(
            "INSERT OR REPLACE INTO acc (idx, data) VALUES (?, ?)",
            &[Value::Int(idx as i64), Value::Blob(bytes)],
        )?;
    }
    sql.exec(
        "INSERT OR REPLACE INTO meta (id, len, folded_through) VALUES (1, ?, ?)",
        &vals![s.values.len() as u64, s.folded_through],
    )?;
    s.checkpointed_through = s.folded_through;
    Ok(())
}

pub fn clear(sql: &impl SqlExec) -> Result<(), StoreError> {
    migrate(sql)?;
    sql.exec("DELETE FROM acc", &[])?;
    sql.exec("DELETE FROM meta", &[])
}

/// One read of a segment walk: `bytes` of the file hold the elements for accumulator slots `acc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub dtype: DType,
    pub bytes: Range<u64>,
    pub acc: Range<usize>,
}

/// Walks segments in windows of at most [`READ_WINDOW`] bytes, cut at element boundaries: the
/// one loop folding (update bytes) and publishing (base bytes) share.
pub fn windows(segments: &[Segment]) -> impl Iterator<Item = Window> + '_ {
    segments.iter().flat_map(|seg| {
        let size = seg.dtype.size() as u64;
        let step = (READ_WINDOW / size).max(1) * size;
        let end = seg.byte_end();
        let mut at = seg.byte_start;
        let mut acc = seg.acc_offset as usize;
        std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let hi = (at + step).min(end);
            let n = ((hi - at) / size) as usize;
            let w = Window {
                dtype: seg.dtype,
                bytes: at..hi,
                acc: acc..acc + n,
            };
            at = hi;
            acc += n;
            Some(w)
        })
    })
}

async fn fold_into(
    values: &mut [f64],
    blobs: &impl Blobs,
    req: &FoldRequest,
) -> Result<(), AggError> {
    match &req.source {
        FoldSource::Safetensors { pieces, segments } => {
            for w in windows(segments) {
                let buf = blobs.read(pieces, w.bytes.clone()).await?;
                let slot = values
                    .get_mut(w.acc.clone())
                    .ok_or_else(|| AggError::Invalid("segment beyond the shard".into()))?;
                fold_slice(w.dtype, &buf, slot, req.weight);
            }
        }
        FoldSource::PlaintextJson { pieces, start, end } => {
            let mut reader = NumberReader::default();
            let mut i = 0usize;
            let weight = req.weight;
            let mut add = |v: f64| {
                if let Some(slot) = values.get_mut(i) {
                    *slot += weight * v;
                }
                i += 1;
            };
            for w in pieces::windows(*start..*end) {
                let chunk = blobs.read(pieces, w).await?;
                if reader
                    .feed(&chunk, req.len, &mut add)
                    .map_err(AggError::Invalid)?
                {
                    break;
                }
            }
            reader.flush(req.len, &mut add).map_err(AggError::Invalid)?;
            if reader.read != req.len {
                return Err(AggError::Invalid(format!(
                    "read {} of {} values",
                    reader.read, req.len
                )));
            }
        }
    }
    Ok(())
}

/// The shard's state between requests: the sum (while the object stays in memory) and whether
/// an operation that awaits is running. The Durable Object owns one and hands it its storage.
#[derive(Debug, Default)]
pub struct Aggregator {
    sum: RefCell<Option<ShardSum>>,
    busy: Cell<bool>,
}

/// Releases the busy flag however the operation ends.
struct Claim<'a>(&'a Cell<bool>);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl Aggregator {
    pub fn new() -> Self {
        Self::default()
    }

    fn claim(&self) -> Result<Claim<'_>, AggError> {
        if self.busy.replace(true) {
            return Err(AggError::Busy);
        }
        Ok(Claim(&self.busy))
    }

    /// The sum from memory, or reloaded from the last checkpoint.
    fn take(&self, sql: &impl SqlExec, len: u64) -> Result<ShardSum, StoreError> {
        match self.sum.borrow_mut().take() {
            Some(s) if s.values.len() as u64 == len => return Ok(s),
            _ => {}
        }
        load(sql, len)
    }

    fn keep(&self, s: ShardSum) {
        *self.sum.borrow_mut() = Some(s);
    }

    pub fn status(&self, sql: &impl SqlExec, len: u64) -> Result<AggStatus, AggError> {
        if self.busy.get() {
            return Err(AggError::Busy);
        }
        let s = self.take(sql, len)?;
        let st = s.status();
        self.keep(s);
        Ok(st)
    }

    /// Folds update `req.seq` if it is the next one; otherwise answers where the shard is.
    pub async fn fold(
        &self,
        sql: &impl SqlExec,
        blobs: &impl Blobs,
        req: &FoldRequest,
    ) -> Result<FoldReply, AggError> {
        let _claim = self.claim()?;
        let mut s = self.take(sql, req.len)?;
        if req.seq != s.folded_through + 1 {
            let status = s.status();
            self.keep(s);
            return Ok(FoldReply {
                applied: false,
                status,
            });
        }
        // On any error below `s` is dropped: the partial sum is discarded and the next request
        // reloads the checkpoint.
        fold_into(&mut s.values, blobs, req).await?;
        s.folded_through = req.seq;
        if s.checkpoint_due() {
            checkpoint(sql, &mut s)?;
        }
        let status = s.status();
        self.keep(s);
        Ok(FoldReply {
            applied: true,
            status,
        })
    }

    /// Writes this shard's slice of the new version: `base + sum / total_weight (+ noise)` in the
    /// base's dtype, as pieces under `req.out_prefix`. If any value is not finite in that dtype,
    /// nothing is kept and the count is answered instead.
    pub async fn publish(
        &self,
        sql: &impl SqlExec,
        blobs: &impl Blobs,
        req: &PublishRequest,
    ) -> Result<PublishReply, AggError> {
        let _claim = self.claim()?;
        let mut s = self.take(sql, req.len)?;
        if s.folded_through != req.expect_folded {
            let err = AggError::NotFolded {
                have: s.folded_through,
                want: req.expect_folded,
            };
            self.keep(s);
            return Err(err);
        }
        if s.checkpointed_through != s.folded_through {
            checkpoint(sql, &mut s)?;
        }
        let result = write_slice(&s.values, blobs, req).await;
        self.keep(s);
        result
    }

    /// Forgets the sum and its checkpoint (the round ended).
    pub fn drop_all(&self, sql: &impl SqlExec) -> Result<(), AggError> {
        let _claim = self.claim()?;
        self.sum.borrow_mut().take();
        clear(sql)?;
        Ok(())
    }
}

async fn write_slice(
    values: &[f64],
    blobs: &impl Blobs,
    req: &PublishRequest,
) -> Result<PublishReply, AggError> {
    let mut noise = match &req.noise {
        Some(n) => {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(&n.seed, &mut seed)
                .map_err(|_| AggError::Invalid("noise seed".into()))?;
            Some((Gaussian::new(seed, n.stream), n.sigma))
        }
        None => None,
    };
    let mut cutter = PieceCutter::new(req.out_prefix.clone());
    let mut written = Vec::new();
    let mut non_finite = 0u64;
    let mut out = Vec::new();
    for w in windows(&req.base_segments) {
        let base = blobs.read(&req.base_pieces, w.bytes.clone()).await?;
        let slot = values
            .get(w.acc.clone())
            .ok_or_else(|| AggError::Invalid("segment beyond the shard".into()))?;
        out.clear();
        non_finite += publish_slice(
            w.dtype,
            &base,
            slot,
            req.total_weight,
            noise.as_mut().map(|(g, sigma)| (g, *sigma)),
            &mut out,
        );
        // Keep counting after an overflow (the reason names how many), but write nothing more.
        if non_finite == 0 {
            for (key, bytes) in cutter.push(&out) {
                blobs.put(&key, bytes).await?;
                written.push(key);
            }
        }
    }
    if non_finite > 0 {
        blobs.delete(written).await?;
        return Ok(PublishReply::NonFinite { count: non_finite });
    }
    let (last, pieces) = cutter.finish();
    if let Some((key, bytes)) = last {
        blobs.put(&key, bytes).await?;
    }
    Ok(PublishReply::Written { pieces })
}
