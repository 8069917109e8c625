//! Property tests of parsers and kernels this crate's other modules own, through their public
//! API: the unified diff parser, webhook verification, and the FedAvg fold. (The parsers of the
//! federated-learning wire formats, routes and tokens have theirs next to their code.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgeplane_core::fl::aggregate::{fold_batch, fold_slice};
use edgeplane_core::fl::DType;
use edgeplane_core::review::diff::{parse_hunks, LineKind};
use edgeplane_core::webhook::{
    bitbucket, event, github, gitlab, sign_hex_sha256, Headers, Secrets,
};
use half::{bf16, f16};
use proptest::prelude::*;

/// A line of a hunk as written: its kind and its text (no line breaks).
fn hunk_line() -> impl Strategy<Value = (LineKind, String)> {
    (
        prop::sample::select(vec![LineKind::Context, LineKind::Added, LineKind::Removed]),
        "[^\r\n]{0,30}",
    )
}

/// Element values a tensor of `dtype` can hold exactly (finite), as `f64`, with their bytes.
fn element(dtype: DType) -> BoxedStrategy<(f64, Vec<u8>)> {
    match dtype {
        DType::F16 => any::<u16>()
            .prop_filter_map("finite", |b| {
                let v = f16::from_bits(b).to_f64();
                v.is_finite().then(|| (v, b.to_le_bytes().to_vec()))
            })
            .boxed(),
        DType::BF16 => any::<u16>()
            .prop_filter_map("finite", |b| {
                let v = bf16::from_bits(b).to_f64();
                v.is_finite().then(|| (v, b.to_le_bytes().to_vec()))
            })
            .boxed(),
        DType::F32 => any::<f32>()
            .prop_filter_map("finite", |x| {
                x.is_finite().then(|| (x as f64, x.to_le_bytes().to_vec()))
            })
            .boxed(),
        DType::F64 => (-1e200f64..1e200)
            .prop_map(|v| (v, v.to_le_bytes().to_vec()))
            .boxed(),
    }
}

/// One update: its weight, and each element's value with its bytes.
type Update = (f64, Vec<(f64, Vec<u8>)>);

/// A few updates of the same number of elements of one dtype.
fn updates() -> impl Strategy<Value = (DType, Vec<Update>)> {
    (
        prop::sample::select(vec![DType::F64, DType::F32, DType::F16, DType::BF16]),
        1usize..20,
        1usize..6,
    )
        .prop_flat_map(|(dtype, n, updates)| {
            let update = (0.0f64..1000.0, prop::collection::vec(element(dtype), n));
            (Just(dtype), prop::collection::vec(update, updates))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A hunk written out as text parses back line for line, with each line's old and new
    /// numbers counted from the header.
    #[test]
    fn hunks_parse_back_with_their_line_numbers(
        old_start in 1u32..100_000,
        new_start in 1u32..100_000,
        lines in prop::collection::vec(hunk_line(), 0..30),
    ) {
        let count = |k: LineKind| lines.iter().filter(|(kind, _)| *kind != k).count();
        let mut text = format!(
            "@@ -{old_start},{} +{new_start},{} @@ fn context()\n",
            count(LineKind::Added),
            count(LineKind::Removed)
        );
        for (kind, t) in &lines {
            let mark = match kind {
                LineKind::Context => ' ',
                LineKind::Added => '+',
                LineKind::Removed => '-',
            };
            text.push(mark);
            text.push_str(t);
            text.push('\n');
        }
        let hunks = parse_hunks(&text).map_err(|e| TestCaseError::fail(e.0))?;
        prop_assert_eq!(hunks.len(), 1);
        let h = &hunks[0];
        prop_assert_eq!((h.old_start, h.new_start), (old_start, new_start));
        prop_assert_eq!(h.lines.len(), lines.len());
        let (mut old, mut new) = (old_start, new_start);
        for (got, (kind, t)) in h.lines.iter().zip(&lines) {
            prop_assert_eq!(got.kind, *kind);
            prop_assert_eq!(&got.text, t);
            let (want_old, want_new) = match kind {
                LineKind::Context => (Some(old), Some(new)),
                LineKind::Added => (None, Some(new)),
                LineKind::Removed => (Some(old), None),
            };
            prop_assert_eq!((got.old, got.new), (want_old, want_new));
            old += u32::from(want_old.is_some());
            new += u32::from(want_new.is_some());
        }
    }

    /// A body signed with the integration's secret verifies, on GitHub, Bitbucket and GitLab;
    /// the same signature over a body changed in one byte never does; and whatever verifies is
    /// classified without panicking.
    #[test]
    fn signed_bodies_verify_and_changed_ones_do_not(
        body in prop::collection::vec(any::<u8>(), 1..300),
        secret in prop::collection::vec(any::<u8>(), 1..40),
        at in any::<prop::sample::Index>(),
        event_name in prop::sample::select(vec!["pull_request", "ping", "pullrequest:created", "pr:opened", "Merge Request Hook"]),
    ) {
        let secrets = Secrets { current: &secret, previous: None, signing_token: None };
        let sig = sign_hex_sha256(&secret, &body);
        let mut changed = body.clone();
        let i = at.index(changed.len());
        changed[i] ^= 0x01;
        let gh = Headers::new().with("x-hub-signature-256", &sig).with("x-github-event", event_name);
        let ok = github::verify(&gh, body.clone(), &secrets).unwrap();
        prop_assert_eq!(ok.body(), &body[..]);
        let _ = event::classify(&ok);
        prop_assert!(github::verify(&gh, changed.clone(), &secrets).is_err());
        let bb = Headers::new().with("x-hub-signature", &sig).with("x-event-key", event_name);
        let ok = bitbucket::verify(&bb, body.clone(), &secrets).unwrap();
        let _ = event::classify(&ok);
        prop_assert!(bitbucket::verify(&bb, changed, &secrets).is_err());
        if let Ok(token) = std::str::from_utf8(&secret) {
            let gl = Headers::new().with("x-gitlab-token", token).with("x-gitlab-event", event_name);
            if gl.get("x-gitlab-token") == Some(token) {
                let ok = gitlab::verify(&gl, body.clone(), &secrets, 0).unwrap();
                let _ = event::classify(&ok);
            }
        }
    }

    /// Folding updates straight from their bytes gives exactly the f64 reference
    /// `sum += w * v`, in every dtype (no rounding through a narrower type on the way), and the
    /// batched fold agrees up to the order of the additions.
    #[test]
    fn folds_equal_the_f64_reference((dtype, updates) in updates()) {
        let n = updates[0].1.len();
        let mut reference = vec![0.0f64; n];
        let mut folded = vec![0.0f64; n];
        for (w, elems) in &updates {
            for (r, (v, _)) in reference.iter_mut().zip(elems) {
                *r += w * v;
            }
            let bytes: Vec<u8> = elems.iter().flat_map(|(_, b)| b.clone()).collect();
            fold_slice(dtype, &bytes, &mut folded, *w);
        }
        prop_assert_eq!(&folded, &reference);
        let sources: Vec<(Vec<u8>, f64)> = updates
            .iter()
            .map(|(w, elems)| (elems.iter().flat_map(|(_, b)| b.clone()).collect(), *w))
            .collect();
        let refs: Vec<(&[u8], f64)> = sources.iter().map(|(b, w)| (b.as_slice(), *w)).collect();
        let mut batched = vec![0.0f64; n];
        fold_batch(dtype, &refs, &mut batched);
        let scale: f64 = updates
            .iter()
            .map(|(w, elems)| elems.iter().map(|(v, _)| (w * v).abs()).fold(0.0, f64::max))
            .sum();
        for (b, r) in batched.iter().zip(&reference) {
            prop_assert!((b - r).abs() <= 1e-12 * scale.max(f64::MIN_POSITIVE), "{b} vs {r}");
        }
    }
}
