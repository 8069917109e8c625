//! Fixtures in `shared/testdata/npy/` were written by numpy 2.4.6 (`np.save`, and
//! `np.lib.format.write_array(version=(2, 0))` for the v2 file) from the SDK venv.

use proptest::prelude::*;

use super::*;
use crate::fl::layout::TensorSpec;
use crate::fl::safetensors::{parse_header as parse_st_header, HeaderReader};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/npy/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn layout(tensors: &[(&str, DType, &[u64])]) -> ModelLayout {
    ModelLayout {
        tensors: tensors
            .iter()
            .map(|(n, d, s)| TensorSpec {
                name: (*n).into(),
                dtype: *d,
                shape: s.to_vec(),
            })
            .collect(),
    }
}

/// The values of a safetensors file built by `to_safetensors`, decoded in canonical order.
fn values(st: &[u8], base: &ModelLayout) -> Vec<f64> {
    let len = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let header = parse_st_header(&st[8..8 + len]).unwrap();
    header.match_base(base).unwrap();
    assert_eq!(header.file_len(), st.len() as u64);
    let size = base.tensors[0].dtype.size();
    st[8 + len..]
        .chunks_exact(size)
        .map(|b| base.tensors[0].dtype.decode(b))
        .collect()
}

fn f32_base() -> ModelLayout {
    layout(&[("w", DType::F32, &[3, 4])])
}

fn eighths() -> Vec<f64> {
    (0..12).map(|i| i as f64 / 8.0).collect()
}

#[test]
fn numpy_files_read_back_as_their_values() {
    let base = f32_base();
    let st = to_safetensors(&fixture("f32_3x4.npy"), &base).unwrap();
    assert_eq!(values(&st, &base), eighths());
    // Big-endian is byte-swapped into the same values.
    let st = to_safetensors(&fixture("f32_be_3x4.npy"), &base).unwrap();
    assert_eq!(values(&st, &base), eighths());
    // Format 2.0 (a 4-byte header length), flat against a two-tensor base.
    let two = layout(&[("a", DType::F32, &[2, 2]), ("b", DType::F32, &[8])]);
    let st = to_safetensors(&fixture("f32_12_v2.npy"), &two).unwrap();
    assert_eq!(values(&st, &two), eighths());

    let f64_base = layout(&[("x", DType::F64, &[5])]);
    let st = to_safetensors(&fixture("f64_5.npy"), &f64_base).unwrap();
    assert_eq!(values(&st, &f64_base), vec![0.5, -1.25, 2.0, 3.0, 4.0]);

    let f16_base = layout(&[("h", DType::F16, &[2, 2])]);
    let st = to_safetensors(&fixture("f16_2x2.npy"), &f16_base).unwrap();
    assert_eq!(values(&st, &f16_base), vec![1.0, 2.0, 3.0, -4.0]);
}

#[test]
fn the_header_is_read_as_typed_fields() {
    let h = parse_header(&fixture("f32_3x4.npy")).unwrap();
    assert_eq!(
        (h.dtype, h.big_endian, h.fortran_order, h.shape.clone()),
        (DType::F32, false, false, vec![3, 4])
    );
    assert_eq!(h.data_offset, 128);
    assert!(
        parse_header(&fixture("f32_fortran_3x4.npy"))
            .unwrap()
            .fortran_order
    );
}

#[test]
fn pickled_and_structured_arrays_are_refused() {
    assert_eq!(
        parse_header(&fixture("object.npy")),
        Err(NpyError::ObjectArray)
    );
    assert!(matches!(
        parse_header(&fixture("structured.npy")),
        Err(NpyError::UnsupportedDtype(_))
    ));
    assert!(matches!(
        parse_header(&fixture("i32_12.npy")),
        Err(NpyError::UnsupportedDtype(_))
    ));
}

#[test]
fn a_file_that_does_not_match_the_base_is_refused() {
    let good = fixture("f32_3x4.npy");
    // Wrong shape: neither the tensor's shape nor the flat total.
    let base = layout(&[("w", DType::F32, &[4, 3])]);
    assert!(matches!(
        to_safetensors(&good, &base),
        Err(NpyError::WrongShape { .. })
    ));
    let base = layout(&[("w", DType::F32, &[13])]);
    assert!(matches!(
        to_safetensors(&good, &base),
        Err(NpyError::WrongShape { .. })
    ));
    // Wrong dtype.
    let base = layout(&[("w", DType::F64, &[3, 4])]);
    assert!(matches!(
        to_safetensors(&good, &base),
        Err(NpyError::WrongDtype { .. })
    ));
    let mixed = layout(&[("a", DType::F32, &[6]), ("b", DType::F16, &[6])]);
    assert!(matches!(
        to_safetensors(&fixture("f32_12_v2.npy"), &mixed),
        Err(NpyError::WrongDtype { .. })
    ));
    // Fortran order with two real axes.
    assert_eq!(
        to_safetensors(&fixture("f32_fortran_3x4.npy"), &f32_base()),
        Err(NpyError::FortranOrder)
    );
}

#[test]
fn truncated_and_padded_files_are_refused() {
    let good = fixture("f32_3x4.npy");
    let base = f32_base();
    for cut in [0, 5, 8, 9, 60, 127] {
        assert!(
            to_safetensors(&good[..cut], &base).is_err(),
            "cut at {cut} accepted"
        );
    }
    assert_eq!(
        to_safetensors(&good[..good.len() - 1], &base),
        Err(NpyError::DataLength { got: 47, want: 48 })
    );
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        to_safetensors(&long, &base),
        Err(NpyError::DataLength { .. })
    ));
}

/// A v1 file with `header` as its header text (unpadded).
fn with_header(header: &str) -> Vec<u8> {
    let mut f = b"\x93NUMPY\x01\x00".to_vec();
    f.extend_from_slice(&(header.len() as u16).to_le_bytes());
    f.extend_from_slice(header.as_bytes());
    f
}

#[test]
fn malformed_headers_are_refused() {
    for h in [
        "",
        "{",
        "{}",
        "{'descr': '<f4', 'fortran_order': False}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), 'extra': 1}",
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}",
        "{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': [3]}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-3,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3.0,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}",
        "{'descr': '<f\\x34', 'fortran_order': False, 'shape': (3,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} junk",
        "{'descr': '|f4', 'fortran_order': False, 'shape': (3,)}",
        "{'descr': '<c8', 'fortran_order': False, 'shape': (3,)}",
        "{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (3,)}",
    ] {
        assert!(parse_header(&with_header(h)).is_err(), "accepted {h:?}");
    }
    let fine = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n";
    assert_eq!(parse_header(&with_header(fine)).unwrap().shape, vec![3]);
    let pickle = "{'descr': '|O', 'fortran_order': False, 'shape': (2,)}";
    assert_eq!(
        parse_header(&with_header(pickle)),
        Err(NpyError::ObjectArray)
    );
}

#[test]
fn a_header_beyond_the_budget_is_refused_from_its_length() {
    let mut f = b"\x93NUMPY\x02\x00".to_vec();
    f.extend_from_slice(&(HEADER_BUDGET as u32 + 1).to_le_bytes());
    // Nothing of the header follows: the length prefix alone decides.
    assert_eq!(
        parse_header(&f),
        Err(NpyError::HeaderTooLong(HEADER_BUDGET as u64 + 1))
    );
    assert_eq!(
        parse_header(b"\x93NUMPY\x04\x00\x10\x00"),
        Err(NpyError::UnsupportedVersion(4, 0))
    );
    assert_eq!(
        parse_header(b"\x93NUMPX\x01\x00\x10\x00"),
        Err(NpyError::BadMagic)
    );
}

fn npy(shape: &[u64], values: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut f = with_header(&format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}\n"
    ));
    for v in values {
        f.extend_from_slice(&v.to_le_bytes());
    }
    f
}

proptest! {
    /// Whatever bytes arrive, the reader answers without panicking, and what it accepts is a
    /// safetensors update of exactly the base layout.
    #[test]
    fn any_bytes_are_answered(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let base = layout(&[("w", DType::F32, &[3])]);
        if let Ok(st) = to_safetensors(&bytes, &base) {
            prop_assert_eq!(values(&st, &base).len(), 3);
        }
    }

    /// Any mutation of a good file's header is refused or still reads to a correct layout.
    #[test]
    fn mutated_headers_never_panic(at in 0usize..128, b in any::<u8>()) {
        let mut f = fixture("f32_3x4.npy");
        f[at] = b;
        let base = f32_base();
        if let Ok(st) = to_safetensors(&f, &base) {
            prop_assert_eq!(values(&st, &base).len(), 12);
        }
    }

    /// Values written as npy come back unchanged, for any shape that flattens to the base.
    #[test]
    fn values_round_trip(vals in proptest::collection::vec(-1e6f32..1e6, 1..40)) {
        let n = vals.len() as u64;
        let base = layout(&[("w", DType::F32, &[n])]);
        let st = to_safetensors(&npy(&[n], &vals), &base).unwrap();
        let back: Vec<f64> = vals.iter().map(|&v| v as f64).collect();
        prop_assert_eq!(values(&st, &base), back);
        prop_assert!(to_safetensors(&npy(&[n + 1], &vals), &base).is_err());
    }
}

#[test]
fn the_output_passes_the_update_header_reader() {
    let base = f32_base();
    let st = to_safetensors(&fixture("f32_3x4.npy"), &base).unwrap();
    let mut r = HeaderReader::for_update(&base);
    assert!(matches!(r.feed(&st), Ok(Some(_))));
}
