//! Federated-learning benchmarks (see `scripts/bench federation`).
//!
//!   federation make-updates DIR        writes the shared inputs: base.safetensors, u0..u3
//!   federation kernel N [--validate]   times our kernel natively over N updates (one JSON line)
//!   federation e2e N C                 drives a whole round through the stack at EP_STACK_FILE
//!
//! Every implementation (ours native, ours wasm32 in Node, Flower, numpy) reads the same files:
//! a MobileNet-sized model (4.2M float32 parameters, 16.8 MB per update) and four distinct
//! updates that N updates cycle through. Figures are printed, never asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeplane_bench::stack;
use edgeplane_core::crypto::sha256_hex;
use edgeplane_fl_kernel::Kernel;
use serde_json::{json, Value};

/// 14 layers of [300, 1000] weights plus [1000] biases: 4,214,000 parameters.
fn layout() -> Vec<(String, Vec<u64>)> {
    let mut t = Vec::new();
    for i in 0..14 {
        t.push((format!("layer{i:02}.weight"), vec![300, 1000]));
        t.push((format!("layer{i:02}.bias"), vec![1000]));
    }
    t
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// A safetensors file of F32 values drawn from `seed`, scaled by `scale`.
fn file(seed: u64, scale: f32) -> (Vec<u8>, Vec<f32>) {
    let mut rng = SplitMix(seed);
    let mut header = serde_json::Map::new();
    let mut at = 0u64;
    for (name, shape) in layout() {
        let n: u64 = shape.iter().product();
        header.insert(
            name,
            json!({"dtype": "F32", "shape": shape, "data_offsets": [at, at + 4 * n]}),
        );
        at += 4 * n;
    }
    let mut h = Value::Object(header).to_string().into_bytes();
    while !(8 + h.len()).is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    let total = (at / 4) as usize;
    let mut vals = Vec::with_capacity(total);
    for _ in 0..total {
        let v = rng.unit() * scale;
        vals.push(v);
        out.extend_from_slice(&v.to_le_bytes());
    }
    (out, vals)
}

fn weight(i: usize) -> f64 {
    // Deterministic, varied sample counts shared by every implementation.
    (1 + (i * 37) % 500) as f64
}

/// Peak resident set of this process (VmHWM), in MB.
fn peak_rss_mb(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn make_updates(dir: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(format!("{dir}/base.safetensors"), file(1, 0.5).0).unwrap();
    for k in 0..4u64 {
        std::fs::write(format!("{dir}/u{k}.safetensors"), file(100 + k, 0.01).0).unwrap();
    }
}

fn kernel(n: usize, validate: bool, batch: usize, dir: &str) {
    let base = std::fs::read(format!("{dir}/base.safetensors")).unwrap();
    let pool: Vec<Vec<u8>> = (0..4)
        .map(|k| std::fs::read(format!("{dir}/u{k}.safetensors")).unwrap())
        .collect();
    let shas: Vec<String> = pool.iter().map(|b| sha256_hex(b)).collect();
    let mut k = Kernel::from_base(&base).unwrap();
    let bytes_per = pool[0].len();
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let b = batch.min(n - i);
        if validate {
            for j in i..i + b {
                k.validate(&pool[j % 4], &shas[j % 4], weight(j) as i64)
                    .unwrap();
            }
        }
        if b == 1 {
            k.fold(&pool[i % 4], weight(i)).unwrap();
        } else {
            let ups: Vec<(&[u8], f64)> = (i..i + b)
                .map(|j| (pool[j % 4].as_slice(), weight(j)))
                .collect();
            k.fold_batch(&ups).unwrap();
        }
        i += b;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "impl": format!("edgeplane native ({}fold{})", if validate { "validate+" } else { "" },
                if batch > 1 { format!(", batches of {batch}") } else { String::new() }),
            "n": n, "params": k.parameters(), "seconds": secs,
            "mb_per_s": (n * bytes_per) as f64 / 1e6 / secs,
            "peak_rss_mb": peak_rss_mb("self"), "checksum": k.average_checksum(),
        })
    );
}

// ---- end to end ---------------------------------------------------------------------------

static RETRIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// Sends with up to three retries on transport errors (a device on a flaky link would; every
    /// step of the protocol is safe to repeat).
    async fn send(&self, rb: reqwest::RequestBuilder) -> (u16, Value) {
        let mut attempt = 0;
        loop {
            let req = rb.try_clone().expect("cloneable request");
            match req.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    return (status, serde_json::from_str(&text).unwrap_or(Value::Null));
                }
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    eprintln!("retrying after a transport error: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("request failed: {e}"),
            }
        }
    }

    async fn post(&self, path: &str, bearer: &str, body: Value) -> Value {
        let (s, v) = self
            .send(
                self.http
                    .post(format!("{}{path}", self.base))
                    .bearer_auth(bearer)
                    .json(&body),
            )
            .await;
        assert!(s < 300, "POST {path} -> {s}: {v}");
        v
    }

    async fn get(&self, path: &str, bearer: &str) -> Value {
        let (s, v) = self
            .send(
                self.http
                    .get(format!("{}{path}", self.base))
                    .bearer_auth(bearer),
            )
            .await;
        assert!(s < 300, "GET {path} -> {s}: {v}");
        v
    }
}

/// Resident-set figures (MB) of the workerd processes serving the stack (process group `pgid`).
fn workerd_memory(pgid: &str) -> (f64, f64) {
    let mut rss = 0.0;
    let mut hwm = 0.0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r.to_owned()) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[2] is the process group.
        if fields.get(2) != Some(&pgid) || !stat.contains("(workerd)") {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kb = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        rss += kb("VmRSS:") / 1024.0;
        hwm += kb("VmHWM:") / 1024.0;
    }
    (rss, hwm)
}

async fn e2e(n: usize, concurrency: usize) {
    let st = stack::from_env().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let pgid = std::env::var("EP_BENCH_PID").unwrap_or_default();
    let api = Arc::new(Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap(),
        base: st.base_url.clone(),
    });
    let key = st.api_key.clone();
    let org = st.org_id.clone();

    let (base_file, base_vals) = file(1, 0.5);
    let pool: Vec<(Vec<u8>, Vec<f32>)> = (0..4).map(|k| file(100 + k, 0.01)).collect();
    let bytes_per = pool[0].0.len();
    let m = api
        .post(
            &format!("/v1/orgs/{org}/models"),
            &key,
            json!({"name": format!("bench-{}", std::process::id())}),
        )
        .await;
    let model_id = m["model"]["id"].as_str().unwrap().to_owned();
    let (s, v) = api
        .send(
            api.http
                .post(format!(
                    "{}/v1/orgs/{org}/models/{model_id}/versions",
                    api.base
                ))
                .bearer_auth(&key)
                .header("content-type", "application/octet-stream")
                .body(base_file.clone()),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let r = api
        .post(
            &format!("/v1/orgs/{org}/rounds"),
            &key,
            json!({"model_id": model_id, "base_version": 1, "target": n, "min": n, "max": n,
                   "deadline_seconds": 3600, "aggregation": {"algorithm": "fedavg"}}),
        )
        .await;
    let round_id = r["round"]["id"].as_str().unwrap().to_owned();

    // Enrol and join every device (not timed).
    let mut devices = Vec::new();
    for i in 0..n {
        let ident = format!("bench-{}-{i}", std::process::id());
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
        let access = tok["access_token"].as_str().unwrap().to_owned();
        let pid = format!("p{i}");
        api.post(
            &format!("/api/v1/federation/rounds/{round_id}/join"),
            &access,
            json!({"participation_id": pid}),
        )
        .await;
        devices.push((access, pid));
    }
    let metas: Vec<Value> = pool
        .iter()
        .map(|(b, _)| json!({"format": "safetensors", "sha256": sha256_hex(b), "size": b.len()}))
        .collect();
    let pool = Arc::new(pool);
    let (rss_before, _) = workerd_memory(&pgid);

    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let devices = Arc::new(devices);
    let metas = Arc::new(metas);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (api, next, devices, metas, pool, round_id) = (
            api.clone(),
            next.clone(),
            devices.clone(),
            metas.clone(),
            pool.clone(),
            round_id.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= devices.len() {
                    return lat;
                }
                let t0 = Instant::now();
                let (access, pid) = &devices[i];
                let mut meta = metas[i % 4].clone();
                meta["sample_count"] = json!(weight(i) as i64);
                let init = api
                    .post(
                        &format!("/api/v1/federation/rounds/{round_id}/uploads"),
                        access,
                        json!({"participation_id": pid, "meta": meta}),
                    )
                    .await;
                let urls: Vec<String> = init["part_urls"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u.as_str().unwrap().to_owned())
                    .collect();
                let bytes = &pool[i % 4].0;
                let per = bytes.len() / urls.len();
                for (k, url) in urls.iter().enumerate() {
                    let end = if k + 1 == urls.len() {
                        bytes.len()
                    } else {
                        (k + 1) * per
                    };
                    let (s, v) = api
                        .send(api.http.put(url).body(bytes[k * per..end].to_vec()))
                        .await;
                    assert_eq!(s, 200, "{v}");
                }
                let upload = init["upload_id"].as_str().unwrap();
                let done = api
                    .post(
                        &format!("/api/v1/federation/rounds/{round_id}/uploads/{upload}/complete"),
                        access,
                        json!({}),
                    )
                    .await;
                assert_eq!(done["status"], "accepted");
                lat.push(t0.elapsed().as_secs_f64());
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let ingest = start.elapsed().as_secs_f64();
    let last = Instant::now();
    let published = loop {
        let r = api
            .get(&format!("/v1/orgs/{org}/rounds/{round_id}"), &key)
            .await;
        if r["round"]["state"] == "published" {
            break r;
        }
        assert!(
            last.elapsed() < Duration::from_secs(600),
            "round did not publish: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let close = last.elapsed().as_secs_f64();
    let (rss_after, hwm) = workerd_memory(&pgid);

    // Check the result against an f64 reference, so the figures are for correct work.
    let vid = published["round"]["published_version_id"].as_str().unwrap();
    let got = api
        .http
        .get(format!(
            "{}/v1/orgs/{org}/models/{model_id}/versions/{vid}/download",
            api.base
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let hl = u64::from_le_bytes(got[..8].try_into().unwrap()) as usize;
    let data = &got[8 + hl..];
    let mut sums = vec![0.0f64; base_vals.len()];
    let mut total = 0.0;
    for i in 0..n {
        let w = weight(i);
        total += w;
        for (s, v) in sums.iter_mut().zip(&pool[i % 4].1) {
            *s += w * *v as f64;
        }
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (j, c) in data.chunks_exact(4).enumerate() {
        let want = base_vals[j] as f64 + sums[j] / total;
        let have = f32::from_le_bytes(c.try_into().unwrap()) as f64;
        num += (have - want).powi(2);
        den += want * want;
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{}",
        json!({
            "n": n, "concurrency": concurrency, "update_mb": bytes_per as f64 / 1e6,
            "ingest_seconds": ingest, "updates_per_s": n as f64 / ingest,
            "mb_per_s": (n * bytes_per) as f64 / 1e6 / ingest,
            "update_p50_s": p(0.5), "update_p99_s": p(0.99),
            "round_close_seconds": close,
            "workerd_rss_mb_before": rss_before, "workerd_rss_mb_after": rss_after, "workerd_peak_rss_mb": hwm,
            "relative_error": (num / den).sqrt(), "shards": published["round"]["progress"]["shards"],
            "transport_retries": RETRIES.load(std::sync::atomic::Ordering::Relaxed),
        })
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::env::var("FL_BENCH_DIR").unwrap_or_else(|_| ".bench/federation".into());
    match args.get(1).map(String::as_str) {
        Some("make-updates") => make_updates(args.get(2).unwrap_or(&dir)),
        Some("kernel") => {
            let n = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
            let batch = args
                .iter()
                .position(|a| a == "--batch")
                .and_then(|i| args.get(i + 1)?.parse().ok())
                .unwrap_or(1);
            kernel(n, args.iter().any(|a| a == "--validate"), batch, &dir)
        }
        Some("e2e") => {
            let n = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
            let c = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);
            e2e(n, c).await
        }
        _ => {
            eprintln!(
                "usage: federation make-updates DIR | kernel N [--validate] | e2e N CONCURRENCY"
            );
            std::process::exit(2);
        }
    }
}
