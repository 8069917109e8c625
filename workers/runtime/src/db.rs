//! D1 access: plain-data statements, typed reads, the typed D1 error, and the audited batch every
//! mutation goes through.
//!
//! - Statements are data ([`Stmt`]) until executed, so a batch can be retried and guards can be
//!   evaluated again to explain a failure.
//! - Every failure is classified once, here, into [`DbError`]; callers match variants, never
//!   message text.
//! - A busy database (`SQLITE_BUSY`, "database is locked", "overloaded") applied nothing, so the
//!   call is retried with jittered exponential backoff while the request's budget lasts
//!   ([`Backoff`]); only then does it become a 503 with `Retry-After`.
//! - [`OrgBatch`] builds an org's writes with the org id bound in each statement, so a write can
//!   never reach another org's rows because of something read earlier.
//! - [`Db::commit`] applies a change ([`Writes`]) and records its audit events, completed with
//!   the change's [`Facts`], in the same batch. The events take no position in their chain
//!   there (see `edgeplane_core::audit::sequencer`), so concurrent writers never conflict; the
//!   caller pokes the chains' sequencers afterwards (`crate::audit`).

use std::time::Duration;

use edgeplane_core::audit::sql::{self as audit_sql, Statement};
use edgeplane_core::audit::{Event, Facts};
use edgeplane_core::store::Row;
use edgeplane_core::{ApiError, ErrorCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use crate::{clock, log};

/// A bound value: the one value type of `edgeplane-core`'s stores.
pub use edgeplane_core::store::Value as Val;

fn to_js(v: &Val) -> JsValue {
    match v {
        Val::Null => JsValue::NULL,
        // D1 numbers are JS numbers; every integer we store (ms timestamps, counters) is far
        // below 2^53.
        Val::Int(i) => JsValue::from_f64(*i as f64),
        Val::Real(f) => JsValue::from_f64(*f),
        Val::Text(s) => JsValue::from_str(s),
        Val::Blob(b) => js_sys::Uint8Array::from(b.as_slice()).into(),
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

impl From<Statement> for Stmt {
    fn from((sql, args): Statement) -> Self {
        Stmt::new(sql, args)
    }
}

/// The writes of one org's change. Each statement it builds names the org itself (`org_id` is
/// the first column of an insert, and the first condition of an update or delete), so tenancy
/// never rests on an earlier read: a stale or wrong id matches nothing in another org.
#[derive(Debug, Clone)]
pub struct OrgBatch {
    org_id: String,
    stmts: Vec<Stmt>,
}

impl OrgBatch {
    pub fn new(org_id: &str) -> Self {
        Self {
            org_id: org_id.to_owned(),
            stmts: Vec::new(),
        }
    }

    pub fn org_id(&self) -> &str {
        &self.org_id
    }

    /// `INSERT INTO table (org_id, columns…) VALUES (?, …)`.
    pub fn insert(mut self, table: &str, columns: &[&str], values: Vec<Val>) -> Self {
        let marks = vec!["?"; columns.len() + 1].join(", ");
        let mut args = vec![Val::from(self.org_id.as_str())];
        args.extend(values);
        self.stmts.push(Stmt::new(
            format!(
                "INSERT INTO {table} (org_id, {}) VALUES ({marks})",
                columns.join(", ")
            ),
            args,
        ));
        self
    }

    /// `INSERT INTO table (org_id, columns…) SELECT ?, select`: for values computed in SQL (the
    /// next version number, a default that depends on other rows). `select` is the rest of the
    /// `SELECT` after the org id (values, and any `FROM`/`WHERE`); `args` bind it.
    pub fn insert_select(
        mut self,
        table: &str,
        columns: &[&str],
        select: &str,
        args: Vec<Val>,
    ) -> Self {
        let mut all = vec![Val::from(self.org_id.as_str())];
        all.extend(args);
        self.stmts.push(Stmt::new(
            format!(
                "INSERT INTO {table} (org_id, {}) SELECT ?, {select}",
                columns.join(", ")
            ),
            all,
        ));
        self
    }

    /// `INSERT INTO table (columns…) SELECT ?, … WHERE` every `(owner_table, id)` of `owners`
    /// is a row of this org: for a table with no `org_id` of its own, which belongs to the org
    /// through the rows it references (a group's members, a token family's tokens). If an
    /// owner is missing or another org's, nothing is inserted.
    pub fn insert_linked(
        mut self,
        table: &str,
        columns: &[&str],
        values: Vec<Val>,
        owners: &[(&str, &str)],
        on_duplicate: OnDuplicate,
    ) -> Self {
        let verb = match on_duplicate {
            OnDuplicate::Fail => "INSERT",
            OnDuplicate::Ignore => "INSERT OR IGNORE",
        };
        let marks = vec!["?"; columns.len()].join(", ");
        let mut args = values;
        let mut conditions = Vec::with_capacity(owners.len());
        for (owner, id) in owners {
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM {owner} WHERE id = ? AND org_id = ?)"
            ));
            args.push(Val::from(*id));
            args.push(Val::from(self.org_id.as_str()));
        }
        self.stmts.push(Stmt::new(
            format!(
                "{verb} INTO {table} ({}) SELECT {marks} WHERE {}",
                columns.join(", "),
                conditions.join(" AND ")
            ),
            args,
        ));
        self
    }

    /// `UPDATE table SET set WHERE column IN (SELECT id FROM owner WHERE org_id = ?) AND
    /// (filter)`: an update of a table with no `org_id` of its own (see
    /// [`OrgBatch::insert_linked`]), limited to rows whose `column` names a row of this org in
    /// `owner`.
    pub fn update_linked(
        self,
        table: &str,
        set: &str,
        set_args: Vec<Val>,
        (column, owner): (&str, &str),
        filter: &str,
        filter_args: Vec<Val>,
    ) -> Self {
        let scope = format!("{column} IN (SELECT id FROM {owner} WHERE org_id = ?)");
        self.scoped_update(table, set, set_args, &scope, filter, filter_args)
    }

    /// `UPDATE table SET set WHERE org_id = ? AND (filter)`; `args` bind `set`, then `filter`.
    pub fn update(
        self,
        table: &str,
        set: &str,
        set_args: Vec<Val>,
        filter: &str,
        filter_args: Vec<Val>,
    ) -> Self {
        self.scoped_update(table, set, set_args, "org_id = ?", filter, filter_args)
    }

    /// An update limited by `scope`, a condition with one placeholder: the org id.
    fn scoped_update(
        mut self,
        table: &str,
        set: &str,
        set_args: Vec<Val>,
        scope: &str,
        filter: &str,
        filter_args: Vec<Val>,
    ) -> Self {
        let mut args = set_args;
        args.push(Val::from(self.org_id.as_str()));
        args.extend(filter_args);
        self.stmts.push(Stmt::new(
            format!("UPDATE {table} SET {set} WHERE {scope} AND ({filter})"),
            args,
        ));
        self
    }

    /// `DELETE FROM table WHERE org_id = ? AND (filter)`.
    pub fn delete(mut self, table: &str, filter: &str, filter_args: Vec<Val>) -> Self {
        let mut args = vec![Val::from(self.org_id.as_str())];
        args.extend(filter_args);
        self.stmts.push(Stmt::new(
            format!("DELETE FROM {table} WHERE org_id = ? AND ({filter})"),
            args,
        ));
        self
    }

    /// A guard ([`Stmt::guard`]). Guards only read; their conditions name the org themselves.
    pub fn guard(mut self, condition: &str, args: Vec<Val>, error: ApiError) -> Self {
        self.stmts.push(Stmt::guard(condition, args, error));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.stmts.is_empty()
    }

    pub fn into_stmts(self) -> Vec<Stmt> {
        self.stmts
    }
}

/// What [`OrgBatch::insert_linked`] does when a row with the same key exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDuplicate {
    /// The batch fails (`DbError::Unique`).
    Fail,
    /// The existing row stays as it is; the statement changes nothing.
    Ignore,
}

/// Why a D1 call failed. Classified once ([`DbError::classify`]) from the runtime's message.
#[derive(Debug, Clone, PartialEq)]
pub enum DbError {
    /// The database was busy (locked, overloaded) and applied nothing: retrying may succeed.
    Busy,
    /// A `UNIQUE` (or primary key) constraint of `table` failed; the batch was rolled back.
    Unique { table: String },
    /// A guard of the batch did not hold; nothing was applied. Carries the guard's own error.
    Guard(ApiError),
    /// Anything else (logged where it happened; never shown to a caller).
    Other,
}

impl DbError {
    /// The one place D1's error messages are read. A guard failure is reported by SQLite as the
    /// `batch_guards` CHECK constraint; which guard failed is worked out afterwards.
    pub fn classify(message: &str) -> Self {
        if message.contains("SQLITE_BUSY")
            || message.contains("database is locked")
            || message.contains("is overloaded")
        {
            return DbError::Busy;
        }
        if let Some(rest) = message.split("UNIQUE constraint failed: ").nth(1) {
            let table = rest
                .split(['.', ':', ',', ' '])
                .next()
                .unwrap_or_default()
                .to_owned();
            return DbError::Unique { table };
        }
        if message.contains("CHECK constraint failed")
            && (message.contains("ok = 1") || message.contains("batch_guards"))
        {
            return DbError::Guard(ApiError::conflict(
                "the resource changed concurrently; retry the request",
            ));
        }
        DbError::Other
    }

    pub fn is_unique_in(&self, name: &str) -> bool {
        matches!(self, DbError::Unique { table } if table == name)
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Busy => ApiError::new(
                ErrorCode::Unavailable,
                "the database is busy; retry the request",
            )
            .with_retry_after(1),
            DbError::Unique { .. } => ApiError::new(
                ErrorCode::AlreadyExists,
                "a resource with these unique values already exists",
            ),
            DbError::Guard(err) => err,
            DbError::Other => ApiError::internal(),
        }
    }
}

/// How long a request keeps retrying a busy database, from the moment its `Db` was made: well
/// inside the platform's request limits, and long enough for the lock holder (another batch in
/// the same database) to finish.
pub const DEFAULT_BUDGET_MS: i64 = 4_000;

/// Retry delays for a busy database: exponential from 10 ms, capped at 500 ms, with full jitter
/// (so requests that collided once do not collide again in lockstep), and never past the
/// deadline. Pure: the clock and the randomness are passed in.
#[derive(Debug, Clone)]
pub struct Backoff {
    deadline_ms: i64,
    attempt: u32,
}

impl Backoff {
    const FIRST_MS: i64 = 10;
    const CAP_MS: i64 = 500;

    pub fn until(deadline_ms: i64) -> Self {
        Self {
            deadline_ms,
            attempt: 0,
        }
    }

    /// The delay before the next attempt, or `None` when the budget would run out. `random` is
    /// any uniformly random number.
    pub fn next_delay(&mut self, now_ms: i64, random: u32) -> Option<i64> {
        let ceiling = (Self::FIRST_MS << self.attempt.min(16)).min(Self::CAP_MS);
        // At least half the ceiling, so the retries really back off.
        let delay = ceiling / 2 + i64::from(random) % (ceiling / 2 + 1);
        if now_ms + delay >= self.deadline_ms {
            return None;
        }
        self.attempt += 1;
        Some(delay)
    }
}

/// The clock, randomness and sleep a retry loop uses: the runtime's in production, a fake clock
/// in the native tests.
pub trait RetryEnv {
    fn now_ms(&self) -> i64;
    fn random(&self) -> u32;
    fn sleep(&self, ms: i64) -> impl std::future::Future<Output = ()>;
}

struct Runtime;

impl RetryEnv for Runtime {
    fn now_ms(&self) -> i64 {
        clock::now_ms()
    }

    fn random(&self) -> u32 {
        edgeplane_core::crypto::random_bytes::<4>()
            .map(u32::from_le_bytes)
            .unwrap_or(0)
    }

    fn sleep(&self, ms: i64) -> impl std::future::Future<Output = ()> {
        worker::Delay::from(Duration::from_millis(ms.max(0) as u64))
    }
}

/// Why one D1 call failed: before it ran (binding arguments), or with the runtime's message.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    Prepare(DbError),
    Call(String),
}

/// Calls `op` again while it fails with a busy database ([`DbError::classify`]) and the backoff
/// allows another attempt before `deadline_ms`; returns the first other outcome, or the last
/// busy failure. A busy call applied nothing, so repeating it is safe.
pub async fn retry_busy<T, F, Fut, E: RetryEnv>(
    env: &E,
    deadline_ms: i64,
    mut op: F,
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut backoff = Backoff::until(deadline_ms);
    loop {
        match op().await {
            Err(Failure::Call(msg)) if DbError::classify(&msg) == DbError::Busy => {
                match backoff.next_delay(env.now_ms(), env.random()) {
                    Some(ms) => env.sleep(ms).await,
                    None => return Err(Failure::Call(msg)),
                }
            }
            other => return other,
        }
    }
}

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

/// The writes of a change: an org's ([`OrgBatch`], org id bound in every statement) or rows that
/// belong to no org (users, sessions, sign-in artifacts).
pub enum Writes {
    Org(OrgBatch),
    Unscoped(Vec<Stmt>),
}

impl Writes {
    /// The statements, once they agree with `facts`: an org's writes must be for the org the
    /// facts name (if any) and become the facts' org; unscoped writes are refused when the facts
    /// name an org. Nothing else decides which org a change is written in. The error says why
    /// (a defect in the caller, never the client's doing).
    fn bind(self, facts: &mut Facts) -> Result<Vec<Stmt>, &'static str> {
        match self {
            Writes::Org(batch) => {
                if facts.org_id.as_deref().is_some_and(|o| o != batch.org_id()) {
                    return Err("writes for another org than the facts name");
                }
                facts.org_id = Some(batch.org_id().to_owned());
                Ok(batch.into_stmts())
            }
            Writes::Unscoped(stmts) => {
                if facts.org_id.is_some() && !stmts.is_empty() {
                    return Err("an org's change written without an OrgBatch");
                }
                Ok(stmts)
            }
        }
    }
}

impl From<OrgBatch> for Writes {
    fn from(b: OrgBatch) -> Self {
        Writes::Org(b)
    }
}

impl From<Vec<Stmt>> for Writes {
    fn from(s: Vec<Stmt>) -> Self {
        Writes::Unscoped(s)
    }
}

/// What [`Db::commit`] did: the rows each write changed, and the audit chains that now hold
/// events waiting for their sequencer (to be poked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub changes: Vec<u64>,
    pub chains: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d1_messages_are_classified_once() {
        for busy in [
            "D1_ERROR: SQLITE_BUSY: database is locked",
            "Error: database is locked",
            "D1 DB is overloaded. Requests queued for too long.",
        ] {
            assert_eq!(DbError::classify(busy), DbError::Busy, "{busy}");
        }
        let unique =
            DbError::classify("D1_ERROR: UNIQUE constraint failed: orgs.slug: SQLITE_CONSTRAINT");
        assert_eq!(
            unique,
            DbError::Unique {
                table: "orgs".into()
            }
        );
        assert!(unique.is_unique_in("orgs"));
        assert!(DbError::classify(
            "UNIQUE constraint failed: audit_events.chain, audit_events.seq"
        )
        .is_unique_in("audit_events"));
        assert!(matches!(
            DbError::classify("D1_ERROR: CHECK constraint failed: ok = 1: SQLITE_CONSTRAINT"),
            DbError::Guard(_)
        ));
        assert_eq!(DbError::classify("no such table: nope"), DbError::Other);
        assert_eq!(
            DbError::classify("CHECK constraint failed: role IN ('owner')"),
            DbError::Other
        );
    }

    /// A busy database is a retryable 503 with `Retry-After`, never a bare 500.
    #[test]
    fn busy_is_a_503_with_retry_after() {
        let e = ApiError::from(DbError::classify("SQLITE_BUSY: database is locked"));
        assert_eq!(e.status(), 503);
        assert_eq!(e.retry_after, Some(1));
        assert_eq!(ApiError::from(DbError::Other).status(), 500);
        assert_eq!(
            ApiError::from(DbError::Unique {
                table: "orgs".into()
            })
            .status(),
            409
        );
    }

    #[test]
    fn backoff_grows_jitters_and_stops_at_the_deadline() {
        let mut b = Backoff::until(2_000);
        let mut now = 0;
        let mut delays = Vec::new();
        while let Some(d) = b.next_delay(now, 7_919 * delays.len() as u32) {
            delays.push(d);
            now += d;
        }
        assert!(delays.len() >= 6, "{delays:?}");
        assert!(now < 2_000);
        for (n, d) in delays.iter().enumerate() {
            let ceiling = (10i64 << n).min(500);
            assert!(
                (ceiling / 2..=ceiling).contains(d),
                "attempt {n}: {d} of {ceiling}"
            );
        }
        // Past the deadline there is no retry at all.
        assert_eq!(Backoff::until(100).next_delay(100, 0), None);
    }

    /// A clock that the fake sleep advances; the futures are always ready.
    struct FakeRuntime(std::cell::Cell<i64>);

    impl RetryEnv for FakeRuntime {
        fn now_ms(&self) -> i64 {
            self.0.get()
        }
        fn random(&self) -> u32 {
            12_345
        }
        fn sleep(&self, ms: i64) -> impl std::future::Future<Output = ()> {
            self.0.set(self.0.get() + ms);
            std::future::ready(())
        }
    }

    fn run_now<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the fake runtime never waits"),
        }
    }

    /// Issue 14: `SQLITE_BUSY` on a write was a bare 500 although the same request succeeded
    /// when sent again. The call is now repeated, with backoff, until it succeeds.
    #[test]
    fn a_busy_database_is_retried_until_it_answers() {
        let rt = FakeRuntime(std::cell::Cell::new(0));
        let calls = std::cell::Cell::new(0);
        let result = run_now(retry_busy(&rt, DEFAULT_BUDGET_MS, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 4 {
                    Err(Failure::Call(
                        "D1_ERROR: SQLITE_BUSY: database is locked".into(),
                    ))
                } else {
                    Ok(n)
                }
            }
        }));
        assert_eq!(result, Ok(4));
        assert!(rt.now_ms() > 0, "it waited between attempts");
    }

    #[test]
    fn busy_past_the_budget_and_other_failures_are_not_retried_forever() {
        let rt = FakeRuntime(std::cell::Cell::new(0));
        let calls = std::cell::Cell::new(0u32);
        let busy = run_now(retry_busy(&rt, DEFAULT_BUDGET_MS, || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(Failure::Call("database is locked".into())) }
        }));
        assert_eq!(busy, Err(Failure::Call("database is locked".into())));
        assert!(rt.now_ms() < DEFAULT_BUDGET_MS, "gave up within the budget");
        assert!(calls.get() > 3);
        // A constraint failure is an answer, not a reason to wait.
        calls.set(0);
        let unique = run_now(retry_busy(&rt, i64::MAX, || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(Failure::Call("UNIQUE constraint failed: orgs.slug".into())) }
        }));
        assert!(unique.is_err());
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn org_batches_bind_the_org_in_every_write() {
        let b = OrgBatch::new("org_1")
            .insert("api_keys", &["id", "name"], crate::args!["key_1", "ci"])
            .update(
                "api_keys",
                "revoked_at_ms = ?",
                crate::args![5i64],
                "id = ?",
                crate::args!["key_1"],
            )
            .delete("memberships", "user_id = ?", crate::args!["usr_1"])
            .into_stmts();
        assert_eq!(
            b[0].sql,
            "INSERT INTO api_keys (org_id, id, name) VALUES (?, ?, ?)"
        );
        assert_eq!(b[0].args[0], Val::from("org_1"));
        assert_eq!(
            b[1].sql,
            "UPDATE api_keys SET revoked_at_ms = ? WHERE org_id = ? AND (id = ?)"
        );
        assert_eq!(
            b[1].args,
            vec![Val::Int(5), Val::from("org_1"), Val::from("key_1")]
        );
        assert_eq!(
            b[2].sql,
            "DELETE FROM memberships WHERE org_id = ? AND (user_id = ?)"
        );
    }

    /// Runs statements as D1 runs a batch (one transaction) over the real `schema.sql`.
    fn sqlite() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../../../schema.sql"))
            .unwrap();
        conn.execute_batch(
            "INSERT INTO orgs (id, slug, name, created_at_ms, created_by) VALUES \
               ('org_a', 'a', 'A', 1, 'u'), ('org_b', 'b', 'B', 1, 'u'); \
             INSERT INTO fl_models (id, org_id, name, created_by, created_at_ms) VALUES \
               ('mdl_a', 'org_a', 'm', 'u', 1);",
        )
        .unwrap();
        conn
    }

    fn run(conn: &mut rusqlite::Connection, stmts: Vec<Stmt>) -> Vec<usize> {
        use rusqlite::types::Value as Sq;
        let tx = conn.transaction().unwrap();
        let mut changes = Vec::new();
        for s in stmts {
            let args = s.args.iter().map(|v| match v {
                Val::Null => Sq::Null,
                Val::Int(i) => Sq::Integer(*i),
                Val::Real(f) => Sq::Real(*f),
                Val::Text(t) => Sq::Text(t.clone()),
                Val::Blob(b) => Sq::Blob(b.clone()),
            });
            changes.push(
                tx.execute(&s.sql, rusqlite::params_from_iter(args))
                    .unwrap(),
            );
        }
        tx.commit().unwrap();
        changes
    }

    fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Rows of tables that have no `org_id` column are written only through owners of the
    /// batch's org: another org's group, device or token family matches nothing.
    #[test]
    fn linked_writes_reach_only_rows_owned_by_the_org() {
        let mut db = sqlite();
        db.execute_batch(
            "INSERT INTO fl_devices (id, org_id, device_identifier, created_at_ms) VALUES \
               ('dev_a', 'org_a', 'a', 1), ('dev_b', 'org_b', 'b', 1); \
             INSERT INTO fl_device_groups (id, org_id, name, created_by, created_at_ms) VALUES \
               ('dgr_a', 'org_a', 'ga', 'u', 1), ('dgr_b', 'org_b', 'gb', 'u', 1); \
             INSERT INTO fl_device_families (id, org_id, device_id, scopes, access_ttl_s, created_at_ms) \
               VALUES ('dfm_a', 'org_a', 'dev_a', 's', 60, 1), ('dfm_b', 'org_b', 'dev_b', 's', 60, 1); \
             INSERT INTO fl_device_refresh_tokens (id, family_id, token_hash, created_at_ms, expires_at_ms) \
               VALUES ('drt_a', 'dfm_a', 'ha', 1, 9), ('drt_b', 'dfm_b', 'hb', 1, 9);",
        )
        .unwrap();
        let member = |b: OrgBatch, g: &str, d: &str| {
            b.insert_linked(
                "fl_device_group_members",
                &["group_id", "device_id"],
                crate::args![g, d],
                &[("fl_device_groups", g), ("fl_devices", d)],
                OnDuplicate::Ignore,
            )
        };
        let batch = OrgBatch::new("org_a");
        let batch = member(batch, "dgr_a", "dev_a");
        let batch = member(batch, "dgr_a", "dev_a");
        let batch = member(batch, "dgr_a", "dev_b");
        let batch = member(batch, "dgr_b", "dev_a");
        let batch = batch
            .insert_linked(
                "fl_device_refresh_tokens",
                &[
                    "id",
                    "family_id",
                    "token_hash",
                    "created_at_ms",
                    "expires_at_ms",
                ],
                crate::args!["drt_x", "dfm_b", "hx", 2i64, 9i64],
                &[("fl_device_families", "dfm_b")],
                OnDuplicate::Fail,
            )
            .update_linked(
                "fl_device_refresh_tokens",
                "rotated_at_ms = ?",
                crate::args![5i64],
                ("family_id", "fl_device_families"),
                "id IN (?, ?)",
                crate::args!["drt_a", "drt_b"],
            );
        assert_eq!(run(&mut db, batch.into_stmts()), vec![1, 0, 0, 0, 0, 1]);
        assert_eq!(
            count(&db, "SELECT count(*) FROM fl_device_group_members"),
            1
        );
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM fl_device_refresh_tokens WHERE rotated_at_ms IS NOT NULL"
            ),
            1
        );
        assert_eq!(
            count(
                &db,
                "SELECT rotated_at_ms FROM fl_device_refresh_tokens WHERE id = 'drt_a'"
            ),
            5
        );
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM fl_device_refresh_tokens WHERE id = 'drt_x'"
            ),
            0
        );
    }

    /// An insert whose values SQL computes still names the org first; a new model version is
    /// numbered after the model's latest in the same statement.
    #[test]
    fn computed_inserts_bind_the_org() {
        use edgeplane_core::fl::versions::NewVersion;
        let mut db = sqlite();
        let version = |id: &str| {
            let v = NewVersion {
                id,
                model_id: "mdl_a",
                parent_id: None,
                round_id: None,
                sha256: "h",
                size_bytes: 1,
                parameters: 1,
                layout: "{}".into(),
                pieces: "[]".into(),
                aggregation: None,
                created_by: "u",
                created_at_ms: 1,
            };
            OrgBatch::new("org_a").insert_select(
                NewVersion::TABLE,
                NewVersion::COLUMNS,
                NewVersion::SELECT,
                v.values(),
            )
        };
        let stmts = version("mv_1").into_stmts();
        assert!(stmts[0]
            .sql
            .starts_with("INSERT INTO fl_model_versions (org_id, id, model_id, version, "));
        assert_eq!(stmts[0].args[0], Val::from("org_a"));
        run(&mut db, stmts);
        run(&mut db, version("mv_2").into_stmts());
        let numbered: Vec<(String, String, i64)> = db
            .prepare("SELECT id, org_id, version FROM fl_model_versions ORDER BY version")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            numbered,
            vec![
                ("mv_1".into(), "org_a".into(), 1),
                ("mv_2".into(), "org_a".into(), 2)
            ]
        );
    }

    fn facts(org: Option<&str>) -> Facts {
        Facts {
            org_id: org.map(str::to_owned),
            ..Facts::system("test", "x")
        }
    }

    /// Which org a change is written in is decided by its writes and the facts together: never
    /// two different orgs, and never unscoped writes in an org's name.
    #[test]
    fn writes_and_facts_agree_on_the_org() {
        let batch =
            || OrgBatch::new("org_a").delete("memberships", "user_id = ?", crate::args!["u"]);
        let mut f = facts(None);
        assert_eq!(Writes::from(batch()).bind(&mut f).unwrap().len(), 1);
        assert_eq!(
            f.org_id.as_deref(),
            Some("org_a"),
            "the batch names the events' org"
        );
        let mut f = facts(Some("org_a"));
        assert!(Writes::from(batch()).bind(&mut f).is_ok());
        let mut f = facts(Some("org_b"));
        assert_eq!(
            Writes::from(batch()).bind(&mut f).err(),
            Some("writes for another org than the facts name")
        );
        let unscoped = || Writes::from(vec![Stmt::new("DELETE FROM users", vec![])]);
        assert_eq!(
            unscoped().bind(&mut facts(Some("org_a"))).err(),
            Some("an org's change written without an OrgBatch")
        );
        assert!(unscoped().bind(&mut facts(None)).is_ok());
        // Events alone (no writes) may be recorded in an org's name.
        assert!(Writes::from(Vec::new())
            .bind(&mut facts(Some("org_a")))
            .is_ok());
    }
}
