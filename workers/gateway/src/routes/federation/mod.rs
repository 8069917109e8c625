//! Federated learning: device auth, devices and groups, models and versions, rounds, and the
//! device protocol (offers, join, plan, uploads) under `/api/v1`.

mod common;
mod control;
mod deployments;
mod device_auth;
mod devices;
mod groups;
mod models;
mod protocol;
mod rounds;

use edgeplane_core::auth::Action;
use edgeplane_core::fl::participation::MAX_PART_BYTES;
use edgeplane_core::fl::rollout::Transition;
use edgeplane_core::http::{BodyLimit, Method::*};

use super::{route, Access, Cx, Route, RouteId};
use crate::http::respond::HttpResult;

/// One part of an update upload (binary, read as one bounded buffer: never more than a part).
const PART_BODY: BodyLimit = BodyLimit(MAX_PART_BYTES as usize);
/// A base model version (safetensors), streamed to R2 in pieces. The platform's own request
/// limit (100 MB on Free/Pro, up to 500 MB on Enterprise) applies first.
const MODEL_BODY: BodyLimit = BodyLimit(500 * 1024 * 1024);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    MintBootstrapToken,
    ListDevices,
    GetDevice,
    UpdateDevice,
    RevokeDevice,
    CreateGroup,
    ListGroups,
    GetGroup,
    AddGroupMembers,
    CreateModel,
    ListModels,
    GetModel,
    UploadVersion,
    ListVersions,
    GetVersion,
    DownloadVersion,
    ApproveVersion,
    CreateRound,
    ListRounds,
    GetRound,
    CancelRound,
    GetRoundById,
    DeviceBootstrap,
    DeviceRefresh,
    DeviceRevoke,
    Heartbeat,
    Offers,
    Join,
    Plan,
    InitiateUpload,
    PutPart,
    CompleteUpload,
    DeviceDownload,
    CreateDeployment,
    ListDeployments,
    GetDeployment,
    PromoteDeployment,
    PauseDeployment,
    ResumeDeployment,
    RollbackDeployment,
    RegisterDevice,
    Assignments,
    GetDesiredState,
    PostDesiredState,
    Sync,
    ObservedState,
    RoundMetrics,
}

const fn r(id: Id) -> RouteId {
    RouteId::Federation(id)
}

const fn org(action: Action) -> Access {
    Access::Org(action)
}

pub const ROUTES: &[Route] = &[
    route(
        r(Id::MintBootstrapToken),
        Post,
        "/v1/orgs/{org}/devices/bootstrap-tokens",
        BodyLimit::SMALL,
        org(Action::ManageDevices),
    ),
    route(
        r(Id::ListDevices),
        Get,
        "/v1/orgs/{org}/devices",
        BodyLimit::NONE,
        org(Action::ReadDevices),
    ),
    route(
        r(Id::GetDevice),
        Get,
        "/v1/orgs/{org}/devices/{device}",
        BodyLimit::NONE,
        org(Action::ReadDevices),
    ),
    route(
        r(Id::UpdateDevice),
        Patch,
        "/v1/orgs/{org}/devices/{device}",
        BodyLimit::SMALL,
        org(Action::ManageDevices),
    ),
    route(
        r(Id::RevokeDevice),
        Post,
        "/v1/orgs/{org}/devices/{device}/revoke",
        BodyLimit::SMALL,
        org(Action::ManageDevices),
    ),
    route(
        r(Id::CreateGroup),
        Post,
        "/v1/orgs/{org}/device-groups",
        BodyLimit::MEDIUM,
        org(Action::ManageDevices),
    ),
    route(
        r(Id::ListGroups),
        Get,
        "/v1/orgs/{org}/device-groups",
        BodyLimit::NONE,
        org(Action::ReadDevices),
    ),
    route(
        r(Id::GetGroup),
        Get,
        "/v1/orgs/{org}/device-groups/{group}",
        BodyLimit::NONE,
        org(Action::ReadDevices),
    ),
    route(
        r(Id::AddGroupMembers),
        Post,
        "/v1/orgs/{org}/device-groups/{group}/members",
        BodyLimit::MEDIUM,
        org(Action::ManageDevices),
    ),
    route(
        r(Id::CreateModel),
        Post,
        "/v1/orgs/{org}/models",
        BodyLimit::SMALL,
        org(Action::ManageModels),
    ),
    route(
        r(Id::ListModels),
        Get,
        "/v1/orgs/{org}/models",
        BodyLimit::NONE,
        org(Action::ReadModels),
    ),
    route(
        r(Id::GetModel),
        Get,
        "/v1/orgs/{org}/models/{model}",
        BodyLimit::NONE,
        org(Action::ReadModels),
    ),
    route(
        r(Id::UploadVersion),
        Post,
        "/v1/orgs/{org}/models/{model}/versions",
        MODEL_BODY,
        org(Action::ManageModels),
    ),
    route(
        r(Id::ListVersions),
        Get,
        "/v1/orgs/{org}/models/{model}/versions",
        BodyLimit::NONE,
        org(Action::ReadModels),
    ),
    route(
        r(Id::GetVersion),
        Get,
        "/v1/orgs/{org}/models/{model}/versions/{version}",
        BodyLimit::NONE,
        org(Action::ReadModels),
    ),
    route(
        r(Id::DownloadVersion),
        Get,
        "/v1/orgs/{org}/models/{model}/versions/{version}/download",
        BodyLimit::NONE,
        org(Action::ReadModels),
    ),
    route(
        r(Id::ApproveVersion),
        Post,
        "/v1/orgs/{org}/models/{model}/versions/{version}/approve",
        BodyLimit::SMALL,
        org(Action::ManageModels),
    ),
    route(
        r(Id::CreateRound),
        Post,
        "/v1/orgs/{org}/rounds",
        BodyLimit::SMALL,
        org(Action::ManageRounds),
    ),
    route(
        r(Id::ListRounds),
        Get,
        "/v1/orgs/{org}/rounds",
        BodyLimit::NONE,
        org(Action::ReadRounds),
    ),
    route(
        r(Id::GetRound),
        Get,
        "/v1/orgs/{org}/rounds/{round}",
        BodyLimit::NONE,
        org(Action::ReadRounds),
    ),
    route(
        r(Id::RoundMetrics),
        Get,
        "/v1/orgs/{org}/rounds/{round}/metrics",
        BodyLimit::NONE,
        org(Action::ReadRounds),
    ),
    route(
        r(Id::CancelRound),
        Post,
        "/v1/orgs/{org}/rounds/{round}/cancel",
        BodyLimit::SMALL,
        org(Action::ManageRounds),
    ),
    route(
        r(Id::GetRoundById),
        Get,
        "/v1/rounds/{round}",
        BodyLimit::NONE,
        Access::Authenticated,
    ),
    route(
        r(Id::DeviceBootstrap),
        Post,
        "/api/v1/device-auth/bootstrap",
        BodyLimit::SMALL,
        Access::SelfAuthenticated,
    ),
    route(
        r(Id::DeviceRefresh),
        Post,
        "/api/v1/device-auth/refresh",
        BodyLimit::SMALL,
        Access::Public,
    ),
    route(
        r(Id::DeviceRevoke),
        Post,
        "/api/v1/device-auth/revoke",
        BodyLimit::SMALL,
        Access::Public,
    ),
    route(
        r(Id::Heartbeat),
        Post,
        "/api/v1/devices/{device}/heartbeat",
        BodyLimit::SMALL,
        Access::Device,
    ),
    route(
        r(Id::Offers),
        Get,
        "/api/v1/federation/offers",
        BodyLimit::NONE,
        Access::Device,
    ),
    route(
        r(Id::Join),
        Post,
        "/api/v1/federation/rounds/{round}/join",
        BodyLimit::SMALL,
        Access::Device,
    ),
    route(
        r(Id::Plan),
        Get,
        "/api/v1/federation/plans/{plan}",
        BodyLimit::NONE,
        Access::Device,
    ),
    route(
        r(Id::InitiateUpload),
        Post,
        "/api/v1/federation/rounds/{round}/uploads",
        BodyLimit::SMALL,
        Access::Device,
    ),
    route(
        r(Id::PutPart),
        Put,
        "/api/v1/federation/rounds/{round}/uploads/{upload}/parts/{part}",
        PART_BODY,
        Access::SelfAuthenticated,
    ),
    route(
        r(Id::CompleteUpload),
        Post,
        "/api/v1/federation/rounds/{round}/uploads/{upload}/complete",
        BodyLimit::SMALL,
        Access::Device,
    ),
    route(
        r(Id::DeviceDownload),
        Get,
        "/api/v1/models/{model}/versions/{version}/download",
        BodyLimit::NONE,
        Access::Device,
    ),
    route(
        r(Id::CreateDeployment),
        Post,
        "/v1/orgs/{org}/deployments",
        BodyLimit::SMALL,
        org(Action::ManageModels),
    ),
    route(
        r(Id::ListDeployments),
        Get,
        "/v1/orgs/{org}/deployments",
        BodyLimit::NONE,
        org(Action::ReadModels),
    ),
    route(
        r(Id::GetDeployment),
        Get,
        "/v1/orgs/{org}/deployments/{deployment}",
        BodyLimit::NONE,
        org(Action::ReadModels),
    ),
    route(
        r(Id::PromoteDeployment),
        Post,
        "/v1/orgs/{org}/deployments/{deployment}/promote",
        BodyLimit::SMALL,
        org(Action::ManageModels),
    ),
    route(
        r(Id::PauseDeployment),
        Post,
        "/v1/orgs/{org}/deployments/{deployment}/pause",
        BodyLimit::SMALL,
        org(Action::ManageModels),
    ),
    route(
        r(Id::ResumeDeployment),
        Post,
        "/v1/orgs/{org}/deployments/{deployment}/resume",
        BodyLimit::SMALL,
        org(Action::ManageModels),
    ),
    route(
        r(Id::RollbackDeployment),
        Post,
        "/v1/orgs/{org}/deployments/{deployment}/rollback",
        BodyLimit::SMALL,
        org(Action::ManageModels),
    ),
    route(
        r(Id::RegisterDevice),
        Post,
        "/api/v1/devices/register",
        BodyLimit::SMALL,
        Access::Device,
    ),
    route(
        r(Id::Assignments),
        Get,
        "/api/v1/devices/{device}/assignments",
        BodyLimit::NONE,
        Access::Device,
    ),
    route(
        r(Id::GetDesiredState),
        Get,
        "/api/v1/devices/{device}/desired-state",
        BodyLimit::NONE,
        Access::Device,
    ),
    route(
        r(Id::PostDesiredState),
        Post,
        "/api/v1/devices/{device}/desired-state",
        BodyLimit::MEDIUM,
        Access::Device,
    ),
    route(
        r(Id::Sync),
        Post,
        "/api/v1/devices/{device}/sync",
        BodyLimit::MEDIUM,
        Access::Device,
    ),
    route(
        r(Id::ObservedState),
        Post,
        "/api/v1/devices/{device}/observed-state",
        BodyLimit::MEDIUM,
        Access::Device,
    ),
];

pub async fn handle(id: Id, cx: &mut Cx<'_>) -> HttpResult {
    match id {
        Id::MintBootstrapToken => device_auth::mint_bootstrap_token(cx).await,
        Id::DeviceBootstrap => device_auth::bootstrap(cx).await,
        Id::DeviceRefresh => device_auth::refresh(cx).await,
        Id::DeviceRevoke => device_auth::revoke(cx).await,
        Id::ListDevices => devices::list(cx).await,
        Id::GetDevice => devices::get(cx).await,
        Id::UpdateDevice => devices::update(cx).await,
        Id::RevokeDevice => devices::revoke(cx).await,
        Id::Heartbeat => devices::heartbeat(cx).await,
        Id::CreateGroup => groups::create(cx).await,
        Id::ListGroups => groups::list(cx).await,
        Id::GetGroup => groups::get(cx).await,
        Id::AddGroupMembers => groups::add_members(cx).await,
        Id::CreateModel => models::create(cx).await,
        Id::ListModels => models::list(cx).await,
        Id::GetModel => models::get(cx).await,
        Id::UploadVersion => models::upload_version(cx).await,
        Id::ListVersions => models::list_versions(cx).await,
        Id::GetVersion => models::get_version(cx).await,
        Id::DownloadVersion => models::download(cx, false).await,
        Id::DeviceDownload => models::download(cx, true).await,
        Id::ApproveVersion => models::approve(cx).await,
        Id::CreateRound => rounds::create(cx).await,
        Id::ListRounds => rounds::list(cx).await,
        Id::GetRound => rounds::get(cx).await,
        Id::GetRoundById => rounds::get_by_id(cx).await,
        Id::CancelRound => rounds::cancel(cx).await,
        Id::Offers => protocol::offers(cx).await,
        Id::Join => protocol::join(cx).await,
        Id::Plan => protocol::plan(cx).await,
        Id::InitiateUpload => protocol::initiate(cx).await,
        Id::PutPart => protocol::put_part(cx).await,
        Id::CompleteUpload => protocol::complete(cx).await,
        Id::CreateDeployment => deployments::create(cx).await,
        Id::ListDeployments => deployments::list(cx).await,
        Id::GetDeployment => deployments::get(cx).await,
        Id::PromoteDeployment => deployments::transition(cx, Transition::Promote).await,
        Id::PauseDeployment => deployments::transition(cx, Transition::Pause).await,
        Id::ResumeDeployment => deployments::transition(cx, Transition::Resume).await,
        Id::RollbackDeployment => deployments::transition(cx, Transition::Rollback).await,
        Id::RegisterDevice => control::register(cx).await,
        Id::Assignments => control::assignments(cx).await,
        Id::GetDesiredState => control::get_desired_state(cx).await,
        Id::PostDesiredState => control::post_desired_state(cx).await,
        Id::Sync => control::sync(cx).await,
        Id::ObservedState => control::observed_state(cx).await,
        Id::RoundMetrics => rounds::metrics(cx).await,
    }
}
