//! The console's pages (maud: compile-time checked, escapes by default). Each takes the view
//! types the JSON API answers; no page computes policy, it only shows or hides controls by the
//! flags the route passes (a forged POST is refused by the route's own check anyway).

mod audit;
mod devices;
mod federation;
mod fleet;
mod org;
mod review;
mod session;

pub use audit::*;
pub use devices::*;
pub use federation::*;
pub use fleet::*;
pub use org::*;
pub use review::*;
pub use session::*;

pub use maud::Markup;

use maud::{html, DOCTYPE};
use serde::Serialize;

use super::{css_path, htmx_path, js_path, HTMX_CONFIG};
use crate::views::identity::OrgMembershipView;

/// A serde enum's wire name (`KeyStatus::Active` → `active`), as the JSON API spells it.
pub fn word<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// The frame around a page: who is signed in, the org being looked at, sign-out.
pub struct Chrome<'a> {
    pub title: &'a str,
    pub user_email: Option<&'a str>,
    pub csrf: Option<&'a str>,
    pub org: Option<&'a OrgMembershipView>,
}

impl<'a> Chrome<'a> {
    pub fn public(title: &'a str) -> Self {
        Chrome {
            title,
            user_email: None,
            csrf: None,
            org: None,
        }
    }
}

/// A refusal of the form below it, in words (the form keeps what was typed).
pub fn form_error(error: Option<&str>) -> Markup {
    html! { @if let Some(e) = error { div.notice.error role="alert" #form-error { (e) } } }
}

pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

pub fn layout(c: &Chrome<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (c.title) " · edgeplane" }
                // No icon file: an empty one stops the browser asking for `/favicon.ico`.
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(css_path());
                meta name="htmx-config" content=(HTMX_CONFIG);
                script src=(htmx_path()) defer {}
                script src=(js_path()) defer {}
            }
            body {
                header.top {
                    a href="/orgs" { strong { "edgeplane" } }
                    @if let Some(m) = c.org {
                        nav aria-label="Organization" {
                            a href={ "/orgs/" (m.org.slug) } { (m.org.name) }
                            a href={ "/orgs/" (m.org.slug) "/api-keys" } { "API keys" }
                            a href={ "/orgs/" (m.org.slug) "/members" } { "Members" }
                            a href={ "/orgs/" (m.org.slug) "/audit" } { "Audit log" }
                            a href={ "/orgs/" (m.org.slug) "/rounds" } { "Rounds" }
                            a href={ "/orgs/" (m.org.slug) "/devices" } { "Devices" }
                            a href={ "/orgs/" (m.org.slug) "/device-groups" } { "Device groups" }
                            a href={ "/orgs/" (m.org.slug) "/models" } { "Models" }
                            a href={ "/orgs/" (m.org.slug) "/deployments" } { "Deployments" }
                            a href={ "/orgs/" (m.org.slug) "/integrations" } { "Integrations" }
                            a href={ "/orgs/" (m.org.slug) "/llm-providers" } { "LLM providers" }
                            a href={ "/orgs/" (m.org.slug) "/reviews" } { "Reviews" }
                            a href="/orgs" { "Switch organization" }
                        }
                    }
                    @if let (Some(email), Some(csrf)) = (c.user_email, c.csrf) {
                        nav aria-label="Account" {
                            a href="/settings/sessions" { "Sessions" }
                            a href="/device" { "Approve a CLI" }
                            span.muted { (email) }
                        }
                        form method="post" action="/sign-out" {
                            (csrf_field(csrf))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (c.title) } (body) }
            }
        }
    }
}

pub fn error_page(status: u16, title: &str, message: &str, request_id: &str) -> Markup {
    layout(
        &Chrome::public(title),
        html! {
            div.notice.error role="alert" {
                p { (message) }
                p.muted { "Status " (status) " · request id " code #request-id { (request_id) } }
            }
            p { a href="/orgs" { "Back to the console" } }
        },
    )
}
