//! Runtime glue shared by the gateway and review workers: the D1 layer (statements as data,
//! guards, audited batches), the audit sequencer's client and the one mutation path for code
//! that serves no request, operational logging, and the clock. Decisions do not live here —
//! they live in `edgeplane-core`; this crate only binds them to the Workers runtime.
#![forbid(unsafe_code)]

pub mod audit;
pub mod clock;
pub mod db;
pub mod log;

pub use db::{Db, OrInternal, Stmt, Val};
