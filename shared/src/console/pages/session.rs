//! Signing in and out, the person's sessions, and `/device` (the CLI's RFC 8628 approval).

use maud::{html, Markup};

use super::{csrf_field, layout, word, Chrome};
use crate::console::return_to;
use crate::identity::user_agent::describe;
use crate::views::identity::{
    DeviceAuthorizationView, DeviceDecisionView, OrgsView, ProvidersView, SessionsView,
};

/// The sign-in page: a magic link by email, and a link per configured identity provider. The
/// provider links are links, not forms: the provider is another origin, and the CSP's
/// `form-action 'self'` would stop a form's redirect there.
///
/// `next` is the page that sent the person here (already checked by `return_to::safe`): the
/// form and the links carry it, and the script file adds the address's fragment to it (an
/// invitation's token travels there, and a redirect keeps it).
pub fn sign_in(notice: Option<&str>, providers: &ProvidersView, next: Option<&str>) -> Markup {
    let suffix = next.map(|n| format!("?next={}", return_to::encode(n)));
    layout(
        &Chrome::public("Sign in"),
        html! {
            @if let Some(n) = notice { div.notice role="status" { (n) } }
            @if next.is_some() {
                p { "Sign in to continue where you were." }
            }
            form method="post" action="/sign-in" {
                @if let Some(n) = next { input type="hidden" name="next" value=(n) data-return-to; }
                label for="email" { "Email address" }
                input #email type="email" name="email" autocomplete="email" required;
                " "
                button type="submit" { "Email me a sign-in link" }
            }
            @if !providers.providers.is_empty() {
                h2 { "Or sign in with" }
                ul #identity-providers {
                    @for p in &providers.providers {
                        li {
                            a href={ "/sign-in/providers/" (p.name) (suffix.as_deref().unwrap_or("")) }
                                data-return-to[next.is_some()] { (p.display_name) }
                        }
                    }
                }
            }
        },
    )
}

pub fn sign_in_sent(message: &str) -> Markup {
    layout(
        &Chrome::public("Check your email"),
        html! { div.notice role="status" { (message) } p { a href="/sign-in" { "Start again" } } },
    )
}

/// The magic link's landing page. The token is in the URL fragment, which no server sees; the
/// script file copies it into the form, and a person presses the button: nothing is spent by a
/// GET, so mail scanners that prefetch links spend nothing.
pub fn magic_landing() -> Markup {
    layout(
        &Chrome::public("Finish signing in"),
        html! {
            form method="post" action="/sign-in/magic-link" {
                label for="magic-token" { "Sign-in token (filled in from the link)" }
                input #magic-token type="text" name="token" autocomplete="off" required data-fragment-token;
                " "
                button type="submit" { "Sign in" }
            }
        },
    )
}
/// The person's sessions and CLI tokens, each by id (never a token), with the browser and
/// system its user agent names; revoke one, every other one, or all.
pub fn sessions(c: &Chrome<'_>, v: &SessionsView) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    layout(
        c,
        html! {
            table #sessions {
                thead { tr { th { "Kind" } th { "Signed in by" } th { "Browser" } th { "System" } th { "IP" } th { "Last used" } th { span.muted { "Actions" } } } }
                tbody {
                    @for s in &v.sessions {
                        @let client = s.user_agent.as_deref().map(describe);
                        tr data-session-id=(s.id.as_str()) {
                            td { (word(&s.kind)) @if s.current { " " strong.this-device { "(this device)" } } }
                            td { (s.auth_method) }
                            td.browser title=(s.user_agent.as_deref().unwrap_or_default()) {
                                (client.as_ref().map_or("—", |c| c.browser.as_str()))
                            }
                            td.os { (client.as_ref().and_then(|c| c.os).unwrap_or("—")) }
                            td { (s.ip.as_deref().unwrap_or("—")) }
                            td { (s.last_used_at) }
                            td {
                                form.inline method="post" action={ "/settings/sessions/" (s.id.as_str()) "/revoke" } {
                                    (csrf_field(csrf))
                                    button.danger type="submit" aria-label={ "Revoke session " (s.id.as_str()) } { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
            form.inline method="post" action="/settings/sessions/revoke-others" {
                (csrf_field(csrf))
                button.danger type="submit" { "Sign out all other sessions" }
            }
            " "
            form.inline method="post" action="/settings/sessions/revoke-all" {
                (csrf_field(csrf))
                button.danger type="submit" { "Sign out everywhere" }
            }
        },
    )
}

pub fn device_enter(c: &Chrome<'_>, error: Option<&str>) -> Markup {
    layout(
        c,
        html! {
            @if let Some(e) = error { div.notice.error role="alert" { (e) } }
            form method="get" action="/device" {
                label for="user-code" { "The code your command line shows" }
                input #user-code type="text" name="user_code" autocomplete="off" required;
                " "
                button type="submit" { "Continue" }
            }
        },
    )
}

pub fn device_confirm(
    c: &Chrome<'_>,
    user_code: &str,
    v: &DeviceAuthorizationView,
    orgs: &OrgsView,
) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    layout(
        c,
        html! {
            p { "A command-line client asks to act on your behalf." }
            table {
                tbody {
                    tr { th { "Code" } td { code #device-user-code { (user_code) } } }
                    tr { th { "Client" } td { (v.client_id) } }
                    tr { th { "Scopes asked for" } td { (v.requested_scopes.map_or("everything your role allows".to_owned(), |s| s.names().join(" "))) } }
                    tr { th { "Requested from" } td { (v.ip.as_deref().unwrap_or("unknown address")) br; span.muted { (v.user_agent.as_deref().unwrap_or("")) } } }
                    tr { th { "Expires" } td { (v.expires_at) } }
                }
            }
            form method="post" action="/device/approve" {
                (csrf_field(csrf))
                input type="hidden" name="user_code" value=(user_code);
                label for="device-org" { "Organization the CLI will act in" }
                select #device-org name="org" required {
                    @for m in &orgs.orgs { option value=(m.org.slug) { (m.org.name) " (" (m.role.as_str()) ")" } }
                }
                " "
                button type="submit" { "Approve" }
            }
            form method="post" action="/device/deny" {
                (csrf_field(csrf))
                input type="hidden" name="user_code" value=(user_code);
                button.danger type="submit" { "Deny" }
            }
        },
    )
}

pub fn device_done(c: &Chrome<'_>, d: &DeviceDecisionView) -> Markup {
    layout(
        c,
        html! {
            div.notice role="status" #device-outcome {
                @if d.status == "approved" {
                    "Approved. Return to your command line; it signs in by itself."
                } @else {
                    "Denied. The command line's sign-in fails."
                }
            }
        },
    )
}
