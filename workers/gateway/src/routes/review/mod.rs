//! Code review: integrations, BYOK LLM providers, webhook intake, review status.

mod hook_secrets;
mod hooks;
mod integrations;
mod providers;
mod reviews;
mod secrets;
mod update;

use edgeplane_core::auth::Action;
use edgeplane_core::http::{BodyLimit, Method::*};
use edgeplane_core::webhook::Platform;

use super::{route, Access, Cx, Route, RouteId};
use crate::http::respond::HttpResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    CreateIntegration,
    ListIntegrations,
    GetIntegration,
    UpdateIntegration,
    DeleteIntegration,
    RotateWebhookSecret,
    ListDeliveries,
    CreateProvider,
    ListProviders,
    GetProvider,
    UpdateProvider,
    DeleteProvider,
    ListReviews,
    GetReview,
    RequeueReview,
    GitHubHook,
    GitLabHook,
    BitbucketHook,
}

const fn r(id: Id) -> RouteId {
    RouteId::Review(id)
}

/// Platforms cap their payloads well below this (GitHub: 25 MB, but pull request events are
/// tens of KB); anything larger is refused before it is read.
const HOOK_BODY: BodyLimit = BodyLimit(2 * 1024 * 1024);

const READ_INT: Access = Access::Org(Action::ReadIntegrations);
const MANAGE_INT: Access = Access::Org(Action::ManageIntegrations);

pub const ROUTES: &[Route] = &[
    route(
        r(Id::CreateIntegration),
        Post,
        "/v1/orgs/{org}/integrations",
        BodyLimit::SMALL,
        MANAGE_INT,
    ),
    route(
        r(Id::ListIntegrations),
        Get,
        "/v1/orgs/{org}/integrations",
        BodyLimit::NONE,
        READ_INT,
    ),
    route(
        r(Id::GetIntegration),
        Get,
        "/v1/orgs/{org}/integrations/{integration}",
        BodyLimit::NONE,
        READ_INT,
    ),
    route(
        r(Id::UpdateIntegration),
        Patch,
        "/v1/orgs/{org}/integrations/{integration}",
        BodyLimit::SMALL,
        MANAGE_INT,
    ),
    route(
        r(Id::DeleteIntegration),
        Delete,
        "/v1/orgs/{org}/integrations/{integration}",
        BodyLimit::NONE,
        MANAGE_INT,
    ),
    route(
        r(Id::RotateWebhookSecret),
        Post,
        "/v1/orgs/{org}/integrations/{integration}/webhook-secret/rotate",
        BodyLimit::SMALL,
        MANAGE_INT,
    ),
    route(
        r(Id::ListDeliveries),
        Get,
        "/v1/orgs/{org}/integrations/{integration}/deliveries",
        BodyLimit::NONE,
        READ_INT,
    ),
    route(
        r(Id::CreateProvider),
        Post,
        "/v1/orgs/{org}/llm-providers",
        BodyLimit::SMALL,
        MANAGE_INT,
    ),
    route(
        r(Id::ListProviders),
        Get,
        "/v1/orgs/{org}/llm-providers",
        BodyLimit::NONE,
        READ_INT,
    ),
    route(
        r(Id::GetProvider),
        Get,
        "/v1/orgs/{org}/llm-providers/{provider}",
        BodyLimit::NONE,
        READ_INT,
    ),
    route(
        r(Id::UpdateProvider),
        Patch,
        "/v1/orgs/{org}/llm-providers/{provider}",
        BodyLimit::SMALL,
        MANAGE_INT,
    ),
    route(
        r(Id::DeleteProvider),
        Delete,
        "/v1/orgs/{org}/llm-providers/{provider}",
        BodyLimit::NONE,
        MANAGE_INT,
    ),
    route(
        r(Id::ListReviews),
        Get,
        "/v1/orgs/{org}/reviews",
        BodyLimit::NONE,
        Access::Org(Action::ReadReviews),
    ),
    route(
        r(Id::GetReview),
        Get,
        "/v1/orgs/{org}/reviews/{review}",
        BodyLimit::NONE,
        Access::Org(Action::ReadReviews),
    ),
    route(
        r(Id::RequeueReview),
        Post,
        "/v1/orgs/{org}/reviews/{review}/requeue",
        BodyLimit::SMALL,
        Access::Org(Action::ManageReviews),
    ),
    route(
        r(Id::GitHubHook),
        Post,
        "/hooks/github/{integration}",
        HOOK_BODY,
        Access::SelfAuthenticated,
    ),
    route(
        r(Id::GitLabHook),
        Post,
        "/hooks/gitlab/{integration}",
        HOOK_BODY,
        Access::SelfAuthenticated,
    ),
    route(
        r(Id::BitbucketHook),
        Post,
        "/hooks/bitbucket/{integration}",
        HOOK_BODY,
        Access::SelfAuthenticated,
    ),
];

pub async fn handle(id: Id, cx: &mut Cx<'_>) -> HttpResult {
    match id {
        Id::CreateIntegration => integrations::create(cx).await,
        Id::ListIntegrations => integrations::list(cx).await,
        Id::GetIntegration => integrations::get(cx).await,
        Id::UpdateIntegration => integrations::update(cx).await,
        Id::DeleteIntegration => integrations::delete(cx).await,
        Id::RotateWebhookSecret => integrations::rotate_webhook_secret(cx).await,
        Id::ListDeliveries => integrations::deliveries(cx).await,
        Id::CreateProvider => providers::create(cx).await,
        Id::ListProviders => providers::list(cx).await,
        Id::GetProvider => providers::get(cx).await,
        Id::UpdateProvider => providers::update(cx).await,
        Id::DeleteProvider => providers::delete(cx).await,
        Id::ListReviews => reviews::list(cx).await,
        Id::GetReview => reviews::get(cx).await,
        Id::RequeueReview => reviews::requeue(cx).await,
        Id::GitHubHook => hooks::receive(cx, Platform::GitHub).await,
        Id::GitLabHook => hooks::receive(cx, Platform::GitLab).await,
        Id::BitbucketHook => hooks::receive(cx, Platform::Bitbucket).await,
    }
}
