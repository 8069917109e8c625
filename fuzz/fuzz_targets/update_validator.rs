//! The whole update validator over arbitrary bytes, in both formats, against a fixed base
//! layout of three dtypes: never panics, and the verdict does not depend on the chunking.
#![no_main]

use std::collections::BTreeMap;

use edgeplane_core::fl::validate::{UpdateFormat, UpdateMeta, Validator};
use edgeplane_core::fl::{DType, ModelLayout, TensorSpec};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

#[path = "common.rs"]
mod common;

fn layout() -> ModelLayout {
    ModelLayout {
        tensors: vec![
            TensorSpec {
                name: "conv.weight".into(),
                dtype: DType::F32,
                shape: vec![2, 2],
            },
            TensorSpec {
                name: "fc.weight".into(),
                dtype: DType::F16,
                shape: vec![3],
            },
            TensorSpec {
                name: "fc.bias".into(),
                dtype: DType::BF16,
                shape: vec![2],
            },
        ],
    }
}

fuzz_target!(|data: &[u8]| {
    let (ctl, body) = common::split_first(data);
    if body.is_empty() {
        return;
    }
    let format = if ctl & 1 == 0 {
        UpdateFormat::Safetensors
    } else {
        UpdateFormat::PlaintextJson
    };
    let meta = UpdateMeta {
        sample_count: 1,
        metrics: BTreeMap::new(),
        format,
        sha256: hex::encode(Sha256::digest(body)),
        size: body.len() as u64,
    };
    let layout = layout();
    let run = |chunks: &[&[u8]]| {
        let mut v = Validator::new(&meta, &layout, vec![0, 4, 7]);
        for c in chunks {
            v.feed(c)?;
        }
        v.finish()
    };
    let whole = run(&[body]);
    let split = run(&common::chunks(body, &[ctl >> 1, 0, ctl.rotate_left(2)]));
    match (whole, split) {
        (Ok(a), Ok(b)) => {
            // The norm is summed per run of elements, so chunking may move its last bits.
            assert!(a.norm.is_finite());
            assert!(
                (a.norm - b.norm).abs() <= 1e-9 * a.norm.max(1.0),
                "{} vs {}",
                a.norm,
                b.norm
            );
            assert_eq!((a.size, a.source), (b.size, b.source));
            assert_eq!(a.size, body.len() as u64);
        }
        (a, b) => assert_eq!(a, b, "chunking changed the verdict"),
    }
});
