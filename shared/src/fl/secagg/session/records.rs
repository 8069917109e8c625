//! The session's rows, beside the coordinator's own in the round's SQLite, and typed reads and
//! writes over [`SqlExec`].
//!
//! Every table is named `secagg_…` so [`drop_all`] can remove the session whole when the round
//! ends. What the tables hold, and why no more:
//! - `secagg_session`: one row, the configuration and the state (stage, deadline, failure);
//! - `secagg_roster`: one row per device that advertised (n ≤ [`super::MAX_ROSTER`]): its index,
//!   its two public keys and the last stage it completed;
//! - `secagg_ciphertexts`: the share ciphertexts in transit, at most n·(n − 1) of 204 bytes.
//!   This square is inherent to all-to-all SecAgg+ (every device shares with every peer); at the
//!   cap it is about 204 MB, well within an object's storage. Rows to devices that missed stage 2
//!   are deleted when stage 2 closes, and all of them when stage 3 closes (the survivors have
//!   fetched theirs by then);
//! - `secagg_reveals`: the stage-4 shares, at most |survivors| · (|survivors| + |dropped|) rows
//!   of 40 or 132 bytes, each of one kind only: `rd_seed` for a survivor, `sk1` for a dropped
//!   device, fixed by the partition frozen when stage 3 closed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{SessionConfig, Stage, State};
use crate::fl::ledger::records::{dec, enc};
use crate::ids::DeviceId;
use crate::store::{Row, SqlExec, StoreError, Value};
use crate::vals;

const TABLES: &[&str] = &[
    "secagg_session",
    "secagg_roster",
    "secagg_ciphertexts",
    "secagg_reveals",
];

/// The schema (first version; a later one adds steps the way the ledger's `MIGRATIONS` do).
pub fn migrate(sql: &impl SqlExec) -> Result<(), StoreError> {
    for stmt in [
        "CREATE TABLE IF NOT EXISTS secagg_session (id INTEGER PRIMARY KEY CHECK (id = 1), \
         config TEXT NOT NULL, state TEXT NOT NULL, deadline_at_ms INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS secagg_roster (idx INTEGER PRIMARY KEY, \
         device_id TEXT NOT NULL UNIQUE, pk1 BLOB NOT NULL, pk2 BLOB NOT NULL, reached TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS secagg_ciphertexts (receiver INTEGER NOT NULL, \
         sender INTEGER NOT NULL, bytes BLOB NOT NULL, PRIMARY KEY (receiver, sender))",
        "CREATE TABLE IF NOT EXISTS secagg_reveals (of_idx INTEGER NOT NULL, holder INTEGER NOT NULL, \
         kind TEXT NOT NULL, share BLOB NOT NULL, PRIMARY KEY (of_idx, holder))",
    ] {
        sql.exec(stmt, &[])?;
    }
    Ok(())
}

/// Removes every table of the session: nothing of it remains in the object.
pub fn drop_all(sql: &impl SqlExec) -> Result<(), StoreError> {
    for table in TABLES {
        sql.exec(&format!("DROP TABLE IF EXISTS {table}"), &[])?;
    }
    Ok(())
}

/// The names of the session's tables still present (empty after [`drop_all`]).
#[cfg(test)]
pub fn tables(sql: &impl SqlExec) -> Result<Vec<String>, StoreError> {
    sql.query(
        "SELECT name FROM sqlite_master WHERE name LIKE 'secagg_%' ORDER BY name",
        &[],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub config: SessionConfig,
    pub state: State,
    /// When the current stage closes whoever has not answered.
    pub deadline_at_ms: i64,
}

pub fn session(sql: &impl SqlExec) -> Result<Option<SessionRecord>, StoreError> {
    let Some(r) = sql.one(
        "SELECT config, state, deadline_at_ms FROM secagg_session WHERE id = 1",
        &[],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(SessionRecord {
        config: dec(&r, 0)?,
        state: dec(&r, 1)?,
        deadline_at_ms: r.get(2)?,
    }))
}

pub fn insert_session(sql: &impl SqlExec, s: &SessionRecord) -> Result<(), StoreError> {
    sql.exec(
        "INSERT INTO secagg_session (id, config, state, deadline_at_ms) VALUES (1, ?, ?, ?)",
        &[
            enc(&s.config)?,
            enc(&s.state)?,
            Value::Int(s.deadline_at_ms),
        ],
    )
}

pub fn set_state(sql: &impl SqlExec, state: &State, deadline_at_ms: i64) -> Result<(), StoreError> {
    sql.exec(
        "UPDATE secagg_session SET state = ?, deadline_at_ms = ? WHERE id = 1",
        &[enc(state)?, Value::Int(deadline_at_ms)],
    )
}

/// A device of the roster.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub index: u32,
    pub device_id: DeviceId,
    pub pk1: [u8; 32],
    pub pk2: [u8; 32],
    /// The last stage this device completed.
    pub reached: Stage,
}

const MEMBER_COLUMNS: &str = "idx, device_id, pk1, pk2, reached";

fn key(r: &Row, i: usize) -> Result<[u8; 32], StoreError> {
    let bytes: Vec<u8> = r.get(i)?;
    bytes
        .try_into()
        .map_err(|_| StoreError::corrupt(format!("column {i}: not a 32-byte key")))
}

fn member_of(r: &Row) -> Result<Member, StoreError> {
    Ok(Member {
        index: r.get(0)?,
        device_id: r.get(1)?,
        pk1: key(r, 2)?,
        pk2: key(r, 3)?,
        reached: dec(r, 4)?,
    })
}

pub fn member(sql: &impl SqlExec, device: &DeviceId) -> Result<Option<Member>, StoreError> {
    sql.one(
        &format!("SELECT {MEMBER_COLUMNS} FROM secagg_roster WHERE device_id = ?"),
        &vals![device],
    )?
    .map(|r| member_of(&r))
    .transpose()
}

/// The devices that completed `stage` (and so every stage before it), by index.
pub fn members_through(sql: &impl SqlExec, stage: Stage) -> Result<Vec<Member>, StoreError> {
    let mut out = Vec::new();
    sql.for_each(
        &format!("SELECT {MEMBER_COLUMNS} FROM secagg_roster ORDER BY idx"),
        &[],
        &mut |r| {
            let m = member_of(&r)?;
            if m.reached >= stage {
                out.push(m);
            }
            Ok(())
        },
    )?;
    Ok(out)
}

/// The devices whose last completed stage is exactly `stage`, by index.
pub fn members_at(sql: &impl SqlExec, stage: Stage) -> Result<Vec<Member>, StoreError> {
    sql.query(
        &format!("SELECT {MEMBER_COLUMNS} FROM secagg_roster WHERE reached = ? ORDER BY idx"),
        &[enc(&stage)?],
    )?
    .iter()
    .map(member_of)
    .collect()
}

/// How many devices stopped at each stage.
pub fn reached_counts(sql: &impl SqlExec) -> Result<BTreeMap<Stage, u32>, StoreError> {
    let mut out = BTreeMap::new();
    for r in sql.query(
        "SELECT reached, count(*) FROM secagg_roster GROUP BY reached",
        &[],
    )? {
        out.insert(dec::<Stage>(&r, 0)?, r.get(1)?);
    }
    Ok(out)
}

/// Adds a device with the next index: nobody leaves during stage 1, so indices run 1..=n.
pub fn add_member(
    sql: &impl SqlExec,
    device: &DeviceId,
    pk1: &[u8; 32],
    pk2: &[u8; 32],
) -> Result<u32, StoreError> {
    let next: u32 = match sql.one("SELECT COALESCE(MAX(idx), 0) + 1 FROM secagg_roster", &[])? {
        Some(r) => r.get(0)?,
        None => 1,
    };
    sql.exec(
        "INSERT INTO secagg_roster (idx, device_id, pk1, pk2, reached) VALUES (?, ?, ?, ?, ?)",
        &[
            Value::from(next),
            Value::from(device),
            Value::Blob(pk1.to_vec()),
            Value::Blob(pk2.to_vec()),
            enc(&Stage::AdvertiseKeys)?,
        ],
    )?;
    Ok(next)
}

pub fn set_reached(sql: &impl SqlExec, index: u32, stage: Stage) -> Result<(), StoreError> {
    sql.exec(
        "UPDATE secagg_roster SET reached = ? WHERE idx = ?",
        &[enc(&stage)?, Value::from(index)],
    )
}

pub fn insert_ciphertext(
    sql: &impl SqlExec,
    sender: u32,
    receiver: u32,
    bytes: &[u8],
) -> Result<(), StoreError> {
    sql.exec(
        "INSERT INTO secagg_ciphertexts (receiver, sender, bytes) VALUES (?, ?, ?)",
        &[
            Value::from(receiver),
            Value::from(sender),
            Value::Blob(bytes.to_vec()),
        ],
    )
}

/// The ciphertexts addressed to `receiver`, as (sender, bytes) by sender.
pub fn ciphertexts_to(
    sql: &impl SqlExec,
    receiver: u32,
) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
    sql.query(
        "SELECT sender, bytes FROM secagg_ciphertexts WHERE receiver = ? ORDER BY sender",
        &vals![receiver],
    )?
    .iter()
    .map(|r| Ok((r.get(0)?, r.get(1)?)))
    .collect()
}

/// Forgets the ciphertexts addressed to devices whose last completed stage is `stage`.
pub fn delete_ciphertexts_to_stopped_at(
    sql: &impl SqlExec,
    stage: Stage,
) -> Result<(), StoreError> {
    sql.exec(
        "DELETE FROM secagg_ciphertexts WHERE receiver IN (SELECT idx FROM secagg_roster WHERE reached = ?)",
        &[enc(&stage)?],
    )
}

pub fn delete_ciphertexts(sql: &impl SqlExec) -> Result<(), StoreError> {
    sql.exec("DELETE FROM secagg_ciphertexts", &[])
}

pub fn count_ciphertexts(sql: &impl SqlExec) -> Result<u64, StoreError> {
    match sql.one("SELECT count(*) FROM secagg_ciphertexts", &[])? {
        Some(r) => r.get(0),
        None => Ok(0),
    }
}

/// Which secret a revealed share belongs to. A device's shares are only ever of one kind: both
/// would let the server read its masked vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareKind {
    /// A survivor's self-mask seed.
    RdSeed,
    /// A dropped device's pairwise-mask key.
    Sk1,
}

pub fn insert_reveal(
    sql: &impl SqlExec,
    of: u32,
    holder: u32,
    kind: ShareKind,
    share: &[u8],
) -> Result<(), StoreError> {
    sql.exec(
        "INSERT INTO secagg_reveals (of_idx, holder, kind, share) VALUES (?, ?, ?, ?)",
        &[
            Value::from(of),
            Value::from(holder),
            enc(&kind)?,
            Value::Blob(share.to_vec()),
        ],
    )
}

/// At most `limit` shares of `of`'s secret of `kind`, by holder.
pub fn reveals_of(
    sql: &impl SqlExec,
    of: u32,
    kind: ShareKind,
    limit: u32,
) -> Result<Vec<Vec<u8>>, StoreError> {
    sql.query(
        "SELECT share FROM secagg_reveals WHERE of_idx = ? AND kind = ? ORDER BY holder LIMIT ?",
        &[Value::from(of), enc(&kind)?, Value::from(limit)],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// How many shares arrived per device (index → count).
pub fn reveal_counts(sql: &impl SqlExec) -> Result<BTreeMap<u32, u32>, StoreError> {
    let mut out = BTreeMap::new();
    for r in sql.query(
        "SELECT of_idx, count(*) FROM secagg_reveals GROUP BY of_idx",
        &[],
    )? {
        out.insert(r.get(0)?, r.get(1)?);
    }
    Ok(out)
}

pub fn delete_reveals(sql: &impl SqlExec) -> Result<(), StoreError> {
    sql.exec("DELETE FROM secagg_reveals", &[])
}
