//! The web console: server-rendered HTML pages over the same service functions and view types
//! as the JSON API. A table of routes like the API's, each with its gate (public, signed in, or
//! an org action checked by the same `authn::org_access` and `authorize`); the browser session
//! is a cookie holding the web session's tokens; every POST must come from our Origin and, once
//! signed in, carry the session's CSRF token. Errors are HTML pages with the request id.

use edgeplane_core::access::audit_query::AuditQuery;
use edgeplane_core::auth::{Action, Principal, PrincipalKind, Role, Scopes};
use edgeplane_core::console::pages::{self, Chrome, OverviewCounts};
use edgeplane_core::console::{
    asset, cookie, cookie_names, csrf_ok, csrf_token, same_origin, set_cookie, CookieNames,
    ASSET_CACHE_CONTROL, SECURITY_HEADERS,
};
use edgeplane_core::crypto::kdf::KeyPurpose;
use edgeplane_core::http::{match_route, BodyLimit, Method, RouteMatch, RouteSpec};
use edgeplane_core::identity::session::SessionKind;
use edgeplane_core::ids::{ApiKeyId, OrgId, RoundId, SessionId, TypedId, UserId};
use edgeplane_core::views::identity::{OrgMembershipView, SessionIssued};
use edgeplane_core::{validate, ApiError, ErrorCode};
use edgeplane_runtime::db::Db;
use worker::{Context, Env, Headers, Request, Response, ResponseBuilder};

use crate::authn;
use crate::config;
use crate::cx::Cx;
use crate::http::RequestCtx;
use crate::service::access::{api_keys, audit, members};
use crate::service::federation::rounds;
use crate::service::identity::{device, magic, me, refresh, sessions, signin};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    Home,
    Asset,
    SignIn,
    RequestLink,
    MagicLanding,
    SpendLink,
    SignOut,
    Orgs,
    Overview,
    ApiKeys,
    CreateApiKey,
    RevokeApiKey,
    Members,
    ChangeRole,
    RemoveMember,
    Audit,
    Sessions,
    RevokeSession,
    Device,
    ApproveDevice,
    DenyDevice,
    Rounds,
    Round,
}

/// Who may open a page: anyone, a signed-in person, or a member holding an action's scope
/// (the JSON route's own rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Public,
    User,
    Org(Action),
}

type ConsoleRoute = RouteSpec<Id, Gate>;

const fn page(id: Id, method: Method, pattern: &'static str, auth: Gate) -> ConsoleRoute {
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

use Method::{Get, Post};

pub const ROUTES: &[ConsoleRoute] = &[
    page(Id::Home, Get, "/", Gate::Public),
    page(Id::Asset, Get, "/assets/{name}", Gate::Public),
    page(Id::SignIn, Get, "/sign-in", Gate::Public),
    page(Id::RequestLink, Post, "/sign-in", Gate::Public),
    page(Id::MagicLanding, Get, "/sign-in/magic-link", Gate::Public),
    page(Id::SpendLink, Post, "/sign-in/magic-link", Gate::Public),
    page(Id::SignOut, Post, "/sign-out", Gate::User),
    page(Id::Orgs, Get, "/orgs", Gate::User),
    page(Id::Overview, Get, "/orgs/{org}", Gate::Org(Action::ReadOrg)),
    page(
        Id::ApiKeys,
        Get,
        "/orgs/{org}/api-keys",
        Gate::Org(Action::ReadApiKeys),
    ),
    page(
        Id::CreateApiKey,
        Post,
        "/orgs/{org}/api-keys",
        Gate::Org(Action::ManageApiKeys),
    ),
    page(
        Id::RevokeApiKey,
        Post,
        "/orgs/{org}/api-keys/{key}/revoke",
        Gate::Org(Action::ManageApiKeys),
    ),
    page(
        Id::Members,
        Get,
        "/orgs/{org}/members",
        Gate::Org(Action::ReadMembers),
    ),
    page(
        Id::ChangeRole,
        Post,
        "/orgs/{org}/members/{user}/role",
        Gate::Org(Action::ManageMembers),
    ),
    page(
        Id::RemoveMember,
        Post,
        "/orgs/{org}/members/{user}/remove",
        Gate::Org(Action::ManageMembers),
    ),
    page(
        Id::Audit,
        Get,
        "/orgs/{org}/audit",
        Gate::Org(Action::ReadAudit),
    ),
    page(Id::Sessions, Get, "/settings/sessions", Gate::User),
    page(
        Id::RevokeSession,
        Post,
        "/settings/sessions/{session}/revoke",
        Gate::User,
    ),
    page(Id::Device, Get, "/device", Gate::User),
    page(Id::ApproveDevice, Post, "/device/approve", Gate::User),
    page(Id::DenyDevice, Post, "/device/deny", Gate::User),
    page(
        Id::Rounds,
        Get,
        "/orgs/{org}/rounds",
        Gate::Org(Action::ReadRounds),
    ),
    page(
        Id::Round,
        Get,
        "/orgs/{org}/rounds/{round}",
        Gate::Org(Action::ReadRounds),
    ),
];

/// Whether `path` is a console page (any method): the console answers it, in HTML.
pub fn serves(path: &str) -> bool {
    [Get, Post]
        .into_iter()
        .any(|m| !matches!(match_route(ROUTES, m, path), RouteMatch::NotFound))
}

/// A web session lives as long as its refresh token may (the cookie is cleared on sign-out).
const COOKIE_MAX_AGE_SECS: i64 = 30 * 24 * 3600;

/// What a page handler answers besides a plain page.
enum Answer {
    Html(u16, String),
    Redirect(&'static str),
    RedirectTo(String),
}

/// The request facts the handlers need besides `Cx`.
struct Page {
    https: bool,
    names: CookieNames,
    form: Vec<(String, String)>,
    csrf: Option<String>,
    email: Option<String>,
    set_cookies: Vec<String>,
}

impl Page {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn require(&self, name: &str) -> Result<&str, ApiError> {
        self.field(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::validation(format!("{name} is required")))
    }

    fn chrome<'a>(&'a self, title: &'a str, org: Option<&'a OrgMembershipView>) -> Chrome<'a> {
        Chrome {
            title,
            user_email: self.email.as_deref(),
            csrf: self.csrf.as_deref(),
            org,
        }
    }

    fn sign_in_cookies(&mut self, access: &str, refresh: &str) {
        self.set_cookies.push(set_cookie(
            self.names.access,
            access,
            self.https,
            COOKIE_MAX_AGE_SECS,
        ));
        self.set_cookies.push(set_cookie(
            self.names.refresh,
            refresh,
            self.https,
            COOKIE_MAX_AGE_SECS,
        ));
    }

    fn clear_cookies(&mut self) {
        for name in [self.names.access, self.names.refresh] {
            self.set_cookies.push(set_cookie(name, "", self.https, 0));
        }
    }
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, "There is no such page.")
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
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
    let (route, params) = match method.map(|m| match_route(ROUTES, m, &path)) {
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
    let is_get = route.method == Get;
    match serve(route, params, req, env, ctx, rc).await {
        Ok((answer, cookies)) => {
            let resp = match answer {
                Answer::Html(status, body) => html(status, body),
                Answer::Redirect(to) => redirect(to),
                Answer::RedirectTo(to) => redirect(&to),
            };
            let mut resp = with_headers(resp, &request_id, "no-store");
            for c in cookies {
                let _ = resp.headers_mut().append("set-cookie", &c);
            }
            resp
        }
        // A page that needs a signed-in person sends anyone else to sign in.
        Err(e) if is_get && e.status() == 401 => {
            with_headers(redirect("/sign-in"), &request_id, "no-store")
        }
        Err(e) => error_response(&e, &request_id),
    }
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

fn error_response(err: &ApiError, request_id: &str) -> Response {
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

async fn serve(
    route: &'static ConsoleRoute,
    params: edgeplane_core::http::Params,
    req: Request,
    env: &Env,
    ctx: &Context,
    rc: &mut RequestCtx,
) -> Result<(Answer, Vec<String>), ApiError> {
    let url = req.url().map_err(|_| not_found())?;
    let https = url.scheme() == "https";
    let ours = url.origin().ascii_serialization();
    let names = cookie_names(https);
    let cookies = header(&req, "cookie").unwrap_or_default();
    let access = cookie(&cookies, names.access)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let refresh_token = cookie(&cookies, names.refresh)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let origin = header(&req, "origin");

    // Every state-changing request comes from our own pages.
    if route.method == Post && !same_origin(origin.as_deref(), &ours) {
        return Err(ApiError::forbidden(
            "This form was not sent from this site (Origin check failed).",
        ));
    }

    let cfg = config::load(env)?;
    let db = Db::from_env(env)?;
    let mut cx = Cx::new(
        env,
        ctx,
        cfg.clone(),
        rc,
        req,
        params,
        Principal::anonymous(),
        None,
        route.body_limit,
        db,
    );
    let mut page = Page {
        https,
        names,
        form: Vec::new(),
        csrf: None,
        email: None,
        set_cookies: Vec::new(),
    };

    // The browser session: the access token, or, once it expired, a refresh (rotation with
    // reuse detection, exactly as `POST /v1/auth/refresh`).
    if route.auth != Gate::Public || route.id == Id::Home {
        let mut principal = None;
        if let Some(tok) = access.as_deref() {
            if let Ok((p, _)) = authn::resolve(cx.db(), &cfg, Some(tok)).await {
                principal = Some(p);
            }
        }
        if principal.is_none() {
            if let Some(rt) = refresh_token.as_deref() {
                match refresh::rotate(&cx, rt, SessionKind::Web).await {
                    Ok(r) => {
                        page.sign_in_cookies(&r.issued.access_token, &r.issued.refresh_token);
                        if let Ok((p, _)) =
                            authn::resolve(cx.db(), &cfg, Some(&r.issued.access_token)).await
                        {
                            principal = Some(p);
                        }
                    }
                    Err(_) => page.clear_cookies(),
                }
            }
        }
        if let Some(p) = principal.filter(|p| p.kind == PrincipalKind::User) {
            cx.principal = p;
        }
    }
    let signed_in = cx.principal.kind == PrincipalKind::User;
    if route.id == Id::Home {
        let to = if signed_in { "/orgs" } else { "/sign-in" };
        return Ok((Answer::Redirect(to), page.set_cookies));
    }
    if route.auth != Gate::Public {
        let (Some(user), Some(sid)) = (
            cx.principal.user_id.clone(),
            cx.principal.session_id.clone(),
        ) else {
            return Err(ApiError::unauthenticated(
                "Please sign in to see this page.",
            ));
        };
        let key = cfg.root.derive(KeyPurpose::ConsoleCsrf);
        page.csrf = Some(csrf_token(&key, &sid));
        if route.method == Post {
            page.form = read_form(&mut cx).await?;
            if !csrf_ok(&key, &sid, page.field("csrf")) {
                return Err(ApiError::forbidden(
                    "This form's security token is missing or stale. Reload the page and try again.",
                ));
            }
        }
        page.email = Some(signin::user_by_id(&cx, &user).await?.email);
    } else if route.method == Post {
        page.form = read_form(&mut cx).await?;
    }
    if let Gate::Org(action) = route.auth {
        let org_ref = cx.param("org")?.to_owned();
        let access = authn::org_access(cx.db(), &cx.principal, &org_ref).await?;
        edgeplane_core::auth::authorize(&access, action)?;
        cx.set_org(access);
    }
    let answer = handle(route.id, &mut cx, &mut page).await?;
    Ok((answer, page.set_cookies))
}

async fn read_form(cx: &mut Cx<'_>) -> Result<Vec<(String, String)>, ApiError> {
    let ct = cx.req.headers().get("content-type").ok().flatten();
    edgeplane_core::identity::form::require_form_content_type(ct.as_deref())?;
    let body = cx.raw_body().await?;
    Ok(form_urlencoded::parse(&body).into_owned().collect())
}

fn ok(body: maud_string::Html) -> Result<Answer, ApiError> {
    Ok(Answer::Html(200, body.0))
}

mod maud_string {
    /// A rendered page.
    pub struct Html(pub String);
}

macro_rules! render {
    ($markup:expr) => {
        ok(maud_string::Html($markup.into_string()))
    };
}

/// The current person's membership in the org this request acts in (for the header).
async fn membership(cx: &Cx<'_>) -> Result<OrgMembershipView, ApiError> {
    let org_id = cx.org()?.org_id.clone();
    me::list_orgs(cx)
        .await?
        .orgs
        .into_iter()
        .find(|m| m.org.id.as_str() == org_id)
        .ok_or_else(|| ApiError::not_found("organization"))
}

fn org_id(cx: &Cx<'_>) -> Result<OrgId, ApiError> {
    OrgId::parse(&cx.org()?.org_id).map_err(|_| ApiError::internal())
}

fn user_and_session(cx: &Cx<'_>) -> Result<(String, String), ApiError> {
    match (&cx.principal.user_id, &cx.principal.session_id) {
        (Some(u), Some(s)) => Ok((u.clone(), s.clone())),
        _ => Err(ApiError::unauthenticated("Please sign in.")),
    }
}

async fn handle(id: Id, cx: &mut Cx<'_>, page: &mut Page) -> Result<Answer, ApiError> {
    match id {
        Id::Home | Id::Asset => Err(not_found()),
        Id::SignIn => render!(pages::sign_in(None)),
        Id::RequestLink => {
            let email = validate::email(page.require("email")?)?;
            let sent = magic::request(cx, &email).await?;
            render!(pages::sign_in_sent(&sent.message))
        }
        Id::MagicLanding => render!(pages::magic_landing()),
        Id::SpendLink => {
            let issued: SessionIssued = magic::verify(cx, page.require("token")?).await?;
            page.sign_in_cookies(&issued.access_token, &issued.refresh_token);
            Ok(Answer::Redirect("/orgs"))
        }
        Id::SignOut => {
            let (user, sid) = user_and_session(cx)?;
            let sid = SessionId::parse(&sid).map_err(|_| ApiError::internal())?;
            sessions::revoke(cx, &user, &sid, "signed_out").await?;
            page.clear_cookies();
            Ok(Answer::Redirect("/sign-in"))
        }
        Id::Orgs => {
            let orgs = me::list_orgs(cx).await?;
            render!(pages::orgs(&page.chrome("Your organizations", None), &orgs))
        }
        Id::Overview => {
            let m = membership(cx).await?;
            let org = org_id(cx)?;
            let counts = OverviewCounts {
                members: match cx.authorize(Action::ReadMembers) {
                    Ok(()) => Some(members::list(cx).await?.members.len()),
                    Err(_) => None,
                },
                api_keys: match cx.authorize(Action::ReadApiKeys) {
                    Ok(()) => Some(api_keys::list(cx, false).await?.api_keys.len()),
                    Err(_) => None,
                },
                rounds: match cx.authorize(Action::ReadRounds) {
                    Ok(()) => Some(rounds::list(cx.db(), &org, None).await?.rounds.len()),
                    Err(_) => None,
                },
            };
            let title = m.org.name.clone();
            render!(pages::overview(&page.chrome(&title, Some(&m)), &m, &counts))
        }
        Id::ApiKeys => {
            let m = membership(cx).await?;
            let keys = api_keys::list(cx, false).await?;
            let can = cx.authorize(Action::ManageApiKeys).is_ok();
            render!(pages::api_keys(
                &page.chrome("API keys", Some(&m)),
                &m.org.slug,
                &keys,
                can,
                None
            ))
        }
        Id::CreateApiKey => {
            let name = page.require("name")?.to_owned();
            let scopes = Scopes::parse_list(
                page.form
                    .iter()
                    .filter(|(k, _)| k == "scope")
                    .map(|(_, v)| v.as_str()),
            )
            .map_err(ApiError::validation)?;
            if scopes.is_empty() {
                return Err(ApiError::validation("Choose at least one scope."));
            }
            let issued = api_keys::create(
                cx,
                api_keys::NewKey {
                    name,
                    scopes,
                    expires_in_seconds: None,
                },
            )
            .await?;
            let m = membership(cx).await?;
            let keys = api_keys::list(cx, false).await?;
            let chrome = page.chrome("API keys", Some(&m));
            Ok(Answer::Html(
                201,
                pages::api_keys(&chrome, &m.org.slug, &keys, true, Some(&issued)).into_string(),
            ))
        }
        Id::RevokeApiKey => {
            let key: ApiKeyId = cx.id("key")?;
            api_keys::revoke(cx, &key).await?;
            Ok(Answer::RedirectTo(format!(
                "/orgs/{}/api-keys",
                cx.param("org")?
            )))
        }
        Id::Members => {
            let m = membership(cx).await?;
            let list = members::list(cx).await?;
            let can = cx.authorize(Action::ManageMembers).is_ok();
            render!(pages::members(
                &page.chrome("Members", Some(&m)),
                &m.org.slug,
                &list,
                can
            ))
        }
        Id::ChangeRole => {
            let user: UserId = cx.id("user")?;
            let role = Role::parse(page.require("role")?)
                .ok_or_else(|| ApiError::validation("role must be member, admin or owner"))?;
            members::change_role(cx, &user, role).await?;
            Ok(Answer::RedirectTo(format!(
                "/orgs/{}/members",
                cx.param("org")?
            )))
        }
        Id::RemoveMember => {
            let user: UserId = cx.id("user")?;
            members::remove(cx, &user).await?;
            Ok(Answer::RedirectTo(format!(
                "/orgs/{}/members",
                cx.param("org")?
            )))
        }
        Id::Audit => {
            let m = membership(cx).await?;
            let q = AuditQuery::parse(cx.query()?)?;
            let events = audit::list(cx, q).await?;
            let verified = audit::verify(cx, None).await?;
            render!(pages::audit(
                &page.chrome("Audit log", Some(&m)),
                &m.org.slug,
                &events,
                &verified
            ))
        }
        Id::Sessions => {
            let (user, sid) = user_and_session(cx)?;
            let list = sessions::list(cx, &user, &sid).await?;
            render!(pages::sessions(&page.chrome("Sessions", None), &list))
        }
        Id::RevokeSession => {
            let (user, current) = user_and_session(cx)?;
            let id: SessionId = cx.id("session")?;
            sessions::revoke(cx, &user, &id, "revoked_by_user").await?;
            if id.as_str() == current {
                page.clear_cookies();
                return Ok(Answer::Redirect("/sign-in"));
            }
            Ok(Answer::Redirect("/settings/sessions"))
        }
        Id::Device => {
            let (user, _) = user_and_session(cx)?;
            let code = cx
                .query()?
                .into_iter()
                .find(|(k, _)| k == "user_code")
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty());
            let Some(code) = code else {
                return render!(pages::device_enter(
                    &page.chrome("Approve a command line", None),
                    None
                ));
            };
            match device::verify(cx, &user, &code).await {
                Ok(v) => {
                    let orgs = me::list_orgs(cx).await?;
                    render!(pages::device_confirm(
                        &page.chrome("Approve a command line", None),
                        &code,
                        &v,
                        &orgs
                    ))
                }
                Err(e) if e.status() < 500 && e.status() != 429 => {
                    let msg = format!("{} Check the code and try again.", e.message);
                    Ok(Answer::Html(
                        404,
                        pages::device_enter(
                            &page.chrome("Approve a command line", None),
                            Some(&msg),
                        )
                        .into_string(),
                    ))
                }
                Err(e) => Err(e),
            }
        }
        Id::ApproveDevice => {
            let (user, _) = user_and_session(cx)?;
            let code = page.require("user_code")?.to_owned();
            let org = page.require("org")?.to_owned();
            let d = device::approve(cx, &user, &code, &org, None).await?;
            render!(pages::device_done(
                &page.chrome("Command line approved", None),
                &d
            ))
        }
        Id::DenyDevice => {
            let (user, _) = user_and_session(cx)?;
            let code = page.require("user_code")?.to_owned();
            let d = device::deny(cx, &user, &code).await?;
            render!(pages::device_done(
                &page.chrome("Command line denied", None),
                &d
            ))
        }
        Id::Rounds => {
            let m = membership(cx).await?;
            let list = rounds::list(cx.db(), &org_id(cx)?, None).await?;
            render!(pages::rounds(
                &page.chrome("Training rounds", Some(&m)),
                &m.org.slug,
                &list
            ))
        }
        Id::Round => {
            let m = membership(cx).await?;
            let id: RoundId = cx.id("round")?;
            let r = rounds::get(cx.db(), cx.env, &org_id(cx)?, &id).await?;
            let title = format!("Round {}", id.as_str());
            render!(pages::round(&page.chrome(&title, Some(&m)), &r))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Console pages never shadow an API path, and every org page captures `{org}`.
    #[test]
    fn console_routes_stay_off_the_api() {
        for r in ROUTES {
            for prefix in ["/v1/", "/api/", "/oauth/", "/hooks/"] {
                assert!(!r.pattern.starts_with(prefix), "{}", r.pattern);
            }
            if matches!(r.auth, Gate::Org(_)) {
                assert!(r.pattern.contains("{org}"), "{}", r.pattern);
            }
        }
        assert!(serves("/device") && serves("/orgs/acme/api-keys") && !serves("/v1/orgs"));
    }
}
