//! [`SqlExec`] over SQLite itself, for native tests of the objects' logic.

use rusqlite::types::{Value as Sq, ValueRef};
use rusqlite::Connection;

use super::{Row, SqlExec, StoreError, Value};

/// An in-memory SQLite database standing in for one Durable Object's storage. Reopening the
/// logic over the same `MemSql` is what an eviction looks like: everything not written here is
/// gone.
pub struct MemSql {
    conn: Connection,
}

impl MemSql {
    pub fn new() -> Self {
        Self {
            conn: Connection::open_in_memory().expect("in-memory sqlite"),
        }
    }
}

impl MemSql {
    /// An in-memory database with D1's schema (`schema.sql`), for native tests of statements
    /// the workers run against D1.
    pub fn with_d1_schema() -> Self {
        let db = Self::new();
        db.conn
            .execute_batch(include_str!("../../../schema.sql"))
            .expect("schema.sql applies");
        db
    }
}

impl Default for MemSql {
    fn default() -> Self {
        Self::new()
    }
}

fn to_sql(v: &Value) -> Sq {
    match v {
        Value::Null => Sq::Null,
        Value::Int(i) => Sq::Integer(*i),
        Value::Real(f) => Sq::Real(*f),
        Value::Text(s) => Sq::Text(s.clone()),
        Value::Blob(b) => Sq::Blob(b.clone()),
    }
}

fn from_sql(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl SqlExec for MemSql {
    /// Streams rows one at a time, like the runtime's cursor.
    fn for_each(
        &self,
        sql: &str,
        args: &[Value],
        each: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let err = |e: rusqlite::Error| StoreError::Exec(e.to_string());
        let mut stmt = self.conn.prepare_cached(sql).map_err(err)?;
        let n = stmt.column_count();
        let params: Vec<Sq> = args.iter().map(to_sql).collect();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(err)?;
        while let Some(r) = rows.next().map_err(err)? {
            let mut cols = Vec::with_capacity(n);
            for i in 0..n {
                cols.push(from_sql(r.get_ref(i).map_err(err)?));
            }
            each(Row(cols))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Row;

    #[test]
    fn values_round_trip_and_types_are_checked() {
        let db = MemSql::new();
        db.exec(
            "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n TEXT)",
            &[],
        )
        .unwrap();
        db.exec(
            "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
            &crate::vals![7i64, 1.5f64, "x", vec![1u8, 2], Option::<String>::None],
        )
        .unwrap();
        let row: Row = db.one("SELECT i, r, s, b, n FROM t", &[]).unwrap().unwrap();
        assert_eq!(row.get::<i64>(0).unwrap(), 7);
        assert_eq!(row.get::<f64>(1).unwrap(), 1.5);
        assert_eq!(row.get::<String>(2).unwrap(), "x");
        assert_eq!(row.get::<Vec<u8>>(3).unwrap(), vec![1, 2]);
        assert_eq!(row.get::<Option<String>>(4).unwrap(), None);
        assert!(matches!(row.get::<String>(0), Err(StoreError::Corrupt(_))));
        assert!(matches!(row.get::<i64>(9), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            db.exec("INSERT INTO nope VALUES (1)", &[]),
            Err(StoreError::Exec(_))
        ));
    }
}
