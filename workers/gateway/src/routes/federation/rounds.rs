//! Rounds in the control plane: create (which starts the round's coordinator), list, read live
//! progress, cancel. Creating and cancelling are `service::federation::round_lifecycle`'s.

use edgeplane_core::auth::{authorize, Action};
use edgeplane_core::fl::RoundState;
use edgeplane_core::ids::{OrgId, RoundId};
use edgeplane_core::views::federation::RoundBody;
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use serde::Deserialize;

use super::common::{org_id, query};
use crate::authn;
use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::federation::round_lifecycle::{self, CreateRound};
use crate::service::federation::rounds;

pub async fn create(cx: &mut Cx<'_>) -> HttpResult {
    let body: CreateRound = cx.json().await?;
    let round = round_lifecycle::create(cx, body).await?;
    respond::created(&RoundBody { round })
}

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    let org = org_id(cx)?;
    let state = match query(cx, "state")? {
        Some(s) => Some(
            RoundState::parse(&s)
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidQuery, "unknown state"))?,
        ),
        None => None,
    };
    respond::ok(&rounds::list(cx.db(), &org, state).await?)
}

pub async fn get(cx: &mut Cx<'_>) -> HttpResult {
    let org = org_id(cx)?;
    let id: RoundId = cx.id("round")?;
    let round = rounds::get(cx.db(), cx.env, &org, &id).await?;
    respond::ok(&RoundBody { round })
}

/// `GET /v1/orgs/{org}/rounds/{round}/metrics`: training metrics, funnel and fleet health.
pub async fn metrics(cx: &mut Cx<'_>) -> HttpResult {
    let org = org_id(cx)?;
    let id: RoundId = cx.id("round")?;
    respond::ok(&rounds::metrics(cx.db(), cx.env, &org, &id).await?)
}

/// `GET /v1/rounds/{round}`: the same view, for any principal with access to the round's org.
pub async fn get_by_id(cx: &mut Cx<'_>) -> HttpResult {
    let id: RoundId = cx.id("round")?;
    #[derive(Deserialize)]
    struct OrgOf {
        org_id: String,
    }
    let org: OrgOf = cx
        .db()
        .first(
            "SELECT org_id FROM fl_rounds WHERE id = ?",
            args![id.as_str()],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("round"))?;
    let access = authn::org_access(cx.db(), &cx.principal, &org.org_id)
        .await
        .map_err(|_| ApiError::not_found("round"))?;
    authorize(&access, Action::ReadRounds)?;
    let org: OrgId = org.org_id.parse().map_err(|_| ApiError::internal())?;
    let round = rounds::get(cx.db(), cx.env, &org, &id).await?;
    respond::ok(&RoundBody { round })
}

/// Cancels a round. Answers 200 when D1 has the cancel, 202 while the coordinator is still
/// retrying that write (the round is cancelled either way).
pub async fn cancel(cx: &mut Cx<'_>) -> HttpResult {
    let id: RoundId = cx.id("round")?;
    let done = round_lifecycle::cancel(cx, &id).await?;
    let body = RoundBody { round: done.round };
    if done.recorded {
        respond::ok(&body)
    } else {
        respond::json(202, &body)
    }
}
