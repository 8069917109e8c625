//! `simulate round ROUND --devices N`: a whole round on one machine, through the real device
//! protocol, so a new user can watch a round publish (`rounds watch`) without a fleet.
//!
//! Each simulated device does what a real one does:
//! 1. the CLI mints it a bootstrap token with the signed-in credential
//!    (`POST /v1/orgs/{org}/devices/bootstrap-tokens`, needs `devices:write`);
//! 2. it exchanges the token for device credentials (`POST /api/v1/device-auth/bootstrap`);
//! 3. when the round targets a device group, the CLI puts it in the group (explicit members,
//!    or the group's tags);
//! 4. it joins (`…/federation/rounds/{round}/join`), reads the plan (`…/plans/{plan}`: the base
//!    version's tensors), builds a synthetic delta of exactly that layout as a safetensors file,
//!    starts an upload with its metadata, `PUT`s the parts to the signed part URLs (no bearer:
//!    the URL is the authority), and completes it.
//!
//! Ctrl-C winds the run down rather than cutting it off: each device stops at its next step
//! (before joining, before each part, before completing), then the CLI revokes every device it
//! enrolled whose update was not accepted, so no half-finished participant or upload is left
//! in the round (revoking drops a device's in-flight uploads), and exits 130. Accepted updates
//! stand: each is whole. Bootstrap tokens minted but not yet exchanged expire unused.
//!
//! The updates are deterministic: device `i`'s sample count, loss and every delta value come
//! from ChaCha8 seeded with `--seed`, stream `i`, so the same seed gives the same bytes (and
//! SHA-256) on any machine. Identifiers are fresh per run (`sim-<random>-<i>`), as a device has
//! one accepted update per round.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use edgeplane_core::fl::layout::{ElementSpan, ModelLayout, TensorSpec};
use edgeplane_core::fl::round::RoundState;
use edgeplane_core::fl::safetensors::encode_header;
use edgeplane_core::views::federation::{
    BootstrapTokenMinted, DeviceGroupBody, DeviceTokens, GroupSelector, Joined, Plan, Round,
    RoundBody, UpdateAccepted, UploadStarted,
};
use indicatif::{ProgressBar, ProgressStyle};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::api::{decode, json_of, send_plain};
use crate::devices::{add_members, mint_bootstrap_token, revoke_device, set_tags};
use crate::error::{CliError, Result};
use crate::interrupt::{self, OnInterrupt};
use crate::output::is_tty;
use crate::{seg, Ctx};

/// A device's step not taken because of Ctrl-C.
const STOPPED: &str = "stopped by Ctrl-C";

/// The most devices one run simulates (a round admits at most 10,000 participants).
const MAX_DEVICES: u32 = 10_000;
/// The server takes at most this many explicit members per call.
const MEMBERS_PER_CALL: usize = 1000;

#[derive(Debug, clap::Subcommand)]
pub enum SimulateCmd {
    /// N simulated devices enrol, join ROUND and each upload one deterministic synthetic update
    /// through the device protocol. Exit 0 when every update was accepted, 1 otherwise.
    Round {
        round: String,
        /// How many devices.
        #[arg(long, default_value_t = 3,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DEVICES)))]
        devices: u32,
        /// Seeds the synthetic updates: the same seed gives byte-identical updates.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The largest absolute value of a delta element.
        #[arg(long, default_value_t = 0.01)]
        scale: f64,
        /// Devices working at once.
        #[arg(long, default_value_t = 4,
              value_parser = clap::value_parser!(u32).range(1..=64))]
        concurrency: u32,
    },
}

pub fn run(ctx: &Ctx, cmd: SimulateCmd) -> Result<()> {
    match cmd {
        SimulateCmd::Round {
            round,
            devices,
            seed,
            scale,
            concurrency,
        } => {
            if !(scale.is_finite() && scale > 0.0) {
                return Err(CliError::usage("--scale must be a positive number"));
            }
            simulate_round(ctx, &round, devices, seed, scale, concurrency as usize)
        }
    }
}

/// A device's synthetic update, as uploaded.
struct Synthetic {
    bytes: Vec<u8>,
    sha256: String,
    sample_count: i64,
    loss: f64,
}

/// Uniform in [0, 1), from the top 53 bits.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Device `index`'s update for a plan's `element_layout`: a safetensors file whose every
/// element is uniform in [-scale, scale), written in the base version's dtypes.
fn synthetic_update(spans: &[ElementSpan], seed: u64, index: u32, scale: f64) -> Synthetic {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::from(index));
    let sample_count = 1 + (rng.next_u64() % 100) as i64;
    let loss = 0.2 + 0.6 * unit(&mut rng);
    let layout = ModelLayout {
        tensors: spans
            .iter()
            .map(|s| TensorSpec {
                name: s.name.clone(),
                dtype: s.dtype,
                shape: s.shape.clone(),
            })
            .collect(),
    };
    let mut bytes = encode_header(&layout, &BTreeMap::new());
    for span in spans {
        for _ in 0..span.count {
            span.dtype
                .encode(scale * (2.0 * unit(&mut rng) - 1.0), &mut bytes);
        }
    }
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Synthetic {
        bytes,
        sha256,
        sample_count,
        loss,
    }
}

/// Runs `work` on every item, `concurrency` at a time; the results in the items' order.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    concurrency: usize,
    bar: &ProgressBar,
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Vec<Result<R>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<R>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..concurrency.min(items.len()).max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { return };
                let r = work(item);
                bar.inc(1);
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(CliError::network("a device's worker stopped early"))))
        .collect()
}

/// A device's own HTTP: its bearer (or none, for a signed part URL), never the CLI's.
struct DeviceHttp<'a> {
    http: &'a Client,
    base: &'a str,
}

impl DeviceHttp<'_> {
    fn post(&self, bearer: &str, path: &str, body: &Value) -> Result<Value> {
        json_of(send_plain(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(bearer)
                .json(body),
        )?)
    }

    fn get(&self, bearer: &str, path: &str) -> Result<Value> {
        json_of(send_plain(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(bearer),
        )?)
    }

    /// Exchanges a bootstrap token for device credentials.
    fn bootstrap(&self, org_id: &str, minted: &BootstrapTokenMinted) -> Result<DeviceTokens> {
        interrupt::check(STOPPED)?;
        let v = self.post(
            &minted.token,
            "/api/v1/device-auth/bootstrap",
            &json!({"org_id": org_id, "device_identifier": minted.device_identifier}),
        )?;
        decode(v, "device bootstrap")
    }

    /// Join, plan, upload, complete: one update of device `index`.
    fn train(
        &self,
        round: &Round,
        device: &DeviceTokens,
        index: u32,
        seed: u64,
        scale: f64,
    ) -> Result<Value> {
        let token = &device.access_token;
        let round_id = seg(round.id.as_str());
        interrupt::check(STOPPED)?;
        let joined: Joined = decode(
            self.post(
                token,
                &format!("/api/v1/federation/rounds/{round_id}/join"),
                &json!({"device_id": device.device_id, "capabilities": {"simulated": true}}),
            )?,
            "join",
        )?;
        let plan: Plan = decode(
            self.get(
                token,
                &format!("/api/v1/federation/plans/{}", seg(joined.plan_id.as_str())),
            )?,
            "plan",
        )?;
        let update = synthetic_update(&plan.element_layout, seed, index, scale);
        let meta = json!({
            "sample_count": update.sample_count,
            "metrics": {"loss": update.loss},
            "format": "safetensors",
            "sha256": update.sha256,
            "size": update.bytes.len(),
        });
        interrupt::check(STOPPED)?;
        let started: UploadStarted = decode(
            self.post(
                token,
                &format!("/api/v1/federation/rounds/{round_id}/uploads"),
                &json!({"participation_id": joined.participation_id, "meta": meta}),
            )?,
            "upload",
        )?;
        // Part k carries bytes [k·len/parts, (k+1)·len/parts): every part non-empty, in order.
        let (len, parts) = (update.bytes.len(), started.part_urls.len());
        for (k, url) in started.part_urls.iter().enumerate() {
            interrupt::check(STOPPED)?;
            let part = &update.bytes[k * len / parts..(k + 1) * len / parts];
            send_plain(
                self.http
                    .put(url)
                    .header("content-type", "application/octet-stream")
                    .body(part.to_vec()),
            )?;
        }
        interrupt::check(STOPPED)?;
        let accepted: UpdateAccepted = decode(
            self.post(
                token,
                &format!(
                    "/api/v1/federation/rounds/{round_id}/uploads/{}/complete",
                    seg(started.upload_id.as_str())
                ),
                &json!({}),
            )?,
            "complete",
        )?;
        Ok(json!({
            "status": "accepted",
            "participation_id": accepted.participation_id,
            "upload_id": accepted.upload_id,
            "sequence": accepted.sequence,
            "sample_count": accepted.sample_count,
            "loss": update.loss,
            "sha256": update.sha256,
            "bytes": update.bytes.len(),
        }))
    }
}

fn bar(len: usize, msg: &str) -> ProgressBar {
    if !is_tty() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} devices")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(msg.to_owned());
    pb
}

/// Puts the enrolled devices where the round looks for them: its device group, if it has one.
fn join_group(ctx: &Ctx, round: &Round, devices: &[DeviceTokens]) -> Result<()> {
    let Some(group) = &round.device_group else {
        return Ok(());
    };
    let g: DeviceGroupBody = decode(
        ctx.api
            .get(&ctx.org_path(&format!("/device-groups/{}", seg(group.as_str())))?)?,
        "device group",
    )?;
    let ids: Vec<String> = devices.iter().map(|d| d.device_id.to_string()).collect();
    match g.device_group.selector {
        GroupSelector::Explicit => {
            for batch in ids.chunks(MEMBERS_PER_CALL) {
                add_members(ctx, group.as_str(), batch)?;
            }
        }
        GroupSelector::Tags => {
            let tags = g.device_group.tags.unwrap_or_default();
            for id in &ids {
                set_tags(ctx, id, &tags)?;
            }
        }
    }
    Ok(())
}

/// After Ctrl-C: revokes the enrolled devices whose update was not accepted (a revoked
/// device's joined participation and started upload are dropped by the round), and says so.
fn wind_down(ctx: &Ctx, unfinished: &[&DeviceTokens], accepted: usize) -> CliError {
    let mut revoked = 0;
    for d in unfinished {
        match revoke_device(ctx, d.device_id.as_str(), Some("simulation interrupted")) {
            Ok(_) => revoked += 1,
            Err(e) => eprintln!("could not revoke {}: {e}", d.device_id),
        }
    }
    CliError::Interrupted(format!(
        "{revoked} of {} unfinished simulated devices revoked; {accepted} accepted updates stand",
        unfinished.len()
    ))
}

fn simulate_round(
    ctx: &Ctx,
    round: &str,
    n: u32,
    seed: u64,
    scale: f64,
    concurrency: usize,
) -> Result<()> {
    let body: RoundBody = decode(
        ctx.api
            .get(&ctx.org_path(&format!("/rounds/{}", seg(round)))?)?,
        "round",
    )?;
    let round = body.round;
    // Devices enrolled for a round that takes no updates would be left behind for nothing. The
    // server stays the judge: a round that closes meanwhile refuses the joins itself.
    if !matches!(round.state, RoundState::Open | RoundState::Collecting) {
        return Err(CliError::Server {
            status: 200,
            code: format!("round_{}", round.state.as_str()),
            message: format!("round {} takes no more updates", round.id),
            request_id: None,
        });
    }
    let org_id = round.org_id.to_string();
    let nonce = hex::encode(
        edgeplane_core::crypto::random_bytes::<4>()
            .map_err(|_| CliError::usage("the system's random source is unavailable"))?,
    );

    let _scope = interrupt::on_interrupt(OnInterrupt::Record);
    // 1. Bootstrap tokens, minted with the signed-in credential.
    let pb = bar(n as usize, "enrolling");
    let mut minted = Vec::with_capacity(n as usize);
    for i in 0..n {
        interrupt::check("no device had enrolled yet; the bootstrap tokens minted expire unused")?;
        let (_, token) = mint_bootstrap_token(ctx, &format!("sim-{nonce}-{i}"), None, &[])?;
        minted.push(token);
        pb.inc(1);
    }
    pb.finish_and_clear();

    // 2. Each device exchanges its token for device credentials.
    let http = ctx.api.client();
    let device_http = DeviceHttp {
        http: &http,
        base: &ctx.api.base,
    };
    let pb = bar(n as usize, "bootstrapping");
    let enrolled = in_parallel(&minted, concurrency, &pb, |m| {
        device_http.bootstrap(&org_id, m)
    });
    pb.finish_and_clear();
    if interrupt::interrupted() {
        let devices: Vec<&DeviceTokens> = enrolled.iter().flatten().collect();
        return Err(wind_down(ctx, &devices, 0));
    }
    let devices = enrolled
        .into_iter()
        .collect::<Result<Vec<DeviceTokens>>>()?;

    // 3. Into the round's device group, if it has one.
    join_group(ctx, &round, &devices)?;

    // 4. Join, plan, upload, complete.
    let indexed: Vec<(u32, &DeviceTokens)> = (0..n).zip(devices.iter()).collect();
    let pb = bar(n as usize, "training");
    let outcomes = in_parallel(&indexed, concurrency, &pb, |(i, d)| {
        device_http.train(&round, d, *i, seed, scale)
    });
    pb.finish_and_clear();
    if interrupt::interrupted() {
        let unfinished: Vec<&DeviceTokens> = indexed
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| o.is_err())
            .map(|((_, d), _)| *d)
            .collect();
        return Err(wind_down(
            ctx,
            &unfinished,
            outcomes.len() - unfinished.len(),
        ));
    }

    let mut rows = Vec::with_capacity(outcomes.len());
    let mut first_error = None;
    for ((i, d), outcome) in indexed.iter().zip(outcomes) {
        let mut row = match outcome {
            Ok(v) => v,
            Err(e) => {
                let row = json!({"status": "refused", "error": e.to_json()["error"]});
                if first_error.is_none() {
                    first_error = Some(e);
                }
                row
            }
        };
        row["index"] = json!(i);
        row["device_id"] = json!(d.device_id);
        row["device_identifier"] = json!(d.device_identifier);
        rows.push(row);
    }
    let accepted = rows.iter().filter(|r| r["status"] == "accepted").count();
    let result = json!({
        "round_id": round.id,
        "seed": seed,
        "scale": scale,
        "accepted": accepted,
        "refused": rows.len() - accepted,
        "devices": rows,
    });
    ctx.out.list(
        &result,
        &rows,
        &[
            ("#", "index"),
            ("DEVICE", "device_id"),
            ("STATUS", "status"),
            ("SAMPLES", "sample_count"),
            ("SEQ", "sequence"),
            ("SHA256", "sha256"),
            ("ERROR", "error.code"),
        ],
    );
    if !ctx.out.json {
        eprintln!(
            "{accepted} of {n} updates accepted. Follow the round: edgeplane rounds watch {}",
            round.id
        );
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use edgeplane_core::fl::dtype::DType;
    use edgeplane_core::fl::safetensors::{header_len, parse_header};

    use super::*;

    fn spans() -> Vec<ElementSpan> {
        vec![
            ElementSpan {
                name: "dense.weight".into(),
                dtype: DType::F32,
                shape: vec![3, 4],
                offset: 0,
                count: 12,
            },
            ElementSpan {
                name: "dense.bias".into(),
                dtype: DType::F16,
                shape: vec![4],
                offset: 12,
                count: 4,
            },
        ]
    }

    #[test]
    fn the_same_seed_and_device_give_byte_identical_updates() {
        let a = synthetic_update(&spans(), 7, 0, 0.01);
        let b = synthetic_update(&spans(), 7, 0, 0.01);
        assert_eq!(a.bytes, b.bytes);
        assert_eq!((a.sample_count, a.loss), (b.sample_count, b.loss));
        assert_eq!(a.sha256, hex::encode(Sha256::digest(&a.bytes)));
        // Another device, or another seed: another update.
        assert_ne!(synthetic_update(&spans(), 7, 1, 0.01).sha256, a.sha256);
        assert_ne!(synthetic_update(&spans(), 8, 0, 0.01).sha256, a.sha256);
    }

    #[test]
    fn an_update_matches_the_plans_layout_and_stays_within_scale() {
        let u = synthetic_update(&spans(), 3, 2, 0.5);
        let n = header_len(&u.bytes).unwrap() as usize;
        let header = parse_header(&u.bytes[8..8 + n]).unwrap();
        assert_eq!(header.file_len(), u.bytes.len() as u64);
        let base = ModelLayout {
            tensors: spans()
                .into_iter()
                .map(|s| TensorSpec {
                    name: s.name,
                    dtype: s.dtype,
                    shape: s.shape,
                })
                .collect(),
        };
        let starts = header.match_base(&base).unwrap();
        let weight = &u.bytes[starts[0] as usize..starts[0] as usize + 12 * 4];
        let values: Vec<f32> = weight
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert!(values.iter().all(|v| v.abs() <= 0.5), "{values:?}");
        assert!(values.iter().any(|v| *v != 0.0));
        assert!((1..=100).contains(&u.sample_count));
        assert!((0.2..0.8).contains(&u.loss));
    }
}
