//! The org's devices: the list (filtered by group, platform and last seen; revoke one) and a
//! device's page (its heartbeat timeline, the rounds it took part in, its last refused update).

use maud::{html, Markup};

use super::{csrf_field, layout, word, Chrome};
use crate::console::chart;
use crate::fl::history;
use crate::fl::presence::LastSeen;
use crate::views::federation::{
    Device, DeviceFilter, DeviceGroupList, DeviceList, HeartbeatTimeline, ParticipationList,
    Rejection,
};

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

/// What a device's page shows besides the device: the views of its two JSON sub-routes.
pub struct DeviceHistory<'a> {
    pub heartbeats: &'a HeartbeatTimeline,
    pub participations: &'a ParticipationList,
}

pub fn device(
    c: &Chrome<'_>,
    slug: &str,
    d: &Device,
    history: &DeviceHistory<'_>,
    now_ms: i64,
    can_manage: bool,
) -> Markup {
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
            (heartbeat_timeline(history.heartbeats))
            (last_rejection(slug, history.participations.last_rejection.as_ref()))
            (device_rounds(slug, d, history.participations))
            p { a href={ "/orgs/" (slug) "/devices" } { "All devices" } }
        },
    )
}

/// Heartbeats per hour over the retention window, as a chart and, for the hours that had
/// any, a table with the same numbers and the hour's last signals.
fn heartbeat_timeline(t: &HeartbeatTimeline) -> Markup {
    let days = history::RETENTION_HOURS / 24;
    html! {
        h2 { "Heartbeats, last " (days) " days" }
        @if t.hours.is_empty() {
            p #heartbeat-none { "No heartbeats in the last " (days) " days." }
        } @else {
            figure #heartbeat-timeline {
                (chart::columns(&format!("{} heartbeats in the last {} hours", t.total, history::RETENTION_HOURS),
                    &t.counts(), &word(&t.from), "now"))
                figcaption.muted { "Heartbeats per hour (UTC); hours older than " (days) " days are deleted." }
            }
            table #heartbeat-hours {
                thead { tr { th { "Hour" } th { "Heartbeats" } th { "Battery" } th { "Network" } th { "Last at" } } }
                tbody {
                    @for h in t.hours.iter().rev() {
                        tr data-hour=(word(&h.hour)) {
                            td { (word(&h.hour)) }
                            td.count { (h.count) }
                            td { (h.last.battery_pct.or(h.last.metadata.as_ref().and_then(|m| m.battery_level))
                                .map_or("—".to_owned(), |b| format!("{b:.0}%"))) }
                            td { (h.last.network_type.clone().or_else(|| h.last.metadata.as_ref().and_then(|m| m.network_type.clone()))
                                .unwrap_or_else(|| "—".to_owned())) }
                            td { (word(&h.last_at)) }
                        }
                    }
                }
            }
        }
    }
}

fn last_rejection(slug: &str, r: Option<&Rejection>) -> Markup {
    html! {
        h2 { "Last rejected update" }
        @match r {
            Some(r) => {
                p #device-last-rejection data-reason=(r.reason.as_str()) {
                    code.reason { (r.reason.as_str()) } " — " span.message { (r.message) }
                    " (round " a href={ "/orgs/" (slug) "/rounds/" (r.round_id.as_str()) } { code { (r.round_id.as_str()) } }
                    ", " (word(&r.at)) ")"
                }
            }
            None => p #device-last-rejection { "None: no update of this device's was refused in an ended round." }
        }
    }
}

fn device_rounds(slug: &str, d: &Device, list: &ParticipationList) -> Markup {
    html! {
        h2 { "Rounds" }
        p.muted { "Rounds appear here once they have ended; a running round's devices are on its own page." }
        @if list.participations.is_empty() {
            p #device-rounds-none { "No ended round that this device took part in." }
        } @else {
            table #device-rounds {
                thead { tr { th { "Round" } th { "Round ended" } th { "Joined" } th { "Outcome" } th { "Refused updates" } th { "Last refusal" } } }
                tbody {
                    @for p in &list.participations {
                        tr data-round-id=(p.round_id.as_str()) {
                            td { a href={ "/orgs/" (slug) "/rounds/" (p.round_id.as_str()) } { code { (p.round_id.as_str()) } } }
                            td { (p.round_state.as_str()) }
                            td { (word(&p.joined_at)) }
                            td.outcome { (p.outcome.as_str()) }
                            td { (p.rejected_updates) }
                            td.reason { @if let Some(r) = &p.last_rejection { code { (r.reason.as_str()) } " — " (r.message) } @else { "—" } }
                        }
                    }
                }
            }
            @if let Some(before) = &list.next_before {
                p { a href={ "/orgs/" (slug) "/devices/" (d.id.as_str()) "?before=" (before.as_str()) } { "Older rounds" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fl::round::RoundState;
    use crate::ids::DeviceId;

    fn chrome() -> Chrome<'static> {
        Chrome {
            title: "Device",
            user_email: Some("a@example.com"),
            csrf: Some("tok"),
            org: None,
        }
    }

    fn id<T: crate::ids::TypedId>(prefix: &str, n: u32) -> T {
        T::parse(&format!("{prefix}_{n:028x}")).unwrap()
    }

    #[test]
    fn a_device_page_shows_its_heartbeat_timeline_its_rounds_and_its_last_refusal() {
        use crate::fl::history::{ParticipationOutcome, BUCKET_MS};
        use crate::fl::round::RejectReason;
        use crate::fl::wire::ParticipationId;
        use crate::time::IsoMillis;
        use crate::views::federation::{DeviceParticipation, Heartbeat, HeartbeatHour};
        let dev: DeviceId = id("dev", 1);
        let d = Device {
            id: dev.clone(),
            device_identifier: "phone-1".into(),
            tags: vec![],
            created_at: IsoMillis(0),
            last_seen_at: None,
            revoked_at: None,
            revoked_reason: None,
            heartbeat: None,
            heartbeat_at: None,
        };
        let now = 500 * BUCKET_MS;
        let hours = vec![HeartbeatHour {
            hour: IsoMillis(499 * BUCKET_MS),
            count: 3,
            last_at: IsoMillis(499 * BUCKET_MS + 60_000),
            last: Heartbeat {
                battery_pct: Some(81.0),
                network_type: Some("wifi".into()),
                ..Heartbeat::default()
            },
        }];
        let heartbeats = history::timeline(dev.clone(), hours, now);
        let refusal = Rejection {
            round_id: id("rnd", 2),
            reason: RejectReason::NonFinite,
            message: "a value is <not> finite".into(),
            at: IsoMillis(now - 5),
        };
        let participations = ParticipationList {
            participations: vec![DeviceParticipation {
                round_id: id("rnd", 2),
                model_id: id("mdl", 1),
                round_state: RoundState::Published,
                participation_id: ParticipationId::parse("p-1").unwrap(),
                outcome: ParticipationOutcome::Rejected,
                joined_at: IsoMillis(now - 10),
                accepted_at: None,
                rejected_updates: 1,
                last_rejection: Some(refusal.clone()),
            }],
            next_before: Some(id("rnd", 2)),
            last_rejection: Some(refusal),
        };
        let history = DeviceHistory {
            heartbeats: &heartbeats,
            participations: &participations,
        };
        let html = device(&chrome(), "acme", &d, &history, now, false).into_string();
        assert!(
            html.contains("<title>3 heartbeats in the last 168 hours</title>"),
            "{html}"
        );
        assert_eq!(html.matches("<rect").count(), 1);
        assert!(
            html.contains("<td class=\"count\">3</td><td>81%</td><td>wifi</td>"),
            "{html}"
        );
        assert!(html.contains("data-round-id=\"rnd_0000000000000000000000000002\""));
        assert!(html.contains("<td class=\"outcome\">rejected</td>"));
        assert!(html.contains("data-reason=\"non_finite\""));
        assert!(
            html.contains("a value is &lt;not&gt; finite"),
            "escaped: {html}"
        );
        assert!(html.contains("?before=rnd_0000000000000000000000000002\""));
        assert!(!html.contains("style="), "no inline style: {html}");

        // A device with no history says so instead of drawing empty tables.
        let empty = ParticipationList {
            participations: vec![],
            next_before: None,
            last_rejection: None,
        };
        let quiet = history::timeline(dev, vec![], now);
        let html = device(
            &chrome(),
            "acme",
            &d,
            &DeviceHistory {
                heartbeats: &quiet,
                participations: &empty,
            },
            now,
            false,
        )
        .into_string();
        assert!(html.contains("id=\"heartbeat-none\""));
        assert!(html.contains("id=\"device-rounds-none\""));
        assert!(!html.contains("<svg"));
        assert!(html.contains("None: no update"));
    }
}
