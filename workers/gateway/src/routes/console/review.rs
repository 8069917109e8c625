//! Code review: integrations (create and rotate: the server chooses the webhook secret and the
//! answering page shows it once), their deliveries, LLM providers (set a key, write-only), the
//! reviews, one review's stages and findings, and requeue.

use edgeplane_core::auth::Action;
use edgeplane_core::console::pages::{self, NewSecret, ReviewLine};
use edgeplane_core::crypto::random::random_token;
use edgeplane_core::http::Method::{Get, Post};
use edgeplane_core::ids::{IntegrationId, ProviderId, ReviewId};
use edgeplane_core::review::config::PlatformApi;
use edgeplane_core::views::review::{IntegrationView, ReviewView};
use edgeplane_core::ApiError;
use futures_util::future::try_join3;

use super::page::{correctable, membership, org_page, render, render_status, Answer, Page};
use super::{route, ConsoleRoute, Gate};
use crate::cx::Cx;
use crate::service::review::integrations::{self, CreateIntegration, RotateSecret};
use crate::service::review::providers::{self, CreateProvider, UpdateProvider};
use crate::service::review::reviews::{self, ReviewFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    Integrations,
    CreateIntegration,
    RotateSecret,
    Deliveries,
    Providers,
    CreateProvider,
    SetProviderKey,
    Reviews,
    Review,
    Requeue,
}

const fn r(id: Id) -> super::Id {
    super::Id::Review(id)
}

const READ_INT: Gate = Gate::Org(Action::ReadIntegrations);
const MANAGE_INT: Gate = Gate::Org(Action::ManageIntegrations);

pub const ROUTES: &[ConsoleRoute] = &[
    route(
        r(Id::Integrations),
        Get,
        "/orgs/{org}/integrations",
        READ_INT,
    ),
    route(
        r(Id::CreateIntegration),
        Post,
        "/orgs/{org}/integrations",
        MANAGE_INT,
    ),
    route(
        r(Id::RotateSecret),
        Post,
        "/orgs/{org}/integrations/{integration}/rotate-secret",
        MANAGE_INT,
    ),
    route(
        r(Id::Deliveries),
        Get,
        "/orgs/{org}/integrations/{integration}/deliveries",
        READ_INT,
    ),
    route(r(Id::Providers), Get, "/orgs/{org}/llm-providers", READ_INT),
    route(
        r(Id::CreateProvider),
        Post,
        "/orgs/{org}/llm-providers",
        MANAGE_INT,
    ),
    route(
        r(Id::SetProviderKey),
        Post,
        "/orgs/{org}/llm-providers/{provider}/key",
        MANAGE_INT,
    ),
    route(
        r(Id::Reviews),
        Get,
        "/orgs/{org}/reviews",
        Gate::Org(Action::ReadReviews),
    ),
    route(
        r(Id::Review),
        Get,
        "/orgs/{org}/reviews/{review}",
        Gate::Org(Action::ReadReviews),
    ),
    route(
        r(Id::Requeue),
        Post,
        "/orgs/{org}/reviews/{review}/requeue",
        Gate::Org(Action::ManageReviews),
    ),
];

/// A webhook secret the server chooses: 256 random bits, printable, never stored in clear.
fn new_webhook_secret() -> Result<String, ApiError> {
    random_token("ephook_")
}

/// The integrations page, with a secret to show once or an error to show above the form.
async fn integrations_page(
    cx: &Cx<'_>,
    page: &Page,
    status: u16,
    new_secret: Option<&NewSecret<'_>>,
    error: Option<&str>,
) -> Result<Answer, ApiError> {
    let m = membership(cx).await?;
    let list = integrations::list(cx).await?;
    let can = cx.authorize(Action::ManageIntegrations).is_ok();
    render_status(
        status,
        pages::integrations(
            &page.chrome("Integrations", Some(&m)),
            &m.org.slug,
            &list,
            can,
            new_secret,
            error,
        ),
    )
}

async fn providers_page(
    cx: &Cx<'_>,
    page: &Page,
    status: u16,
    error: Option<&str>,
) -> Result<Answer, ApiError> {
    let m = membership(cx).await?;
    let list = providers::list(cx).await?;
    let can = cx.authorize(Action::ManageIntegrations).is_ok();
    render_status(
        status,
        pages::providers(
            &page.chrome("LLM providers", Some(&m)),
            &m.org.slug,
            &list,
            can,
            error,
        ),
    )
}

/// The web page of a review's pull request, found among the integrations the person may read.
fn pull_request_url(readable: &[IntegrationView], r: &ReviewView) -> Option<String> {
    let i = readable.iter().find(|i| i.id == r.integration_id)?;
    PlatformApi::of(i.platform, i.deployment).pull_request_url(
        &i.api_base_url,
        &r.repository.name,
        r.pull_request,
    )
}

/// The org's integrations, if this person may read them (for pull request links).
async fn readable_integrations(cx: &Cx<'_>) -> Result<Vec<IntegrationView>, ApiError> {
    if cx.authorize(Action::ReadIntegrations).is_ok() {
        integrations::list(cx).await
    } else {
        Ok(Vec::new())
    }
}

pub async fn handle(id: Id, cx: &mut Cx<'_>, page: &mut Page) -> Result<Answer, ApiError> {
    match id {
        Id::Integrations => integrations_page(cx, page, 200, None, None).await,
        Id::CreateIntegration => {
            let secret = new_webhook_secret()?;
            let body = (|| {
                Ok::<_, ApiError>(CreateIntegration {
                    name: page.require("name")?.to_owned(),
                    platform: page.choice("platform")?,
                    deployment: Some(page.choice("deployment")?),
                    api_base_url: page.optional("api_base_url").map(str::to_owned),
                    access_token: page.require("access_token")?.to_owned(),
                    webhook_secret: secret.clone(),
                    signing_token: None,
                    llm_provider_id: None,
                    enabled: None,
                })
            })();
            let created = match body {
                Ok(b) => integrations::create(cx, b).await,
                Err(e) => Err(e),
            };
            match created {
                Ok(integration) => {
                    let shown = NewSecret {
                        integration: &integration,
                        secret: &secret,
                    };
                    integrations_page(cx, page, 201, Some(&shown), None).await
                }
                Err(e) if correctable(&e) => {
                    integrations_page(cx, page, e.status(), None, Some(&e.message)).await
                }
                Err(e) => Err(e),
            }
        }
        Id::RotateSecret => {
            let id: IntegrationId = cx.id("integration")?;
            let secret = new_webhook_secret()?;
            let integration = integrations::rotate_webhook_secret(
                cx,
                &id,
                RotateSecret {
                    webhook_secret: secret.clone(),
                    overlap_seconds: None,
                },
            )
            .await?;
            let shown = NewSecret {
                integration: &integration,
                secret: &secret,
            };
            integrations_page(cx, page, 200, Some(&shown), None).await
        }
        Id::Deliveries => {
            let m = membership(cx).await?;
            let id: IntegrationId = cx.id("integration")?;
            let integration = integrations::get(cx, &id).await?;
            let list = integrations::deliveries(cx, &id).await?;
            let title = format!("Deliveries · {}", integration.name);
            render(pages::deliveries(
                &page.chrome(&title, Some(&m)),
                &m.org.slug,
                &integration,
                &list,
            ))
        }
        Id::Providers => providers_page(cx, page, 200, None).await,
        Id::CreateProvider => {
            let body = (|| {
                Ok::<_, ApiError>(CreateProvider {
                    name: page.require("name")?.to_owned(),
                    kind: page.choice("kind")?,
                    base_url: page.optional("base_url").map(str::to_owned),
                    model: page.require("model")?.to_owned(),
                    embedding_model: None,
                    api_key: page.require("api_key")?.to_owned(),
                    max_input_tokens: None,
                    max_output_tokens: None,
                    is_default: None,
                })
            })();
            let created = match body {
                Ok(b) => providers::create(cx, b).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match created {
                Ok(()) => org_page(cx, "/llm-providers"),
                Err(e) if correctable(&e) => {
                    providers_page(cx, page, e.status(), Some(&e.message)).await
                }
                Err(e) => Err(e),
            }
        }
        Id::SetProviderKey => {
            let id: ProviderId = cx.id("provider")?;
            let body = UpdateProvider {
                api_key: Some(page.require("api_key")?.to_owned()),
                ..UpdateProvider::default()
            };
            match providers::update(cx, &id, body).await {
                Ok(_) => org_page(cx, "/llm-providers"),
                Err(e) if correctable(&e) && e.status() != 404 => {
                    providers_page(cx, page, e.status(), Some(&e.message)).await
                }
                Err(e) => Err(e),
            }
        }
        Id::Reviews => {
            let filter = ReviewFilter::from_query(cx.query()?)?;
            // Independent reads, sent together.
            let (m, list, known) = try_join3(
                membership(cx),
                reviews::list(cx, &filter),
                readable_integrations(cx),
            )
            .await?;
            let lines: Vec<ReviewLine<'_>> = list
                .reviews
                .iter()
                .map(|r| ReviewLine {
                    review: r,
                    pull_request_url: pull_request_url(&known, r),
                })
                .collect();
            render(pages::reviews(
                &page.chrome("Reviews", Some(&m)),
                &m.org.slug,
                &lines,
                list.next_cursor.as_ref().map(|c| c.as_str()),
            ))
        }
        Id::Review => {
            let m = membership(cx).await?;
            let id: ReviewId = cx.id("review")?;
            let review = reviews::get(cx, &id).await?;
            let findings = reviews::findings(cx, &id).await?;
            let known = readable_integrations(cx).await?;
            let line = ReviewLine {
                review: &review,
                pull_request_url: pull_request_url(&known, &review),
            };
            let can = cx.authorize(Action::ManageReviews).is_ok();
            let title = format!("Review {}", id.as_str());
            render(pages::review(
                &page.chrome(&title, Some(&m)),
                &m.org.slug,
                &line,
                &findings,
                can,
            ))
        }
        Id::Requeue => {
            let id: ReviewId = cx.id("review")?;
            reviews::requeue(cx, &id).await?;
            org_page(cx, &format!("/reviews/{}", id.as_str()))
        }
    }
}
