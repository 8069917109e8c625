//! Durable Object storage, seen from the logic that runs inside an object.
//!
//! A Durable Object's SQLite is synchronous: statements issued without an `await` between them
//! commit together. So the logic of each object (the round ledger, the webhook inbox, an
//! aggregator shard) is written against [`SqlExec`], a synchronous executor, and runs one whole
//! decision per call. The worker adapts the runtime's `SqlStorage` to it; native tests adapt
//! SQLite itself (`rusqlite`), so the very statements production runs are exercised in
//! `cargo test`, including what remains after an object is evicted between two calls.

mod sql;

pub use sql::{FromValue, Row, SqlExec, StoreError, Value};

#[cfg(test)]
pub mod testing;
