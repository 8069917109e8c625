//! The audit log's pages: the list with its filters (kept in the URL with the page size and
//! the cursor), the chain's verification against the signed checkpoint, one event, and the
//! export links (the same filters, as files).

use maud::{html, Markup};

use super::{csrf_field, layout, word, Chrome};
use crate::audit::retention::RetentionDays;
use crate::error::{ApiError, ErrorCode};
use crate::time::rfc3339_millis;
use crate::views::access::{AuditEventView, AuditEventsView, AuditVerifyView};

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

/// The org's audit retention as the audit page shows it; owners get the form that changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSetting {
    pub days: i64,
    pub can_change: bool,
}

pub fn audit(
    c: &Chrome<'_>,
    slug: &str,
    filters: &AuditFilters,
    v: &AuditEventsView,
    verify: &AuditVerifyView,
    retention: RetentionSetting,
) -> Markup {
    let base = format!("/orgs/{slug}/audit");
    let csrf = c.csrf.unwrap_or_default();
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
                @if let Some(size) = verify.report.anchored_at {
                    p #chain-anchor { "Events 1–" (size) " were pruned by retention; verified from their signed anchor." }
                }
                @if let Some(cp) = &verify.checkpoint {
                    details {
                        summary { "Signed checkpoint (size " (cp.size) ")" }
                        pre #checkpoint-note { (cp.note) }
                        p { "Verifier key: " code { (cp.verifier_key) } }
                    }
                }
            }
            section #audit-retention aria-label="Retention" {
                p { "Events are kept " strong #retention-days { (retention.days) } " days; older ones are pruned daily, after a signed anchor that keeps the rest verifiable." }
                @if retention.can_change {
                    form method="post" action={ (base) "/retention" } {
                        (csrf_field(csrf))
                        label for="retention-input" { "Keep audit events for (days, " (RetentionDays::MIN) "–" (RetentionDays::MAX) ")" }
                        input #retention-input type="number" name="days" required min=(RetentionDays::MIN) max=(RetentionDays::MAX) value=(retention.days);
                        " "
                        button type="submit" { "Save retention" }
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
