//! Signing in (magic link, or an identity provider: the flow starts here and the API's callback
//! finishes it into the console's cookies) and out, the person's own sessions, and `/device`, where a person
//! approves or denies the code the CLI shows (RFC 8628).

use edgeplane_core::console::{pages, return_to};
use edgeplane_core::http::Method::{Get, Post};
use edgeplane_core::ids::{SessionId, TypedId};
use edgeplane_core::views::identity::SessionIssued;
use edgeplane_core::{validate, ApiError};

use super::page::{after_sign_in, render, render_status, user_and_session, Answer, Page};
use super::{route, ConsoleRoute, Gate};
use crate::cx::Cx;
use crate::routes::identity::providers::flow_cookies;
use crate::service::identity::{device, magic, me, providers, sessions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    SignIn,
    StartProvider,
    RequestLink,
    MagicLanding,
    SpendLink,
    SignOut,
    Sessions,
    RevokeSession,
    RevokeOtherSessions,
    RevokeAllSessions,
    Device,
    ApproveDevice,
    DenyDevice,
}

const fn r(id: Id) -> super::Id {
    super::Id::Session(id)
}

pub const ROUTES: &[ConsoleRoute] = &[
    route(r(Id::SignIn), Get, "/sign-in", Gate::Public),
    route(r(Id::RequestLink), Post, "/sign-in", Gate::Public),
    route(
        r(Id::StartProvider),
        Get,
        "/sign-in/providers/{provider}",
        Gate::Public,
    ),
    route(
        r(Id::MagicLanding),
        Get,
        "/sign-in/magic-link",
        Gate::Public,
    ),
    route(r(Id::SpendLink), Post, "/sign-in/magic-link", Gate::Public),
    route(r(Id::SignOut), Post, "/sign-out", Gate::User),
    route(r(Id::Sessions), Get, "/settings/sessions", Gate::User),
    route(
        r(Id::RevokeSession),
        Post,
        "/settings/sessions/{session}/revoke",
        Gate::User,
    ),
    // `DELETE /v1/sessions`: every session but this one, or all of them.
    route(
        r(Id::RevokeOtherSessions),
        Post,
        "/settings/sessions/revoke-others",
        Gate::User,
    ),
    route(
        r(Id::RevokeAllSessions),
        Post,
        "/settings/sessions/revoke-all",
        Gate::User,
    ),
    route(r(Id::Device), Get, "/device", Gate::User),
    route(r(Id::ApproveDevice), Post, "/device/approve", Gate::User),
    route(r(Id::DenyDevice), Post, "/device/deny", Gate::User),
];

pub async fn handle(id: Id, cx: &mut Cx<'_>, page: &mut Page) -> Result<Answer, ApiError> {
    match id {
        Id::SignIn => {
            let next = query_next(cx)?;
            render(pages::sign_in(None, &providers::list(cx), next.as_deref()))
        }
        Id::StartProvider => {
            let name = cx.param("provider")?.to_owned();
            let hint = cx
                .query()?
                .into_iter()
                .find(|(k, v)| k == "login_hint" && !v.is_empty())
                .map(|(_, v)| v);
            let next = query_next(cx)?;
            let started = providers::start(cx, &name, hint.as_deref()).await?;
            page.set_cookies
                .extend(flow_cookies(cx, &started.binding, true));
            if let Some(n) = next {
                page.remember_return(&n);
            }
            Ok(Answer::RedirectTo(started.authorization_url))
        }
        Id::RequestLink => {
            let email = validate::email(page.require("email")?)?;
            let sent = magic::request(cx, &email).await?;
            if let Some(n) = page
                .field("next")
                .and_then(return_to::safe)
                .map(str::to_owned)
            {
                page.remember_return(&n);
            }
            render(pages::sign_in_sent(&sent.message))
        }
        Id::MagicLanding => render(pages::magic_landing()),
        Id::SpendLink => {
            let issued: SessionIssued = magic::verify(cx, page.require("token")?).await?;
            page.sign_in_cookies(&issued.access_token, &issued.refresh_token);
            let cookies = cx.req.headers().get("cookie").ok().flatten();
            let (to, forget) = after_sign_in(page.names, page.https, &cookies.unwrap_or_default());
            page.set_cookies.push(forget);
            Ok(Answer::RedirectTo(to))
        }
        Id::SignOut => {
            let (user, sid) = user_and_session(cx)?;
            let sid = SessionId::parse(&sid).map_err(|_| ApiError::internal())?;
            sessions::revoke(cx, &user, &sid, "signed_out").await?;
            page.clear_cookies();
            Ok(Answer::Redirect("/sign-in"))
        }
        Id::Sessions => {
            let (user, sid) = user_and_session(cx)?;
            let list = sessions::list(cx, &user, &sid).await?;
            render(pages::sessions(&page.chrome("Sessions", None), &list))
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
        Id::RevokeOtherSessions => {
            let (user, current) = user_and_session(cx)?;
            let current = SessionId::parse(&current).map_err(|_| ApiError::internal())?;
            sessions::revoke_all(cx, &user, Some(&current)).await?;
            Ok(Answer::Redirect("/settings/sessions"))
        }
        Id::RevokeAllSessions => {
            let (user, _) = user_and_session(cx)?;
            sessions::revoke_all(cx, &user, None).await?;
            page.clear_cookies();
            Ok(Answer::Redirect("/sign-in"))
        }
        Id::Device => {
            let (user, _) = user_and_session(cx)?;
            let code = cx
                .query()?
                .into_iter()
                .find(|(k, _)| k == "user_code")
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty());
            let title = "Approve a command line";
            let Some(code) = code else {
                return render(pages::device_enter(&page.chrome(title, None), None));
            };
            match device::verify(cx, &user, &code).await {
                Ok(v) => {
                    let orgs = me::list_orgs(cx).await?;
                    render(pages::device_confirm(
                        &page.chrome(title, None),
                        &code,
                        &v,
                        &orgs,
                    ))
                }
                Err(e) if e.status() < 500 && e.status() != 429 => {
                    let msg = format!("{} Check the code and try again.", e.message);
                    render_status(
                        404,
                        pages::device_enter(&page.chrome(title, None), Some(&msg)),
                    )
                }
                Err(e) => Err(e),
            }
        }
        Id::ApproveDevice => {
            let (user, _) = user_and_session(cx)?;
            let code = page.require("user_code")?.to_owned();
            let org = page.require("org")?.to_owned();
            let d = device::approve(cx, &user, &code, &org, None).await?;
            render(pages::device_done(
                &page.chrome("Command line approved", None),
                &d,
            ))
        }
        Id::DenyDevice => {
            let (user, _) = user_and_session(cx)?;
            let code = page.require("user_code")?.to_owned();
            let d = device::deny(cx, &user, &code).await?;
            render(pages::device_done(
                &page.chrome("Command line denied", None),
                &d,
            ))
        }
    }
}

/// The sign-in page's `?next=`: the page to come back to, when it is one of ours.
fn query_next(cx: &Cx<'_>) -> Result<Option<String>, ApiError> {
    Ok(cx
        .query()?
        .into_iter()
        .find(|(k, _)| k == "next")
        .and_then(|(_, v)| return_to::safe(&v).map(str::to_owned)))
}
