//! Blobs in R2 as ordered pieces.
//!
//! Model versions and staged updates are stored as several R2 objects read as one logical byte
//! string: a staged update is the parts a device PUT, a published version is what the
//! aggregators wrote. Reads go by byte range in bounded windows, so no reader ever holds more
//! than one window, whatever the blob's size.

use edgeplane_core::ApiError;
use edgeplane_runtime::db::OrInternal;
use serde::{Deserialize, Serialize};
use worker::{Bucket, Env, Range};

/// The most bytes any reader asks R2 for at once.
pub const READ_WINDOW: u64 = 4 * 1024 * 1024;
/// Size of the pieces writers cut their output into.
pub const WRITE_PIECE: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    pub key: String,
    pub size: u64,
}

pub fn total(pieces: &[Piece]) -> u64 {
    pieces.iter().map(|p| p.size).sum()
}

pub fn bucket(env: &Env) -> Result<Bucket, ApiError> {
    env.bucket("MODELS").or_internal("r2 binding")
}

async fn get_range(
    bucket: &Bucket,
    key: &str,
    offset: u64,
    length: u64,
) -> Result<Vec<u8>, ApiError> {
    let obj = bucket
        .get(key)
        .range(Range::OffsetWithLength { offset, length })
        .execute()
        .await
        .or_internal("r2 get")?
        .ok_or_else(|| {
            edgeplane_runtime::log::error("r2 get", "a recorded piece is missing");
            ApiError::internal()
        })?;
    let body = obj.body().ok_or_else(ApiError::internal)?;
    let bytes = body.bytes().await.or_internal("r2 read")?;
    if bytes.len() as u64 != length {
        edgeplane_runtime::log::error("r2 get", "a piece is shorter than recorded");
        return Err(ApiError::internal());
    }
    Ok(bytes)
}

/// Bytes `start..end` of the blob.
pub async fn read_range(
    bucket: &Bucket,
    pieces: &[Piece],
    start: u64,
    end: u64,
) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity((end.saturating_sub(start)) as usize);
    let mut at = 0u64;
    for p in pieces {
        let (lo, hi) = (start.max(at), end.min(at + p.size));
        if lo < hi {
            out.extend_from_slice(&get_range(bucket, &p.key, lo - at, hi - lo).await?);
        }
        at += p.size;
        if at >= end {
            break;
        }
    }
    Ok(out)
}

/// Calls `each` with consecutive windows of `start..end` (window boundaries fall anywhere).
/// `each` returns `false` to stop early.
pub async fn for_each_window(
    bucket: &Bucket,
    pieces: &[Piece],
    start: u64,
    end: u64,
    mut each: impl FnMut(&[u8]) -> Result<bool, ApiError>,
) -> Result<(), ApiError> {
    let mut at = start;
    while at < end {
        let hi = (at + READ_WINDOW).min(end);
        let buf = read_range(bucket, pieces, at, hi).await?;
        if !each(&buf)? {
            return Ok(());
        }
        at = hi;
    }
    Ok(())
}

pub async fn delete_all(bucket: &Bucket, pieces: &[Piece]) {
    let keys: Vec<String> = pieces.iter().map(|p| p.key.clone()).collect();
    for chunk in keys.chunks(1000) {
        if let Err(e) = bucket.delete_multiple(chunk.to_vec()).await {
            edgeplane_runtime::log::warn("r2 delete", &e.to_string());
        }
    }
}

/// Writes a blob as pieces of [`WRITE_PIECE`] bytes under `prefix`.
pub struct PieceWriter {
    prefix: String,
    buf: Vec<u8>,
    pub pieces: Vec<Piece>,
}

impl PieceWriter {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            buf: Vec::new(),
            pieces: Vec::new(),
        }
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends bytes; flushes full pieces.
    pub async fn write(&mut self, bucket: &Bucket, bytes: &[u8]) -> Result<(), ApiError> {
        self.buf.extend_from_slice(bytes);
        while self.buf.len() >= WRITE_PIECE {
            let rest = self.buf.split_off(WRITE_PIECE);
            let full = std::mem::replace(&mut self.buf, rest);
            self.flush_piece(bucket, full).await?;
        }
        Ok(())
    }

    async fn flush_piece(&mut self, bucket: &Bucket, bytes: Vec<u8>) -> Result<(), ApiError> {
        let key = format!("{}/{:05}", self.prefix, self.pieces.len());
        let size = bytes.len() as u64;
        bucket
            .put(&key, bytes)
            .execute()
            .await
            .or_internal("r2 put")?;
        self.pieces.push(Piece { key, size });
        Ok(())
    }

    pub async fn finish(mut self, bucket: &Bucket) -> Result<Vec<Piece>, ApiError> {
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf);
            self.flush_piece(bucket, last).await?;
        }
        Ok(self.pieces)
    }
}
