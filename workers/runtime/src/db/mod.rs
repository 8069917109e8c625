//! D1 access: plain-data statements, typed reads, the typed D1 error, and the audited batch every
//! mutation goes through.
//!
//! - `stmt`: statements as data, and [`OrgBatch`] (the org bound in every write);
//! - `error`: every failure classified once into [`DbError`];
//! - `retry`: a busy database retried with backoff inside the request's budget;
//! - `writes`: which org a change is written in.
//! - [`Db::commit`] applies a change ([`Writes`]) and records its audit events, completed with
//!   the change's [`Facts`], in the same batch. The events take no position in their chain
//!   there (see `edgeplane_core::audit::sequencer`), so concurrent writers never conflict; the
//!   caller pokes the chains' sequencers afterwards (`crate::audit`).

use edgeplane_core::audit::sql::{self as audit_sql};
use edgeplane_core::audit::{Event, Facts};
use edgeplane_core::store::Row;
use edgeplane_core::ApiError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use crate::{clock, log};

mod error;
mod retry;
mod stmt;
mod writes;

pub use error::DbError;
use retry::Runtime;
pub use retry::{retry_busy, Backoff, Failure, RetryEnv, DEFAULT_BUDGET_MS};
use stmt::to_js;
pub use stmt::{OnDuplicate, OrgBatch, Stmt, Val};
pub use writes::{Committed, Writes};

fn message_of(e: &worker::Error) -> String {
    match e {
        worker::Error::D1(d) => format!("{} {}", d.cause(), e),
        other => other.to_string(),
    }
}

/// Summary of a write.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    pub changes: u64,
}

pub struct Db {
    inner: D1Database,
    deadline_ms: i64,
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

fn changes_of(r: &worker::D1Result) -> u64 {
    r.meta().ok().flatten().and_then(|m| m.changes).unwrap_or(0) as u64
}

/// A D1 column value as the stores' value type. D1 hands numbers over as doubles and blobs as
/// arrays of bytes.
fn value_of(v: serde_json::Value) -> Option<Val> {
    Some(match v {
        serde_json::Value::Null => Val::Null,
        serde_json::Value::Bool(b) => Val::Int(b.into()),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(i),
            None => Val::Real(n.as_f64()?),
        },
        serde_json::Value::String(s) => Val::Text(s),
        serde_json::Value::Array(bytes) => Val::Blob(
            bytes
                .into_iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<Vec<u8>>>()?,
        ),
        serde_json::Value::Object(_) => return None,
    })
}

impl Db {
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        Ok(Self {
            inner: env.d1("DB").or_internal("d1 binding")?,
            deadline_ms: clock::now_ms() + DEFAULT_BUDGET_MS,
        })
    }

    /// Retries of a busy database stop at `deadline_ms` (epoch ms).
    pub fn with_deadline(mut self, deadline_ms: i64) -> Self {
        self.deadline_ms = deadline_ms;
        self
    }

    fn prepare(&self, s: &Stmt) -> Result<D1PreparedStatement, DbError> {
        let args: Vec<JsValue> = s.args.iter().map(to_js).collect();
        self.inner.prepare(&s.sql).bind(&args).map_err(|e| {
            log::error("d1 bind", &e.to_string());
            DbError::Other
        })
    }

    /// Runs `op` until it succeeds, fails for a reason other than a busy database, or the budget
    /// runs out.
    async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, DbError>
    where
        F: FnMut() -> Result<Fut, DbError>,
        Fut: std::future::Future<Output = worker::Result<T>>,
    {
        let result = retry_busy(&Runtime, self.deadline_ms, || {
            let call = op();
            async move {
                match call {
                    Ok(fut) => fut.await.map_err(|e| Failure::Call(message_of(&e))),
                    Err(e) => Err(Failure::Prepare(e)),
                }
            }
        })
        .await;
        match result {
            Ok(v) => Ok(v),
            Err(Failure::Prepare(e)) => Err(e),
            Err(Failure::Call(msg)) => match DbError::classify(&msg) {
                DbError::Busy => {
                    log::warn(what, "database busy beyond the request's budget");
                    Err(DbError::Busy)
                }
                DbError::Other => {
                    log::error(what, &msg);
                    Err(DbError::Other)
                }
                other => Err(other),
            },
        }
    }

    pub async fn first<T: DeserializeOwned>(
        &self,
        sql: &str,
        args: Vec<Val>,
    ) -> Result<Option<T>, ApiError> {
        let stmt = self.prepare(&Stmt::new(sql, args))?;
        Ok(self
            .retrying("d1 first", || Ok(stmt.first::<T>(None)))
            .await?)
    }

    pub async fn all<T: DeserializeOwned>(
        &self,
        sql: &str,
        args: Vec<Val>,
    ) -> Result<Vec<T>, ApiError> {
        let stmt = self.prepare(&Stmt::new(sql, args))?;
        let res = self.retrying("d1 all", || Ok(stmt.all())).await?;
        res.results::<T>().or_internal("d1 decode")
    }

    /// Rows as positional values, for the row decoders `edgeplane-core` shares with its tests.
    pub async fn rows(&self, sql: &str, args: Vec<Val>) -> Result<Vec<Row>, DbError> {
        let stmt = self.prepare(&Stmt::new(sql, args))?;
        let raw: Vec<Vec<serde_json::Value>> = self
            .retrying("d1 rows", || Ok(stmt.raw::<serde_json::Value>()))
            .await?;
        raw.into_iter()
            .map(|cols| cols.into_iter().map(value_of).collect::<Option<Vec<_>>>())
            .map(|r| r.map(Row).ok_or(DbError::Other))
            .collect()
    }

    /// A single write that needs no audit record (bookkeeping such as `last_used_at`).
    pub async fn run_unaudited(&self, sql: &str, args: Vec<Val>) -> Result<Written, ApiError> {
        let stmt = self.prepare(&Stmt::new(sql, args))?;
        let res = self.retrying("d1 run", || Ok(stmt.run())).await?;
        Ok(Written {
            changes: changes_of(&res),
        })
    }

    /// Several statements in one transaction with no audit record (for derived state).
    pub async fn batch_unaudited(&self, stmts: Vec<Stmt>) -> Result<(), ApiError> {
        self.execute(&stmts).await.map(|_| ()).map_err(Into::into)
    }

    /// Several statements in one transaction; the rows each changed.
    pub async fn batch(&self, stmts: &[Stmt]) -> Result<Vec<u64>, DbError> {
        self.execute(stmts).await
    }

    async fn execute(&self, stmts: &[Stmt]) -> Result<Vec<u64>, DbError> {
        let has_guards = stmts.iter().any(|s| s.guard.is_some());
        let result = self
            .retrying("d1 batch", || {
                let mut prepared = Vec::with_capacity(stmts.len() + 1);
                for s in stmts {
                    prepared.push(self.prepare(s)?);
                }
                if has_guards {
                    prepared.push(self.prepare(&Stmt::new("DELETE FROM batch_guards", vec![]))?);
                }
                Ok(self.inner.batch(prepared))
            })
            .await;
        match result {
            Ok(results) => Ok(results.iter().map(changes_of).collect()),
            Err(DbError::Guard(_)) if has_guards => {
                Err(DbError::Guard(self.explain_guard_failure(stmts).await))
            }
            Err(e) => Err(e),
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

    /// Applies `writes` and records `events`, completed with `facts`, in one D1 batch: all
    /// happen or none does. This is the shared half of the one mutation path (`Cx::commit` in
    /// the gateway, [`crate::audit::commit_with_facts`] where no request is served): the events
    /// wait in `audit_pending`, without a position in their chain, so nothing here can conflict
    /// with a concurrent writer; the caller pokes the returned chains' sequencers afterwards.
    ///
    /// An org's writes ([`Writes::Org`]) must be for the org the facts name, if they name one,
    /// and make it the events' default chain; when the facts name an org, unscoped writes are
    /// refused, so every write made in an org's name binds that org.
    pub async fn commit(
        &self,
        writes: Writes,
        events: impl IntoIterator<Item = Event>,
        mut facts: Facts,
        now_ms: i64,
    ) -> Result<Committed, DbError> {
        let mut stmts = writes.bind(&mut facts).map_err(|why| {
            log::error("commit", why);
            DbError::Other
        })?;
        let changed = stmts.len();
        let mut chains = Vec::new();
        for event in events {
            let event = event.complete(&facts);
            chains.push(event.chain.clone());
            let id = edgeplane_core::ids::new_id("aud", now_ms).map_err(|_| DbError::Other)?;
            stmts.push(audit_sql::insert_pending(&event.record(id, now_ms)).into());
        }
        chains.sort();
        chains.dedup();
        let mut changes = self.execute(&stmts).await?;
        changes.truncate(changed);
        Ok(Committed { changes, chains })
    }
}
