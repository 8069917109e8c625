//! Code review: integrations, BYOK LLM providers, webhook intake, review status. Each handler
//! parses (typed ids, the JSON body, the query), calls `service::review`, and answers its view.

use edgeplane_core::auth::Action;
use edgeplane_core::http::{BodyLimit, Method::*};
use edgeplane_core::ids::{IntegrationId, ProviderId, ReviewId};
use edgeplane_core::review::git_platform::Platform;
use edgeplane_core::views::review::{
    DeliveryList, IntegrationBody, IntegrationList, ProviderBody, ProviderList, ReviewBody,
    ReviewFindingList,
};

use super::{route, Access, Cx, Route, RouteId};
use crate::http::respond::{self, HttpResult};
use crate::service::review::{intake, integrations, providers, reviews};

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
    ListReviewFindings,
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
        r(Id::ListReviewFindings),
        Get,
        "/v1/orgs/{org}/reviews/{review}/findings",
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
        Id::CreateIntegration => {
            let body = cx.json().await?;
            let integration = integrations::create(cx, body).await?;
            respond::created(&IntegrationBody { integration })
        }
        Id::ListIntegrations => respond::ok(&IntegrationList {
            integrations: integrations::list(cx).await?,
        }),
        Id::GetIntegration => {
            let id = cx.id::<IntegrationId>("integration")?;
            let integration = integrations::get(cx, &id).await?;
            respond::ok(&IntegrationBody { integration })
        }
        Id::UpdateIntegration => {
            let id = cx.id::<IntegrationId>("integration")?;
            let body = cx.json().await?;
            let integration = integrations::update(cx, &id, body).await?;
            respond::ok(&IntegrationBody { integration })
        }
        Id::DeleteIntegration => {
            let id = cx.id::<IntegrationId>("integration")?;
            integrations::delete(cx, &id).await?;
            respond::no_content()
        }
        Id::RotateWebhookSecret => {
            let id = cx.id::<IntegrationId>("integration")?;
            let body = cx.json().await?;
            let integration = integrations::rotate_webhook_secret(cx, &id, body).await?;
            respond::ok(&IntegrationBody { integration })
        }
        Id::ListDeliveries => {
            let id = cx.id::<IntegrationId>("integration")?;
            let deliveries = integrations::deliveries(cx, &id).await?;
            respond::ok(&DeliveryList { deliveries })
        }
        Id::CreateProvider => {
            let body = cx.json().await?;
            let llm_provider = providers::create(cx, body).await?;
            respond::created(&ProviderBody { llm_provider })
        }
        Id::ListProviders => respond::ok(&ProviderList {
            llm_providers: providers::list(cx).await?,
        }),
        Id::GetProvider => {
            let id = cx.id::<ProviderId>("provider")?;
            let llm_provider = providers::get(cx, &id).await?;
            respond::ok(&ProviderBody { llm_provider })
        }
        Id::UpdateProvider => {
            let id = cx.id::<ProviderId>("provider")?;
            let body = cx.json().await?;
            let llm_provider = providers::update(cx, &id, body).await?;
            respond::ok(&ProviderBody { llm_provider })
        }
        Id::DeleteProvider => {
            let id = cx.id::<ProviderId>("provider")?;
            providers::delete(cx, &id).await?;
            respond::no_content()
        }
        Id::ListReviews => {
            let filter = reviews::ReviewFilter::from_query(cx.query()?)?;
            respond::ok(&reviews::list(cx, &filter).await?)
        }
        Id::GetReview => {
            let id = cx.id::<ReviewId>("review")?;
            let review = reviews::get(cx, &id).await?;
            respond::ok(&ReviewBody { review })
        }
        Id::ListReviewFindings => {
            let id = cx.id::<ReviewId>("review")?;
            respond::ok(&ReviewFindingList {
                findings: reviews::findings(cx, &id).await?,
            })
        }
        Id::RequeueReview => {
            let id = cx.id::<ReviewId>("review")?;
            let review = reviews::requeue(cx, &id).await?;
            respond::json(202, &ReviewBody { review })
        }
        Id::GitHubHook => hook(cx, Platform::GitHub).await,
        Id::GitLabHook => hook(cx, Platform::GitLab).await,
        Id::BitbucketHook => hook(cx, Platform::Bitbucket).await,
    }
}

async fn hook(cx: &mut Cx<'_>, platform: Platform) -> HttpResult {
    // Not `cx.id`: a junk segment is answered like an unknown integration, after verification.
    let segment = cx.param("integration")?.to_owned();
    let answer = intake::receive(cx, platform, &segment).await?;
    respond::json(answer.status_code(), &answer)
}
