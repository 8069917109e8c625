//! Models and their versions as the control plane sees them: create and list models, upload a
//! base version (streamed into R2 pieces while hashed and its header parsed), list, show and
//! approve versions, and stream a version's bytes. The JSON routes and the console call these.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::fl::pieces::{self, BlobError, Blobs, Piece, PieceCutter, READ_WINDOW};
use edgeplane_core::fl::safetensors::{self, FormatError, HeaderReader};
use edgeplane_core::fl::versions::NewVersion;
use edgeplane_core::http::BodyLimit;
use edgeplane_core::ids::{new_id, ModelId};
use edgeplane_core::time::IsoMillis;
use edgeplane_core::views::federation::{
    Model, ModelFormat, ModelList, ModelVersion, ModelVersionList, VersionStatus,
};
use edgeplane_core::{validate, ApiError};
use edgeplane_runtime::args;
use edgeplane_runtime::db::{OrInternal, OrgBatch};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use worker::Response;

use super::versions::{load_version, VersionRow, VERSION_SELECT};
use super::{corrupt, stored_id};
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::storage::R2Blobs;

/// A base model version (safetensors), streamed to R2 in pieces. The platform's own request
/// limit (100 MB on Free/Pro, up to 500 MB on Enterprise) applies first.
pub const MODEL_BODY: BodyLimit = BodyLimit(500 * 1024 * 1024);

/// A storage fault while writing a base version: logged with its cause, answered as internal.
fn blob_error(e: BlobError) -> ApiError {
    edgeplane_runtime::log::error("model upload", &e.to_string());
    ApiError::internal()
}

/// `POST /v1/orgs/{org}/models`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateModel {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Deserialize)]
pub struct ModelRow {
    pub id: String,
    name: String,
    description: Option<String>,
    created_at_ms: i64,
    latest_version: Option<i64>,
}

fn model_view(m: ModelRow) -> Result<Model, ApiError> {
    Ok(Model {
        id: stored_id(&m.id)?,
        name: m.name,
        description: m.description,
        latest_version: m.latest_version,
        created_at: IsoMillis(m.created_at_ms),
    })
}

const MODEL_SELECT: &str = "SELECT m.id, m.name, m.description, m.created_at_ms, \
     (SELECT max(version) FROM fl_model_versions v WHERE v.model_id = m.id) AS latest_version FROM fl_models m";

pub async fn create(cx: &Cx<'_>, body: CreateModel) -> Result<Model, ApiError> {
    let name = validate::display_name(&body.name, "name")?;
    let description = match body.description {
        Some(d) if d.chars().count() > 1000 => {
            return Err(ApiError::validation(
                "description must be at most 1000 characters",
            ))
        }
        d => d,
    };
    let org_id = cx.org()?.org_id.clone();
    let now = now_ms();
    let id = ModelId::generate(now)?;
    let batch = OrgBatch::new(&org_id).insert(
        "fl_models",
        &["id", "name", "description", "created_by", "created_at_ms"],
        args![id.as_str(), &name, description, &cx.principal.id, now],
    );
    let event =
        Event::new(AuditAction::ModelCreated, "model", id.as_str()).meta(json!({"name": name}));
    cx.commit(batch, [event]).await?;
    get(cx, &id).await
}

async fn load_model(cx: &Cx<'_>, id: &ModelId) -> Result<ModelRow, ApiError> {
    cx.db()
        .first(
            &format!("{MODEL_SELECT} WHERE m.id = ? AND m.org_id = ?"),
            args![id.as_str(), &cx.org()?.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("model"))
}

pub async fn list(cx: &Cx<'_>) -> Result<ModelList, ApiError> {
    let rows: Vec<ModelRow> = cx
        .db()
        .all(
            &format!("{MODEL_SELECT} WHERE m.org_id = ? ORDER BY m.name LIMIT 500"),
            args![&cx.org()?.org_id],
        )
        .await?;
    Ok(ModelList {
        models: rows.into_iter().map(model_view).collect::<Result<_, _>>()?,
    })
}

/// Model `id` of the org `cx` acts in (another org's: 404).
pub async fn get(cx: &Cx<'_>, id: &ModelId) -> Result<Model, ApiError> {
    model_view(load_model(cx, id).await?)
}

pub fn version_view(v: &VersionRow) -> Result<ModelVersion, ApiError> {
    let layout = v.layout()?;
    Ok(ModelVersion {
        id: stored_id(&v.id)?,
        model_id: stored_id(&v.model_id)?,
        version: v.version,
        parent_id: v.parent_id.as_deref().map(stored_id).transpose()?,
        parent_version: v.parent_version,
        round_id: v.round_id.as_deref().map(stored_id).transpose()?,
        status: match v.status.as_str() {
            "ready" => VersionStatus::Ready,
            "approved" => VersionStatus::Approved,
            _ => return Err(corrupt("version status")),
        },
        sha256: v.sha256.clone(),
        size_bytes: v.size_bytes,
        parameters: v.parameters,
        tensors: layout.tensors.len(),
        format: ModelFormat::Safetensors,
        aggregation: v
            .aggregation
            .as_deref()
            .map(|a| serde_json::from_str(a).map_err(|_| corrupt("version aggregation")))
            .transpose()?,
        created_at: IsoMillis(v.created_at_ms),
        approved_at: v.approved_at_ms.map(IsoMillis),
        layout: None,
    })
}

fn format_error(e: FormatError) -> ApiError {
    match e {
        FormatError::Malformed(m) | FormatError::Mismatch(m) => {
            ApiError::validation(format!("not a usable safetensors file: {m}"))
        }
    }
}

/// Uploads a base version of model `model_id`: `body` (the file's bytes, in chunks as they
/// arrive) streams into R2 pieces while it is hashed and its header parsed, so a model of
/// hundreds of megabytes never sits in the isolate's memory. `declared` is the request's
/// `Content-Length`, refused at once when over [`MODEL_BODY`]; the bytes are counted too.
pub async fn upload_version<S, B>(
    cx: &Cx<'_>,
    model_id: &ModelId,
    declared: Option<u64>,
    mut body: S,
) -> Result<ModelVersion, ApiError>
where
    S: Stream<Item = Result<B, ApiError>> + Unpin,
    B: AsRef<[u8]>,
{
    let org_id = cx.org()?.org_id.clone();
    let model = load_model(cx, model_id).await?;
    let limit = MODEL_BODY;
    limit.check_declared(declared)?;
    let now = now_ms();
    let version_id = new_id("mv", now)?;
    let blobs = R2Blobs::from_env(cx.env)?;
    let mut cutter = PieceCutter::new(format!("models/{}/{}", model.id, version_id));
    let mut hasher = Sha256::new();
    // Bounded by the fixed cap for bases and refused from the length prefix alone if over it.
    let mut reader = HeaderReader::for_base();
    let mut header: Option<safetensors::Header> = None;
    let mut total: u64 = 0;
    let result: Result<(), ApiError> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            let chunk = chunk.as_ref();
            total += chunk.len() as u64;
            if total > limit.0 as u64 {
                return Err(limit.too_large());
            }
            hasher.update(chunk);
            if header.is_none() {
                header = reader.feed(chunk).map_err(format_error)?.map(|(h, _)| h);
            }
            for (key, bytes) in cutter.push(chunk) {
                blobs.put(&key, bytes).await.map_err(blob_error)?;
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        blobs.discard(cutter.pieces()).await;
        return Err(e);
    }
    let (last, pieces) = cutter.finish();
    if let Some((key, bytes)) = last {
        if let Err(e) = blobs.put(&key, bytes).await {
            blobs.discard(&pieces).await;
            return Err(blob_error(e));
        }
    }
    let cleanup = |e: ApiError| (e, pieces.clone());
    let checked: Result<(safetensors::Header, String), (ApiError, Vec<Piece>)> = (|| {
        let h = header.ok_or_else(|| {
            cleanup(format_error(FormatError::Malformed(
                "the file ends inside its header".into(),
            )))
        })?;
        if h.file_len() != total {
            return Err(cleanup(ApiError::validation(
                "not a usable safetensors file: the data section does not end where the file does",
            )));
        }
        Ok((h, hex::encode(hasher.finalize())))
    })();
    let (h, sha) = match checked {
        Ok(v) => v,
        Err((e, pieces)) => {
            blobs.discard(&pieces).await;
            return Err(e);
        }
    };
    let layout = h.layout();
    let event = Event::new(
        AuditAction::ModelVersionCreated,
        "model_version",
        &version_id,
    )
    .meta(json!({"model_id": model.id, "sha256": sha, "size_bytes": total, "source": "upload"}));
    let version = NewVersion {
        id: &version_id,
        model_id: &model.id,
        parent_id: None,
        round_id: None,
        sha256: &sha,
        size_bytes: total as i64,
        parameters: layout.total_elements() as i64,
        layout: serde_json::to_string(&layout).map_err(|_| ApiError::internal())?,
        pieces: serde_json::to_string(&pieces).map_err(|_| ApiError::internal())?,
        aggregation: None,
        created_by: &cx.principal.id,
        created_at_ms: now,
    };
    let batch = OrgBatch::new(&org_id).insert_select(
        NewVersion::TABLE,
        NewVersion::COLUMNS,
        NewVersion::SELECT,
        version.values(),
    );
    if let Err(e) = cx.commit(batch, [event]).await {
        blobs.discard(&pieces).await;
        return Err(e.into());
    }
    version_view(&load_version(cx, &model.id, &org_id, &version_id).await?)
}

/// A model's versions, newest first.
pub async fn list_versions(cx: &Cx<'_>, model_id: &ModelId) -> Result<ModelVersionList, ApiError> {
    let model = load_model(cx, model_id).await?;
    let rows: Vec<VersionRow> = cx
        .db()
        .all(
            &format!("{VERSION_SELECT} WHERE v.model_id = ? ORDER BY v.version DESC LIMIT 500"),
            args![&model.id],
        )
        .await?;
    Ok(ModelVersionList {
        versions: rows.iter().map(version_view).collect::<Result<_, _>>()?,
    })
}

/// Version `which` (number or id) of a model of the org `cx` acts in, with its layout.
pub async fn get_version(
    cx: &Cx<'_>,
    model_id: &ModelId,
    which: &str,
) -> Result<ModelVersion, ApiError> {
    let v = load_version(cx, model_id.as_str(), &cx.org()?.org_id, which).await?;
    let mut version = version_view(&v)?;
    version.layout = Some(v.layout()?);
    Ok(version)
}

/// Approves a version (once: an approved one answers 409), audited in the same batch.
pub async fn approve(
    cx: &Cx<'_>,
    model_id: &ModelId,
    which: &str,
) -> Result<ModelVersion, ApiError> {
    let org_id = cx.org()?.org_id.clone();
    let v = load_version(cx, model_id.as_str(), &org_id, which).await?;
    if v.status == "approved" {
        return Err(ApiError::conflict("this version is already approved"));
    }
    let now = now_ms();
    let event = Event::new(AuditAction::ModelVersionApproved, "model_version", &v.id).meta(json!({
        "model_id": v.model_id, "version": v.version, "sha256": v.sha256, "round_id": v.round_id,
    }));
    let batch = OrgBatch::new(&org_id)
        .guard(
            "EXISTS (SELECT 1 FROM fl_model_versions WHERE id = ? AND org_id = ? AND status = 'ready')",
            args![&v.id, &org_id],
            ApiError::conflict("this version is already approved"),
        )
        .update(
            "fl_model_versions",
            "status = 'approved', approved_by = ?, approved_at_ms = ?",
            args![&cx.principal.id, now],
            "id = ?",
            args![&v.id],
        );
    cx.commit(batch, [event]).await?;
    version_view(&load_version(cx, model_id.as_str(), &org_id, &v.id).await?)
}

/// The version's bytes as a response, streamed piece by piece (one read window in memory),
/// with its size, SHA-256 and a file name.
pub fn download(cx: &Cx<'_>, v: &VersionRow) -> Result<Response, ApiError> {
    let pieces = v.pieces()?;
    let blobs = R2Blobs::from_env(cx.env)?;
    let size = pieces::total(&pieces);
    let windows = futures_util::stream::unfold(0u64, move |at| {
        let blobs = blobs.clone();
        let pieces = pieces.clone();
        async move {
            if at >= size {
                return None;
            }
            let hi = (at + READ_WINDOW).min(size);
            let r = blobs
                .read(&pieces, at..hi)
                .await
                .map_err(|e| worker::Error::RustError(e.to_string()));
            Some((r, hi))
        }
    });
    let mut resp = Response::from_stream(windows).or_internal("stream response")?;
    let h = resp.headers_mut();
    let _ = h.set("content-type", "application/octet-stream");
    let _ = h.set("content-length", &size.to_string());
    let _ = h.set("x-edgeplane-sha256", &v.sha256);
    let _ = h.set(
        "content-disposition",
        &format!(
            "attachment; filename=\"{}-v{}.safetensors\"",
            v.model_id, v.version
        ),
    );
    Ok(resp)
}

/// The request's `Content-Length`, if it states one.
pub fn declared_length(cx: &Cx<'_>) -> Option<u64> {
    cx.req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// The request's `Content-Type` (empty if none).
pub fn content_type(cx: &Cx<'_>) -> String {
    cx.req
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Whether the request's content type is one a base version's raw bytes may come as.
pub fn is_raw_model(cx: &Cx<'_>) -> bool {
    let mime = content_type(cx)
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/octet-stream" || mime == "application/vnd.safetensors"
}

/// The request body as the chunks `models::upload_version` takes.
pub fn body_chunks(
    cx: &mut Cx<'_>,
) -> Result<impl Stream<Item = Result<Vec<u8>, ApiError>> + Unpin, ApiError> {
    let stream = cx
        .req
        .stream()
        .map_err(|_| ApiError::validation("the request has no body"))?;
    Ok(stream.map(|c| c.or_internal("read body")))
}
