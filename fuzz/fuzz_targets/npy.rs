//! The `.npy` reader (`fl::npy`): any bytes are answered without a panic, and what it accepts is
//! a safetensors file of exactly the base layout that the update header reader takes, whose data
//! is the npy data (byte-swapped when big-endian).
#![no_main]

use edgeplane_core::fl::npy::{parse_header, to_safetensors};
use edgeplane_core::fl::safetensors::HeaderReader;
use edgeplane_core::fl::{DType, ModelLayout, TensorSpec};
use libfuzzer_sys::fuzz_target;

fn base(shape: Vec<u64>) -> ModelLayout {
    ModelLayout {
        tensors: vec![TensorSpec {
            name: "w".into(),
            dtype: DType::F32,
            shape,
        }],
    }
}

fuzz_target!(|data: &[u8]| {
    for layout in [base(vec![3, 4]), base(vec![12]), base(vec![2])] {
        let Ok(st) = to_safetensors(data, &layout) else {
            continue;
        };
        let h = parse_header(data).expect("an accepted file has a header");
        let mut reader = HeaderReader::for_update(&layout);
        let Ok(Some((header, rest))) = reader.feed(&st) else {
            panic!("the output's header does not read back");
        };
        assert_eq!(header.layout(), layout);
        assert_eq!(rest.len() as u64, layout.total_bytes());
        assert_eq!(rest.len(), data.len() - h.data_offset);
    }
});
