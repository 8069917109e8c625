//! The safetensors container: an 8-byte little-endian header length, a JSON header naming each
//! tensor's dtype, shape and byte range, then the raw data. Parsed from the header bytes alone,
//! so a multi-megabyte upload is validated without holding its data.

use std::collections::BTreeMap;

use serde_json::Value;

use super::dtype::DType;
use super::layout::{ModelLayout, TensorSpec};

/// Headers larger than this are refused before they are buffered.
pub const MAX_HEADER_BYTES: u64 = 16 * 1024 * 1024;
pub const MAX_TENSORS: usize = 100_000;
const MAX_NAME_LEN: usize = 512;

/// Why a container was refused: unreadable, or readable but not the model the round expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    Malformed(String),
    Mismatch(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub spec: TensorSpec,
    /// Byte range within the data section.
    pub begin: u64,
    pub end: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub header_len: u64,
    /// In data order (ascending `begin`), tiling the data section without gaps.
    pub entries: Vec<Entry>,
    pub metadata: BTreeMap<String, String>,
}

/// Reads the header length from the first eight bytes.
pub fn header_len(first8: &[u8]) -> Result<u64, FormatError> {
    let b: [u8; 8] = first8
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| FormatError::Malformed("safetensors file is shorter than 8 bytes".into()))?;
    let n = u64::from_le_bytes(b);
    if !(2..=MAX_HEADER_BYTES).contains(&n) {
        return Err(FormatError::Malformed(format!(
            "safetensors header length {n} is outside 2..={MAX_HEADER_BYTES}"
        )));
    }
    Ok(n)
}

fn malformed(msg: impl Into<String>) -> FormatError {
    FormatError::Malformed(msg.into())
}

/// Parses the JSON header (the `header_len` bytes after the length prefix).
pub fn parse_header(json: &[u8]) -> Result<Header, FormatError> {
    let v: Value = serde_json::from_slice(json)
        .map_err(|_| malformed("safetensors header is not valid JSON"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| malformed("safetensors header is not a JSON object"))?;
    let mut metadata = BTreeMap::new();
    let mut entries = Vec::new();
    for (name, t) in obj {
        if name == "__metadata__" {
            let m = t
                .as_object()
                .ok_or_else(|| malformed("__metadata__ must be an object of strings"))?;
            for (k, v) in m {
                let s = v
                    .as_str()
                    .ok_or_else(|| malformed("__metadata__ values must be strings"))?;
                metadata.insert(k.clone(), s.to_owned());
            }
            continue;
        }
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
            return Err(malformed("tensor names must be 1-512 printable characters"));
        }
        let t = t
            .as_object()
            .ok_or_else(|| malformed(format!("tensor `{name}` is not an object")))?;
        let dtype_s = t
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(format!("tensor `{name}` has no dtype")))?;
        let dtype = DType::parse(dtype_s).ok_or_else(|| {
            malformed(format!(
                "tensor `{name}` has dtype {dtype_s}; supported: F64, F32, F16, BF16"
            ))
        })?;
        let shape = t
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed(format!("tensor `{name}` has no shape")))?
            .iter()
            .map(|d| d.as_u64())
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| malformed(format!("tensor `{name}` has a non-integer dimension")))?;
        let offs = t
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 2)
            .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
            .ok_or_else(|| malformed(format!("tensor `{name}` has no valid data_offsets")))?;
        let spec = TensorSpec {
            name: name.clone(),
            dtype,
            shape,
        };
        let numel = spec
            .shape
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d))
            .ok_or_else(|| malformed(format!("tensor `{name}` is too large")))?;
        let want = numel
            .checked_mul(dtype.size() as u64)
            .ok_or_else(|| malformed(format!("tensor `{name}` is too large")))?;
        if offs.1 < offs.0 || offs.1 - offs.0 != want {
            return Err(malformed(format!(
                "tensor `{name}`: data_offsets span does not match dtype and shape"
            )));
        }
        entries.push(Entry {
            spec,
            begin: offs.0,
            end: offs.1,
        });
        if entries.len() > MAX_TENSORS {
            return Err(malformed("too many tensors"));
        }
    }
    if entries.is_empty() {
        return Err(malformed("safetensors file has no tensors"));
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
        metadata,
    })
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
        let by_name: BTreeMap<&str, &Entry> = self
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

/// The header of a file holding `layout`'s tensors contiguously in canonical order, padded with
/// spaces to an 8-byte boundary (as the format allows) so the data section is aligned.
pub fn encode_header(layout: &ModelLayout, metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut obj = serde_json::Map::new();
    if !metadata.is_empty() {
        obj.insert(
            "__metadata__".into(),
            Value::Object(
                metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
    }
    let mut at = 0u64;
    for t in &layout.tensors {
        let end = at + t.byte_len();
        obj.insert(
            t.name.clone(),
            serde_json::json!({"dtype": t.dtype.as_str(), "shape": t.shape, "data_offsets": [at, end]}),
        );
        at = end;
    }
    let mut json = Value::Object(obj).to_string().into_bytes();
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
            b"not json",
        ] {
            assert!(
                matches!(parse_header(bad), Err(FormatError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(header_len(&[1, 0]).is_err());
        assert!(header_len(&u64::MAX.to_le_bytes()).is_err());
    }
}
