//! Federated-learning benchmarks (see `scripts/bench federation`).
//!
//!   federation make-updates DIR        writes the shared inputs: base.safetensors, u0..u3
//!   federation kernel N [--validate] [--batch B] [--best-of R]
//!                                      times our kernel natively over N updates (one JSON line)
//!   federation bandwidth [--runs R]    this machine's memory bandwidth (STREAM's triad) and the
//!                                      fold over arrays as large, 1 thread (two JSON lines)
//!   federation e2e N C                 drives a whole round through the stack at EP_STACK_FILE
//!
//! Every implementation (ours native, ours wasm32 in Node, Flower, numpy) reads the same files:
//! a MobileNet-sized model (4.2M float32 parameters, 16.8 MB per update) and four distinct
//! updates that N updates cycle through. Figures are printed, never asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeplane_bench::{stack, workerd};
use edgeplane_core::crypto::sha256_hex;
use edgeplane_core::fl::aggregate::fold_slice;
use edgeplane_core::fl::dtype::DType;
use edgeplane_fl_kernel::{prg_floor, Kernel, SplitMix};
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

/// Times our kernel over `n` updates; with `runs > 1`, that many times on a fresh accumulator
/// each, reporting the fastest (what the bandwidth comparison uses on a shared machine).
fn kernel(n: usize, validate: bool, batch: usize, runs: usize, dir: &str) {
    let base = std::fs::read(format!("{dir}/base.safetensors")).unwrap();
    let pool: Vec<Vec<u8>> = (0..4)
        .map(|k| std::fs::read(format!("{dir}/u{k}.safetensors")).unwrap())
        .collect();
    let shas: Vec<String> = pool.iter().map(|b| sha256_hex(b)).collect();
    let bytes_per = pool[0].len();
    let run = || {
        let mut k = Kernel::from_base(&base).unwrap();
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
        (start.elapsed().as_secs_f64(), k)
    };
    let (mut secs, k) = run();
    for _ in 1..runs {
        secs = secs.min(run().0);
    }
    println!(
        "{}",
        json!({
            "impl": format!("edgeplane native ({}fold{})", if validate { "validate+" } else { "" },
                if batch > 1 { format!(", batches of {batch}") } else { String::new() }),
            "n": n, "params": k.parameters(), "seconds": secs, "runs": runs.max(1), "batch": batch,
            "mb_per_s": (n * bytes_per) as f64 / 1e6 / secs,
            "peak_rss_mb": peak_rss_mb("self"), "checksum": k.average_checksum(),
        })
    );
}

/// The size of the largest CPU cache (the last level), in bytes, from sysfs.
fn last_level_cache_bytes() -> Option<u64> {
    let mut largest = None;
    for e in std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache")
        .ok()?
        .flatten()
    {
        let Ok(size) = std::fs::read_to_string(e.path().join("size")) else {
            continue;
        };
        let size = size.trim();
        let (digits, unit) = size.split_at(
            size.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(size.len()),
        );
        let Ok(v) = digits.parse::<u64>() else {
            continue;
        };
        let bytes = v * match unit {
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            _ => 1,
        };
        largest = largest.max(Some(bytes));
    }
    largest
}

fn mem_available_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = s
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// The size of each bandwidth array: `FL_TRIAD_MB` MB, by default 4x the last-level cache
/// (STREAM's rule, so that no run is served from cache), capped at an eighth of the available
/// memory.
fn bandwidth_array_bytes(llc: u64) -> u64 {
    match std::env::var("FL_TRIAD_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(mb) => mb << 20,
        None => (4 * llc)
            .max(64 << 20)
            .min(mem_available_bytes().unwrap_or(u64::MAX) / 8),
    }
}

/// The fastest of `runs` timed runs of `f`, after one warm-up run (as STREAM does).
fn best_of(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// This machine's memory bandwidth and the fold against it, both on one thread (the fold runs on
/// one: one aggregator per isolate) over arrays far larger than the cache. Prints two JSON lines:
///
/// - STREAM's triad, `a[i] = b[i] + s * c[i]` over `f64`, counted as STREAM counts it: 24 bytes
///   per element (`b` and `c` read, `a` written; the cache's read of `a` before writing it is
///   not counted);
/// - the fold, `sum[i] += w * x[i]` with `x` float32 bytes and `sum` f64, over as many elements,
///   counted the same way: 20 bytes per element (4 of `x` and 8 of `sum` read, 8 of `sum`
///   written).
fn bandwidth(runs: usize) {
    let llc = last_level_cache_bytes().unwrap_or(32 << 20);
    let n = (bandwidth_array_bytes(llc) / 8) as usize;
    let triad_seconds = {
        let (mut a, b, c) = (vec![0.0f64; n], vec![1.0f64; n], vec![2.0f64; n]);
        let secs = best_of(runs, || {
            let s = std::hint::black_box(3.0f64);
            let (b, c) = (std::hint::black_box(&b), std::hint::black_box(&c));
            for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                *a = b + s * c;
            }
            std::hint::black_box(&mut a);
        });
        // The work was done: every element is 1 + 3 * 2.
        assert!(a.iter().step_by(4099).all(|&x| x == 7.0));
        secs
    };
    let fold_seconds = {
        let mut rng = SplitMix(9);
        let x: Vec<u8> = (0..n).flat_map(|_| rng.unit().to_le_bytes()).collect();
        let mut sum = vec![0.0f64; n];
        let mut w = 0.0;
        let secs = best_of(runs, || {
            w += 1.0;
            fold_slice(DType::F32, std::hint::black_box(&x), &mut sum, w);
            std::hint::black_box(&mut sum);
        });
        assert!(sum.iter().any(|&s| s != 0.0));
        secs
    };
    let common = json!({"elements": n, "array_mb": (n * 8) as f64 / 1e6, "llc_mb": llc as f64 / 1e6, "runs": runs});
    for (name, bytes_per_element, secs) in [
        ("STREAM triad (native, 1 thread)", 24, triad_seconds),
        (
            "edgeplane fold, float32 (native, 1 thread)",
            20,
            fold_seconds,
        ),
    ] {
        let mut line = common.clone();
        line["impl"] = json!(name);
        line["bytes_per_element"] = json!(bytes_per_element);
        line["seconds"] = json!(secs);
        line["gb_per_s"] = json!((bytes_per_element * n) as f64 / 1e9 / secs);
        println!("{line}");
    }
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
    let (rss_before, _) = workerd::memory(&pgid);

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
    let (rss_after, hwm) = workerd::memory(&pgid);

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

/// The secure-aggregation floor natively: `masks` SDK-PRG masks of `elements` elements removed
/// from one accumulator (`fl_kernel::prg_floor`), the fastest of `runs`. One JSON line.
fn prg(masks: u32, elements: u32, runs: usize) {
    let mut best = f64::INFINITY;
    let mut checksum = 0;
    for _ in 0..runs.max(1) {
        let (seconds, c) = prg_floor(masks, elements);
        best = best.min(seconds);
        checksum = c;
    }
    println!(
        "{}",
        json!({
            "impl": "edgeplane native (SDK PRG, mask removal)",
            "masks": masks, "elements": elements, "runs": runs, "seconds": best,
            "ns_per_element": best * 1e9 / (f64::from(masks) * f64::from(elements)),
            "checksum": checksum,
        })
    );
}

/// The number after `flag` on the command line.
fn option(args: &[String], flag: &str) -> Option<usize> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1)?.parse().ok())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::env::var("FL_BENCH_DIR").unwrap_or_else(|_| ".bench/federation".into());
    match args.get(1).map(String::as_str) {
        Some("make-updates") => make_updates(args.get(2).unwrap_or(&dir)),
        Some("kernel") => {
            let n = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
            let batch = option(&args, "--batch").unwrap_or(1);
            let runs = option(&args, "--best-of").unwrap_or(1);
            kernel(n, args.iter().any(|a| a == "--validate"), batch, runs, &dir)
        }
        Some("bandwidth") => bandwidth(option(&args, "--runs").unwrap_or(10)),
        Some("prg-floor") => {
            let masks = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4);
            let elements = args
                .get(3)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1_000_000);
            prg(masks, elements, option(&args, "--best-of").unwrap_or(1))
        }
        Some("e2e") => {
            let n = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
            let c = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);
            e2e(n, c).await
        }
        _ => {
            eprintln!(
                "usage: federation make-updates DIR | kernel N [--validate] [--batch B] [--best-of R] \
                 | bandwidth [--runs R] | prg-floor MASKS ELEMENTS [--best-of R] | e2e N CONCURRENCY"
            );
            std::process::exit(2);
        }
    }
}
