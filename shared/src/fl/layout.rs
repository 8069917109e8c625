//! A model's layout: its tensors (name, dtype, shape) in one canonical order. Every update is
//! read against the base version's layout, and the flattened element index (tensor by tensor in
//! this order) is the coordinate system shared by accumulators, shards and the JSON envelope.

use serde::{Deserialize, Serialize};

use super::dtype::DType;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
}

impl TensorSpec {
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }

    pub fn byte_len(&self) -> u64 {
        self.numel() * self.dtype.size() as u64
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelLayout {
    pub tensors: Vec<TensorSpec>,
}

impl ModelLayout {
    pub fn total_elements(&self) -> u64 {
        self.tensors.iter().map(TensorSpec::numel).sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.tensors.iter().map(TensorSpec::byte_len).sum()
    }

    /// The first flattened element index of each tensor, plus the total at the end.
    pub fn element_starts(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.tensors.len() + 1);
        let mut at = 0;
        for t in &self.tensors {
            out.push(at);
            at += t.numel();
        }
        out.push(at);
        out
    }
}

/// Where one tensor's elements sit in a flattened update (the `plaintext_json` envelope's list
/// and every element index): `count` elements from `offset`, row-major in `shape`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElementSpan {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub offset: u64,
    pub count: u64,
}

impl ModelLayout {
    /// Every tensor with its element offset and count, in the order updates are flattened.
    pub fn element_spans(&self) -> Vec<ElementSpan> {
        let mut at = 0;
        self.tensors
            .iter()
            .map(|t| {
                let span = ElementSpan {
                    name: t.name.clone(),
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    offset: at,
                    count: t.numel(),
                };
                at += t.numel();
                span
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_and_totals() {
        let l = ModelLayout {
            tensors: vec![
                TensorSpec {
                    name: "a".into(),
                    dtype: DType::F32,
                    shape: vec![2, 3],
                },
                TensorSpec {
                    name: "b".into(),
                    dtype: DType::F16,
                    shape: vec![4],
                },
            ],
        };
        assert_eq!(l.total_elements(), 10);
        assert_eq!(l.total_bytes(), 24 + 8);
        let s = l.element_starts();
        assert_eq!(s, vec![0, 6, 10]);
        let spans = l.element_spans();
        assert_eq!(
            spans
                .iter()
                .map(|s| (s.name.as_str(), s.offset, s.count))
                .collect::<Vec<_>>(),
            vec![("a", 0, 6), ("b", 6, 4)]
        );
        assert_eq!(spans[1].shape, vec![4]);
    }
}
