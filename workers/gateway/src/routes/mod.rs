//! Dispatch. Each area (`core`, `identity`, `federation`, `review`) owns a route table and its
//! handlers; a route is one row (method, pattern, body limit, who may call it) and one handler
//! arm. Authentication, tenancy and scope checks happen here, before any handler runs, so a
//! handler cannot forget them.

pub mod access;
pub mod console;
pub mod core;
pub mod federation;
pub mod identity;
pub mod review;
pub mod scim;

use edgeplane_core::auth::{authorize, Action, Principal, PrincipalKind, Scope};
use edgeplane_core::http::{match_tables, BodyLimit, Method, RouteMatch, RouteSpec};
use edgeplane_core::{ApiError, ErrorCode};
use worker::{Context, Env, Request};

use crate::authn;
use crate::config;
pub use crate::cx::Cx;
use crate::http::respond::HttpResult;
use crate::http::RequestCtx;
use edgeplane_runtime::db::Db;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; a presented credential is still verified (a bad one is 401).
    Public,
    /// Any authenticated principal.
    Authenticated,
    /// A principal with access to the `{org}` in the path, holding the action's scope.
    Org(Action),
    /// Authenticates itself inside the handler (setup token, OAuth client, webhook signature).
    SelfAuthenticated,
    /// A federated-learning device with a device access token (its own scopes are checked by the
    /// handler); every other principal is refused.
    Device,
    /// SCIM provisioning: an org API key holding the `scim` scope, acting in the key's org.
    /// Every other principal is refused, and such a key is refused everywhere else.
    Scim,
}

/// A route's identity: the area it belongs to and the area's own id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    Core(core::Id),
    Identity(identity::Id),
    Access(access::Id),
    Federation(federation::Id),
    Review(review::Id),
    Scim(scim::Id),
}

pub type Route = RouteSpec<RouteId, Access>;

pub const fn route(
    id: RouteId,
    method: Method,
    pattern: &'static str,
    body_limit: BodyLimit,
    auth: Access,
) -> Route {
    RouteSpec {
        id,
        method,
        pattern,
        body_limit,
        auth,
    }
}

/// Every area's table. Each area owns its routes and handlers in its own module.
pub const TABLES: &[&[Route]] = &[
    core::ROUTES,
    identity::ROUTES,
    access::ROUTES,
    federation::ROUTES,
    review::ROUTES,
    scim::ROUTES,
];

/// All routes, in matching order.
pub fn all_routes() -> impl Iterator<Item = &'static Route> {
    TABLES.iter().flat_map(|t| t.iter())
}

fn find_route(method: Method, path: &str) -> RouteMatch<'static, RouteId, Access> {
    match_tables(TABLES, method, path)
}

fn route_not_found() -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, "no route matches this path")
}

fn method_not_allowed(allowed: &[Method]) -> ApiError {
    let names: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("this path answers only {}", names.join(", ")),
    )
}

/// The methods `path` answers (empty: no route has this path).
fn methods_of(path: &str) -> Vec<Method> {
    use Method::*;
    [Get, Post, Put, Patch, Delete, Head, Options]
        .into_iter()
        .filter(|m| matches!(find_route(*m, path), RouteMatch::Found(..)))
        .collect()
}

pub async fn dispatch(req: Request, env: &Env, ctx: &Context, rc: &mut RequestCtx) -> HttpResult {
    let path = req.path();
    // The method as sent: workers-rs maps a method it does not know (QUERY, PROPFIND, …) to
    // GET, which would serve a GET route's answer to it.
    let Some(method) = Method::parse(&rc.method) else {
        let allowed = methods_of(&path);
        return Err(if allowed.is_empty() {
            route_not_found()
        } else {
            method_not_allowed(&allowed)
        });
    };
    let (route, params) = match find_route(method, &path) {
        RouteMatch::Found(r, p) => (r, p),
        RouteMatch::MethodNotAllowed(allowed) => return Err(method_not_allowed(&allowed)),
        RouteMatch::NotFound => return Err(route_not_found()),
    };
    rc.route = route.pattern;

    // The floor of every benchmark: no config, no storage, no credential.
    if route.id == RouteId::Core(core::Id::Livez) {
        return core::meta::livez();
    }

    let cfg = config::load(env)?;
    let db = Db::from_env(env)?;
    let token = authn::bearer(&req)?;
    let authn::Resolved {
        principal,
        followups,
        device,
    } = match route.auth {
        Access::SelfAuthenticated => authn::Resolved::anonymous(),
        _ => authn::resolve(&db, &cfg, token.as_deref()).await?,
    };
    rc.principal_kind = principal.kind;
    if is_scim_key(&principal) != (route.auth == Access::Scim) && !principal.is_anonymous() {
        return Err(if route.auth == Access::Scim {
            ApiError::new(
                ErrorCode::InsufficientScope,
                "SCIM takes an org API key with the `scim` scope",
            )
        } else {
            ApiError::forbidden("a key with the `scim` scope serves only /scim/v2")
        });
    }

    let org = match route.auth {
        Access::Public | Access::SelfAuthenticated => None,
        Access::Authenticated | Access::Org(_) | Access::Device | Access::Scim
            if principal.kind == PrincipalKind::Anonymous =>
        {
            return Err(ApiError::unauthenticated(
                "this route requires a bearer credential",
            ));
        }
        Access::Authenticated => None,
        Access::Device if principal.kind != PrincipalKind::Device => {
            return Err(ApiError::forbidden(
                "this route takes a device access token",
            ));
        }
        Access::Device => None,
        // The key's own org (dispatch checked above that it is a SCIM key); the handlers take
        // it from the principal, and writes name it explicitly.
        Access::Scim => {
            rc.org_id = principal.bound.as_ref().map(|b| b.org_id.clone());
            None
        }
        Access::Org(action) => {
            let org_ref = params.get("org").ok_or_else(route_not_found)?;
            let access = authn::org_access(&db, &principal, org_ref).await?;
            rc.org_id = Some(access.org_id.clone());
            authorize(&access, action)?;
            Some(access)
        }
    };

    let mut cx = Cx::new(
        env,
        ctx,
        cfg,
        rc,
        req,
        params,
        principal,
        org,
        route.body_limit,
        db,
    );
    if let Some(device) = device {
        cx.set_device(device);
    }
    let result = match route.id {
        RouteId::Core(id) => core::handle(id, &mut cx).await,
        RouteId::Identity(id) => identity::handle(id, &mut cx).await,
        RouteId::Access(id) => access::handle(id, &mut cx).await,
        RouteId::Federation(id) => federation::handle(id, &mut cx).await,
        RouteId::Review(id) => review::handle(id, &mut cx).await,
        RouteId::Scim(id) => scim::handle(id, &mut cx).await,
    };
    authn::run_followups(cx.db(), followups).await;
    result
}

/// An org API key holding the `scim` scope (which such a key holds alone).
fn is_scim_key(p: &Principal) -> bool {
    p.kind == PrincipalKind::ApiKey
        && p.bound
            .as_ref()
            .is_some_and(|b| b.scopes.contains(Scope::Scim))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route in the table is documented in the committed OpenAPI document with the same
    /// method, and every documented operation exists in the table.
    #[test]
    fn openapi_document_matches_route_table() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../../../openapi.json")).expect("openapi parses");
        assert_eq!(
            doc["openapi"].as_str().map(|v| v.starts_with("3.1")),
            Some(true)
        );
        let paths = doc["paths"].as_object().expect("paths");
        for r in all_routes() {
            let op = paths
                .get(r.pattern)
                .and_then(|p| p.get(r.method.as_str().to_ascii_lowercase()));
            assert!(
                op.is_some(),
                "{} {} is not in openapi.json",
                r.method.as_str(),
                r.pattern
            );
        }
        for (path, item) in paths {
            for (method, _) in item.as_object().expect("path item") {
                if method == "parameters" {
                    continue;
                }
                let m = Method::parse(&method.to_ascii_uppercase()).expect("method");
                assert!(
                    all_routes().any(|r| r.pattern == path && r.method == m),
                    "openapi.json documents {method} {path}, which the router does not serve"
                );
            }
        }
    }

    #[test]
    fn org_routes_capture_org() {
        for r in all_routes() {
            if matches!(r.auth, Access::Org(_)) {
                assert!(r.pattern.contains("{org}"), "{}", r.pattern);
            }
            if matches!(r.method, Method::Get | Method::Delete | Method::Head) {
                assert_eq!(r.body_limit, BodyLimit::NONE, "{}", r.pattern);
            }
        }
    }
}
