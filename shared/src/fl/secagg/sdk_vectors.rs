//! The protocol core against vectors made by the Octomil SDK's own functions (`sdk_vectors.json`,
//! written by `tests/sdk/secagg_vectors.py`; the SDK version is recorded in the file). Every
//! check is bit for bit: PRG streams, key agreements, Shamir shares and their encodings, a share
//! ciphertext, quantization under recorded random draws, and two whole simulated rounds: one of
//! five devices with the seed fix and a dropout, which must unmask to the exact quantized sum,
//! and one of stock clients, which the canary check must catch.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::keys::{pairwise_seed, public_key, share_encryption_key};
use super::prg;
use super::quantize::quantize;
use super::relay::ShareCiphertext;
use super::reveal::parse_reveal;
use super::shamir::{
    reconstruct, reconstruct_self_mask_seed, reconstruct_sk1, ReconstructError, Share, Sk1Share,
};
use super::unmask::{Dropped, Survivor, UnmaskError, Unmasker};

const VECTORS: &str = include_str!("sdk_vectors.json");

#[derive(Deserialize)]
struct Vectors {
    octomil: String,
    prg: Vec<PrgVector>,
    key_agreement: KeyAgreement,
    shamir: ShamirVector,
    share_ciphertext: CiphertextVector,
    quantization: QuantizationVector,
    round_seed_fixed: Round,
    round_stock: Round,
}

#[derive(Deserialize)]
struct PrgVector {
    seed: String,
    values: Vec<u32>,
}

#[derive(Deserialize)]
struct KeyAgreement {
    sk_a: String,
    pk_a: String,
    sk_b: String,
    pk_b: String,
    pairwise_seed: String,
    pairwise_mask: Vec<u32>,
    share_key: String,
}

#[derive(Deserialize)]
struct ShamirVector {
    threshold: usize,
    secret: String,
    shares: Vec<String>,
    sk1: String,
    sk1_shares: Vec<String>,
}

#[derive(Deserialize)]
struct CiphertextVector {
    key: String,
    plaintext: String,
    ciphertext: String,
}

#[derive(Deserialize)]
struct QuantizationVector {
    values: Vec<f64>,
    uniforms: Vec<f64>,
    quantized: Vec<u32>,
}

#[derive(Deserialize)]
struct Round {
    threshold: usize,
    devices: Vec<Device>,
    ciphertexts: Vec<Relayed>,
    survivors: Vec<u32>,
    dropped: Vec<u32>,
    masked: BTreeMap<u32, Vec<u32>>,
    unmask: BTreeMap<u32, Vec<Reveal>>,
    expected_quantized_sum: Vec<u32>,
}

#[derive(Deserialize)]
struct Device {
    index: u32,
    pk1: String,
    pk2: String,
    sk1: String,
    sk2: String,
    rd_seed: String,
}

#[derive(Deserialize)]
struct Relayed {
    from: u32,
    to: u32,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Reveal {
    of: u32,
    share: String,
}

fn vectors() -> Vectors {
    serde_json::from_str(VECTORS).unwrap()
}

fn bytes(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap()
}

fn key(text: &str) -> [u8; 32] {
    bytes(text).try_into().unwrap()
}

#[test]
fn the_vectors_come_from_the_pinned_sdk() {
    let pinned = include_str!("../../../../tests/sdk/requirements.txt");
    let version = vectors().octomil;
    assert!(pinned
        .lines()
        .any(|line| line == format!("octomil=={version}")));
}

#[test]
fn prg_matches_the_sdk_for_whole_streams_and_slices() {
    for vector in vectors().prg {
        let seed = bytes(&vector.seed);
        assert_eq!(prg::elements(&seed, 0, vector.values.len()), vector.values);
        let (start, end) = (3usize, vector.values.len() - 1);
        assert_eq!(
            prg::elements(&seed, start as u32, end - start),
            vector.values[start..end]
        );
    }
}

#[test]
fn key_agreements_match_the_sdk() {
    let v = vectors().key_agreement;
    let (sk_a, sk_b) = (key(&v.sk_a), key(&v.sk_b));
    assert_eq!(public_key(&sk_a).unwrap(), key(&v.pk_a));
    assert_eq!(public_key(&sk_b).unwrap(), key(&v.pk_b));
    let seed = pairwise_seed(&sk_a, &key(&v.pk_b)).unwrap();
    assert_eq!(seed, key(&v.pairwise_seed));
    assert_eq!(pairwise_seed(&sk_b, &key(&v.pk_a)).unwrap(), seed);
    // The mask is the PRG over all 32 bytes of the seed.
    assert_eq!(
        prg::elements(&seed, 0, v.pairwise_mask.len()),
        v.pairwise_mask
    );
    assert_eq!(
        share_encryption_key(&sk_a, &key(&v.pk_b)).unwrap(),
        key(&v.share_key)
    );
}

#[test]
fn shamir_shares_parse_encode_and_rebuild_as_the_sdk_does() {
    let v = vectors().shamir;
    let shares: Vec<Share> = v
        .shares
        .iter()
        .map(|s| Share::parse(&bytes(s)).unwrap())
        .collect();
    for (share, text) in shares.iter().zip(&v.shares) {
        assert_eq!(share.to_bytes().to_vec(), bytes(text));
    }
    let secret = u128::from_str_radix(&v.secret, 16).unwrap();
    for window in shares.windows(v.threshold) {
        assert_eq!(reconstruct(window, v.threshold).unwrap().value(), secret);
    }
    assert_eq!(
        reconstruct(&shares[..v.threshold - 1], v.threshold),
        Err(ReconstructError::TooFewShares { have: 2, need: 3 })
    );

    let sk1_shares: Vec<Sk1Share> = v
        .sk1_shares
        .iter()
        .map(|s| Sk1Share::parse(&bytes(s)).unwrap())
        .collect();
    for (share, text) in sk1_shares.iter().zip(&v.sk1_shares) {
        assert_eq!(share.to_bytes().to_vec(), bytes(text));
    }
    assert_eq!(
        reconstruct_sk1(&sk1_shares[2..], v.threshold).unwrap(),
        key(&v.sk1)
    );
    assert!(matches!(
        reconstruct_sk1(&sk1_shares[..2], v.threshold),
        Err(ReconstructError::TooFewShares { .. })
    ));
}

#[test]
fn a_share_ciphertext_opens_with_the_key_the_sdk_derives() {
    let v = vectors();
    let c = v.share_ciphertext;
    let opened = ShareCiphertext::parse(&bytes(&c.ciphertext))
        .unwrap()
        .open(&key(&c.key))
        .unwrap();
    let plaintext = bytes(&c.plaintext);
    assert_eq!(plaintext[..4], 40u32.to_be_bytes());
    assert_eq!(opened.rd_seed.to_bytes().to_vec(), plaintext[4..44]);
    assert_eq!(opened.sk1.to_bytes().to_vec(), plaintext[44..]);
    assert_eq!(
        opened.rd_seed.to_bytes().to_vec(),
        bytes(&v.shamir.shares[1])
    );
}

#[test]
fn quantization_matches_the_sdk_under_its_recorded_draws() {
    let v = vectors().quantization;
    let ours: Vec<u32> = v
        .values
        .iter()
        .zip(&v.uniforms)
        .map(|(value, uniform)| quantize(*value, *uniform).unwrap())
        .collect();
    assert_eq!(ours, v.quantized);
}

/// Plays the server's part in a recorded round: checks and opens every relayed ciphertext as its
/// receiver would, takes the survivors' reveals, rebuilds the secrets and unmasks the sum in two
/// ranges. Returns the unmasker and the unmasked sum.
fn unmask_round(round: &Round) -> (Unmasker, Vec<u32>) {
    let device = |index: u32| &round.devices[index as usize - 1];
    // Every relayed ciphertext is well formed and carries the receiver's shares of the sender's
    // secrets, the same bytes the receiver later reveals.
    let mut received: BTreeMap<(u32, u32), (Share, Sk1Share)> = BTreeMap::new();
    for relayed in &round.ciphertexts {
        let receiver = device(relayed.to);
        let share_key =
            share_encryption_key(&key(&receiver.sk2), &key(&device(relayed.from).pk2)).unwrap();
        let opened = ShareCiphertext::parse(&bytes(&relayed.ciphertext))
            .unwrap()
            .open(&share_key)
            .unwrap();
        assert_eq!((opened.rd_seed.x, opened.sk1.x), (relayed.to, relayed.to));
        received.insert((relayed.from, relayed.to), (opened.rd_seed, opened.sk1));
    }

    let mut seed_shares: BTreeMap<u32, Vec<Share>> = BTreeMap::new();
    let mut sk1_shares: BTreeMap<u32, Vec<Sk1Share>> = BTreeMap::new();
    for (holder, reveals) in &round.unmask {
        let devices: Vec<u32> = reveals.iter().map(|reveal| reveal.of).collect();
        let raw: Vec<Vec<u8>> = reveals.iter().map(|reveal| bytes(&reveal.share)).collect();
        let raw: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
        let parsed =
            parse_reveal(*holder, &round.survivors, &round.dropped, &devices, &raw).unwrap();
        for (device, share) in parsed.self_mask_seed_shares {
            if device != *holder {
                assert_eq!(received[&(device, *holder)].0, share);
            }
            seed_shares.entry(device).or_default().push(share);
        }
        for (device, share) in parsed.sk1_shares {
            assert_eq!(received[&(device, *holder)].1, share);
            sk1_shares.entry(device).or_default().push(share);
        }
    }
    assert_eq!(seed_shares.len(), round.survivors.len());
    assert_eq!(sk1_shares.len(), round.dropped.len());

    let survivors: Vec<Survivor> = round
        .survivors
        .iter()
        .map(|&index| Survivor {
            index,
            pk1: key(&device(index).pk1),
            self_mask_seed: reconstruct_self_mask_seed(&seed_shares[&index], round.threshold)
                .unwrap(),
        })
        .collect();
    let dropped: Vec<Dropped> = round
        .dropped
        .iter()
        .map(|&index| {
            let sk1 = reconstruct_sk1(&sk1_shares[&index], round.threshold).unwrap();
            assert_eq!(sk1, key(&device(index).sk1));
            Dropped {
                index,
                pk1: key(&device(index).pk1),
                sk1,
            }
        })
        .collect();
    let unmasker = Unmasker::new(&survivors, &dropped).unwrap();

    let len = round.expected_quantized_sum.len();
    let mut sum = vec![0u32; len];
    for vector in round.masked.values() {
        assert_eq!(vector.len(), len);
        for (acc, value) in sum.iter_mut().zip(vector) {
            *acc = acc.wrapping_add(*value);
        }
    }
    let (low, high) = sum.split_at_mut(len / 2);
    unmasker.unmask_range(0, low).unwrap();
    unmasker.unmask_range((len / 2) as u32, high).unwrap();
    (unmasker, sum)
}

#[test]
fn a_round_of_seed_fixed_clients_with_a_dropout_unmasks_to_the_exact_sum() {
    let round = vectors().round_seed_fixed;
    assert_eq!((round.survivors.len(), round.dropped.len()), (4, 1));
    for device in &round.devices {
        // The fix: every rd_seed is below p, so the shared seed is the one the mask used.
        assert!(bytes(&device.rd_seed)[..16].iter().all(|b| *b == 0));
        assert_eq!(public_key(&key(&device.sk1)).unwrap(), key(&device.pk1));
        assert_eq!(
            device.index as usize,
            round
                .devices
                .iter()
                .position(|d| d.index == device.index)
                .unwrap()
                + 1
        );
    }
    let (unmasker, sum) = unmask_round(&round);
    assert_eq!(sum, round.expected_quantized_sum);
    let canary = sum.last().copied().unwrap();
    assert_eq!(unmasker.check_canary(canary), Ok(()));
}

#[test]
fn fewer_than_t_reveals_rebuild_nothing() {
    let round = vectors().round_seed_fixed;
    let shares: Vec<Share> = round.unmask[&1]
        .iter()
        .chain(&round.unmask[&2])
        .filter(|reveal| reveal.of == 3)
        .map(|reveal| Share::parse(&bytes(&reveal.share)).unwrap())
        .collect();
    assert_eq!(
        reconstruct_self_mask_seed(&shares, round.threshold),
        Err(ReconstructError::TooFewShares { have: 2, need: 3 })
    );
}

#[test]
fn a_round_of_stock_clients_fails_the_canary_check() {
    let round = vectors().round_stock;
    // The stock client's rd_seed is 32 random bytes, far above p: it shares rd_seed mod p but
    // masks with all 32 bytes, so the rebuilt self-mask is the wrong one.
    assert!(round
        .devices
        .iter()
        .all(|d| bytes(&d.rd_seed)[..16].iter().any(|b| *b != 0)));
    let (unmasker, sum) = unmask_round(&round);
    assert_ne!(sum, round.expected_quantized_sum);
    let canary = sum.last().copied().unwrap();
    assert!(matches!(
        unmasker.check_canary(canary),
        Err(UnmaskError::CanaryMismatch { expected, .. }) if expected == 3 * 32768
    ));
}
