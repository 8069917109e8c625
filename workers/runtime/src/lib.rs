//! Runtime glue shared by the gateway and review workers: the D1 layer (statements as data,
//! guards, audited batches), operational logging, and the clock. Decisions do not live here —
//! they live in `edgeplane-core`; this crate only binds them to the Workers runtime.
#![forbid(unsafe_code)]

pub mod clock;
pub mod db;
pub mod log;

pub use db::{Db, OrInternal, Stmt, Val};
