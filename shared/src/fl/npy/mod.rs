//! The `.npy` files the Octomil SDK's `FederatedClient` uploads (`np.save` of one array), read
//! safely and turned into the safetensors update every other path validates.
//!
//! Only what `np.save` writes for a plain float array is accepted: the magic, format version
//! 1.0, 2.0 or 3.0, a header of at most [`HEADER_BUDGET`] bytes (refused from its length prefix,
//! before it is read), and a header dict with exactly `descr`, `fortran_order` and `shape`, parsed
//! by hand into typed fields (never evaluated). Object arrays (`descr` `O`, which `np.load` reads
//! only with `allow_pickle`) and structured dtypes are refused: nothing here unpickles. The data
//! must be exactly the declared elements. `numpy` has no bfloat16, so a bf16 base takes no npy.
//!
//! The array must match the base version: its dtype is the base's (every tensor's), and its shape
//! is either the one tensor's shape or the flat `[total elements]` read in the plan's
//! `element_layout` order (the `plaintext_json` order). Fortran order is refused unless at most one
//! axis is longer than 1 (where it is the same bytes as C order).

use std::collections::BTreeMap;

use super::dtype::DType;
use super::layout::ModelLayout;
use super::safetensors::encode_header;

/// The largest header accepted. `np.save` pads its header to 64 bytes (128 from numpy 2 on
/// for a large shape); a few hundred bytes cover any shape of at most 32 axes.
pub const HEADER_BUDGET: usize = 4096;
const MAGIC: &[u8; 6] = b"\x93NUMPY";
const MAX_AXES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NpyError {
    #[error("not an .npy file (bad magic)")]
    BadMagic,
    #[error("unsupported .npy format version {0}.{1}")]
    UnsupportedVersion(u8, u8),
    #[error("the .npy header is {0} bytes, more than the {HEADER_BUDGET} allowed")]
    HeaderTooLong(u64),
    #[error("the .npy file ends inside its header")]
    TruncatedHeader,
    #[error("malformed .npy header: {0}")]
    MalformedHeader(&'static str),
    #[error("object arrays (pickled data) are refused")]
    ObjectArray,
    #[error("unsupported dtype {0:?}: send float16, float32 or float64")]
    UnsupportedDtype(String),
    #[error("the array's dtype {got} does not match the base version's {want}")]
    WrongDtype { got: &'static str, want: String },
    #[error("the array's shape {got:?} is neither the base tensor's shape nor [{total}]")]
    WrongShape { got: Vec<u64>, total: u64 },
    #[error("fortran_order arrays with more than one axis are refused; send C order")]
    FortranOrder,
    #[error("the .npy data holds {got} bytes, its header declares {want}")]
    DataLength { got: u64, want: u64 },
}

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    pub dtype: DType,
    pub big_endian: bool,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
    /// Where the data starts in the file.
    pub data_offset: usize,
}

impl NpyHeader {
    /// The element count, or `None` when it overflows.
    pub fn numel(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d))
    }
}

/// Parses the header of `file` (its prefix suffices) without reading past [`HEADER_BUDGET`].
pub fn parse_header(file: &[u8]) -> Result<NpyHeader, NpyError> {
    if file.len() < 8 || &file[..6] != MAGIC {
        return Err(NpyError::BadMagic);
    }
    let (major, minor) = (file[6], file[7]);
    let (len, start) = match major {
        1 if file.len() >= 10 => (u16::from_le_bytes([file[8], file[9]]) as u64, 10),
        2 | 3 if file.len() >= 12 => (
            u32::from_le_bytes([file[8], file[9], file[10], file[11]]) as u64,
            12,
        ),
        1..=3 => return Err(NpyError::TruncatedHeader),
        _ => return Err(NpyError::UnsupportedVersion(major, minor)),
    };
    if minor != 0 {
        return Err(NpyError::UnsupportedVersion(major, minor));
    }
    if len > HEADER_BUDGET as u64 {
        return Err(NpyError::HeaderTooLong(len));
    }
    let end = start + len as usize;
    let text = file.get(start..end).ok_or(NpyError::TruncatedHeader)?;
    let dict = HeaderDict::parse(text)?;
    Ok(NpyHeader {
        dtype: dict.dtype,
        big_endian: dict.big_endian,
        fortran_order: dict.fortran_order,
        shape: dict.shape,
        data_offset: end,
    })
}

/// Checks `file` against `base` and returns the same values as a safetensors update of the
/// base's layout (little-endian, canonical order), ready for the one validator all updates use.
pub fn to_safetensors(file: &[u8], base: &ModelLayout) -> Result<Vec<u8>, NpyError> {
    let h = parse_header(file)?;
    let want = base
        .tensors
        .first()
        .map(|t| t.dtype)
        .ok_or(NpyError::MalformedHeader("the base version has no tensors"))?;
    if base.tensors.iter().any(|t| t.dtype != h.dtype) || want != h.dtype {
        let mut names: Vec<&str> = base.tensors.iter().map(|t| t.dtype.as_str()).collect();
        names.dedup();
        return Err(NpyError::WrongDtype {
            got: h.dtype.as_str(),
            want: names.join("/"),
        });
    }
    let total = base.total_elements();
    let single = base.tensors.len() == 1 && base.tensors[0].shape == h.shape;
    if !(single || h.shape == [total]) {
        return Err(NpyError::WrongShape {
            got: h.shape,
            total,
        });
    }
    if h.fortran_order && h.shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(NpyError::FortranOrder);
    }
    let size = h.dtype.size();
    let want_bytes = total * size as u64;
    let data = &file[h.data_offset..];
    if data.len() as u64 != want_bytes {
        return Err(NpyError::DataLength {
            got: data.len() as u64,
            want: want_bytes,
        });
    }
    let mut out = encode_header(base, &BTreeMap::new());
    out.reserve(data.len());
    if h.big_endian && size > 1 {
        for item in data.chunks_exact(size) {
            out.extend(item.iter().rev());
        }
    } else {
        out.extend_from_slice(data);
    }
    Ok(out)
}

struct HeaderDict {
    dtype: DType,
    big_endian: bool,
    fortran_order: bool,
    shape: Vec<u64>,
}

/// A cursor over the header text: the Python literal `np.save` writes, and nothing more.
struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while self.s.get(self.at).is_some_and(|b| b" \t\r\n".contains(b)) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.at) == Some(&b) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8, what: &'static str) -> Result<(), NpyError> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(NpyError::MalformedHeader(what))
        }
    }

    fn string(&mut self) -> Result<&'a [u8], NpyError> {
        self.skip_ws();
        let q = match self.s.get(self.at) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(NpyError::MalformedHeader("expected a quoted string")),
        };
        let start = self.at + 1;
        let len = self.s[start..]
            .iter()
            .position(|&b| b == q || b == b'\\')
            .ok_or(NpyError::MalformedHeader("unterminated string"))?;
        if self.s[start + len] == b'\\' {
            return Err(NpyError::MalformedHeader("escapes are not allowed"));
        }
        self.at = start + len + 1;
        Ok(&self.s[start..start + len])
    }

    fn word(&mut self) -> &'a [u8] {
        self.skip_ws();
        let start = self.at;
        while self.s.get(self.at).is_some_and(u8::is_ascii_alphanumeric) {
            self.at += 1;
        }
        &self.s[start..self.at]
    }
}

impl HeaderDict {
    fn parse(text: &[u8]) -> Result<Self, NpyError> {
        let mut c = Cursor { s: text, at: 0 };
        c.expect(b'{', "expected '{'")?;
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        loop {
            if c.eat(b'}') {
                break;
            }
            let key = c.string()?;
            c.expect(b':', "expected ':'")?;
            match key {
                b"descr" if descr.is_none() => descr = Some(Self::descr(&mut c)?),
                b"fortran_order" if fortran.is_none() => {
                    fortran = Some(match c.word() {
                        b"True" => true,
                        b"False" => false,
                        _ => return Err(NpyError::MalformedHeader("fortran_order is not a bool")),
                    })
                }
                b"shape" if shape.is_none() => shape = Some(Self::shape(&mut c)?),
                _ => return Err(NpyError::MalformedHeader("unknown or repeated key")),
            }
            if !c.eat(b',') {
                c.expect(b'}', "expected ',' or '}'")?;
                break;
            }
        }
        c.skip_ws();
        if c.at != text.len() {
            return Err(NpyError::MalformedHeader("text after the header dict"));
        }
        let ((dtype, big_endian), fortran_order, shape) = match (descr, fortran, shape) {
            (Some(d), Some(f), Some(s)) => (d, f, s),
            _ => {
                return Err(NpyError::MalformedHeader(
                    "descr, fortran_order and shape are all required",
                ))
            }
        };
        Ok(HeaderDict {
            dtype,
            big_endian,
            fortran_order,
            shape,
        })
    }

    fn descr(c: &mut Cursor<'_>) -> Result<(DType, bool), NpyError> {
        c.skip_ws();
        if matches!(c.s.get(c.at), Some(b'[' | b'{' | b'(')) {
            return Err(NpyError::UnsupportedDtype("a structured dtype".into()));
        }
        let d = c.string()?;
        let shown = || String::from_utf8_lossy(d).into_owned();
        let (order, kind) = match d {
            [o @ (b'<' | b'>' | b'=' | b'|'), rest @ ..] => (*o, rest),
            rest => (b'=', rest),
        };
        if kind.first() == Some(&b'O') {
            return Err(NpyError::ObjectArray);
        }
        let dtype = match kind {
            b"f2" => DType::F16,
            b"f4" => DType::F32,
            b"f8" => DType::F64,
            _ => return Err(NpyError::UnsupportedDtype(shown())),
        };
        // '|' (not applicable) is only valid for one-byte types.
        if order == b'|' {
            return Err(NpyError::UnsupportedDtype(shown()));
        }
        Ok((dtype, order == b'>'))
    }

    fn shape(c: &mut Cursor<'_>) -> Result<Vec<u64>, NpyError> {
        c.expect(b'(', "shape is not a tuple")?;
        let mut dims = Vec::new();
        loop {
            if c.eat(b')') {
                break;
            }
            let w = c.word();
            if w.is_empty() || w.len() > 19 || !w.iter().all(u8::is_ascii_digit) {
                return Err(NpyError::MalformedHeader("a dimension is not an integer"));
            }
            let d: u64 = std::str::from_utf8(w)
                .ok()
                .and_then(|w| w.parse().ok())
                .ok_or(NpyError::MalformedHeader("a dimension is not an integer"))?;
            dims.push(d);
            if dims.len() > MAX_AXES {
                return Err(NpyError::MalformedHeader("too many axes"));
            }
            if !c.eat(b',') {
                c.expect(b')', "expected ',' or ')' in shape")?;
                break;
            }
        }
        if dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .is_none()
        {
            return Err(NpyError::MalformedHeader("the element count overflows"));
        }
        Ok(dims)
    }
}

#[cfg(test)]
mod tests;
