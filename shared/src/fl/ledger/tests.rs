//! Exactly-once, natively: a whole round driven through the ledger and its driver against
//! SQLite (the coordinator's and each shard's own storage), an object store and a D1 stand-in
//! that fail on purpose — an eviction of the coordinator or of any shard, a call refused before
//! it ran, or a call that ran but whose answer was lost — after every step of
//! accept -> fold -> checkpoint -> release -> publish. Whatever fails, the published model must
//! equal the reference average exactly (every update counted once: the test values are sums of
//! small dyadic numbers, exact in `f64`, so a lost or doubled update cannot hide in rounding),
//! the D1 record and its audit events must be written once, and no staged byte may outlive the
//! round.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Range;
use std::rc::Rc;

use futures_executor::block_on;
use sha2::{Digest, Sha256};

use super::records::Ended;
use super::run::{
    Aggregators, DriveError, Driver, Memory, NewVersion, Next, Registry, RemoteError, RoundEnd,
};
use super::{Effects, LedgerError, RoundLedger};
use crate::fl::accumulator::{self, AggError, Aggregator, CHECKPOINT_EVERY};
use crate::fl::dtype::DType;
use crate::fl::layout::{ModelLayout, TensorSpec};
use crate::fl::participation::UploadState;
use crate::fl::pieces::{self, BlobError, Blobs, Piece};
use crate::fl::round::{AggregationSpec, RejectReason, RoundFailure, RoundState};
use crate::fl::safetensors::encode_header;
use crate::fl::shard;
use crate::fl::validate::{UpdateFormat, UpdateMeta, Validator};
use crate::fl::wire::*;
use crate::ids::{DeviceId, ModelId, ModelVersionId, OrgId, PlanId, RoundId, UploadId};
use crate::store::testing::MemSql;
use crate::store::{SqlExec, StoreError};

/// A deterministic generator, so every failing schedule can be replayed by its seed.
struct Rng(Cell<u64>);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(Cell::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1))
    }

    fn next(&self) -> u64 {
        let mut x = self.0.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.set(x);
        x
    }

    fn chance(&self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Default)]
struct SimBlobs {
    objects: RefCell<BTreeMap<String, Vec<u8>>>,
}

impl SimBlobs {
    fn keys_under(&self, prefix: &str) -> Vec<String> {
        self.objects
            .borrow()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }
}

impl Blobs for SimBlobs {
    async fn read(&self, pieces: &[Piece], range: Range<u64>) -> Result<Vec<u8>, BlobError> {
        let objects = self.objects.borrow();
        let mut out = Vec::new();
        for s in pieces::spans(pieces, range.clone()) {
            let key = &pieces[s.index].key;
            let obj = objects
                .get(key)
                .ok_or_else(|| BlobError::Missing(key.clone()))?;
            let lo = s.offset as usize;
            out.extend_from_slice(
                obj.get(lo..lo + s.len as usize)
                    .ok_or_else(|| BlobError::Missing(key.clone()))?,
            );
        }
        if out.len() as u64 != range.end - range.start {
            return Err(BlobError::Missing("range past the end".into()));
        }
        Ok(out)
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), BlobError> {
        self.objects.borrow_mut().insert(key.to_owned(), bytes);
        Ok(())
    }

    async fn delete(&self, keys: Vec<String>) -> Result<(), BlobError> {
        let mut objects = self.objects.borrow_mut();
        for k in keys {
            objects.remove(&k);
        }
        Ok(())
    }
}

/// How likely each kind of failure is, in percent per call.
#[derive(Clone, Copy, Default)]
struct Faults {
    evict_shard: u64,
    fail_before: u64,
    lose_reply: u64,
}

struct SimShard {
    sql: MemSql,
    /// Replaced by a fresh one on an eviction (an `Rc`, so a call in flight keeps its own).
    agg: RefCell<Rc<Aggregator>>,
    /// Every fold that changed the in-memory sum, in order (`None` marks an eviction).
    trace: RefCell<Vec<Option<i64>>>,
}

struct SimShards<'a> {
    shards: Vec<SimShard>,
    blobs: &'a SimBlobs,
    rng: &'a Rng,
    faults: Cell<Faults>,
}

fn remote(e: AggError) -> RemoteError {
    RemoteError::retryable(e.to_string())
}

impl SimShards<'_> {
    fn before(&self, k: usize) -> Result<(), RemoteError> {
        let f = self.faults.get();
        if self.rng.chance(f.evict_shard) {
            *self.shards[k].agg.borrow_mut() = Rc::new(Aggregator::new());
            self.shards[k].trace.borrow_mut().push(None);
        }
        if self.rng.chance(f.fail_before) {
            return Err(RemoteError::retryable("shard unavailable"));
        }
        Ok(())
    }

    fn after<T>(&self, r: Result<T, AggError>) -> Result<T, RemoteError> {
        let r = r.map_err(remote)?;
        if self.rng.chance(self.faults.get().lose_reply) {
            return Err(RemoteError::retryable("reply lost"));
        }
        Ok(r)
    }
}

impl Aggregators for SimShards<'_> {
    async fn status(&self, k: usize, req: &StatusRequest) -> Result<AggStatus, RemoteError> {
        self.before(k)?;
        let s = &self.shards[k];
        let r = s.agg.borrow().status(&s.sql, req.len);
        self.after(r)
    }

    async fn fold(&self, k: usize, req: &FoldRequest) -> Result<FoldReply, RemoteError> {
        self.before(k)?;
        let s = &self.shards[k];
        let agg = s.agg.borrow().clone();
        let r = agg.fold(&s.sql, self.blobs, req).await;
        if let Ok(FoldReply { applied: true, .. }) = &r {
            s.trace.borrow_mut().push(Some(req.seq));
        }
        self.after(r)
    }

    async fn publish(&self, k: usize, req: &PublishRequest) -> Result<PublishReply, RemoteError> {
        self.before(k)?;
        let s = &self.shards[k];
        let agg = s.agg.borrow().clone();
        let r = agg.publish(&s.sql, self.blobs, req).await;
        self.after(r)
    }

    async fn drop_all(&self, k: usize) -> Result<(), RemoteError> {
        self.before(k)?;
        let s = &self.shards[k];
        let r = s.agg.borrow().drop_all(&s.sql);
        self.after(r)
    }
}

/// D1 as far as a round is concerned: its end, the versions, and the audit events, with the
/// same guard the worker's statements have (an end is written once).
#[derive(Default)]
struct SimRegistry {
    ends: RefCell<BTreeMap<RoundId, String>>,
    versions: RefCell<Vec<NewVersion>>,
    audit: RefCell<Vec<String>>,
    mirrored: RefCell<Vec<RoundState>>,
    /// The devices' history, as D1 got it with each end.
    participations: RefCell<Vec<crate::fl::history::ParticipationSummary>>,
    fail_before: Cell<u32>,
    lose_reply: Cell<u32>,
}

impl Registry for SimRegistry {
    async fn mirror(&self, _cfg: &RoundConfig, state: RoundState) -> Result<(), RemoteError> {
        self.mirrored.borrow_mut().push(state);
        Ok(())
    }

    async fn record_end(
        &self,
        cfg: &RoundConfig,
        end: &RoundEnd<'_>,
        participations: &[crate::fl::history::ParticipationSummary],
    ) -> Result<(), RemoteError> {
        if self.fail_before.get() > 0 {
            self.fail_before.set(self.fail_before.get() - 1);
            return Err(RemoteError::retryable("D1 unavailable"));
        }
        let mut ends = self.ends.borrow_mut();
        if !ends.contains_key(&cfg.round_id) {
            let (kind, actions): (&str, Vec<&str>) = match end {
                RoundEnd::Published(v) => {
                    self.versions.borrow_mut().push((*v).clone());
                    (
                        "published",
                        vec!["round.published", "model_version.created"],
                    )
                }
                RoundEnd::Other { ended, .. } => match ended {
                    Ended::Cancelled { .. } => ("cancelled", vec!["round.cancelled"]),
                    Ended::InsufficientUpdates { .. } => {
                        ("insufficient_updates", vec!["round.insufficient_updates"])
                    }
                    Ended::Failed { .. } => ("failed", vec!["round.failed"]),
                    Ended::Published { .. } => ("published", vec![]),
                },
            };
            ends.insert(cfg.round_id.clone(), kind.to_owned());
            self.participations
                .borrow_mut()
                .extend_from_slice(participations);
            self.audit
                .borrow_mut()
                .extend(actions.into_iter().map(str::to_owned));
        }
        if self.lose_reply.get() > 0 {
            self.lose_reply.set(self.lose_reply.get() - 1);
            return Err(RemoteError::retryable("reply lost"));
        }
        Ok(())
    }
}

/// One device's update: a delta per element and its sample count.
#[derive(Clone)]
struct Update {
    delta: Vec<f64>,
    samples: i64,
    format: UpdateFormat,
}

fn layout() -> ModelLayout {
    ModelLayout {
        tensors: vec![
            TensorSpec {
                name: "w".into(),
                dtype: DType::F32,
                shape: vec![3, 3],
            },
            TensorSpec {
                name: "b".into(),
                dtype: DType::F32,
                shape: vec![4],
            },
        ],
    }
}

fn safetensors_file(layout: &ModelLayout, values: &[f64]) -> Vec<u8> {
    let mut out = encode_header(layout, &BTreeMap::new());
    let mut at = 0;
    for t in &layout.tensors {
        for v in &values[at..at + t.numel() as usize] {
            t.dtype.encode(*v, &mut out);
        }
        at += t.numel() as usize;
    }
    out
}

/// The Octomil SDK's envelope (`json.dumps` spacing).
fn envelope(values: &[f64]) -> Vec<u8> {
    let inner: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    let payload = format!("[{}]", inner.join(", "));
    let sha = hex::encode(Sha256::digest(payload.as_bytes()));
    format!(
        "{{\"format\": \"plaintext_json\", \"sha256\": \"{sha}\", \"size\": {}, \"data\": {payload}}}",
        payload.len()
    )
    .into_bytes()
}

const BASE: [f64; 13] = [
    1.0, 2.0, -1.0, 0.5, 0.25, 3.0, -2.0, 4.0, 0.0, 1.5, -0.5, 2.5, 8.0,
];

struct World<'a> {
    coord: MemSql,
    memory: RefCell<Memory>,
    blobs: &'a SimBlobs,
    shards: SimShards<'a>,
    registry: SimRegistry,
    rng: &'a Rng,
    /// Percent chance of "evicting" the coordinator (its memory) before a step, and of the
    /// object dying between a decision and its effects.
    coordinator_faults: u64,
    now: Cell<i64>,
    cfg: RoundConfig,
    /// Completes that only finished a validation done while the parts streamed in.
    finished_without_reading: Cell<u32>,
}

impl<'a> World<'a> {
    fn new(blobs: &'a SimBlobs, rng: &'a Rng, target: u32, min: u32, max: u32) -> Self {
        Self::with(blobs, rng, target, min, max, layout(), &BASE)
    }

    fn with(
        blobs: &'a SimBlobs,
        rng: &'a Rng,
        target: u32,
        min: u32,
        max: u32,
        layout: ModelLayout,
        base: &[f64],
    ) -> Self {
        let base_bytes = safetensors_file(&layout, base);
        let header_len = base_bytes.len() - layout.total_bytes() as usize;
        let mut starts = Vec::new();
        let mut at = header_len as u64;
        for t in &layout.tensors {
            starts.push(at);
            at += t.byte_len();
        }
        block_on(blobs.put("models/base", base_bytes.clone())).unwrap();
        let ranges = shard::plan(layout.total_elements(), 5).unwrap();
        let cfg = RoundConfig {
            round_id: RoundId::generate(1).unwrap(),
            org_id: OrgId::generate(1).unwrap(),
            model_id: ModelId::generate(1).unwrap(),
            base_version_id: ModelVersionId::generate(1).unwrap(),
            base_version: 1,
            plan_id: PlanId::generate(1).unwrap(),
            layout,
            base_pieces: vec![Piece {
                key: "models/base".into(),
                size: base_bytes.len() as u64,
            }],
            base_tensor_starts: starts,
            shards: ranges.iter().map(|r| (r.start, r.end)).collect(),
            target,
            min,
            max,
            deadline_at_ms: 1_000_000,
            aggregation: AggregationSpec {
                algorithm: "fedavg".into(),
                clip_norm: None,
                noise_multiplier: None,
                max_sample_count: None,
            },
        };
        let shards = SimShards {
            shards: ranges
                .iter()
                .map(|_| SimShard {
                    sql: MemSql::new(),
                    agg: RefCell::new(Rc::new(Aggregator::new())),
                    trace: RefCell::new(Vec::new()),
                })
                .collect(),
            blobs,
            rng,
            faults: Cell::new(Faults::default()),
        };
        let w = World {
            coord: MemSql::new(),
            memory: RefCell::new(Memory::default()),
            blobs,
            shards,
            registry: SimRegistry::default(),
            rng,
            coordinator_faults: 0,
            now: Cell::new(1_000),
            cfg,
            finished_without_reading: Cell::new(0),
        };
        w.ledger().init(&w.cfg).unwrap();
        w
    }

    fn ledger(&self) -> RoundLedger<'_, MemSql> {
        RoundLedger::open(&self.coord).unwrap()
    }

    fn tick_clock(&self) -> i64 {
        self.now.set(self.now.get() + 1);
        self.now.get()
    }

    /// Maybe "evicts" the coordinator: its in-memory cursors are gone, its storage stays.
    fn maybe_evict(&self) {
        if self.rng.chance(self.coordinator_faults) {
            *self.memory.borrow_mut() = Memory::default();
        }
    }

    fn with_driver<T>(
        &self,
        f: impl FnOnce(&Driver<'_, MemSql, SimShards<'a>, SimBlobs, SimRegistry>) -> T,
    ) -> T {
        self.maybe_evict();
        let memory = self.memory.borrow();
        let d = Driver {
            ledger: self.ledger(),
            shards: &self.shards,
            blobs: self.blobs,
            registry: &self.registry,
            memory: &memory,
        };
        f(&d)
    }

    /// Carries out a decision's effects, unless the object "dies" first (then the alarm's
    /// next tick and the end's cleanup must make up for it).
    /// Revokes `device` in the round, as the gateway does, and applies the effects.
    fn revoke(&self, device: &DeviceId) {
        let fx = self
            .ledger()
            .revoke_device(&DeviceRequest {
                device_id: device.clone(),
            })
            .unwrap();
        self.effects(fx);
    }

    fn effects(&self, fx: Effects) {
        if self.rng.chance(self.coordinator_faults) {
            return;
        }
        let _ = self.with_driver(|d| block_on(d.apply(&fx)));
        if fx.pump {
            let _ = self.with_driver(|d| block_on(d.pump()));
        }
        if fx.close_now {
            let _ = self.alarm();
        }
    }

    fn alarm(&self) -> Result<Next, DriveError> {
        let now = self.tick_clock();
        self.with_driver(|d| block_on(d.tick(now)))
    }

    /// Runs the alarm until the round has ended and been recorded and cleaned, as the runtime
    /// would (it re-arms after every failure).
    fn settle(&self) {
        for _ in 0..10_000 {
            let r = self.ledger().round().unwrap().unwrap();
            if r.state.is_terminal() && r.recorded && r.cleaned {
                return;
            }
            let _ = self.alarm();
        }
        panic!("the round never settled");
    }

    /// A device's whole protocol: join, initiate, PUT every part, complete (validated by the
    /// real validator over the staged bytes).
    fn upload(&self, device: &DeviceId, u: &Update) -> Result<Outcome, LedgerError> {
        let l = self.ledger();
        let pid = ParticipationId::parse(&format!("p-{}", &device.as_str()[4..16])).unwrap();
        let now = self.tick_clock();
        let (_, fx) = l.join(
            &JoinRequest {
                participation_id: pid.clone(),
                device_id: device.clone(),
                capabilities: serde_json::json!({}),
            },
            now,
        )?;
        self.effects(fx);
        let bytes = match u.format {
            UpdateFormat::Safetensors => safetensors_file(&self.cfg.layout, &u.delta),
            UpdateFormat::PlaintextJson => envelope(&u.delta),
        };
        let meta = UpdateMeta {
            sample_count: u.samples,
            metrics: BTreeMap::from([("loss".to_string(), 0.5)]),
            format: u.format,
            sha256: hex::encode(Sha256::digest(&bytes)),
            size: bytes.len() as u64,
        };
        let upload_id = UploadId::generate(now).unwrap();
        let (init, fx) = l.initiate(
            &InitiateRequest {
                upload_id: upload_id.clone(),
                participation_id: pid,
                device_id: device.clone(),
                meta: meta.clone(),
                part_count: Some(3),
            },
            self.tick_clock(),
        )?;
        self.effects(fx);
        let per = bytes.len().div_ceil(init.parts as usize);
        let chunks: Vec<&[u8]> = bytes.chunks(per).collect();
        // Mostly in order (validated while streaming); sometimes the last part first (then
        // `complete` validates from storage).
        let mut order: Vec<usize> = (0..chunks.len()).collect();
        if self.rng.chance(25) {
            order.rotate_right(1);
        }
        for n in order {
            self.put_part(&upload_id, n as u32, chunks[n])?;
        }
        self.complete(device, &upload_id)
    }

    /// One part PUT as the gateway does it: the grant, the bytes stored, and (for the next part
    /// in order) the validation continued over exactly these bytes.
    fn put_part(&self, upload_id: &UploadId, n: u32, chunk: &[u8]) -> Result<(), LedgerError> {
        let l = self.ledger();
        let req = PartRequest {
            upload_id: upload_id.clone(),
            part: n,
        };
        let grant = l.part_grant(&req, self.tick_clock())?;
        assert!(chunk.len() as u64 <= grant.max_bytes);
        let stream_state = grant.stream.map(|s| {
            let mut v = match &s.state {
                Some(saved) => Validator::resume(&s.meta, &s.layout, s.shard_starts.clone(), saved)
                    .expect("a saved validation resumes"),
                None => Validator::new(&s.meta, &s.layout, s.shard_starts.clone()),
            };
            let _ = v.feed(chunk);
            v.save()
        });
        let key = format!("staging/{}/{}/{n:05}", self.cfg.round_id, upload_id);
        block_on(self.blobs.put(&key, chunk.to_vec())).unwrap();
        let rec = l.part_done(
            &PartDone {
                upload_id: upload_id.clone(),
                part: n,
                key,
                size: chunk.len() as u64,
                stream_state,
            },
            self.tick_clock(),
        )?;
        assert!(rec.delete.is_empty());
        Ok(())
    }

    fn complete(&self, device: &DeviceId, upload_id: &UploadId) -> Result<Outcome, LedgerError> {
        let l = self.ledger();
        let (begin, fx) = l.complete_begin(
            &CompleteBegin {
                upload_id: upload_id.clone(),
                device_id: device.clone(),
                meta: None,
            },
            self.tick_clock(),
        )?;
        self.effects(fx);
        let verdict = match begin {
            CompleteBeginReply::Done { outcome } => return Ok(outcome),
            CompleteBeginReply::Finish {
                meta,
                layout,
                shard_starts,
                state,
                ..
            } => {
                self.finished_without_reading
                    .set(self.finished_without_reading.get() + 1);
                Validator::resume(&meta, &layout, shard_starts, &state.unwrap_or_default())
                    .expect("a saved validation resumes")
                    .finish()
            }
            CompleteBeginReply::Validate {
                meta,
                pieces,
                layout,
                shard_starts,
            } => {
                let bytes = block_on(self.blobs.read(&pieces, 0..pieces::total(&pieces))).unwrap();
                let mut v = Validator::new(&meta, &layout, shard_starts);
                v.feed(&bytes).and_then(|_| v.finish())
            }
        };
        let (outcome, fx) = l.complete_finish(
            &CompleteFinish {
                upload_id: upload_id.clone(),
                verdict,
            },
            self.tick_clock(),
        )?;
        self.effects(fx);
        Ok(outcome)
    }

    /// The published model's values, read back through its recorded pieces.
    fn published(&self) -> Vec<f64> {
        let versions = self.registry.versions.borrow();
        assert_eq!(versions.len(), 1, "exactly one version recorded");
        let v = &versions[0];
        let bytes = block_on(self.blobs.read(&v.pieces, 0..v.size)).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&bytes)), v.sha256);
        let data = &bytes[bytes.len() - self.cfg.layout.total_bytes() as usize..];
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .collect()
    }
}

/// Deltas that are small dyadic rationals: every weighted sum is exact in `f64`.
fn updates(n: usize, rng: &Rng) -> Vec<Update> {
    (0..n)
        .map(|i| Update {
            delta: (0..13)
                .map(|_| (rng.next() % 33) as f64 / 8.0 - 2.0)
                .collect(),
            samples: 1 + (rng.next() % 6) as i64,
            format: if i % 3 == 2 {
                UpdateFormat::PlaintextJson
            } else {
                UpdateFormat::Safetensors
            },
        })
        .collect()
}

fn reference(base: &[f64], updates: &[Update]) -> Vec<f64> {
    let total: f64 = updates.iter().map(|u| u.samples as f64).sum();
    (0..base.len())
        .map(|j| {
            let s: f64 = updates.iter().map(|u| u.samples as f64 * u.delta[j]).sum();
            (base[j] + s * (1.0 / total)) as f32 as f64
        })
        .collect()
}

fn devices(n: usize) -> Vec<DeviceId> {
    (0..n)
        .map(|i| DeviceId::generate(i as i64 + 7).unwrap())
        .collect()
}

/// Each shard's fold trace must restart, after an eviction, exactly after its last checkpoint
/// (folds checkpoint at multiples of [`CHECKPOINT_EVERY`]), and otherwise fold every sequence
/// number once, in order, up to the last accepted one.
fn assert_replay_is_exact(w: &World<'_>, accepted: i64) {
    for (k, s) in w.shards.shards.iter().enumerate() {
        let mut last = 0;
        let mut evicted = false;
        for step in s.trace.borrow().iter() {
            match step {
                None => evicted = true,
                Some(seq) => {
                    let expect = if evicted {
                        last - last % CHECKPOINT_EVERY + 1
                    } else {
                        last + 1
                    };
                    assert_eq!(*seq, expect, "shard {k} folded {seq} out of turn");
                    last = *seq;
                    evicted = false;
                }
            }
        }
        assert_eq!(last, accepted, "shard {k} folded through {last}");
    }
}

fn run_round(seed: u64, faults: Faults, coordinator_faults: u64, n: usize) {
    let rng = Rng::new(seed);
    let blobs = SimBlobs::default();
    let mut w = World::new(&blobs, &rng, n as u32, 1, n as u32 + 2);
    w.coordinator_faults = coordinator_faults;
    w.shards.faults.set(faults);
    let ups = updates(n, &rng);
    for (d, u) in devices(n).iter().zip(&ups) {
        let out = w.upload(d, u).unwrap();
        assert!(
            matches!(out, Outcome::Accepted { .. }),
            "seed {seed}: {out:?}"
        );
    }
    w.settle();
    let r = w.ledger().round().unwrap().unwrap();
    assert_eq!(r.state, RoundState::Published, "seed {seed}");
    assert_eq!(r.accepted, n as i64);
    assert_eq!(w.published(), reference(&BASE, &ups), "seed {seed}");
    assert_eq!(
        *w.registry.audit.borrow(),
        vec!["round.published", "model_version.created"],
        "seed {seed}: the end is recorded once"
    );
    assert!(blobs.keys_under("staging/").is_empty(), "seed {seed}");
    for s in &w.shards.shards {
        assert!(s.sql.one("SELECT 1 FROM meta", &[]).unwrap().is_none());
    }
    assert_replay_is_exact(&w, n as i64);
}

#[test]
fn a_round_without_failures_publishes_the_exact_average() {
    run_round(1, Faults::default(), 0, 20);
}

#[test]
fn evictions_lost_replies_and_refusals_anywhere_never_lose_or_double_an_update() {
    for seed in 0..60 {
        run_round(
            seed,
            Faults {
                evict_shard: 15,
                fail_before: 10,
                lose_reply: 10,
            },
            20,
            12 + (seed % 9) as usize,
        );
    }
}

/// A crash of the coordinator after every single step, one schedule per step: the n-th
/// decision's effects never run, so only the alarm and the end's cleanup recover them.
#[test]
fn a_crash_after_each_step_is_recovered() {
    for crash_at in 0..40u64 {
        let rng = Rng::new(crash_at);
        let blobs = SimBlobs::default();
        let w = World::new(&blobs, &rng, 10, 1, 12);
        let ups = updates(10, &rng);
        let steps = Cell::new(0u64);
        for (d, u) in devices(10).iter().zip(&ups) {
            // Crash exactly at the `crash_at`-th decision: count effects calls.
            let before = steps.get();
            steps.set(before + 1);
            if before == crash_at {
                *w.memory.borrow_mut() = Memory::default();
                for s in &w.shards.shards {
                    *s.agg.borrow_mut() = Rc::new(Aggregator::new());
                    s.trace.borrow_mut().push(None);
                }
            }
            w.upload(d, u).unwrap();
        }
        w.settle();
        assert_eq!(w.published(), reference(&BASE, &ups), "crash at {crash_at}");
        assert_replay_is_exact(&w, 10);
    }
}

/// Publication survives a lost D1 answer (written, reply lost) and a refused one: the version
/// and its audit events exist once.
#[test]
fn publication_is_recorded_once_when_d1_fails_or_its_answer_is_lost() {
    let rng = Rng::new(3);
    let blobs = SimBlobs::default();
    let w = World::new(&blobs, &rng, 4, 1, 4);
    w.registry.fail_before.set(2);
    w.registry.lose_reply.set(2);
    let ups = updates(4, &rng);
    for (d, u) in devices(4).iter().zip(&ups) {
        w.upload(d, u).unwrap();
    }
    w.settle();
    assert_eq!(w.published(), reference(&BASE, &ups));
    assert_eq!(w.registry.audit.borrow().len(), 2);
    // Another alarm after the end changes nothing.
    assert_eq!(w.alarm().unwrap(), Next::Never);
    assert_eq!(w.registry.versions.borrow().len(), 1);
}

#[test]
fn repeated_completes_count_once() {
    let rng = Rng::new(5);
    let blobs = SimBlobs::default();
    let w = World::new(&blobs, &rng, 3, 1, 3);
    let ups = updates(2, &rng);
    let ds = devices(2);
    let first = w.upload(&ds[0], &ups[0]).unwrap();
    let Outcome::Accepted { seq, .. } = first.clone() else {
        panic!("{first:?}")
    };
    assert_eq!(seq, 1);
    let l = w.ledger();
    let upload = l
        .round()
        .unwrap()
        .map(|_| {
            super::records::accepted_upload(&w.coord, 1)
                .unwrap()
                .unwrap()
                .id
        })
        .unwrap();
    // complete again, and a stale finish arriving late: the same outcome, nothing counted twice.
    assert_eq!(w.complete(&ds[0], &upload).unwrap(), first);
    let (again, fx) = l
        .complete_finish(
            &CompleteFinish {
                upload_id: upload.clone(),
                verdict: Err((RejectReason::Malformed, "late".into())),
            },
            w.tick_clock(),
        )
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(fx, Effects::default());
    assert_eq!(l.round().unwrap().unwrap().accepted, 1);
    // The same device cannot get a second update in.
    let err = l
        .initiate(
            &InitiateRequest {
                upload_id: UploadId::generate(9).unwrap(),
                participation_id: ParticipationId::parse(&format!("p-{}", &ds[0].as_str()[4..16]))
                    .unwrap(),
                device_id: ds[0].clone(),
                meta: UpdateMeta {
                    sample_count: 1,
                    metrics: BTreeMap::new(),
                    format: UpdateFormat::Safetensors,
                    sha256: "0".repeat(64),
                    size: 10,
                },
                part_count: None,
            },
            w.tick_clock(),
        )
        .unwrap_err();
    assert!(matches!(err, LedgerError::Refused(e) if e.status() == 409));
    w.upload(&ds[1], &ups[1]).unwrap();
    assert_eq!(l.round().unwrap().unwrap().accepted, 2);
}

fn requester() -> Requester {
    Requester {
        actor_type: "user".into(),
        actor_id: "usr_1".into(),
        ip: None,
        user_agent: None,
        request_id: Some("req_1".into()),
    }
}

/// Defect 8: a cancel whose D1 write fails is still a cancel; retrying it records it once, and
/// the alarm records it even if nobody retries.
#[test]
fn cancel_is_idempotent_and_recorded_once_even_when_d1_fails() {
    let rng = Rng::new(8);
    let blobs = SimBlobs::default();
    let w = World::new(&blobs, &rng, 5, 1, 5);
    let ups = updates(2, &rng);
    for (d, u) in devices(2).iter().zip(&ups) {
        w.upload(d, u).unwrap();
    }
    w.registry.fail_before.set(1);
    let l = w.ledger();
    let (reply, fx) = l.cancel(&requester(), w.tick_clock()).unwrap();
    assert_eq!(
        reply,
        CancelReply {
            previous: RoundState::Collecting,
            recorded: false
        }
    );
    assert!(!fx.release.is_empty());
    w.effects(fx);
    // The first record attempt fails (D1 refused): the object is cancelled, D1 is not yet.
    assert!(w.with_driver(|d| block_on(d.record())).is_err());
    assert!(w.registry.ends.borrow().is_empty());
    // A retried cancel answers the same, and (D1 back) records it.
    let (again, fx) = l.cancel(&requester(), w.tick_clock()).unwrap();
    assert_eq!(again.previous, RoundState::Collecting);
    assert!(!again.recorded);
    assert_eq!(fx, Effects::default());
    w.with_driver(|d| block_on(d.record())).unwrap();
    let (third, _) = l.cancel(&requester(), w.tick_clock()).unwrap();
    assert!(third.recorded);
    w.settle();
    assert_eq!(*w.registry.audit.borrow(), vec!["round.cancelled"]);
    assert!(blobs.keys_under("staging/").is_empty());
    // Devices are refused from the moment of the cancel.
    let late = w.upload(&devices(3)[2], &ups[0]).unwrap_err();
    assert!(matches!(late, LedgerError::Refused(e) if e.status() == 409));
    // A published round cannot be cancelled.
    let blobs2 = SimBlobs::default();
    let w2 = World::new(&blobs2, &rng, 1, 1, 1);
    w2.upload(&devices(1)[0], &ups[0]).unwrap();
    w2.settle();
    let err = w2.ledger().cancel(&requester(), 10).unwrap_err();
    assert!(matches!(err, LedgerError::Refused(e) if e.status() == 409));
}

#[test]
fn the_deadline_publishes_with_the_minimum_or_ends_insufficient() {
    let rng = Rng::new(11);
    let ups = updates(3, &rng);
    // Two of a minimum of two: publish at the deadline.
    let blobs = SimBlobs::default();
    let w = World::new(&blobs, &rng, 5, 2, 5);
    for (d, u) in devices(2).iter().zip(&ups) {
        w.upload(d, u).unwrap();
    }
    w.now.set(w.cfg.deadline_at_ms);
    w.settle();
    assert_eq!(w.published(), reference(&BASE, &ups[..2]));
    // One of a minimum of two: insufficient, nothing published, staging gone.
    let blobs = SimBlobs::default();
    let w = World::new(&blobs, &rng, 5, 2, 5);
    w.upload(&devices(1)[0], &ups[0]).unwrap();
    // An upload left half way is abandoned by the end.
    w.now.set(w.cfg.deadline_at_ms);
    w.settle();
    let r = w.ledger().round().unwrap().unwrap();
    assert_eq!(r.state, RoundState::InsufficientUpdates);
    assert_eq!(
        *w.registry.audit.borrow(),
        vec!["round.insufficient_updates"]
    );
    assert!(w.registry.versions.borrow().is_empty());
    assert!(blobs.keys_under("staging/").is_empty());
    assert!(blobs
        .keys_under("models/")
        .iter()
        .all(|k| k == "models/base"));
}

/// Shards evicted while the coordinator stays up: a long deadline lets every shard's object go
/// idle and lose the folds since its last checkpoint, while the coordinator (kept alive by
/// progress reads) still holds the cursors it cached. Publishing must notice the shards are
/// behind, ask them where they are and fold the missing updates again, not retry forever.
#[test]
fn shards_evicted_before_the_deadline_are_folded_again_and_the_round_publishes() {
    let rng = Rng::new(12);
    let ups = updates(2, &rng);
    let blobs = SimBlobs::default();
    let w = World::new(&blobs, &rng, 5, 2, 5);
    for (d, u) in devices(2).iter().zip(&ups) {
        w.upload(d, u).unwrap();
    }
    // Every update folded into every shard, with no checkpoint yet (fewer than
    // CHECKPOINT_EVERY folds), and the coordinator's cursors cached.
    assert_eq!(w.with_driver(|d| block_on(d.pump())).unwrap(), 2);
    for shard in &w.shards.shards {
        *shard.agg.borrow_mut() = Rc::new(Aggregator::new());
        shard.trace.borrow_mut().push(None);
    }
    w.now.set(w.cfg.deadline_at_ms);
    w.settle();
    assert_eq!(w.published(), reference(&BASE, &ups));
    assert_replay_is_exact(&w, 2);
}

/// Defect 9: a float16 base of 20.0 plus an averaged delta of 65504 is not a float16. The round
/// fails with a reason; no version is published and no piece of it is left behind.
#[test]
fn a_result_that_overflows_the_base_dtype_fails_the_round() {
    let rng = Rng::new(13);
    let blobs = SimBlobs::default();
    let f16 = ModelLayout {
        tensors: vec![TensorSpec {
            name: "h".into(),
            dtype: DType::F16,
            shape: vec![2],
        }],
    };
    let w = World::with(&blobs, &rng, 1, 1, 1, f16, &[20.0, 1.0]);
    let up = Update {
        delta: vec![65504.0, 1.0],
        samples: 1,
        format: UpdateFormat::Safetensors,
    };
    w.upload(&devices(1)[0], &up).unwrap();
    w.settle();
    let r = w.ledger().round().unwrap().unwrap();
    assert_eq!(r.state, RoundState::Failed);
    assert_eq!(r.failure, Some(RoundFailure::NonFiniteResult));
    assert_eq!(*w.registry.audit.borrow(), vec!["round.failed"]);
    assert!(w.registry.versions.borrow().is_empty());
    assert!(blobs
        .keys_under("models/")
        .iter()
        .all(|k| k == "models/base"));
    let p = w.ledger().progress().unwrap();
    assert_eq!(p.failure, Some(RoundFailure::NonFiniteResult));
    assert_eq!(p.published_version_id, None);
}

/// Defect 9's other half: a self-reported sample count is counted at most at the round's cap.
#[test]
fn a_huge_sample_count_is_weighted_at_the_cap() {
    let rng = Rng::new(17);
    let blobs = SimBlobs::default();
    let w = World::new(&blobs, &rng, 2, 1, 2);
    let mut ups = updates(2, &rng);
    ups[0].samples = 10_000_000;
    for (d, u) in devices(2).iter().zip(&ups) {
        w.upload(d, u).unwrap();
    }
    w.settle();
    let mut capped = ups.clone();
    capped[0].samples = crate::fl::round::DEFAULT_SAMPLE_CAP as i64;
    assert_eq!(w.published(), reference(&BASE, &capped));
    assert_eq!(w.ledger().progress().unwrap().capped_weights, 1);
}

/// Defect 4: parts are bounded by the declared size, each and in total.
#[test]
fn parts_cannot_exceed_the_declared_size() {
    let rng = Rng::new(19);
    let blobs = SimBlobs::default();
    let w = World::new(&blobs, &rng, 2, 1, 2);
    let l = w.ledger();
    let d = &devices(1)[0];
    let pid = ParticipationId::parse("p-quota").unwrap();
    l.join(
        &JoinRequest {
            participation_id: pid.clone(),
            device_id: d.clone(),
            capabilities: serde_json::json!({}),
        },
        5,
    )
    .unwrap();
    let upload_id = UploadId::generate(6).unwrap();
    let (init, _) = l
        .initiate(
            &InitiateRequest {
                upload_id: upload_id.clone(),
                participation_id: pid,
                device_id: d.clone(),
                meta: UpdateMeta {
                    sample_count: 1,
                    metrics: BTreeMap::new(),
                    format: UpdateFormat::Safetensors,
                    sha256: "0".repeat(64),
                    size: 4096,
                },
                part_count: Some(4096),
            },
            7,
        )
        .unwrap();
    assert_eq!(init.parts, 4096);
    let req = |part| PartRequest {
        upload_id: upload_id.clone(),
        part,
    };
    // 4,096 bytes in 4,096 parts: each part may carry one byte.
    assert_eq!(l.part_grant(&req(0), 8).unwrap().max_bytes, 1);
    let done = |part, size| PartDone {
        upload_id: upload_id.clone(),
        part,
        key: format!("k{part}-{size}"),
        size,
        stream_state: None,
    };
    let err = l.part_done(&done(0, 16 * 1024 * 1024), 9).unwrap_err();
    assert!(matches!(err, LedgerError::Refused(e) if e.status() == 413));
    l.part_done(&done(0, 1), 9).unwrap();
    // Replacing a part frees its old bytes for the replacement (and names the old object).
    assert_eq!(l.part_grant(&req(0), 10).unwrap().max_bytes, 1);
    assert_eq!(
        l.part_done(&done(0, 1), 10).unwrap().delete,
        Vec::<String>::new()
    );
    // One upload of 100 bytes in two parts: a 99-byte first part leaves one byte.
    let (init, _) = {
        let l2 = &l;
        let pid = ParticipationId::parse("p-quota").unwrap();
        l2.initiate(
            &InitiateRequest {
                upload_id: UploadId::generate(11).unwrap(),
                participation_id: pid,
                device_id: d.clone(),
                meta: UpdateMeta {
                    sample_count: 1,
                    metrics: BTreeMap::new(),
                    format: UpdateFormat::Safetensors,
                    sha256: "0".repeat(64),
                    size: 100,
                },
                part_count: Some(2),
            },
            11,
        )
        .unwrap()
    };
    let u2 = init.upload_id;
    let part = |n, size: u64| PartDone {
        upload_id: u2.clone(),
        part: n,
        key: format!("u2-{n}"),
        size,
        stream_state: None,
    };
    assert_eq!(
        l.part_grant(
            &PartRequest {
                upload_id: u2.clone(),
                part: 0
            },
            12
        )
        .unwrap()
        .max_bytes,
        99
    );
    l.part_done(&part(0, 99), 12).unwrap();
    let second = l
        .part_grant(
            &PartRequest {
                upload_id: u2.clone(),
                part: 1,
            },
            13,
        )
        .unwrap();
    assert_eq!(second.max_bytes, 1);
    assert!(l.part_done(&part(1, 2), 13).is_err());
    // The replaced first upload was abandoned when the second began.
    let first = super::records::upload(&w.coord, &upload_id)
        .unwrap()
        .unwrap();
    assert_eq!(first.state, UploadState::Abandoned);
}

/// A revoked device's in-flight upload is rejected and its staged bytes released; an accepted
/// update it sent before still counts.
#[test]
fn revoking_a_device_rejects_its_in_flight_work() {
    let rng = Rng::new(23);
    let blobs = SimBlobs::default();
    let w = World::new(&blobs, &rng, 3, 1, 3);
    let ds = devices(2);
    let ups = updates(2, &rng);
    w.upload(&ds[0], &ups[0]).unwrap();
    w.revoke(&ds[0]);
    w.revoke(&ds[1]);
    let err = w.upload(&ds[1], &ups[1]).unwrap_err();
    assert!(matches!(err, LedgerError::Refused(e) if e.status() == 401));
    assert_eq!(w.ledger().round().unwrap().unwrap().accepted, 1);
}

/// A revoked participation gives its place back: a full round admits another device, which
/// uploads and publishes it; a second device beyond `max` is still refused.
#[test]
fn a_revoked_participation_frees_its_place_in_a_full_round() {
    let rng = Rng::new(31);
    let blobs = SimBlobs::default();
    let w = World::new(&blobs, &rng, 2, 2, 2);
    let ds = devices(4);
    let ups = updates(3, &rng);
    w.upload(&ds[0], &ups[0]).unwrap();
    let join = |d: &DeviceId| {
        w.ledger().join(
            &JoinRequest {
                participation_id: ParticipationId::parse(&format!("p-{}", &d.as_str()[4..16]))
                    .unwrap(),
                device_id: d.clone(),
                capabilities: serde_json::json!({}),
            },
            w.tick_clock(),
        )
    };
    w.effects(join(&ds[1]).unwrap().1);
    let full = join(&ds[2]).unwrap_err();
    assert!(
        matches!(full, LedgerError::Refused(ref e) if e.status() == 409),
        "{full:?}"
    );
    w.revoke(&ds[1]);
    w.upload(&ds[2], &ups[2]).unwrap();
    let round = w.ledger().round().unwrap().unwrap();
    assert_eq!(round.accepted, 2);
    let full = join(&ds[3]).unwrap_err();
    assert!(
        matches!(full, LedgerError::Refused(ref e) if e.status() == 409),
        "{full:?}"
    );
}

/// An unknown stored state is an error, never a default.
#[test]
fn unknown_stored_states_are_errors() {
    let rng = Rng::new(29);
    let blobs = SimBlobs::default();
    let w = World::new(&blobs, &rng, 3, 1, 3);
    w.coord
        .exec("UPDATE round SET state = 'paused' WHERE id = 1", &[])
        .unwrap();
    assert!(matches!(w.ledger().round(), Err(StoreError::Corrupt(_))));
}

/// Defect 2: a checkpoint reloads by streaming its rows into the sum; it never collects them.
#[test]
fn a_checkpoint_reloads_without_collecting_its_rows() {
    /// An executor that refuses to collect the checkpoint table.
    struct NoCollect(MemSql);
    impl SqlExec for NoCollect {
        fn query(
            &self,
            sql: &str,
            args: &[crate::store::Value],
        ) -> Result<Vec<crate::store::Row>, StoreError> {
            if sql.contains("FROM acc") {
                return Err(StoreError::Exec("collected the checkpoint".into()));
            }
            self.0.query(sql, args)
        }

        fn for_each(
            &self,
            sql: &str,
            args: &[crate::store::Value],
            each: &mut dyn FnMut(crate::store::Row) -> Result<(), StoreError>,
        ) -> Result<(), StoreError> {
            self.0.for_each(sql, args, each)
        }
    }
    let sql = NoCollect(MemSql::new());
    let len = accumulator::ROW_ELEMENTS as u64 * 2 + 17;
    let mut s = accumulator::load(&sql, len).unwrap();
    for (i, v) in s.values.iter_mut().enumerate() {
        *v = i as f64 * 0.5;
    }
    s.folded_through = 9;
    accumulator::checkpoint(&sql, &mut s).unwrap();
    let back = accumulator::load(&sql, len).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.checkpointed_through, 9);
    // A checkpoint of another length is refused, not zero-filled.
    assert!(accumulator::load(&sql, len + 1).is_err());
}

/// Issue 15's ingest: parts that arrive in order are validated while they stream in, so
/// `complete` only finishes (reads nothing); a part out of order or a replaced part falls back
/// to one read at `complete`; both paths reach the same verdicts and the same result.
#[test]
fn in_order_parts_are_validated_as_they_stream_in() {
    let rng = Rng::new(31);
    let blobs = SimBlobs::default();
    let w = World::new(&blobs, &rng, 40, 1, 40);
    let ups = updates(40, &rng);
    for (d, u) in devices(40).iter().zip(&ups) {
        w.upload(d, u).unwrap();
    }
    let streamed = w.finished_without_reading.get();
    // About three in four uploads sent their parts in order.
    assert!((20..40).contains(&streamed), "{streamed}");
    w.settle();
    assert_eq!(w.published(), reference(&BASE, &ups));

    // A replaced part that was already validated breaks the stream: complete reads instead,
    // and a bad byte in the replacement is caught.
    let blobs = SimBlobs::default();
    let w = World::new(&blobs, &rng, 2, 1, 2);
    let d = &devices(1)[0];
    let l = w.ledger();
    let pid = ParticipationId::parse("p-replace").unwrap();
    l.join(
        &JoinRequest {
            participation_id: pid.clone(),
            device_id: d.clone(),
            capabilities: serde_json::json!({}),
        },
        5,
    )
    .unwrap();
    let bytes = safetensors_file(&w.cfg.layout, &ups[0].delta);
    let meta = UpdateMeta {
        sample_count: 1,
        metrics: BTreeMap::new(),
        format: UpdateFormat::Safetensors,
        sha256: hex::encode(Sha256::digest(&bytes)),
        size: bytes.len() as u64,
    };
    let upload_id = UploadId::generate(6).unwrap();
    l.initiate(
        &InitiateRequest {
            upload_id: upload_id.clone(),
            participation_id: pid,
            device_id: d.clone(),
            meta,
            part_count: Some(2),
        },
        7,
    )
    .unwrap();
    let half = bytes.len().div_ceil(2);
    w.put_part(&upload_id, 0, &bytes[..half]).unwrap();
    w.put_part(&upload_id, 1, &bytes[half..]).unwrap();
    let mut corrupt = bytes[..half].to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x40;
    w.put_part(&upload_id, 0, &corrupt).unwrap();
    let before = w.finished_without_reading.get();
    let out = w.complete(d, &upload_id).unwrap();
    assert_eq!(
        w.finished_without_reading.get(),
        before,
        "complete had to read"
    );
    assert!(
        matches!(
            out,
            Outcome::Rejected {
                reason: RejectReason::Sha256Mismatch,
                ..
            }
        ),
        "{out:?}"
    );
}

/// The live picture a round's page shows: who is late, what was refused and by whom, and the
/// counts over time, as the ledger's own records say.
#[test]
fn progress_names_the_stragglers_the_refused_devices_and_the_counts_over_time() {
    use crate::fl::participation::ParticipationState;
    let rng = Rng::new(23);
    let blobs = SimBlobs::default();
    let w = World::new(&blobs, &rng, 3, 1, 4);
    let ds = devices(3);
    let mut ups = updates(2, &rng);
    assert!(matches!(
        w.upload(&ds[0], &ups[0]).unwrap(),
        Outcome::Accepted { .. }
    ));
    ups[1].delta[0] = f64::NAN;
    assert!(matches!(
        w.upload(&ds[1], &ups[1]).unwrap(),
        Outcome::Rejected {
            reason: RejectReason::NonFinite,
            ..
        }
    ));
    // The third joins and sends nothing.
    let (_, fx) = w
        .ledger()
        .join(
            &JoinRequest {
                participation_id: ParticipationId::parse("p-late").unwrap(),
                device_id: ds[2].clone(),
                capabilities: serde_json::json!({}),
            },
            w.tick_clock(),
        )
        .unwrap();
    w.effects(fx);

    let p = w.ledger().progress().unwrap();
    assert_eq!(p.stragglers.total, 2);
    let late: Vec<(&DeviceId, ParticipationState, u64)> = p
        .stragglers
        .longest_waiting
        .iter()
        .map(|s| (&s.device_id, s.state, s.rejected_updates))
        .collect();
    assert_eq!(
        late,
        vec![
            (&ds[1], ParticipationState::Joined, 1),
            (&ds[2], ParticipationState::Joined, 0)
        ]
    );
    assert_eq!(p.rejections.len(), 1);
    assert_eq!(p.rejections[0].reason, RejectReason::NonFinite);
    assert_eq!(p.rejections[0].count, 1);
    assert_eq!(p.rejections[0].latest[0].device_id, ds[1]);
    assert!(!p.rejections[0].latest[0].message.is_empty());
    let end = p.participation.last().unwrap();
    assert_eq!((end.joined, end.uploaded, end.accepted), (3, 2, 1));
    assert_eq!(p.uploaded, 2);
    assert!(p
        .participation
        .windows(2)
        .all(|w| w[0].at < w[1].at && w[0].joined <= w[1].joined));

    // Cancelled, the round's end carries each device's history to D1, once, with the refusal.
    use crate::fl::history::ParticipationOutcome;
    w.registry.fail_before.set(1);
    let (_, fx) = w.ledger().cancel(&requester(), w.tick_clock()).unwrap();
    w.effects(fx);
    assert!(w.with_driver(|d| block_on(d.record())).is_err());
    assert!(w.registry.participations.borrow().is_empty());
    w.with_driver(|d| block_on(d.record())).unwrap();
    w.with_driver(|d| block_on(d.record())).unwrap();
    let recorded = w.registry.participations.borrow();
    let outcomes: Vec<(&DeviceId, ParticipationOutcome)> =
        recorded.iter().map(|p| (&p.device_id, p.outcome)).collect();
    assert_eq!(
        outcomes,
        vec![
            (&ds[0], ParticipationOutcome::Accepted),
            (&ds[1], ParticipationOutcome::Rejected),
            (&ds[2], ParticipationOutcome::Dropped),
        ]
    );
    let refusal = recorded[1].last_rejection.as_ref().unwrap();
    assert_eq!(refusal.reason, RejectReason::NonFinite);
    assert_eq!(refusal.message, p.rejections[0].latest[0].message);
    assert!(recorded[0].accepted_at_ms.is_some() && recorded[0].last_rejection.is_none());
}
