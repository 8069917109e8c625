//! An organization's own pages: the org list and a new org, its overview, API keys, members
//! and invitations, the audit log (filters kept in the URL, one event, export), and the
//! invitee's page that accepts an invitation.

use maud::{html, Markup};

use super::{csrf_field, form_error, layout, word, Chrome};
use crate::access::api_keys::{DEFAULT_OVERLAP_SECONDS, MAX_OVERLAP_SECONDS};
use crate::auth::{Role, Scope};
use crate::error::{ApiError, ErrorCode};
use crate::time::rfc3339_millis;
use crate::views::access::{
    ApiKeyIssued, ApiKeysView, AuditEventView, AuditEventsView, AuditVerifyView, InvitationCreated,
    InvitationsView, MembersView,
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

/// The time windows the audit page offers, kept in its URL as `range`.
pub const AUDIT_RANGES: [(&str, &str, i64); 4] = [
    ("1h", "Last hour", 3_600_000),
    ("24h", "Last 24 hours", 86_400_000),
    ("7d", "Last 7 days", 7 * 86_400_000),
    ("30d", "Last 30 days", 30 * 86_400_000),
];

/// The audit page's filters as its URL keeps them (`actor`, `action`, `resource`, `range`,
/// `cursor`, and the page size `limit`, which the audit query bounds): empty fields of the GET form are dropped, a window is one of [`AUDIT_RANGES`].
/// [`Self::query`] turns them into the audit query's own parameters, which the list and the
/// export parse with the API's code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilters {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub resource: Option<String>,
    pub range: Option<&'static str>,
    pub cursor: Option<String>,
    /// Events per page: the list's only (an export is every matching event).
    pub limit: Option<String>,
}

impl AuditFilters {
    pub fn from_query(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut f = AuditFilters::default();
        for (k, v) in pairs {
            let v = v.trim().to_owned();
            if v.is_empty() {
                continue;
            }
            match k.as_str() {
                "actor" => f.actor = Some(v),
                "action" => f.action = Some(v),
                "resource" => f.resource = Some(v),
                "cursor" => f.cursor = Some(v),
                "limit" => f.limit = Some(v),
                "range" => {
                    f.range = Some(
                        AUDIT_RANGES
                            .iter()
                            .find(|(key, _, _)| *key == v)
                            .map(|(key, _, _)| *key)
                            .ok_or_else(|| {
                                ApiError::new(
                                    ErrorCode::InvalidQuery,
                                    "range is not one of the choices offered",
                                )
                            })?,
                    )
                }
                other => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidQuery,
                        format!("unknown query parameter `{other}`"),
                    ))
                }
            }
        }
        Ok(f)
    }

    /// The filters as the audit query's parameters (`since` from the window, at `now_ms`);
    /// the cursor only when `paged`.
    pub fn query(&self, now_ms: i64, paged: bool) -> Vec<(String, String)> {
        let mut q = Vec::new();
        for (k, v) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("resource", &self.resource),
        ] {
            if let Some(v) = v {
                q.push((k.to_owned(), v.clone()));
            }
        }
        if let Some((_, _, ms)) = self
            .range
            .and_then(|r| AUDIT_RANGES.iter().find(|(k, _, _)| *k == r))
        {
            q.push(("since".to_owned(), rfc3339_millis(now_ms - ms)));
        }
        if paged {
            for (k, v) in [("cursor", &self.cursor), ("limit", &self.limit)] {
                if let Some(v) = v {
                    q.push((k.to_owned(), v.clone()));
                }
            }
        }
        q
    }

    /// A page of the list at `cursor` (`None`: the newest), with these filters and page size.
    pub fn page_href(&self, path: &str, cursor: Option<&str>) -> String {
        let mut extra = Vec::new();
        if let Some(l) = &self.limit {
            extra.push(("limit", l.as_str()));
        }
        if let Some(c) = cursor {
            extra.push(("cursor", c));
        }
        self.href(path, &extra)
    }

    /// `path` with these filters (never the cursor or page size) and `extra` in its query
    /// string.
    pub fn href(&self, path: &str, extra: &[(&str, &str)]) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("resource", &self.resource),
        ] {
            if let Some(v) = v {
                ser.append_pair(k, v);
            }
        }
        if let Some(r) = self.range {
            ser.append_pair("range", r);
        }
        for (k, v) in extra {
            ser.append_pair(k, v);
        }
        let q = ser.finish();
        if q.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{q}")
        }
    }
}

pub fn audit(
    c: &Chrome<'_>,
    slug: &str,
    filters: &AuditFilters,
    v: &AuditEventsView,
    verify: &AuditVerifyView,
) -> Markup {
    let base = format!("/orgs/{slug}/audit");
    let export = format!("/orgs/{slug}/audit/export");
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
            form #audit-filters method="get" action=(base) {
                label for="filter-actor" { "Actor id" }
                input #filter-actor type="text" name="actor" value=(filters.actor.as_deref().unwrap_or_default());
                label for="filter-action" { "Action " span.muted { "(exact, or a family such as api_key.*)" } }
                input #filter-action type="text" name="action" value=(filters.action.as_deref().unwrap_or_default());
                label for="filter-resource" { "Resource id" }
                input #filter-resource type="text" name="resource" value=(filters.resource.as_deref().unwrap_or_default());
                label for="filter-range" { "Time" }
                select #filter-range name="range" {
                    option value="" selected[filters.range.is_none()] { "All time" }
                    @for (key, words, _) in AUDIT_RANGES {
                        option value=(key) selected[filters.range == Some(key)] { (words) }
                    }
                }
                @if let Some(l) = &filters.limit { input type="hidden" name="limit" value=(l); }
                " "
                button type="submit" { "Filter" }
                " "
                a href=(base) { "Clear filters" }
            }
            p #audit-export {
                "Download these events: "
                a href=(filters.href(&export, &[("format", "csv")])) download { "CSV" }
                " · "
                a href=(filters.href(&export, &[("format", "jsonl")])) download { "JSON lines" }
                span.muted { " (downloads are recorded in this log)" }
            }
            @if v.events.is_empty() { p { "No events match." } }
            table #audit-events {
                thead { tr { th { "Seq" } th { "When" } th { "Action" } th { "Actor" } th { "Resource" } th { "Request" } } }
                tbody {
                    @for e in &v.events {
                        tr data-seq=(e.seq) {
                            td { a href={ (base) "/events/" (e.seq) } aria-label={ "Event " (e.seq) } { (e.seq) } }
                            td { (e.created_at) }
                            td.action { code { (word(&e.action)) } }
                            td { (e.actor.kind) ":" (e.actor.id) }
                            td { (e.resource.kind) ":" (e.resource.id) }
                            td { code { (e.request_id.as_deref().unwrap_or("")) } }
                        }
                    }
                }
            }
            nav aria-label="Pages" {
                @if filters.cursor.is_some() { a #newest href=(filters.page_href(&base, None)) { "Newest events" } " " }
                @if let Some(cursor) = &v.next_cursor {
                    a #older href=(filters.page_href(&base, Some(cursor))) { "Older events" }
                }
            }
        },
    )
}

/// One audit event: every field, its metadata and its place in the chain.
pub fn audit_event(c: &Chrome<'_>, slug: &str, e: &AuditEventView) -> Markup {
    let metadata = serde_json::to_string_pretty(&e.metadata).unwrap_or_default();
    layout(
        c,
        html! {
            table #audit-event {
                tbody {
                    tr { th { "Sequence" } td { (e.seq) } }
                    tr { th { "Id" } td { code { (e.id.as_str()) } } }
                    tr { th { "When" } td { (e.created_at) } }
                    tr { th { "Action" } td { code #event-action { (word(&e.action)) } } }
                    tr { th { "Actor" } td { (e.actor.kind) ":" (e.actor.id) } }
                    tr { th { "Resource" } td { (e.resource.kind) ":" (e.resource.id) } }
                    tr { th { "IP" } td { (e.ip.as_deref().unwrap_or("—")) } }
                    tr { th { "User agent" } td { (e.user_agent.as_deref().unwrap_or("—")) } }
                    tr { th { "Request id" } td { code { (e.request_id.as_deref().unwrap_or("—")) } } }
                    tr { th { "Previous hash" } td { code { (e.prev_hash) } } }
                    tr { th { "Hash" } td { code { (e.hash) } } }
                }
            }
            h2 { "Metadata" }
            pre #event-metadata { (metadata) }
            p { a href={ "/orgs/" (slug) "/audit" } { "Back to the audit log" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn audit_filters_round_trip_through_the_url() {
        let f = AuditFilters::from_query(pairs(&[
            ("actor", "usr_1"),
            ("action", ""),
            ("resource", " key 1 "),
            ("range", "24h"),
            ("cursor", "40"),
            ("limit", "2"),
        ]))
        .unwrap();
        assert_eq!(f.action, None, "an empty field of the form is no filter");
        assert_eq!(f.resource.as_deref(), Some("key 1"));
        // Links keep the filters, never the cursor, and encode what needs it.
        assert_eq!(
            f.href("/orgs/a/audit", &[("format", "csv")]),
            "/orgs/a/audit?actor=usr_1&resource=key+1&range=24h&format=csv"
        );
        assert_eq!(AuditFilters::default().href("/x", &[]), "/x");
        // Page links keep the page size too; the newest page has no cursor.
        assert_eq!(
            f.page_href("/orgs/a/audit", Some("38")),
            "/orgs/a/audit?actor=usr_1&resource=key+1&range=24h&limit=2&cursor=38"
        );
        assert_eq!(
            f.page_href("/orgs/a/audit", None),
            "/orgs/a/audit?actor=usr_1&resource=key+1&range=24h&limit=2"
        );
        // The window becomes the audit query's `since`, counted back from now.
        let q = f.query(86_400_000 + 5_000, true);
        assert!(
            q.contains(&("since".to_owned(), "1970-01-01T00:00:05.000Z".to_owned())),
            "{q:?}"
        );
        assert!(q.contains(&("cursor".to_owned(), "40".to_owned())));
        assert!(q.contains(&("limit".to_owned(), "2".to_owned())));
        // An export is every matching event: no cursor, no page size.
        assert!(!f
            .query(0, false)
            .iter()
            .any(|(k, _)| k == "cursor" || k == "limit"));
        // What the API parses: the list's own query accepts every pair.
        crate::access::audit_query::AuditQuery::parse(q).unwrap();
    }

    #[test]
    fn audit_filters_refuse_what_the_page_does_not_offer() {
        for p in [
            vec![("range", "2y")],
            vec![("before", "5")],
            vec![("since", "2026-01-01T00:00:00Z")],
        ] {
            assert_eq!(
                AuditFilters::from_query(pairs(&p)).unwrap_err().code,
                ErrorCode::InvalidQuery
            );
        }
    }
}
