//! Federated learning's rounds: the list (start one) and a round's live page (cancel it). The
//! devices' pages are in `devices`.

use maud::{html, Markup};

use super::{csrf_field, layout, word, Chrome};
use crate::console::chart;
use crate::fl::live::{self, RejectionGroup, Stragglers};
use crate::fl::round::{RoundState, DEFAULT_SAMPLE_CAP};
use crate::ids::DeviceId;
use crate::views::federation::{Round, RoundList};

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

/// What the person looking at a round may do there, and the facts the page needs besides
/// the round: the CSRF token of the cancel form, whether devices' own pages are theirs to open,
/// and the time of the answer (for the countdown and the waits).
pub struct RoundControls<'a> {
    pub csrf: &'a str,
    pub can_cancel: bool,
    pub can_see_devices: bool,
    pub now_ms: i64,
}

/// A round's path under its org: `/orgs/{slug}/rounds/{id}{rest}`.
fn round_path(slug: &str, r: &Round, rest: &str) -> String {
    format!("/orgs/{slug}/rounds/{}{rest}", r.id.as_str())
}

/// A round's live page. The part that changes is [`round_live`]; while the round runs, htmx
/// replaces it every second from `…/live` (which answers 286 once the round ended, and htmx
/// stops). Without JavaScript the page is the same, as of its loading.
pub fn round(c: &Chrome<'_>, slug: &str, r: &Round, ctl: &RoundControls<'_>) -> Markup {
    let live = round_path(slug, r, "/live");
    layout(
        c,
        html! {
            p { "Model " code { (r.model_id.as_str()) } ", base version " (r.base_version)
                " · started " (word(&r.created_at)) " by " code { (r.created_by) } }
            @if r.state.is_terminal() {
                div #round-live { (round_live(slug, r, ctl)) }
            } @else {
                div #round-live hx-get=(live) hx-trigger="every 1s" { (round_live(slug, r, ctl)) }
            }
            p { a href={ "/orgs/" (slug) "/rounds" } { "All rounds" } }
        },
    )
}

/// How the round ended, in words, or `None` while it runs.
fn outcome(r: &Round) -> Option<(bool, Markup)> {
    let accepted = r.progress.as_ref().map_or(0, |p| p.accepted);
    Some(match r.state {
        RoundState::Published => (
            true,
            html! { "Outcome: " strong { "published" } " — new model version "
            code #round-version { (r.published_version_id.as_ref().map_or("", |v| v.as_str())) }
            " from " (accepted) " accepted updates." },
        ),
        RoundState::InsufficientUpdates => (
            false,
            html! { "Outcome: " strong { "insufficient updates" } " — the deadline passed with "
            (accepted) " accepted updates, fewer than the minimum of " (r.min) "." },
        ),
        RoundState::Cancelled => (
            false,
            html! { "Outcome: " strong { "cancelled" } " — the round was stopped before it finished; nothing was published." },
        ),
        RoundState::Failed => (
            false,
            html! { "Outcome: " strong { "failed" } " — "
            (r.failure.as_ref().map_or("the new version could not be published.", |f| f.message.as_str())) },
        ),
        RoundState::Open | RoundState::Collecting | RoundState::Aggregating => return None,
    })
}

/// The deadline as a countdown while the round runs.
fn deadline(r: &Round, now_ms: i64) -> Markup {
    let at = word(&r.deadline_at);
    let left = r.deadline_at.millis() - now_ms;
    html! {
        @if let Some(closed) = r.closed_at {
            "closed " (word(&closed))
        } @else if r.state.is_accepting() && left > 0 {
            "deadline in " strong #round-countdown { (chart::duration(left)) }
            " (" time datetime=(at) { (at) } ")"
        } @else if r.state.is_accepting() {
            "deadline " time datetime=(at) { (at) } " passed; closing"
        } @else {
            "closed to new updates (deadline " time datetime=(at) { (at) } ")"
        }
    }
}

fn device_cell(slug: &str, device: &DeviceId, id: &str, can_see: bool) -> Markup {
    html! {
        @if can_see {
            a #(id) href={ "/orgs/" (slug) "/devices/" (device.as_str()) } { code { (device.as_str()) } }
        } @else {
            code { (device.as_str()) }
        }
    }
}

fn stragglers(slug: &str, r: &Round, s: &Stragglers, ctl: &RoundControls<'_>) -> Markup {
    html! {
        h2 #stragglers-heading { "Stragglers" }
        @if s.total == 0 {
            p.muted { "None: every device that joined has an accepted update." }
        } @else {
            table #round-stragglers aria-labelledby="stragglers-heading" {
                thead { tr { th { "Device" } th { "State" } th { "Joined" } th { "Waiting" }
                    th { "Of its time to the deadline" } th { "Refused updates" } } }
                tbody {
                    @for st in &s.longest_waiting {
                        @let (waited, share) = live::waited(st.joined_at.millis(), ctl.now_ms, r.deadline_at.millis());
                        tr data-device-id=(st.device_id.as_str()) {
                            td { (device_cell(slug, &st.device_id, &format!("straggler-{}", st.device_id.as_str()), ctl.can_see_devices)) }
                            td { (word(&st.state)) }
                            td { (word(&st.joined_at)) }
                            td { (chart::duration(waited)) }
                            td { (format!("{:.0}%", share * 100.0)) }
                            td { (st.rejected_updates) }
                        }
                    }
                }
            }
            @if s.total > s.longest_waiting.len() as u64 {
                p.muted { "Showing the " (s.longest_waiting.len()) " longest waiting of " (s.total) " stragglers." }
            }
        }
    }
}

fn rejections(slug: &str, groups: &[RejectionGroup], ctl: &RoundControls<'_>) -> Markup {
    html! {
        h2 #rejections-heading { "Refused updates" }
        @if groups.is_empty() {
            p.muted { "None." }
        }
        @for g in groups {
            @let reason = word(&g.reason);
            h3 #{ "rejected-" (reason) } { (reason) " · " (g.count) }
            table.rejections data-reason=(reason) aria-labelledby={ "rejected-" (reason) } {
                thead { tr { th { "Device" } th { "Why" } th { "Upload started" } } }
                tbody {
                    @for u in &g.latest {
                        tr data-device-id=(u.device_id.as_str()) {
                            td { (device_cell(slug, &u.device_id, &format!("rejected-{reason}-{}", u.device_id.as_str()), ctl.can_see_devices)) }
                            td { (u.message) }
                            td { (word(&u.at)) }
                        }
                    }
                }
            }
            @if g.count > g.latest.len() as u64 {
                p.muted { "Showing the latest " (g.latest.len()) " of " (g.count) "." }
            }
        }
    }
}

fn parameters(r: &Round) -> Markup {
    let a = &r.aggregation;
    let or_none = |v: Option<f64>| v.map_or_else(|| "none".to_owned(), |v| v.to_string());
    html! {
        h2 #parameters-heading { "Aggregation and privacy" }
        table #round-aggregation aria-labelledby="parameters-heading" {
            tbody {
                tr { th { "Algorithm" } td { (a.algorithm) } }
                tr { th { "Accepted updates: minimum to publish / target / most participants" }
                    td { (r.min) " / " (r.target) " / " (r.max) } }
                tr { th { "Clip norm" } td { (or_none(a.clip_norm)) } }
                tr { th { "Noise multiplier" } td { (or_none(a.noise_multiplier)) } }
                tr { th { "Most samples one update counts for" }
                    td { (a.max_sample_count.unwrap_or(DEFAULT_SAMPLE_CAP)) } }
                tr { th { "Device group" }
                    td { (r.device_group.as_ref().map_or("every device of the org", |g| g.as_str())) } }
            }
        }
    }
}

/// The live part of a round's page (also the `…/live` fragment): the outcome once it ended,
/// state and countdown, cancel, progress against the target, participation over time, the
/// stragglers, refused updates by reason, and the aggregation and privacy parameters.
pub fn round_live(slug: &str, r: &Round, ctl: &RoundControls<'_>) -> Markup {
    html! {
        @if let Some((ok, text)) = outcome(r) {
            @if ok { div.notice.outcome #round-outcome role="status" { (text) } }
            @else { div.notice.error #round-outcome role="alert" { (text) } }
        }
        p { "State: " strong #round-state { (word(&r.state)) } " · " (deadline(r, ctl.now_ms)) }
        @if ctl.can_cancel && !r.state.is_terminal() {
            form method="post" action=(round_path(slug, r, "/cancel")) {
                (csrf_field(ctl.csrf))
                button.danger #cancel-round type="submit" { "Cancel round" }
            }
        }
        @if let Some(p) = &r.progress {
            @let folded = p.folded.max(0) as u64;
            h2 #progress-heading { "Progress against the target of " (r.target) }
            table #round-progress aria-labelledby="progress-heading" {
                tbody {
                    tr { th { "Devices eligible" } td #round-selected { (p.selected) } }
                    tr { th { "Joined" } td #round-joined { (p.joined) } }
                    tr { th { "Uploading now" } td #round-uploading { (p.uploading) } }
                    tr { th { "Uploaded (accepted or refused)" } td #round-uploaded { (p.funnel.uploaded) } }
                    tr { th { "Accepted" } td #round-accepted { (p.accepted) } }
                    tr { th { "Refused" } td #round-rejected { (p.rejected_total) } }
                    tr { th { "Folded into the aggregate" } td #round-folded { (folded) } }
                    tr { th { "Samples" } td { (p.total_samples) } }
                }
            }
            figure {
                (chart::bars(&format!("Joined {}, uploaded {}, accepted {}, folded {}; target {}",
                    p.joined, p.funnel.uploaded, p.accepted, folded, r.target),
                    &[("joined", p.joined), ("uploaded", p.funnel.uploaded), ("accepted", p.accepted), ("folded", folded)],
                    u64::from(r.target)))
                figcaption.muted { "The line is the target: " (r.target) " accepted updates (at least " (r.min) " to publish)." }
            }
            @let to = r.closed_at.map_or(ctl.now_ms, |t| t.millis());
            figure {
                (chart::participation(&format!("Participation over time: {} joined, {} uploaded, {} accepted", p.joined, p.funnel.uploaded, p.accepted),
                    &p.participation, r.created_at.millis(), to.max(r.created_at.millis()), u64::from(r.target)))
                figcaption.muted { "Joined, uploaded and accepted since the round started; the dashed line is the target." }
            }
            (stragglers(slug, r, &p.stragglers, ctl))
            (rejections(slug, &p.rejections, ctl))
            (parameters(r))
            @if !p.metrics.is_empty() {
                h2 { "Metrics (sample-weighted means)" }
                table #round-metrics {
                    tbody { @for (name, mean) in &p.metrics { tr { th { (name) } td { (format!("{mean:.4}")) } } } }
                }
            }
        } @else {
            (parameters(r))
        }
    }
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

    fn id<T: crate::ids::TypedId>(prefix: &str, n: u32) -> T {
        T::parse(&format!("{prefix}_{n:028x}")).unwrap()
    }

    fn live_round(state: RoundState, stragglers_total: u64) -> Round {
        use crate::fl::live::{ParticipationPoint, RefusedUpdate, Straggler};
        use crate::fl::metrics::Funnel;
        use crate::fl::participation::ParticipationState;
        use crate::fl::round::{AggregationSpec, RejectReason};
        use crate::time::IsoMillis;
        use crate::views::federation::{DeviceHealth, RoundProgress};
        let late: DeviceId = id("dev", 1);
        let bad: DeviceId = id("dev", 2);
        Round {
            id: id("rnd", 1),
            org_id: id("org", 1),
            model_id: id("mdl", 1),
            base_version_id: id("mv", 1),
            base_version: 1,
            plan_id: id("pln", 1),
            state,
            target: 2,
            min: 1,
            max: 4,
            deadline_at: IsoMillis(100_000),
            device_group: None,
            aggregation: AggregationSpec {
                algorithm: "fedavg".into(),
                clip_norm: Some(1.5),
                noise_multiplier: None,
                max_sample_count: None,
            },
            created_by: "usr_x".into(),
            created_at: IsoMillis(0),
            closed_at: state.is_terminal().then_some(IsoMillis(20_000)),
            published_version_id: (state == RoundState::Published).then(|| id("mv", 2)),
            failure: None,
            progress: Some(RoundProgress {
                selected: 5,
                joined: 3,
                uploading: 0,
                accepted: 1,
                rejected: [(RejectReason::NonFinite, 1)].into(),
                rejected_total: 1,
                participation_rate: None,
                completion_rate: None,
                total_samples: 10,
                capped_weights: 0,
                metrics: Default::default(),
                metric_spread: Default::default(),
                funnel: Funnel {
                    offered: 5,
                    joined: 3,
                    uploaded: 2,
                    accepted: 1,
                    rejected: Default::default(),
                    dropped: None,
                },
                folded: 1,
                shards: 1,
                device_health: DeviceHealth {
                    participants: 3,
                    reporting: 0,
                    stale: 0,
                    battery_pct_avg: None,
                    charging: 0,
                    network_types: Default::default(),
                },
                stragglers: Stragglers {
                    total: stragglers_total,
                    longest_waiting: vec![Straggler {
                        device_id: late,
                        state: ParticipationState::Joined,
                        joined_at: IsoMillis(10_000),
                        rejected_updates: 0,
                    }],
                },
                rejections: vec![RejectionGroup {
                    reason: RejectReason::NonFinite,
                    count: 1,
                    latest: vec![RefusedUpdate {
                        device_id: bad,
                        message: "a value is <not> finite".into(),
                        at: IsoMillis(12_000),
                    }],
                }],
                participation: vec![ParticipationPoint {
                    at: IsoMillis(5_000),
                    joined: 3,
                    uploaded: 2,
                    accepted: 1,
                }],
            }),
        }
    }

    fn controls(can_cancel: bool) -> RoundControls<'static> {
        RoundControls {
            csrf: "tok",
            can_cancel,
            can_see_devices: true,
            now_ms: 55_000,
        }
    }

    #[test]
    fn a_running_round_polls_its_live_part_and_shows_the_late_and_the_refused() {
        let r = live_round(RoundState::Collecting, 7);
        let html = round(&chrome(), "acme", &r, &controls(true)).into_string();
        let live = format!(
            "hx-get=\"/orgs/acme/rounds/{}/live\" hx-trigger=\"every 1s\"",
            r.id.as_str()
        );
        assert!(html.contains(&live), "{html}");
        assert!(!html.contains("round-outcome"));
        // Countdown: 100 s deadline, now 55 s.
        assert!(
            html.contains("<strong id=\"round-countdown\">45 s</strong>"),
            "{html}"
        );
        assert!(html.contains("id=\"cancel-round\""));
        assert!(html.contains("<td id=\"round-joined\">3</td>"));
        assert!(html.contains("<td id=\"round-uploaded\">2</td>"));
        assert!(html.contains("<td id=\"round-folded\">1</td>"));
        // The straggler joined at 10 s of a deadline at 100 s and has waited 45 s: half its time.
        assert!(html.contains("<td>45 s</td><td>50%</td>"), "{html}");
        assert!(html.contains("Showing the 1 longest waiting of 7 stragglers."));
        assert!(html.contains("id=\"straggler-dev_0000000000000000000000000001\""));
        assert!(html.contains("a value is &lt;not&gt; finite"));
        assert!(html.contains("data-reason=\"non_finite\""));
        assert!(html.contains("<td>1.5</td>") && html.contains("<td>10000</td>"));
        assert!(!html.contains("style="), "no inline style: {html}");
        // A member without the devices' pages sees ids, not links; without cancel, no form.
        let member = RoundControls {
            can_see_devices: false,
            ..controls(false)
        };
        let fragment = round_live("acme", &r, &member).into_string();
        assert!(!fragment.contains("href=\"/orgs/acme/devices/"));
        assert!(!fragment.contains("cancel"));
    }

    #[test]
    fn an_ended_round_says_how_it_ended_and_stops_polling() {
        let r = live_round(RoundState::Published, 1);
        let html = round(&chrome(), "acme", &r, &controls(true)).into_string();
        assert!(!html.contains("hx-trigger"));
        assert!(html.contains("<strong>published</strong>"));
        assert!(html.contains("<code id=\"round-version\">mv_0000000000000000000000000002</code>"));
        assert!(!html.contains("cancel-round"), "nothing to cancel");
        assert!(!html.contains("round-countdown"));
        let mut failed = live_round(RoundState::InsufficientUpdates, 1);
        failed.published_version_id = None;
        let html = round_live("acme", &failed, &controls(true)).into_string();
        assert!(html.contains("role=\"alert\"") && html.contains("fewer than the minimum of 1"));
    }
}
