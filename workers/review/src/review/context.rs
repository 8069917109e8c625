//! Indexing and retrieval for one job: chunks of the changed files, a BM25 index, and — when
//! the org's provider has an embedding model — vectors, cached in D1 by chunk hash (vectors
//! only). Embedding trouble never fails a review: it falls back to lexical retrieval.

use edgeplane_core::review::index::{
    chunk_file, retrieve, vector_from_bytes, vector_to_bytes, Bm25, Chunk, Query,
};
use edgeplane_core::review::provider;
use edgeplane_core::review::sealed;
use edgeplane_runtime::clock::now_ms;
use edgeplane_runtime::{log, Stmt, Val};
use serde::Deserialize;

use super::fetch::Fetched;
use super::job::{upstream, Job, Stop};

const PER_QUERY: usize = 3;
const MAX_QUERIES: usize = 200;
const EMBED_BATCH: usize = 32;

pub struct Context {
    pub chunks: Vec<Chunk>,
    pub picked: Vec<usize>,
    pub embeddings_used: bool,
}

pub async fn build(job: &Job, f: &Fetched) -> Result<Context, Stop> {
    let chunks: Vec<Chunk> = f
        .selected
        .iter()
        .filter_map(|s| s.content.as_deref().map(|c| chunk_file(&s.diff.path, c)))
        .flatten()
        .collect();
    let bm25 = Bm25::build(chunks.iter().map(|c| c.text.as_str()));
    let mut queries: Vec<Query<'_>> = f
        .selected
        .iter()
        .flat_map(|s| {
            s.diff.hunks.iter().map(|h| Query {
                path: &s.diff.path,
                text: h
                    .lines
                    .iter()
                    .map(|l| l.text.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                covers: h.new_range(),
                embedding: None,
            })
        })
        .take(MAX_QUERIES)
        .collect();
    let mut vecs = None;
    if let (Some(model), true) = (job.provider.embedding_model.as_deref(), !chunks.is_empty()) {
        match embed_all(job, model, &chunks, &queries).await {
            Ok((chunk_vecs, query_vecs)) => {
                for (q, v) in queries.iter_mut().zip(query_vecs) {
                    q.embedding = Some(v);
                }
                vecs = Some(chunk_vecs);
            }
            Err(reason) => log::warn("embeddings unavailable; lexical retrieval only", &reason),
        }
    }
    let picked = retrieve(&chunks, &bm25, vecs.as_deref(), &queries, PER_QUERY);
    Ok(Context {
        embeddings_used: vecs.is_some(),
        chunks,
        picked,
    })
}

#[derive(Deserialize)]
struct Cached {
    content_sha256: String,
    vector: String,
}

async fn embed(job: &Job, model: &str, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(EMBED_BATCH) {
        let call = provider::embeddings(job.provider.kind, &job.provider.base_url, model, batch)
            .ok_or("the provider has no embeddings endpoint")?;
        let resp = upstream(
            "the LLM provider",
            "an embeddings request",
            job.provider_call(&call).await,
        )
        .map_err(|s| match s {
            Stop::Transient { reason, .. } | Stop::Permanent(reason) => reason,
            _ => "embeddings failed".into(),
        })?;
        out.extend(provider::parse_embeddings(
            job.provider.kind,
            &resp.body,
            batch.len(),
        )?);
    }
    Ok(out)
}

async fn embed_all(
    job: &Job,
    model: &str,
    chunks: &[Chunk],
    queries: &[Query<'_>],
) -> Result<(Vec<Vec<f32>>, Vec<Vec<f32>>), String> {
    let org = &job.row.org_id;
    let mut known: std::collections::HashMap<String, Vec<f32>> = std::collections::HashMap::new();
    let hashes: Vec<&str> = chunks.iter().map(|c| c.sha256.as_str()).collect();
    for group in hashes.chunks(80) {
        let marks = vec!["?"; group.len()].join(", ");
        let mut args: Vec<Val> = vec![org.as_str().into(), model.into()];
        args.extend(group.iter().map(|h| Val::from(*h)));
        let rows: Vec<Cached> = job
            .db
            .all(
                &format!("SELECT content_sha256, vector FROM review_embeddings WHERE org_id = ? AND model = ? AND content_sha256 IN ({marks})"),
                args,
            )
            .await
            .map_err(|e| e.to_string())?;
        for r in rows {
            if let Some(v) = sealed::decode(&r.vector).and_then(|b| vector_from_bytes(&b)) {
                known.insert(r.content_sha256, v);
            }
        }
    }
    let missing: Vec<&Chunk> = chunks
        .iter()
        .filter(|c| !known.contains_key(&c.sha256))
        .collect();
    if !missing.is_empty() {
        let texts: Vec<&str> = missing.iter().map(|c| c.text.as_str()).collect();
        let fresh = embed(job, model, &texts).await?;
        let now = now_ms();
        let mut stmts = Vec::new();
        for (c, v) in missing.iter().zip(fresh) {
            stmts.push(Stmt::new(
                "INSERT OR IGNORE INTO review_embeddings (org_id, model, content_sha256, dims, vector, created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                vec![org.as_str().into(), model.into(), c.sha256.as_str().into(), (v.len() as i64).into(), sealed::encode(&vector_to_bytes(&v)).into(), now.into()],
            ));
            known.insert(c.sha256.clone(), v);
        }
        for batch in stmts.chunks(50) {
            if let Err(e) = job.db.batch_unaudited(batch.to_vec()).await {
                log::warn("embedding cache write failed", &e.to_string());
            }
        }
    }
    let chunk_vecs: Vec<Vec<f32>> = chunks
        .iter()
        .map(|c| known.get(&c.sha256).cloned().unwrap_or_default())
        .collect();
    let query_texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
    let query_vecs = embed(job, model, &query_texts).await?;
    Ok((chunk_vecs, query_vecs))
}
