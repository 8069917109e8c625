//! SCIM 2.0 at `/scim/v2` (RFC 7644): parsing and answering only. The bearer is an org API key
//! holding the `scim` scope (dispatch refuses anything else, and refuses such a key on every
//! other route); the org is the key's. What a request means is decided in
//! `edgeplane_core::scim`, what it writes in `service::scim`. Every failure, including the
//! dispatcher's (401, 403, 404, 413), answers in SCIM's error shape (`lib.rs` picks it by path).

use edgeplane_core::http::{BodyLimit, Method::*};
use edgeplane_core::ids::{OrgId, ScimGroupId, TypedId, UserId};
use edgeplane_core::scim::list::{search_request, ListQuery, Projection};
use edgeplane_core::scim::{discovery, ScimError, ScimType};
use serde_json::Value;

use super::{route, Access, Cx, Route, RouteId};
use crate::http::respond::{self, HttpResult};
use crate::service::scim::{groups, users};

/// Whether `path` is SCIM's (its errors take SCIM's shape).
pub fn serves(path: &str) -> bool {
    path == "/scim/v2" || path.starts_with("/scim/v2/")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    ServiceProviderConfig,
    SearchAll,
    ResourceTypes,
    ResourceType,
    Schemas,
    Schema,
    ListUsers,
    SearchUsers,
    CreateUser,
    GetUser,
    ReplaceUser,
    PatchUser,
    DeleteUser,
    ListGroups,
    SearchGroups,
    CreateGroup,
    GetGroup,
    ReplaceGroup,
    PatchGroup,
    DeleteGroup,
}

const fn r(id: Id) -> RouteId {
    RouteId::Scim(id)
}

/// A user's JSON is a few names; a group's carries up to
/// `resource::MAX_MEMBERS_PER_REQUEST` members.
const USER_BODY: BodyLimit = BodyLimit(64 * 1024);
const GROUP_BODY: BodyLimit = BodyLimit(256 * 1024);
/// A SearchRequest is a filter and a few names.
const SEARCH_BODY: BodyLimit = BodyLimit::SMALL;

const USERS: &str = "/scim/v2/Users";
const USER: &str = "/scim/v2/Users/{user}";
const GROUPS: &str = "/scim/v2/Groups";
const GROUP: &str = "/scim/v2/Groups/{group}";

const fn scim(
    id: Id,
    method: edgeplane_core::http::Method,
    pattern: &'static str,
    limit: BodyLimit,
) -> Route {
    route(r(id), method, pattern, limit, Access::Scim)
}

pub const ROUTES: &[Route] = &[
    scim(Id::SearchAll, Post, "/scim/v2/.search", SEARCH_BODY),
    scim(
        Id::ServiceProviderConfig,
        Get,
        "/scim/v2/ServiceProviderConfig",
        BodyLimit::NONE,
    ),
    scim(
        Id::ResourceTypes,
        Get,
        "/scim/v2/ResourceTypes",
        BodyLimit::NONE,
    ),
    scim(
        Id::ResourceType,
        Get,
        "/scim/v2/ResourceTypes/{name}",
        BodyLimit::NONE,
    ),
    scim(Id::Schemas, Get, "/scim/v2/Schemas", BodyLimit::NONE),
    scim(
        Id::Schema,
        Get,
        "/scim/v2/Schemas/{schema}",
        BodyLimit::NONE,
    ),
    scim(Id::ListUsers, Get, USERS, BodyLimit::NONE),
    scim(Id::SearchUsers, Post, "/scim/v2/Users/.search", SEARCH_BODY),
    scim(Id::CreateUser, Post, USERS, USER_BODY),
    scim(Id::GetUser, Get, USER, BodyLimit::NONE),
    scim(Id::ReplaceUser, Put, USER, USER_BODY),
    scim(Id::PatchUser, Patch, USER, USER_BODY),
    scim(Id::DeleteUser, Delete, USER, BodyLimit::NONE),
    scim(Id::ListGroups, Get, GROUPS, BodyLimit::NONE),
    scim(
        Id::SearchGroups,
        Post,
        "/scim/v2/Groups/.search",
        SEARCH_BODY,
    ),
    scim(Id::CreateGroup, Post, GROUPS, GROUP_BODY),
    scim(Id::GetGroup, Get, GROUP, BodyLimit::NONE),
    scim(Id::ReplaceGroup, Put, GROUP, GROUP_BODY),
    scim(Id::PatchGroup, Patch, GROUP, GROUP_BODY),
    scim(Id::DeleteGroup, Delete, GROUP, BodyLimit::NONE),
];

/// Runs a SCIM handler; its typed error becomes SCIM's error answer here, so nothing of SCIM's
/// error vocabulary leaks into the platform's `ApiError`.
pub async fn handle(id: Id, cx: &mut Cx<'_>) -> HttpResult {
    match run(id, cx).await {
        Ok(resp) => Ok(resp),
        Err(e) => Ok(respond::scim_error(&e)),
    }
}

async fn run(id: Id, cx: &mut Cx<'_>) -> HttpResult2 {
    let base = base_url(cx)?;
    match id {
        Id::ServiceProviderConfig => ok(&discovery::service_provider_config(&base)),
        // Searching users and groups in one request (RFC 7644 §3.4.3, a MAY): not supported,
        // answered 501 as the RFC says.
        Id::SearchAll => Err(ScimError::new(
            501,
            None,
            "searching several resource types at once is not supported: POST /Users/.search or /Groups/.search",
        )),
        Id::ResourceTypes => {
            let all = discovery::resource_types(&base);
            ok(&edgeplane_core::scim::list::response(
                all.len() as u64,
                1,
                all,
            ))
        }
        Id::ResourceType => one_of(discovery::resource_types(&base), "id", cx.param("name")?),
        Id::Schemas => {
            let all = discovery::schemas(&base);
            ok(&edgeplane_core::scim::list::response(
                all.len() as u64,
                1,
                all,
            ))
        }
        Id::Schema => one_of(discovery::schemas(&base), "id", cx.param("schema")?),
        Id::ListUsers => {
            let pairs = cx.query()?;
            let q = ListQuery::parse(&pairs)?;
            let listed = users::list(cx, &org(cx)?, &q, &base).await?;
            ok(&Projection::parse(&pairs).apply_list(listed))
        }
        Id::SearchUsers => {
            let (q, projection) = search_request(&json(cx).await?)?;
            ok(&projection.apply_list(users::list(cx, &org(cx)?, &q, &base).await?))
        }
        Id::CreateUser => {
            let body = json(cx).await?;
            respond::scim(201, &users::create(cx, &org(cx)?, &body, &base).await?)
                .map_err(Into::into)
        }
        Id::GetUser => {
            let found = users::get(cx, &org(cx)?, &user_id(cx)?, &base).await?;
            ok(&Projection::parse(&cx.query()?).apply(found))
        }
        Id::ReplaceUser => {
            let body = json(cx).await?;
            ok(&users::replace(cx, &org(cx)?, &user_id(cx)?, &body, &base).await?)
        }
        Id::PatchUser => {
            let body = json(cx).await?;
            ok(&users::patch(cx, &org(cx)?, &user_id(cx)?, &body, &base).await?)
        }
        Id::DeleteUser => {
            users::delete(cx, &org(cx)?, &user_id(cx)?).await?;
            respond::no_content().map_err(Into::into)
        }
        Id::ListGroups => {
            let pairs = cx.query()?;
            let q = ListQuery::parse(&pairs)?;
            let projection = Projection::parse(&pairs);
            let with_members = !projection.drops("members");
            let listed = groups::list(cx, &org(cx)?, &q, &base, with_members).await?;
            ok(&projection.apply_list(listed))
        }
        Id::SearchGroups => {
            let (q, projection) = search_request(&json(cx).await?)?;
            let with_members = !projection.drops("members");
            ok(&projection.apply_list(groups::list(cx, &org(cx)?, &q, &base, with_members).await?))
        }
        Id::CreateGroup => {
            let body = json(cx).await?;
            respond::scim(201, &groups::create(cx, &org(cx)?, &body, &base).await?)
                .map_err(Into::into)
        }
        Id::GetGroup => {
            let projection = Projection::parse(&cx.query()?);
            let with_members = !projection.drops("members");
            let found = groups::get(cx, &org(cx)?, &group_id(cx)?, &base, with_members).await?;
            ok(&projection.apply(found))
        }
        Id::ReplaceGroup => {
            let body = json(cx).await?;
            ok(&groups::replace(cx, &org(cx)?, &group_id(cx)?, &body, &base).await?)
        }
        Id::PatchGroup => {
            let body = json(cx).await?;
            ok(&groups::patch(cx, &org(cx)?, &group_id(cx)?, &body, &base).await?)
        }
        Id::DeleteGroup => {
            groups::delete(cx, &org(cx)?, &group_id(cx)?).await?;
            respond::no_content().map_err(Into::into)
        }
    }
}

type HttpResult2 = Result<worker::Response, ScimError>;

fn ok(body: &Value) -> HttpResult2 {
    respond::scim(200, body).map_err(Into::into)
}

/// One document of a discovery list, by its `id` (404 when none has it).
fn one_of(all: Vec<Value>, key: &str, id: &str) -> HttpResult2 {
    match all.into_iter().find(|d| d[key].as_str() == Some(id)) {
        Some(d) => ok(&d),
        None => Err(ScimError::not_found("resource")),
    }
}

/// The key's org: dispatch let only a SCIM key (bound to one org) through.
fn org(cx: &Cx<'_>) -> Result<OrgId, ScimError> {
    cx.principal
        .bound
        .as_ref()
        .and_then(|b| OrgId::parse(&b.org_id).ok())
        .ok_or_else(|| ScimError::new(403, None, "SCIM takes an org API key with the `scim` scope"))
}

/// A path id that is not of the resource's kind names nothing: the same 404 as a missing one.
fn user_id(cx: &Cx<'_>) -> Result<UserId, ScimError> {
    UserId::parse(cx.param("user")?).map_err(|_| ScimError::not_found("user"))
}

fn group_id(cx: &Cx<'_>) -> Result<ScimGroupId, ScimError> {
    ScimGroupId::parse(cx.param("group")?).map_err(|_| ScimError::not_found("group"))
}

/// `…/scim/v2` on the host the client called, for `meta.location`.
fn base_url(cx: &Cx<'_>) -> Result<String, ScimError> {
    let url = cx
        .req
        .url()
        .map_err(|_| ScimError::new(400, None, "malformed request URL"))?;
    Ok(format!("{}/scim/v2", url.origin().ascii_serialization()))
}

/// The body as JSON: SCIM's own content type or plain JSON (RFC 7644 §3.1 allows both), read
/// within the route's limit.
async fn json(cx: &mut Cx<'_>) -> Result<Value, ScimError> {
    let ct = cx
        .req
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_default();
    let mime = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mime != "application/scim+json" && mime != "application/json" {
        return Err(ScimError::new(
            415,
            None,
            "this route accepts application/scim+json or application/json",
        ));
    }
    let bytes = cx.raw_body().await?;
    serde_json::from_slice(&bytes)
        .map_err(|_| ScimError::bad(ScimType::InvalidSyntax, "the body is not valid JSON"))
}
