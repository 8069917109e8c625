//! Federated learning: training rounds (start one), a round's live page (cancel it), and the
//! org's devices (revoke one).

use maud::{html, Markup, PreEscaped};

use super::{csrf_field, layout, word, Chrome};
use crate::fl::presence::LastSeen;
use crate::views::federation::{
    Device, DeviceFilter, DeviceGroupList, DeviceList, Round, RoundList,
};

/// The create-round form as the person filled it in, and what was wrong with it (shown in
/// words above the form, which keeps the values).
#[derive(Default)]
pub struct RoundForm<'a> {
    pub values: &'a [(String, String)],
    pub error: Option<&'a str>,
}

impl RoundForm<'_> {
    fn value(&self, name: &str, default: &'static str) -> String {
        self.values
            .iter()
            .find(|(k, _)| k == name)
            .map_or(default.to_owned(), |(_, v)| v.clone())
    }
}

fn number_field(form: &RoundForm<'_>, name: &str, label: &str, default: &'static str) -> Markup {
    let id = format!("round-{}", name.replace('_', "-"));
    html! {
        label for=(id) { (label) }
        input id=(id) type="number" name=(name) min="1" step="1" required value=(form.value(name, default));
    }
}

pub fn rounds(
    c: &Chrome<'_>,
    slug: &str,
    v: &RoundList,
    can_manage: bool,
    form: &RoundForm<'_>,
) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
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
            @if can_manage {
                h2 #create-round { "Start a round" }
                @if let Some(e) = form.error { div.notice.error role="alert" #form-error { (e) } }
                form method="post" action={ "/orgs/" (slug) "/rounds" } {
                    (csrf_field(csrf))
                    label for="round-model" { "Model id" }
                    input #round-model type="text" name="model_id" required placeholder="mdl_…" value=(form.value("model_id", ""));
                    (number_field(form, "base_version", "Base version (number)", "1"))
                    (number_field(form, "target", "Target accepted updates", "10"))
                    (number_field(form, "min", "Minimum accepted updates to publish", "5"))
                    (number_field(form, "max", "Most participants", "20"))
                    (number_field(form, "deadline_seconds", "Deadline (seconds from now)", "3600"))
                    label for="round-group" { "Device group id (optional)" }
                    input #round-group type="text" name="device_group" placeholder="dgr_…" value=(form.value("device_group", ""));
                    label for="round-clip" { "Clip norm (optional)" }
                    input #round-clip type="text" inputmode="decimal" name="clip_norm" value=(form.value("clip_norm", ""));
                    label for="round-noise" { "Noise multiplier (optional)" }
                    input #round-noise type="text" inputmode="decimal" name="noise_multiplier" value=(form.value("noise_multiplier", ""));
                    button type="submit" { "Start round" }
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

pub fn round(c: &Chrome<'_>, slug: &str, r: &Round, can_cancel: bool) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    layout(
        c,
        html! {
            p { "State: " strong #round-state { (word(&r.state)) } " · model " code { (r.model_id.as_str()) }
                " v" (r.base_version) " · deadline " (word(&r.deadline_at)) }
            @if let Some(v) = &r.published_version_id { div.notice role="status" { "Published version " code { (v.as_str()) } } }
            @if let Some(f) = &r.failure { div.notice.error role="alert" { "Failed: " (word(f)) } }
            @if can_cancel && !r.state.is_terminal() {
                form method="post" action={ "/orgs/" (slug) "/rounds/" (r.id.as_str()) "/cancel" } {
                    (csrf_field(csrf))
                    button.danger type="submit" { "Cancel round" }
                }
            }
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

fn device_state(d: &Device) -> &'static str {
    if d.revoked_at.is_some() {
        "revoked"
    } else {
        "active"
    }
}

fn revoke_form(csrf: &str, slug: &str, d: &Device) -> Markup {
    html! {
        form.inline method="post" action={ "/orgs/" (slug) "/devices/" (d.id.as_str()) "/revoke" } {
            (csrf_field(csrf))
            button.danger type="submit" aria-label={ "Revoke " (d.device_identifier) } { "Revoke" }
        }
    }
}

/// The device list's filter: a GET form, so the filter lives in the page's address.
fn device_filter(slug: &str, f: &DeviceFilter, groups: &DeviceGroupList) -> Markup {
    let group = f.group.as_ref().map(|g| g.as_str());
    html! {
        form #device-filter method="get" action={ "/orgs/" (slug) "/devices" } {
            label for="filter-group" { "Group" }
            select #filter-group name="group" {
                option value="" { "Any group" }
                @for g in &groups.device_groups {
                    option value=(g.id.as_str()) selected[group == Some(g.id.as_str())] { (g.name) }
                }
            }
            label for="filter-platform" { "Platform" }
            input #filter-platform type="text" name="platform" placeholder="android, ios, …"
                value=(f.platform.as_deref().unwrap_or_default());
            label for="filter-last-seen" { "Last seen" }
            select #filter-last-seen name="last_seen" {
                option value="" { "Any time" }
                @for c in LastSeen::ALL {
                    option value=(word(&c)) selected[f.last_seen == Some(c)] { (word(&c)) }
                }
            }
            button type="submit" { "Filter" }
        }
    }
}

/// The query string of `f` (empty conditions left out), to carry it to the next page.
fn filter_query(f: &DeviceFilter) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(g) = &f.group {
        q.append_pair("group", g.as_str());
    }
    if let Some(p) = &f.platform {
        q.append_pair("platform", p);
    }
    if let Some(c) = f.last_seen {
        q.append_pair("last_seen", &word(&c));
    }
    q.finish()
}

pub fn devices(
    c: &Chrome<'_>,
    slug: &str,
    v: &DeviceList,
    filter: &DeviceFilter,
    groups: &DeviceGroupList,
    now_ms: i64,
    can_manage: bool,
) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    let filtered = *filter != DeviceFilter::default();
    layout(
        c,
        html! {
            (device_filter(slug, filter, groups))
            @if v.devices.is_empty() { p { @if filtered { "No devices match this filter." } @else { "No devices yet." } } }
            table #devices {
                thead { tr { th { "Device" } th { "Tags" } th { "Last seen" } th { "Heartbeat" } th { "State" } @if can_manage { th { span.muted { "Actions" } } } } }
                tbody {
                    @for d in &v.devices {
                        tr data-device-id=(d.id.as_str()) {
                            td { a href={ "/orgs/" (slug) "/devices/" (d.id.as_str()) } { (d.device_identifier) } br; code.muted { (d.id.as_str()) } }
                            td { (d.tags.join(" ")) }
                            td { (d.last_seen_at.map_or("never".to_owned(), |t| word(&t))) }
                            td.last-seen { (word(&LastSeen::of(d.heartbeat_at.map(|t| t.0), now_ms))) }
                            td.state { (device_state(d)) }
                            @if can_manage { td { @if d.revoked_at.is_none() { (revoke_form(csrf, slug, d)) } } }
                        }
                    }
                }
            }
            @if let Some(after) = &v.next_after {
                p { a href={ "/orgs/" (slug) "/devices?after=" (after.as_str()) "&" (filter_query(filter)) } { "More devices" } }
            }
        },
    )
}

pub fn device(c: &Chrome<'_>, slug: &str, d: &Device, now_ms: i64, can_manage: bool) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    let opt = |v: Option<String>| v.unwrap_or_else(|| "—".to_owned());
    let hb = d.heartbeat.as_ref();
    layout(
        c,
        html! {
            table #device {
                tbody {
                    tr { th { "Id" } td { code { (d.id.as_str()) } } }
                    tr { th { "State" } td #device-state { (device_state(d))
                        @if let Some(r) = &d.revoked_reason { " — " (r) } } }
                    tr { th { "Tags" } td { (d.tags.join(" ")) } }
                    tr { th { "Enrolled" } td { (word(&d.created_at)) } }
                    tr { th { "Last seen" } td { (opt(d.last_seen_at.map(|t| word(&t)))) } }
                    tr { th { "Last heartbeat" } td { (opt(d.heartbeat_at.map(|t| word(&t))))
                        " (" span #device-last-seen { (word(&LastSeen::of(d.heartbeat_at.map(|t| t.0), now_ms))) } ")" } }
                    tr { th { "Battery" } td { (opt(hb.and_then(|h| h.battery_pct).map(|b| format!("{b:.0}%")))) } }
                    tr { th { "Network" } td { (opt(hb.and_then(|h| h.network_type.clone()))) } }
                    tr { th { "Platform" } td { (opt(hb.and_then(|h| h.platform.clone()))) " " (opt(hb.and_then(|h| h.os_version.clone()))) } }
                    tr { th { "SDK" } td { (opt(hb.and_then(|h| h.sdk_version.clone()))) } }
                }
            }
            @if can_manage && d.revoked_at.is_none() { (revoke_form(csrf, slug, d)) }
            p { a href={ "/orgs/" (slug) "/devices" } { "All devices" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrome() -> Chrome<'static> {
        Chrome {
            title: "Training rounds",
            user_email: Some("a@example.com"),
            csrf: Some("tok"),
            org: None,
        }
    }

    #[test]
    fn the_round_form_keeps_what_was_typed_and_says_what_was_wrong() {
        let none = RoundList { rounds: Vec::new() };
        let values = vec![
            ("model_id".to_owned(), "mdl_\"><script>".to_owned()),
            ("target".to_owned(), "5".to_owned()),
        ];
        let form = RoundForm {
            values: &values,
            error: Some("participation must satisfy 1 <= min <= target"),
        };
        let html = rounds(&chrome(), "acme", &none, true, &form).into_string();
        assert!(html.contains("min &lt;= target"));
        assert!(
            html.contains("value=\"mdl_&quot;&gt;&lt;script&gt;\""),
            "{html}"
        );
        assert!(html.contains("name=\"target\" min=\"1\" step=\"1\" required value=\"5\""));
        // Unset fields start from their defaults.
        assert!(
            html.contains("name=\"deadline_seconds\" min=\"1\" step=\"1\" required value=\"3600\"")
        );
        let member = rounds(&chrome(), "acme", &none, false, &RoundForm::default()).into_string();
        assert!(!member.contains("action=\"/orgs/acme/rounds\""));
    }
}
