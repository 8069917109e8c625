//! D1 access: plain-data statements, typed reads, and the audited atomic batch every mutation
//! goes through.
//!
//! Statements are data ([`Stmt`]) until executed, so a batch can be rebuilt and retried when the
//! audit chain moved underneath it, and so guards can be evaluated again to explain a failure.

use edgeplane_core::audit::{ChainHead, ChainedEvent, NewEvent};
use edgeplane_core::{ApiError, ErrorCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use crate::log;

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_owned())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}
impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<u32> for Val {
    fn from(v: u32) -> Self {
        Val::Int(v.into())
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Int(v.into())
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Self {
        Val::Real(v)
    }
}
impl From<Vec<u8>> for Val {
    fn from(v: Vec<u8>) -> Self {
        Val::Blob(v)
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Val::Null)
    }
}

impl Val {
    fn to_js(&self) -> JsValue {
        match self {
            Val::Null => JsValue::NULL,
            // D1 numbers are JS numbers; every integer we store (ms timestamps, counters) is far
            // below 2^53.
            Val::Int(i) => JsValue::from_f64(*i as f64),
            Val::Real(f) => JsValue::from_f64(*f),
            Val::Text(s) => JsValue::from_str(s),
            Val::Blob(b) => js_sys::Uint8Array::from(b.as_slice()).into(),
        }
    }
}

/// `args![a, b, c]` builds a `Vec<Val>`.
#[macro_export]
macro_rules! args {
    ($($v:expr),* $(,)?) => { vec![$($crate::db::Val::from($v)),*] };
}

/// One SQL statement with its arguments.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub sql: String,
    pub args: Vec<Val>,
    /// Set for guard statements: the error the batch answers with when this guard fails.
    guard: Option<(String, ApiError)>,
}

impl Stmt {
    pub fn new(sql: impl Into<String>, args: Vec<Val>) -> Self {
        Self {
            sql: sql.into(),
            args,
            guard: None,
        }
    }

    /// A condition the whole batch depends on, checked atomically inside it. `condition` is a SQL
    /// expression (it may use sub-selects and `?` placeholders bound by `args`); if it is not
    /// true when the batch runs, nothing in the batch is applied and the batch fails with
    /// `error`. This is how "the last owner cannot be removed" holds under concurrency.
    pub fn guard(condition: &str, args: Vec<Val>, error: ApiError) -> Self {
        Self {
            sql: format!("INSERT INTO batch_guards (ok) SELECT coalesce(({condition}), 0)"),
            args,
            guard: Some((condition.to_owned(), error)),
        }
    }
}

/// Summary of a write.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    pub changes: u64,
}

pub struct Db {
    inner: D1Database,
}

/// Maps a runtime failure to a generic 500, logging the detail (never shown to the caller).
pub trait OrInternal<T> {
    fn or_internal(self, context: &str) -> Result<T, ApiError>;
}

impl<T> OrInternal<T> for worker::Result<T> {
    fn or_internal(self, context: &str) -> Result<T, ApiError> {
        self.map_err(|e| {
            log::error(context, &e.to_string());
            ApiError::internal()
        })
    }
}

#[derive(Deserialize)]
struct HeadRow {
    seq: i64,
    hash: String,
}

const MAX_CHAIN_RETRIES: usize = 8;

impl Db {
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        Ok(Self {
            inner: env.d1("DB").or_internal("d1 binding")?,
        })
    }

    fn prepare(&self, s: &Stmt) -> Result<D1PreparedStatement, ApiError> {
        let args: Vec<JsValue> = s.args.iter().map(Val::to_js).collect();
        self.inner
            .prepare(&s.sql)
            .bind(&args)
            .or_internal("d1 bind")
    }

    pub async fn first<T: DeserializeOwned>(
        &self,
        sql: &str,
        args: Vec<Val>,
    ) -> Result<Option<T>, ApiError> {
        self.prepare(&Stmt::new(sql, args))?
            .first::<T>(None)
            .await
            .or_internal("d1 first")
    }

    pub async fn all<T: DeserializeOwned>(
        &self,
        sql: &str,
        args: Vec<Val>,
    ) -> Result<Vec<T>, ApiError> {
        let res = self
            .prepare(&Stmt::new(sql, args))?
            .all()
            .await
            .or_internal("d1 all")?;
        res.results::<T>().or_internal("d1 decode")
    }

    /// A single write that needs no audit record (bookkeeping such as `last_used_at`).
    pub async fn run_unaudited(&self, sql: &str, args: Vec<Val>) -> Result<Written, ApiError> {
        let res = self
            .prepare(&Stmt::new(sql, args))?
            .run()
            .await
            .or_internal("d1 run")?;
        Ok(Written {
            changes: res
                .meta()
                .ok()
                .flatten()
                .and_then(|m| m.changes)
                .unwrap_or(0) as u64,
        })
    }

    /// Several statements in one transaction with no audit record (for derived state).
    pub async fn batch_unaudited(&self, stmts: Vec<Stmt>) -> Result<(), ApiError> {
        self.execute(stmts).await.map(|_| ())
    }

    async fn execute(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>, ApiError> {
        let has_guards = stmts.iter().any(|s| s.guard.is_some());
        let mut prepared = Vec::with_capacity(stmts.len() + 1);
        for s in &stmts {
            prepared.push(self.prepare(s)?);
        }
        if has_guards {
            prepared.push(self.prepare(&Stmt::new("DELETE FROM batch_guards", vec![]))?);
        }
        match self.inner.batch(prepared).await {
            Ok(results) => Ok(results
                .iter()
                .map(|r| r.meta().ok().flatten().and_then(|m| m.changes).unwrap_or(0) as u64)
                .collect()),
            Err(e) => {
                let msg = e.to_string();
                if msg.contains("CHECK constraint failed") && has_guards {
                    return Err(self.explain_guard_failure(&stmts).await);
                }
                if msg.contains("UNIQUE constraint failed: audit_events") {
                    return Err(ApiError::new(ErrorCode::Conflict, "audit chain moved"));
                }
                if msg.contains("UNIQUE constraint failed") {
                    return Err(ApiError::new(
                        ErrorCode::AlreadyExists,
                        "a resource with these unique values already exists",
                    ));
                }
                log::error("d1 batch", &msg);
                Err(ApiError::internal())
            }
        }
    }

    /// Re-evaluates guards to report the one that failed.
    async fn explain_guard_failure(&self, stmts: &[Stmt]) -> ApiError {
        for s in stmts {
            if let Some((cond, err)) = &s.guard {
                #[derive(Deserialize)]
                struct Ok {
                    ok: Option<i64>,
                }
                let sql = format!("SELECT ({cond}) AS ok");
                match self.first::<Ok>(&sql, s.args.clone()).await {
                    Ok(Some(Ok { ok: Some(1) })) => continue,
                    _ => return err.clone(),
                }
            }
        }
        // Every guard holds now: the state changed between the batch and this check.
        ApiError::conflict("the resource changed concurrently; retry the request")
    }

    async fn chain_head(&self, chain: &str) -> Result<ChainHead, ApiError> {
        let row: Option<HeadRow> = self
            .first(
                "SELECT seq, hash FROM audit_events WHERE chain = ? ORDER BY seq DESC LIMIT 1",
                args![chain],
            )
            .await?;
        Ok(row
            .map(|r| ChainHead {
                seq: r.seq,
                hash: r.hash,
            })
            .unwrap_or_else(ChainHead::genesis))
    }

    /// Applies `stmts` and appends `events` to their audit chains in one D1 batch: all happen or
    /// none does. If another writer extended a chain first (the `(chain, seq)` unique key rejects
    /// the batch, and with it the change), the batch is rebuilt on the new head.
    /// Returns the number of rows each statement changed.
    pub async fn commit_audited(
        &self,
        stmts: Vec<Stmt>,
        events: Vec<NewEvent>,
        now_ms: i64,
    ) -> Result<Vec<u64>, ApiError> {
        let mut ids = Vec::with_capacity(events.len());
        for _ in &events {
            ids.push(edgeplane_core::ids::new_id("aud", now_ms)?);
        }
        for _ in 0..MAX_CHAIN_RETRIES {
            let mut heads: Vec<(String, ChainHead)> = Vec::new();
            let mut all = stmts.clone();
            for (event, id) in events.iter().zip(&ids) {
                let head = match heads.iter().position(|(c, _)| *c == event.chain) {
                    Some(i) => heads[i].1.clone(),
                    None => self.chain_head(&event.chain).await?,
                };
                let placed: ChainedEvent = event.clone().chain_after(&head, id.clone(), now_ms);
                let next = ChainHead {
                    seq: placed.seq,
                    hash: placed.hash.clone(),
                };
                match heads.iter().position(|(c, _)| *c == event.chain) {
                    Some(i) => heads[i].1 = next,
                    None => heads.push((event.chain.clone(), next)),
                }
                all.push(audit_insert(&placed));
            }
            match self.execute(all).await {
                Ok(mut changes) => {
                    changes.truncate(stmts.len());
                    return Ok(changes);
                }
                Err(e) if e.code == ErrorCode::Conflict && e.message == "audit chain moved" => {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
        log::error("audit", "chain head contention did not settle");
        Err(ApiError::new(
            ErrorCode::Unavailable,
            "too much concurrent activity; retry",
        )
        .with_retry_after(1))
    }
}

fn audit_insert(ev: &ChainedEvent) -> Stmt {
    Stmt::new(
        "INSERT INTO audit_events (id, chain, seq, org_id, actor_type, actor_id, action, \
         resource_type, resource_id, ip, user_agent, request_id, metadata, created_at_ms, \
         prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        args![
            &ev.id,
            &ev.chain,
            ev.seq,
            ev.org_id.clone(),
            &ev.actor_type,
            &ev.actor_id,
            &ev.action,
            &ev.resource_type,
            &ev.resource_id,
            ev.ip.clone(),
            ev.user_agent.clone(),
            ev.request_id.clone(),
            &ev.metadata,
            ev.created_at_ms,
            &ev.prev_hash,
            &ev.hash
        ],
    )
}
