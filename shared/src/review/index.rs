//! Retrieval: the code most related to each hunk, from the changed files' full contents.
//!
//! Files are cut into overlapping line windows (chunks). A lexical BM25 index over identifier
//! tokens works with no embedding provider at all; when the org's provider offers embeddings,
//! cosine similarity gives a second ranking and the two are fused by reciprocal rank. The index
//! lives in memory for one job: what is stored afterwards is only each chunk's SHA-256 and (when
//! used) its embedding vector, never its text.

use std::collections::{HashMap, HashSet};

use crate::crypto::sha256_hex;

pub const CHUNK_LINES: usize = 40;
pub const CHUNK_OVERLAP: usize = 10;
const MAX_CHUNK_CHARS: usize = 4_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub text: String,
    pub sha256: String,
}

/// Overlapping windows of whole lines, each capped in characters.
pub fn chunk_file(path: &str, content: &str) -> Vec<Chunk> {
    let lines: Vec<&str> = content.lines().collect();
    let mut out = Vec::new();
    let step = CHUNK_LINES - CHUNK_OVERLAP;
    let mut start = 0;
    while start < lines.len() {
        let end = (start + CHUNK_LINES).min(lines.len());
        let mut text = String::new();
        let mut last = start;
        for (i, l) in lines[start..end].iter().enumerate() {
            if text.len() + l.len() + 1 > MAX_CHUNK_CHARS && !text.is_empty() {
                break;
            }
            text.push_str(l);
            text.push('\n');
            last = start + i;
        }
        if !text.trim().is_empty() {
            out.push(Chunk {
                path: path.to_owned(),
                start_line: start as u32 + 1,
                end_line: last as u32 + 1,
                sha256: sha256_hex(format!("{path}\n{text}").as_bytes()),
                text,
            });
        }
        if end == lines.len() {
            break;
        }
        start = (last + 1).min(start + step).max(start + 1);
    }
    out
}

const STOPWORDS: &[&str] = &[
    "the", "and", "for", "let", "mut", "fn", "if", "else", "return", "use", "pub", "self", "this",
    "def", "var", "const", "new", "in", "of", "to", "is", "it", "as", "be", "or", "not", "from",
    "import", "function", "class", "int", "str", "string", "true", "false", "none", "null", "nil",
    "void", "end", "do", "then", "with",
];

/// Identifier tokens, lower-cased, with compound names also split into their parts
/// (`parseHttpRequest` -> `parsehttprequest`, `parse`, `http`, `request`).
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if word.len() >= 2 {
            let whole = word.to_ascii_lowercase();
            let parts = split_identifier(word);
            if parts.len() > 1 {
                out.extend(
                    parts
                        .into_iter()
                        .filter(|p| p.len() >= 2 && !STOPWORDS.contains(&p.as_str())),
                );
            }
            if !STOPWORDS.contains(&whole.as_str()) {
                out.push(whole);
            }
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn split_identifier(w: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = w.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            if !cur.is_empty() {
                parts.push(std::mem::take(&mut cur).to_ascii_lowercase());
            }
            continue;
        }
        let boundary = c.is_ascii_uppercase()
            && i > 0
            && (chars[i - 1].is_ascii_lowercase()
                || chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase())
                    && chars[i - 1].is_ascii_uppercase());
        if boundary && !cur.is_empty() {
            parts.push(std::mem::take(&mut cur).to_ascii_lowercase());
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        parts.push(cur.to_ascii_lowercase());
    }
    parts
}

/// Okapi BM25 over token bags.
#[derive(Debug, Clone)]
pub struct Bm25 {
    docs: Vec<(u32, HashMap<String, u32>)>,
    df: HashMap<String, u32>,
    avgdl: f32,
}

const K1: f32 = 1.2;
const B: f32 = 0.75;

impl Bm25 {
    pub fn build<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut docs = Vec::new();
        let mut df: HashMap<String, u32> = HashMap::new();
        let mut total = 0u64;
        for t in texts {
            let toks = tokenize(t);
            total += toks.len() as u64;
            let mut tf: HashMap<String, u32> = HashMap::new();
            for tok in toks.iter() {
                *tf.entry(tok.clone()).or_default() += 1;
            }
            for k in tf.keys() {
                *df.entry(k.clone()).or_default() += 1;
            }
            docs.push((toks.len() as u32, tf));
        }
        let avgdl = if docs.is_empty() {
            1.0
        } else {
            (total as f32 / docs.len() as f32).max(1.0)
        };
        Self { docs, df, avgdl }
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Documents with a positive score, best first.
    pub fn search(&self, query: &str) -> Vec<(usize, f32)> {
        let n = self.docs.len() as f32;
        let terms: HashSet<String> = tokenize(query).into_iter().collect();
        let mut scored: Vec<(usize, f32)> = self
            .docs
            .iter()
            .enumerate()
            .map(|(i, (dl, tf))| {
                let s: f32 = terms
                    .iter()
                    .filter_map(|t| {
                        let f = *tf.get(t)? as f32;
                        let df = *self.df.get(t)? as f32;
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        Some(
                            idf * f * (K1 + 1.0)
                                / (f + K1 * (1.0 - B + B * *dl as f32 / self.avgdl)),
                        )
                    })
                    .sum();
                (i, s)
            })
            .filter(|(_, s)| *s > 0.0)
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// Reciprocal rank fusion of several rankings (document ids, best first).
pub fn fuse(rankings: &[Vec<usize>], k: f32) -> Vec<usize> {
    let mut score: HashMap<usize, f32> = HashMap::new();
    for r in rankings {
        for (rank, id) in r.iter().enumerate() {
            *score.entry(*id).or_default() += 1.0 / (k + rank as f32 + 1.0);
        }
    }
    let mut ids: Vec<(usize, f32)> = score.into_iter().collect();
    ids.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ids.into_iter().map(|(i, _)| i).collect()
}

/// A query: one hunk, with the new-file lines it already shows (those are not "context").
pub struct Query<'a> {
    pub path: &'a str,
    pub text: String,
    pub covers: Option<(u32, u32)>,
    pub embedding: Option<Vec<f32>>,
}

/// The best `per_query` chunks for each query, in query order, without repeats and without
/// chunks that only restate the hunk itself.
pub fn retrieve(
    chunks: &[Chunk],
    bm25: &Bm25,
    chunk_vecs: Option<&[Vec<f32>]>,
    queries: &[Query<'_>],
    per_query: usize,
) -> Vec<usize> {
    let mut picked: Vec<usize> = Vec::new();
    for q in queries {
        let lexical: Vec<usize> = bm25
            .search(&q.text)
            .into_iter()
            .map(|(i, _)| i)
            .take(50)
            .collect();
        let mut rankings = vec![lexical];
        if let (Some(vecs), Some(qv)) = (chunk_vecs, q.embedding.as_deref()) {
            let mut sem: Vec<(usize, f32)> = vecs
                .iter()
                .enumerate()
                .map(|(i, v)| (i, cosine(v, qv)))
                .filter(|(_, s)| *s > 0.0)
                .collect();
            sem.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            rankings.push(sem.into_iter().map(|(i, _)| i).take(50).collect());
        }
        let mut taken = 0;
        for id in fuse(&rankings, 60.0) {
            if taken == per_query {
                break;
            }
            let c = &chunks[id];
            let overlaps_hunk = c.path == q.path
                && q.covers
                    .is_some_and(|(a, b)| c.start_line <= b && a <= c.end_line);
            if overlaps_hunk || picked.contains(&id) {
                continue;
            }
            picked.push(id);
            taken += 1;
        }
    }
    picked
}

/// Embedding vectors travel and rest as little-endian f32 bytes (base64 in D1).
pub fn vector_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn vector_from_bytes(b: &[u8]) -> Option<Vec<f32>> {
    b.len().is_multiple_of(4).then(|| {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_compound_identifiers() {
        let t = tokenize("let parseHttpRequest = read_config(HTTPServer);");
        for want in [
            "parsehttprequest",
            "parse",
            "http",
            "request",
            "read_config",
            "read",
            "config",
            "httpserver",
            "server",
        ] {
            assert!(t.contains(&want.to_owned()), "{want} in {t:?}");
        }
        assert!(!t.contains(&"let".to_owned()));
    }

    #[test]
    fn chunks_overlap_and_cover_the_file() {
        let content: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let chunks = chunk_file("a.rs", &content);
        assert_eq!(chunks[0].start_line, 1);
        assert_eq!(chunks[0].end_line, 40);
        assert_eq!(chunks[1].start_line, 31);
        assert_eq!(chunks.last().unwrap().end_line, 100);
        assert_ne!(chunks[0].sha256, chunks[1].sha256);
    }

    #[test]
    fn bm25_ranks_the_relevant_chunk_first_and_retrieve_skips_the_hunk() {
        let chunks = vec![
            Chunk {
                path: "a.rs".into(),
                start_line: 1,
                end_line: 10,
                text: "fn validate_token(token: &str) -> bool { verify_signature(token) }".into(),
                sha256: "1".into(),
            },
            Chunk {
                path: "b.rs".into(),
                start_line: 1,
                end_line: 10,
                text: "fn render_page(html: &str) {}".into(),
                sha256: "2".into(),
            },
            Chunk {
                path: "c.rs".into(),
                start_line: 1,
                end_line: 10,
                text: "fn verify_signature(token: &str) -> bool { hmac(token) }".into(),
                sha256: "3".into(),
            },
        ];
        let idx = Bm25::build(chunks.iter().map(|c| c.text.as_str()));
        let hits = idx.search("if !verify_signature(token) { return }");
        assert!(matches!(hits.first(), Some((0, _)) | Some((2, _))));
        assert!(!hits.iter().any(|(i, _)| *i == 1));
        let q = Query {
            path: "c.rs",
            text: "verify_signature token".into(),
            covers: Some((1, 5)),
            embedding: None,
        };
        let got = retrieve(&chunks, &idx, None, &[q], 2);
        assert_eq!(got, vec![0], "c.rs 1-10 overlaps the hunk itself");
    }

    #[test]
    fn fusion_and_vectors() {
        assert_eq!(fuse(&[vec![1, 2, 3], vec![3, 1]], 60.0)[0], 1);
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[1.0], &[1.0, 2.0]), 0.0);
        let v = vec![0.5f32, -1.25, 3.0];
        assert_eq!(vector_from_bytes(&vector_to_bytes(&v)).unwrap(), v);
    }
}
