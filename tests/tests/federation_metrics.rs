//! A round's training metrics against a reference computed here: the sample-weighted mean,
//! standard deviation, range and percentiles of what devices reported with accepted updates,
//! the time series in acceptance order, the participation funnel (offered, joined, uploaded,
//! accepted, rejected by reason, dropped), and the fleet health from heartbeats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::federation::*;
use e2e::{org_path, wait_for, Client};
use serde_json::{json, Value};

/// Weighted mean, population standard deviation and the weighted percentile (smallest value
/// with at least `q` of the weight at or below it), in f64.
fn reference(points: &[(f64, f64)]) -> (f64, f64, [f64; 3]) {
    let w: f64 = points.iter().map(|p| p.1).sum();
    let mean = points.iter().map(|(v, n)| v * n).sum::<f64>() / w;
    let var = points
        .iter()
        .map(|(v, n)| n * (v - mean).powi(2))
        .sum::<f64>()
        / w;
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pct = |q: f64| {
        let mut acc = 0.0;
        for (v, n) in &sorted {
            acc += n;
            if acc >= q * w {
                return *v;
            }
        }
        sorted.last().unwrap().0
    };
    (mean, var.sqrt(), [pct(0.1), pct(0.5), pct(0.9)])
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn round_metrics_match_a_reference() {
    let spec = tensors(&[("w", vec![6, 5]), ("b", vec![5])]);
    let mut rng = Rng::new(1203);
    let (model_id, _) = model_with_base(&spec, &mut rng);
    let devices: Vec<Device> = (0..7).map(|_| Device::enroll("metrics")).collect();
    let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    let owner = Client::owner_key();
    let gid = owner
        .post(
            &org_path("/device-groups"),
            &json!({"name": unique("metrics"), "device_ids": ids}),
        )
        .expect(201)
        .json()["device_group"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Health signals, as the Octomil SDK sends them (nested metadata) and flat.
    for (i, d) in devices.iter().enumerate() {
        let body = if i % 2 == 0 {
            json!({"sdk_version": "4.17.42", "platform": "python",
                   "metadata": {"battery_level": 40 + i, "network_type": "wifi"}})
        } else {
            json!({"battery_pct": 40 + i, "network_type": "cellular", "charging": true})
        };
        d.client
            .post(&format!("/api/v1/devices/{}/heartbeat", d.id), &body)
            .expect(200);
    }
    let rid = create_round(json!({
        "model_id": model_id, "base_version": 1, "target": 5, "min": 1, "max": 7,
        "deadline_seconds": 600, "aggregation": {"algorithm": "fedavg"}, "device_group": gid,
    }))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pids: Vec<String> = devices.iter().map(|d| d.join(&rid)).collect();

    // Device 5 sends an update whose digest does not match (rejected); device 6 never uploads.
    let bad = Update::new(&spec, &mut rng, false, 0.1);
    let mut meta = bad.meta();
    meta["sha256"] = json!(sha256_hex(b"not this"));
    let started = devices[5]
        .initiate(&rid, &pids[5], meta.clone(), None)
        .expect(201)
        .json();
    devices[5]
        .put_part(started["part_urls"][0].as_str().unwrap(), bad.bytes.clone())
        .expect(200);
    devices[5]
        .complete(&rid, started["upload_id"].as_str().unwrap(), Some(meta))
        .expect(422);

    let updates: Vec<Update> = (0..5)
        .map(|i| Update::new(&spec, &mut rng, i % 2 == 0, 0.1))
        .collect();
    for (i, u) in updates.iter().enumerate() {
        devices[i].submit(&rid, &pids[i], u, &mut rng).expect(200);
    }
    wait_for("the round to publish", Duration::from_secs(120), || {
        (round(&rid)["state"] == "published").then_some(())
    });

    let m: Value = owner
        .get(&org_path(&format!("/rounds/{rid}/metrics")))
        .expect(200)
        .json();
    assert_eq!(m["round_id"], rid.as_str());
    assert_eq!(m["state"], "published");
    let f = &m["funnel"];
    assert_eq!(
        (
            f["offered"].as_i64(),
            f["joined"].as_u64(),
            f["uploaded"].as_u64(),
            f["accepted"].as_u64(),
            f["dropped"].as_u64()
        ),
        (Some(7), Some(7), Some(6), Some(5), Some(1))
    );
    assert_eq!(f["rejected"], json!({"sha256_mismatch": 1}));

    for (name, value) in [
        (
            "loss",
            Box::new(|u: &Update| u.loss) as Box<dyn Fn(&Update) -> f64>,
        ),
        ("accuracy", Box::new(|u: &Update| 1.0 - u.loss / 2.0)),
    ] {
        let points: Vec<(f64, f64)> = updates
            .iter()
            .map(|u| (value(u), u.samples as f64))
            .collect();
        let (mean, sd, [p10, p50, p90]) = reference(&points);
        let s = &m["metrics"][name];
        assert_eq!(s["updates"], 5, "{name}");
        assert!(close(s["mean"].as_f64().unwrap(), mean), "{name} mean {s}");
        assert!(
            close(s["std_dev"].as_f64().unwrap(), sd),
            "{name} std_dev {s}"
        );
        for (k, want) in [("p10", p10), ("p50", p50), ("p90", p90)] {
            assert!(close(s[k].as_f64().unwrap(), want), "{name} {k} {s}");
        }
        let lo = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let hi = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        assert!(close(s["min"].as_f64().unwrap(), lo) && close(s["max"].as_f64().unwrap(), hi));
        // The round's own view carries the same summary.
        let r = round(&rid);
        assert!(close(
            r["progress"]["metric_spread"][name]["mean"]
                .as_f64()
                .unwrap(),
            mean
        ));
        assert!(close(
            r["progress"]["metrics"][name].as_f64().unwrap(),
            mean
        ));
    }

    // The series: one point per accepted update, in acceptance order; the running mean ends at
    // the round's mean and each point carries what that device reported.
    let series = m["series"].as_array().unwrap();
    assert_eq!(series.len(), 5);
    let seqs: Vec<i64> = series.iter().map(|p| p["seq"].as_i64().unwrap()).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    assert_eq!(seqs, sorted);
    let mut reported: Vec<f64> = series
        .iter()
        .map(|p| p["values"]["loss"].as_f64().unwrap())
        .collect();
    let mut sent: Vec<f64> = updates.iter().map(|u| u.loss).collect();
    reported.sort_by(f64::total_cmp);
    sent.sort_by(f64::total_cmp);
    // Equal up to JSON's float parsing (the last bit may differ).
    assert_eq!(reported.len(), sent.len());
    for (r, s) in reported.iter().zip(&sent) {
        assert!(close(*r, *s), "{r} vs {s}");
    }
    let last = series.last().unwrap()["running_mean"]["loss"]
        .as_f64()
        .unwrap();
    assert!(close(last, m["metrics"]["loss"]["mean"].as_f64().unwrap()));

    // Health: every participant reported, SDK-style nested metadata included.
    let h = &m["device_health"];
    assert_eq!(
        (h["participants"].as_u64(), h["reporting"].as_i64()),
        (Some(7), Some(7))
    );
    let battery = h["battery_pct_avg"].as_f64().unwrap();
    assert!(close(battery, (40..47).sum::<i32>() as f64 / 7.0), "{h}");
    assert_eq!(h["network_types"], json!({"wifi": 4, "cellular": 3}));
    assert_eq!(h["charging"], 3);

    // A device token is not an org credential.
    let refused = devices[0]
        .client
        .get(&org_path(&format!("/rounds/{rid}/metrics")));
    assert!(matches!(refused.status, 403 | 404), "{}", refused.status);
}
