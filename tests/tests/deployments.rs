//! Deployments and staged rollouts against the running stack: a version reaches exactly the
//! devices of the rollout's groups whose bucket its current stage covers (checked against an
//! independent derivation of the bucket), promotion never takes it from a device that had it,
//! pause/resume/rollback follow the state machine, every transition is audited with its actor,
//! downloads follow the desired state, and nothing crosses orgs or devices.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::federation::*;
use e2e::identity::{audit_events, create_org, new_user};
use e2e::{org_path, stack, Client};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The rollout bucket, derived here from its specification (SHA-256 over a fixed label and both
/// ids, first eight bytes big-endian, modulo 10,000) rather than from the server's code.
fn bucket(deployment: &str, device: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(b"edgeplane/rollout/v1\0");
    h.update(deployment.as_bytes());
    h.update([0u8]);
    h.update(device.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().unwrap()) % 10_000
}

fn covered(percent: u64, deployment: &str, device: &str) -> bool {
    bucket(deployment, device) < percent * 100
}

fn approve(model_id: &str, version: u32) {
    Client::owner_key()
        .post(
            &org_path(&format!("/models/{model_id}/versions/{version}/approve")),
            &json!({}),
        )
        .expect(200);
}

/// A second version of the model (the base plus one), uploaded and returned as its id.
fn second_version(model_id: &str, spec: &Spec, base: &[f64]) -> String {
    let order: Vec<usize> = (0..spec.len()).collect();
    let next: Vec<f64> = base.iter().map(|v| v + 1.0).collect();
    let v = upload_version(
        &Client::owner_key(),
        model_id,
        safetensors_f32(spec, &next, &order),
    )
    .expect(201)
    .json();
    assert_eq!(v["version"]["version"], 2);
    v["version"]["id"].as_str().unwrap().to_owned()
}

fn group_of(devices: &[Device]) -> String {
    let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    Client::owner_key()
        .post(
            &org_path("/device-groups"),
            &json!({"name": unique("fleet"), "device_ids": ids}),
        )
        .expect(201)
        .json()["device_group"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn deploy(body: Value) -> Value {
    Client::owner_key()
        .post(&org_path("/deployments"), &body)
        .expect(201)
        .json()["deployment"]
        .clone()
}

fn act(dep: &str, what: &str) -> e2e::Resp {
    Client::owner_key().post(&org_path(&format!("/deployments/{dep}/{what}")), &json!({}))
}

/// The (model, version) pairs a device's sync answer names.
fn synced(d: &Device) -> Vec<(String, String)> {
    let r = d
        .client
        .post(
            &format!("/api/v1/devices/{}/sync", d.id),
            &json!({"schemaVersion": "1.12.0", "deviceId": d.id, "platform": "python"}),
        )
        .expect(200)
        .json();
    assert_eq!(r["models"], r["desiredState"]["models"]);
    named(&r)
}

/// The (model, version) pairs of a desired-state or sync answer's `models`.
fn named(answer: &Value) -> Vec<(String, String)> {
    answer["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["modelId"].as_str().unwrap().to_owned(),
                m["desiredVersion"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_staged_rollout_reaches_exactly_its_stage() {
    let spec = tensors(&[("w", vec![4, 3]), ("b", vec![3])]);
    let mut rng = Rng::new(1201);
    let (model_id, base) = model_with_base(&spec, &mut rng);
    let owner = Client::owner_key();

    let fleet: Vec<Device> = (0..24).map(|_| Device::enroll("fleet")).collect();
    let outsider = Device::enroll("outsider");
    let group = group_of(&fleet);

    // Only an approved version may ship.
    owner
        .post(
            &org_path("/deployments"),
            &json!({"model_id": model_id, "version": 1, "device_group_ids": [group]}),
        )
        .expect_error(409, "conflict");
    approve(&model_id, 1);
    for bad in [
        json!([50]),
        json!([50, 10, 100]),
        json!([0, 100]),
        json!([]),
    ] {
        owner
            .post(
                &org_path("/deployments"),
                &json!({"model_id": model_id, "version": 1, "device_group_ids": [group], "stages": bad}),
            )
            .expect(422);
    }
    owner
        .post(
            &org_path("/deployments"),
            &json!({"model_id": model_id, "version": 1, "device_group_ids": ["dgr_nosuchgroup0000000000"]}),
        )
        .expect(404);

    // Version 1 to everyone in the group, in one stage.
    let first = deploy(
        json!({"model_id": model_id, "version": 1, "device_group_ids": [group], "stages": [100]}),
    );
    let first_id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["state"], "active");
    assert_eq!(first["percent"], 100);
    assert_eq!(first["progress"][0]["devices"], 24);
    // Another rollout of the model waits for this one.
    owner
        .post(
            &org_path("/deployments"),
            &json!({"model_id": model_id, "version": 1, "device_group_ids": [group]}),
        )
        .expect_error(409, "conflict");
    let done = act(&first_id, "promote").expect(200).json()["deployment"].clone();
    assert_eq!(done["state"], "completed");
    act(&first_id, "promote").expect_error(409, "conflict");
    for d in &fleet {
        assert_eq!(synced(d), vec![(model_id.clone(), "1".to_owned())]);
    }
    assert!(
        synced(&outsider).is_empty(),
        "a device outside the groups sees nothing"
    );

    // Version 2 in stages 40% -> 70% -> 100%.
    let v2 = second_version(&model_id, &spec, &base);
    approve(&model_id, 2);
    let dep = deploy(json!({
        "model_id": model_id, "version": 2, "device_group_ids": [group], "stages": [40, 70, 100],
    }));
    let dep_id = dep["id"].as_str().unwrap().to_owned();
    assert_eq!(
        dep["previous_version_id"].as_str().unwrap(),
        first["version_id"].as_str().unwrap()
    );
    assert_eq!(
        (dep["stage"].as_u64(), dep["percent"].as_u64()),
        (Some(0), Some(40))
    );
    let want = |percent: u64| -> Vec<bool> {
        fleet
            .iter()
            .map(|d| covered(percent, &dep_id, &d.id))
            .collect()
    };
    let at_40 = want(40);
    assert!(
        at_40.iter().any(|x| *x) && !at_40.iter().all(|x| *x),
        "24 devices split at 40%"
    );
    let expect_per_stage: Vec<u64> = [(0, 40), (40, 70), (70, 100)]
        .iter()
        .map(|(lo, hi)| {
            fleet
                .iter()
                .filter(|d| {
                    let b = bucket(&dep_id, &d.id);
                    b >= lo * 100 && b < hi * 100
                })
                .count() as u64
        })
        .collect();
    let got: Vec<u64> = dep["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["devices"].as_u64().unwrap())
        .collect();
    assert_eq!(got, expect_per_stage);

    for (d, inside) in fleet.iter().zip(&at_40) {
        let v = if *inside { "2" } else { "1" };
        assert_eq!(
            synced(d),
            vec![(model_id.clone(), v.to_owned())],
            "{}",
            d.id
        );
        // The artifact is downloadable by exactly the devices told to run it.
        match device_download(d, &model_id, &v2) {
            Ok(bytes) if *inside => assert_eq!(bytes.len() as u64, dep_size(&owner, &model_id)),
            Ok(_) => panic!("{} downloaded a version it was not given", d.id),
            Err(r) if !*inside => assert_eq!(r.status, 404),
            Err(r) => panic!("{} could not download its version: {}", d.id, r.status),
        }
    }
    assert!(device_download(&outsider, &model_id, &v2).is_err());

    // The desired state carries the artifact manifest; another device's state is not readable.
    let inside = fleet.iter().zip(&at_40).find(|(_, i)| **i).unwrap().0;
    let ds = inside
        .client
        .get(&format!("/api/v1/devices/{}/desired-state", inside.id))
        .expect(200)
        .json();
    let m = &ds["models"][0];
    assert_eq!(m["artifactManifest"]["artifactId"], v2.as_str());
    assert_eq!(m["deploymentId"], dep_id.as_str());
    assert!(m["artifactManifest"]["downloadUrl"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/api/v1/models/{model_id}/versions/{v2}/download")));
    let other = fleet.iter().find(|d| d.id != inside.id).unwrap();
    inside
        .client
        .get(&format!("/api/v1/devices/{}/desired-state", other.id))
        .expect_error(404, "not_found");
    inside
        .client
        .post(
            &format!("/api/v1/devices/{}/sync", inside.id),
            &json!({"deviceId": other.id}),
        )
        .expect_error(404, "not_found");

    // Observed state feeds the per-stage progress.
    inside
        .client
        .post(
            &format!("/api/v1/devices/{}/observed-state", inside.id),
            &json!({"schemaVersion": "1.4.0", "deviceId": inside.id, "reportedAt": "2026-12-01T00:00:00Z",
                    "models": [{"modelId": model_id, "installedVersion": "2", "activeVersion": "2", "status": "ACTIVE"}]}),
        )
        .expect(200);
    inside
        .client
        .post(
            &format!("/api/v1/devices/{}/observed-state", inside.id),
            &json!({"models": [{"modelId": model_id, "status": "sideways"}]}),
        )
        .expect(422);
    let shown = owner
        .get(&org_path(&format!("/deployments/{dep_id}")))
        .expect(200)
        .json()["deployment"]
        .clone();
    let first_stage = &shown["progress"][0];
    assert_eq!(
        (
            first_stage["installed"].as_u64(),
            first_stage["active"].as_u64()
        ),
        (Some(1), Some(1))
    );

    // Promote: everyone who had version 2 keeps it, more devices get it.
    let promoted = act(&dep_id, "promote").expect(200).json()["deployment"].clone();
    assert_eq!(
        (promoted["state"].as_str(), promoted["percent"].as_u64()),
        (Some("active"), Some(70))
    );
    let at_70 = want(70);
    for ((d, had), has) in fleet.iter().zip(&at_40).zip(&at_70) {
        assert!(
            !had || *has,
            "a device never loses the version on promotion"
        );
        let v = if *has { "2" } else { "1" };
        assert_eq!(synced(d)[0].1, v, "{}", d.id);
    }

    // Pause: nothing moves, promotion waits; resume.
    let paused = act(&dep_id, "pause").expect(200).json()["deployment"].clone();
    assert_eq!(paused["state"], "paused");
    act(&dep_id, "promote").expect_error(409, "conflict");
    act(&dep_id, "pause").expect_error(409, "conflict");
    for (d, has) in fleet.iter().zip(&at_70) {
        assert_eq!(synced(d)[0].1, if *has { "2" } else { "1" });
    }
    act(&dep_id, "resume").expect(200);

    // Roll back: every device returns to version 1 and can no longer fetch version 2.
    let back = act(&dep_id, "rollback").expect(200).json()["deployment"].clone();
    assert_eq!(back["state"], "rolled_back");
    act(&dep_id, "resume").expect_error(409, "conflict");
    for d in &fleet {
        assert_eq!(synced(d), vec![(model_id.clone(), "1".to_owned())]);
    }
    assert_eq!(
        device_download(inside, &model_id, &v2).unwrap_err().status,
        404
    );

    // Every transition is audited, by the API key that made it.
    for action in [
        "rollout.created",
        "rollout.promoted",
        "rollout.paused",
        "rollout.resumed",
        "rollout.rolled_back",
    ] {
        let ev = audit_events(action, &dep_id);
        assert!(!ev.is_empty(), "{action} not audited");
        assert_eq!(ev[0]["org_id"], stack().org_id.as_str());
        assert_eq!(ev[0]["actor_type"], "api_key", "{action}");
    }
    let promotions = audit_events("rollout.promoted", &dep_id);
    assert_eq!(promotions.len(), 1);
    let meta: Value = serde_json::from_str(promotions[0]["metadata"].as_str().unwrap()).unwrap();
    assert_eq!(
        (meta["from_percent"].as_u64(), meta["to_percent"].as_u64()),
        (Some(40), Some(70))
    );

    // The listing shows both, newest first.
    let listed = owner
        .get(&org_path(&format!("/deployments?model_id={model_id}")))
        .expect(200)
        .json();
    let ids: Vec<&str> = listed["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![dep_id.as_str(), first_id.as_str()]);
}

fn dep_size(owner: &Client, model_id: &str) -> u64 {
    owner
        .get(&org_path(&format!("/models/{model_id}/versions/2")))
        .expect(200)
        .json()["version"]["size_bytes"]
        .as_u64()
        .unwrap()
}

#[test]
fn deployments_do_not_cross_orgs() {
    let spec = tensors(&[("w", vec![8])]);
    let mut rng = Rng::new(1202);
    let (model_id, _) = model_with_base(&spec, &mut rng);
    approve(&model_id, 1);
    let fleet: Vec<Device> = (0..2).map(|_| Device::enroll("xorg")).collect();
    let group = group_of(&fleet);
    let dep = deploy(json!({"model_id": model_id, "version": 1, "device_group_ids": [group]}));
    let dep_id = dep["id"].as_str().unwrap();

    // Someone else's org: our deployment is not there, and theirs is not reachable from ours.
    let stranger = new_user("stranger");
    let theirs = create_org(&stranger, "Elsewhere")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = stranger.client();
    c.get(&format!("/v1/orgs/{theirs}/deployments/{dep_id}"))
        .expect_error(404, "not_found");
    for t in ["promote", "pause", "rollback"] {
        c.post(
            &format!("/v1/orgs/{theirs}/deployments/{dep_id}/{t}"),
            &json!({}),
        )
        .expect_error(404, "not_found");
    }
    c.get(&format!("/v1/orgs/{}/deployments/{dep_id}", stack().org_id))
        .expect_error(404, "not_found");
    assert!(c
        .get(&format!("/v1/orgs/{theirs}/deployments"))
        .expect(200)
        .json()["deployments"]
        .as_array()
        .unwrap()
        .is_empty());
    // A group of another org cannot be targeted.
    let their_group = c
        .post(
            &format!("/v1/orgs/{theirs}/device-groups"),
            &json!({"name": "theirs", "tags": ["x"]}),
        )
        .expect(201)
        .json()["device_group"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    Client::owner_key()
        .post(
            &org_path("/deployments"),
            &json!({"model_id": model_id, "version": 1, "device_group_ids": [their_group]}),
        )
        .expect_error(404, "not_found");
    // Still untouched, and not audited in the other org.
    let still = Client::owner_key()
        .get(&org_path(&format!("/deployments/{dep_id}")))
        .expect(200)
        .json()["deployment"]
        .clone();
    assert_eq!(still["state"], "active");
    assert!(audit_events("rollout.promoted", dep_id).is_empty());

    // Registration is for the token's own device only.
    let d = &fleet[0];
    let r = d
        .client
        .post(
            "/api/v1/devices/register",
            &json!({"device_identifier": d.identifier, "org_id": stack().org_id, "platform": "python"}),
        )
        .expect(200)
        .json();
    assert_eq!(r["id"], d.id.as_str());
    d.client
        .post(
            "/api/v1/devices/register",
            &json!({"device_identifier": fleet[1].identifier}),
        )
        .expect(403);
    d.client
        .post(
            "/api/v1/devices/register",
            &json!({"device_identifier": d.identifier, "org_id": theirs}),
        )
        .expect(403);
    // An org credential is not a device.
    Client::owner_key()
        .get(&format!("/api/v1/devices/{}/desired-state", d.id))
        .expect(403);
}

/// The desired state of `d`: (model, version) pairs, from `GET …/desired-state`.
fn desired(d: &Device) -> Vec<(String, String)> {
    let r = d
        .client
        .get(&format!("/api/v1/devices/{}/desired-state", d.id))
        .expect(200)
        .json();
    named(&r)
}

/// The org's rollouts are cached per isolate; the local stack is one isolate, so every change
/// made through it must be in the very next desired state: creation, promotion, rollback, and
/// a new group member. Reports that change nothing are not written, yet every real change
/// still reaches the rollout's progress.
#[test]
fn a_transition_is_in_the_very_next_desired_state() {
    let spec = tensors(&[("w", vec![6])]);
    let mut rng = Rng::new(1203);
    let (model_id, _) = model_with_base(&spec, &mut rng);
    approve(&model_id, 1);
    let fleet: Vec<Device> = (0..6).map(|_| Device::enroll("next")).collect();
    let group = group_of(&fleet);
    // Warm the cache with "nothing deployed" for this org.
    for d in &fleet {
        assert!(desired(d).is_empty());
    }

    let dep = deploy(json!({
        "model_id": model_id, "version": 1, "device_group_ids": [group], "stages": [1, 100],
    }));
    let dep_id = dep["id"].as_str().unwrap().to_owned();
    let one = (model_id.clone(), "1".to_owned());
    for d in &fleet {
        let want = if covered(1, &dep_id, &d.id) {
            vec![one.clone()]
        } else {
            vec![]
        };
        assert_eq!(desired(d), want, "right after creation: {}", d.id);
    }
    let outside = fleet
        .iter()
        .find(|d| !covered(1, &dep_id, &d.id))
        .expect("six devices are not all in the first 1%");

    act(&dep_id, "promote").expect(200);
    assert_eq!(desired(outside), vec![one.clone()], "right after promotion");

    // A device added to the group now is targeted on its very next request.
    let newcomer = Device::enroll("next");
    assert!(desired(&newcomer).is_empty());
    Client::owner_key()
        .post(
            &org_path(&format!("/device-groups/{group}/members")),
            &json!({"device_ids": [newcomer.id]}),
        )
        .expect(200);
    assert_eq!(desired(&newcomer), vec![one.clone()], "right after joining");

    // Reports: repeating one changes nothing; each real change is counted at once.
    let report = |status: &str, active: Option<&str>| {
        outside
            .client
            .post(
                &format!("/api/v1/devices/{}/observed-state", outside.id),
                &json!({"models": [{"modelId": model_id, "installedVersion": "1",
                                    "activeVersion": active, "status": status}]}),
            )
            .expect(200);
    };
    let counts = || -> (u64, u64) {
        let p = Client::owner_key()
            .get(&org_path(&format!("/deployments/{dep_id}")))
            .expect(200)
            .json()["deployment"]["progress"]
            .clone();
        let sum = |k: &str| {
            p.as_array()
                .unwrap()
                .iter()
                .map(|s| s[k].as_u64().unwrap())
                .sum()
        };
        (sum("installed"), sum("active"))
    };
    report("READY", None);
    report("READY", None);
    assert_eq!(counts(), (1, 0));
    report("ACTIVE", Some("1"));
    assert_eq!(counts(), (1, 1));
    report("ACTIVE", Some("1"));
    assert_eq!(counts(), (1, 1));
    report("FAILED_HEALTHCHECK", None);
    assert_eq!(counts(), (0, 0));

    act(&dep_id, "rollback").expect(200);
    for d in fleet.iter().chain([&newcomer]) {
        assert!(desired(d).is_empty(), "right after rollback: {}", d.id);
    }
}
