//! Storing an update's parts, validating them as they stream in when they arrive in order, and
//! completing an upload — reading the staged bytes only when the stream could not be validated.
//!
//! A part's body is teed: one branch streams into R2, the other through the upload's validator,
//! resumed from where the previous part left it and saved again for the next. So an upload sent
//! in order is read by nobody after it is written but the aggregators, once; `complete` only
//! finishes the validation. Parts out of order (or a replaced part) fall back to one read of the
//! staged bytes at `complete`.

use std::cell::Cell;

use edgeplane_core::fl::pieces::{self, Blobs, Piece};
use edgeplane_core::fl::validate::{Rejection, Validated, Validator};
use edgeplane_core::fl::wire::{CompleteBeginReply, StreamResume};
use edgeplane_core::ApiError;
use edgeplane_runtime::log;
use futures_util::StreamExt;
use worker::wasm_bindgen::JsCast;
use worker::web_sys::ReadableStream;
use worker::ByteStream;

use super::digest::NativeSha256;
use crate::storage::R2Blobs;

/// A stored part, and the validation after it when it was validated while streaming.
pub struct StoredPart {
    pub size: u64,
    pub stream_state: Option<Vec<u8>>,
}

/// Streams `body` into `key`; with `stream`, validates the same bytes on the way.
pub async fn store_part(
    blobs: &R2Blobs,
    key: &str,
    body: ReadableStream,
    stream: Option<StreamResume>,
) -> Result<StoredPart, ApiError> {
    let ended_early = |_| ApiError::bad_request("the part body ended before its Content-Length");
    let Some(s) = stream else {
        let size = blobs.put_stream(key, body).await.map_err(ended_early)?;
        return Ok(StoredPart {
            size,
            stream_state: None,
        });
    };
    let mut validator = match &s.state {
        None => Some(Validator::new(&s.meta, &s.layout, s.shard_starts.clone())),
        // A state that does not resume is not fatal: `complete` validates from storage instead.
        Some(saved) => Validator::resume(&s.meta, &s.layout, s.shard_starts.clone(), saved)
            .map_err(|e| log::warn("part validation", &e.to_string()))
            .ok(),
    };
    let branches = body.tee();
    let to_store: ReadableStream = branches.get(0).unchecked_into();
    let to_check: ReadableStream = branches.get(1).unchecked_into();
    let check = async {
        let mut bytes = ByteStream::from(to_check);
        // The branch is read to its end whatever happens, so the tee never buffers for it.
        while let Some(chunk) = bytes.next().await {
            match (chunk, validator.as_mut()) {
                (Ok(c), Some(v)) => {
                    if v.feed(&c).is_err() {
                        validator = None;
                    }
                }
                (Ok(_), None) => {}
                (Err(_), _) => validator = None,
            }
        }
        validator.map(|v| v.save())
    };
    let (stored, stream_state) =
        futures_util::future::join(blobs.put_stream(key, to_store), check).await;
    Ok(StoredPart {
        size: stored.map_err(ended_early)?,
        stream_state,
    })
}

/// The verdict on a completed upload: finishing the validation done while it streamed in, or
/// validating the staged bytes in one read. (`Done` never reaches here: the caller answers it.)
pub async fn verdict(
    blobs: &R2Blobs,
    begin: CompleteBeginReply,
) -> Result<Result<Validated, Rejection>, ApiError> {
    match begin {
        CompleteBeginReply::Finish {
            meta,
            layout,
            shard_starts,
            state,
            pieces,
        } => {
            let resumed = state
                .as_deref()
                .map(|s| Validator::resume(&meta, &layout, shard_starts.clone(), s));
            match resumed {
                Some(Ok(v)) => Ok(v.finish()),
                // Unreadable saved state (written by another release): validate from storage.
                _ => {
                    log::warn("complete", "saved validation unusable; reading the upload");
                    read_and_validate(blobs, &meta, &layout, shard_starts, &pieces).await
                }
            }
        }
        CompleteBeginReply::Validate {
            meta,
            pieces,
            layout,
            shard_starts,
        } => read_and_validate(blobs, &meta, &layout, shard_starts, &pieces).await,
        CompleteBeginReply::Done { .. } => Err(ApiError::internal()),
    }
}

async fn read_and_validate(
    blobs: &R2Blobs,
    meta: &edgeplane_core::fl::validate::UpdateMeta,
    layout: &edgeplane_core::fl::ModelLayout,
    shard_starts: Vec<u64>,
    staged: &[Piece],
) -> Result<Result<Validated, Rejection>, ApiError> {
    let native = NativeSha256::new();
    let mut validator = if native.is_some() {
        Validator::new_unhashed(meta, layout, shard_starts)
    } else {
        Validator::new(meta, layout, shard_starts)
    };
    let read = Cell::new(0u64);
    let mut early = None;
    for w in pieces::windows(0..pieces::total(staged)) {
        let window = blobs.read(staged, w).await.map_err(|e| {
            log::error("staged update read", &e.to_string());
            ApiError::internal()
        })?;
        read.set(read.get() + window.len() as u64);
        if let Some(h) = &native {
            h.update(&window).await?;
        }
        if let Err(r) = validator.feed(&window) {
            early = Some(r);
            break;
        }
    }
    log::info(
        "r2 read",
        serde_json::json!({"purpose": "validate", "bytes": read.get()}),
    );
    Ok(match (early, native) {
        (Some(r), _) => Err(r),
        (None, Some(h)) => validator.finish_with_digest(&h.finish().await?),
        (None, None) => validator.finish(),
    })
}
