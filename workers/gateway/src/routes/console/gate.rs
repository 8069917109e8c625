//! The gate in front of every console handler: the Origin check of a POST, the browser session
//! (the access token's cookie, or a refresh with rotation once it expired), the CSRF token of
//! a signed-in form (a file upload's in its address, as its body streams to the handler), and
//! for org pages the JSON route's own rule (`authn::org_access` and `authorize`: another org is
//! a 404, a missing scope a 403).

use edgeplane_core::auth::{Principal, PrincipalKind};
use edgeplane_core::console::{cookie, cookie_names, csrf_ok, csrf_token, same_origin};
use edgeplane_core::crypto::kdf::KeyPurpose;
use edgeplane_core::http::{BodyLimit, Method, Params};
use edgeplane_core::identity::session::SessionKind;
use edgeplane_core::ApiError;
use edgeplane_runtime::db::Db;
use worker::{Context, Env, Request};

use super::page::{not_found, Answer, Page};
use super::{handle, ConsoleRoute, Gate, Id};
use crate::authn;
use crate::config;
use crate::cx::Cx;
use crate::http::RequestCtx;
use crate::service::identity::refresh;

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

pub async fn serve(
    route: &'static ConsoleRoute,
    params: Params,
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
    if route.method == Method::Post && !same_origin(origin.as_deref(), &ours) {
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
            if let Ok(r) = authn::resolve(cx.db(), &cfg, Some(tok)).await {
                principal = Some(r.principal);
            }
        }
        if principal.is_none() {
            if let Some(rt) = refresh_token.as_deref() {
                match refresh::rotate(&cx, rt, SessionKind::Web).await {
                    Ok(r) => {
                        page.sign_in_cookies(&r.issued.access_token, &r.issued.refresh_token);
                        if let Ok(resolved) =
                            authn::resolve(cx.db(), &cfg, Some(&r.issued.access_token)).await
                        {
                            principal = Some(resolved.principal);
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
        let (Some(_), Some(sid)) = (&cx.principal.user_id, cx.principal.session_id.clone()) else {
            return Err(ApiError::unauthenticated(
                "Please sign in to see this page.",
            ));
        };
        let key = cfg.root.derive(KeyPurpose::ConsoleCsrf);
        page.csrf = Some(csrf_token(&key, &sid));
        if route.method == Method::Post {
            // A file upload streams its body to the handler (multipart without JavaScript, the
            // raw file with it), so its token comes in the form's address instead.
            let presented = if streams_body(route) {
                cx.query()?
                    .into_iter()
                    .find(|(k, _)| k == "csrf")
                    .map(|(_, v)| v)
            } else {
                page.form = read_form(&mut cx).await?;
                page.field("csrf").map(str::to_owned)
            };
            if !csrf_ok(&key, &sid, presented.as_deref()) {
                return Err(ApiError::forbidden(
                    "This form's security token is missing or stale. Reload the page and try again.",
                ));
            }
        }
        page.email = Some(authn::session_email(cx.db(), &sid).await?);
    } else if route.method == Method::Post {
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

/// A route whose body is larger than a form's: a file upload, which its handler streams.
fn streams_body(route: &ConsoleRoute) -> bool {
    route.body_limit.0 > BodyLimit::SMALL.0
}

async fn read_form(cx: &mut Cx<'_>) -> Result<Vec<(String, String)>, ApiError> {
    let ct = cx.req.headers().get("content-type").ok().flatten();
    edgeplane_core::identity::form::require_form_content_type(ct.as_deref())?;
    let body = cx.raw_body().await?;
    Ok(form_urlencoded::parse(&body).into_owned().collect())
}
