//! The safetensors container: an 8-byte little-endian header length, a JSON header naming each
//! tensor's dtype, shape and byte range, then the raw data. Parsed from the header bytes alone,
//! so a multi-megabyte upload is validated without holding its data.
//!
//! The header is attacker-controlled text of attacker-declared length, so reading it is bounded
//! twice: the declared length is checked against a budget *before* a byte of it is buffered
//! ([`HeaderReader`]), and the JSON is deserialized straight into typed entries — names, dtypes,
//! at most [`MAX_DIMS`] dimensions, two offsets — never into a `serde_json::Value` tree, whose
//! nodes cost tens of bytes per input byte. `__metadata__` is checked for shape (an object of
//! strings) and dropped. Memory is therefore O(budget) whatever the header says.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::dtype::DType;
use super::layout::{ModelLayout, TensorSpec};

/// The largest header a file read without a known layout may have (a base version's upload, a
/// stored version). A megabyte describes tens of thousands of tensors; an update is held to the
/// much smaller [`header_budget`] of its base.
const MAX_HEADER_BYTES: u64 = 1 << 20;
const MAX_TENSORS: usize = 100_000;
/// Dimensions per tensor. Real models use at most 5 or 6; the cap keeps one entry's shape from
/// growing with the header.
const MAX_DIMS: usize = 16;
const MAX_NAME_LEN: usize = 512;

/// Header bytes allowed per tensor beyond its name and dimensions: the dtype, two offsets of up
/// to 20 digits, the JSON punctuation, and whitespace for pretty-printing writers.
const ENTRY_OVERHEAD: u64 = 256;
/// Header bytes per dimension: up to 20 digits and a separator.
const DIM_BYTES: u64 = 24;
/// A name may be written with every byte escaped (`\u00e9`): six bytes of JSON per byte of name.
const NAME_EXPANSION: u64 = 6;
/// Room for `__metadata__` (free-form strings frameworks add) and the alignment padding.
const METADATA_ALLOWANCE: u64 = 64 * 1024;

/// Why a container was refused: unreadable, or readable but not the model the round expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    Malformed(String),
    Mismatch(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub spec: TensorSpec,
    /// Byte range within the data section.
    pub begin: u64,
    pub end: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub header_len: u64,
    /// In data order (ascending `begin`), tiling the data section without gaps.
    pub entries: Vec<Entry>,
}

/// The most header bytes an update of `layout` needs, however its writer formats the JSON: what
/// the update path buffers at most before refusing.
pub fn header_budget(layout: &ModelLayout) -> u64 {
    layout.tensors.iter().fold(METADATA_ALLOWANCE, |acc, t| {
        acc.saturating_add(ENTRY_OVERHEAD)
            .saturating_add(NAME_EXPANSION.saturating_mul(t.name.len() as u64))
            .saturating_add(DIM_BYTES.saturating_mul(t.shape.len() as u64))
    })
}

/// Reads the header length from the first eight bytes, refusing one over [`MAX_HEADER_BYTES`].
pub fn header_len(first8: &[u8]) -> Result<u64, FormatError> {
    header_len_within(first8, MAX_HEADER_BYTES)
}

fn header_len_within(first8: &[u8], max: u64) -> Result<u64, FormatError> {
    let b: [u8; 8] = first8
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| malformed("safetensors file is shorter than 8 bytes"))?;
    let n = u64::from_le_bytes(b);
    if n < 2 {
        return Err(malformed(format!(
            "safetensors header length {n} is too short"
        )));
    }
    if n > max {
        return Err(malformed(format!(
            "the safetensors header declares {n} bytes; at most {max} are accepted here"
        )));
    }
    Ok(n)
}

fn malformed(msg: impl Into<String>) -> FormatError {
    FormatError::Malformed(msg.into())
}

/// Reads a header from a stream of chunks of any size: the length prefix, then exactly that many
/// bytes, refused as soon as the prefix declares more than the reader's limit. The buffer is
/// allocated once, at the declared length, so it never exceeds the limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeaderReader {
    max_len: u64,
    tensors: TensorLimit,
    state: ReadState,
}

/// How many tensor entries a header may have, and what one too many means: a malformed file, or
/// (against a base version) an update that does not match it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct TensorLimit {
    max: usize,
    of_base: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum ReadState {
    /// Collecting the 8-byte length prefix.
    Prefix(Vec<u8>),
    /// Collecting the header text: `buf` was allocated at the declared length `want`.
    Text { want: usize, buf: Vec<u8> },
    /// The header was returned.
    Done,
}

impl HeaderReader {
    /// For an update of `base`: at most [`header_budget`] bytes and the base's tensor count.
    pub fn for_update(base: &ModelLayout) -> Self {
        let tensors = TensorLimit {
            max: base.tensors.len().min(MAX_TENSORS),
            of_base: true,
        };
        Self::with_limits(header_budget(base), tensors)
    }

    /// For a file with no layout to hold it to (a base version's upload).
    pub fn for_base() -> Self {
        Self::with_limits(MAX_HEADER_BYTES, ANY_FILE)
    }

    fn with_limits(max_len: u64, tensors: TensorLimit) -> Self {
        Self {
            max_len,
            tensors,
            state: ReadState::Prefix(Vec::with_capacity(8)),
        }
    }

    /// Feeds the next bytes of the file. Once the header is complete it is parsed and returned
    /// with the rest of `chunk` (the first data bytes); until then `None`. Feeding a reader that
    /// already returned its header is a caller error and is refused.
    pub fn feed<'a>(
        &mut self,
        mut chunk: &'a [u8],
    ) -> Result<Option<(Header, &'a [u8])>, FormatError> {
        if let ReadState::Prefix(prefix) = &mut self.state {
            let take = (8 - prefix.len()).min(chunk.len());
            prefix.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if prefix.len() < 8 {
                return Ok(None);
            }
            let n = header_len_within(prefix, self.max_len)?;
            let want =
                usize::try_from(n).map_err(|_| malformed("safetensors header is too large"))?;
            self.state = ReadState::Text {
                want,
                buf: Vec::with_capacity(want),
            };
        }
        let ReadState::Text { want, buf } = &mut self.state else {
            return Err(malformed("the safetensors header was already read"));
        };
        let take = (*want - buf.len()).min(chunk.len());
        buf.extend_from_slice(&chunk[..take]);
        if buf.len() < *want {
            return Ok(None);
        }
        let header = parse_limited(buf, self.tensors)?;
        self.state = ReadState::Done;
        Ok(Some((header, &chunk[take..])))
    }
}

/// Parses the JSON header (the `header_len` bytes after the length prefix).
pub fn parse_header(json: &[u8]) -> Result<Header, FormatError> {
    parse_limited(json, ANY_FILE)
}

const ANY_FILE: TensorLimit = TensorLimit {
    max: MAX_TENSORS,
    of_base: false,
};

fn parse_limited(json: &[u8], limit: TensorLimit) -> Result<Header, FormatError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let too_many = std::cell::Cell::new(false);
    let visitor = HeaderVisitor {
        max_tensors: limit.max,
        too_many: &too_many,
    };
    let mut entries = de
        .deserialize_map(visitor)
        .and_then(|e| de.end().map(|()| e))
        .map_err(|e| {
            if too_many.get() && limit.of_base {
                FormatError::Mismatch(format!(
                    "update has more tensors than the base version's {}",
                    limit.max
                ))
            } else {
                malformed(bounded(format!("safetensors header: {e}")))
            }
        })?;
    if entries.is_empty() {
        return Err(malformed("safetensors file has no tensors"));
    }
    let mut names: Vec<&str> = entries.iter().map(|e| e.spec.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(malformed("safetensors header names a tensor twice"));
    }
    entries.sort_by_key(|e| (e.begin, e.end));
    let mut at = 0;
    for e in &entries {
        if e.begin != at {
            return Err(malformed(
                "tensor data must tile the data section without gaps or overlaps",
            ));
        }
        at = e.end;
    }
    Ok(Header {
        header_len: json.len() as u64,
        entries,
    })
}

/// serde's messages can quote input (an unexpected string, in full): keep them short.
fn bounded(mut msg: String) -> String {
    const MAX: usize = 300;
    if msg.len() > MAX {
        let mut cut = MAX;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg.truncate(cut);
        msg.push('…');
    }
    msg
}

/// The top-level object: tensor entries, and at most one `__metadata__`.
struct HeaderVisitor<'a> {
    max_tensors: usize,
    /// Set when the entries ran past `max_tensors` (which the caller may report as a mismatch).
    too_many: &'a std::cell::Cell<bool>,
}

impl<'de> Visitor<'de> for HeaderVisitor<'_> {
    type Value = Vec<Entry>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of tensors")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Entry>, A::Error> {
        let mut entries = Vec::new();
        let mut metadata_seen = false;
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if name == "__metadata__" {
                if metadata_seen {
                    return Err(de::Error::custom("__metadata__ appears twice"));
                }
                metadata_seen = true;
                map.next_value::<StringMap>()?;
                continue;
            }
            if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
                return Err(de::Error::custom(
                    "tensor names must be 1-512 printable characters",
                ));
            }
            if entries.len() >= self.max_tensors {
                self.too_many.set(true);
                return Err(de::Error::custom(format!(
                    "more than {} tensors",
                    self.max_tensors
                )));
            }
            let raw: RawTensor = map.next_value()?;
            entries.push(
                raw.into_entry(name.into_owned())
                    .map_err(de::Error::custom)?,
            );
        }
        Ok(entries)
    }
}

/// One tensor's entry as written. Unknown fields are skipped without being stored, as the
/// reference implementation ignores them.
#[derive(Deserialize)]
struct RawTensor {
    dtype: DTypeName,
    shape: Shape,
    data_offsets: (u64, u64),
}

impl RawTensor {
    fn into_entry(self, name: String) -> Result<Entry, String> {
        let spec = TensorSpec {
            name,
            dtype: self.dtype.0,
            shape: self.shape.0,
        };
        let bytes = spec
            .shape
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d))
            .and_then(|n| n.checked_mul(spec.dtype.size() as u64))
            .ok_or_else(|| format!("tensor `{}` is too large", spec.name))?;
        let (begin, end) = self.data_offsets;
        if end < begin || end - begin != bytes {
            return Err(format!(
                "tensor `{}`: data_offsets span does not match dtype and shape",
                spec.name
            ));
        }
        Ok(Entry { spec, begin, end })
    }
}

struct DTypeName(DType);

impl<'de> Deserialize<'de> for DTypeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DTypeName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a dtype name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<DTypeName, E> {
                DType::parse(s).map(DTypeName).ok_or_else(|| {
                    E::custom(format!(
                        "dtype {} is not supported (F64, F32, F16, BF16)",
                        bounded(s.to_owned())
                    ))
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// A shape of at most [`MAX_DIMS`] dimensions, refused at the first one too many.
struct Shape(Vec<u64>);

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an array of at most {MAX_DIMS} non-negative integers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
                let mut dims = Vec::new();
                while let Some(d) = seq.next_element::<u64>()? {
                    if dims.len() == MAX_DIMS {
                        return Err(de::Error::custom(format!(
                            "a shape has at most {MAX_DIMS} dimensions"
                        )));
                    }
                    dims.push(d);
                }
                Ok(Shape(dims))
            }
        }
        d.deserialize_seq(V)
    }
}

/// `__metadata__`: an object whose values are all strings. Checked, not kept.
struct StringMap;

impl<'de> Deserialize<'de> for StringMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("__metadata__ as an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StringMap, A::Error> {
                while map.next_key::<IgnoredAny>()?.is_some() {
                    map.next_value_seed(AnyStr)?;
                }
                Ok(StringMap)
            }
        }
        d.deserialize_map(V)
    }
}

/// Accepts any string and keeps nothing (serde_json hands it over without allocating).
struct AnyStr;

impl<'de> DeserializeSeed<'de> for AnyStr {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("__metadata__ values must be strings")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
                Ok(())
            }
        }
        d.deserialize_str(V)
    }
}

impl Header {
    pub fn data_start(&self) -> u64 {
        8 + self.header_len
    }

    pub fn data_len(&self) -> u64 {
        self.entries.last().map(|e| e.end).unwrap_or(0)
    }

    pub fn file_len(&self) -> u64 {
        self.data_start() + self.data_len()
    }

    /// The layout this file defines (its tensors in data order): how a base version is read.
    pub fn layout(&self) -> ModelLayout {
        ModelLayout {
            tensors: self.entries.iter().map(|e| e.spec.clone()).collect(),
        }
    }

    /// Checks an update against the base layout — same tensor names, dtypes and shapes — and
    /// returns, for each base tensor in canonical order, where its data starts in this file.
    pub fn match_base(&self, base: &ModelLayout) -> Result<Vec<u64>, FormatError> {
        if self.entries.len() != base.tensors.len() {
            return Err(FormatError::Mismatch(format!(
                "update has {} tensors, the base version has {}",
                self.entries.len(),
                base.tensors.len()
            )));
        }
        let by_name: std::collections::BTreeMap<&str, &Entry> = self
            .entries
            .iter()
            .map(|e| (e.spec.name.as_str(), e))
            .collect();
        let mut starts = Vec::with_capacity(base.tensors.len());
        for t in &base.tensors {
            let e = by_name.get(t.name.as_str()).ok_or_else(|| {
                FormatError::Mismatch(format!("update has no tensor `{}`", t.name))
            })?;
            if e.spec.dtype != t.dtype {
                return Err(FormatError::Mismatch(format!(
                    "tensor `{}` is {}, the base version's is {}",
                    t.name,
                    e.spec.dtype.as_str(),
                    t.dtype.as_str()
                )));
            }
            if e.spec.shape != t.shape {
                return Err(FormatError::Mismatch(format!(
                    "tensor `{}` has shape {:?}, the base version's is {:?}",
                    t.name, e.spec.shape, t.shape
                )));
            }
            starts.push(self.data_start() + e.begin);
        }
        Ok(starts)
    }
}

/// The header object as written: `__metadata__` first (if any), then each tensor of the layout
/// in canonical order with its contiguous byte range.
struct EncodedHeader<'a> {
    layout: &'a ModelLayout,
    metadata: &'a std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
struct EncodedTensor<'a> {
    dtype: &'static str,
    shape: &'a [u64],
    data_offsets: [u64; 2],
}

impl Serialize for EncodedHeader<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let meta = usize::from(!self.metadata.is_empty());
        let mut map = s.serialize_map(Some(self.layout.tensors.len() + meta))?;
        if meta == 1 {
            map.serialize_entry("__metadata__", self.metadata)?;
        }
        let mut at = 0u64;
        for t in &self.layout.tensors {
            let end = at + t.byte_len();
            map.serialize_entry(
                &t.name,
                &EncodedTensor {
                    dtype: t.dtype.as_str(),
                    shape: &t.shape,
                    data_offsets: [at, end],
                },
            )?;
            at = end;
        }
        map.end()
    }
}

/// The header of a file holding `layout`'s tensors contiguously in canonical order, padded with
/// spaces to an 8-byte boundary (as the format allows) so the data section is aligned.
pub fn encode_header(
    layout: &ModelLayout,
    metadata: &std::collections::BTreeMap<String, String>,
) -> Vec<u8> {
    // Serializing strings, integers and maps into a Vec cannot fail.
    let mut json = serde_json::to_vec(&EncodedHeader { layout, metadata }).unwrap_or_default();
    while !(8 + json.len()).is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A complete safetensors file from `(name, dtype, shape, values)` in the order given.
    pub fn build(tensors: &[(&str, DType, Vec<u64>, Vec<f64>)]) -> Vec<u8> {
        let layout = ModelLayout {
            tensors: tensors
                .iter()
                .map(|(n, d, s, _)| TensorSpec {
                    name: (*n).into(),
                    dtype: *d,
                    shape: s.clone(),
                })
                .collect(),
        };
        let mut out = encode_header(&layout, &BTreeMap::new());
        for (_, d, _, vals) in tensors {
            for v in vals {
                d.encode(*v, &mut out);
            }
        }
        out
    }

    #[test]
    fn parses_what_it_encodes() {
        let f = build(&[
            ("w", DType::F32, vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]),
            ("b", DType::F32, vec![2], vec![0.5, -0.5]),
        ]);
        let n = header_len(&f).unwrap();
        let h = parse_header(&f[8..8 + n as usize]).unwrap();
        assert_eq!(h.data_start() % 8, 0);
        assert_eq!(h.file_len(), f.len() as u64);
        let layout = h.layout();
        assert_eq!(layout.tensors[0].name, "w");
        assert_eq!(
            h.match_base(&layout).unwrap(),
            vec![h.data_start(), h.data_start() + 16]
        );
    }

    #[test]
    fn metadata_is_written_and_checked() {
        let layout = ModelLayout {
            tensors: vec![TensorSpec {
                name: "w".into(),
                dtype: DType::F16,
                shape: vec![3],
            }],
        };
        let meta = BTreeMap::from([("round".to_string(), "rnd_1".to_string())]);
        let f = encode_header(&layout, &meta);
        let text = std::str::from_utf8(&f[8..]).unwrap();
        assert!(
            text.starts_with(r#"{"__metadata__":{"round":"rnd_1"},"w":"#),
            "{text}"
        );
        assert_eq!(parse_header(&f[8..]).unwrap().layout(), layout);
        for bad in [
            &br#"{"__metadata__":{"a":1},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#[..],
            br#"{"__metadata__":[],"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            br#"{"__metadata__":{},"__metadata__":{},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        ] {
            assert!(parse_header(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn mismatches_and_malformed_headers() {
        let base = build(&[("w", DType::F32, vec![4], vec![0.0; 4])]);
        let n = header_len(&base).unwrap() as usize;
        let base_layout = parse_header(&base[8..8 + n]).unwrap().layout();
        for other in [
            build(&[("w", DType::F32, vec![2, 2], vec![0.0; 4])]),
            build(&[("w", DType::F16, vec![4], vec![0.0; 4])]),
            build(&[("v", DType::F32, vec![4], vec![0.0; 4])]),
            build(&[
                ("w", DType::F32, vec![4], vec![0.0; 4]),
                ("x", DType::F32, vec![1], vec![0.0]),
            ]),
        ] {
            let n = header_len(&other).unwrap() as usize;
            let h = parse_header(&other[8..8 + n]).unwrap();
            assert!(matches!(
                h.match_base(&base_layout),
                Err(FormatError::Mismatch(_))
            ));
        }
        for bad in [
            &b"{}"[..],
            b"[]",
            b"{\"w\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
            b"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}",
            b"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
            b"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
            b"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} trailing",
            b"{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
            b"{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}",
            b"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
            b"not json",
        ] {
            assert!(
                matches!(parse_header(bad), Err(FormatError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(header_len(&[1, 0]).is_err());
        assert!(header_len(&u64::MAX.to_le_bytes()).is_err());
    }

    #[test]
    fn error_messages_do_not_echo_long_input() {
        let long = "x".repeat(100_000);
        let bad = format!(r#"{{"w":{{"dtype":"{long}","shape":[1],"data_offsets":[0,4]}}}}"#);
        let FormatError::Malformed(m) = parse_header(bad.as_bytes()).unwrap_err() else {
            panic!("not malformed")
        };
        assert!(m.len() < 400, "{}", m.len());
        let bad = format!(r#"{{"w":{{"dtype":"F32","shape":"{long}","data_offsets":[0,4]}}}}"#);
        let FormatError::Malformed(m) = parse_header(bad.as_bytes()).unwrap_err() else {
            panic!("not malformed")
        };
        assert!(m.len() < 400, "{}", m.len());
    }

    fn small_layout() -> ModelLayout {
        ModelLayout {
            tensors: vec![
                TensorSpec {
                    name: "w".into(),
                    dtype: DType::F32,
                    shape: vec![2, 2],
                },
                TensorSpec {
                    name: "b".into(),
                    dtype: DType::F32,
                    shape: vec![2],
                },
            ],
        }
    }

    #[test]
    fn reader_returns_the_header_and_the_first_data_bytes_at_any_split() {
        let f = build(&[
            ("w", DType::F32, vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]),
            ("b", DType::F32, vec![2], vec![0.5, -0.5]),
        ]);
        let n = header_len(&f).unwrap() as usize;
        for split in [1, 3, 8, 9, 50, f.len()] {
            let mut r = HeaderReader::for_update(&small_layout());
            let mut data = Vec::new();
            let mut header = None;
            for c in f.chunks(split) {
                match &header {
                    None => {
                        if let Some((h, rest)) = r.feed(c).unwrap() {
                            data.extend_from_slice(rest);
                            header = Some(h);
                        }
                    }
                    Some(_) => data.extend_from_slice(c),
                }
            }
            let h = header.expect("header");
            assert_eq!(h.header_len as usize, n);
            assert_eq!(data, &f[8 + n..]);
            assert!(r.feed(b"x").is_err(), "a finished reader takes no more");
        }
    }

    /// Defect 1 (header bomb): a header declared at 16 MiB was buffered in full and parsed into a
    /// `Value` tree. The declared length is now refused from the 8-byte prefix alone, before any
    /// header byte is buffered.
    #[test]
    fn a_header_over_the_budget_is_refused_from_its_prefix() {
        let layout = small_layout();
        let budget = header_budget(&layout);
        assert!(budget < 70 * 1024, "{budget}");
        let mut r = HeaderReader::for_update(&layout);
        let bomb = (16u64 << 20).to_le_bytes();
        assert!(matches!(r.feed(&bomb), Err(FormatError::Malformed(_))));
        assert!(
            matches!(&r.state, ReadState::Prefix(p) if p.capacity() == 8),
            "nothing of the header was buffered"
        );
        // At the budget exactly, the buffer is allocated once at the declared size.
        let mut r = HeaderReader::for_update(&layout);
        let mut at_budget = budget.to_le_bytes().to_vec();
        at_budget.push(b'[');
        assert!(r.feed(&at_budget).unwrap().is_none());
        assert!(
            matches!(&r.state, ReadState::Text { buf, .. } if buf.capacity() == budget as usize)
        );
        let mut r = HeaderReader::for_update(&layout);
        assert!(r.feed(&(budget + 1).to_le_bytes()).is_err());
        // A base upload has no layout to go by: the fixed cap applies.
        let mut r = HeaderReader::for_base();
        assert!(r.feed(&(MAX_HEADER_BYTES + 1).to_le_bytes()).is_err());
    }

    /// Inside the budget, a hostile header is refused by the typed parse without building a tree:
    /// a long array where a shape belongs stops at the first dimension too many; more tensors
    /// than the base has stop at the first one too many.
    #[test]
    fn typed_parse_refuses_bulk_early() {
        let layout = small_layout();
        let mut arr = String::from(r#"{"w":{"dtype":"F32","shape":["#);
        arr.push_str(&"1,".repeat(20_000));
        arr.push_str(r#"1],"data_offsets":[0,4]}}"#);
        let e = parse_header(arr.as_bytes()).unwrap_err();
        assert!(format!("{e:?}").contains("at most 16 dimensions"), "{e:?}");
        let mut many = String::from("{");
        for i in 0..3 {
            many.push_str(&format!(
                r#""t{i}":{{"dtype":"F32","shape":[1],"data_offsets":[{},{}]}},"#,
                4 * i,
                4 * i + 4
            ));
        }
        many.pop();
        many.push('}');
        let mut file = (many.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(many.as_bytes());
        let e = HeaderReader::for_update(&layout).feed(&file).unwrap_err();
        assert!(
            matches!(&e, FormatError::Mismatch(m) if m.contains("more tensors than the base version's 2")),
            "{e:?}"
        );
    }
}

#[cfg(test)]
mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn dtype() -> impl Strategy<Value = DType> {
        prop::sample::select(vec![DType::F64, DType::F32, DType::F16, DType::BF16])
    }

    fn layout() -> impl Strategy<Value = ModelLayout> {
        prop::collection::btree_map(
            "[a-z][a-z0-9._é\"\\\\/]{0,20}",
            (dtype(), prop::collection::vec(0u64..6, 0..5)),
            1..12,
        )
        .prop_map(|m| ModelLayout {
            tensors: m
                .into_iter()
                .map(|(name, (dtype, shape))| TensorSpec { name, dtype, shape })
                .collect(),
        })
    }

    proptest! {
        /// What we encode parses back to the same layout, fits the layout's own update budget,
        /// and reads the same through the streaming reader at any chunking; any order of the
        /// tensors in the file matches the layout.
        #[test]
        fn encoded_headers_round_trip(l in layout(), split in 1usize..40, seed in any::<u64>()) {
            let meta = BTreeMap::from([("k".to_string(), "v".to_string())]);
            let file = encode_header(&l, &meta);
            prop_assert!(file.len() as u64 - 8 <= header_budget(&l));
            let h = parse_header(&file[8..]).unwrap();
            let mut by_order = h.layout();
            by_order.tensors.sort_by(|a, b| a.name.cmp(&b.name));
            let mut want = l.clone();
            want.tensors.sort_by(|a, b| a.name.cmp(&b.name));
            // Zero-sized tensors share an offset, so only the set is defined, not the order.
            prop_assert_eq!(by_order, want);
            prop_assert!(h.match_base(&l).is_ok());
            let mut data = vec![0u8; l.total_bytes() as usize];
            data.iter_mut().enumerate().for_each(|(i, b)| *b = (i as u64 ^ seed) as u8);
            let mut whole = file.clone();
            whole.extend_from_slice(&data);
            let mut r = HeaderReader::for_update(&l);
            let mut rest = Vec::new();
            let mut got = None;
            for c in whole.chunks(split) {
                if got.is_some() {
                    rest.extend_from_slice(c);
                } else if let Some((h, tail)) = r.feed(c).unwrap() {
                    rest.extend_from_slice(tail);
                    got = Some(h);
                }
            }
            prop_assert_eq!(got.unwrap(), h);
            prop_assert_eq!(rest, data);
        }

        /// Arbitrary header text never panics the parser.
        #[test]
        fn arbitrary_header_text_never_panics(text in "[{}\\[\\]\":,0-9a-zA-Z_ ]{0,120}") {
            let _ = parse_header(text.as_bytes());
        }
    }
}
