//! Federated learning: training rounds and a round's live page.

use maud::{html, Markup, PreEscaped};

use super::{layout, word, Chrome};
use crate::views::federation::{Round, RoundList};

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
