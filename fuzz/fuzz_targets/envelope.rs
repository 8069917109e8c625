//! The Octomil `plaintext_json` envelope scanner: never panics, and gives the same values,
//! summary or error whatever the chunking; every recorded cut offset is where a shard's
//! `NumberReader` reads exactly the element it names.
#![no_main]

use edgeplane_core::fl::envelope::{EnvelopeError, EnvelopeScanner, EnvelopeSummary, NumberReader};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

type Scan = (Result<EnvelopeSummary, EnvelopeError<()>>, Vec<(u64, u64)>);

fn scan(chunks: &[&[u8]], cuts: &[u64]) -> Scan {
    let mut s = EnvelopeScanner::new(cuts.to_vec());
    let mut vals = Vec::new();
    let mut sink = |i: u64, v: f64| -> Result<(), ()> {
        vals.push((i, v.to_bits()));
        Ok(())
    };
    for c in chunks {
        if let Err(e) = s.feed(c, &mut sink) {
            return (Err(e), vals);
        }
    }
    (s.finish(), vals)
}

fuzz_target!(|data: &[u8]| {
    let (ctl, body) = common::split_first(data);
    // Cuts every `step` elements, as shard boundaries are.
    let step = u64::from(ctl % 7) + 1;
    let cuts: Vec<u64> = (0..64).map(|k| k * step).collect();
    let whole = scan(&[body], &cuts);
    let sizes = [ctl, ctl.rotate_left(3), 0, ctl >> 2];
    let split = scan(&common::chunks(body, &sizes), &cuts);
    assert_eq!(whole, split, "chunking changed the result");
    let (Ok(summary), vals) = whole else { return };
    assert_eq!(summary.elements, vals.len() as u64);
    for (k, &at) in summary.cut_offsets.iter().enumerate() {
        let index = cuts[k];
        let mut r = NumberReader::default();
        let mut got = Vec::new();
        r.feed(&body[at as usize..], 1, &mut |v| got.push(v.to_bits()))
            .expect("a validated element reads back");
        r.flush(1, &mut |v| got.push(v.to_bits())).expect("flush");
        assert_eq!(got, vec![vals[index as usize].1], "cut {k} at {at}");
    }
});
