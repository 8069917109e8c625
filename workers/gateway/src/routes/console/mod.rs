//! The web console: server-rendered HTML pages over the same service functions and view types as
//! the JSON API. Like the API, each area owns a table of routes and its handlers (`session`:
//! signing in, sessions, `/device`; `org`: an org's overview, API keys, members; `audit`: the
//! audit log;
//! `federation`: rounds and devices; `fleet`: models, deployments, device groups; `review`:
//! integrations, LLM providers, reviews). Each route has its gate (public, signed in, or an org
//! action checked by the same `authn::org_access` and `authorize` as the JSON route it mirrors:
//! `gate`). The browser session is a cookie holding the web session's tokens; every POST must come
//! from our Origin and, once signed in, carry the session's CSRF token (a file upload carries it in
//! its address, so its body is never buffered: `gate`). Errors are HTML pages with the request id.

mod audit;
mod federation;
mod fleet;
mod gate;
mod org;
mod page;
mod review;
mod session;

use edgeplane_core::auth::Action;
use edgeplane_core::console::pages;
use edgeplane_core::console::{
    asset, cookie_names, return_to, ASSET_CACHE_CONTROL, SECURITY_HEADERS,
};
use edgeplane_core::http::{match_tables, BodyLimit, Method, RouteMatch, RouteSpec};
use edgeplane_core::{ApiError, ErrorCode};
use worker::{Context, Env, Headers, Request, Response, ResponseBuilder};

use crate::cx::Cx;
use crate::http::RequestCtx;
use page::{not_found, Answer, Page};

/// A console route's identity: the frame's own two, or an area and the area's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    Home,
    Asset,
    Session(session::Id),
    Org(org::Id),
    Audit(audit::Id),
    Federation(federation::Id),
    Fleet(fleet::Id),
    Review(review::Id),
}

/// Who may open a page: anyone, a signed-in person, or a member holding an action's scope
/// (the JSON route's own rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Public,
    User,
    Org(Action),
}

pub type ConsoleRoute = RouteSpec<Id, Gate>;

const fn route(id: Id, method: Method, pattern: &'static str, auth: Gate) -> ConsoleRoute {
    RouteSpec {
        id,
        method,
        pattern,
        body_limit: match method {
            Method::Post => BodyLimit::SMALL,
            _ => BodyLimit::NONE,
        },
        auth,
    }
}

const FRAME: &[ConsoleRoute] = &[
    route(Id::Home, Method::Get, "/", Gate::Public),
    route(Id::Asset, Method::Get, "/assets/{name}", Gate::Public),
];

/// Every area's table, in matching order.
pub const TABLES: &[&[ConsoleRoute]] = &[
    FRAME,
    session::ROUTES,
    org::ROUTES,
    audit::ROUTES,
    federation::ROUTES,
    fleet::ROUTES,
    review::ROUTES,
];

/// All console routes.
pub fn all_routes() -> impl Iterator<Item = &'static ConsoleRoute> {
    TABLES.iter().flat_map(|t| t.iter())
}

fn find_route(method: Method, path: &str) -> RouteMatch<'static, Id, Gate> {
    match_tables(TABLES, method, path)
}

/// Whether `path` is a console page (any method): the console answers it, in HTML.
pub fn serves(path: &str) -> bool {
    [Method::Get, Method::Post]
        .into_iter()
        .any(|m| !matches!(find_route(m, path), RouteMatch::NotFound))
}

fn with_headers(mut resp: Response, request_id: &str, cache: &str) -> Response {
    let h = resp.headers_mut();
    for (k, v) in SECURITY_HEADERS {
        let _ = h.set(k, v);
    }
    let _ = h.set("x-request-id", request_id);
    let _ = h.set("cache-control", cache);
    resp
}

/// Serves a console request; never fails (errors are HTML pages carrying the request id).
pub async fn dispatch(req: Request, env: &Env, ctx: &Context, rc: &mut RequestCtx) -> Response {
    let path = req.path();
    let method = Method::parse(&rc.method);
    let (route, params) = match method.map(|m| find_route(m, &path)) {
        Some(RouteMatch::Found(r, p)) => (r, p),
        Some(RouteMatch::MethodNotAllowed(_)) | None => {
            let err = ApiError::new(
                ErrorCode::MethodNotAllowed,
                "This page does not take that method.",
            );
            return error_response(&err, &rc.request_id);
        }
        Some(RouteMatch::NotFound) => return error_response(&not_found(), &rc.request_id),
    };
    rc.route = route.pattern;
    if route.id == Id::Asset {
        return match asset(&path).map(|(ct, body)| {
            let headers = Headers::new();
            let _ = headers.set("content-type", ct);
            ResponseBuilder::new()
                .with_headers(headers)
                .fixed(body.to_vec())
        }) {
            Some(resp) => with_headers(resp, &rc.request_id, ASSET_CACHE_CONTROL),
            None => error_response(&not_found(), &rc.request_id),
        };
    }
    let request_id = rc.request_id.clone();
    let is_get = route.method == Method::Get;
    let back = is_get.then(|| come_back_to(&req)).flatten();
    let polled = req.headers().get("hx-request").ok().flatten().as_deref() == Some("true");
    match gate::serve(route, params, req, env, ctx, rc).await {
        Ok((answer, cookies)) => {
            let resp = match answer {
                Answer::Html(status, body) => html(status, body),
                Answer::Redirect(to) => redirect(to),
                Answer::RedirectTo(to) => redirect(&to),
                Answer::Download(resp) => resp,
            };
            answered(resp, &cookies, &request_id)
        }
        // A page that needs a signed-in person sends anyone else to sign in, and back here
        // afterwards. A fragment htmx polls (a round's live counts) sends the whole page: a
        // redirect would only swap the sign-in page into the fragment.
        Err(e) if is_get && e.status() == 401 => {
            let to = return_to::sign_in_path(back.as_deref());
            let resp = if polled {
                let mut r = html(200, String::new());
                let _ = r.headers_mut().set("hx-redirect", &to);
                r
            } else {
                redirect(&to)
            };
            with_headers(resp, &request_id, "no-store")
        }
        Err(e) => error_response(&e, &request_id),
    }
}

/// The page a GET came from, to come back to after signing in: for a fragment htmx fetched,
/// the page it was fetched for (`HX-Current-URL`), else this request's own path and query.
fn come_back_to(req: &Request) -> Option<String> {
    let url = req.url().ok()?;
    let current = req.headers().get("hx-current-url").ok().flatten();
    match current {
        Some(c) => return_to::from_current_url(&c, &url.origin().ascii_serialization()),
        None => {
            let path = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            };
            return_to::safe(&path).map(str::to_owned)
        }
    }
}

/// A console answer as the browser gets it: the console's headers, uncached, and the cookies
/// the request set.
fn answered(resp: Response, cookies: &[String], request_id: &str) -> Response {
    let mut resp = with_headers(resp, request_id, "no-store");
    for c in cookies {
        let _ = resp.headers_mut().append("set-cookie", c);
    }
    resp
}

/// Where a sign-in the console started ends (the identity provider's callback): the page that
/// sent the person to sign in, or `/orgs`, with the session's cookies. `cookie_header` is the
/// callback request's.
pub(crate) fn signed_in(
    access: &str,
    refresh: &str,
    https: bool,
    cookie_header: &str,
    request_id: &str,
) -> Response {
    let names = cookie_names(https);
    let mut cookies = page::session_cookies(names, https, access, refresh).to_vec();
    let (to, forget) = page::after_sign_in(names, https, cookie_header);
    cookies.push(forget);
    answered(redirect(&to), &cookies, request_id)
}

fn html(status: u16, body: String) -> Response {
    let headers = Headers::new();
    let _ = headers.set("content-type", "text/html; charset=utf-8");
    ResponseBuilder::new()
        .with_status(status)
        .with_headers(headers)
        .fixed(body.into_bytes())
}

fn redirect(to: &str) -> Response {
    let headers = Headers::new();
    let _ = headers.set("location", to);
    ResponseBuilder::new()
        .with_status(303)
        .with_headers(headers)
        .empty()
}

/// The console's error page for `err`, with its headers; also what the identity provider's
/// callback answers when a sign-in the console started fails.
pub(crate) fn error_response(err: &ApiError, request_id: &str) -> Response {
    let status = err.status();
    let title = match status {
        400 | 409 | 413 | 415 | 422 => "That did not work",
        401 => "Please sign in",
        403 => "Not allowed",
        404 => "Not found",
        429 => "Too many requests",
        _ => "Something went wrong",
    };
    let message = if status >= 500 {
        "The server could not answer this page. Try again; if it persists, quote the request id."
    } else {
        err.message.as_str()
    };
    let body = pages::error_page(status, title, message, request_id).into_string();
    with_headers(html(status, body), request_id, "no-store")
}

/// The handler of a route that passed its gate.
async fn handle(id: Id, cx: &mut Cx<'_>, page: &mut Page) -> Result<Answer, ApiError> {
    match id {
        Id::Home | Id::Asset => Err(not_found()),
        Id::Session(id) => session::handle(id, cx, page).await,
        Id::Org(id) => org::handle(id, cx, page).await,
        Id::Audit(id) => audit::handle(id, cx, page).await,
        Id::Federation(id) => federation::handle(id, cx, page).await,
        Id::Fleet(id) => fleet::handle(id, cx, page).await,
        Id::Review(id) => review::handle(id, cx, page).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Console pages never shadow an API path, every org page captures `{org}`, and no two
    /// routes share a method and pattern.
    #[test]
    fn console_routes_stay_off_the_api() {
        let mut seen = std::collections::HashSet::new();
        for r in all_routes() {
            for prefix in ["/v1/", "/api/", "/oauth/", "/hooks/"] {
                assert!(!r.pattern.starts_with(prefix), "{}", r.pattern);
            }
            if matches!(r.auth, Gate::Org(_)) {
                assert!(r.pattern.contains("{org}"), "{}", r.pattern);
            }
            assert!(seen.insert((r.method, r.pattern)), "{}", r.pattern);
        }
        assert!(serves("/device") && serves("/orgs/acme/api-keys") && !serves("/v1/orgs"));
    }

    /// The browser test that checks every page (headers, axe, console errors, a screenshot)
    /// lists pages by these patterns; a page added here and not there would go unchecked.
    #[test]
    fn every_get_route_is_in_the_every_page_test() {
        let spec = include_str!("../../../../../tests/console/every-page.spec.mjs");
        for r in all_routes() {
            if r.method == Method::Get && r.id != Id::Asset {
                let quoted = format!("\"{}\"", r.pattern);
                assert!(
                    spec.contains(&quoted),
                    "{} is not in tests/console/every-page.spec.mjs",
                    r.pattern
                );
            }
        }
    }

    /// A page that mirrors a JSON route (`/orgs/{org}/…` for `/v1/orgs/{org}/…`, the same
    /// method) is gated by that route's own action, so the console never grants or withholds
    /// what the API does not.
    #[test]
    fn pages_have_the_json_routes_rule() {
        let mut mirrored = 0;
        for r in all_routes() {
            let Gate::Org(action) = r.auth else { continue };
            let api = format!("/v1{}", r.pattern);
            let json =
                crate::routes::all_routes().find(|j| j.pattern == api && j.method == r.method);
            if let Some(j) = json {
                assert_eq!(j.auth, crate::routes::Access::Org(action), "{}", r.pattern);
                mirrored += 1;
            }
        }
        assert!(mirrored >= 20, "{mirrored}");
    }
}
