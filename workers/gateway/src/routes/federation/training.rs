//! The Octomil SDK's top-level `FederatedClient` (`octomil.FederatedClient`): model metadata,
//! `versions/latest`, round assignment and status, and `POST /api/v1/training/weights`.
//!
//! A device sees only what it is offered: the models and base versions of rounds it may join now
//! (the same rule as offers and downloads); anything else is 404. An uploaded `np.save` array is
//! read by `edgeplane_core::fl::npy` against the round's base layout, turned into a safetensors
//! update, and then takes the device protocol's own path — join, initiate, part grant, R2, part
//! recorded, complete with the one validator and the coordinator's verdict — so it is validated,
//! weighted and folded exactly like every other update. The round config served here never names
//! `secure_aggregation` (the SDK's basic `SecAggClient` uploads its shares in the clear).

use base64::Engine;
use edgeplane_core::crypto::hash::sha256_hex;
use edgeplane_core::fl::npy::{self, NpyError};
use edgeplane_core::fl::pieces::Piece;
use edgeplane_core::fl::validate::{UpdateFormat, UpdateMeta};
use edgeplane_core::fl::wire::{
    CompleteBegin, CompleteBeginReply, CompleteFinish, InitiateRequest, JoinRequest, PartDone,
    PartRequest, ParticipationId,
};
use edgeplane_core::fl::RejectReason;
use edgeplane_core::ids::{RoundId, UploadId};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::query;
use super::protocol::{answer, base_layout, participant_device};
use crate::clients::round::RoundClient;
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::service::federation::corrupt;
use crate::service::federation::ingest;
use crate::service::federation::rounds::{self, offered_clause, RoundRow, ROUND_COLUMNS};
use crate::storage::R2Blobs;

/// Rounds this device may join now, optionally of one model: those aimed at a group it is in
/// before those open to the whole org (the SDK takes the first as its assignment, and a round
/// targeted at the device is the more specific offer), then soonest deadline first.
async fn offered_rounds(
    cx: &Cx<'_>,
    org_id: &str,
    device_id: &str,
    model_id: Option<&str>,
) -> Result<Vec<RoundRow>, ApiError> {
    let model_id = model_id.map(str::to_owned);
    let rows: Vec<RoundRow> = cx
        .db()
        .all(
            &format!(
                "SELECT {ROUND_COLUMNS} FROM fl_rounds r JOIN fl_model_versions v ON v.id = r.base_version_id \
                 WHERE {} AND (? IS NULL OR r.model_id = ?) ORDER BY r.device_group_id IS NULL, r.deadline_at_ms LIMIT 100",
                offered_clause()
            ),
            args![org_id, now_ms(), device_id, model_id.clone(), model_id],
        )
        .await?;
    Ok(rows)
}

/// A round as `FederatedClient` reads it (`get_round_assignment`, `get_round_status`,
/// `join_round`'s `config`).
fn round_entry(r: &RoundRow) -> Result<serde_json::Value, ApiError> {
    let v = rounds::view(r)?;
    let mut config = json!({
        "model_id": v.model_id,
        "version": v.base_version,
        "algorithm": v.aggregation.algorithm,
    });
    // `join_round` clips at `clip_norm` when the key is present; a round without one has none.
    if let Some(c) = v.aggregation.clip_norm {
        config["clip_norm"] = json!(c);
    }
    Ok(json!({
        "id": v.id,
        "round_id": v.id,
        "model_id": v.model_id,
        "version": v.base_version,
        "status": v.state,
        "deadline_at": v.deadline_at,
        "config": config,
    }))
}

/// `GET /api/v1/models?org_id=`: the models of the rounds offered to this device
/// (`FederatedClient._resolve_model_id` looks names up here).
pub async fn list_models(cx: &mut Cx<'_>) -> HttpResult {
    let dev = participant_device(cx)?;
    if query(cx, "org_id")?.is_some_and(|o| o != dev.org_id) {
        return Err(ApiError::not_found("org"));
    }
    #[derive(Deserialize, Serialize)]
    struct ModelEntry {
        id: String,
        name: String,
    }
    let models: Vec<ModelEntry> = cx
        .db()
        .all(
            &format!(
                "SELECT DISTINCT m.id, m.name FROM fl_models m JOIN fl_rounds r ON r.model_id = m.id \
                 WHERE {} ORDER BY m.name LIMIT 100",
                offered_clause()
            ),
            args![&dev.org_id, now_ms(), &dev.id],
        )
        .await?;
    respond::ok(&json!({ "models": models }))
}

/// `GET /api/v1/models/{model}`: a model offered to this device (a round it may join now).
pub async fn get_model(cx: &mut Cx<'_>) -> HttpResult {
    let dev = participant_device(cx)?;
    let model = cx.param("model")?.to_owned();
    let offered = offered_rounds(cx, &dev.org_id, &dev.id, Some(model.as_str())).await?;
    let Some(r) = offered.first() else {
        return Err(ApiError::not_found("model"));
    };
    #[derive(Deserialize)]
    struct Name {
        name: String,
    }
    let m: Name = cx
        .db()
        .first(
            "SELECT name FROM fl_models WHERE id = ? AND org_id = ?",
            args![&r.model_id, &dev.org_id],
        )
        .await?
        .ok_or_else(|| corrupt("round model"))?;
    respond::ok(&json!({
        "id": r.model_id,
        "name": m.name,
        "latest_version": r.base_version,
        "architecture": {},
    }))
}

/// `GET /api/v1/models/{model}/versions/latest`: the newest base version among the rounds this
/// device may join now (so `pull_model` downloads only what was offered).
pub async fn latest_version(cx: &mut Cx<'_>) -> HttpResult {
    let dev = participant_device(cx)?;
    let model = cx.param("model")?.to_owned();
    let offered = offered_rounds(cx, &dev.org_id, &dev.id, Some(model.as_str())).await?;
    let r = offered
        .iter()
        .max_by_key(|r| r.base_version)
        .ok_or_else(|| ApiError::not_found("model version"))?;
    respond::ok(&json!({
        "model_id": r.model_id,
        "version": r.base_version,
        "version_id": r.base_version_id,
    }))
}

/// `GET /api/v1/training/rounds?device_id=&status=active`: the rounds this device may join.
pub async fn list_rounds(cx: &mut Cx<'_>) -> HttpResult {
    let dev = participant_device(cx)?;
    if query(cx, "device_id")?.is_some_and(|d| !dev.is_me(&d)) {
        return Err(ApiError::not_found("device"));
    }
    let rows = offered_rounds(cx, &dev.org_id, &dev.id, None).await?;
    let entries = rows
        .iter()
        .map(round_entry)
        .collect::<Result<Vec<_>, _>>()?;
    respond::ok(&json!({ "rounds": entries }))
}

/// `GET /api/v1/training/rounds/{round}/status`: a round this device may join now.
pub async fn round_status(cx: &mut Cx<'_>) -> HttpResult {
    let dev = participant_device(cx)?;
    let round_id: RoundId = cx.id("round")?;
    let rows = offered_rounds(cx, &dev.org_id, &dev.id, None).await?;
    let r = rows
        .iter()
        .find(|r| r.id == round_id.as_str())
        .ok_or_else(|| ApiError::not_found("round"))?;
    respond::ok(&round_entry(r)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightsBody {
    model_id: String,
    version: serde_json::Value,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    round_id: Option<String>,
    sample_count: i64,
    #[serde(default)]
    metrics: std::collections::BTreeMap<String, f64>,
    #[serde(default)]
    update_format: Option<String>,
    weights_data: String,
    #[serde(default)]
    #[allow(dead_code)]
    detected_features: Option<Vec<String>>,
}

fn npy_error(e: NpyError) -> ApiError {
    let reason = match e {
        NpyError::WrongDtype { .. } | NpyError::WrongShape { .. } => RejectReason::TensorMismatch,
        _ => RejectReason::Malformed,
    };
    reason.to_error(&e.to_string())
}

/// `POST /api/v1/training/weights`: one `np.save` update (base64 in JSON, as the SDK sends it)
/// for the round this device may join on that model version (or the `round_id` it names).
pub async fn weights(cx: &mut Cx<'_>) -> HttpResult {
    let dev = participant_device(cx)?;
    let body: WeightsBody = cx.json().await?;
    if body.device_id.as_deref().is_some_and(|d| !dev.is_me(d)) {
        return Err(ApiError::not_found("device"));
    }
    if body.update_format.as_deref().unwrap_or("weights") != "delta" {
        return Err(ApiError::validation(
            "update_format must be \"delta\": rounds average deltas from the base version \
             (FederatedClient.train(..., update_format=\"delta\"))",
        ));
    }
    let version = match &body.version {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| ApiError::validation("version must be a version number"))?;
    let offered = offered_rounds(cx, &dev.org_id, &dev.id, Some(body.model_id.as_str())).await?;
    let round = offered
        .into_iter()
        .find(|r| r.base_version == version && body.round_id.as_ref().is_none_or(|id| *id == r.id))
        .ok_or_else(|| ApiError::not_found("round for this model version"))?;
    let file = base64::engine::general_purpose::STANDARD
        .decode(body.weights_data.as_bytes())
        .map_err(|_| RejectReason::Malformed.to_error("weights_data is not base64"))?;
    let layout = base_layout(cx, &round, &dev.org_id).await?;
    let update = npy::to_safetensors(&file, &layout).map_err(npy_error)?;
    drop(file);

    // From here on, the device protocol's own steps.
    let round_id = round.round_id()?;
    let coordinator = RoundClient::for_round(cx.env, &round_id)?;
    let joined = coordinator
        .join(&JoinRequest {
            participation_id: ParticipationId::generate(now_ms())?,
            device_id: dev.device_id()?,
            capabilities: json!({"client": "octomil.FederatedClient"}),
        })
        .await?;
    let size = update.len() as u64;
    let started = coordinator
        .initiate(&InitiateRequest {
            upload_id: UploadId::generate(now_ms())?,
            participation_id: joined.participation_id,
            device_id: dev.device_id()?,
            meta: UpdateMeta {
                sample_count: body.sample_count,
                metrics: body.metrics,
                format: UpdateFormat::Safetensors,
                sha256: sha256_hex(&update),
                size,
            },
            part_count: Some(1),
        })
        .await?;
    let upload_id = started.upload_id;
    let grant = coordinator
        .part_grant(&PartRequest {
            upload_id: upload_id.clone(),
            part: 0,
        })
        .await?;
    if size > grant.max_bytes {
        return Err(RejectReason::TooLarge.to_error("the update is larger than the round allows"));
    }
    let nonce = hex::encode(edgeplane_core::crypto::random_bytes::<6>()?);
    let key = format!("staging/{round_id}/{upload_id}/00000-{nonce}");
    let blobs = R2Blobs::from_env(cx.env)?;
    blobs.put_bytes(&key, update).await?;
    let stored = Piece {
        key: key.clone(),
        size,
    };
    let done = PartDone {
        upload_id: upload_id.clone(),
        part: 0,
        key,
        size,
        stream_state: None,
    };
    if let Err(e) = coordinator.part_done(&done).await {
        blobs.discard(std::slice::from_ref(&stored)).await;
        return Err(e);
    }
    let begin = coordinator
        .complete_begin(&CompleteBegin {
            upload_id: upload_id.clone(),
            device_id: dev.device_id()?,
            meta: None,
        })
        .await?;
    if let CompleteBeginReply::Done { outcome } = begin {
        return answer(outcome, &round_id, &upload_id);
    }
    let verdict = ingest::verdict(&blobs, begin).await?;
    let outcome = coordinator
        .complete_finish(&CompleteFinish {
            upload_id: upload_id.clone(),
            verdict,
        })
        .await?;
    answer(outcome, &round_id, &upload_id)
}
