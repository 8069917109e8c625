//! Federated-learning test harness: simulated devices speaking the device protocol over HTTP,
//! update files in both wire formats, and an independent f64 reference FedAvg.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{org_path, stack, Client, Resp};

/// A tiny deterministic generator (SplitMix64) so every test's data is reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A model's tensors: (name, shape). Every tensor is F32.
pub type Spec = Vec<(String, Vec<u64>)>;

pub fn tensors(t: &[(&str, Vec<u64>)]) -> Spec {
    t.iter().map(|(n, s)| (n.to_string(), s.clone())).collect()
}

pub fn numel(spec: &Spec) -> usize {
    spec.iter()
        .map(|(_, s)| s.iter().product::<u64>() as usize)
        .sum()
}

/// A safetensors file with F32 tensors in the given order; `values` are flattened in `spec`
/// order. Written by hand (not by the server's code) so the test checks the format itself.
pub fn safetensors_f32(spec: &Spec, values: &[f64], file_order: &[usize]) -> Vec<u8> {
    let mut starts = Vec::new();
    let mut at = 0usize;
    for (_, s) in spec {
        starts.push(at);
        at += s.iter().product::<u64>() as usize;
    }
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    let mut data = Vec::new();
    for &i in file_order {
        let (name, shape) = &spec[i];
        let n = shape.iter().product::<u64>() as usize;
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 4 * n as u64]}),
        );
        for v in &values[starts[i]..starts[i] + n] {
            data.extend_from_slice(&(*v as f32).to_le_bytes());
        }
        offset += 4 * n as u64;
    }
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut h = Value::Object(header).to_string().into_bytes();
    while !(8 + h.len()).is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    out
}

/// Reads an F32 safetensors file back as `spec`-ordered values.
pub fn read_safetensors_f32(bytes: &[u8], spec: &Spec) -> Vec<f64> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out = Vec::new();
    for (name, shape) in spec {
        let t = &header[name];
        assert_eq!(t["dtype"], "F32", "{name}");
        assert_eq!(t["shape"], json!(shape), "{name}");
        let b = t["data_offsets"][0].as_u64().unwrap() as usize;
        let e = t["data_offsets"][1].as_u64().unwrap() as usize;
        for c in data[b..e].chunks_exact(4) {
            out.push(f32::from_le_bytes(c.try_into().unwrap()) as f64);
        }
    }
    out
}

/// A float as Python's `json.dumps` writes it (`NaN`, `Infinity` for the non-finite).
pub fn python_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        format!("{v:?}")
    }
}

/// The Octomil `plaintext_json` envelope as the SDK writes it: `sha256`/`size` over
/// `json.dumps(update)`, which is the `data` text inside the envelope.
pub fn json_envelope(values: &[f64]) -> Vec<u8> {
    let payload = format!(
        "[{}]",
        values
            .iter()
            .map(|v| python_float(*v))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let sha = hex::encode(Sha256::digest(payload.as_bytes()));
    format!(
        "{{\"format\": \"plaintext_json\", \"sha256\": \"{sha}\", \"size\": {}, \"data\": {payload}}}",
        payload.len()
    )
    .into_bytes()
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Splits `len` bytes into `n` parts at odd, uneven boundaries (never empty).
pub fn odd_splits(len: usize, n: usize, rng: &mut Rng) -> Vec<(usize, usize)> {
    assert!(n >= 1 && len >= n);
    let mut cuts: Vec<usize> = Vec::new();
    while cuts.len() < n - 1 {
        let c = 1 + rng.below(len as u64 - 1) as usize;
        if !cuts.contains(&c) {
            cuts.push(c);
        }
    }
    cuts.sort();
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts.into_iter().chain(std::iter::once(len)) {
        out.push((at, c));
        at = c;
    }
    out
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A unique suffix per call (tests share one stack and run in parallel).
pub fn unique(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n}", t % 1_000_000_000_000)
}

/// Registers a model and uploads a base version; returns (model id, base values).
pub fn model_with_base(spec: &Spec, rng: &mut Rng) -> (String, Vec<f64>) {
    let owner = Client::owner_key();
    let m = owner
        .post(&org_path("/models"), &json!({"name": unique("model")}))
        .expect(201)
        .json();
    let model_id = m["model"]["id"].as_str().unwrap().to_owned();
    let base: Vec<f64> = (0..numel(spec)).map(|_| rng.unit()).collect();
    let order: Vec<usize> = (0..spec.len()).collect();
    let file = safetensors_f32(spec, &base, &order);
    let v = upload_version(&owner, &model_id, file.clone())
        .expect(201)
        .json();
    assert_eq!(v["version"]["version"], 1);
    assert_eq!(v["version"]["sha256"], sha256_hex(&file));
    assert_eq!(v["version"]["size_bytes"], file.len());
    // Round-tripped through f32, as the server stores it.
    let base = base.iter().map(|v| *v as f32 as f64).collect();
    (model_id, base)
}

pub fn upload_version(c: &Client, model_id: &str, file: Vec<u8>) -> Resp {
    c.send(
        c.request(
            reqwest::Method::POST,
            &org_path(&format!("/models/{model_id}/versions")),
        )
        .header("content-type", "application/octet-stream")
        .body(file),
    )
}

pub fn create_round(body: Value) -> Value {
    Client::owner_key()
        .post(&org_path("/rounds"), &body)
        .expect(201)
        .json()["round"]
        .clone()
}

/// The signed part URLs of an initiate answer.
pub fn part_urls(initiated: &Value) -> Vec<String> {
    initiated["part_urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_owned())
        .collect()
}

/// Whether the org's round listing (which reads D1) shows round `id` in `state`.
pub fn listed_in_state(id: &str, state: &str) -> bool {
    let listed = Client::owner_key()
        .get(&org_path(&format!("/rounds?state={state}")))
        .expect(200)
        .json();
    listed["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == id)
}

pub fn round(id: &str) -> Value {
    Client::owner_key()
        .get(&org_path(&format!("/rounds/{id}")))
        .expect(200)
        .json()["round"]
        .clone()
}

/// A simulated device holding device credentials.
#[derive(Clone)]
pub struct Device {
    pub id: String,
    pub identifier: String,
    pub access: String,
    pub refresh: String,
    pub client: Client,
}

pub fn bootstrap_token(identifier: &str, extra: Value) -> Value {
    let mut body = json!({"device_identifier": identifier});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    Client::owner_key()
        .post(&org_path("/devices/bootstrap-tokens"), &body)
        .expect(201)
        .json()
}

impl Device {
    pub fn enroll(prefix: &str) -> Device {
        Device::enroll_with(prefix, json!({}))
    }

    /// A device whose token may also send heartbeats.
    pub fn enroll_with_heartbeats(prefix: &str) -> Device {
        Device::enroll_with(
            prefix,
            json!({"scopes": ["devices:write", "heartbeat:write"]}),
        )
    }

    /// Enrolled with a bootstrap token minted with `extra` fields (scopes, lifetimes).
    pub fn enroll_with(prefix: &str, extra: Value) -> Device {
        let identifier = unique(prefix);
        let bt = bootstrap_token(&identifier, extra);
        let r = Client::anonymous()
            .with_bearer(bt["token"].as_str().unwrap())
            .post(
                "/api/v1/device-auth/bootstrap",
                &json!({"org_id": stack().org_id, "device_identifier": identifier}),
            )
            .expect(201)
            .json();
        Device::from_tokens(&r)
    }

    pub fn from_tokens(r: &Value) -> Device {
        let access = r["access_token"].as_str().unwrap().to_owned();
        Device {
            id: r["device_id"].as_str().unwrap().to_owned(),
            identifier: r["device_identifier"].as_str().unwrap().to_owned(),
            refresh: r["refresh_token"].as_str().unwrap().to_owned(),
            client: Client::anonymous().with_bearer(&access),
            access,
        }
    }

    pub fn join(&self, round_id: &str) -> String {
        let pid = unique("p").replace('-', "_");
        let r = self
            .client
            .post(
                &format!("/api/v1/federation/rounds/{round_id}/join"),
                &json!({"participation_id": pid, "device_id": self.id, "capabilities": {"ram_mb": 4096}}),
            )
            .expect(200)
            .json();
        assert_eq!(r["participation_id"], pid.as_str());
        pid
    }

    /// Starts an upload; returns (upload id, part URLs).
    pub fn initiate(&self, round_id: &str, pid: &str, meta: Value, parts: Option<u32>) -> Resp {
        let mut body = json!({"participation_id": pid, "meta": meta});
        if let Some(n) = parts {
            body["part_count"] = json!(n);
        }
        self.client.post(
            &format!("/api/v1/federation/rounds/{round_id}/uploads"),
            &body,
        )
    }

    pub fn put_part(&self, url: &str, bytes: Vec<u8>) -> Resp {
        // Signed part URLs carry their own authority: no bearer.
        let c = Client::anonymous();
        c.send(
            c.request(reqwest::Method::PUT, url)
                .header("content-type", "application/octet-stream")
                .body(bytes),
        )
    }

    pub fn complete(&self, round_id: &str, upload_id: &str, meta: Option<Value>) -> Resp {
        let body = match meta {
            Some(m) => json!({"meta": m, "privacy_proof": null}),
            None => json!({}),
        };
        self.client.post(
            &format!("/api/v1/federation/rounds/{round_id}/uploads/{upload_id}/complete"),
            &body,
        )
    }

    /// The whole device side of one update: initiate, PUT every part (split at odd byte
    /// boundaries), complete. Returns the complete response.
    pub fn submit(&self, round_id: &str, pid: &str, update: &Update, rng: &mut Rng) -> Resp {
        let parts = 1 + rng.below(4) as u32;
        let r = self
            .initiate(round_id, pid, update.meta(), Some(parts))
            .expect(201)
            .json();
        let upload_id = r["upload_id"].as_str().unwrap().to_owned();
        let urls = part_urls(&r);
        assert_eq!(urls.len(), parts as usize);
        for (url, (a, b)) in urls
            .iter()
            .zip(odd_splits(update.bytes.len(), urls.len(), rng))
        {
            self.put_part(url, update.bytes[a..b].to_vec()).expect(200);
        }
        self.complete(round_id, &upload_id, Some(update.meta()))
    }
}

/// One device's update: its delta, weight and wire bytes.
pub struct Update {
    pub delta: Vec<f64>,
    pub samples: i64,
    pub loss: f64,
    pub format: &'static str,
    pub bytes: Vec<u8>,
}

impl Update {
    pub fn new(spec: &Spec, rng: &mut Rng, json: bool, scale: f64) -> Update {
        let delta: Vec<f64> = (0..numel(spec))
            .map(|_| (rng.unit() * scale) as f32 as f64)
            .collect();
        let samples = 1 + rng.below(500) as i64;
        let loss = 0.5 + rng.unit().abs();
        let bytes = if json {
            json_envelope(&delta)
        } else {
            // Tensors in reverse file order: the server must map them by name.
            let order: Vec<usize> = (0..spec.len()).rev().collect();
            safetensors_f32(spec, &delta, &order)
        };
        Update {
            delta,
            samples,
            loss,
            format: if json {
                "plaintext_json"
            } else {
                "safetensors"
            },
            bytes,
        }
    }

    pub fn meta(&self) -> Value {
        json!({
            "sample_count": self.samples,
            "metrics": {"loss": self.loss, "accuracy": 1.0 - self.loss / 2.0},
            "format": self.format,
            "sha256": sha256_hex(&self.bytes),
            "size": self.bytes.len(),
        })
    }
}

/// Weighted FedAvg in f64: base + sum(n_i * s_i * d_i) / sum(n_i * s_i), with
/// s_i = min(1, clip / ||d_i||) when clipping.
pub fn reference_fedavg(base: &[f64], updates: &[&Update], clip: Option<f64>) -> Vec<f64> {
    let mut sum = vec![0.0f64; base.len()];
    let mut total = 0.0f64;
    for u in updates {
        let norm = u.delta.iter().map(|x| x * x).sum::<f64>().sqrt();
        let s = match clip {
            Some(c) if norm > c => c / norm,
            _ => 1.0,
        };
        let w = u.samples as f64 * s;
        total += w;
        for (acc, d) in sum.iter_mut().zip(&u.delta) {
            *acc += w * d;
        }
    }
    base.iter().zip(&sum).map(|(b, s)| b + s / total).collect()
}

/// Norm-wise relative error ||a - b|| / ||b||.
pub fn rel_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den
}

/// Downloads a version's bytes.
pub fn download(model_id: &str, version: &str) -> Vec<u8> {
    let c = Client::owner_key();
    let r = c
        .request(
            reqwest::Method::GET,
            &org_path(&format!("/models/{model_id}/versions/{version}/download")),
        )
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.bytes().unwrap().to_vec()
}

/// Downloads a version as `device` (the device route): the bytes on 200, else the response.
pub fn device_download(
    device: &Device,
    model_id: &str,
    version: &str,
) -> Result<Vec<u8>, Box<Resp>> {
    let r = device
        .client
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/models/{model_id}/versions/{version}/download"),
        )
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().unwrap().to_vec();
    if status == 200 {
        Ok(bytes)
    } else {
        Err(Box::new(Resp {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }))
    }
}
