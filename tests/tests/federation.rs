//! Federated learning end to end: device auth, rounds, the device protocol, streaming FedAvg
//! against an independent f64 reference, every rejection, revocation mid-upload, the deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::federation::*;
use e2e::identity::{create_org, d1, new_user};
use e2e::{org_path, stack, wait_for, Client};
use serde_json::{json, Value};

fn small_model() -> Spec {
    // 2,509 parameters: with the test deployment's 1,000-element shards, three aggregators.
    tensors(&[
        ("conv.weight", vec![8, 3, 3, 3]),
        ("fc.weight", vec![10, 200]),
        ("fc.bias", vec![93]),
    ])
}

fn round_body(model_id: &str, target: u32, min: u32, max: u32, deadline: u64, agg: Value) -> Value {
    json!({
        "model_id": model_id, "base_version": 1, "target": target, "min": min, "max": max,
        "deadline_seconds": deadline, "aggregation": agg,
        "plan": {"hyperparams": {"lr": 0.01, "epochs": 1}, "max_steps": 50},
    })
}

fn wait_state(round_id: &str, want: &str, secs: u64) -> Value {
    wait_for(
        &format!("round {round_id} to be {want}"),
        Duration::from_secs(secs),
        || {
            let r = round(round_id);
            (r["state"] == want).then_some(r)
        },
    )
}

fn published_values(r: &Value, model_id: &str, spec: &Spec) -> (Vec<f64>, Value) {
    let vid = r["published_version_id"]
        .as_str()
        .expect("published version")
        .to_owned();
    let v = Client::owner_key()
        .get(&org_path(&format!("/models/{model_id}/versions/{vid}")))
        .expect(200)
        .json()["version"]
        .clone();
    let bytes = download(model_id, &vid);
    assert_eq!(
        v["sha256"],
        sha256_hex(&bytes),
        "checksum of the published bytes"
    );
    assert_eq!(v["size_bytes"], bytes.len());
    (read_safetensors_f32(&bytes, spec), v)
}

#[test]
fn device_auth_bootstrap_refresh_rotation_and_revocation() {
    let identifier = unique("auth-dev");
    let bt = bootstrap_token(
        &identifier,
        json!({"scopes": ["devices:write", "heartbeat:write"], "ttl_seconds": 300}),
    );
    assert!(bt["token"].as_str().unwrap().starts_with("epbt_"));
    let exp = bt["expires_at"].as_str().unwrap();
    assert!(exp.ends_with("+00:00"), "{exp}");

    // The token is bound to its org and identifier; a mismatch is 401 and does not use it up.
    let anon = Client::anonymous().with_bearer(bt["token"].as_str().unwrap());
    anon.post(
        "/api/v1/device-auth/bootstrap",
        &json!({"org_id": stack().org_id, "device_identifier": "someone-else"}),
    )
    .expect_error(401, "invalid_token");
    // Scopes only narrow.
    anon.post(
        "/api/v1/device-auth/bootstrap",
        &json!({"org_id": stack().org_id, "device_identifier": identifier, "scopes": ["models:read"]}),
    )
    .expect_error(403, "insufficient_scope");
    anon.post(
        "/api/v1/device-auth/bootstrap",
        &json!({"org_id": stack().org_id, "device_identifier": identifier, "access_ttl_seconds": 99999}),
    )
    .expect_error(422, "validation_failed");

    let r = anon
        .post(
            "/api/v1/device-auth/bootstrap",
            &json!({"org_id": stack().org_id, "device_identifier": identifier,
                    "scopes": ["heartbeat:write"], "access_ttl_seconds": 600}),
        )
        .expect(201)
        .json();
    for k in [
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "expires_at",
        "org_id",
        "device_identifier",
        "scopes",
    ] {
        assert!(r.get(k).is_some(), "{k} missing: {r}");
    }
    assert_eq!(r["token_type"], "Bearer");
    assert_eq!(r["expires_in"], 600);
    assert_eq!(r["org_id"], stack().org_id.as_str());
    assert_eq!(r["scopes"], json!(["heartbeat:write"]));
    let exp = r["expires_at"].as_str().unwrap();
    assert!(exp.ends_with("+00:00") && exp.contains('T'), "{exp}");
    assert!(r["refresh_token"].as_str().unwrap().starts_with("epdr_"));
    // Single use.
    anon.post(
        "/api/v1/device-auth/bootstrap",
        &json!({"org_id": stack().org_id, "device_identifier": identifier}),
    )
    .expect_error(401, "invalid_token");

    let dev = Device::from_tokens(&r);
    // A heartbeat-only token may heartbeat, not train.
    dev.client
        .post(
            &format!("/api/v1/devices/{}/heartbeat", dev.id),
            &json!({"battery_pct": 80, "charging": true, "network_type": "wifi"}),
        )
        .expect(200);
    dev.client
        .get("/api/v1/federation/offers")
        .expect_error(403, "insufficient_scope");
    // Device tokens never open the control plane.
    dev.client
        .get(&org_path("/devices"))
        .expect_error(403, "insufficient_scope");
    Client::owner_key()
        .get("/api/v1/federation/offers")
        .expect_error(403, "forbidden");

    // Refresh rotates; the new pair works, and the old refresh token is dead.
    let r2 = Client::anonymous()
        .post(
            "/api/v1/device-auth/refresh",
            &json!({"refresh_token": dev.refresh}),
        )
        .expect(200)
        .json();
    assert_ne!(r2["refresh_token"], r["refresh_token"]);
    assert_eq!(r2["device_id"], r["device_id"]);
    let dev2 = Device::from_tokens(&r2);
    dev2.client
        .post(
            &format!("/api/v1/devices/{}/heartbeat", dev2.id),
            &json!({"battery_pct": 79}),
        )
        .expect(200);
    // Reusing the rotated token revokes the whole family: both pairs die at once.
    Client::anonymous()
        .post(
            "/api/v1/device-auth/refresh",
            &json!({"refresh_token": dev.refresh}),
        )
        .expect_error(401, "invalid_token");
    Client::anonymous()
        .post(
            "/api/v1/device-auth/refresh",
            &json!({"refresh_token": dev2.refresh}),
        )
        .expect_error(401, "invalid_token");
    dev2.client
        .post(
            &format!("/api/v1/devices/{}/heartbeat", dev2.id),
            &json!({}),
        )
        .expect_error(401, "invalid_token");

    // Logout (revoke) ends a family immediately; unknown tokens also answer 204.
    let dev3 = Device::enroll("auth-logout");
    let c = Client::anonymous();
    c.post(
        "/api/v1/device-auth/revoke",
        &json!({"refresh_token": dev3.refresh, "reason": "logout"}),
    )
    .expect(204);
    dev3.client
        .get("/api/v1/federation/offers")
        .expect_error(401, "invalid_token");
    c.post(
        "/api/v1/device-auth/revoke",
        &json!({"refresh_token": "epdr_nope", "reason": "x"}),
    )
    .expect(204);

    // Bootstrap tokens: ttl at most 600, identifiers validated.
    Client::owner_key()
        .post(
            &org_path("/devices/bootstrap-tokens"),
            &json!({"device_identifier": "d", "ttl_seconds": 601}),
        )
        .expect_error(422, "validation_failed");
    Client::owner_key()
        .post(
            &org_path("/devices/bootstrap-tokens"),
            &json!({"device_identifier": "has space"}),
        )
        .expect_error(422, "validation_failed");
    Client::owner_key()
        .post(
            &org_path("/devices/bootstrap-tokens"),
            &json!({"device_identifier": "d", "scopes": ["rounds:write"]}),
        )
        .expect_error(422, "validation_failed");
    // Secrets never reach the logs.
    let log = e2e::stack_log();
    assert!(!log.contains(bt["token"].as_str().unwrap()));
    assert!(!log.contains(r2["refresh_token"].as_str().unwrap()));
}

#[test]
fn full_round_of_22_devices_matches_reference_fedavg() {
    let spec = small_model();
    let mut rng = Rng::new(42);
    let (model_id, base) = model_with_base(&spec, &mut rng);
    let n = 22;
    let r = create_round(round_body(
        &model_id,
        n,
        15,
        28,
        600,
        json!({"algorithm": "fedavg"}),
    ));
    let round_id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(r["state"], "open");
    assert_eq!(r["progress"]["shards"], 3);
    let devices: Vec<Device> = (0..n).map(|_| Device::enroll("fl-dev")).collect();
    for d in &devices {
        d.client
            .post(
                &format!("/api/v1/devices/{}/heartbeat", d.id),
                &json!({"battery_pct": 50 + rng.below(50), "charging": rng.below(2) == 1, "network_type": "wifi"}),
            )
            .expect(200);
    }
    // The round is offered, with its plan.
    let offers = devices[0]
        .client
        .get(&format!(
            "/api/v1/federation/offers?device_id={}",
            devices[0].id
        ))
        .expect(200)
        .json();
    let offer = offers
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["round_id"] == round_id.as_str())
        .expect("offer");
    assert_eq!(offer["model_id"], model_id.as_str());
    assert_eq!(offer["base_version"], 1);
    let plan = devices[0]
        .client
        .get(&format!(
            "/api/v1/federation/plans/{}",
            offer["plan_id"].as_str().unwrap()
        ))
        .expect(200)
        .json();
    assert_eq!(plan["round_id"], round_id.as_str());
    assert_eq!(plan["algorithm"], "fedavg");
    assert_eq!(plan["hyperparams"]["lr"], 0.01);
    assert_eq!(plan["max_steps"], 50);

    let updates: Vec<Update> = (0..n)
        .map(|i| Update::new(&spec, &mut rng, i % 3 == 0, 0.1))
        .collect();
    let pids: Vec<String> = devices.iter().map(|d| d.join(&round_id)).collect();
    assert_eq!(round(&round_id)["state"], "collecting");
    for (i, d) in devices.iter().enumerate() {
        let resp = d
            .submit(&round_id, &pids[i], &updates[i], &mut rng)
            .expect(200)
            .json();
        assert_eq!(resp["status"], "accepted");
    }
    let r = wait_state(&round_id, "published", 120);
    let p = &r["progress"];
    assert_eq!(p["accepted"], n);
    assert_eq!(p["joined"], n);
    assert_eq!(p["rejected_total"], 0);
    assert_eq!(p["device_health"]["reporting"], n);
    assert!(p["participation_rate"].as_f64().unwrap() > 0.0);
    let total: i64 = updates.iter().map(|u| u.samples).sum();
    assert_eq!(p["total_samples"], total);
    let want_loss = updates
        .iter()
        .map(|u| u.samples as f64 * u.loss)
        .sum::<f64>()
        / total as f64;
    assert!((p["metrics"]["loss"].as_f64().unwrap() - want_loss).abs() < 1e-9);

    let (published, v) = published_values(&r, &model_id, &spec);
    let refs: Vec<&Update> = updates.iter().collect();
    let want = reference_fedavg(&base, &refs, None);
    let err = rel_error(&published, &want);
    assert!(err <= 1e-6, "relative error {err}");
    assert_eq!(v["version"], 2);
    assert_eq!(v["parent_version"], 1);
    assert_eq!(v["round_id"], round_id.as_str());
    assert_eq!(v["status"], "ready");
    assert_eq!(v["aggregation"]["participants"], n);
    assert_eq!(v["aggregation"]["algorithm"], "fedavg");
    // The path answers the same round.
    let by_id = Client::owner_key()
        .get(&format!("/v1/rounds/{round_id}"))
        .expect(200)
        .json();
    assert_eq!(by_id["round"]["state"], "published");
    // Approval is recorded once.
    let path = org_path(&format!("/models/{model_id}/versions/2/approve"));
    let a = Client::owner_key()
        .post(&path, &json!({}))
        .expect(200)
        .json();
    assert_eq!(a["version"]["status"], "approved");
    Client::owner_key()
        .post(&path, &json!({}))
        .expect_error(409, "conflict");
    // Devices are offered a version only as a round's base (or, later, by a rollout): the new
    // version is not theirs to download, approved or not.
    device_download(&devices[1], &model_id, "2")
        .unwrap_err()
        .expect_error(404, "not_found");
    // A closed round takes no more work.
    let late = Device::enroll("late");
    late.client
        .post(
            &format!("/api/v1/federation/rounds/{round_id}/join"),
            &json!({}),
        )
        .expect_error(409, "conflict");
}

#[test]
fn clipping_and_noise_are_applied_and_recorded() {
    let spec = small_model();
    let mut rng = Rng::new(7);
    let (model_id, base) = model_with_base(&spec, &mut rng);
    // Clipping only: exactly reproducible.
    let clip = 1.0;
    let r = create_round(round_body(
        &model_id,
        4,
        4,
        4,
        600,
        json!({"algorithm": "fedavg", "clip_norm": clip}),
    ));
    let rid = r["id"].as_str().unwrap().to_owned();
    let updates: Vec<Update> = (0..4)
        .map(|i| Update::new(&spec, &mut rng, i % 2 == 0, if i < 2 { 0.5 } else { 0.001 }))
        .collect();
    for u in &updates {
        let d = Device::enroll("clip");
        let pid = d.join(&rid);
        d.submit(&rid, &pid, u, &mut rng).expect(200);
    }
    let r = wait_state(&rid, "published", 120);
    let (published, v) = published_values(&r, &model_id, &spec);
    let refs: Vec<&Update> = updates.iter().collect();
    assert!(rel_error(&published, &reference_fedavg(&base, &refs, Some(clip))) <= 1e-6);
    // Without clipping the result would differ: the test can tell.
    assert!(rel_error(&published, &reference_fedavg(&base, &refs, None)) > 1e-3);
    assert_eq!(v["aggregation"]["clip_norm"], clip);

    // Clipping and noise: sigma = noise_multiplier * clip_norm / participants, recorded.
    let r = create_round(round_body(
        &model_id,
        3,
        3,
        3,
        600,
        json!({"algorithm": "fedavg", "clip_norm": 0.5, "noise_multiplier": 1.2}),
    ));
    let rid = r["id"].as_str().unwrap().to_owned();
    let updates: Vec<Update> = (0..3)
        .map(|_| Update::new(&spec, &mut rng, false, 0.1))
        .collect();
    for u in &updates {
        let d = Device::enroll("noise");
        let pid = d.join(&rid);
        d.submit(&rid, &pid, u, &mut rng).expect(200);
    }
    let r = wait_state(&rid, "published", 120);
    let (published, v) = published_values(&r, &model_id, &spec);
    let sigma = 1.2 * 0.5 / 3.0;
    assert!((v["aggregation"]["noise_sigma"].as_f64().unwrap() - sigma).abs() < 1e-12);
    assert_eq!(v["aggregation"]["noise_multiplier"], 1.2);
    let refs: Vec<&Update> = updates.iter().collect();
    let clean = reference_fedavg(&base, &refs, Some(0.5));
    let resid: Vec<f64> = published.iter().zip(&clean).map(|(a, b)| a - b).collect();
    let mean = resid.iter().sum::<f64>() / resid.len() as f64;
    let sd = (resid.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / resid.len() as f64).sqrt();
    assert!(mean.abs() < 0.02, "noise mean {mean}");
    assert!(
        (sd - sigma).abs() < sigma * 0.15,
        "noise sd {sd} vs sigma {sigma}"
    );
}

fn meta_of(bytes: &[u8], format: &str, samples: i64) -> Value {
    json!({"sample_count": samples, "format": format, "sha256": sha256_hex(bytes), "size": bytes.len(), "metrics": {"loss": 1.0}})
}

/// Uploads `bytes` with `meta` in one part and completes.
fn try_update(d: &Device, rid: &str, pid: &str, bytes: &[u8], meta: Value) -> e2e::Resp {
    let r = d.initiate(rid, pid, meta.clone(), None).expect(201).json();
    let upload = r["upload_id"].as_str().unwrap().to_owned();
    d.put_part(r["part_urls"][0].as_str().unwrap(), bytes.to_vec())
        .expect(200);
    d.complete(rid, &upload, None)
}

#[test]
fn every_bad_update_is_refused_with_its_reason_and_leaves_the_sum_alone() {
    let spec = small_model();
    let mut rng = Rng::new(99);
    let (model_id, base) = model_with_base(&spec, &mut rng);
    let r = create_round(round_body(
        &model_id,
        2,
        2,
        6,
        600,
        json!({"algorithm": "fedavg"}),
    ));
    let rid = r["id"].as_str().unwrap().to_owned();
    let d = Device::enroll("bad");
    let pid = d.join(&rid);
    let good = Update::new(&spec, &mut rng, false, 0.1);
    let n = numel(&spec);
    let st = |s: &Spec, vals: &[f64]| safetensors_f32(s, vals, &(0..s.len()).collect::<Vec<_>>());

    let reject = |bytes: Vec<u8>, meta: Value, status: u16, reason: &str| {
        let resp =
            try_update(&d, &rid, &pid, &bytes, meta).expect_error(status, "validation_failed");
        let msg = resp.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(reason), "{reason}: {msg}");
    };
    // Wrong shape, dtype-equivalent layout change, missing and extra tensors.
    let wrong_shape = tensors(&[
        ("conv.weight", vec![3, 8, 3, 3]),
        ("fc.weight", vec![10, 200]),
        ("fc.bias", vec![93]),
    ]);
    reject(
        st(&wrong_shape, &good.delta),
        meta_of(&st(&wrong_shape, &good.delta), "safetensors", 5),
        422,
        "tensor_mismatch",
    );
    let missing = tensors(&[
        ("conv.weight", vec![8, 3, 3, 3]),
        ("fc.weight", vec![10, 200]),
    ]);
    let b = st(&missing, &good.delta[..n - 93]);
    reject(
        b.clone(),
        meta_of(&b, "safetensors", 5),
        422,
        "tensor_mismatch",
    );
    let extra = tensors(&[
        ("conv.weight", vec![8, 3, 3, 3]),
        ("fc.weight", vec![10, 200]),
        ("fc.bias", vec![93]),
        ("x", vec![1]),
    ]);
    let mut vals = good.delta.clone();
    vals.push(0.0);
    let b = st(&extra, &vals);
    reject(
        b.clone(),
        meta_of(&b, "safetensors", 5),
        422,
        "tensor_mismatch",
    );
    // A dtype mismatch: same names and shapes, but conv.weight stored as F16.
    let mut hdr = serde_json::Map::new();
    hdr.insert(
        "conv.weight".into(),
        json!({"dtype": "F16", "shape": [8, 3, 3, 3], "data_offsets": [0, 432]}),
    );
    hdr.insert(
        "fc.weight".into(),
        json!({"dtype": "F32", "shape": [10, 200], "data_offsets": [432, 8432]}),
    );
    hdr.insert(
        "fc.bias".into(),
        json!({"dtype": "F32", "shape": [93], "data_offsets": [8432, 8804]}),
    );
    let h = Value::Object(hdr).to_string().into_bytes();
    let f16 = [(h.len() as u64).to_le_bytes().to_vec(), h, vec![0u8; 8804]].concat();
    reject(
        f16.clone(),
        meta_of(&f16, "safetensors", 5),
        422,
        "tensor_mismatch",
    );
    // NaN and Inf, in both formats.
    let mut nan = good.delta.clone();
    nan[17] = f64::NAN;
    let b = st(&spec, &nan);
    reject(b.clone(), meta_of(&b, "safetensors", 5), 422, "non_finite");
    let mut inf = good.delta.clone();
    inf[n - 1] = f64::INFINITY;
    let b = json_envelope(&inf);
    reject(
        b.clone(),
        meta_of(&b, "plaintext_json", 5),
        422,
        "non_finite",
    );
    // sha256 and size mismatches (of the upload, and inside the envelope).
    let b = good.bytes.clone();
    let mut m = meta_of(&b, "safetensors", 5);
    m["sha256"] = json!(sha256_hex(b"something else"));
    reject(b.clone(), m, 422, "sha256_mismatch");
    let mut m = meta_of(&b, "safetensors", 5);
    m["size"] = json!(b.len() + 1);
    let r = d.initiate(&rid, &pid, m, None).expect(201).json();
    d.put_part(r["part_urls"][0].as_str().unwrap(), b.clone())
        .expect(200);
    d.complete(&rid, r["upload_id"].as_str().unwrap(), None)
        .expect_error(422, "validation_failed");
    let env = String::from_utf8(json_envelope(&good.delta)).unwrap();
    let lying = env.replacen("\"size\": ", "\"size\": 1", 1).into_bytes();
    reject(
        lying.clone(),
        meta_of(&lying, "plaintext_json", 5),
        422,
        "size_mismatch",
    );
    let at = env.find("\"data\": [").unwrap() + 9;
    let mut tampered = env.clone().into_bytes();
    tampered[at] = if tampered[at] == b'-' { b'1' } else { b'-' };
    reject(
        tampered.clone(),
        meta_of(&tampered, "plaintext_json", 5),
        422,
        "sha256_mismatch",
    );
    // Malformed containers.
    let junk = b"{\"format\": \"plaintext_json\", \"data\": [1, 2".to_vec();
    reject(
        junk.clone(),
        meta_of(&junk, "plaintext_json", 5),
        422,
        "malformed",
    );
    let junk = b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}".to_vec();
    reject(
        junk.clone(),
        meta_of(&junk, "safetensors", 5),
        422,
        "malformed",
    );
    // Absurd or missing weight; too large; bad meta.
    for bad in [0i64, -3, 1_000_000_000] {
        d.initiate(&rid, &pid, meta_of(&good.bytes, "safetensors", bad), None)
            .expect_error(422, "validation_failed");
    }
    let mut m = meta_of(&good.bytes, "safetensors", 5);
    m["size"] = json!(50_000_000);
    d.initiate(&rid, &pid, m, None)
        .expect_error(413, "payload_too_large");
    let mut m = meta_of(&good.bytes, "safetensors", 5);
    m["format"] = json!("pickle");
    d.initiate(&rid, &pid, m, None)
        .expect_error(422, "validation_failed");
    // Not a participant: another device, or an unknown participation.
    let stranger = Device::enroll("stranger");
    stranger
        .initiate(&rid, &pid, meta_of(&good.bytes, "safetensors", 5), None)
        .expect_error(403, "forbidden");
    stranger
        .initiate(&rid, "nobody", meta_of(&good.bytes, "safetensors", 5), None)
        .expect_error(403, "forbidden");
    // A forged or tampered part URL; a part beyond the upload's parts; an incomplete upload.
    let r = d
        .initiate(&rid, &pid, good.meta(), Some(2))
        .expect(201)
        .json();
    let upload = r["upload_id"].as_str().unwrap().to_owned();
    let url0 = r["part_urls"][0].as_str().unwrap().to_owned();
    let forged = url0.replace("/parts/0?", "/parts/1?");
    d.put_part(&forged, vec![1, 2, 3])
        .expect_error(401, "invalid_signature");
    let cut = url0.find("signature=").unwrap();
    d.put_part(
        &format!("{}signature={}", &url0[..cut], "0".repeat(64)),
        vec![1],
    )
    .expect_error(401, "invalid_signature");
    let half = good.bytes.len() / 2 + 1;
    d.put_part(&url0, good.bytes[..half].to_vec()).expect(200);
    d.complete(&rid, &upload, None)
        .expect_error(422, "validation_failed");
    // Retrying a part replaces it (idempotent), and then the good update is accepted.
    d.put_part(&url0, good.bytes[..half].to_vec()).expect(200);
    d.put_part(
        r["part_urls"][1].as_str().unwrap(),
        good.bytes[half..].to_vec(),
    )
    .expect(200);
    d.complete(&rid, &upload, Some(good.meta())).expect(200);
    // Once accepted, the participation takes no second update.
    d.initiate(&rid, &pid, good.meta(), None)
        .expect_error(409, "conflict");

    let other = Update::new(&spec, &mut rng, true, 0.1);
    let d2 = Device::enroll("bad-2");
    let pid2 = d2.join(&rid);
    d2.submit(&rid, &pid2, &other, &mut rng).expect(200);
    let r = wait_state(&rid, "published", 120);
    let rejected = &r["progress"]["rejected"];
    for reason in [
        "tensor_mismatch",
        "non_finite",
        "sha256_mismatch",
        "size_mismatch",
        "malformed",
    ] {
        assert!(
            rejected[reason].as_u64().unwrap_or(0) >= 1,
            "{reason}: {rejected}"
        );
    }
    // Nothing rejected touched the sum.
    let (published, _) = published_values(&r, &model_id, &spec);
    assert!(rel_error(&published, &reference_fedavg(&base, &[&good, &other], None)) <= 1e-6);
    // The round is closed now.
    d.initiate(&rid, &pid, good.meta(), None)
        .expect_error(409, "conflict");
    // Other tenants' and unknown rounds are 404.
    d.client
        .post(
            "/api/v1/federation/rounds/rnd_000000000000000000000000000a/join",
            &json!({}),
        )
        .expect_error(404, "not_found");
}

#[test]
fn duplicate_complete_counts_once() {
    let spec = small_model();
    let mut rng = Rng::new(5);
    let (model_id, base) = model_with_base(&spec, &mut rng);
    let r = create_round(round_body(
        &model_id,
        3,
        1,
        3,
        600,
        json!({"algorithm": "fedavg"}),
    ));
    let rid = r["id"].as_str().unwrap().to_owned();
    let u = Update::new(&spec, &mut rng, false, 0.1);
    let d = Device::enroll("dup");
    let pid = d.join(&rid);
    // Joining again with the same participation is idempotent; another id is a conflict.
    d.client
        .post(
            &format!("/api/v1/federation/rounds/{rid}/join"),
            &json!({"participation_id": pid}),
        )
        .expect(200);
    d.client
        .post(
            &format!("/api/v1/federation/rounds/{rid}/join"),
            &json!({"participation_id": "another"}),
        )
        .expect_error(409, "conflict");
    let r = d.initiate(&rid, &pid, u.meta(), Some(3)).expect(201).json();
    let upload = r["upload_id"].as_str().unwrap().to_owned();
    for (url, (a, b)) in
        r["part_urls"]
            .as_array()
            .unwrap()
            .iter()
            .zip(odd_splits(u.bytes.len(), 3, &mut rng))
    {
        d.put_part(url.as_str().unwrap(), u.bytes[a..b].to_vec())
            .expect(200);
    }
    let first = d.complete(&rid, &upload, Some(u.meta())).expect(200).json();
    let again = d.complete(&rid, &upload, Some(u.meta())).expect(200).json();
    assert_eq!(first, again);
    let third = d.complete(&rid, &upload, None).expect(200).json();
    assert_eq!(first["sequence"], third["sequence"]);
    // A part after completion is refused.
    d.put_part(r["part_urls"][0].as_str().unwrap(), vec![0; 8])
        .expect_error(409, "conflict");
    let p = round(&rid)["progress"].clone();
    assert_eq!(p["accepted"], 1);
    assert_eq!(p["total_samples"], u.samples);
    // Two more devices close the round; the duplicate never counted.
    let mut all = vec![u];
    for _ in 0..2 {
        let u = Update::new(&spec, &mut rng, true, 0.1);
        let d = Device::enroll("dup-more");
        let pid = d.join(&rid);
        d.submit(&rid, &pid, &u, &mut rng).expect(200);
        all.push(u);
    }
    let r = wait_state(&rid, "published", 120);
    assert_eq!(r["progress"]["accepted"], 3);
    let (published, _) = published_values(&r, &model_id, &spec);
    let refs: Vec<&Update> = all.iter().collect();
    assert!(rel_error(&published, &reference_fedavg(&base, &refs, None)) <= 1e-6);
}

#[test]
fn revoking_a_device_mid_upload_rejects_it_at_once() {
    let spec = small_model();
    let mut rng = Rng::new(11);
    let (model_id, _) = model_with_base(&spec, &mut rng);
    let r = create_round(round_body(
        &model_id,
        5,
        1,
        5,
        600,
        json!({"algorithm": "fedavg"}),
    ));
    let rid = r["id"].as_str().unwrap().to_owned();
    let d = Device::enroll("revoked");
    let pid = d.join(&rid);
    let u = Update::new(&spec, &mut rng, false, 0.1);
    let r = d.initiate(&rid, &pid, u.meta(), Some(2)).expect(201).json();
    let upload = r["upload_id"].as_str().unwrap().to_owned();
    let half = u.bytes.len() / 2;
    d.put_part(
        r["part_urls"][0].as_str().unwrap(),
        u.bytes[..half].to_vec(),
    )
    .expect(200);

    let owner = Client::owner_key();
    let rev = owner
        .post(
            &org_path(&format!("/devices/{}/revoke", d.id)),
            &json!({"reason": "lost phone"}),
        )
        .expect(200)
        .json();
    assert!(rev["device"]["revoked_at"].is_string());
    owner
        .post(&org_path(&format!("/devices/{}/revoke", d.id)), &json!({}))
        .expect_error(409, "conflict");
    // The next request of every kind is refused: part, complete, any device call, refresh.
    d.put_part(
        r["part_urls"][1].as_str().unwrap(),
        u.bytes[half..].to_vec(),
    )
    .expect_error(401, "invalid_token");
    d.complete(&rid, &upload, None)
        .expect_error(401, "invalid_token");
    d.client
        .get("/api/v1/federation/offers")
        .expect_error(401, "invalid_token");
    Client::anonymous()
        .post(
            "/api/v1/device-auth/refresh",
            &json!({"refresh_token": d.refresh}),
        )
        .expect_error(401, "invalid_token");
    let p = round(&rid)["progress"].clone();
    assert_eq!(p["rejected"]["device_revoked"], 1, "{p}");
    assert_eq!(p["accepted"], 0);
    // A revoked device cannot bootstrap again under its identifier.
    let bt = bootstrap_token(&d.identifier, json!({}));
    Client::anonymous()
        .with_bearer(bt["token"].as_str().unwrap())
        .post(
            "/api/v1/device-auth/bootstrap",
            &json!({"org_id": stack().org_id, "device_identifier": d.identifier}),
        )
        .expect_error(403, "forbidden");
    let dev = owner
        .get(&org_path(&format!("/devices/{}", d.id)))
        .expect(200)
        .json();
    assert_eq!(dev["device"]["revoked_reason"], "lost phone");
}

#[test]
fn the_deadline_publishes_with_min_or_closes_insufficient() {
    let spec = small_model();
    let mut rng = Rng::new(21);
    let (model_id, base) = model_with_base(&spec, &mut rng);
    // Long enough for the eight device calls below to land before it on a loaded machine (at
    // 6 s a join was refused `round_closed` while parallel builds ran).
    const DEADLINE_SECS: u64 = 20;
    // min 2 reached, target 10 not: published at the deadline.
    let r = create_round(round_body(
        &model_id,
        10,
        2,
        12,
        DEADLINE_SECS,
        json!({"algorithm": "fedavg"}),
    ));
    let enough = r["id"].as_str().unwrap().to_owned();
    // min 2 not reached: insufficient_updates.
    let r = create_round(round_body(
        &model_id,
        10,
        2,
        12,
        DEADLINE_SECS,
        json!({"algorithm": "fedavg"}),
    ));
    let short = r["id"].as_str().unwrap().to_owned();
    let mut ups = Vec::new();
    for _ in 0..2 {
        let u = Update::new(&spec, &mut rng, false, 0.1);
        let d = Device::enroll("deadline");
        let pid = d.join(&enough);
        d.submit(&enough, &pid, &u, &mut rng).expect(200);
        ups.push(u);
    }
    let u = Update::new(&spec, &mut rng, true, 0.1);
    let d = Device::enroll("deadline-short");
    let pid = d.join(&short);
    d.submit(&short, &pid, &u, &mut rng).expect(200);
    // A device that started but never finished is simply dropped at the deadline.
    let slow = Device::enroll("deadline-slow");
    let spid = slow.join(&short);
    let started = slow
        .initiate(&short, &spid, u.meta(), None)
        .expect(201)
        .json();

    let r = wait_state(&enough, "published", 60);
    let (published, _) = published_values(&r, &model_id, &spec);
    assert!(
        rel_error(
            &published,
            &reference_fedavg(&base, &[&ups[0], &ups[1]], None)
        ) <= 1e-6
    );
    let r = wait_state(&short, "insufficient_updates", 60);
    assert_eq!(r["progress"]["accepted"], 1);
    assert!(r["published_version_id"].is_null());
    assert!(r["closed_at"].is_string());
    slow.put_part(started["part_urls"][0].as_str().unwrap(), u.bytes.clone())
        .expect_error(409, "conflict");
    // Cancelling a closed round is a conflict; an open one cancels.
    Client::owner_key()
        .post(&org_path(&format!("/rounds/{short}/cancel")), &json!({}))
        .expect_error(409, "conflict");
    let r = create_round(round_body(
        &model_id,
        3,
        1,
        3,
        600,
        json!({"algorithm": "fedavg"}),
    ));
    let c = r["id"].as_str().unwrap().to_owned();
    let r = Client::owner_key()
        .post(&org_path(&format!("/rounds/{c}/cancel")), &json!({}))
        .expect(200)
        .json();
    assert_eq!(r["round"]["state"], "cancelled");
    assert!(listed_in_state(&c, "cancelled"));
}

#[test]
fn round_creation_is_validated_and_scoped() {
    let spec = small_model();
    let mut rng = Rng::new(3);
    let (model_id, _) = model_with_base(&spec, &mut rng);
    let owner = Client::owner_key();
    for bad in [
        round_body(&model_id, 5, 6, 8, 60, json!({"algorithm": "fedavg"})),
        round_body(&model_id, 5, 1, 4, 60, json!({"algorithm": "fedavg"})),
        round_body(&model_id, 5, 1, 8, 0, json!({"algorithm": "fedavg"})),
        round_body(&model_id, 5, 1, 8, 60, json!({"algorithm": "fedprox"})),
        round_body(
            &model_id,
            5,
            1,
            8,
            60,
            json!({"algorithm": "fedavg", "noise_multiplier": 1.0}),
        ),
        round_body(
            &model_id,
            5,
            1,
            8,
            60,
            json!({"algorithm": "fedavg", "clip_norm": -1}),
        ),
    ] {
        owner
            .post(&org_path("/rounds"), &bad)
            .expect_error(422, "validation_failed");
    }
    let mut b = round_body(&model_id, 5, 1, 8, 60, json!({"algorithm": "fedavg"}));
    b["base_version"] = json!(9);
    owner
        .post(&org_path("/rounds"), &b)
        .expect_error(404, "not_found");
    let mut b = round_body(&model_id, 5, 1, 8, 60, json!({"algorithm": "fedavg"}));
    b["device_group"] = json!("dgr_000000000000000000000000000a");
    owner
        .post(&org_path("/rounds"), &b)
        .expect_error(404, "not_found");
    // Another tenant's (or no) org is 404; a bad base upload is 422.
    Client::owner_key()
        .get("/v1/orgs/org_0000000000000000000000000000/rounds")
        .expect_error(404, "not_found");
    upload_version(&owner, &model_id, b"not safetensors".to_vec())
        .expect_error(422, "validation_failed");
    let c = &owner;
    c.send(
        c.request(
            reqwest::Method::POST,
            &org_path(&format!("/models/{model_id}/versions")),
        )
        .header("content-type", "text/plain")
        .body("x"),
    )
    .expect_error(415, "unsupported_media_type");
    Client::anonymous()
        .get("/v1/rounds/rnd_000000000000000000000000000a")
        .expect_error(401, "unauthenticated");
    owner
        .get("/v1/rounds/rnd_000000000000000000000000000a")
        .expect_error(404, "not_found");
}

#[test]
fn device_groups_target_rounds() {
    let spec = small_model();
    let mut rng = Rng::new(8);
    let (model_id, _) = model_with_base(&spec, &mut rng);
    let owner = Client::owner_key();
    let tagged = Device::enroll("grp-tagged");
    let plain = Device::enroll("grp-plain");
    let explicit = Device::enroll("grp-explicit");
    owner
        .patch(
            &org_path(&format!("/devices/{}", tagged.id)),
            &json!({"tags": ["beta", "android"]}),
        )
        .expect(200);
    let tag = unique("beta").replace('-', "_");
    owner
        .patch(
            &org_path(&format!("/devices/{}", tagged.id)),
            &json!({"tags": ["android", tag]}),
        )
        .expect(200);
    let g = owner
        .post(
            &org_path("/device-groups"),
            &json!({"name": unique("tag group"), "tags": [tag]}),
        )
        .expect(201)
        .json();
    assert_eq!(g["device_group"]["members"], 1);
    let gid = g["device_group"]["id"].as_str().unwrap().to_owned();
    let e = owner
        .post(
            &org_path("/device-groups"),
            &json!({"name": unique("explicit group"), "device_ids": [explicit.id]}),
        )
        .expect(201)
        .json();
    let eid = e["device_group"]["id"].as_str().unwrap().to_owned();
    owner
        .post(
            &org_path("/device-groups"),
            &json!({"name": "x", "tags": ["a"], "device_ids": [explicit.id]}),
        )
        .expect_error(422, "validation_failed");
    owner
        .post(
            &org_path("/device-groups"),
            &json!({"name": "y", "device_ids": ["dev_000000000000000000000000000a"]}),
        )
        .expect_error(404, "not_found");
    owner
        .post(
            &org_path(&format!("/device-groups/{gid}/members")),
            &json!({"device_ids": [plain.id]}),
        )
        .expect_error(409, "conflict");
    let mut b = round_body(&model_id, 1, 1, 2, 600, json!({"algorithm": "fedavg"}));
    b["device_group"] = json!(gid);
    let rt = create_round(b)["id"].as_str().unwrap().to_owned();
    let mut b = round_body(&model_id, 1, 1, 2, 600, json!({"algorithm": "fedavg"}));
    b["device_group"] = json!(eid);
    let re = create_round(b)["id"].as_str().unwrap().to_owned();
    let offered = |d: &Device| -> Vec<String> {
        d.client
            .get("/api/v1/federation/offers")
            .expect(200)
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["round_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(offered(&tagged).contains(&rt) && !offered(&tagged).contains(&re));
    assert!(offered(&explicit).contains(&re) && !offered(&explicit).contains(&rt));
    assert!(!offered(&plain).contains(&rt) && !offered(&plain).contains(&re));
    plain
        .client
        .post(&format!("/api/v1/federation/rounds/{rt}/join"), &json!({}))
        .expect_error(403, "forbidden");
    tagged.join(&rt);
    explicit.join(&re);
    // Explicit membership grows.
    owner
        .post(
            &org_path(&format!("/device-groups/{eid}/members")),
            &json!({"device_ids": [plain.id]}),
        )
        .expect(200);
    assert!(offered(&plain).contains(&re));
    let r = round(&rt);
    assert_eq!(r["progress"]["selected"], 1);
    assert_eq!(r["progress"]["joined"], 1);
    assert_eq!(r["progress"]["participation_rate"], 1.0);
}

/// Defect 3: a device whose token came from a `devices:write` key downloaded an unapproved
/// version of a model in none of its rounds. A device downloads only what it was offered — the
/// base of a round it can join now — and anything else answers 404, like a version that does
/// not exist.
#[test]
fn a_device_downloads_only_the_base_of_a_round_it_is_offered() {
    let spec = small_model();
    let mut rng = Rng::new(31);
    let owner = Client::owner_key();
    let (model_id, _) = model_with_base(&spec, &mut rng);
    let v1 = owner
        .get(&org_path(&format!("/models/{model_id}/versions/1")))
        .expect(200)
        .json()["version"]
        .clone();
    // A second version of the same model, never approved and in no round.
    let vals: Vec<f64> = (0..numel(&spec)).map(|_| rng.unit()).collect();
    let file = safetensors_f32(&spec, &vals, &(0..spec.len()).collect::<Vec<_>>());
    let v2 = upload_version(&owner, &model_id, file).expect(201).json()["version"].clone();
    let v2_id = v2["id"].as_str().unwrap().to_owned();
    // Enrolled with the default grant (devices:write), as the defect's device was.
    let d = Device::enroll("dl");
    let refused = |dev: &Device, model: &str, version: &str| {
        device_download(dev, model, version)
            .unwrap_err()
            .expect_error(404, "not_found");
    };
    refused(&d, &model_id, "1");
    refused(&d, &model_id, "2");
    refused(&d, &model_id, &v2_id);
    // A round on version 1 offers it: its base, by number or by id, byte for byte.
    let rid = create_round(round_body(
        &model_id,
        1,
        1,
        2,
        600,
        json!({"algorithm": "fedavg"}),
    ))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for which in ["1", v1["id"].as_str().unwrap()] {
        let bytes = device_download(&d, &model_id, which).unwrap();
        assert_eq!(sha256_hex(&bytes), v1["sha256"].as_str().unwrap());
    }
    // Still nothing else: the other version, an unknown one, junk.
    refused(&d, &model_id, "2");
    refused(&d, &model_id, &v2_id);
    refused(&d, &model_id, "99");
    refused(&d, "mdl_000000000000000000000000000a", "1");
    refused(&d, "not-a-model", "1");
    // A device that may only read models cannot join, so no round offers it anything.
    let ident = unique("dl-reader");
    let bt = bootstrap_token(&ident, json!({"scopes": ["models:read"]}));
    let reader = Device::from_tokens(
        &Client::anonymous()
            .with_bearer(bt["token"].as_str().unwrap())
            .post(
                "/api/v1/device-auth/bootstrap",
                &json!({"org_id": stack().org_id, "device_identifier": ident, "scopes": ["models:read"]}),
            )
            .expect(201)
            .json(),
    );
    refused(&reader, &model_id, "1");
    // A round for a device group offers its base to the group's devices only.
    let (model_b, _) = model_with_base(&spec, &mut rng);
    let member = Device::enroll("dl-member");
    let g = owner
        .post(
            &org_path("/device-groups"),
            &json!({"name": unique("dl group"), "device_ids": [member.id]}),
        )
        .expect(201)
        .json();
    let mut b = round_body(&model_b, 1, 1, 2, 600, json!({"algorithm": "fedavg"}));
    b["device_group"] = g["device_group"]["id"].clone();
    create_round(b);
    device_download(&member, &model_b, "1").unwrap();
    refused(&d, &model_b, "1");
    // Once the round ends, its base is no longer offered.
    owner
        .post(&org_path(&format!("/rounds/{rid}/cancel")), &json!({}))
        .expect(200);
    refused(&d, &model_id, "1");
    // The org itself still downloads every version.
    assert_eq!(
        sha256_hex(&download(&model_id, &v2_id)),
        v2["sha256"].as_str().unwrap()
    );
}

/// Federation changes take the one mutation path: each commits its audit event with the change
/// and pokes the org's chain, including the round's end, which the coordinator records itself.
/// In a fresh org whose audit log nobody reads (a read would place pending events itself), every
/// event still reaches the chain — before, federation events waited for a read or for cron. And
/// an event is in the audit log right after its change answers.
#[test]
fn federation_changes_reach_the_audit_chain_through_their_own_commit() {
    let owner = new_user("fl-audit");
    let org = create_org(&owner, "FL audit")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = owner.client();
    let at = |p: &str| format!("/v1/orgs/{org}{p}");
    let model_id = c
        .post(&at("/models"), &json!({"name": "audited"}))
        .expect(201)
        .json()["model"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let spec = tensors(&[("w", vec![8])]);
    c.send(
        c.request(
            reqwest::Method::POST,
            &at(&format!("/models/{model_id}/versions")),
        )
        .header("content-type", "application/octet-stream")
        .body(safetensors_f32(&spec, &[0.5; 8], &[0])),
    )
    .expect(201);
    let rid = c
        .post(
            &at("/rounds"),
            &round_body(&model_id, 2, 1, 2, 600, json!({"algorithm": "fedavg"})),
        )
        .expect(201)
        .json()["round"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let enroll = |identifier: &str| {
        let bt = c
            .post(
                &at("/devices/bootstrap-tokens"),
                &json!({"device_identifier": identifier}),
            )
            .expect(201)
            .json();
        Client::anonymous()
            .with_bearer(bt["token"].as_str().unwrap())
            .post(
                "/api/v1/device-auth/bootstrap",
                &json!({"org_id": org, "device_identifier": identifier}),
            )
            .expect(201)
            .json()["device_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first = enroll("audited-1");
    c.post(
        &at(&format!("/devices/{first}/revoke")),
        &json!({"reason": "lost"}),
    )
    .expect(200);
    c.post(&at(&format!("/rounds/{rid}/cancel")), &json!({}))
        .expect(200);

    let placed = wait_for(
        "the org's events to be placed without an audit read",
        Duration::from_secs(60),
        || {
            let pending = d1(
                "SELECT count(*) AS n FROM audit_pending WHERE chain = ?",
                &[json!(org)],
            );
            let placed = d1(
                "SELECT action, actor_type FROM audit_events WHERE chain = ? ORDER BY seq",
                &[json!(org)],
            );
            (pending[0]["n"] == 0 && placed.len() == 8).then_some(placed)
        },
    );
    let placed: Vec<(&str, &str)> = placed
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        placed,
        [
            ("org.created", "user"),
            ("model.created", "user"),
            ("model_version.created", "user"),
            ("round.created", "user"),
            ("device.bootstrap_token_created", "user"),
            ("device.bootstrapped", "device"),
            ("device.revoked", "user"),
            ("round.cancelled", "user"),
        ]
    );

    // Read right after the change: the audit read syncs the chain, so its own writes are there.
    let second = enroll("audited-2");
    c.post(
        &at(&format!("/devices/{second}/revoke")),
        &json!({"reason": "stolen"}),
    )
    .expect(200);
    let events = c
        .get(&at(&format!(
            "/audit-events?action=device.revoked&resource={second}"
        )))
        .expect(200)
        .json();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["actor"]["type"], "user");
    assert_eq!(events[0]["metadata"]["reason"], "stolen");
    assert!(events[0]["request_id"]
        .as_str()
        .unwrap()
        .starts_with("req_"));
}
