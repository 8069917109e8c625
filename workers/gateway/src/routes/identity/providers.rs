//! Sign-in through identity providers: `GET /v1/auth/providers`, `…/{provider}/start` (302 to
//! the provider, with the browser-binding cookie) and `…/{provider}/callback`.
//!
//! The console starts the same flow (`/sign-in/providers/{provider}`) and marks it with a
//! second cookie beside the binding one: the provider sends the browser back to the one
//! registered callback, which then finishes into the console's session cookies and a redirect
//! to `/orgs` (or the console's error page) instead of answering the tokens as JSON.

use edgeplane_core::console::cookie;
use edgeplane_core::views::identity::ProviderRedirect;
use edgeplane_core::ApiError;
use worker::Response;

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::identity::providers::{self, Callback, FLOW_TTL_SECS};

const COOKIE: &str = "ep_signin";
/// Set (to `console`) on a flow the console started.
const DESTINATION_COOKIE: &str = "ep_signin_to";

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    respond::ok(&providers::list(cx))
}

fn query(cx: &Cx<'_>, name: &str) -> Result<Option<String>, ApiError> {
    let url = cx
        .req
        .url()
        .map_err(|_| ApiError::bad_request("the request URL is not valid"))?;
    let value = url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned());
    Ok(value)
}

fn cookie_attrs(cx: &Cx<'_>, max_age: i64) -> String {
    let secure = if cx.cfg.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!("Path=/v1/auth/providers/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// The `Set-Cookie` values of a started flow: the browser binding, and for a flow the console
/// started its destination. Both are scoped to the providers' paths and live as long as a flow.
pub(crate) fn flow_cookies(cx: &Cx<'_>, binding: &str, console: bool) -> Vec<String> {
    let attrs = cookie_attrs(cx, FLOW_TTL_SECS);
    let mut out = vec![format!("{COOKIE}={binding}; {attrs}")];
    if console {
        out.push(format!("{DESTINATION_COOKIE}=console; {attrs}"));
    }
    out
}

fn request_cookie(cx: &Cx<'_>, name: &str) -> Option<String> {
    let header = cx.req.headers().get("cookie").ok().flatten()?;
    cookie(&header, name).map(str::to_owned)
}

/// `GET /v1/auth/providers/{provider}/start[?login_hint=…]`: 302 to the provider.
pub async fn start(cx: &mut Cx<'_>) -> HttpResult {
    let name = cx.param("provider")?.to_owned();
    let login_hint = query(cx, "login_hint")?.filter(|h| !h.is_empty());
    let started = providers::start(cx, &name, login_hint.as_deref()).await?;
    let url = started.authorization_url;
    let mut resp = Response::from_json(&ProviderRedirect {
        authorization_url: url.clone(),
    })
    .map_err(|_| ApiError::internal())?
    .with_status(302);
    let h = resp.headers_mut();
    let _ = h.set("location", &url);
    for c in flow_cookies(cx, &started.binding, false) {
        let _ = h.append("set-cookie", &c);
    }
    Ok(resp)
}

/// `GET /v1/auth/providers/{provider}/callback?code=…&state=…`: finishes the sign-in.
pub async fn callback(cx: &mut Cx<'_>) -> HttpResult {
    let name = cx.param("provider")?.to_owned();
    let back = Callback {
        error: query(cx, "error")?,
        state: query(cx, "state")?,
        code: query(cx, "code")?,
        binding: request_cookie(cx, COOKIE),
    };
    let console = request_cookie(cx, DESTINATION_COOKIE).as_deref() == Some("console");
    let outcome = providers::callback(cx, &name, back).await;
    let mut resp = match (outcome, console) {
        (Ok(issued), true) => crate::routes::console::signed_in(
            &issued.access_token,
            &issued.refresh_token,
            cx.cfg.issuer.starts_with("https://"),
            &cx.req
                .headers()
                .get("cookie")
                .ok()
                .flatten()
                .unwrap_or_default(),
            &cx.rc.request_id,
        ),
        (Err(e), true) => crate::routes::console::error_response(&e, &cx.rc.request_id),
        (Ok(issued), false) => respond::ok(&issued)?,
        (Err(e), false) => return Err(e),
    };
    let h = resp.headers_mut();
    for name in [COOKIE, DESTINATION_COOKIE] {
        let _ = h.append("set-cookie", &format!("{name}=; {}", cookie_attrs(cx, 0)));
    }
    Ok(resp)
}
