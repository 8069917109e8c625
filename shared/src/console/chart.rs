//! Charts drawn on the server as SVG (maud, so every label is escaped). No `style` attribute
//! anywhere (the CSP forbids inline style): colours come from classes in the stylesheet, sizes
//! from SVG presentation attributes. Each chart is an image with a title a screen reader reads,
//! and the page shows the same numbers in a table.

use maud::{html, Markup};

use crate::fl::live::ParticipationPoint;

/// The drawing area inside a chart's view box: left, top, width, height.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plot {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl Plot {
    /// Where `t` falls across `[from, to]` (clamped to the plot).
    pub fn x(&self, t: i64, from: i64, to: i64) -> f64 {
        let span = (to - from).max(1) as f64;
        self.left + ((t - from) as f64 / span).clamp(0.0, 1.0) * self.width
    }

    /// Where `v` falls on `[0, max]`, 0 at the bottom (clamped to the plot).
    pub fn y(&self, v: u64, max: u64) -> f64 {
        let share = (v as f64 / max.max(1) as f64).clamp(0.0, 1.0);
        self.top + self.height * (1.0 - share)
    }
}

/// The left and bottom axes of `plot`, the scale's 0 and `max` beside the left one.
fn axes(plot: &Plot, max: u64) -> Markup {
    let bottom = plot.top + plot.height;
    html! {
        line.axis x1=(plot.left) x2=(plot.left) y1=(plot.top) y2=(bottom) {}
        line.axis x1=(plot.left) x2=(plot.left + plot.width) y1=(bottom) y2=(bottom) {}
        text x="0" y=(bottom) { "0" }
        text x="0" y=(plot.top + 8.0) { (max) }
    }
}

/// A count that steps at each point and holds in between, from 0 at `from` to its last value
/// at `to`, as an SVG `points` list.
pub fn steps(points: &[(i64, u64)], from: i64, to: i64, max: u64, plot: &Plot) -> String {
    let mut out = vec![(plot.x(from, from, to), plot.y(0, max))];
    let mut level = 0;
    for (t, v) in points {
        let x = plot.x(*t, from, to);
        out.push((x, plot.y(level, max)));
        out.push((x, plot.y(*v, max)));
        level = *v;
    }
    out.push((plot.x(to, from, to), plot.y(level, max)));
    out.dedup();
    out.iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A span of time in words: `45 s`, `4 min 05 s`, `2 h 10 min`.
pub fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

/// Horizontal bars, one per count, with the target drawn as a line across them.
pub fn bars(label: &str, bars: &[(&str, u64)], target: u64) -> Markup {
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(target);
    let row = 26.0;
    let plot = Plot {
        left: 100.0,
        top: 0.0,
        width: 330.0,
        height: row * bars.len() as f64,
    };
    let bar_end = |n: u64| plot.left + plot.width * (n as f64 / max.max(1) as f64);
    let tx = bar_end(target);
    let height = plot.height + 6.0;
    html! {
        svg.chart role="img" aria-label=(label) viewBox={ "0 0 480 " (height) } width="480" height=(height) {
            title { (label) }
            @for (i, (name, n)) in bars.iter().enumerate() {
                @let y = i as f64 * row + 4.0;
                text x="0" y=(y + 14.0) { (name) }
                rect.bar x=(plot.left) y=(y) width=(format!("{:.1}", bar_end(*n) - plot.left)) height="18" {}
                text x=(format!("{:.1}", bar_end(*n) + 4.0)) y=(y + 14.0) { (n) }
            }
            line.target x1=(format!("{tx:.1}")) x2=(format!("{tx:.1}")) y1="0" y2=(height) stroke-width="2" {}
        }
    }
}

/// The three participation counts over time as step lines from `from` to `to`, with the
/// target as a dashed line.
pub fn participation(
    label: &str,
    points: &[ParticipationPoint],
    from: i64,
    to: i64,
    target: u64,
) -> Markup {
    let plot = Plot {
        left: 44.0,
        top: 10.0,
        width: 420.0,
        height: 150.0,
    };
    let max = points
        .iter()
        .map(|p| p.joined)
        .max()
        .unwrap_or(0)
        .max(target)
        .max(1);
    type Count = fn(&ParticipationPoint) -> u64;
    let series: [(&str, &str, Count); 3] = [
        ("joined", "series-joined", |p| p.joined),
        ("uploaded", "series-uploaded", |p| p.uploaded),
        ("accepted", "series-accepted", |p| p.accepted),
    ];
    let line = |count: Count| -> String {
        let pts: Vec<(i64, u64)> = points.iter().map(|p| (p.at.millis(), count(p))).collect();
        steps(&pts, from, to, max, &plot)
    };
    let bottom = plot.top + plot.height;
    let ty = plot.y(target, max);
    html! {
        svg.chart role="img" aria-label=(label) viewBox="0 0 480 200" width="480" height="200" {
            title { (label) }
            (axes(&plot, max))
            text x=(plot.left) y=(bottom + 16.0) { "start" }
            text x=(plot.left + plot.width) y=(bottom + 16.0) text-anchor="end" { "+" (duration(to - from)) }
            line.target x1=(plot.left) x2=(plot.left + plot.width) y1=(format!("{ty:.1}")) y2=(format!("{ty:.1}"))
                stroke-dasharray="4 3" {}
            @for (i, (name, class, count)) in series.iter().enumerate() {
                polyline class=(class) fill="none" stroke-width="2" points=(line(*count)) {}
                text class=(class) x=(plot.left + 8.0 + 90.0 * i as f64) y=(bottom + 34.0) { "— " (name) }
            }
        }
    }
}

/// Counts per equal time slot (a device's heartbeats per hour) as columns, oldest on the left,
/// the first and last slots' times under the axis. Empty slots draw nothing, so gaps show.
pub fn columns(label: &str, slots: &[(i64, u64)], first: &str, last: &str) -> Markup {
    let plot = Plot {
        left: 44.0,
        top: 10.0,
        width: 420.0,
        height: 120.0,
    };
    let max = slots.iter().map(|s| s.1).max().unwrap_or(0).max(1);
    let step = plot.width / slots.len().max(1) as f64;
    let bottom = plot.top + plot.height;
    html! {
        svg.chart role="img" aria-label=(label) viewBox="0 0 480 160" width="480" height="160" {
            title { (label) }
            (axes(&plot, max))
            @for (i, (_, n)) in slots.iter().enumerate() {
                @if *n > 0 {
                    @let y = plot.y(*n, max);
                    rect.bar x=(format!("{:.1}", plot.left + step * i as f64))
                        y=(format!("{y:.1}")) width=(format!("{:.1}", step.max(1.0)))
                        height=(format!("{:.1}", bottom - y)) {}
                }
            }
            text x=(plot.left) y=(bottom + 16.0) { (first) }
            text x=(plot.left + plot.width) y=(bottom + 16.0) text-anchor="end" { (last) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::IsoMillis;

    const PLOT: Plot = Plot {
        left: 10.0,
        top: 0.0,
        width: 100.0,
        height: 50.0,
    };

    #[test]
    fn a_count_steps_at_each_moment_and_holds_to_the_end() {
        // 0 until t=250, 2 until t=500, then 4 to the end (t=1000), on a scale of 0..4.
        let pts = steps(&[(250, 2), (500, 4)], 0, 1000, 4, &PLOT);
        assert_eq!(
            pts,
            "10.0,50.0 35.0,50.0 35.0,25.0 60.0,25.0 60.0,0.0 110.0,0.0"
        );
        // Nothing yet: a flat line at 0.
        assert_eq!(steps(&[], 0, 1000, 4, &PLOT), "10.0,50.0 110.0,50.0");
        // Out-of-range times and values stay inside the plot; an empty span does not divide by 0.
        assert_eq!(steps(&[(-5, 9)], 0, 0, 4, &PLOT), "10.0,50.0 10.0,0.0");
    }

    #[test]
    fn columns_rise_with_their_counts_and_leave_empty_slots_blank() {
        let c = columns(
            "Heartbeats <per> hour",
            &[(0, 0), (1, 2), (2, 4), (3, 0)],
            "then",
            "now",
        )
        .into_string();
        assert!(c.starts_with("<svg class=\"chart\" role=\"img\" aria-label="));
        assert!(!c.contains("style") && !c.contains("NaN"), "{c}");
        assert!(c.contains("<title>Heartbeats &lt;per&gt; hour</title>"));
        // Two non-empty slots of four across 420 units: 105 wide, at 44 + 105 and 44 + 210.
        assert_eq!(c.matches("<rect").count(), 2);
        assert!(
            c.contains("x=\"149.0\" y=\"70.0\" width=\"105.0\" height=\"60.0\""),
            "{c}"
        );
        assert!(
            c.contains("x=\"254.0\" y=\"10.0\" width=\"105.0\" height=\"120.0\""),
            "{c}"
        );
        // Nothing at all still draws a chart, on a scale of 1.
        assert_eq!(
            columns("none", &[], "a", "b")
                .into_string()
                .matches("<rect")
                .count(),
            0
        );
    }

    #[test]
    fn durations_read_as_words() {
        assert_eq!(duration(-5), "0 s");
        assert_eq!(duration(45_999), "45 s");
        assert_eq!(duration(245_000), "4 min 05 s");
        assert_eq!(duration(7_800_000), "2 h 10 min");
    }

    #[test]
    fn charts_are_labelled_images_without_inline_style_and_escape_their_labels() {
        let b = bars("Progress <of> round", &[("joined", 3), ("accepted", 1)], 2).into_string();
        let pts = [ParticipationPoint {
            at: IsoMillis(500),
            joined: 2,
            uploaded: 1,
            accepted: 1,
        }];
        let p = participation("Participation & time", &pts, 0, 1000, 2).into_string();
        for svg in [&b, &p] {
            assert!(svg.starts_with("<svg class=\"chart\" role=\"img\" aria-label="));
            assert!(!svg.contains("style"), "{svg}");
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
        assert!(b.contains("<title>Progress &lt;of&gt; round</title>"));
        // The target line at 2 of a scale of 3: 100 + 330 · 2/3.
        assert!(b.contains("x1=\"320.0\""), "{b}");
        assert!(p.contains("<title>Participation &amp; time</title>"));
        assert_eq!(p.matches("<polyline").count(), 3);
        assert!(p.contains("class=\"series-accepted\""));
        assert!(p.contains("+1 s"));
    }
}
