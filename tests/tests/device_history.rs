//! A device's history through the JSON API: its heartbeats counted in the current hour of its
//! timeline, and the ended rounds it took part in, each with how it went for the device and
//! the reason of its last refused update. Another org's device is 404 on both routes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::federation::*;
use e2e::identity::{create_org, new_user};
use e2e::{org_path, wait_for, Client};
use serde_json::{json, Value};
use std::time::Duration;

fn heartbeat(d: &Device, body: Value) {
    d.client
        .post(&format!("/api/v1/devices/{}/heartbeat", d.id), &body)
        .expect(200);
}

#[test]
fn heartbeats_and_ended_rounds_with_their_refusals_are_in_the_devices_json() {
    let owner = Client::owner_key();
    let d = Device::enroll_with_heartbeats("history");
    let path = |sub: &str| org_path(&format!("/devices/{}/{sub}", d.id));

    // Before anything: an empty timeline and no rounds.
    let t = owner.get(&path("heartbeats")).expect(200).json();
    assert_eq!(t["device_id"], d.id.as_str());
    assert_eq!(t["bucket_seconds"], 3600);
    assert_eq!(t["total"], 0);
    assert_eq!(t["hours"], json!([]));
    let p = owner.get(&path("participations")).expect(200).json();
    assert_eq!(p["participations"], json!([]));
    assert_eq!(p["last_rejection"], Value::Null);

    // Three heartbeats (unless the hour turns between them, all in one hour): counted, and the
    // hour keeps the last one's signals.
    for battery in [90, 80, 70] {
        heartbeat(
            &d,
            json!({"battery_pct": battery, "network_type": "wifi", "platform": "android"}),
        );
    }
    let t = owner.get(&path("heartbeats")).expect(200).json();
    assert_eq!(t["total"], 3, "{t}");
    let hours = t["hours"].as_array().unwrap();
    assert!((1..=2).contains(&hours.len()), "{t}");
    let last = hours.last().unwrap();
    assert_eq!(last["last"]["battery_pct"], 70.0);
    assert_eq!(last["last"]["network_type"], "wifi");
    assert!(
        last["hour"].as_str().unwrap().ends_with(":00:00.000+00:00"),
        "{t}"
    );

    // A round: the device's first update is refused (not finite), then one is accepted; a
    // second device joins and sends nothing. The round is cancelled, which records its end.
    let spec = tensors(&[("w", vec![4])]);
    let mut rng = Rng::new(2026);
    let (model_id, _) = model_with_base(&spec, &mut rng);
    let rid = create_round(json!({
        "model_id": model_id, "base_version": 1, "target": 3, "min": 1, "max": 3,
        "deadline_seconds": 600, "aggregation": {"algorithm": "fedavg"},
    }))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pid = d.join(&rid);
    let mut bad = Update::new(&spec, &mut rng, false, 0.1);
    bad.delta[1] = f64::NAN;
    bad.bytes = safetensors_f32(&spec, &bad.delta, &[0]);
    let refused = d
        .submit(&rid, &pid, &bad, &mut rng)
        .expect_error(422, "validation_failed");
    let refusal = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    let good = Update::new(&spec, &mut rng, false, 0.1);
    d.submit(&rid, &pid, &good, &mut rng).expect(200);
    let silent = Device::enroll("history-silent");
    silent.join(&rid);
    let cancelled = owner
        .post(&org_path(&format!("/rounds/{rid}/cancel")), &json!({}))
        .json();
    assert_eq!(cancelled["round"]["state"], "cancelled", "{cancelled}");
    // 200 means D1 has the end; a 202 (the coordinator still retrying D1) is followed by it.
    let p = wait_for(
        "the round's end, with its participations, in D1",
        Duration::from_secs(60),
        || {
            let p = owner.get(&path("participations")).expect(200).json();
            (!p["participations"].as_array().unwrap().is_empty()).then_some(p)
        },
    );
    let rows = p["participations"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{p}");
    let row = &rows[0];
    assert_eq!(row["round_id"], rid.as_str());
    assert_eq!(row["model_id"], model_id.as_str());
    assert_eq!(row["round_state"], "cancelled");
    assert_eq!(row["participation_id"], pid.as_str());
    assert_eq!(row["outcome"], "accepted");
    assert!(row["accepted_at"].is_string());
    assert_eq!(row["rejected_updates"], 1);
    assert_eq!(row["last_rejection"]["reason"], "non_finite");
    assert_eq!(row["last_rejection"]["round_id"], rid.as_str());
    // The message the device was answered with is the one kept.
    assert!(
        refusal.contains(row["last_rejection"]["message"].as_str().unwrap()),
        "{refusal} / {row}"
    );
    assert_eq!(p["last_rejection"], row["last_rejection"]);
    assert_eq!(p["next_before"], Value::Null);
    // The silent device took part too, and dropped out.
    let theirs = owner
        .get(&org_path(&format!("/devices/{}/participations", silent.id)))
        .expect(200)
        .json();
    assert_eq!(
        theirs["participations"][0]["outcome"], "dropped",
        "{theirs}"
    );
    assert_eq!(theirs["last_rejection"], Value::Null);

    // Paging: older than this round there is nothing; a malformed cursor is a 400.
    let older = owner
        .get(&format!("{}?before={rid}&limit=5", path("participations")))
        .expect(200)
        .json();
    assert_eq!(older["participations"], json!([]));
    owner
        .get(&format!("{}?before=yesterday", path("participations")))
        .expect_error(400, "invalid_query");
    owner
        .get(&format!("{}?limit=many", path("participations")))
        .expect_error(400, "invalid_query");

    // Another org's owner, under their own org's path, does not see this device.
    let stranger = new_user("history-stranger");
    let their_org = create_org(&stranger, "Elsewhere")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for sub in ["heartbeats", "participations"] {
        stranger
            .client()
            .get(&format!("/v1/orgs/{their_org}/devices/{}/{sub}", d.id))
            .expect_error(404, "not_found");
    }
}
