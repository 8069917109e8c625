//! Test support: runs D1 batches as SQLite runs them (one transaction, guards included) over
//! the real `schema.sql`, so the guards of a service's batch are exercised natively.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgeplane_runtime::db::{Stmt, Val};
use rusqlite::types::Value as Sq;
use rusqlite::Connection;

pub fn schema() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(include_str!("../../../../../schema.sql"))
        .unwrap();
    conn
}

fn sq(v: &Val) -> Sq {
    match v {
        Val::Null => Sq::Null,
        Val::Int(i) => Sq::Integer(*i),
        Val::Real(f) => Sq::Real(*f),
        Val::Text(s) => Sq::Text(s.clone()),
        Val::Blob(b) => Sq::Blob(b.clone()),
    }
}

/// One D1 batch: every statement applies, or none does (a failed guard aborts it).
pub fn batch(conn: &mut Connection, stmts: &[Stmt]) -> Result<(), String> {
    let tx = conn.transaction().unwrap();
    for s in stmts {
        tx.execute(&s.sql, rusqlite::params_from_iter(s.args.iter().map(sq)))
            .map_err(|e| e.to_string())?;
    }
    tx.execute("DELETE FROM batch_guards", []).unwrap();
    tx.commit().unwrap();
    Ok(())
}

pub fn exec(conn: &Connection, sql: &str) {
    conn.execute_batch(sql).unwrap();
}

pub fn text(conn: &Connection, sql: &str) -> Option<String> {
    conn.query_row(sql, [], |r| r.get(0)).ok()
}
