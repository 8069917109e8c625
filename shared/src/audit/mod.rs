//! The audit log: typed actions, events completed with their request's facts, per-org hash
//! chains, the sequencer that places events in them, and signed checkpoints.
//!
//! A change and its event are committed in one batch ([`sql::insert_pending`]); the chain's
//! [`sequencer`] places the event right after, and signs a [`checkpoint`] of the new head.
//! [`retention`] deletes an old prefix after signing an anchor that verification starts from.

pub mod action;
pub mod chain;
pub mod checkpoint;
pub mod event;
pub mod export;
pub mod export_job;
pub mod retention;
pub mod sequencer;
pub mod sql;
#[cfg(test)]
mod testing;

pub use action::{AuditAction, UnknownAction};
pub use chain::{
    event_hash, Actor, ChainHead, ChainReport, ChainVerifier, ChainedEvent, NewEvent,
    RecordedEvent, GENESIS_HASH, PLATFORM_CHAIN,
};
pub use event::{Event, Facts};
