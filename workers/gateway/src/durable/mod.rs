//! Durable Object classes. Each is a thin wrapper: parse the internal request, call the logic in
//! `edgeplane-core` over the object's storage, persist. Nothing here imports `routes/`: objects
//! reach R2 through `storage/` and each other through `clients/`.

pub mod audit_sequencer;
pub mod rate_limiter;
pub mod round_aggregator;
pub mod round_coordinator;
pub mod round_core;
pub mod round_io;
pub mod sql;
pub mod webhook_inbox;
