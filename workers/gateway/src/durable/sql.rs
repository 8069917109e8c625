//! Small helpers over Durable Object SQLite storage. Statements run synchronously; several of them
//! issued without an `await` in between commit together, which is how the objects make a change
//! and its bookkeeping atomic.

use edgeplane_core::store::{Row, SqlExec, StoreError, Value};
use edgeplane_core::ApiError;
use edgeplane_runtime::db::OrInternal;
use serde::de::DeserializeOwned;
use worker::{SqlStorage, SqlStorageValue};

pub type V = SqlStorageValue;

pub fn exec(sql: &SqlStorage, q: &str, args: Vec<V>) -> Result<(), ApiError> {
    sql.exec(q, args).or_internal("do sql exec").map(|_| ())
}

pub fn rows<T: DeserializeOwned>(
    sql: &SqlStorage,
    q: &str,
    args: Vec<V>,
) -> Result<Vec<T>, ApiError> {
    sql.exec(q, args)
        .or_internal("do sql query")?
        .to_array::<T>()
        .or_internal("do sql decode")
}

pub fn one<T: DeserializeOwned>(
    sql: &SqlStorage,
    q: &str,
    args: Vec<V>,
) -> Result<Option<T>, ApiError> {
    Ok(rows::<T>(sql, q, args)?.into_iter().next())
}

/// The first column of each row, as bytes (blob columns).
pub fn blobs(sql: &SqlStorage, q: &str, args: Vec<V>) -> Result<Vec<Vec<u8>>, ApiError> {
    let cursor = sql.exec(q, args).or_internal("do sql query")?;
    let mut out = Vec::new();
    for row in cursor.raw() {
        match row.or_internal("do sql row")?.into_iter().next() {
            Some(V::Blob(b)) => out.push(b),
            _ => return Err(ApiError::internal()),
        }
    }
    Ok(out)
}

pub fn text(s: impl Into<String>) -> V {
    V::String(s.into())
}

pub fn int(i: i64) -> V {
    V::Integer(i)
}

pub fn real(f: f64) -> V {
    V::Float(f)
}

/// An alarm time from epoch milliseconds.
pub fn alarm_at(ms: i64) -> worker::ScheduledTime {
    worker::ScheduledTime::new(js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(
        ms as f64,
    )))
}

/// The runtime's SQLite as the synchronous executor the objects' logic in `edgeplane-core` is
/// written against.
pub struct DoSql(pub SqlStorage);

fn to_do(v: &Value) -> V {
    match v {
        Value::Null => V::Null,
        Value::Int(i) => V::Integer(*i),
        Value::Real(f) => V::Float(*f),
        Value::Text(s) => V::String(s.clone()),
        Value::Blob(b) => V::Blob(b.clone()),
    }
}

fn from_do(v: V) -> Value {
    match v {
        V::Null => Value::Null,
        V::Boolean(b) => Value::Int(b.into()),
        V::Integer(i) => Value::Int(i),
        V::Float(f) => Value::Real(f),
        V::String(s) => Value::Text(s),
        V::Blob(b) => Value::Blob(b),
    }
}

impl SqlExec for DoSql {
    fn for_each(
        &self,
        sql: &str,
        args: &[Value],
        each: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let cursor = self
            .0
            .exec(sql, args.iter().map(to_do).collect::<Vec<_>>())
            .map_err(|e| StoreError::Exec(e.to_string()))?;
        for row in cursor.raw() {
            let row = row.map_err(|e| StoreError::Exec(e.to_string()))?;
            each(Row(row.into_iter().map(from_do).collect()))?;
        }
        Ok(())
    }
}
