//! The console's pages (maud: compile-time checked, escapes by default). Each takes the view
//! types the JSON API answers; no page computes policy, it only shows or hides controls by the
//! flags the route passes (a forged POST is refused by the route's own check anyway).

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Serialize;

use super::{css_path, js_path};
use crate::auth::{Role, Scope};
use crate::views::access::{
    ApiKeyIssued, ApiKeysView, AuditEventsView, AuditVerifyView, MembersView,
};
use crate::views::federation::{Round, RoundList};
use crate::views::identity::{
    DeviceAuthorizationView, DeviceDecisionView, OrgMembershipView, OrgsView, SessionsView,
};

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

pub fn sign_in(notice: Option<&str>) -> Markup {
    layout(
        &Chrome::public("Sign in"),
        html! {
            @if let Some(n) = notice { div.notice role="status" { (n) } }
            form method="post" action="/sign-in" {
                label for="email" { "Email address" }
                input #email type="email" name="email" autocomplete="email" required;
                " "
                button type="submit" { "Email me a sign-in link" }
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
                input #magic-token type="text" name="token" autocomplete="off" required;
                " "
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub fn orgs(c: &Chrome<'_>, v: &OrgsView) -> Markup {
    layout(
        c,
        html! {
            @if v.orgs.is_empty() { p { "You are not a member of any organization yet." } }
            table {
                thead { tr { th { "Organization" } th { "Slug" } th { "Your role" } } }
                tbody {
                    @for m in &v.orgs {
                        tr {
                            td { a href={ "/orgs/" (m.org.slug) } { (m.org.name) } }
                            td { code { (m.org.slug) } }
                            td { (m.role.as_str()) }
                        }
                    }
                }
            }
        },
    )
}

pub struct OverviewCounts {
    pub members: Option<usize>,
    pub api_keys: Option<usize>,
    pub rounds: Option<usize>,
}

pub fn overview(c: &Chrome<'_>, m: &OrgMembershipView, counts: &OverviewCounts) -> Markup {
    let count = |n: Option<usize>| n.map_or("—".to_owned(), |n| n.to_string());
    layout(
        c,
        html! {
            p { "Organization " code { (m.org.id) } " · your role: " strong { (m.role.as_str()) } }
            table {
                tbody {
                    tr { th { "Members" } td { (count(counts.members)) } }
                    tr { th { "Active API keys" } td { (count(counts.api_keys)) } }
                    tr { th { "Training rounds" } td { (count(counts.rounds)) } }
                }
            }
        },
    )
}

pub fn api_keys(
    c: &Chrome<'_>,
    slug: &str,
    v: &ApiKeysView,
    can_manage: bool,
    issued: Option<&ApiKeyIssued>,
) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    layout(
        c,
        html! {
            @if let Some(i) = issued {
                div.notice role="status" {
                    p { "New key " strong { (i.api_key.name) } ". Copy the secret now: it is shown only once." }
                    p.secret #new-key-secret { (i.key) }
                    button type="button" data-copy="new-key-secret" hidden { "Copy" }
                }
            }
            table #api-keys {
                thead { tr { th { "Name" } th { "Key" } th { "Scopes" } th { "Status" } th { "Last used" } @if can_manage { th { span.muted { "Actions" } } } } }
                tbody {
                    @for k in &v.api_keys {
                        tr data-key-id=(k.id.as_str()) {
                            td { (k.name) }
                            td { code { (k.hint) } }
                            td { (k.scopes.names().join(" ")) }
                            td.status { (word(&k.status)) }
                            td { (k.last_used_at.as_deref().unwrap_or("never")) }
                            @if can_manage {
                                td {
                                    @if k.revoked_at.is_none() {
                                        form.inline method="post" action={ "/orgs/" (slug) "/api-keys/" (k.id.as_str()) "/revoke" } {
                                            (csrf_field(csrf))
                                            button.danger type="submit" aria-label={ "Revoke " (k.name) } { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if can_manage {
                h2 { "Create an API key" }
                form method="post" action={ "/orgs/" (slug) "/api-keys" } {
                    (csrf_field(csrf))
                    label for="key-name" { "Name" }
                    input #key-name type="text" name="name" required maxlength="100";
                    fieldset {
                        legend { "Scopes" }
                        @for s in Scope::ALL {
                            label.check {
                                input type="checkbox" name="scope" value=(s.as_str());
                                " " (s.as_str())
                            }
                        }
                    }
                    button type="submit" { "Create key" }
                }
            }
        },
    )
}

pub fn members(c: &Chrome<'_>, slug: &str, v: &MembersView, can_manage: bool) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    layout(
        c,
        html! {
            table #members {
                thead { tr { th { "Member" } th { "Role" } th { "Joined" } @if can_manage { th { span.muted { "Actions" } } } } }
                tbody {
                    @for m in &v.members {
                        tr {
                            td { (m.display_name.as_deref().unwrap_or(&m.email)) br; span.muted { (m.email) } }
                            td.role { (m.role.as_str()) }
                            td { (m.joined_at) }
                            @if can_manage {
                                td {
                                    form.inline method="post" action={ "/orgs/" (slug) "/members/" (m.user_id.as_str()) "/role" } {
                                        (csrf_field(csrf))
                                        label.visually-hidden for={ "role-" (m.user_id.as_str()) } { "Role of " (m.email) }
                                        select id={ "role-" (m.user_id.as_str()) } name="role" {
                                            @for r in [Role::Member, Role::Admin, Role::Owner] {
                                                option value=(r.as_str()) selected[r == m.role] { (r.as_str()) }
                                            }
                                        }
                                        " "
                                        button type="submit" { "Change role" }
                                    }
                                    " "
                                    form.inline method="post" action={ "/orgs/" (slug) "/members/" (m.user_id.as_str()) "/remove" } {
                                        (csrf_field(csrf))
                                        button.danger type="submit" aria-label={ "Remove " (m.email) } { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn audit(c: &Chrome<'_>, slug: &str, v: &AuditEventsView, verify: &AuditVerifyView) -> Markup {
    layout(
        c,
        html! {
            section #chain aria-label="Chain verification" {
                @if verify.report.valid {
                    p.ok #chain-status { "Chain verified: " (verify.report.events_checked) " events, "
                        (verify.report.checkpoints_checked) " signed checkpoints checked." }
                } @else {
                    p.bad #chain-status { "Chain verification FAILED at seq "
                        (verify.report.first_broken_seq.map_or("?".to_owned(), |s| s.to_string())) ": "
                        (verify.report.reason.as_deref().unwrap_or("unknown reason")) }
                }
                @if let Some(cp) = &verify.checkpoint {
                    details {
                        summary { "Signed checkpoint (size " (cp.size) ")" }
                        pre #checkpoint-note { (cp.note) }
                        p { "Verifier key: " code { (cp.verifier_key) } }
                    }
                }
            }
            table #audit-events {
                thead { tr { th { "Seq" } th { "When" } th { "Action" } th { "Actor" } th { "Resource" } th { "Request" } } }
                tbody {
                    @for e in &v.events {
                        tr {
                            td { (e.seq) }
                            td { (e.created_at) }
                            td.action { code { (word(&e.action)) } }
                            td { (e.actor.kind) ":" (e.actor.id) }
                            td { (e.resource.kind) ":" (e.resource.id) }
                            td { code { (e.request_id.as_deref().unwrap_or("")) } }
                        }
                    }
                }
            }
            @if let Some(cursor) = &v.next_cursor {
                p { a href={ "/orgs/" (slug) "/audit?cursor=" (cursor) } { "Older events" } }
            }
        },
    )
}

pub fn sessions(c: &Chrome<'_>, v: &SessionsView) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    layout(
        c,
        html! {
            table #sessions {
                thead { tr { th { "Kind" } th { "Signed in by" } th { "Client" } th { "IP" } th { "Last used" } th { span.muted { "Actions" } } } }
                tbody {
                    @for s in &v.sessions {
                        tr data-session-id=(s.id.as_str()) {
                            td { (word(&s.kind)) @if s.current { " " strong { "(this device)" } } }
                            td { (s.auth_method) }
                            td { (s.user_agent.as_deref().unwrap_or("—")) }
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

pub fn rounds(c: &Chrome<'_>, slug: &str, v: &RoundList) -> Markup {
    layout(
        c,
        html! {
            @if v.rounds.is_empty() { p { "No training rounds yet." } }
            table #rounds {
                thead { tr { th { "Round" } th { "State" } th { "Target" } th { "Deadline" } th { "Created" } } }
                tbody {
                    @for r in &v.rounds {
                        tr {
                            td { a href={ "/orgs/" (slug) "/rounds/" (r.id.as_str()) } { code { (r.id.as_str()) } } }
                            td { (word(&r.state)) }
                            td { (r.target) }
                            td { (word(&r.deadline_at)) }
                            td { (word(&r.created_at)) }
                        }
                    }
                }
            }
        },
    )
}

/// A horizontal bar chart of the round's funnel against its target, drawn on the server.
fn progress_chart(bars: &[(&str, u64)], target: u64) -> Markup {
    let max = bars
        .iter()
        .map(|b| b.1)
        .max()
        .unwrap_or(0)
        .max(target)
        .max(1);
    let width = 360.0_f64;
    let row = 26;
    let height = row * bars.len() + 10;
    let mut svg = format!(
        "<svg role=\"img\" aria-label=\"Round progress against target {target}\" \
         viewBox=\"0 0 480 {height}\" width=\"480\" height=\"{height}\">"
    );
    for (i, (label, n)) in bars.iter().enumerate() {
        let y = i * row + 4;
        let w = (*n as f64 / max as f64) * width;
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{}\">{}</text><rect class=\"bar\" x=\"100\" y=\"{y}\" \
             width=\"{w:.1}\" height=\"18\"></rect><text x=\"{:.1}\" y=\"{}\">{n}</text>",
            y + 14,
            html! { (label) }.into_string(),
            100.0 + w + 4.0,
            y + 14,
        ));
    }
    let tx = 100.0 + (target as f64 / max as f64) * width;
    svg.push_str(&format!(
        "<line class=\"axis\" x1=\"{tx:.1}\" x2=\"{tx:.1}\" y1=\"0\" y2=\"{height}\" \
         stroke-width=\"2\"></line></svg>"
    ));
    PreEscaped(svg)
}

pub fn round(c: &Chrome<'_>, r: &Round) -> Markup {
    layout(
        c,
        html! {
            p { "State: " strong #round-state { (word(&r.state)) } " · model " code { (r.model_id.as_str()) }
                " v" (r.base_version) " · deadline " (word(&r.deadline_at)) }
            @if let Some(v) = &r.published_version_id { div.notice role="status" { "Published version " code { (v.as_str()) } } }
            @if let Some(f) = &r.failure { div.notice.error role="alert" { "Failed: " (word(f)) } }
            @if let Some(p) = &r.progress {
                figure {
                    (progress_chart(&[("joined", p.joined), ("uploading", p.uploading), ("accepted", p.accepted),
                        ("rejected", p.rejected_total), ("folded", p.folded.max(0) as u64)], u64::from(r.target)))
                    figcaption.muted { "Target " (r.target) " accepted updates (line); min " (r.min) ", max " (r.max) "." }
                }
                table #round-progress {
                    tbody {
                        tr { th { "Selected devices" } td { (p.selected) } }
                        tr { th { "Joined" } td { (p.joined) } }
                        tr { th { "Accepted" } td #round-accepted { (p.accepted) } }
                        tr { th { "Rejected" } td { (p.rejected_total) } }
                        tr { th { "Samples" } td { (p.total_samples) } }
                    }
                }
                @if !p.metrics.is_empty() {
                    h2 { "Metrics (sample-weighted means)" }
                    table #round-metrics {
                        tbody { @for (name, mean) in &p.metrics { tr { th { (name) } td { (format!("{mean:.4}")) } } } }
                    }
                }
            }
        },
    )
}
