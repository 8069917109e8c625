//! Durable Object classes. Each is a thin wrapper: parse the internal request, call the pure
//! logic in `edgeplane-core`, persist.

pub mod audit_sequencer;
pub mod rate_limiter;
pub mod round_aggregator;
pub mod round_coordinator;
pub mod rpc;
pub mod sql;
pub mod webhook_inbox;
