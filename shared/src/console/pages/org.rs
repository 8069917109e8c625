//! An organization's own pages: the org list, its overview, API keys, members, the audit log.

use maud::{html, Markup};

use super::{csrf_field, layout, word, Chrome};
use crate::auth::{Role, Scope};
use crate::views::access::{
    ApiKeyIssued, ApiKeysView, AuditEventsView, AuditVerifyView, MembersView,
};
use crate::views::identity::{OrgMembershipView, OrgsView};

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
