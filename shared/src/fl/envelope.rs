//! The Octomil `plaintext_json` envelope: `{"format": "plaintext_json", "sha256", "size",
//! "data": [floats]}`, read as a stream so an 80 MB envelope never sits in memory.
//!
//! The SDK computes `sha256`/`size` over `json.dumps(update)`, which is byte for byte the text of
//! the `data` array inside the envelope it serializes; so the scanner hashes that span exactly as
//! it arrives and compares. Non-finite values (Python writes `NaN`, `Infinity`) are handed to the
//! sink like any number, so the caller can reject them by reason rather than as bad JSON.

use serde::{Deserialize, Serialize};

use crate::crypto::hash::ResumableSha256;

pub const FORMAT: &str = "plaintext_json";
const MAX_KEY: usize = 64;
const MAX_SCALAR: usize = 128;
const MAX_NUMBER_TOKEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError<E> {
    Malformed(String),
    /// The sink refused a value.
    Sink(E),
}

fn malformed<E>(msg: &str) -> EnvelopeError<E> {
    EnvelopeError::Malformed(msg.to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Field {
    Format,
    Sha256,
    Size,
    Data,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum State {
    Start,
    KeyOrEnd,
    Key,
    InKey {
        escape: bool,
    },
    Colon,
    Value,
    Scalar {
        quoted: bool,
        escape: bool,
    },
    DataFirst,
    DataElem,
    DataNum,
    DataSep,
    Skip {
        depth: u32,
        in_str: bool,
        escape: bool,
        scalar: bool,
    },
    AfterValue,
    Done,
}

/// What the envelope said about itself, once fully scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSummary {
    pub format: String,
    pub declared_sha256: String,
    pub declared_size: u64,
    /// SHA-256 (hex) and length of the `data` array's text as received.
    pub data_sha256: String,
    pub data_len: u64,
    pub elements: u64,
    /// Absolute byte offsets (in the whole upload) of the first character of each element index
    /// listed in `cuts`, in the same order.
    pub cut_offsets: Vec<u64>,
}

/// Serializable, so a scan can stop after one part of an upload and resume with the next.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvelopeScanner {
    state: State,
    field: Field,
    key: Vec<u8>,
    token: Vec<u8>,
    seen: [bool; 4],
    format: Option<String>,
    sha256: Option<String>,
    size: Option<u64>,
    hasher: ResumableSha256,
    data_len: u64,
    elements: u64,
    pos: u64,
    cuts: Vec<u64>,
    next_cut: usize,
    cut_offsets: Vec<u64>,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

fn is_num_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')
}

/// Parses one JSON number token; `NaN`/`Infinity`/`-Infinity` (Python's spellings) become the
/// non-finite values they name.
fn parse_number(tok: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(tok).ok()?;
    match s {
        "NaN" => return Some(f64::NAN),
        "Infinity" => return Some(f64::INFINITY),
        "-Infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let first = *tok.first()?;
    if !(first.is_ascii_digit() || first == b'-')
        || s.bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
    {
        return None;
    }
    s.parse::<f64>().ok()
}

impl EnvelopeScanner {
    /// `cuts`: ascending element indices whose byte offsets to record.
    pub fn new(cuts: Vec<u64>) -> Self {
        Self {
            state: State::Start,
            field: Field::Other,
            key: Vec::new(),
            token: Vec::new(),
            seen: [false; 4],
            format: None,
            sha256: None,
            size: None,
            hasher: ResumableSha256::new(),
            data_len: 0,
            elements: 0,
            pos: 0,
            cuts,
            next_cut: 0,
            cut_offsets: Vec::new(),
        }
    }

    fn in_data(&self) -> bool {
        matches!(
            self.state,
            State::DataFirst | State::DataElem | State::DataNum | State::DataSep
        )
    }

    /// Feeds the next bytes of the upload. `sink(index, value)` sees every data element in order.
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        sink: &mut impl FnMut(u64, f64) -> Result<(), E>,
    ) -> Result<(), EnvelopeError<E>> {
        let mut seg_start = if self.in_data() { Some(0) } else { None };
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            let mut advance = true;
            match self.state {
                State::Start => {
                    if b == b'{' {
                        self.state = State::KeyOrEnd;
                    } else if !is_ws(b) {
                        return Err(malformed("the envelope must be a JSON object"));
                    }
                }
                State::KeyOrEnd | State::Key => {
                    if b == b'"' {
                        self.key.clear();
                        self.state = State::InKey { escape: false };
                    } else if b == b'}' && self.state == State::KeyOrEnd {
                        self.state = State::Done;
                    } else if !is_ws(b) {
                        return Err(malformed("expected a key in the envelope object"));
                    }
                }
                State::InKey { escape } => {
                    if escape {
                        self.key.push(b);
                        self.state = State::InKey { escape: false };
                    } else if b == b'\\' {
                        self.key.push(b);
                        self.state = State::InKey { escape: true };
                    } else if b == b'"' {
                        self.field = match self.key.as_slice() {
                            b"format" => Field::Format,
                            b"sha256" => Field::Sha256,
                            b"size" => Field::Size,
                            b"data" => Field::Data,
                            _ => Field::Other,
                        };
                        if let Some(k) = match self.field {
                            Field::Format => Some(0),
                            Field::Sha256 => Some(1),
                            Field::Size => Some(2),
                            Field::Data => Some(3),
                            Field::Other => None,
                        } {
                            if self.seen[k] {
                                return Err(malformed("duplicate key in the envelope"));
                            }
                            self.seen[k] = true;
                        }
                        self.state = State::Colon;
                    } else if self.key.len() >= MAX_KEY {
                        return Err(malformed("envelope key is too long"));
                    } else {
                        self.key.push(b);
                    }
                }
                State::Colon => {
                    if b == b':' {
                        self.state = State::Value;
                    } else if !is_ws(b) {
                        return Err(malformed("expected ':' after an envelope key"));
                    }
                }
                State::Value => {
                    if !is_ws(b) {
                        self.token.clear();
                        match self.field {
                            Field::Data => {
                                if b != b'[' {
                                    return Err(malformed("`data` must be an array of numbers"));
                                }
                                seg_start = Some(i);
                                self.state = State::DataFirst;
                            }
                            Field::Format | Field::Sha256 => {
                                if b != b'"' {
                                    return Err(malformed("`format` and `sha256` must be strings"));
                                }
                                self.state = State::Scalar {
                                    quoted: true,
                                    escape: false,
                                };
                            }
                            Field::Size => {
                                advance = false;
                                self.state = State::Scalar {
                                    quoted: false,
                                    escape: false,
                                };
                            }
                            Field::Other => {
                                advance = false;
                                self.state = State::Skip {
                                    depth: 0,
                                    in_str: false,
                                    escape: false,
                                    scalar: false,
                                };
                            }
                        }
                    }
                }
                State::Scalar {
                    quoted: true,
                    escape,
                } => {
                    if escape {
                        return Err(malformed("escapes are not allowed in `format` or `sha256`"));
                    } else if b == b'\\' {
                        self.state = State::Scalar {
                            quoted: true,
                            escape: true,
                        };
                    } else if b == b'"' {
                        self.finish_scalar()?;
                        self.state = State::AfterValue;
                    } else if self.token.len() >= MAX_SCALAR {
                        return Err(malformed("envelope string is too long"));
                    } else {
                        self.token.push(b);
                    }
                }
                State::Scalar { quoted: false, .. } => {
                    if b.is_ascii_digit() {
                        if self.token.len() >= 20 {
                            return Err(malformed("`size` is too large"));
                        }
                        self.token.push(b);
                    } else {
                        self.finish_scalar()?;
                        advance = false;
                        self.state = State::AfterValue;
                    }
                }
                State::DataFirst | State::DataElem => {
                    if b == b']' && self.state == State::DataFirst {
                        self.end_data(chunk, &mut seg_start, i);
                    } else if is_num_char(b) {
                        if self.next_cut < self.cuts.len()
                            && self.cuts[self.next_cut] == self.elements
                        {
                            self.cut_offsets.push(self.pos + i as u64);
                            self.next_cut += 1;
                        }
                        self.token.clear();
                        self.token.push(b);
                        self.state = State::DataNum;
                    } else if !is_ws(b) {
                        return Err(malformed("`data` must be an array of numbers"));
                    }
                }
                State::DataNum => {
                    if is_num_char(b) {
                        if self.token.len() >= MAX_NUMBER_TOKEN {
                            return Err(malformed("a number in `data` is too long"));
                        }
                        self.token.push(b);
                    } else {
                        let v = parse_number(&self.token).ok_or_else(|| {
                            malformed("`data` holds something that is not a number")
                        })?;
                        sink(self.elements, v).map_err(EnvelopeError::Sink)?;
                        self.elements += 1;
                        advance = false;
                        self.state = State::DataSep;
                    }
                }
                State::DataSep => {
                    if b == b',' {
                        self.state = State::DataElem;
                    } else if b == b']' {
                        self.end_data(chunk, &mut seg_start, i);
                    } else if !is_ws(b) {
                        return Err(malformed("expected ',' or ']' in `data`"));
                    }
                }
                State::Skip {
                    depth,
                    in_str,
                    escape,
                    scalar,
                } => {
                    let mut next = State::Skip {
                        depth,
                        in_str,
                        escape: false,
                        scalar,
                    };
                    if in_str {
                        if escape {
                            // The escaped character is consumed as is.
                        } else if b == b'\\' {
                            next = State::Skip {
                                depth,
                                in_str,
                                escape: true,
                                scalar,
                            };
                        } else if b == b'"' {
                            next = if depth == 0 {
                                State::AfterValue
                            } else {
                                State::Skip {
                                    depth,
                                    in_str: false,
                                    escape: false,
                                    scalar,
                                }
                            };
                        }
                    } else if scalar {
                        if b == b',' || b == b'}' || b == b']' || is_ws(b) {
                            advance = false;
                            next = State::AfterValue;
                        }
                    } else {
                        match b {
                            b'{' | b'[' => {
                                if depth >= 64 {
                                    return Err(malformed("the envelope nests too deeply"));
                                }
                                next = State::Skip {
                                    depth: depth + 1,
                                    in_str,
                                    escape: false,
                                    scalar,
                                };
                            }
                            b'}' | b']' => {
                                if depth == 0 {
                                    return Err(malformed("unbalanced brackets in the envelope"));
                                }
                                next = if depth == 1 {
                                    State::AfterValue
                                } else {
                                    State::Skip {
                                        depth: depth - 1,
                                        in_str,
                                        escape: false,
                                        scalar,
                                    }
                                };
                            }
                            b'"' => {
                                next = State::Skip {
                                    depth,
                                    in_str: true,
                                    escape: false,
                                    scalar,
                                }
                            }
                            _ if is_ws(b) => {}
                            b',' | b':' if depth > 0 => {}
                            b',' | b':' => {
                                return Err(malformed("expected a value in the envelope"))
                            }
                            _ if depth == 0 => {
                                next = State::Skip {
                                    depth,
                                    in_str,
                                    escape: false,
                                    scalar: true,
                                }
                            }
                            _ => {}
                        }
                    }
                    self.state = next;
                }
                State::AfterValue => {
                    if b == b',' {
                        self.state = State::Key;
                    } else if b == b'}' {
                        self.state = State::Done;
                    } else if !is_ws(b) {
                        return Err(malformed("expected ',' or '}' in the envelope"));
                    }
                }
                State::Done => {
                    if !is_ws(b) {
                        return Err(malformed("trailing bytes after the envelope"));
                    }
                }
            }
            if advance {
                i += 1;
            }
        }
        if let Some(s) = seg_start {
            if self.in_data() {
                self.hasher.update(&chunk[s..]);
                self.data_len += (chunk.len() - s) as u64;
            }
        }
        self.pos += chunk.len() as u64;
        Ok(())
    }

    fn end_data(&mut self, chunk: &[u8], seg_start: &mut Option<usize>, i: usize) {
        let s = seg_start.take().unwrap_or(0);
        self.hasher.update(&chunk[s..=i]);
        self.data_len += (i + 1 - s) as u64;
        self.state = State::AfterValue;
    }

    fn finish_scalar<E>(&mut self) -> Result<(), EnvelopeError<E>> {
        let text = String::from_utf8(std::mem::take(&mut self.token))
            .map_err(|_| malformed("envelope strings must be UTF-8"))?;
        match self.field {
            Field::Format => self.format = Some(text),
            Field::Sha256 => self.sha256 = Some(text),
            Field::Size => {
                self.size = Some(
                    text.parse::<u64>()
                        .map_err(|_| malformed("`size` must be a non-negative integer"))?,
                )
            }
            _ => {}
        }
        Ok(())
    }

    pub fn finish<E>(self) -> Result<EnvelopeSummary, EnvelopeError<E>> {
        if self.state != State::Done {
            return Err(malformed("the envelope ended early"));
        }
        Ok(EnvelopeSummary {
            format: self
                .format
                .ok_or_else(|| malformed("the envelope has no `format`"))?,
            declared_sha256: self
                .sha256
                .ok_or_else(|| malformed("the envelope has no `sha256`"))?,
            declared_size: self
                .size
                .ok_or_else(|| malformed("the envelope has no `size`"))?,
            data_sha256: self.hasher.finalize_hex(),
            data_len: if self.seen[3] {
                self.data_len
            } else {
                return Err(malformed("the envelope has no `data`"));
            },
            elements: self.elements,
            cut_offsets: self.cut_offsets,
        })
    }
}

/// Reads numbers of a `data` array from a known element boundary on, across chunk boundaries:
/// how a shard folds its slice of a JSON update without parsing what precedes it.
#[derive(Debug, Default)]
pub struct NumberReader {
    token: Vec<u8>,
    pub read: u64,
}

impl NumberReader {
    /// Feeds bytes; calls `each(value)` per number until `want` numbers were read. Returns whether
    /// it is done. Values were validated when the upload completed, so a bad token here means the
    /// staged bytes changed: an error, not a skip.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        want: u64,
        each: &mut impl FnMut(f64),
    ) -> Result<bool, String> {
        for &b in chunk {
            if self.read >= want {
                return Ok(true);
            }
            if is_num_char(b) {
                if self.token.len() >= MAX_NUMBER_TOKEN {
                    return Err("number token too long".into());
                }
                self.token.push(b);
            } else if !self.token.is_empty() {
                let v = parse_number(&self.token).ok_or("not a number")?;
                self.token.clear();
                each(v);
                self.read += 1;
            }
        }
        Ok(self.read >= want)
    }

    /// Flushes a final token not followed by a delimiter (end of the requested range).
    pub fn flush(&mut self, want: u64, each: &mut impl FnMut(f64)) -> Result<(), String> {
        if self.read < want && !self.token.is_empty() {
            let v = parse_number(&self.token).ok_or("not a number")?;
            self.token.clear();
            each(v);
            self.read += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python_envelope(data: &[f64]) -> (Vec<u8>, String, usize) {
        // json.dumps(list) uses ", " separators and repr floats.
        let inner: Vec<String> = data.iter().map(|v| format!("{v:?}")).collect();
        let payload = format!("[{}]", inner.join(", "));
        let sha = crate::crypto::sha256_hex(payload.as_bytes());
        let env = format!(
            "{{\"format\": \"plaintext_json\", \"sha256\": \"{sha}\", \"size\": {}, \"data\": {payload}, \"secure_agg\": {{\"a\": [1, \"]\"]}}}}",
            payload.len()
        );
        (env.into_bytes(), sha, payload.len())
    }

    fn scan(
        bytes: &[u8],
        split: usize,
        cuts: Vec<u64>,
    ) -> (Result<EnvelopeSummary, EnvelopeError<()>>, Vec<f64>) {
        let mut s = EnvelopeScanner::new(cuts);
        let mut vals = Vec::new();
        let mut sink = |_i: u64, v: f64| -> Result<(), ()> {
            vals.push(v);
            Ok(())
        };
        for c in bytes.chunks(split.max(1)) {
            if let Err(e) = s.feed(c, &mut sink) {
                return (Err(e), vals);
            }
        }
        (s.finish(), vals)
    }

    #[test]
    fn scans_a_python_envelope_at_any_split() {
        let data = [0.1, -2.0, 3.25e-7, 1e10, 0.0];
        let (env, sha, len) = python_envelope(&data);
        for split in [1, 2, 3, 7, 64, env.len()] {
            let (sum, vals) = scan(&env, split, vec![0, 2, 4]);
            let sum = sum.unwrap();
            assert_eq!(vals, data);
            assert_eq!(sum.data_sha256, sha);
            assert_eq!(sum.declared_sha256, sha);
            assert_eq!(sum.data_len as usize, len);
            assert_eq!(sum.declared_size as usize, len);
            assert_eq!(sum.format, FORMAT);
            assert_eq!(sum.elements, 5);
            // Each recorded offset points at the first character of that element.
            for (k, idx) in [0usize, 2, 4].iter().enumerate() {
                let at = sum.cut_offsets[k] as usize;
                let mut r = NumberReader::default();
                let mut got = Vec::new();
                r.feed(&env[at..], 1, &mut |v| got.push(v)).unwrap();
                assert_eq!(got, vec![data[*idx]]);
            }
        }
    }

    #[test]
    fn non_finite_values_reach_the_sink() {
        let env =
            br#"{"format":"plaintext_json","sha256":"x","size":1,"data":[1.0, NaN, -Infinity]}"#;
        let (sum, vals) = scan(env, 5, vec![]);
        assert!(sum.is_ok());
        assert!(vals[1].is_nan() && vals[2] == f64::NEG_INFINITY);
    }

    #[test]
    fn malformed_envelopes() {
        for bad in [
            &br#"[1,2]"#[..],
            br#"{"format":"plaintext_json","sha256":"x","size":1}"#,
            br#"{"format":"plaintext_json","sha256":"x","size":1,"data":[1,"a"]}"#,
            br#"{"format":"plaintext_json","sha256":"x","size":1,"data":[1 2]}"#,
            br#"{"format":"plaintext_json","sha256":"x","size":-1,"data":[1]}"#,
            br#"{"format":"plaintext_json","sha256":"x","size":1,"data":[1],"data":[2]}"#,
            br#"{"format":"plaintext_json","sha256":"x","size":1,"data":[1]} x"#,
            br#"{"format":"plaintext_json","sha256":"x","size":1,"data":[1.2.3]}"#,
            br#"{"format":"plaintext_json","sha256":"x","size":1,"data":[1]"#,
        ] {
            let (sum, _) = scan(bad, 3, vec![]);
            assert!(
                matches!(sum, Err(EnvelopeError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn number_reader_spans_chunks() {
        let text = b"1.5, -2.25,3e2 ,  4]";
        let mut r = NumberReader::default();
        let mut got = Vec::new();
        for c in text.chunks(2) {
            if r.feed(c, 4, &mut |v| got.push(v)).unwrap() {
                break;
            }
        }
        assert_eq!(got, vec![1.5, -2.25, 300.0, 4.0]);
        let mut r = NumberReader::default();
        let mut got = Vec::new();
        r.feed(b"7, 8", 2, &mut |v| got.push(v)).unwrap();
        r.flush(2, &mut |v| got.push(v)).unwrap();
        assert_eq!(got, vec![7.0, 8.0]);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn finite() -> impl Strategy<Value = f64> {
        prop_oneof![
            -1e6f64..1e6,
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            Just(0.0),
            Just(-0.0),
        ]
    }

    /// The envelope as Python writes it, with the given separator after each comma.
    fn envelope(vals: &[f64], sep: &str) -> (Vec<u8>, String) {
        let payload = format!(
            "[{}]",
            vals.iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(&format!(",{sep}"))
        );
        let sha = crate::crypto::sha256_hex(payload.as_bytes());
        let env = format!(
            "{{\"format\": \"plaintext_json\", \"sha256\": \"{sha}\", \"size\": {}, \"data\": {payload}}}",
            payload.len()
        );
        (env.into_bytes(), sha)
    }

    proptest! {
        /// Whatever the chunk size, the scanner sees every value exactly, hashes exactly the
        /// `data` text, and each cut offset is where a shard's reader finds that element.
        #[test]
        fn envelopes_scan_the_same_at_any_chunking(
            vals in prop::collection::vec(finite(), 1..40),
            sep in prop::sample::select(vec!["", " ", "\n  "]),
            split in 1usize..64,
            step in 1u64..5,
        ) {
            let (env, sha) = envelope(&vals, sep);
            let cuts: Vec<u64> = (0..vals.len() as u64).step_by(step as usize).collect();
            let mut s = EnvelopeScanner::new(cuts.clone());
            let mut got = Vec::new();
            let mut sink = |i: u64, v: f64| -> Result<(), ()> {
                got.push((i, v));
                Ok(())
            };
            for c in env.chunks(split) {
                s.feed(c, &mut sink).unwrap();
            }
            let sum = s.finish::<()>().unwrap();
            prop_assert_eq!(got.iter().map(|(_, v)| *v).collect::<Vec<_>>(), vals.clone());
            prop_assert!(got.iter().enumerate().all(|(k, (i, _))| *i == k as u64));
            prop_assert_eq!(&sum.data_sha256, &sha);
            prop_assert_eq!(sum.data_len, sum.declared_size);
            prop_assert_eq!(sum.cut_offsets.len(), cuts.len());
            for (k, at) in sum.cut_offsets.iter().enumerate() {
                let mut r = NumberReader::default();
                let mut one = Vec::new();
                for c in env[*at as usize..].chunks(split) {
                    if r.feed(c, 1, &mut |v| one.push(v)).unwrap() {
                        break;
                    }
                }
                prop_assert_eq!(one, vec![vals[cuts[k] as usize]]);
            }
        }

        /// A shard reads its run of numbers the same however the bytes arrive.
        #[test]
        fn number_reader_reads_every_value_at_any_chunking(
            vals in prop::collection::vec(finite(), 1..40),
            split in 1usize..16,
        ) {
            let text = vals.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ");
            let mut r = NumberReader::default();
            let mut got = Vec::new();
            for c in text.as_bytes().chunks(split) {
                r.feed(c, vals.len() as u64, &mut |v| got.push(v)).unwrap();
            }
            r.flush(vals.len() as u64, &mut |v| got.push(v)).unwrap();
            prop_assert_eq!(got, vals);
        }

        /// Arbitrary bytes never panic the scanner, and chunking never changes its answer.
        #[test]
        fn arbitrary_bytes_answer_the_same_at_any_chunking(
            bytes in prop::collection::vec(any::<u8>(), 0..200),
            split in 1usize..32,
        ) {
            let run = |size: usize| {
                let mut s = EnvelopeScanner::new(vec![0, 3]);
                let mut n = 0u64;
                let mut sink = |_: u64, _: f64| -> Result<(), ()> {
                    n += 1;
                    Ok(())
                };
                for c in bytes.chunks(size) {
                    if let Err(e) = s.feed(c, &mut sink) {
                        return (Err(e), n);
                    }
                }
                (s.finish(), n)
            };
            prop_assert_eq!(run(bytes.len().max(1)), run(split));
        }
    }
}
