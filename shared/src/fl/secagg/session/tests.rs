//! Whole secure rounds in process: test clients built from the protocol core's own primitives
//! (X25519 + HKDF keys, Shamir over 2^127 − 1, the SHA-256 PRG, the SDK's quantization, share
//! ciphertexts sealed with AES-256-GCM as the SDK lays them out) talk to the stage machine over
//! SQLite, and the survivors' masked vectors are folded into aggregator shards and unmasked
//! shard by shard. The session holds nothing in memory, so every call here already runs as if
//! the object had been evicted since the one before.

use std::collections::{BTreeMap, BTreeSet};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};

use super::records;
use super::*;
use crate::fl::secagg::field::FieldElement;
use crate::fl::secagg::masked::{self, MaskedSum, QUANTIZATION_STEP};
use crate::fl::secagg::prg::{self, MaskSign};
use crate::fl::secagg::quantize::{dequantize_sum, quantize, CLIPPING_RANGE};
use crate::fl::secagg::relay::{SharePlaintext, NONCE_LEN};
use crate::fl::secagg::shamir::tests::split;
use crate::fl::secagg::shamir::{SK1_CHUNKS, SK1_CHUNK_LEN};
use crate::fl::shard;
use crate::store::testing::MemSql;

/// Elements of the test model: three shards of at most four (the last holds the canary too).
const MODEL_ELEMENTS: u64 = 10;
const MAX_PER_SHARD: u64 = 4;
const STAGE_MS: i64 = 1_000;

fn bytes32(label: &str) -> [u8; 32] {
    Sha256::digest(label.as_bytes()).into()
}

fn element(label: &str) -> FieldElement {
    let digest = bytes32(label);
    let mut wide = [0u8; 16];
    wide.copy_from_slice(&digest[..16]);
    FieldElement::reduce(u128::from_be_bytes(wide))
}

/// A 32-byte big-endian integer mod p = 2^127 − 1, as the SDK shares `rd_seed`: with
/// 2^128 ≡ 2, hi·2^128 + lo ≡ 2·hi + lo.
fn seed_mod_p(seed: &[u8; 32]) -> FieldElement {
    let mut hi = [0u8; 16];
    let mut lo = [0u8; 16];
    hi.copy_from_slice(&seed[..16]);
    lo.copy_from_slice(&seed[16..]);
    let hi = FieldElement::reduce(u128::from_be_bytes(hi));
    hi + hi + FieldElement::reduce(u128::from_be_bytes(lo))
}

fn device(i: usize) -> DeviceId {
    DeviceId::generate(1_000 + i as i64).unwrap()
}

/// A device running SecAgg+ as the SDK's `SecAggPlusClient` does.
struct Client {
    label: String,
    device: DeviceId,
    sk1: [u8; 32],
    pk1: [u8; 32],
    sk2: [u8; 32],
    pk2: [u8; 32],
    /// The seed its self-mask uses. The SDK's fix draws it below p; the stock client's is 32
    /// random bytes, of which only `rd_seed mod p` is shared.
    rd_seed: [u8; 32],
    update: Vec<f64>,
    index: u32,
    /// The shares it received, by sender (its own included).
    received: BTreeMap<u32, SharePlaintext>,
    roster: Vec<RosterEntry>,
}

impl Client {
    fn new(i: usize, stock_seed: bool) -> Self {
        let label = format!("client-{i}");
        let sk1 = bytes32(&format!("{label}-sk1"));
        let sk2 = bytes32(&format!("{label}-sk2"));
        let rd_seed = if stock_seed {
            let seed = bytes32(&format!("{label}-rd"));
            assert!(
                seed[..16].iter().any(|b| *b != 0),
                "the stock seed is above p"
            );
            seed
        } else {
            let mut seed = [0u8; 32];
            seed[16..].copy_from_slice(&element(&format!("{label}-rd")).value().to_be_bytes());
            seed
        };
        let update = (0..MODEL_ELEMENTS)
            .map(|e| {
                // Values in [-3.5, 3.5): most inside the clipping range, some clipped.
                let b = bytes32(&format!("{label}-x{e}"));
                f64::from(u16::from_be_bytes([b[0], b[1]])) / 65536.0 * 7.0 - 3.5
            })
            .collect();
        Self {
            device: device(i),
            pk1: keys::public_key(&sk1).unwrap(),
            pk2: keys::public_key(&sk2).unwrap(),
            sk1,
            sk2,
            rd_seed,
            update,
            index: 0,
            received: BTreeMap::new(),
            roster: Vec::new(),
            label,
        }
    }

    /// Stage 2: Shamir-shares `rd_seed mod p` and `sk1` (three 15-byte chunks) at x = 1..=n and
    /// seals each peer's pair under the key only the two of them can derive.
    fn share_keys(&mut self, index: u32, roster: &[RosterEntry], t: u32) -> Vec<(u32, Vec<u8>)> {
        self.index = index;
        let n = roster.len() as u32;
        for (position, entry) in roster.iter().enumerate() {
            assert_eq!(entry.index, position as u32 + 1, "indices run 1..=n");
        }
        let coefficients = |what: &str| -> Vec<FieldElement> {
            (1..t)
                .map(|k| element(&format!("{}-{what}-c{k}", self.label)))
                .collect()
        };
        let seed_shares = split(seed_mod_p(&self.rd_seed), &coefficients("rd"), n);
        let mut padded = [0u8; SK1_CHUNKS * SK1_CHUNK_LEN];
        padded[..32].copy_from_slice(&self.sk1);
        let chunk_shares: Vec<Vec<Share>> = padded
            .chunks(SK1_CHUNK_LEN)
            .enumerate()
            .map(|(c, chunk)| {
                let mut wide = [0u8; 16];
                wide[1..].copy_from_slice(chunk);
                let secret = FieldElement::reduce(u128::from_be_bytes(wide));
                split(secret, &coefficients(&format!("sk1-{c}")), n)
            })
            .collect();
        let pair = |x: u32| SharePlaintext {
            rd_seed: seed_shares[x as usize - 1],
            sk1: Sk1Share {
                x,
                chunks: [
                    chunk_shares[0][x as usize - 1].y,
                    chunk_shares[1][x as usize - 1].y,
                    chunk_shares[2][x as usize - 1].y,
                ],
            },
        };
        self.received.insert(index, pair(index));
        roster
            .iter()
            .filter(|peer| peer.index != index)
            .map(|peer| {
                let shares = pair(peer.index);
                let mut plaintext = 40u32.to_be_bytes().to_vec();
                plaintext.extend_from_slice(&shares.rd_seed.to_bytes());
                plaintext.extend_from_slice(&shares.sk1.to_bytes());
                let key = keys::share_encryption_key(&self.sk2, &peer.pk2).unwrap();
                let nonce = &bytes32(&format!("{}-nonce-{}", self.label, peer.index))[..NONCE_LEN];
                let sealed = Aes256Gcm::new((&key).into())
                    .encrypt(Nonce::from_slice(nonce), plaintext.as_slice())
                    .unwrap();
                (peer.index, [nonce, &sealed].concat())
            })
            .collect()
    }

    /// Stage 3, first half: opens the relayed shares and takes the roster to mask against.
    fn receive(&mut self, roster: &[RosterEntry], ciphertexts: &[Relayed]) {
        for relayed in ciphertexts {
            let sender = roster.iter().find(|e| e.index == relayed.from).unwrap();
            let key = keys::share_encryption_key(&self.sk2, &sender.pk2).unwrap();
            let opened = ShareCiphertext::parse(&relayed.ciphertext)
                .unwrap()
                .open(&key)
                .unwrap();
            assert_eq!((opened.rd_seed.x, opened.sk1.x), (self.index, self.index));
            self.received.insert(relayed.from, opened);
        }
        self.roster = roster.to_vec();
    }

    /// The update and the canary (0.0), quantized with recorded draws.
    fn quantized(&self) -> Vec<u32> {
        self.update
            .iter()
            .chain([0.0].iter())
            .enumerate()
            .map(|(e, value)| {
                let b = bytes32(&format!("{}-u{e}", self.label));
                let uniform = f64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    / (f64::from(u32::MAX) + 1.0);
                quantize(*value, uniform).unwrap()
            })
            .collect()
    }

    /// Stage 3: `q + PRG(rd_seed) + Σ ±PRG(seed with each peer of the roster)` mod 2^32.
    fn masked(&self) -> Vec<u32> {
        let mut out = self.quantized();
        prg::apply(&self.rd_seed, 0, &mut out, MaskSign::Add);
        for peer in self.roster.iter().filter(|peer| peer.index != self.index) {
            let seed = keys::pairwise_seed(&self.sk1, &peer.pk1).unwrap();
            prg::apply(
                &seed,
                0,
                &mut out,
                keys::pairwise_sign(self.index, peer.index),
            );
        }
        out
    }

    /// Stage 4, as the SDK's `unmask`: the survivors' seed shares, then the dropped's sk1 shares.
    fn reveal(&self, survivors: &[u32], dropped: &[u32]) -> (Vec<u32>, Vec<Vec<u8>>) {
        let mut devices = Vec::new();
        let mut shares = Vec::new();
        for s in survivors {
            devices.push(*s);
            shares.push(
                self.received
                    .get(s)
                    .map(|p| p.rd_seed.to_bytes().to_vec())
                    .unwrap_or_default(),
            );
        }
        for d in dropped {
            devices.push(*d);
            shares.push(
                self.received
                    .get(d)
                    .map(|p| p.sk1.to_bytes().to_vec())
                    .unwrap_or_default(),
            );
        }
        (devices, shares)
    }
}

fn config(threshold: u32, max_devices: u32) -> SessionConfig {
    SessionConfig {
        threshold,
        max_devices,
        stages: StageDurations {
            advertise_keys_ms: STAGE_MS,
            share_keys_ms: STAGE_MS,
            masked_input_ms: STAGE_MS,
            unmask_ms: STAGE_MS,
        },
    }
}

/// Who misses which stage (by client number, 0-based), and whose seed is the stock client's.
#[derive(Default)]
struct Script {
    skip_share_keys: BTreeSet<usize>,
    skip_masked_input: BTreeSet<usize>,
    skip_reveal: BTreeSet<usize>,
    stock_seed: BTreeSet<usize>,
}

/// A round run to its end, as the coordinator and the shards would see it.
struct Played {
    sql: MemSql,
    clients: Vec<Client>,
    shards: Vec<MaskedSum>,
    transitions: Vec<Transition>,
    /// Ciphertexts held while stage 3 was open.
    relayed_during_masking: u64,
    /// The devices stage 3 said had dropped before masking.
    dropped_before_masking: Vec<u32>,
    now: i64,
}

impl Played {
    fn session(&self) -> SecAggSession<'_, MemSql> {
        SecAggSession::open(&self.sql).unwrap()
    }

    fn state(&self) -> State {
        self.session().progress().unwrap().state
    }
}

/// Closes the open stage by its deadline if someone is missing, as the alarm would.
fn alarm_if_open(
    session: &SecAggSession<'_, MemSql>,
    stage: Stage,
    now: &mut i64,
) -> Vec<Transition> {
    if session.progress().unwrap().state != State::Stage(stage) {
        return Vec::new();
    }
    *now += STAGE_MS;
    let reply = session.on_alarm(*now).unwrap();
    assert!(!reply.transitions.is_empty(), "the deadline closes {stage}");
    reply.transitions
}

fn play(n: usize, threshold: u32, script: &Script) -> Played {
    let sql = MemSql::new();
    let mut clients: Vec<Client> = (0..n)
        .map(|i| Client::new(i, script.stock_seed.contains(&i)))
        .collect();
    let model_ranges = shard::plan(MODEL_ELEMENTS, MAX_PER_SHARD).unwrap();
    let mut shards: Vec<MaskedSum> = masked::masked_ranges(&model_ranges)
        .into_iter()
        .map(|range| MaskedSum::new(range).unwrap())
        .collect();
    let mut transitions = Vec::new();
    let mut now = 0;
    let session = SecAggSession::open(&sql).unwrap();
    session.init(&config(threshold, n as u32), now).unwrap();

    // Stage 1: the last advertisement fills the roster and closes the stage at once.
    for (i, client) in clients.iter().enumerate() {
        assert_eq!(
            session.task(&client.device).unwrap(),
            DeviceTask::AdvertiseKeys
        );
        let answer = session
            .advertise(&client.device, &client.pk1, &client.pk2, now)
            .unwrap();
        assert_eq!(answer.reply, i as u32 + 1);
        transitions.extend(answer.transitions);
    }
    assert_eq!(
        session.progress().unwrap().state,
        State::Stage(Stage::ShareKeys)
    );

    // Stage 2.
    for (i, client) in clients.iter_mut().enumerate() {
        if script.skip_share_keys.contains(&i) {
            continue;
        }
        let DeviceTask::ShareKeys { index, roster } = session.task(&client.device).unwrap() else {
            panic!("client {i} should share keys");
        };
        assert_eq!(roster.len(), n);
        let sealed = client.share_keys(index, &roster, threshold);
        let refs: Vec<(u32, &[u8])> = sealed.iter().map(|(to, c)| (*to, c.as_slice())).collect();
        transitions.extend(
            session
                .share_keys(&client.device, &refs, now)
                .unwrap()
                .transitions,
        );
    }
    transitions.extend(alarm_if_open(&session, Stage::ShareKeys, &mut now));

    // Stage 3: each masked vector streams into every shard in windows of three elements.
    let relayed_during_masking = session.ciphertexts_held().unwrap();
    let mut dropped_before_masking = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        if script.skip_share_keys.contains(&i) || script.skip_masked_input.contains(&i) {
            continue;
        }
        let Ok(DeviceTask::MaskInput {
            index,
            roster,
            dropped,
            ciphertexts,
        }) = session.task(&client.device)
        else {
            // The session failed at stage 2.
            break;
        };
        assert_eq!(index, client.index);
        dropped_before_masking = dropped;
        client.receive(&roster, &ciphertexts);
        assert_eq!(
            session.check_masked_input(&client.device, now).unwrap(),
            index
        );
        let vector = client.masked();
        for shard in &mut shards {
            let range = shard.range();
            let slice = &vector[range.start as usize..range.end as usize];
            for (w, window) in slice.chunks(3).enumerate() {
                shard.fold(w * 3, window).unwrap();
            }
        }
        transitions.extend(
            session
                .masked_input(&client.device, now)
                .unwrap()
                .transitions,
        );
    }
    transitions.extend(alarm_if_open(&session, Stage::MaskedInput, &mut now));

    // Stage 4.
    for (i, client) in clients.iter().enumerate() {
        if script.skip_reveal.contains(&i) {
            continue;
        }
        let Ok(DeviceTask::Reveal {
            index,
            survivors,
            dropped,
        }) = session.task(&client.device)
        else {
            continue;
        };
        assert_eq!(index, client.index);
        let (devices, shares) = client.reveal(&survivors, &dropped);
        let shares: Vec<&[u8]> = shares.iter().map(Vec::as_slice).collect();
        transitions.extend(
            session
                .reveal(&client.device, &devices, &shares, now)
                .unwrap()
                .transitions,
        );
    }
    transitions.extend(alarm_if_open(&session, Stage::Unmask, &mut now));

    Played {
        sql,
        clients,
        shards,
        transitions,
        relayed_during_masking,
        dropped_before_masking,
        now,
    }
}

/// The survivors' update, element by element, as each device quantized it and the server
/// de-quantizes one device's value: what the secure average must equal.
fn reference_mean(clients: &[&Client]) -> Vec<f64> {
    let n = clients.len() as f64;
    (0..MODEL_ELEMENTS as usize)
        .map(|e| {
            clients
                .iter()
                .map(|c| dequantize_sum(c.quantized()[e], 1))
                .sum::<f64>()
                / n
        })
        .collect()
}

/// Unmasks every shard as the coordinator would: the canary first, then each range.
fn unmask_all(played: &Played) -> Result<Vec<f64>, UnmaskError> {
    let inputs = played.session().unmask_inputs().unwrap();
    let unmasker = inputs.unmasker()?;
    let canary = masked::canary_index(MODEL_ELEMENTS).unwrap();
    let holder = played
        .shards
        .iter()
        .find_map(|s| s.masked_canary(canary))
        .unwrap();
    masked::check_canary(&unmasker, canary, holder)?;
    let mut average = Vec::new();
    for shard in &played.shards {
        let slice = shard.clone().unmask(&unmasker, canary)?;
        assert_eq!(slice.range().start, average.len() as u64);
        average.extend(slice.averages());
    }
    Ok(average)
}

#[test]
fn ten_devices_with_dropouts_unmask_to_the_survivors_mean_across_shards() {
    // Clients 2 and 7 share keys and then vanish; client 5 masks and never reveals.
    let script = Script {
        skip_masked_input: BTreeSet::from([2, 7]),
        skip_reveal: BTreeSet::from([5]),
        ..Script::default()
    };
    let played = play(10, 6, &script);
    assert_eq!(played.shards.len(), 3);
    assert_eq!(played.state(), State::Complete);
    // Every device shared keys, so all 10·9 ciphertexts were in transit during stage 3.
    assert_eq!(played.relayed_during_masking, 90);
    assert!(played.dropped_before_masking.is_empty());
    assert_eq!(played.session().ciphertexts_held().unwrap(), 0);

    // The transitions name every stage once, and who each closing dropped.
    let closed: Vec<Stage> = played.transitions.iter().map(|t| t.closed).collect();
    assert_eq!(closed, Stage::ALL.to_vec());
    let dropped_at = |stage: Stage| -> Vec<u32> {
        played
            .transitions
            .iter()
            .filter(|t| t.closed == stage)
            .flat_map(|t| t.dropped.iter().map(|d| d.index))
            .collect()
    };
    assert_eq!(dropped_at(Stage::MaskedInput), vec![3, 8]);
    assert_eq!(dropped_at(Stage::Unmask), vec![6]);
    let late = &played.clients[5];
    let progress = played.session().progress().unwrap();
    assert_eq!(
        (
            progress.roster,
            progress.completed.masked_input,
            progress.completed.unmask
        ),
        (10, 8, 7)
    );

    let inputs = played.session().unmask_inputs().unwrap();
    let survivor_indices: Vec<u32> = inputs.survivors.iter().map(|s| s.index).collect();
    assert_eq!(survivor_indices, vec![1, 2, 4, 5, 6, 7, 9, 10]);
    let dropped_indices: Vec<u32> = inputs.dropped.iter().map(|d| d.index).collect();
    assert_eq!(dropped_indices, vec![3, 8]);
    // The silent survivor's seed was rebuilt from the others' shares.
    assert_eq!(inputs.survivors[4].self_mask_seed, late.rd_seed);

    let average = unmask_all(&played).unwrap();
    let survivors: Vec<&Client> = played
        .clients
        .iter()
        .enumerate()
        .filter(|(i, _)| !script.skip_masked_input.contains(i))
        .map(|(_, c)| c)
        .collect();
    assert_eq!(average.len(), MODEL_ELEMENTS as usize);
    for (e, (got, want)) in average.iter().zip(reference_mean(&survivors)).enumerate() {
        assert!((got - want).abs() < 1e-9, "element {e}: {got} vs {want}");
        let clipped: f64 = survivors
            .iter()
            .map(|c| c.update[e].clamp(-CLIPPING_RANGE, CLIPPING_RANGE))
            .sum::<f64>()
            / survivors.len() as f64;
        assert!((got - clipped).abs() <= QUANTIZATION_STEP, "element {e}");
    }
}

#[test]
fn a_device_that_misses_stage_2_is_left_out_of_the_roster_devices_mask_against() {
    let script = Script {
        skip_share_keys: BTreeSet::from([3]),
        ..Script::default()
    };
    let played = play(6, 3, &script);
    assert_eq!(played.state(), State::Complete);
    assert_eq!(played.dropped_before_masking, vec![4]);
    // Ciphertexts to the device that missed stage 2 were dropped with it: 5 senders, 4 peers.
    assert_eq!(played.relayed_during_masking, 20);
    assert_eq!(
        played.session().task(&played.clients[3].device).unwrap(),
        DeviceTask::Dropped {
            missed: Stage::ShareKeys
        }
    );
    let inputs = played.session().unmask_inputs().unwrap();
    // It never shared its sk1, and nobody masked against it: it is neither survivor nor dropped.
    assert_eq!(inputs.survivors.len(), 5);
    assert!(inputs.dropped.is_empty());
    let survivors: Vec<&Client> = played.clients.iter().filter(|c| c.index != 0).collect();
    let average = unmask_all(&played).unwrap();
    for (got, want) in average.iter().zip(reference_mean(&survivors)) {
        assert!((got - want).abs() < 1e-9);
    }
    // Had they masked against stage 2's roster, the canary above would have failed.
    for client in played.clients.iter().filter(|c| c.index != 0) {
        assert!(client.roster.iter().all(|e| e.index != 4));
        assert_eq!(client.roster.len(), 5);
    }
}

#[test]
fn a_round_below_the_threshold_fails_and_unmasks_nothing() {
    // Stage 3: two of five vanish after sharing keys, leaving 3 < t = 4.
    let played = play(
        5,
        4,
        &Script {
            skip_masked_input: BTreeSet::from([0, 1]),
            ..Script::default()
        },
    );
    let failure = SessionFailure::InsufficientParticipants {
        stage: Stage::MaskedInput,
        completed: 3,
        threshold: 4,
    };
    assert_eq!(played.state(), State::Failed(failure));
    assert_eq!(
        failure.round_failure(),
        RoundFailure::InsufficientParticipants
    );
    let session = played.session();
    assert!(matches!(
        session.unmask_inputs(),
        Err(SessionError::NotComplete(State::Failed(_)))
    ));
    // Nobody is asked for a share, nothing relayed is kept, and a late reveal is refused.
    for client in &played.clients {
        assert_eq!(
            session.task(&client.device).unwrap(),
            DeviceTask::Failed(failure)
        );
    }
    assert_eq!(session.ciphertexts_held().unwrap(), 0);
    assert_eq!(records::reveal_counts(&played.sql).unwrap().len(), 0);
    assert!(matches!(
        session.reveal(&played.clients[2].device, &[], &[], played.now),
        Err(SessionError::OutOfStage {
            call: Stage::Unmask,
            ..
        })
    ));

    // Stage 4: everyone masks, but only 3 of 5 reveal with t = 4.
    let played = play(
        5,
        4,
        &Script {
            skip_reveal: BTreeSet::from([1, 4]),
            ..Script::default()
        },
    );
    assert_eq!(
        played.state(),
        State::Failed(SessionFailure::InsufficientParticipants {
            stage: Stage::Unmask,
            completed: 3,
            threshold: 4,
        })
    );
    assert!(played.session().unmask_inputs().is_err());
    assert_eq!(records::reveal_counts(&played.sql).unwrap().len(), 0);

    // Stage 1: the deadline passes with fewer devices than t.
    let sql = MemSql::new();
    let session = SecAggSession::open(&sql).unwrap();
    session.init(&config(3, 10), 0).unwrap();
    for i in 0..2 {
        let c = Client::new(i, false);
        session.advertise(&c.device, &c.pk1, &c.pk2, 10).unwrap();
    }
    let reply = session.on_alarm(STAGE_MS).unwrap();
    assert_eq!(reply.wake_at_ms, None);
    assert_eq!(
        reply.transitions[0].to,
        State::Failed(SessionFailure::InsufficientParticipants {
            stage: Stage::AdvertiseKeys,
            completed: 2,
            threshold: 3,
        })
    );
}

#[test]
fn a_stock_client_whose_seed_is_not_below_p_fails_the_canary_check() {
    let played = play(
        4,
        3,
        &Script {
            stock_seed: BTreeSet::from([2]),
            ..Script::default()
        },
    );
    // The protocol itself ran to completion: only the numbers betray the client.
    assert_eq!(played.state(), State::Complete);
    let unmasker = played
        .session()
        .unmask_inputs()
        .unwrap()
        .unmasker()
        .unwrap();
    let canary = masked::canary_index(MODEL_ELEMENTS).unwrap();
    let last = played.shards.last().unwrap();
    let result = masked::check_canary(&unmasker, canary, last.masked_canary(canary).unwrap());
    assert!(
        matches!(result, Err(UnmaskError::CanaryMismatch { expected, .. }) if expected == 4 * 32768)
    );
    // The shard that holds the canary refuses on its own too; the others cannot tell.
    assert!(matches!(
        last.clone().unmask(&unmasker, canary),
        Err(UnmaskError::CanaryMismatch { .. })
    ));
    assert!(played.shards[0].clone().unmask(&unmasker, canary).is_ok());

    // The same round with the fix passes.
    let fixed = play(4, 3, &Script::default());
    assert!(unmask_all(&fixed).is_ok());
}

#[test]
fn out_of_stage_duplicate_and_malformed_calls_are_refused() {
    let sql = MemSql::new();
    let session = SecAggSession::open(&sql).unwrap();
    let clients: Vec<Client> = (0..3).map(|i| Client::new(i, false)).collect();
    let (a, b, c) = (&clients[0], &clients[1], &clients[2]);
    assert!(matches!(
        session.task(&a.device),
        Err(SessionError::NoSession)
    ));
    assert!(matches!(
        session.init(&config(1, 3), 0),
        Err(SessionError::Config(ConfigError::ThresholdTooLow(1)))
    ));
    session.init(&config(2, 3), 0).unwrap();
    session.init(&config(2, 3), 5).unwrap();
    assert!(matches!(
        session.init(&config(3, 3), 5),
        Err(SessionError::ConfigMismatch)
    ));

    // Stage 1.
    assert!(matches!(
        session.share_keys(&a.device, &[], 1),
        Err(SessionError::OutOfStage {
            call: Stage::ShareKeys,
            state: State::Stage(Stage::AdvertiseKeys)
        })
    ));
    assert!(matches!(
        session.advertise(&a.device, &[0u8; 32], &a.pk2, 1),
        Err(SessionError::WeakKey("pk1"))
    ));
    assert_eq!(
        session
            .advertise(&a.device, &a.pk1, &a.pk2, 1)
            .unwrap()
            .reply,
        1
    );
    assert!(matches!(
        session.advertise(&a.device, &a.pk1, &a.pk2, 2),
        Err(SessionError::Duplicate(Stage::AdvertiseKeys))
    ));
    assert_eq!(
        session.task(&a.device).unwrap(),
        DeviceTask::Wait {
            index: 1,
            answered: Stage::AdvertiseKeys
        }
    );
    session.advertise(&b.device, &b.pk1, &b.pk2, 2).unwrap();
    let full = session.advertise(&c.device, &c.pk1, &c.pk2, 3).unwrap();
    assert_eq!(full.transitions.len(), 1);
    assert_eq!(full.transitions[0].to, State::Stage(Stage::ShareKeys));
    let stranger = Client::new(9, false);
    assert!(matches!(
        session.advertise(&stranger.device, &stranger.pk1, &stranger.pk2, 4),
        Err(SessionError::OutOfStage { .. })
    ));
    assert!(matches!(
        session.task(&stranger.device),
        Err(SessionError::NotInRoster)
    ));

    // Stage 2: the upload must hold one well-formed ciphertext for each peer.
    let good = [0u8; crate::fl::secagg::relay::CIPHERTEXT_LEN];
    let refused = |calls: &[(u32, &[u8])]| session.share_keys(&a.device, calls, 10).unwrap_err();
    assert!(matches!(
        refused(&[(2, &good)]),
        SessionError::Ciphertexts(CiphertextsError::Count {
            expected: 2,
            got: 1
        })
    ));
    assert!(matches!(
        refused(&[(1, &good), (2, &good)]),
        SessionError::Ciphertexts(CiphertextsError::ToSelf)
    ));
    assert!(matches!(
        refused(&[(2, &good), (9, &good)]),
        SessionError::Ciphertexts(CiphertextsError::UnknownPeer(9))
    ));
    assert!(matches!(
        refused(&[(2, &good), (2, &good)]),
        SessionError::Ciphertexts(CiphertextsError::DuplicatePeer(2))
    ));
    assert!(matches!(
        refused(&[(2, &good), (3, &good[1..])]),
        SessionError::Ciphertexts(CiphertextsError::Malformed { to: 3, .. })
    ));
    // Nothing of a refused upload was kept.
    assert_eq!(session.ciphertexts_held().unwrap(), 0);
    session
        .share_keys(&a.device, &[(2, &good), (3, &good)], 10)
        .unwrap();
    assert!(matches!(
        session.share_keys(&a.device, &[(2, &good), (3, &good)], 11),
        Err(SessionError::Duplicate(Stage::ShareKeys))
    ));
    assert!(matches!(
        session.masked_input(&a.device, 11),
        Err(SessionError::OutOfStage {
            call: Stage::MaskedInput,
            ..
        })
    ));
    assert!(matches!(
        session.reveal(&a.device, &[], &[], 11),
        Err(SessionError::OutOfStage {
            call: Stage::Unmask,
            ..
        })
    ));
    session
        .share_keys(&b.device, &[(1, &good), (3, &good)], 12)
        .unwrap();

    // The deadline: a late answer is refused and changes nothing; the alarm closes the stage.
    let deadline = session.progress().unwrap().deadline_at_ms.unwrap();
    assert!(matches!(
        session.share_keys(&c.device, &[(1, &good), (2, &good)], deadline),
        Err(SessionError::DeadlinePassed(Stage::ShareKeys))
    ));
    assert_eq!(
        session.progress().unwrap().state,
        State::Stage(Stage::ShareKeys)
    );
    let early = session.on_alarm(deadline - 1).unwrap();
    assert!(early.transitions.is_empty());
    assert_eq!(early.wake_at_ms, Some(deadline));
    let closed = session.on_alarm(deadline).unwrap();
    assert_eq!(
        closed.transitions[0].dropped,
        vec![DropOut {
            device_id: c.device.clone(),
            index: 3,
            missed: Stage::ShareKeys
        }]
    );
    assert!(matches!(
        session.masked_input(&c.device, deadline + 1),
        Err(SessionError::Dropped {
            missed: Stage::ShareKeys
        })
    ));
    // Ciphertexts addressed to the device that dropped are gone: a↔b only.
    assert_eq!(session.ciphertexts_held().unwrap(), 2);
    let progress = session.progress().unwrap();
    assert_eq!((progress.awaited, progress.dropped), (2, 1));

    // Stage 3 and 4: a share at another holder's x is refused.
    session.masked_input(&a.device, deadline + 1).unwrap();
    assert!(matches!(
        session.masked_input(&a.device, deadline + 2),
        Err(SessionError::Duplicate(Stage::MaskedInput))
    ));
    session.masked_input(&b.device, deadline + 2).unwrap();
    let DeviceTask::Reveal {
        survivors, dropped, ..
    } = session.task(&a.device).unwrap()
    else {
        panic!("stage 4 is open");
    };
    assert_eq!((survivors.clone(), dropped.clone()), (vec![1, 2], vec![]));
    let foreign = Share {
        x: 2,
        y: FieldElement::ONE,
    }
    .to_bytes();
    assert!(matches!(
        session.reveal(&a.device, &[1, 2], &[&foreign, &[]], deadline + 3),
        Err(SessionError::Reveal(RevealError::WrongHolder {
            holder: 1,
            x: 2
        }))
    ));
}

#[test]
fn cleanup_leaves_nothing() {
    let played = play(
        5,
        3,
        &Script {
            skip_masked_input: BTreeSet::from([1]),
            ..Script::default()
        },
    );
    assert_eq!(played.state(), State::Complete);
    assert!(!records::reveal_counts(&played.sql).unwrap().is_empty());
    assert_eq!(records::tables(&played.sql).unwrap().len(), 4);
    played.session().cleanup().unwrap();
    assert!(records::tables(&played.sql).unwrap().is_empty());
    // Again, harmless; and a session opened afterwards is empty.
    SecAggSession { sql: &played.sql }.cleanup().unwrap();
    assert!(matches!(
        played.session().task(&played.clients[0].device),
        Err(SessionError::NoSession)
    ));

    // A session that failed mid-way is removed the same way.
    let failed = play(
        4,
        4,
        &Script {
            skip_share_keys: BTreeSet::from([0]),
            ..Script::default()
        },
    );
    assert!(matches!(failed.state(), State::Failed(_)));
    failed.session().cleanup().unwrap();
    assert!(records::tables(&failed.sql).unwrap().is_empty());
}
