//! Closed-loop load: `concurrency` workers each send requests back to back for `duration` (after
//! `warmup`, whose requests are not counted). Latency is measured per request from send to the
//! last body byte, so a slow body counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request to send. Built per request, so each can differ (ids, signatures).
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub method: reqwest::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl RequestSpec {
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: reqwest::Method::GET,
            url: url.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
        }
    }
}

impl LoadConfig {
    /// `BENCH_SECONDS` / `BENCH_CONCURRENCY` override the defaults for quicker or longer runs.
    pub fn from_env() -> Self {
        let mut c = Self::default();
        if let Some(s) = std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            c.duration = Duration::from_secs(s);
        }
        if let Some(n) = std::env::var("BENCH_CONCURRENCY")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            c.concurrency = n;
        }
        c
    }
}

/// The outcome of one load run.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub name: String,
    pub requests: u64,
    /// Responses whose status was not the expected one, plus transport errors.
    pub errors: u64,
    pub seconds: f64,
    /// Sorted latencies in microseconds of counted requests.
    latencies_us: Vec<u32>,
    /// CPU seconds the stack's workerd processes spent during the measured window, when
    /// `EP_BENCH_PID` names their process group (scripts/bench sets it).
    pub server_cpu_seconds: Option<f64>,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let idx = ((p / 100.0) * (self.latencies_us.len() - 1) as f64).round() as usize;
        self.latencies_us[idx.min(self.latencies_us.len() - 1)] as f64 / 1000.0
    }

    /// Server CPU per counted request, in milliseconds (requests straddling the window's edges
    /// make this approximate by at most `concurrency` requests' worth).
    pub fn server_cpu_ms_per_request(&self) -> Option<f64> {
        let cpu = self.server_cpu_seconds?;
        (self.requests > 0).then(|| cpu * 1000.0 / self.requests as f64)
    }
}

/// Runs the load. `make(i)` builds the i-th request (i counts across all workers);
/// `expect_status` is what a successful response answers.
pub async fn run<F>(name: &str, cfg: &LoadConfig, expect_status: u16, make: F) -> LoadResult
where
    F: Fn(u64) -> RequestSpec + Send + Sync + 'static,
{
    run_together(name, cfg, expect_status, move |i| vec![make(i)]).await
}

/// Sends one request and reads its body; whether it answered `expect_status`.
async fn send(client: &reqwest::Client, spec: RequestSpec, expect_status: u16) -> bool {
    let mut rb = client.request(spec.method, &spec.url);
    for (k, v) in &spec.headers {
        rb = rb.header(k, v);
    }
    if let Some(b) = spec.body {
        rb = rb.body(b);
    }
    match rb.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let body_ok = r.bytes().await.is_ok();
            status == expect_status && body_ok
        }
        Err(_) => false,
    }
}

/// Like [`run`], but one operation is the requests `make(i)` builds, sent at once (as a client
/// fetching what one page shows would): its latency lasts until the last body is read, and it
/// counts as one request. Every one of them must answer `expect_status`.
pub async fn run_together<F>(
    name: &str,
    cfg: &LoadConfig,
    expect_status: u16,
    make: F,
) -> LoadResult
where
    F: Fn(u64) -> Vec<RequestSpec> + Send + Sync + 'static,
{
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(cfg.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default();
    let make = Arc::new(make);
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let end = measure_from + cfg.duration;
    let cpu = std::env::var("EP_BENCH_PID").ok().map(|pgid| {
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let before = crate::workerd::cpu_seconds(&pgid);
            tokio::time::sleep_until(end.into()).await;
            crate::workerd::cpu_seconds(&pgid) - before
        })
    });
    let mut tasks = Vec::new();
    for _ in 0..cfg.concurrency {
        let client = client.clone();
        let make = make.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let mut specs = make(i);
                let t0 = Instant::now();
                let ok = if specs.len() == 1 {
                    match specs.pop() {
                        Some(spec) => send(&client, spec, expect_status).await,
                        None => false,
                    }
                } else {
                    let handles: Vec<_> = specs
                        .into_iter()
                        .map(|spec| {
                            let client = client.clone();
                            tokio::spawn(async move { send(&client, spec, expect_status).await })
                        })
                        .collect();
                    let mut all = true;
                    for h in handles {
                        all &= h.await.unwrap_or(false);
                    }
                    all
                };
                let done = Instant::now();
                if t0 >= measure_from && done <= end {
                    lat.push(done.duration_since(t0).as_micros().min(u32::MAX as u128) as u32);
                    if !ok {
                        errors += 1;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            latencies_us.extend(l);
            errors += e;
        }
    }
    latencies_us.sort_unstable();
    let server_cpu_seconds = match cpu {
        Some(t) => t.await.ok(),
        None => None,
    };
    LoadResult {
        name: name.to_owned(),
        requests: latencies_us.len() as u64,
        errors,
        seconds: cfg.duration.as_secs_f64(),
        latencies_us,
        server_cpu_seconds,
    }
}
