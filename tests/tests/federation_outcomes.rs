//! How a round's ledger bounds what devices send and how it ends: parts limited by the declared
//! size (before a byte is stored), self-reported sample counts capped, and an average that
//! would not fit the base version's dtype failing the round instead of publishing infinities.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::federation::*;
use e2e::{org_path, wait_for, Client};
use serde_json::{json, Value};

fn round_of(model_id: &str, target: u32, agg: Value) -> String {
    let r = create_round(json!({
        "model_id": model_id, "base_version": 1, "target": target, "min": 1, "max": target,
        "deadline_seconds": 600, "aggregation": agg,
    }));
    r["id"].as_str().unwrap().to_owned()
}

fn wait_ended(round_id: &str) -> Value {
    wait_for(
        &format!("round {round_id} to end"),
        Duration::from_secs(120),
        || {
            let r = round(round_id);
            let s = r["state"].as_str().unwrap_or_default().to_owned();
            matches!(s.as_str(), "published" | "failed" | "insufficient_updates").then_some(r)
        },
    )
}

/// Defect 4: an upload declared as 4,096 bytes in 4,096 parts got 16 MiB parts. Each part may
/// carry only what the declared size leaves for it, checked against Content-Length before the
/// body is stored, and the running total too.
#[test]
fn parts_are_bounded_by_the_declared_size() {
    let spec = tensors(&[("w", vec![64])]);
    let mut rng = Rng::new(41);
    let (model_id, _) = model_with_base(&spec, &mut rng);
    let rid = round_of(&model_id, 2, json!({"algorithm": "fedavg"}));
    let d = Device::enroll("quota");
    let pid = d.join(&rid);
    let meta =
        json!({"sample_count": 1, "format": "safetensors", "sha256": "0".repeat(64), "size": 4096});
    let urls = part_urls(&d.initiate(&rid, &pid, meta, Some(4096)).expect(201).json());
    assert_eq!(urls.len(), 4096);
    let url = |n: usize| urls[n].clone();
    let refused = d
        .put_part(&url(0), vec![7; 64 * 1024])
        .expect_error(413, "payload_too_large");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 1 bytes"),
        "{}",
        refused.json()
    );
    d.put_part(&url(0), vec![7]).expect(200);
    // Re-sending a part replaces it within the same allowance.
    d.put_part(&url(0), vec![8]).expect(200);

    // 200 declared bytes in two parts: 199 in the first leaves exactly one for the second.
    let u = Update::new(&spec, &mut rng, false, 0.1);
    let mut meta = u.meta();
    meta["size"] = json!(200);
    let urls = part_urls(&d.initiate(&rid, &pid, meta, Some(2)).expect(201).json());
    d.put_part(&urls[0], vec![1; 199]).expect(200);
    d.put_part(&urls[1], vec![1; 2])
        .expect_error(413, "payload_too_large");
    d.put_part(&urls[1], vec![1]).expect(200);
}

/// Defect 9, second half: a device claiming ten million samples counts as the round's cap.
#[test]
fn a_self_reported_sample_count_counts_at_most_the_cap() {
    let spec = tensors(&[("w", vec![3, 5]), ("b", vec![5])]);
    let mut rng = Rng::new(43);
    let (model_id, base) = model_with_base(&spec, &mut rng);
    let rid = round_of(
        &model_id,
        2,
        json!({"algorithm": "fedavg", "max_sample_count": 50}),
    );
    let mut big = Update::new(&spec, &mut rng, false, 0.5);
    big.samples = 10_000_000;
    let mut small = Update::new(&spec, &mut rng, true, 0.5);
    small.samples = 20;
    for u in [&big, &small] {
        let d = Device::enroll("cap");
        let pid = d.join(&rid);
        d.submit(&rid, &pid, u, &mut rng).expect(200);
    }
    let r = wait_ended(&rid);
    assert_eq!(r["state"], "published", "{r}");
    assert_eq!(r["progress"]["capped_weights"], 1);
    let vid = r["published_version_id"].as_str().unwrap();
    let published = read_safetensors_f32(&download(&model_id, vid), &spec);
    let counted = Update {
        delta: big.delta.clone(),
        samples: 50,
        loss: big.loss,
        format: big.format,
        bytes: Vec::new(),
    };
    let capped = reference_fedavg(&base, &[&counted, &small], None);
    let uncapped = reference_fedavg(&base, &[&big, &small], None);
    assert!(rel_error(&published, &capped) <= 1e-6);
    assert!(rel_error(&published, &uncapped) > 1e-3);
    Client::owner_key()
        .post(
            &org_path("/rounds"),
            &json!({"model_id": model_id, "base_version": 1, "target": 1, "min": 1, "max": 1,
                    "deadline_seconds": 60,
                    "aggregation": {"algorithm": "fedavg", "max_sample_count": 0}}),
        )
        .expect_error(422, "validation_failed");
}

/// A safetensors file of float16 values.
fn f16_file(values: &[f64]) -> Vec<u8> {
    let header = json!({
        "h": {"dtype": "F16", "shape": [values.len()], "data_offsets": [0, 2 * values.len()]},
    });
    let mut h = header.to_string().into_bytes();
    while !(8 + h.len()).is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    for v in values {
        out.extend_from_slice(&half::f16::from_f64(*v).to_le_bytes());
    }
    out
}

/// Defect 9: a float16 base of 20.0 plus a finite delta of 65504 published `+inf`. The round
/// fails with its reason instead, publishes nothing, and says so in the audit log.
#[test]
fn an_average_that_overflows_float16_fails_the_round() {
    let owner = Client::owner_key();
    let m = owner
        .post(&org_path("/models"), &json!({"name": unique("f16")}))
        .expect(201)
        .json();
    let model_id = m["model"]["id"].as_str().unwrap().to_owned();
    upload_version(&owner, &model_id, f16_file(&[20.0, 1.0])).expect(201);
    let rid = round_of(&model_id, 1, json!({"algorithm": "fedavg"}));
    let d = Device::enroll("f16");
    let pid = d.join(&rid);
    let bytes = f16_file(&[65504.0, 0.5]);
    let update = Update {
        delta: vec![65504.0, 0.5],
        samples: 3,
        loss: 0.5,
        format: "safetensors",
        bytes,
    };
    let mut rng = Rng::new(47);
    d.submit(&rid, &pid, &update, &mut rng).expect(200);
    let r = wait_ended(&rid);
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failure"]["reason"], "non_finite_result");
    assert_eq!(r["published_version_id"], Value::Null);
    let versions = owner
        .get(&org_path(&format!("/models/{model_id}/versions")))
        .expect(200)
        .json();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);
    let failed = wait_for(
        "the round.failed audit event",
        Duration::from_secs(30),
        || {
            let ev = owner
                .get(&org_path(&format!(
                    "/audit-events?action=round.failed&resource={rid}"
                )))
                .expect(200)
                .json();
            ev["events"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["resource"]["id"] == rid.as_str())
                .cloned()
        },
    );
    assert_eq!(failed["metadata"]["failure"], "non_finite_result");
    // Listings agree with the live view.
    assert!(listed_in_state(&rid, "failed"));
}
