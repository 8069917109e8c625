#![allow(dead_code)]
//! Shared by the targets: split an input into chunks of fuzzer-chosen sizes, so every streaming
//! reader is checked to give the same answer however its input arrives.

/// Splits `data` into chunks whose sizes cycle through `sizes` (each 1..=256); one chunk if
/// `sizes` is empty.
pub fn chunks<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    if sizes.is_empty() {
        return vec![data];
    }
    let mut out = Vec::new();
    let mut rest = data;
    let mut k = 0;
    while !rest.is_empty() {
        let n = (sizes[k % sizes.len()] as usize + 1).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
        k += 1;
    }
    out
}

/// The first byte as a control value and the rest as the input proper.
pub fn split_first(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((b, rest)) => (*b, rest),
        None => (0, &[]),
    }
}
