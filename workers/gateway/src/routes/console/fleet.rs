//! The fleet: models and versions (create a model; upload a base version, approve and download
//! one), deployments (create a staged rollout; promote, pause, resume, roll back) and device
//! groups (create; members eligible now). Each route has the JSON route's own action and calls
//! its service function (`service::federation::{models, deployments, groups}`).

use std::pin::Pin;

use edgeplane_core::auth::Action;
use edgeplane_core::console::pages::{self, Form};
use edgeplane_core::fl::rollout::Transition;
use edgeplane_core::http::Method::{Get, Post};
use edgeplane_core::http::RouteSpec;
use edgeplane_core::ids::{DeploymentId, ModelId};
use edgeplane_core::views::federation::{DeviceGroupList, ModelList};
use edgeplane_core::{ApiError, ErrorCode};
use futures_util::{Stream, StreamExt};
use worker::send::SendWrapper;

use super::page::{correctable, membership, org_page, render_status, Answer, Page};
use super::{route, ConsoleRoute, Gate};
use crate::cx::Cx;
use crate::service::federation::deployments::{self, CreateDeployment};
use crate::service::federation::groups::{self, CreateGroup};
use crate::service::federation::models::{
    self, body_chunks, content_type, declared_length, is_raw_model, CreateModel, MODEL_BODY,
};
use crate::service::federation::versions::load_version;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    Models,
    CreateModel,
    Model,
    UploadVersion,
    ApproveVersion,
    DownloadVersion,
    Deployments,
    CreateDeployment,
    Deployment,
    Transition(Transition),
    DeviceGroups,
    CreateGroup,
}

const fn r(id: Id) -> super::Id {
    super::Id::Fleet(id)
}

const MANAGE_MODELS: Gate = Gate::Org(Action::ManageModels);
const READ_MODELS: Gate = Gate::Org(Action::ReadModels);

pub const ROUTES: &[ConsoleRoute] = &[
    route(r(Id::Models), Get, "/orgs/{org}/models", READ_MODELS),
    route(
        r(Id::CreateModel),
        Post,
        "/orgs/{org}/models",
        MANAGE_MODELS,
    ),
    route(r(Id::Model), Get, "/orgs/{org}/models/{model}", READ_MODELS),
    // The JSON route's own body limit: the file streams through, never buffered.
    RouteSpec {
        id: r(Id::UploadVersion),
        method: Post,
        pattern: "/orgs/{org}/models/{model}/versions",
        body_limit: MODEL_BODY,
        auth: MANAGE_MODELS,
    },
    route(
        r(Id::ApproveVersion),
        Post,
        "/orgs/{org}/models/{model}/versions/{version}/approve",
        MANAGE_MODELS,
    ),
    route(
        r(Id::DownloadVersion),
        Get,
        "/orgs/{org}/models/{model}/versions/{version}/download",
        READ_MODELS,
    ),
    route(
        r(Id::Deployments),
        Get,
        "/orgs/{org}/deployments",
        READ_MODELS,
    ),
    route(
        r(Id::CreateDeployment),
        Post,
        "/orgs/{org}/deployments",
        MANAGE_MODELS,
    ),
    route(
        r(Id::Deployment),
        Get,
        "/orgs/{org}/deployments/{deployment}",
        READ_MODELS,
    ),
    route(
        r(Id::Transition(Transition::Promote)),
        Post,
        "/orgs/{org}/deployments/{deployment}/promote",
        MANAGE_MODELS,
    ),
    route(
        r(Id::Transition(Transition::Pause)),
        Post,
        "/orgs/{org}/deployments/{deployment}/pause",
        MANAGE_MODELS,
    ),
    route(
        r(Id::Transition(Transition::Resume)),
        Post,
        "/orgs/{org}/deployments/{deployment}/resume",
        MANAGE_MODELS,
    ),
    route(
        r(Id::Transition(Transition::Rollback)),
        Post,
        "/orgs/{org}/deployments/{deployment}/rollback",
        MANAGE_MODELS,
    ),
    route(
        r(Id::DeviceGroups),
        Get,
        "/orgs/{org}/device-groups",
        Gate::Org(Action::ReadDevices),
    ),
    route(
        r(Id::CreateGroup),
        Post,
        "/orgs/{org}/device-groups",
        Gate::Org(Action::ManageDevices),
    ),
];

/// Space- or comma-separated words of a form field (none: empty).
fn words(page: &Page, name: &str) -> Vec<String> {
    page.optional(name)
        .unwrap_or_default()
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn create_deployment_body(page: &Page) -> Result<CreateDeployment, ApiError> {
    let stages = words(page, "stages")
        .iter()
        .map(|p| p.trim_end_matches('%').parse::<u8>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ApiError::validation("stages must be percentages from 1 to 100"))?;
    Ok(CreateDeployment {
        model_id: page.require("model_id")?.trim().to_owned(),
        version: serde_json::Value::Number(page.number::<i64>("version")?.into()),
        device_group_ids: page
            .form
            .iter()
            .filter(|(k, _)| k == "device_group_ids")
            .map(|(_, v)| v.clone())
            .collect(),
        stages: (!stages.is_empty()).then_some(stages),
    })
}

fn create_group_body(page: &Page) -> Result<CreateGroup, ApiError> {
    let tags = words(page, "tags");
    let devices = words(page, "device_ids");
    Ok(CreateGroup {
        name: page.require("name")?.to_owned(),
        tags: (!tags.is_empty()).then_some(tags),
        device_ids: (!devices.is_empty()).then_some(devices),
    })
}

async fn models_page(
    cx: &Cx<'_>,
    page: &Page,
    status: u16,
    form: &Form<'_>,
) -> Result<Answer, ApiError> {
    let m = membership(cx).await?;
    let list = models::list(cx).await?;
    let can = cx.authorize(Action::ManageModels).is_ok();
    render_status(
        status,
        pages::models(
            &page.chrome("Models", Some(&m)),
            &m.org.slug,
            &list,
            can,
            form,
        ),
    )
}

async fn model_page(
    cx: &Cx<'_>,
    page: &Page,
    id: &ModelId,
    status: u16,
    error: Option<&str>,
) -> Result<Answer, ApiError> {
    let model = models::get(cx, id).await?;
    let versions = models::list_versions(cx, id).await?;
    let m = membership(cx).await?;
    let can = cx.authorize(Action::ManageModels).is_ok();
    let title = format!("Model {}", model.name);
    render_status(
        status,
        pages::model(
            &page.chrome(&title, Some(&m)),
            &m.org.slug,
            &model,
            &versions,
            can,
            error,
        ),
    )
}

async fn deployments_page(
    cx: &Cx<'_>,
    page: &Page,
    status: u16,
    form: &Form<'_>,
) -> Result<Answer, ApiError> {
    let m = membership(cx).await?;
    let model = cx
        .query()?
        .into_iter()
        .find(|(k, v)| k == "model_id" && !v.is_empty())
        .map(|(_, v)| v);
    let list = deployments::list(cx, model.as_deref()).await?;
    let can = cx.authorize(Action::ManageModels).is_ok();
    let (models, groups) = if can {
        (models::list(cx).await?, groups::list(cx).await?)
    } else {
        (
            ModelList { models: Vec::new() },
            DeviceGroupList {
                device_groups: Vec::new(),
            },
        )
    };
    render_status(
        status,
        pages::deployments(
            &page.chrome("Deployments", Some(&m)),
            &m.org.slug,
            &list,
            &models,
            &groups,
            can,
            form,
        ),
    )
}

async fn groups_page(
    cx: &Cx<'_>,
    page: &Page,
    status: u16,
    form: &Form<'_>,
) -> Result<Answer, ApiError> {
    let m = membership(cx).await?;
    let list = groups::list(cx).await?;
    let can = cx.authorize(Action::ManageDevices).is_ok();
    render_status(
        status,
        pages::device_groups(
            &page.chrome("Device groups", Some(&m)),
            &m.org.slug,
            &list,
            can,
            form,
        ),
    )
}

/// The form the page is shown again with: what was typed, and what was wrong in words.
fn again<'a>(page: &'a Page, e: &'a ApiError) -> Form<'a> {
    Form {
        values: &page.form,
        error: Some(&e.message),
    }
}

/// The file of a multipart form (the upload form without JavaScript), streamed as it arrives:
/// the parser holds one chunk at a time, and only the field named `file` is read.
async fn multipart_file(
    cx: &mut Cx<'_>,
    content_type: &str,
) -> Result<impl Stream<Item = Result<Vec<u8>, ApiError>> + Unpin, ApiError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| ApiError::bad_request("the form's multipart boundary is missing"))?;
    let body = cx
        .req
        .stream()
        .map_err(|_| ApiError::validation("the request has no body"))?;
    // The runtime's stream is not `Send`; a worker is single-threaded, so it never moves.
    let mut body = SendWrapper::new(Box::pin(body));
    let chunks = futures_util::stream::poll_fn(move |c| {
        Pin::new(&mut *body)
            .poll_next(c)
            .map(|o| o.map(|r| r.map_err(|e| std::io::Error::other(e.to_string()))))
    });
    let limit = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(MODEL_BODY.0 as u64));
    let mut form = multer::Multipart::with_constraints(chunks, boundary, limit);
    loop {
        match form.next_field().await {
            Ok(Some(field)) if field.name() == Some("file") => {
                return Ok(Box::pin(field.map(|c| {
                    c.map(|b| b.to_vec()).map_err(|e| {
                        ApiError::validation(format!("the upload was cut short or malformed: {e}"))
                    })
                })));
            }
            Ok(Some(_)) => continue,
            Ok(None) => return Err(ApiError::validation("choose a safetensors file to upload")),
            Err(e) => {
                return Err(ApiError::validation(format!(
                    "the upload was cut short or malformed: {e}"
                )))
            }
        }
    }
}

async fn upload(cx: &mut Cx<'_>, id: &ModelId) -> Result<(), ApiError> {
    let declared = declared_length(cx);
    let ct = content_type(cx);
    if is_raw_model(cx) {
        let body = body_chunks(cx)?;
        models::upload_version(cx, id, declared, body).await?;
    } else if ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        let body = multipart_file(cx, &ct).await?;
        models::upload_version(cx, id, declared, body).await?;
    } else {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the file from the upload form",
        ));
    }
    Ok(())
}

pub async fn handle(id: Id, cx: &mut Cx<'_>, page: &mut Page) -> Result<Answer, ApiError> {
    match id {
        Id::Models => models_page(cx, page, 200, &Form::default()).await,
        Id::CreateModel => {
            let body = CreateModel {
                name: page.require("name")?.to_owned(),
                description: page.optional("description").map(str::to_owned),
            };
            let created = models::create(cx, body).await;
            match created {
                Ok(m) => org_page(cx, &format!("/models/{}", m.id.as_str())),
                Err(e) if correctable(&e) => {
                    models_page(cx, page, e.status(), &again(page, &e)).await
                }
                Err(e) => Err(e),
            }
        }
        Id::Model => {
            let id: ModelId = cx.id("model")?;
            model_page(cx, page, &id, 200, None).await
        }
        Id::UploadVersion => {
            let id: ModelId = cx.id("model")?;
            match upload(cx, &id).await {
                Ok(()) => org_page(cx, &format!("/models/{}", id.as_str())),
                Err(e) if correctable(&e) || matches!(e.status(), 413 | 415) => {
                    model_page(cx, page, &id, e.status(), Some(&e.message)).await
                }
                Err(e) => Err(e),
            }
        }
        Id::ApproveVersion => {
            let id: ModelId = cx.id("model")?;
            let which = cx.param("version")?.to_owned();
            models::approve(cx, &id, &which).await?;
            org_page(cx, &format!("/models/{}", id.as_str()))
        }
        Id::DownloadVersion => {
            let id: ModelId = cx.id("model")?;
            let which = cx.param("version")?.to_owned();
            let v = load_version(cx, id.as_str(), &cx.org()?.org_id, &which).await?;
            Ok(Answer::Download(models::download(cx, &v)?))
        }
        Id::Deployments => deployments_page(cx, page, 200, &Form::default()).await,
        Id::CreateDeployment => {
            let created = match create_deployment_body(page) {
                Ok(body) => deployments::create(cx, body).await,
                Err(e) => Err(e),
            };
            match created {
                Ok(d) => org_page(cx, &format!("/deployments/{}", d.id.as_str())),
                Err(e) if correctable(&e) => {
                    deployments_page(cx, page, e.status(), &again(page, &e)).await
                }
                Err(e) => Err(e),
            }
        }
        Id::Deployment => {
            let id: DeploymentId = cx.id("deployment")?;
            let d = deployments::get(cx, &id).await?;
            let m = membership(cx).await?;
            let can = cx.authorize(Action::ManageModels).is_ok();
            let title = format!("Deployment {}", id.as_str());
            render_status(
                200,
                pages::deployment(&page.chrome(&title, Some(&m)), &m.org.slug, &d, can),
            )
        }
        Id::Transition(t) => {
            let id: DeploymentId = cx.id("deployment")?;
            deployments::transition(cx, &id, t).await?;
            org_page(cx, &format!("/deployments/{}", id.as_str()))
        }
        Id::DeviceGroups => groups_page(cx, page, 200, &Form::default()).await,
        Id::CreateGroup => {
            let created = match create_group_body(page) {
                Ok(body) => groups::create(cx, body).await,
                Err(e) => Err(e),
            };
            match created {
                Ok(_) => org_page(cx, "/device-groups"),
                Err(e) if correctable(&e) => {
                    groups_page(cx, page, e.status(), &again(page, &e)).await
                }
                Err(e) => Err(e),
            }
        }
    }
}
