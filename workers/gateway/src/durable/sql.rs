//! Durable Object SQLite, adapted to `edgeplane_core::store::SqlExec` (what every object's logic
//! is written against), and alarm times. Statements run synchronously; several of them issued
//! without an `await` in between commit together, which is how the objects make a change and its
//! bookkeeping atomic.

use edgeplane_core::store::{Row, SqlExec, StoreError, Value};
use worker::{SqlStorage, SqlStorageValue as V};

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
