//! [`Blobs`] over an R2 bucket.

use std::cell::Cell;
use std::ops::Range;
use std::rc::Rc;

use edgeplane_core::fl::pieces::{self, BlobError, Blobs, Piece};
use edgeplane_core::ApiError;
use edgeplane_runtime::db::OrInternal;
use worker::{Bucket, Env};

/// The models bucket (`MODELS`): base versions, published versions, staged update parts.
#[derive(Clone)]
pub struct R2Blobs {
    bucket: Bucket,
    /// Bytes read through this handle (and its clones): how the ingest path's reads per byte
    /// uploaded are measured.
    read: Rc<Cell<u64>>,
}

impl R2Blobs {
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        env.bucket("MODELS")
            .or_internal("r2 binding")
            .map(|bucket| Self {
                bucket,
                read: Rc::new(Cell::new(0)),
            })
    }

    pub fn bytes_read(&self) -> u64 {
        self.read.get()
    }

    async fn get(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, BlobError> {
        let obj = self
            .bucket
            .get(key)
            .range(worker::Range::OffsetWithLength { offset, length })
            .execute()
            .await
            .map_err(|e| BlobError::Io(e.to_string()))?
            .ok_or_else(|| BlobError::Missing(key.to_owned()))?;
        let body = obj
            .body()
            .ok_or_else(|| BlobError::Missing(key.to_owned()))?;
        let bytes = body
            .bytes()
            .await
            .map_err(|e| BlobError::Io(e.to_string()))?;
        if bytes.len() as u64 != length {
            return Err(BlobError::Missing(format!(
                "{key} is shorter than recorded"
            )));
        }
        Ok(bytes)
    }

    /// Deletes a blob's pieces as cleanup after a failure: a leftover is logged, not raised (the
    /// answer is already the failure's).
    pub async fn discard(&self, pieces: &[Piece]) {
        let keys = pieces.iter().map(|p| p.key.clone()).collect();
        if let Err(e) = self.delete(keys).await {
            edgeplane_runtime::log::warn("r2 delete", &e.to_string());
        }
    }

    /// Stores `bytes` as one object (an update the gateway built in memory).
    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), ApiError> {
        self.bucket
            .put(key, worker::Data::Bytes(bytes))
            .execute()
            .await
            .map(|_| ())
            .or_internal("r2 put")
    }

    /// Streams a request body into one object; returns the stored size.
    pub async fn put_stream(
        &self,
        key: &str,
        body: worker::web_sys::ReadableStream,
    ) -> Result<u64, BlobError> {
        let stored = self
            .bucket
            .put(key, worker::Data::ReadableStream(body))
            .execute()
            .await
            .map_err(|e| BlobError::Io(e.to_string()))?;
        Ok(stored.map(|o| o.size()).unwrap_or(0))
    }
}

impl Blobs for R2Blobs {
    async fn read(&self, pieces: &[Piece], range: Range<u64>) -> Result<Vec<u8>, BlobError> {
        let want = range.end.saturating_sub(range.start);
        let mut out = Vec::with_capacity(want as usize);
        for s in pieces::spans(pieces, range) {
            let key = &pieces[s.index].key;
            if out.is_empty() && s.len == want {
                return self.get(key, s.offset, s.len).await;
            }
            out.extend_from_slice(&self.get(key, s.offset, s.len).await?);
        }
        if out.len() as u64 != want {
            return Err(BlobError::Missing("a range past the blob's end".into()));
        }
        Ok(out)
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), BlobError> {
        self.bucket
            .put(key, bytes)
            .execute()
            .await
            .map(|_| ())
            .map_err(|e| BlobError::Io(e.to_string()))
    }

    async fn delete(&self, keys: Vec<String>) -> Result<(), BlobError> {
        for chunk in keys.chunks(1000) {
            self.bucket
                .delete_multiple(chunk.to_vec())
                .await
                .map_err(|e| BlobError::Io(e.to_string()))?;
        }
        Ok(())
    }
}
