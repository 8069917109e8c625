//! An organization's own pages: the org list and a new org, its overview, API keys, members
//! and invitations, and the invitee's page that accepts an invitation. The audit log's pages
//! are in `audit`.

use maud::{html, Markup};

use super::{csrf_field, form_error, layout, word, Chrome};
use crate::access::api_keys::{DEFAULT_OVERLAP_SECONDS, MAX_OVERLAP_SECONDS};
use crate::auth::{Role, Scope};
use crate::time::rfc3339_millis;
use crate::views::access::{
    ApiKeyIssued, ApiKeysView, AuditEventsView, InvitationCreated, InvitationsView, MembersView,
};
use crate::views::core::{CheckView, HealthView};
use crate::views::identity::{OrgMembershipView, OrgsView};

const ROLES: [Role; 3] = [Role::Member, Role::Admin, Role::Owner];

/// The org list, and the form that creates one (anyone signed in may; they become its owner).
/// `error` is a refusal of that form, in words; `typed` what was typed, kept.
pub fn orgs(c: &Chrome<'_>, v: &OrgsView, error: Option<&str>, typed: (&str, &str)) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    layout(
        c,
        html! {
            @if v.orgs.is_empty() { p { "You are not a member of any organization yet." } }
            table #orgs {
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
            h2 { "Create an organization" }
            (form_error(error))
            form method="post" action="/orgs" {
                (csrf_field(csrf))
                label for="org-name" { "Name" }
                input #org-name type="text" name="name" required maxlength="100" value=(typed.0);
                label for="org-slug" { "Slug " span.muted { "(optional: made from the name)" } }
                input #org-slug type="text" name="slug" maxlength="63" value=(typed.1);
                " "
                button type="submit" { "Create organization" }
            }
        },
    )
}

pub struct OverviewCounts {
    pub members: Option<usize>,
    pub api_keys: Option<usize>,
    pub rounds: Option<usize>,
}

fn check_row(name: &str, c: &CheckView) -> Markup {
    html! {
        tr {
            th { (name) }
            td {
                @if c.ok { span.ok { "ok" } }
                @else { span.bad { "failing" } @if let Some(d) = &c.detail { " — " (d) } }
            }
        }
    }
}

/// The org's overview: its counts, the deployment's health (the `/healthz` report), and the
/// newest audit events when the viewer may read the log.
pub fn overview(
    c: &Chrome<'_>,
    m: &OrgMembershipView,
    counts: &OverviewCounts,
    health: &HealthView,
    recent: Option<&AuditEventsView>,
) -> Markup {
    let count = |n: Option<usize>| n.map_or("—".to_owned(), |n| n.to_string());
    layout(
        c,
        html! {
            p { "Organization " code { (m.org.id) } " · your role: " strong { (m.role.as_str()) } }
            table #counts {
                tbody {
                    tr { th { "Members" } td { (count(counts.members)) } }
                    tr { th { "Active API keys" } td { (count(counts.api_keys)) } }
                    tr { th { "Training rounds" } td { (count(counts.rounds)) } }
                }
            }
            section #health aria-labelledby="health-title" {
                h2 #health-title { "Health" }
                p #health-status {
                    @if health.status == "ok" { span.ok { "All checks pass." } }
                    @else { span.bad { "Degraded: a check fails." } }
                }
                table {
                    tbody {
                        (check_row("D1 database", &health.checks.d1))
                        (check_row("Durable Objects", &health.checks.durable_object))
                        (check_row("R2 storage", &health.checks.r2))
                        (check_row("Review queue", &health.checks.queue))
                        tr {
                            th { "Last cron run" }
                            td #last-cron {
                                @match health.cron.last_run_finished_at_ms {
                                    Some(ms) => { "finished " (rfc3339_millis(ms)) }
                                    None => { span.muted { "none recorded yet" } }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(r) = recent {
                section #recent aria-labelledby="recent-title" {
                    h2 #recent-title { "Recent activity" }
                    @if r.events.is_empty() { p { "Nothing yet." } }
                    ul {
                        @for e in &r.events {
                            li {
                                a href={ "/orgs/" (m.org.slug) "/audit/events/" (e.seq) } { code { (word(&e.action)) } }
                                " by " (e.actor.kind) ":" (e.actor.id) " · " span.muted { (e.created_at) }
                            }
                        }
                    }
                    p { a href={ "/orgs/" (m.org.slug) "/audit" } { "The whole audit log" } }
                }
            }
        },
    )
}

/// The overlap windows a rotation offers (seconds, words); the API's default is preselected.
const OVERLAPS: [(u64, &str); 5] = [
    (0, "none: the old key stops now"),
    (3600, "1 hour"),
    (DEFAULT_OVERLAP_SECONDS, "24 hours"),
    (7 * 24 * 3600, "7 days"),
    (MAX_OVERLAP_SECONDS, "30 days"),
];

pub fn api_keys(
    c: &Chrome<'_>,
    slug: &str,
    v: &ApiKeysView,
    can_manage: bool,
    issued: Option<&ApiKeyIssued>,
) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    // A key that was rotated out works until its overlap ends; only its successor rotates.
    let replaced: Vec<&str> = v
        .api_keys
        .iter()
        .filter_map(|k| k.rotated_from.as_ref().map(|id| id.as_str()))
        .collect();
    layout(
        c,
        html! {
            @if let Some(i) = issued {
                div.notice role="status" {
                    p { "New key " strong { (i.api_key.name) } ". Copy the secret now: it is shown only once." }
                    p.secret #new-key-secret { (i.key) }
                    button type="button" data-copy="new-key-secret" hidden { "Copy" }
                    @if let Some(prev) = &i.previous_key {
                        p #previous-key { "The key it replaces (" code { (prev.id.as_str()) } ") keeps working until " (prev.expires_at) "." }
                    }
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
                                    @if k.status.is_active() && !replaced.contains(&k.id.as_str()) {
                                        form.inline method="post" action={ "/orgs/" (slug) "/api-keys/" (k.id.as_str()) "/rotate" } {
                                            (csrf_field(csrf))
                                            label.visually-hidden for={ "overlap-" (k.id.as_str()) } { "Overlap of " (k.name) }
                                            select id={ "overlap-" (k.id.as_str()) } name="overlap_seconds" {
                                                @for (secs, words) in OVERLAPS {
                                                    option value=(secs) selected[secs == DEFAULT_OVERLAP_SECONDS] { "overlap: " (words) }
                                                }
                                            }
                                            " "
                                            button type="submit" aria-label={ "Rotate " (k.name) } { "Rotate" }
                                        }
                                        " "
                                    }
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

/// What the members page shows besides the list: its invitations, the link of one just
/// created (shown once), and a refusal in words (the last-owner guard, say).
pub struct MembersPage<'a> {
    pub members: &'a MembersView,
    pub invitations: &'a InvitationsView,
    pub can_manage: bool,
    pub created: Option<&'a InvitationCreated>,
    pub error: Option<&'a str>,
}

pub fn members(c: &Chrome<'_>, slug: &str, p: &MembersPage<'_>) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    let can_manage = p.can_manage;
    layout(
        c,
        html! {
            (form_error(p.error))
            table #members {
                thead { tr { th { "Member" } th { "Role" } th { "Joined" } @if can_manage { th { span.muted { "Actions" } } } } }
                tbody {
                    @for m in &p.members.members {
                        tr data-user-id=(m.user_id.as_str()) {
                            td { (m.display_name.as_deref().unwrap_or(&m.email)) br; span.muted { (m.email) } }
                            td.role { (m.role.as_str()) }
                            td { (m.joined_at) }
                            @if can_manage {
                                td {
                                    form.inline method="post" action={ "/orgs/" (slug) "/members/" (m.user_id.as_str()) "/role" } {
                                        (csrf_field(csrf))
                                        label.visually-hidden for={ "role-" (m.user_id.as_str()) } { "Role of " (m.email) }
                                        select id={ "role-" (m.user_id.as_str()) } name="role" {
                                            @for r in ROLES {
                                                option value=(r.as_str()) selected[r == m.role] { (r.as_str()) }
                                            }
                                        }
                                        " "
                                        button type="submit" aria-label={ "Change the role of " (m.email) } { "Change role" }
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
            h2 { "Invitations" }
            @if let Some(i) = p.created {
                div.notice role="status" #invitation-created {
                    p { "Invited " strong { (i.invitation.email) } " as " (i.invitation.role.as_str()) "."
                        @if i.email_sent { " The invitation was emailed." } @else { " The email could not be sent: pass the link on yourself." } }
                    p { "The link works once, for that address, until " (i.invitation.expires_at) ". It is shown only now:" }
                    p.secret #invitation-link { (i.accept_url) }
                    button type="button" data-copy="invitation-link" hidden { "Copy" }
                }
            }
            @if p.invitations.invitations.is_empty() { p { "No pending invitations." } }
            @else {
                table #invitations {
                    thead { tr { th { "Email" } th { "Role" } th { "Expires" } @if can_manage { th { span.muted { "Actions" } } } } }
                    tbody {
                        @for i in &p.invitations.invitations {
                            tr data-invitation-id=(i.id.as_str()) {
                                td { (i.email) }
                                td { (i.role.as_str()) }
                                td { (i.expires_at) }
                                @if can_manage {
                                    td {
                                        form.inline method="post" action={ "/orgs/" (slug) "/invitations/" (i.id.as_str()) "/revoke" } {
                                            (csrf_field(csrf))
                                            button.danger type="submit" aria-label={ "Revoke the invitation of " (i.email) } { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if can_manage {
                form method="post" action={ "/orgs/" (slug) "/invitations" } {
                    (csrf_field(csrf))
                    label for="invite-email" { "Email address to invite" }
                    input #invite-email type="email" name="email" required;
                    label for="invite-role" { "Role" }
                    select #invite-role name="role" {
                        @for r in ROLES { option value=(r.as_str()) { (r.as_str()) } }
                    }
                    " "
                    button type="submit" { "Invite" }
                }
            }
            h2 { "Leave" }
            form method="post" action={ "/orgs/" (slug) "/leave" } {
                (csrf_field(csrf))
                p { "You lose access to this organization at once. Its last owner cannot leave." }
                button.danger type="submit" { "Leave this organization" }
            }
        },
    )
}

/// The invitee's page (the link's token travels in the URL fragment; the script file copies it
/// into the form, and the person accepts). `error` is a refusal in words.
pub fn accept_invitation(c: &Chrome<'_>, error: Option<&str>) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    layout(
        c,
        html! {
            (form_error(error))
            p { "Accepting makes you a member of the organization that invited you, with the role it offered. It works only for the address the invitation was sent to." }
            form method="post" action="/invitations/accept" {
                (csrf_field(csrf))
                label for="invitation-token" { "Invitation token (filled in from the link)" }
                input #invitation-token type="text" name="token" autocomplete="off" required data-fragment-token;
                " "
                button type="submit" { "Accept invitation" }
            }
        },
    )
}
