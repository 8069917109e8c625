//! The audit log's statements and row decoders, written once: the gateway runs them on D1, the
//! native tests on SQLite with the same `schema.sql`.
//!
//! Tables: `audit_pending` (events committed with their change, not yet placed),
//! `audit_events` (the chains), `audit_checkpoints` (one signed checkpoint per sequencing batch).

use super::chain::{ChainHead, ChainedEvent, RecordedEvent};
use crate::store::{Row, StoreError, Value};

/// A statement as data: SQL and its bound values.
pub type Statement = (&'static str, Vec<Value>);

/// A recorded event's columns, in the order every statement here lists them: `id, chain,
/// org_id, actor_type, actor_id, action, resource_type, resource_id, ip, user_agent,
/// request_id, metadata, created_at_ms`.
fn recorded_values(e: &RecordedEvent) -> Vec<Value> {
    vec![
        e.id.as_str().into(),
        e.chain.as_str().into(),
        e.org_id.clone().into(),
        e.actor_type.as_str().into(),
        e.actor_id.as_str().into(),
        e.action.as_str().into(),
        e.resource_type.as_str().into(),
        e.resource_id.as_str().into(),
        e.ip.clone().into(),
        e.user_agent.clone().into(),
        e.request_id.clone().into(),
        e.metadata.as_str().into(),
        e.created_at_ms.into(),
    ]
}

/// A recorded event from `r`, its columns starting at `at`.
fn recorded_from_row(r: &Row, at: usize) -> Result<RecordedEvent, StoreError> {
    Ok(RecordedEvent {
        id: r.get(at)?,
        chain: r.get(at + 1)?,
        org_id: r.get(at + 2)?,
        actor_type: r.get(at + 3)?,
        actor_id: r.get(at + 4)?,
        action: r.get(at + 5)?,
        resource_type: r.get(at + 6)?,
        resource_id: r.get(at + 7)?,
        ip: r.get(at + 8)?,
        user_agent: r.get(at + 9)?,
        request_id: r.get(at + 10)?,
        metadata: r.get(at + 11)?,
        created_at_ms: r.get(at + 12)?,
    })
}

pub const INSERT_PENDING: &str = "INSERT INTO audit_pending (id, chain, org_id, actor_type, \
     actor_id, action, resource_type, resource_id, ip, user_agent, request_id, metadata, \
     created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Records `e` with its change. It never conflicts with another writer: no position is taken.
pub fn insert_pending(e: &RecordedEvent) -> Statement {
    (INSERT_PENDING, recorded_values(e))
}

/// The oldest pending events of a chain, in commit order: `[chain, limit]`.
pub const SELECT_PENDING: &str = "SELECT pending_id, id, chain, org_id, actor_type, actor_id, \
     action, resource_type, resource_id, ip, user_agent, request_id, metadata, created_at_ms \
     FROM audit_pending WHERE chain = ? ORDER BY pending_id LIMIT ?";

/// A row of [`SELECT_PENDING`]: its commit-order key and the event.
pub fn pending_from_row(r: &Row) -> Result<(i64, RecordedEvent), StoreError> {
    Ok((r.get(0)?, recorded_from_row(r, 1)?))
}

/// Chains with events waiting, oldest first (for the cron sweep): `[limit]`.
pub const PENDING_CHAINS: &str =
    "SELECT chain FROM audit_pending GROUP BY chain ORDER BY min(pending_id) LIMIT ?";

/// Removes the placed events `[chain, first, last]`: every pending event of the chain in that
/// commit-order range was read by the pass that placed them.
pub const DELETE_PENDING: &str =
    "DELETE FROM audit_pending WHERE chain = ? AND pending_id BETWEEN ? AND ?";

/// The chain's last event: `[chain]`.
pub const SELECT_HEAD: &str =
    "SELECT seq, hash FROM audit_events WHERE chain = ? ORDER BY seq DESC LIMIT 1";

pub fn head_from_rows(rows: &[Row]) -> Result<ChainHead, StoreError> {
    match rows.first() {
        None => Ok(ChainHead::genesis()),
        Some(r) => Ok(ChainHead {
            seq: r.get(0)?,
            hash: r.get(1)?,
        }),
    }
}

/// The columns of a placed event, in [`event_from_row`]'s order: the recorded event's, then
/// its place.
pub const EVENT_COLUMNS: &str = "id, chain, org_id, actor_type, actor_id, action, \
     resource_type, resource_id, ip, user_agent, request_id, metadata, created_at_ms, seq, \
     prev_hash, hash";

const INSERT_EVENT: &str = "INSERT INTO audit_events (id, chain, org_id, actor_type, actor_id, \
     action, resource_type, resource_id, ip, user_agent, request_id, metadata, created_at_ms, \
     seq, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Places an event. `(chain, seq)` and `id` are unique, so two sequencers can never both place
/// an event or take one position: the later batch fails as a whole.
pub fn insert_event(e: &ChainedEvent) -> Statement {
    let mut values = recorded_values(&e.event);
    values.extend([
        e.seq.into(),
        e.prev_hash.as_str().into(),
        e.hash.as_str().into(),
    ]);
    (INSERT_EVENT, values)
}

pub fn event_from_row(r: &Row) -> Result<ChainedEvent, StoreError> {
    Ok(ChainedEvent {
        event: recorded_from_row(r, 0)?,
        seq: r.get(13)?,
        prev_hash: r.get(14)?,
        hash: r.get(15)?,
    })
}

/// A page of a chain in order, for verification: `[chain, after_seq, limit]`.
pub const EVENTS_AFTER: &str = "SELECT id, chain, org_id, actor_type, actor_id, action, \
     resource_type, resource_id, ip, user_agent, request_id, metadata, created_at_ms, seq, \
     prev_hash, hash FROM audit_events WHERE chain = ? AND seq > ? ORDER BY seq LIMIT ?";

const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints (chain, size, head_hash, note, \
     created_at_ms) VALUES (?, ?, ?, ?, ?)";

pub fn insert_checkpoint(chain: &str, head: &ChainHead, note: &str, now_ms: i64) -> Statement {
    (
        INSERT_CHECKPOINT,
        vec![
            chain.into(),
            head.seq.into(),
            head.hash.as_str().into(),
            note.into(),
            now_ms.into(),
        ],
    )
}

/// The newest checkpoint of a chain, `[chain]`: its size and signed note.
pub const LATEST_CHECKPOINT: &str =
    "SELECT size, note FROM audit_checkpoints WHERE chain = ? ORDER BY size DESC LIMIT 1";

pub fn latest_from_rows(rows: &[Row]) -> Result<Option<(i64, String)>, StoreError> {
    rows.first().map(|r| Ok((r.get(0)?, r.get(1)?))).transpose()
}

/// Stored checkpoints whose size falls in `(after, upto]`, `[chain, after, upto]`: what a
/// verification page compares the chain against.
pub const CHECKPOINTS_IN: &str = "SELECT size, head_hash FROM audit_checkpoints \
     WHERE chain = ? AND size > ? AND size <= ? ORDER BY size";

pub fn checkpoint_head_from_row(r: &Row) -> Result<ChainHead, StoreError> {
    Ok(ChainHead {
        seq: r.get(0)?,
        hash: r.get(1)?,
    })
}
