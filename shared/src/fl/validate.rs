//! Streaming validation of one uploaded update, before it may touch a sum.
//!
//! The validator sees the staged bytes once, in order, in chunks of any size: it hashes them,
//! counts them, parses the container (safetensors or the JSON envelope), checks every tensor
//! against the base layout and every value for finiteness and range, and computes the update's L2
//! norm (for clipping). Its result also says where each shard's elements live in the upload, so
//! aggregators read only their slice. Memory is O(header), never O(update).

use std::collections::BTreeMap;

use crate::crypto::hash::ResumableSha256;
use serde::{Deserialize, Serialize};

use super::dtype::DType;
use super::envelope::{self, EnvelopeError, EnvelopeScanner};
use super::layout::ModelLayout;
use super::round::{RejectReason, MAX_SAMPLE_COUNT};
use super::safetensors::{self, FormatError, HeaderReader};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateFormat {
    Safetensors,
    PlaintextJson,
}

/// What a device says about its update (`meta` on initiate and complete).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeta {
    pub sample_count: i64,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    pub format: UpdateFormat,
    pub sha256: String,
    pub size: u64,
}

const MAX_METRICS: usize = 32;

impl UpdateMeta {
    /// Checks the claims themselves; `max_size` bounds what the round will stage.
    pub fn check(&self, max_size: u64) -> Result<(), (RejectReason, String)> {
        if self.sample_count <= 0 || self.sample_count as u64 > MAX_SAMPLE_COUNT {
            return Err((
                RejectReason::InvalidSampleCount,
                format!("sample_count must be between 1 and {MAX_SAMPLE_COUNT}"),
            ));
        }
        if self.size == 0 || self.size > max_size {
            return Err((
                RejectReason::TooLarge,
                format!("size must be between 1 and {max_size} bytes for this model"),
            ));
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err((
                RejectReason::Malformed,
                "sha256 must be 64 lower-case hex characters".into(),
            ));
        }
        if self.metrics.len() > MAX_METRICS
            || self
                .metrics
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 64 || !v.is_finite())
        {
            return Err((
                RejectReason::Malformed,
                format!("metrics must be at most {MAX_METRICS} finite numbers with short names"),
            ));
        }
        Ok(())
    }
}

/// The largest upload the round stages for a model: the safetensors data plus the header budget
/// of its layout, or the JSON envelope at up to 32 characters per value.
pub fn max_upload_size(layout: &ModelLayout, format: UpdateFormat) -> u64 {
    match format {
        UpdateFormat::Safetensors => layout.total_bytes() + 8 + safetensors::header_budget(layout),
        UpdateFormat::PlaintextJson => layout.total_elements() * 32 + 4096,
    }
}

/// Where a validated update's elements are, for the aggregators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UpdateSource {
    /// Absolute byte offset of each base tensor's data, in the layout's canonical order.
    Safetensors { tensor_starts: Vec<u64> },
    /// Absolute byte offset of the first element of each shard, in shard order; `end` is the
    /// offset just past the last element's text.
    PlaintextJson { shard_offsets: Vec<u64> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validated {
    pub norm: f64,
    pub size: u64,
    pub source: UpdateSource,
}

pub type Rejection = (RejectReason, String);

/// Per-element checks shared by both formats: finite, representable in the model's dtype.
#[derive(Clone, Serialize, Deserialize)]
struct ElementCheck {
    /// From the layout (not saved: rebuilt when a validation resumes).
    #[serde(skip)]
    starts: Vec<u64>,
    #[serde(skip)]
    dtypes: Vec<DType>,
    next_tensor: usize,
    max_abs: f64,
    norm_sq: f64,
}

impl ElementCheck {
    fn new(layout: &ModelLayout) -> Self {
        Self {
            starts: layout.element_starts(),
            dtypes: layout.tensors.iter().map(|t| t.dtype).collect(),
            next_tensor: 0,
            max_abs: layout
                .tensors
                .first()
                .map(|t| t.dtype.max_finite())
                .unwrap_or(0.0),
            norm_sq: 0.0,
        }
    }

    /// Checks a run of whole elements of one dtype starting at element `first` (the safetensors
    /// path): one tight, branch-light loop per run; the offending index is located only on
    /// failure.
    fn check_run(&mut self, first: u64, dtype: DType, bytes: &[u8]) -> Result<(), Rejection> {
        let max = dtype.max_finite();
        // True for NaN too (every comparison with NaN is false).
        let out_of_range = |v: f64| {
            !matches!(
                v.abs().partial_cmp(&max),
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
            )
        };
        let mut norm = 0.0f64;
        let mut bad = false;
        match dtype {
            DType::F32 => {
                for b in bytes.chunks_exact(4) {
                    let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64;
                    norm += v * v;
                    bad |= out_of_range(v);
                }
            }
            d => {
                for b in bytes.chunks_exact(d.size()) {
                    let v = d.decode(b);
                    norm += v * v;
                    bad |= out_of_range(v);
                }
            }
        }
        if bad {
            let at = bytes
                .chunks_exact(dtype.size())
                .position(|b| out_of_range(dtype.decode(b)))
                .unwrap_or(0) as u64;
            return Err((
                RejectReason::NonFinite,
                format!(
                    "element {} is not a finite value of the model's dtype",
                    first + at
                ),
            ));
        }
        self.norm_sq += norm;
        Ok(())
    }

    #[inline]
    fn check(&mut self, index: u64, v: f64) -> Result<(), Rejection> {
        while self.next_tensor + 1 < self.starts.len() && index >= self.starts[self.next_tensor + 1]
        {
            self.next_tensor += 1;
            self.max_abs = self
                .dtypes
                .get(self.next_tensor)
                .map(|d| d.max_finite())
                .unwrap_or(0.0);
        }
        if !v.is_finite() || v.abs() > self.max_abs {
            return Err((
                RejectReason::NonFinite,
                format!("element {index} is not a finite value of the model's dtype"),
            ));
        }
        self.norm_sq += v * v;
        Ok(())
    }
}

#[derive(Clone, Serialize, Deserialize)]
enum Body {
    Safetensors(StState),
    Json(Box<EnvelopeScanner>),
}

#[derive(Clone, Serialize, Deserialize)]
struct StState {
    /// Reads the header within the base layout's budget; `None` once the header was read.
    reader: Option<HeaderReader>,
    header: Option<safetensors::Header>,
    /// Tensors in file order: (dtype, data begin, data end, first element index in layout order).
    plan: Vec<(DType, u64, u64, u64)>,
    /// Element checks need layout order; file order may differ, so values are checked per tensor
    /// with their own element indices.
    tensor_starts: Vec<u64>,
    carry: Vec<u8>,
    cursor: usize,
    /// Absolute offset of the next data byte.
    pos: u64,
}

/// Validates one update as its bytes go by. Its progress can be saved between two chunks
/// ([`Validator::save`]) and resumed elsewhere ([`Validator::resume`]): an upload sent in parts,
/// in order, is validated while each part streams in, and completing it only finishes.
#[derive(Clone, Serialize, Deserialize)]
pub struct Validator {
    /// `None` when the caller hashes the bytes itself (with a native digest) and passes the
    /// result to [`Validator::finish_with_digest`].
    hasher: Option<ResumableSha256>,
    received: u64,
    body: Body,
    elems: ElementCheck,
    /// The first content problem found; reported only if size and hash match (a corrupt
    /// transfer is reported as such, not as whatever garbage it parsed to).
    problem: Option<Rejection>,
    // What validation was started with (not saved: given again to `resume`).
    #[serde(skip)]
    meta_sha: String,
    #[serde(skip)]
    meta_size: u64,
    #[serde(skip)]
    layout_elements: u64,
    #[serde(skip)]
    layout: ModelLayout,
    #[serde(skip)]
    shard_starts: Vec<u64>,
}

/// A saved validation that cannot continue: not written by this code, or for another format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("saved validation state unusable: {0}")]
pub struct ResumeError(String);

impl Validator {
    /// `shard_starts`: the first element of each shard (JSON updates record where they begin).
    pub fn new(meta: &UpdateMeta, layout: &ModelLayout, shard_starts: Vec<u64>) -> Self {
        let body = match meta.format {
            UpdateFormat::Safetensors => Body::Safetensors(StState {
                reader: Some(HeaderReader::for_update(layout)),
                header: None,
                plan: Vec::new(),
                tensor_starts: Vec::new(),
                carry: Vec::new(),
                cursor: 0,
                pos: 0,
            }),
            UpdateFormat::PlaintextJson => {
                Body::Json(Box::new(EnvelopeScanner::new(shard_starts.clone())))
            }
        };
        Self {
            hasher: Some(ResumableSha256::new()),
            meta_sha: meta.sha256.clone(),
            meta_size: meta.size,
            layout_elements: layout.total_elements(),
            received: 0,
            body,
            elems: ElementCheck::new(layout),
            layout: layout.clone(),
            problem: None,
            shard_starts,
        }
    }

    /// The same, for a caller that computes the SHA-256 itself.
    pub fn new_unhashed(meta: &UpdateMeta, layout: &ModelLayout, shard_starts: Vec<u64>) -> Self {
        Self {
            hasher: None,
            ..Self::new(meta, layout, shard_starts)
        }
    }

    /// The validation so far, to continue later with [`Validator::resume`].
    pub fn save(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail; an empty state would fail to resume.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Continues a saved validation of the same update (`meta`, `layout` and `shard_starts` as
    /// it was started with).
    pub fn resume(
        meta: &UpdateMeta,
        layout: &ModelLayout,
        shard_starts: Vec<u64>,
        saved: &[u8],
    ) -> Result<Self, ResumeError> {
        let mut v: Validator =
            postcard::from_bytes(saved).map_err(|e| ResumeError(e.to_string()))?;
        let format_matches = matches!(
            (&v.body, meta.format),
            (Body::Safetensors(_), UpdateFormat::Safetensors)
                | (Body::Json(_), UpdateFormat::PlaintextJson)
        );
        if !format_matches || v.received > meta.size {
            return Err(ResumeError("another update's state".into()));
        }
        let fresh = ElementCheck::new(layout);
        v.elems.starts = fresh.starts;
        v.elems.dtypes = fresh.dtypes;
        v.meta_sha = meta.sha256.clone();
        v.meta_size = meta.size;
        v.layout_elements = layout.total_elements();
        v.layout = layout.clone();
        v.shard_starts = shard_starts;
        Ok(v)
    }

    /// How many bytes were fed so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Feeds the next staged bytes. An error means "stop reading: it can only be rejected".
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Rejection> {
        self.received += chunk.len() as u64;
        if self.received > self.meta_size {
            return Err((
                RejectReason::SizeMismatch,
                format!("received more than the declared {} bytes", self.meta_size),
            ));
        }
        if let Some(h) = &mut self.hasher {
            h.update(chunk);
        }
        if self.problem.is_none() {
            if let Err(p) = self.parse(chunk) {
                self.problem = Some(p);
            }
        }
        Ok(())
    }

    fn parse(&mut self, chunk: &[u8]) -> Result<(), Rejection> {
        match &mut self.body {
            Body::Json(scanner) => {
                let elems = &mut self.elems;
                let total = self.layout_elements;
                let mut sink = |i: u64, v: f64| -> Result<(), Rejection> {
                    if i >= total {
                        return Err((
                            RejectReason::TensorMismatch,
                            format!("`data` has more than the model's {total} values"),
                        ));
                    }
                    elems.check(i, v)
                };
                scanner.feed(chunk, &mut sink).map_err(|e| match e {
                    EnvelopeError::Malformed(m) => (RejectReason::Malformed, m),
                    EnvelopeError::Sink(r) => r,
                })
            }
            Body::Safetensors(st) => feed_safetensors(st, &self.layout, &mut self.elems, chunk),
        }
    }

    pub fn finish(mut self) -> Result<Validated, Rejection> {
        let digest = match self.hasher.take() {
            Some(h) => h.finalize_hex(),
            None => String::new(),
        };
        self.finish_with_digest(&digest)
    }

    /// Completes validation with the SHA-256 (hex) of exactly the bytes fed.
    pub fn finish_with_digest(self, digest_hex: &str) -> Result<Validated, Rejection> {
        if self.received != self.meta_size {
            return Err((
                RejectReason::SizeMismatch,
                format!(
                    "received {} bytes, the declared size is {}",
                    self.received, self.meta_size
                ),
            ));
        }
        if !crate::crypto::constant_time_eq(digest_hex.as_bytes(), self.meta_sha.as_bytes()) {
            return Err((
                RejectReason::Sha256Mismatch,
                "the received bytes do not hash to the declared sha256".into(),
            ));
        }
        if let Some(p) = self.problem {
            return Err(p);
        }
        let norm_sq = self.elems.norm_sq;
        let source = match self.body {
            Body::Json(scanner) => {
                let s = scanner.finish::<()>().map_err(|e| match e {
                    EnvelopeError::Malformed(m) => (RejectReason::Malformed, m),
                    EnvelopeError::Sink(()) => (RejectReason::Malformed, "invalid envelope".into()),
                })?;
                if s.format != envelope::FORMAT {
                    return Err((
                        RejectReason::Malformed,
                        "envelope format must be plaintext_json".into(),
                    ));
                }
                if s.declared_size != s.data_len {
                    return Err((
                        RejectReason::SizeMismatch,
                        "the envelope's size does not match its data".into(),
                    ));
                }
                if s.declared_sha256 != s.data_sha256 {
                    return Err((
                        RejectReason::Sha256Mismatch,
                        "the envelope's sha256 does not match its data".into(),
                    ));
                }
                if s.elements != self.layout_elements {
                    return Err((
                        RejectReason::TensorMismatch,
                        format!(
                            "`data` has {} values, the model has {}",
                            s.elements, self.layout_elements
                        ),
                    ));
                }
                if s.cut_offsets.len() != self.shard_starts.len() {
                    return Err((RejectReason::Malformed, "envelope ended early".into()));
                }
                UpdateSource::PlaintextJson {
                    shard_offsets: s.cut_offsets,
                }
            }
            Body::Safetensors(st) => {
                let h = st.header.as_ref().ok_or((
                    RejectReason::Malformed,
                    "the safetensors header is incomplete".to_string(),
                ))?;
                if h.file_len() != self.received {
                    return Err((
                        RejectReason::Malformed,
                        "the safetensors data section does not end where the file does".into(),
                    ));
                }
                UpdateSource::Safetensors {
                    tensor_starts: st.tensor_starts,
                }
            }
        };
        Ok(Validated {
            norm: norm_sq.sqrt(),
            size: self.received,
            source,
        })
    }
}

fn feed_safetensors(
    st: &mut StState,
    layout: &ModelLayout,
    elems: &mut ElementCheck,
    chunk: &[u8],
) -> Result<(), Rejection> {
    let mut chunk = chunk;
    if let Some(reader) = &mut st.reader {
        let Some((header, rest)) = reader.feed(chunk).map_err(fmt_rejection)? else {
            return Ok(());
        };
        st.reader = None;
        chunk = rest;
        let starts = header.match_base(layout).map_err(fmt_rejection)?;
        // File order, with each tensor's first element index in layout order.
        let elem_starts = layout.element_starts();
        let mut plan: Vec<(DType, u64, u64, u64)> = layout
            .tensors
            .iter()
            .zip(&starts)
            .zip(&elem_starts)
            .map(|((t, s), e)| (t.dtype, *s, *s + t.byte_len(), *e))
            .collect();
        plan.sort_by_key(|p| p.1);
        st.plan = plan;
        st.tensor_starts = starts;
        st.pos = header.data_start();
        st.header = Some(header);
    }
    let mut rest = chunk;
    while !rest.is_empty() {
        let Some(&(dtype, begin, end, first_elem)) = st.plan.get(st.cursor) else {
            return Err((
                RejectReason::Malformed,
                "bytes after the last tensor".into(),
            ));
        };
        if st.pos < begin {
            return Err((
                RejectReason::Malformed,
                "gap in the safetensors data".into(),
            ));
        }
        let size = dtype.size();
        let take = ((end - st.pos) as usize).min(rest.len());
        let (mut piece, tail) = rest.split_at(take);
        // Index of the element that begins (or began, if carried) at `st.pos`.
        let mut elem = first_elem + (st.pos - begin) / size as u64;
        if !st.carry.is_empty() {
            let need = (size - st.carry.len()).min(piece.len());
            st.carry.extend_from_slice(&piece[..need]);
            piece = &piece[need..];
            if st.carry.len() == size {
                elems.check(elem, dtype.decode(&st.carry))?;
                st.carry.clear();
                elem += 1;
            }
        }
        let whole = piece.len() / size * size;
        elems.check_run(elem, dtype, &piece[..whole])?;
        st.carry.extend_from_slice(&piece[whole..]);
        st.pos += take as u64;
        if st.pos == end {
            st.cursor += 1;
        }
        rest = tail;
    }
    Ok(())
}

fn fmt_rejection(e: FormatError) -> Rejection {
    match e {
        FormatError::Malformed(m) => (RejectReason::Malformed, m),
        FormatError::Mismatch(m) => (RejectReason::TensorMismatch, m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fl::safetensors::tests::build;

    fn layout() -> ModelLayout {
        let f = build(&[
            ("w", DType::F32, vec![3, 2], vec![0.0; 6]),
            ("b", DType::F32, vec![3], vec![0.0; 3]),
        ]);
        let n = safetensors::header_len(&f).unwrap() as usize;
        safetensors::parse_header(&f[8..8 + n]).unwrap().layout()
    }

    fn meta(bytes: &[u8], format: UpdateFormat) -> UpdateMeta {
        UpdateMeta {
            sample_count: 5,
            metrics: BTreeMap::new(),
            format,
            sha256: crate::crypto::sha256_hex(bytes),
            size: bytes.len() as u64,
        }
    }

    /// Validates in one pass, and again saving and resuming the validation after every chunk
    /// (as an upload's parts do, one request each); both must reach the same verdict, so every
    /// case below also checks the resumable path.
    fn run(bytes: &[u8], m: &UpdateMeta, split: usize) -> Result<Validated, Rejection> {
        let whole = (|| {
            let mut v = Validator::new(m, &layout(), vec![0, 5]);
            for c in bytes.chunks(split) {
                v.feed(c)?;
            }
            v.finish()
        })();
        let resumed = (|| {
            let mut saved = Validator::new(m, &layout(), vec![0, 5]).save();
            for c in bytes.chunks(split) {
                let mut v = Validator::resume(m, &layout(), vec![0, 5], &saved)
                    .expect("a saved validation resumes");
                v.feed(c)?;
                saved = v.save();
            }
            Validator::resume(m, &layout(), vec![0, 5], &saved)
                .expect("a saved validation resumes")
                .finish()
        })();
        assert_eq!(whole, resumed, "split {split}");
        whole
    }

    fn json_env(vals: &[f64]) -> Vec<u8> {
        let payload = format!(
            "[{}]",
            vals.iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let sha = crate::crypto::sha256_hex(payload.as_bytes());
        format!("{{\"format\": \"plaintext_json\", \"sha256\": \"{sha}\", \"size\": {}, \"data\": {payload}}}", payload.len()).into_bytes()
    }

    #[test]
    fn accepts_good_updates_in_both_formats_at_any_split() {
        let vals = [1.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        // File order differs from layout order: `b` first.
        let st = build(&[
            ("b", DType::F32, vec![3], vec![0.0; 3]),
            (
                "w",
                DType::F32,
                vec![3, 2],
                vec![1.0, 2.0, 2.0, 0.0, 0.0, 0.0],
            ),
        ]);
        for split in [1, 3, 5, 7, 1000] {
            let v = run(&st, &meta(&st, UpdateFormat::Safetensors), split).unwrap();
            assert_eq!(v.norm, 3.0);
            match &v.source {
                UpdateSource::Safetensors { tensor_starts } => {
                    let n = safetensors::header_len(&st).unwrap();
                    assert_eq!(tensor_starts, &vec![8 + n + 12, 8 + n]);
                }
                other => panic!("{other:?}"),
            }
            let env = json_env(&vals);
            let v = run(&env, &meta(&env, UpdateFormat::PlaintextJson), split).unwrap();
            assert_eq!(v.norm, 3.0);
            match &v.source {
                UpdateSource::PlaintextJson { shard_offsets } => assert_eq!(shard_offsets.len(), 2),
                other => panic!("{other:?}"),
            }
        }
    }

    fn reason(r: Result<Validated, Rejection>) -> RejectReason {
        r.unwrap_err().0
    }

    #[test]
    fn a_saved_state_resumes_only_its_own_kind_of_update() {
        let good = build(&[
            ("w", DType::F32, vec![3, 2], vec![0.5; 6]),
            ("b", DType::F32, vec![3], vec![0.5; 3]),
        ]);
        let m = meta(&good, UpdateFormat::Safetensors);
        let saved = Validator::new(&m, &layout(), vec![0, 5]).save();
        let json = meta(&good, UpdateFormat::PlaintextJson);
        assert!(Validator::resume(&json, &layout(), vec![0, 5], &saved).is_err());
        assert!(Validator::resume(&m, &layout(), vec![0, 5], b"junk").is_err());
        // Far smaller than the bytes it stands for: the header and a few counters.
        let mut v = Validator::new(&m, &layout(), vec![0, 5]);
        v.feed(&good).unwrap();
        assert!(v.save().len() < 512, "{}", v.save().len());
    }

    #[test]
    fn every_bad_case_has_its_reason() {
        let good = build(&[
            ("w", DType::F32, vec![3, 2], vec![0.5; 6]),
            ("b", DType::F32, vec![3], vec![0.5; 3]),
        ]);
        let st = UpdateFormat::Safetensors;
        let shape = build(&[
            ("w", DType::F32, vec![2, 3], vec![0.5; 6]),
            ("b", DType::F32, vec![3], vec![0.5; 3]),
        ]);
        assert_eq!(
            reason(run(&shape, &meta(&shape, st), 4)),
            RejectReason::TensorMismatch
        );
        let dtype = build(&[
            ("w", DType::F64, vec![3, 2], vec![0.5; 6]),
            ("b", DType::F32, vec![3], vec![0.5; 3]),
        ]);
        assert_eq!(
            reason(run(&dtype, &meta(&dtype, st), 4)),
            RejectReason::TensorMismatch
        );
        let set = build(&[("w", DType::F32, vec![3, 2], vec![0.5; 6])]);
        assert_eq!(
            reason(run(&set, &meta(&set, st), 4)),
            RejectReason::TensorMismatch
        );
        let extra = build(&[
            ("w", DType::F32, vec![3, 2], vec![0.5; 6]),
            ("b", DType::F32, vec![3], vec![0.5; 3]),
            ("x", DType::F32, vec![1], vec![0.5]),
        ]);
        assert_eq!(
            reason(run(&extra, &meta(&extra, st), 4)),
            RejectReason::TensorMismatch
        );
        let nan = build(&[
            (
                "w",
                DType::F32,
                vec![3, 2],
                vec![0.5, f64::NAN, 0.0, 0.0, 0.0, 0.0],
            ),
            ("b", DType::F32, vec![3], vec![0.5; 3]),
        ]);
        assert_eq!(
            reason(run(&nan, &meta(&nan, st), 4)),
            RejectReason::NonFinite
        );
        let inf = build(&[
            ("w", DType::F32, vec![3, 2], vec![0.5; 6]),
            ("b", DType::F32, vec![3], vec![0.5, 0.5, f64::INFINITY]),
        ]);
        assert_eq!(
            reason(run(&inf, &meta(&inf, st), 4)),
            RejectReason::NonFinite
        );
        let mut m = meta(&good, st);
        m.sha256 = crate::crypto::sha256_hex(b"other");
        assert_eq!(reason(run(&good, &m, 4)), RejectReason::Sha256Mismatch);
        let mut m = meta(&good, st);
        m.size += 1;
        assert_eq!(reason(run(&good, &m, 4)), RejectReason::SizeMismatch);
        let mut m = meta(&good, st);
        m.size -= 1;
        assert_eq!(reason(run(&good, &m, 4)), RejectReason::SizeMismatch);
        let garbage = b"\x05\x00\x00\x00\x00\x00\x00\x00{nope".to_vec();
        assert_eq!(
            reason(run(&garbage, &meta(&garbage, st), 4)),
            RejectReason::Malformed
        );
        // A JSON envelope with the wrong count, a NaN, or a lying inner hash.
        let short = json_env(&[1.0; 8]);
        assert_eq!(
            reason(run(&short, &meta(&short, UpdateFormat::PlaintextJson), 3)),
            RejectReason::TensorMismatch
        );
        let long = json_env(&[1.0; 10]);
        assert_eq!(
            reason(run(&long, &meta(&long, UpdateFormat::PlaintextJson), 3)),
            RejectReason::TensorMismatch
        );
        let nan = json_env(&[1.0, 1.0, f64::NAN, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(
            reason(run(&nan, &meta(&nan, UpdateFormat::PlaintextJson), 3)),
            RejectReason::NonFinite
        );
        let huge = json_env(&[1.0, 1.0, 1e300, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(
            reason(run(&huge, &meta(&huge, UpdateFormat::PlaintextJson), 3)),
            RejectReason::NonFinite
        );
        let mut lying = json_env(&[1.0; 9]);
        let at = lying.windows(4).position(|w| w == b"1.0,").unwrap();
        lying[at] = b'2';
        assert_eq!(
            reason(run(&lying, &meta(&lying, UpdateFormat::PlaintextJson), 3)),
            RejectReason::Sha256Mismatch
        );
    }

    /// Defect 1 (header bomb): an update whose header is declared at 16 MiB (a huge JSON array)
    /// was buffered in full and parsed into a `Value` tree, growing the isolate by ~400 MB. Now
    /// the 8-byte prefix alone refuses it (the base layout's budget is a few hundred bytes per
    /// tensor), so not one header byte is buffered: parsing stops at the first problem while the
    /// rest of the bytes are only hashed and counted.
    #[test]
    fn a_header_bomb_is_refused_from_its_length_prefix() {
        let declared: u64 = 16 << 20;
        let mut bomb = declared.to_le_bytes().to_vec();
        bomb.push(b'[');
        bomb.extend(std::iter::repeat_n(b"0,".as_slice(), (declared as usize - 2) / 2).flatten());
        bomb.push(b']');
        let m = meta(&bomb, UpdateFormat::Safetensors);
        let mut v = Validator::new(&m, &layout(), vec![0, 5]);
        v.feed(&bomb[..8]).unwrap();
        let (why, msg) = v.problem.clone().expect("refused after the prefix");
        assert_eq!(why, RejectReason::Malformed);
        assert!(msg.contains("declares 16777216 bytes"), "{msg}");
        for c in bomb[8..].chunks(1 << 20) {
            v.feed(c).unwrap();
        }
        assert_eq!(v.finish().unwrap_err().0, RejectReason::Malformed);
        // Within the budget the same array is still refused, by the typed parse.
        let small = safetensors::header_budget(&layout()) - 16;
        let mut b = small.to_le_bytes().to_vec();
        b.push(b'[');
        b.extend(std::iter::repeat_n(b"0,".as_slice(), (small as usize - 2) / 2).flatten());
        b.push(b']');
        assert_eq!(
            reason(run(&b, &meta(&b, UpdateFormat::Safetensors), 4096)),
            RejectReason::Malformed
        );
    }

    #[test]
    fn meta_claims() {
        let mut m = meta(b"x", UpdateFormat::Safetensors);
        assert!(m.check(100).is_ok());
        m.sample_count = 0;
        assert_eq!(
            m.check(100).unwrap_err().0,
            RejectReason::InvalidSampleCount
        );
        m.sample_count = MAX_SAMPLE_COUNT as i64 + 1;
        assert_eq!(
            m.check(100).unwrap_err().0,
            RejectReason::InvalidSampleCount
        );
        m.sample_count = 1;
        m.size = 101;
        assert_eq!(m.check(100).unwrap_err().0, RejectReason::TooLarge);
        m.size = 1;
        m.sha256 = "ABC".into();
        assert_eq!(m.check(100).unwrap_err().0, RejectReason::Malformed);
    }
}
