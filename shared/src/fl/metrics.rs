//! Training metrics of a round: what devices report with their updates (loss, accuracy,
//! duration, any numeric metric; bounded by `validate::UpdateMeta::check` to 32 finite values
//! with short names) summarized per metric as a sample-weighted mean with its spread, a time
//! series in acceptance order for charts, and the participation funnel.
//!
//! Nothing here runs on the ingest path: metrics travel inside the update's metadata, which the
//! coordinator stores anyway; summaries are computed when a round is read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::round::RejectReason;

/// One metric across the accepted updates that reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Updates that reported it.
    pub updates: u64,
    /// Their total sample weight.
    pub weight: f64,
    /// Sample-weighted mean.
    pub mean: f64,
    /// Sample-weighted standard deviation (population form).
    pub std_dev: f64,
    pub min: f64,
    pub max: f64,
    /// Sample-weighted percentiles: the smallest reported value with at least that share of the
    /// weight at or below it.
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
}

/// One accepted update's contribution: its weight (sample count) and its metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported<'a> {
    /// Acceptance order (the round's sequence number).
    pub seq: i64,
    /// When its upload started (ms since the epoch).
    pub at_ms: i64,
    pub weight: f64,
    pub metrics: &'a BTreeMap<String, f64>,
}

fn percentile(sorted: &[(f64, f64)], total: f64, q: f64) -> f64 {
    let goal = q * total;
    let mut acc = 0.0;
    for (v, w) in sorted {
        acc += w;
        if acc >= goal {
            return *v;
        }
    }
    sorted.last().map(|(v, _)| *v).unwrap_or(f64::NAN)
}

/// The spread of every metric (updates with a weight of zero or less are left out).
pub fn summarize(updates: &[Reported<'_>]) -> BTreeMap<String, Spread> {
    let mut by_name: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for u in updates.iter().filter(|u| u.weight > 0.0) {
        for (k, v) in u.metrics {
            if v.is_finite() {
                by_name.entry(k).or_default().push((*v, u.weight));
            }
        }
    }
    by_name
        .into_iter()
        .map(|(name, mut vals)| {
            let weight: f64 = vals.iter().map(|(_, w)| w).sum();
            let mean = vals.iter().map(|(v, w)| v * w).sum::<f64>() / weight;
            let var = vals
                .iter()
                .map(|(v, w)| w * (v - mean) * (v - mean))
                .sum::<f64>()
                / weight;
            vals.sort_by(|a, b| a.0.total_cmp(&b.0));
            let spread = Spread {
                updates: vals.len() as u64,
                weight,
                mean,
                std_dev: var.max(0.0).sqrt(),
                min: vals.first().map(|x| x.0).unwrap_or(f64::NAN),
                max: vals.last().map(|x| x.0).unwrap_or(f64::NAN),
                p10: percentile(&vals, weight, 0.1),
                p50: percentile(&vals, weight, 0.5),
                p90: percentile(&vals, weight, 0.9),
            };
            (name.to_owned(), spread)
        })
        .collect()
}

/// One point of a round's metrics time series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The update's place in acceptance order.
    pub seq: i64,
    pub at_ms: i64,
    pub weight: f64,
    /// What this update reported.
    pub values: BTreeMap<String, f64>,
    /// The sample-weighted mean of each metric over the updates accepted so far.
    pub running_mean: BTreeMap<String, f64>,
}

/// The series in acceptance order, with running sample-weighted means.
pub fn series(updates: &[Reported<'_>]) -> Vec<Point> {
    let mut sorted: Vec<&Reported<'_>> = updates.iter().collect();
    sorted.sort_by_key(|u| u.seq);
    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    sorted
        .into_iter()
        .map(|u| {
            if u.weight > 0.0 {
                for (k, v) in u.metrics.iter().filter(|(_, v)| v.is_finite()) {
                    let e = sums.entry(k.clone()).or_insert((0.0, 0.0));
                    e.0 += u.weight * v;
                    e.1 += u.weight;
                }
            }
            Point {
                seq: u.seq,
                at_ms: u.at_ms,
                weight: u.weight,
                values: u.metrics.clone(),
                running_mean: sums
                    .iter()
                    .filter(|(_, (_, w))| *w > 0.0)
                    .map(|(k, (s, w))| (k.clone(), s / w))
                    .collect(),
            }
        })
        .collect()
}

/// Who got how far in a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Funnel {
    /// Devices eligible to take part (the group's, or the org's), not revoked.
    pub offered: i64,
    pub joined: u64,
    /// Participations that completed an upload (accepted or rejected).
    pub uploaded: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<RejectReason, u64>,
    /// Participations that never completed an upload: only once the round has closed (before
    /// that they may still upload).
    pub dropped: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn weighted_mean_spread_and_percentiles_match_a_reference() {
        let a = m(&[("loss", 1.0), ("accuracy", 0.5)]);
        let b = m(&[("loss", 3.0)]);
        let c = m(&[("loss", 2.0), ("accuracy", 0.9)]);
        let none = m(&[("loss", 100.0)]);
        let ups = vec![
            Reported {
                seq: 1,
                at_ms: 10,
                weight: 10.0,
                metrics: &a,
            },
            Reported {
                seq: 2,
                at_ms: 20,
                weight: 30.0,
                metrics: &b,
            },
            Reported {
                seq: 3,
                at_ms: 30,
                weight: 60.0,
                metrics: &c,
            },
            Reported {
                seq: 4,
                at_ms: 40,
                weight: 0.0,
                metrics: &none,
            },
        ];
        let s = summarize(&ups);
        let loss = &s["loss"];
        // Reference, by hand: mean = (10·1 + 30·3 + 60·2) / 100 = 2.2;
        // var = (10·1.44 + 30·0.64 + 60·0.04) / 100 = 0.36.
        assert!((loss.mean - 2.2).abs() < 1e-12);
        assert!((loss.std_dev - 0.6).abs() < 1e-12);
        assert_eq!((loss.updates, loss.weight), (3, 100.0));
        assert_eq!((loss.min, loss.max), (1.0, 3.0));
        // Sorted: 1 (10), 2 (60), 3 (30): cumulative 10, 70, 100.
        assert_eq!((loss.p10, loss.p50, loss.p90), (1.0, 2.0, 3.0));
        let acc = &s["accuracy"];
        assert!((acc.mean - (10.0 * 0.5 + 60.0 * 0.9) / 70.0).abs() < 1e-12);
        assert_eq!(acc.updates, 2);

        let pts = series(&ups);
        assert_eq!(
            pts.iter().map(|p| p.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert!((pts[0].running_mean["loss"] - 1.0).abs() < 1e-12);
        assert!((pts[1].running_mean["loss"] - 2.5).abs() < 1e-12);
        assert!((pts[2].running_mean["loss"] - 2.2).abs() < 1e-12);
        assert!(
            (pts[3].running_mean["loss"] - 2.2).abs() < 1e-12,
            "weight 0 adds nothing"
        );
        assert_eq!(pts[3].values["loss"], 100.0);
        assert!(summarize(&[]).is_empty());
    }
}
