//! Sign-in through identity providers: `GET /v1/auth/providers`, `…/{provider}/start` (302 to
//! the provider, with the browser-binding cookie) and `…/{provider}/callback`.

use edgeplane_core::views::identity::ProviderRedirect;
use edgeplane_core::ApiError;
use worker::Response;

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::identity::providers::{self, Callback, FLOW_TTL_SECS};

const COOKIE: &str = "ep_signin";

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

fn binding_cookie(cx: &Cx<'_>) -> Option<String> {
    let header = cx.req.headers().get("cookie").ok().flatten()?;
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
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
    let _ = h.set(
        "set-cookie",
        &format!(
            "{COOKIE}={}; {}",
            started.binding,
            cookie_attrs(cx, FLOW_TTL_SECS)
        ),
    );
    Ok(resp)
}

/// `GET /v1/auth/providers/{provider}/callback?code=…&state=…`: finishes the sign-in.
pub async fn callback(cx: &mut Cx<'_>) -> HttpResult {
    let name = cx.param("provider")?.to_owned();
    let back = Callback {
        error: query(cx, "error")?,
        state: query(cx, "state")?,
        code: query(cx, "code")?,
        binding: binding_cookie(cx),
    };
    let body = providers::callback(cx, &name, back).await?;
    let mut resp = respond::ok(&body)?;
    let _ = resp
        .headers_mut()
        .set("set-cookie", &format!("{COOKIE}=; {}", cookie_attrs(cx, 0)));
    Ok(resp)
}
