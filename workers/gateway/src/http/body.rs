//! Reading request bodies within a route's limit.

use edgeplane_core::http::{parse_json, require_json_content_type, BodyLimit};
use edgeplane_core::ApiError;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use worker::Request;

use edgeplane_runtime::db::OrInternal;

/// Reads at most `limit` bytes. The declared `Content-Length` is checked first (cheap refusal);
/// a body framed by it is read in one call, and any other (chunked) body is counted as it
/// streams in and cut off at the limit.
pub async fn read_limited(req: &mut Request, limit: BodyLimit) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    limit.check_declared(declared)?;
    if declared == Some(0) {
        return Ok(Vec::new());
    }
    let chunked = req.headers().has("transfer-encoding").unwrap_or(true);
    if declared.is_some() && !chunked {
        // HTTP framing ends the body at the declared length (checked against the limit above),
        // so one read is bounded; it costs far less than a stream read chunk by chunk.
        let out = req.bytes().await.or_internal("read body")?;
        if out.len() > limit.0 {
            return Err(limit.too_large());
        }
        return Ok(out);
    }
    let mut stream = match req.stream() {
        Ok(s) => s,
        // No body at all.
        Err(_) => return Ok(Vec::new()),
    };
    let mut out = Vec::with_capacity(declared.unwrap_or(0).min(limit.0 as u64) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.or_internal("read body")?;
        if out.len() + chunk.len() > limit.0 {
            return Err(limit.too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Content type, then size, then strict JSON (unknown fields rejected by the target type).
pub async fn json<T: DeserializeOwned>(req: &mut Request, limit: BodyLimit) -> Result<T, ApiError> {
    let ct = req.headers().get("content-type").ok().flatten();
    require_json_content_type(ct.as_deref())?;
    let bytes = read_limited(req, limit).await?;
    parse_json(&bytes)
}

/// For routes whose body is optional JSON: empty means `T::default()`.
pub async fn json_or_default<T: DeserializeOwned + Default>(
    req: &mut Request,
    limit: BodyLimit,
) -> Result<T, ApiError> {
    let ct = req.headers().get("content-type").ok().flatten();
    let bytes = read_limited(req, limit).await?;
    if bytes.is_empty() {
        return Ok(T::default());
    }
    require_json_content_type(ct.as_deref())?;
    parse_json(&bytes)
}
