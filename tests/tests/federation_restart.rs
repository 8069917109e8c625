//! A round survives a restart of the whole local stack mid-round: accepted updates are neither
//! lost nor counted twice, an upload in flight continues, and the published model is the same
//! weighted average as if nothing had happened.
//!
//! Run by `scripts/test` in its own phase, single-threaded, with `EP_STACK_RESTART`: a command
//! that stops and restarts the same stack (same port, same persisted state).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::federation::*;
use e2e::{wait_for, Client};
use serde_json::json;

#[test]
#[ignore = "restarts the stack: run by scripts/test's restart phase (EP_STACK_RESTART)"]
fn a_round_survives_a_stack_restart_with_the_same_result() {
    let restart = std::env::var("EP_STACK_RESTART")
        .expect("EP_STACK_RESTART: the command that restarts the stack (set by scripts/test)");
    let spec = tensors(&[
        ("embed", vec![40, 30]),
        ("head.weight", vec![30, 40]),
        ("head.bias", vec![7]),
    ]);
    let mut rng = Rng::new(2024);
    let (model_id, base) = model_with_base(&spec, &mut rng);
    let n = 13;
    let r = create_round(json!({
        "model_id": model_id, "base_version": 1, "target": n, "min": n, "max": n + 2,
        "deadline_seconds": 1800, "aggregation": {"algorithm": "fedavg"},
    }));
    let rid = r["id"].as_str().unwrap().to_owned();
    let devices: Vec<Device> = (0..n).map(|_| Device::enroll("restart")).collect();
    let pids: Vec<String> = devices.iter().map(|d| d.join(&rid)).collect();
    let updates: Vec<Update> = (0..n)
        .map(|i| Update::new(&spec, &mut rng, i % 2 == 1, 0.05))
        .collect();

    // Ten accepted before the restart: past one aggregator checkpoint (every 8 folds), so the
    // restart exercises both reloading a checkpoint and replaying what followed it.
    let mut first_answers = Vec::new();
    let mut upload_ids = Vec::new();
    for i in 0..10 {
        let u = &updates[i];
        let init = devices[i]
            .initiate(&rid, &pids[i], u.meta(), Some(2))
            .expect(201)
            .json();
        let upload = init["upload_id"].as_str().unwrap().to_owned();
        for (url, (a, b)) in
            init["part_urls"]
                .as_array()
                .unwrap()
                .iter()
                .zip(odd_splits(u.bytes.len(), 2, &mut rng))
        {
            devices[i]
                .put_part(url.as_str().unwrap(), u.bytes[a..b].to_vec())
                .expect(200);
        }
        first_answers.push(
            devices[i]
                .complete(&rid, &upload, Some(u.meta()))
                .expect(200)
                .json(),
        );
        upload_ids.push(upload);
    }
    // One upload in flight across the restart: its first part staged, the second not yet sent.
    let inflight = &updates[10];
    let init = devices[10]
        .initiate(&rid, &pids[10], inflight.meta(), Some(2))
        .expect(201)
        .json();
    let inflight_id = init["upload_id"].as_str().unwrap().to_owned();
    let half = inflight.bytes.len() / 2 + 3;
    devices[10]
        .put_part(
            init["part_urls"][0].as_str().unwrap(),
            inflight.bytes[..half].to_vec(),
        )
        .expect(200);
    let before = round(&rid);
    assert_eq!(before["progress"]["accepted"], 10);

    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&restart)
        .status()
        .unwrap();
    assert!(status.success(), "restarting the stack failed: {status}");

    // State is where it was; the duplicate completes are answered the same and not re-counted.
    let after = round(&rid);
    assert_eq!(after["state"], "collecting");
    assert_eq!(after["progress"]["accepted"], 10);
    for i in [0, 4, 9] {
        let again = devices[i]
            .complete(&rid, &upload_ids[i], None)
            .expect(200)
            .json();
        assert_eq!(again["sequence"], first_answers[i]["sequence"]);
    }
    assert_eq!(round(&rid)["progress"]["accepted"], 10);
    // Device tokens and signed part URLs issued before the restart still work.
    devices[10]
        .put_part(
            init["part_urls"][1].as_str().unwrap(),
            inflight.bytes[half..].to_vec(),
        )
        .expect(200);
    devices[10]
        .complete(&rid, &inflight_id, Some(inflight.meta()))
        .expect(200);
    for i in 11..n as usize {
        devices[i]
            .submit(&rid, &pids[i], &updates[i], &mut rng)
            .expect(200);
    }
    let r = wait_for(
        "the restarted round to publish",
        Duration::from_secs(180),
        || {
            let r = round(&rid);
            (r["state"] == "published").then_some(r)
        },
    );
    assert_eq!(r["progress"]["accepted"], n);
    let vid = r["published_version_id"].as_str().unwrap();
    let bytes = download(&model_id, vid);
    let published = read_safetensors_f32(&bytes, &spec);
    let refs: Vec<&Update> = updates.iter().collect();
    let err = rel_error(&published, &reference_fedavg(&base, &refs, None));
    assert!(err <= 1e-6, "relative error {err}");
    // And the round is still readable through the path.
    Client::owner_key()
        .get(&format!("/v1/rounds/{rid}"))
        .expect(200);
}
