//! The device control plane under a fleet (part of `scripts/bench federation`): with
//! `FL_CONTROL_DEVICES` (default 10,000) devices registered in one staged rollout, the Octomil
//! `desired-state` and `sync` routes' requests per second next to the `/livez` floor, in one run;
//! then the cost of a round's metrics aggregation per update (summary and time series of 32
//! metrics, natively) as one JSON line for the report to set against the ingest time.
//! Figures are printed, never asserted.
//!
//! The gateway keeps a device's facts while its org's device epoch stands, so a device's first
//! request after a change of the org (or to a new isolate) reads D1 and its later ones do not.
//! Both are measured: once every device has polled once, the fleet's steady state (what a fleet
//! polling every few minutes sees between changes; the goal is judged on it), then, after one
//! device's tags changed, first polls (each request a device whose facts must be read again).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeplane_bench::load::{self, LoadConfig, RequestSpec};
use edgeplane_bench::{report, stack};
use edgeplane_core::fl::metrics;
use serde_json::{json, Value};

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, bearer: &str, body: Value) -> Value {
        for attempt in 0..5 {
            let r = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(bearer)
                .json(&body)
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => return r.json().await.unwrap_or(Value::Null),
                Ok(r) if r.status().as_u16() == 503 && attempt < 4 => {}
                Ok(r) => panic!(
                    "{method} {path} -> {}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ),
                Err(e) if attempt < 4 => eprintln!("{path}: {e}, retrying"),
                Err(e) => panic!("{path}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        unreachable!()
    }

    async fn post(&self, path: &str, bearer: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, bearer, body).await
    }
}

/// A small safetensors file (one float32 tensor).
fn model_file() -> Vec<u8> {
    let header = br#"{"w":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}}"#.to_vec();
    let mut h = header;
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(std::iter::repeat_n(0u8, 64));
    out
}

async fn fleet(api: Arc<Api>, org: &str, key: &str, n: usize) -> (String, Vec<(String, String)>) {
    let tag = format!("bench{}", std::process::id());
    let m = api
        .post(&format!("/v1/orgs/{org}/models"), key, json!({"name": tag}))
        .await;
    let model_id = m["model"]["id"].as_str().unwrap().to_owned();
    let r = api
        .http
        .post(format!(
            "{}/v1/orgs/{org}/models/{model_id}/versions",
            api.base
        ))
        .bearer_auth(key)
        .header("content-type", "application/octet-stream")
        .body(model_file())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    api.post(
        &format!("/v1/orgs/{org}/models/{model_id}/versions/1/approve"),
        key,
        json!({}),
    )
    .await;

    let t0 = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (api, next, org, key, tag) = (
            api.clone(),
            next.clone(),
            org.to_owned(),
            key.to_owned(),
            tag.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    return out;
                }
                let ident = format!("{tag}-{i}");
                let bt = api
                    .post(
                        &format!("/v1/orgs/{org}/devices/bootstrap-tokens"),
                        &key,
                        json!({"device_identifier": ident}),
                    )
                    .await;
                let tok = api
                    .post(
                        "/api/v1/device-auth/bootstrap",
                        bt["token"].as_str().unwrap(),
                        json!({"org_id": org, "device_identifier": ident}),
                    )
                    .await;
                out.push((
                    tok["device_id"].as_str().unwrap().to_owned(),
                    tok["access_token"].as_str().unwrap().to_owned(),
                ));
            }
        }));
    }
    let mut devices = Vec::new();
    for t in tasks {
        devices.extend(t.await.unwrap());
    }
    eprintln!(
        "enrolled {n} devices in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // One explicit group (members added 1,000 at a time), one rollout promoted to 50%.
    let ids: Vec<&str> = devices.iter().map(|d| d.0.as_str()).collect();
    let g = api
        .post(
            &format!("/v1/orgs/{org}/device-groups"),
            key,
            json!({"name": tag, "device_ids": ids[..ids.len().min(1000)]}),
        )
        .await;
    let gid = g["device_group"]["id"].as_str().unwrap().to_owned();
    for chunk in ids.chunks(1000).skip(1) {
        api.post(
            &format!("/v1/orgs/{org}/device-groups/{gid}/members"),
            key,
            json!({"device_ids": chunk}),
        )
        .await;
    }
    let d = api
        .post(
            &format!("/v1/orgs/{org}/deployments"),
            key,
            json!({"model_id": model_id, "version": 1, "device_group_ids": [gid], "stages": [10, 50, 100]}),
        )
        .await;
    let dep = d["deployment"]["id"].as_str().unwrap().to_owned();
    api.post(
        &format!("/v1/orgs/{org}/deployments/{dep}/promote"),
        key,
        json!({}),
    )
    .await;
    (model_id, devices)
}

/// Every device polls its desired state once (not timed), as a fleet that has been polling
/// for a while has.
async fn warm_up(base: &str, devices: &Arc<Vec<(String, String)>>) {
    let t0 = Instant::now();
    let http = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, next, devices, base) =
            (http.clone(), next.clone(), devices.clone(), base.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((id, tok)) = devices.get(i) else {
                    return;
                };
                let r = http
                    .get(format!("{base}/api/v1/devices/{id}/desired-state"))
                    .bearer_auth(tok)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "warm-up: {}", r.status());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!(
        "every device polled once in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// Microseconds per update to summarize a round of `n` accepted updates with 32 metrics each
/// (spread of every metric and the time series), the work a metrics read does.
fn metrics_cost(n: usize) -> f64 {
    let reports: Vec<BTreeMap<String, f64>> = (0..n)
        .map(|i| {
            (0..32)
                .map(|k| {
                    (
                        format!("metric_{k}"),
                        ((i * 31 + k * 7) % 1000) as f64 / 1000.0,
                    )
                })
                .collect()
        })
        .collect();
    let reported: Vec<metrics::Reported<'_>> = reports
        .iter()
        .enumerate()
        .map(|(i, m)| metrics::Reported {
            seq: i as i64 + 1,
            at_ms: i as i64,
            weight: 1.0 + (i % 500) as f64,
            metrics: m,
        })
        .collect();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let s = metrics::summarize(&reported);
        let p = metrics::series(&reported);
        std::hint::black_box((s, p));
        best = best.min(t.elapsed().as_secs_f64());
    }
    best * 1e6 / n as f64
}

#[tokio::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("metrics-cost") {
        println!(
            "{}",
            json!({"metrics_us_per_update": metrics_cost(1000), "updates": 1000, "metrics": 32})
        );
        return;
    }
    let st = stack::from_env().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let n: usize = std::env::var("FL_CONTROL_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let api = Arc::new(Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        base: st.base_url.clone(),
    });
    let (_, devices) = fleet(api.clone(), &st.org_id, &st.api_key, n).await;
    let devices = Arc::new(devices);
    let cfg = LoadConfig::from_env();
    let base = st.base_url.clone();
    let floor = load::run("GET /livez (floor)", &cfg, 200, {
        let url = format!("{base}/livez");
        move |_| RequestSpec::get(url.clone())
    })
    .await;
    warm_up(&base, &devices).await;
    let desired = load::run("GET /api/v1/devices/{id}/desired-state", &cfg, 200, {
        let (base, devices) = (base.clone(), devices.clone());
        move |i| {
            let (id, tok) = &devices[(i as usize * 7919) % devices.len()];
            RequestSpec::get(format!("{base}/api/v1/devices/{id}/desired-state"))
                .header("authorization", &format!("Bearer {tok}"))
        }
    })
    .await;
    let sync = load::run("POST /api/v1/devices/{id}/sync", &cfg, 200, {
        let (base, devices) = (base.clone(), devices.clone());
        move |i| {
            let (id, tok) = &devices[(i as usize * 7919) % devices.len()];
            let body = json!({"schemaVersion": "1.12.0", "deviceId": id, "platform": "python"});
            RequestSpec {
                method: reqwest::Method::POST,
                url: format!("{base}/api/v1/devices/{id}/sync"),
                headers: vec![
                    ("authorization".into(), format!("Bearer {tok}")),
                    ("content-type".into(), "application/json".into()),
                ],
                body: Some(body.to_string().into_bytes()),
            }
        }
    })
    .await;
    // An org change (one device's tags) moves the org's device epoch: from then on each device's
    // first request reads D1 again. The stride visits distinct devices until it has sent as
    // many requests as there are devices.
    let (id0, _) = &devices[0];
    api.send(
        reqwest::Method::PATCH,
        &format!("/v1/orgs/{}/devices/{id0}", st.org_id),
        &st.api_key,
        json!({"tags": ["bench-epoch"]}),
    )
    .await;
    let first = load::run(
        "GET …/desired-state, first poll after a change",
        &cfg,
        200,
        {
            let (base, devices) = (base.clone(), devices.clone());
            move |i| {
                let (id, tok) = &devices[(i as usize * 7919) % devices.len()];
                RequestSpec::get(format!("{base}/api/v1/devices/{id}/desired-state"))
                    .header("authorization", &format!("Bearer {tok}"))
            }
        },
    )
    .await;
    report::print_table(
        &format!(
            "federation: device control with {n} devices in a rollout ({} connections, {:?})",
            cfg.concurrency, cfg.duration
        ),
        &st.runtime,
        &floor,
        &[&desired, &sync, &first],
    );
    if first.rps() * cfg.duration.as_secs_f64() > devices.len() as f64 {
        eprintln!(
            "(the first-poll run sent more requests than there are devices: some were repeats)"
        );
    }
    for r in [&desired, &sync] {
        let ratio = r.rps() / floor.rps();
        report::goal(
            &format!("{} >= 50% of the floor", r.name),
            ratio >= 0.5 && r.errors == 0,
            &format!("{:.0}%, {} errors", ratio * 100.0, r.errors),
        );
    }
}
