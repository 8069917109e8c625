//! The shard-side number reader: never panics, and reads the same numbers (or fails the same
//! way) whatever the chunking.
#![no_main]

use edgeplane_core::fl::envelope::NumberReader;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fn read(chunks: &[&[u8]], want: u64) -> (Vec<u64>, Result<u64, String>) {
    let mut r = NumberReader::default();
    let mut got = Vec::new();
    for c in chunks {
        match r.feed(c, want, &mut |v| got.push(v.to_bits())) {
            Ok(true) => return (got, Ok(r.read)),
            Ok(false) => {}
            Err(e) => return (got, Err(e)),
        }
    }
    let flushed = r
        .flush(want, &mut |v| got.push(v.to_bits()))
        .map(|()| r.read);
    (got, flushed)
}

fuzz_target!(|data: &[u8]| {
    let (ctl, text) = common::split_first(data);
    let want = u64::from(ctl % 32);
    let whole = read(&[text], want);
    let split = read(&common::chunks(text, &[ctl >> 3, 0, ctl]), want);
    assert_eq!(whole, split, "chunking changed the numbers read");
    if let (vals, Ok(n)) = &whole {
        assert_eq!(vals.len() as u64, *n);
        assert!(*n <= want);
    }
});
