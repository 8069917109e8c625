//! What every console handler shares: the page's request facts (`Page`: the form, the CSRF
//! token, who is signed in, the cookies to set), what a handler answers (`Answer`), and the
//! small look-ups a page needs for its frame (the membership of the org it shows).

use std::str::FromStr;

use edgeplane_core::console::pages::{Chrome, Markup};
use edgeplane_core::console::{cookie, return_to, set_cookie, CookieNames};
use edgeplane_core::ids::{OrgId, TypedId};
use edgeplane_core::views::identity::OrgMembershipView;
use edgeplane_core::{ApiError, ErrorCode};
use serde::de::DeserializeOwned;

use crate::authn;
use crate::cx::Cx;
use crate::service::identity::me;

/// A web session lives as long as its refresh token may (the cookie is cleared on sign-out).
const COOKIE_MAX_AGE_SECS: i64 = 30 * 24 * 3600;

/// The `Set-Cookie` values that hold a web session in the browser: the access token and the
/// refresh token, each HttpOnly (`edgeplane_core::console::set_cookie`).
pub fn session_cookies(
    names: CookieNames,
    https: bool,
    access: &str,
    refresh: &str,
) -> [String; 2] {
    [
        set_cookie(names.access, access, https, COOKIE_MAX_AGE_SECS),
        set_cookie(names.refresh, refresh, https, COOKIE_MAX_AGE_SECS),
    ]
}

/// Where a person goes now that they signed in: the page that sent them to sign in (kept in
/// the `next` cookie, checked again), else their orgs; and the `Set-Cookie` that forgets it.
pub fn after_sign_in(names: CookieNames, https: bool, cookie_header: &str) -> (String, String) {
    let to = cookie(cookie_header, names.next)
        .and_then(return_to::decode)
        .unwrap_or_else(|| "/orgs".to_owned());
    (to, set_cookie(names.next, "", https, 0))
}

/// What a page handler answers.
pub enum Answer {
    Html(u16, String),
    Redirect(&'static str),
    RedirectTo(String),
    /// A file to save (an audit export, a model version), streamed as the JSON route's
    /// service made it; it gets the console's headers.
    Download(worker::Response),
}

/// A rendered page, 200.
pub fn render(m: Markup) -> Result<Answer, ApiError> {
    Ok(Answer::Html(200, m.into_string()))
}

/// A rendered page with another status (201 after a create, 422 for a form to correct).
pub fn render_status(status: u16, m: Markup) -> Result<Answer, ApiError> {
    Ok(Answer::Html(status, m.into_string()))
}

/// The request facts the handlers need besides `Cx`.
pub struct Page {
    pub https: bool,
    pub names: CookieNames,
    pub form: Vec<(String, String)>,
    pub csrf: Option<String>,
    pub email: Option<String>,
    pub set_cookies: Vec<String>,
}

impl Page {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn require(&self, name: &str) -> Result<&str, ApiError> {
        self.field(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::validation(format!("{name} is required")))
    }

    /// An optional field: absent, empty or blank is `None`.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.field(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// A required field read as a number.
    pub fn number<T: FromStr>(&self, name: &str) -> Result<T, ApiError> {
        parse_number(name, self.require(name)?)
    }

    /// An optional field read as a number.
    pub fn optional_number<T: FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.optional(name)
            .map(|v| parse_number(name, v))
            .transpose()
    }

    /// A required field holding one of a serde enum's wire names (`github`, `cloud`, …): the
    /// inverse of `pages::word`.
    pub fn choice<T: DeserializeOwned>(&self, name: &str) -> Result<T, ApiError> {
        let v = self.require(name)?;
        serde_json::from_value(serde_json::Value::String(v.to_owned()))
            .map_err(|_| ApiError::validation(format!("{name} is not one of the choices offered")))
    }

    pub fn chrome<'a>(&'a self, title: &'a str, org: Option<&'a OrgMembershipView>) -> Chrome<'a> {
        Chrome {
            title,
            user_email: self.email.as_deref(),
            csrf: self.csrf.as_deref(),
            org,
        }
    }

    pub fn sign_in_cookies(&mut self, access: &str, refresh: &str) {
        self.set_cookies
            .extend(session_cookies(self.names, self.https, access, refresh));
    }

    /// Remembers `next` (a `return_to::safe` path) until the sign-in this page starts ends.
    pub fn remember_return(&mut self, next: &str) {
        self.set_cookies.push(set_cookie(
            self.names.next,
            &return_to::encode(next),
            self.https,
            return_to::COOKIE_MAX_AGE_SECS,
        ));
    }

    pub fn clear_cookies(&mut self) {
        for name in [self.names.access, self.names.refresh] {
            self.set_cookies.push(set_cookie(name, "", self.https, 0));
        }
    }
}

fn parse_number<T: FromStr>(name: &str, v: &str) -> Result<T, ApiError> {
    v.trim()
        .parse()
        .map_err(|_| ApiError::validation(format!("{name} must be a number")))
}

/// An error a person can correct on the form that caused it (shown above the form, which
/// keeps what they typed); anything else is the error page.
pub fn correctable(e: &ApiError) -> bool {
    matches!(e.status(), 400 | 404 | 409 | 422)
}

pub fn not_found() -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, "There is no such page.")
}

/// The current person's membership in the org this request acts in (for the header), from the
/// membership the gate's access check just read (this isolate's cache), so the header costs no
/// read of its own.
pub async fn membership(cx: &Cx<'_>) -> Result<OrgMembershipView, ApiError> {
    let (user, _) = user_and_session(cx)?;
    let org_id = cx.org()?.org_id.clone();
    let m = authn::find_membership(cx.db(), &user, &org_id)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    me::membership_view(&m)
}

pub fn org_id(cx: &Cx<'_>) -> Result<OrgId, ApiError> {
    OrgId::parse(&cx.org()?.org_id).map_err(|_| ApiError::internal())
}

/// Where to send the browser after a form on an org page: `/orgs/{org}{rest}`.
pub fn org_page(cx: &Cx<'_>, rest: &str) -> Result<Answer, ApiError> {
    Ok(Answer::RedirectTo(format!(
        "/orgs/{}{rest}",
        cx.param("org")?
    )))
}

pub fn user_and_session(cx: &Cx<'_>) -> Result<(String, String), ApiError> {
    match (&cx.principal.user_id, &cx.principal.session_id) {
        (Some(u), Some(s)) => Ok((u.clone(), s.clone())),
        _ => Err(ApiError::unauthenticated("Please sign in.")),
    }
}
