//! The safetensors header: the streaming reader gives the same header (or error) whatever the
//! chunking, never buffers past its limit, and what parses re-encodes to a header that parses
//! to the same layout and fits that layout's update budget.
#![no_main]

use std::collections::BTreeMap;

use edgeplane_core::fl::safetensors::{
    encode_header, header_budget, parse_header, FormatError, Header, HeaderReader,
};
use edgeplane_core::fl::{DType, ModelLayout, TensorSpec};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fn read(
    mut reader: HeaderReader,
    chunks: &[&[u8]],
) -> Option<Result<(Header, Vec<u8>), FormatError>> {
    let mut out: Option<(Header, Vec<u8>)> = None;
    for c in chunks {
        match &mut out {
            Some((_, data)) => data.extend_from_slice(c),
            None => match reader.feed(c) {
                Ok(Some((h, rest))) => out = Some((h, rest.to_vec())),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            },
        }
    }
    out.map(Ok)
}

fn update_layout() -> ModelLayout {
    ModelLayout {
        tensors: vec![
            TensorSpec {
                name: "w".into(),
                dtype: DType::F32,
                shape: vec![2, 3],
            },
            TensorSpec {
                name: "b".into(),
                dtype: DType::BF16,
                shape: vec![3],
            },
        ],
    }
}

fuzz_target!(|data: &[u8]| {
    let (ctl, file) = common::split_first(data);
    let sizes = [ctl, 0, ctl >> 4];
    for make in [HeaderReader::for_base as fn() -> HeaderReader, || {
        HeaderReader::for_update(&update_layout())
    }] {
        let whole = read(make(), &[file]);
        let split = read(make(), &common::chunks(file, &sizes));
        assert_eq!(whole, split, "chunking changed the header");
    }
    // The header text alone, as a stored file's header is parsed.
    let Ok(h) = parse_header(file) else { return };
    let layout = h.layout();
    assert_eq!(h.data_len(), layout.total_bytes());
    let starts = h
        .match_base(&layout)
        .expect("a file matches its own layout");
    assert_eq!(starts.len(), layout.tensors.len());
    let encoded = encode_header(&layout, &BTreeMap::new());
    assert_eq!(encoded.len() % 8, 0);
    assert!(
        encoded.len() as u64 - 8 <= header_budget(&layout),
        "our own header exceeds the budget"
    );
    let again = parse_header(&encoded[8..]).expect("our own header parses");
    assert_eq!(again.layout(), layout);
});
