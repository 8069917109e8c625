//! The request context every handler, console page and service function works with: the
//! parsed request, who is calling, the org it acts in (on org routes), the body limit of its
//! route, and D1. Its own module so that the layers below the routes (services, the audit
//! path) depend on it, not on the router.

use std::rc::Rc;

use edgeplane_core::auth::{authorize, Action, OrgAccess, Principal};
use edgeplane_core::http::{BodyLimit, Params};
use edgeplane_core::ids::TypedId;
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::db::Db;
use serde::de::DeserializeOwned;
use worker::{Context, Env, Request};

use crate::authn::device::DeviceSession;
use crate::config::Config;
use crate::http::body;
use crate::http::RequestCtx;

/// Everything a handler gets. Built by `routes::dispatch` after authentication and
/// authorization; handlers, console pages and the service layer all take it.
pub struct Cx<'a> {
    pub env: &'a Env,
    pub ctx: &'a Context,
    pub cfg: Rc<Config>,
    pub rc: &'a RequestCtx,
    pub req: Request,
    pub params: Params,
    pub principal: Principal,
    org: Option<OrgAccess>,
    limit: BodyLimit,
    db: Db,
    /// The calling device's facts, read with its revocation check (device routes only).
    device: Option<Rc<DeviceSession>>,
}

impl<'a> Cx<'a> {
    #[allow(clippy::too_many_arguments)] // One constructor, called once, by the dispatcher.
    pub(crate) fn new(
        env: &'a Env,
        ctx: &'a Context,
        cfg: Rc<Config>,
        rc: &'a RequestCtx,
        req: Request,
        params: Params,
        principal: Principal,
        org: Option<OrgAccess>,
        limit: BodyLimit,
        db: Db,
    ) -> Self {
        Self {
            env,
            ctx,
            cfg,
            rc,
            req,
            params,
            principal,
            org,
            limit,
            db,
            device: None,
        }
    }

    /// Keeps what resolving a device's token read about it, for the device routes.
    pub(crate) fn set_device(&mut self, device: Rc<DeviceSession>) {
        self.device = Some(device);
    }

    /// The calling device's facts (only on `Access::Device` routes, where dispatch has them).
    pub fn device_session(&self) -> Result<&Rc<DeviceSession>, ApiError> {
        self.device.as_ref().ok_or_else(ApiError::internal)
    }

    /// A path parameter. Route patterns guarantee presence; absence means a table/handler
    /// mismatch, reported as 404 rather than a panic.
    pub fn param(&self, name: &str) -> Result<&str, ApiError> {
        self.params
            .get(name)
            .ok_or_else(|| ApiError::new(ErrorCode::RouteNotFound, "no such route"))
    }

    /// A path parameter that names a resource by id. A segment that is not an id of that kind
    /// names nothing, so it answers the same 404 as an id that does not exist (or belongs to
    /// another org), without a query.
    pub fn id<T: TypedId>(&self, name: &str) -> Result<T, ApiError> {
        T::parse(self.param(name)?).map_err(|_| ApiError::not_found(T::KIND))
    }

    /// Sets the org this request acts in, once the console's gate has established it.
    pub(crate) fn set_org(&mut self, org: OrgAccess) {
        self.org = Some(org);
    }

    /// The org this request acts in (only on `Access::Org` routes).
    pub fn org(&self) -> Result<&OrgAccess, ApiError> {
        self.org.as_ref().ok_or_else(ApiError::internal)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub async fn json<T: DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        body::json(&mut self.req, self.limit).await
    }

    pub async fn json_or_default<T: DeserializeOwned + Default>(&mut self) -> Result<T, ApiError> {
        body::json_or_default(&mut self.req, self.limit).await
    }

    pub async fn raw_body(&mut self) -> Result<Vec<u8>, ApiError> {
        body::read_limited(&mut self.req, self.limit).await
    }

    /// The decoded query string, in order. Handlers reject unknown parameters (a typo in a filter
    /// must not silently widen a listing).
    pub fn query(&self) -> Result<Vec<(String, String)>, ApiError> {
        let url = self
            .req
            .url()
            .map_err(|_| ApiError::new(ErrorCode::InvalidQuery, "invalid query string"))?;
        Ok(url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect())
    }

    /// Asks the policy about an action beyond the route's own (e.g. a second scope).
    pub fn authorize(&self, action: Action) -> Result<(), ApiError> {
        authorize(self.org()?, action)
    }
}
