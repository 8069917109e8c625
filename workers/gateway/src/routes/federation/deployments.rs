//! Deployments in the control plane: create a staged rollout of an approved version to device
//! groups, list, show with per-stage progress, and the transitions (promote, pause, resume,
//! roll back). The work is `service::federation::deployments`'s.

use edgeplane_core::fl::rollout::Transition;
use edgeplane_core::ids::DeploymentId;
use edgeplane_core::views::federation::DeploymentBody;

use super::common::query;
use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::federation::deployments::{self, CreateDeployment};

pub async fn create(cx: &mut Cx<'_>) -> HttpResult {
    let body: CreateDeployment = cx.json().await?;
    respond::created(&DeploymentBody {
        deployment: deployments::create(cx, body).await?,
    })
}

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    let model = query(cx, "model_id")?;
    respond::ok(&deployments::list(cx, model.as_deref()).await?)
}

pub async fn get(cx: &mut Cx<'_>) -> HttpResult {
    let id: DeploymentId = cx.id("deployment")?;
    respond::ok(&DeploymentBody {
        deployment: deployments::get(cx, &id).await?,
    })
}

/// A transition (`deployments::transition`: guarded on where the decision saw the rollout).
pub async fn transition(cx: &mut Cx<'_>, t: Transition) -> HttpResult {
    let id: DeploymentId = cx.id("deployment")?;
    respond::ok(&DeploymentBody {
        deployment: deployments::transition(cx, &id, t).await?,
    })
}
