//! Models and their versions. A version is a safetensors file in R2 (as pieces) with its tensor
//! manifest, checksum and size in D1, plus where it came from: its parent version and the round
//! that produced it (none for an uploaded base). The work is `service::federation::models`'s;
//! what stays here is the device's download rule.

use edgeplane_core::fl::device_scope::DeviceScope;
use edgeplane_core::fl::rollout::desired_for_device;
use edgeplane_core::ids::ModelId;
use edgeplane_core::views::federation::{ModelBody, ModelVersionBody};
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;

use super::common::{device, DeviceCx};
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::service::federation::deployments::candidates_for_device;
use crate::service::federation::models::{
    self, body_chunks, declared_length, is_raw_model, CreateModel,
};
use crate::service::federation::rounds::offered_clause;
use crate::service::federation::versions::{load_version, VersionRow};

pub async fn create(cx: &mut Cx<'_>) -> HttpResult {
    let body: CreateModel = cx.json().await?;
    respond::created(&ModelBody {
        model: models::create(cx, body).await?,
    })
}

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    respond::ok(&models::list(cx).await?)
}

pub async fn get(cx: &mut Cx<'_>) -> HttpResult {
    let id: ModelId = cx.id("model")?;
    respond::ok(&ModelBody {
        model: models::get(cx, &id).await?,
    })
}

/// The body is the safetensors file itself, streamed (`models::upload_version`).
pub async fn upload_version(cx: &mut Cx<'_>) -> HttpResult {
    if !is_raw_model(cx) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "upload the safetensors file as application/octet-stream",
        ));
    }
    let model_id: ModelId = cx.id("model")?;
    let declared = declared_length(cx);
    let body = body_chunks(cx)?;
    respond::created(&ModelVersionBody {
        version: models::upload_version(cx, &model_id, declared, body).await?,
    })
}

pub async fn list_versions(cx: &mut Cx<'_>) -> HttpResult {
    let model_id: ModelId = cx.id("model")?;
    respond::ok(&models::list_versions(cx, &model_id).await?)
}

pub async fn get_version(cx: &mut Cx<'_>) -> HttpResult {
    let model_id: ModelId = cx.id("model")?;
    let which = cx.param("version")?.to_owned();
    respond::ok(&ModelVersionBody {
        version: models::get_version(cx, &model_id, &which).await?,
    })
}

/// The version's bytes, streamed piece by piece: to the control plane, or to a device only what
/// it was offered (see [`offered_to_device`]).
pub async fn download(cx: &mut Cx<'_>, as_device: bool) -> HttpResult {
    let model_id: ModelId = cx.id("model")?;
    let which = cx.param("version")?.to_owned();
    let v = if as_device {
        let dev = device(cx)?;
        dev.require(dev.scopes.may_download_models(), "model downloads")?;
        let v = load_version(cx, model_id.as_str(), &dev.org_id, &which).await?;
        if !offered_to_device(cx, &dev, &v).await? {
            return Err(ApiError::not_found("model version"));
        }
        v
    } else {
        let org_id = cx.org()?.org_id.clone();
        load_version(cx, model_id.as_str(), &org_id, &which).await?
    };
    models::download(cx, &v)
}

/// Whether a device may download version `v`: the base version of a round it could join now
/// (what its offers list: open or collecting, before the deadline, its group), or a version
/// deployed to it. Anything else answers 404 exactly like a version that does not exist, so a
/// device token learns nothing about the org's other models and versions.
async fn offered_to_device(cx: &Cx<'_>, dev: &DeviceCx, v: &VersionRow) -> Result<bool, ApiError> {
    let may_join = dev.scopes.contains(DeviceScope::DevicesWrite);
    if may_join && base_of_an_offered_round(cx, dev, &v.id).await? {
        return Ok(true);
    }
    deployed_to_device(cx, dev, v).await
}

async fn base_of_an_offered_round(
    cx: &Cx<'_>,
    dev: &DeviceCx,
    version_id: &str,
) -> Result<bool, ApiError> {
    let found: Option<serde_json::Value> = cx
        .db()
        .first(
            &format!(
                "SELECT 1 AS ok FROM fl_rounds r WHERE r.base_version_id = ? AND {} LIMIT 1",
                offered_clause()
            ),
            args![version_id, &dev.org_id, now_ms(), &dev.id],
        )
        .await?;
    Ok(found.is_some())
}

/// A version deployed to this device: what its desired state names right now (its groups, the
/// rollout's current stage, not rolled back).
async fn deployed_to_device(cx: &Cx<'_>, dev: &DeviceCx, v: &VersionRow) -> Result<bool, ApiError> {
    let candidates = candidates_for_device(cx.db(), &dev.org_id, &dev.id, &dev.targets()?).await?;
    Ok(desired_for_device(&dev.id, &candidates)
        .iter()
        .any(|d| d.candidate.version_id == v.id))
}

pub async fn approve(cx: &mut Cx<'_>) -> HttpResult {
    let model_id: ModelId = cx.id("model")?;
    let which = cx.param("version")?.to_owned();
    respond::ok(&ModelVersionBody {
        version: models::approve(cx, &model_id, &which).await?,
    })
}
