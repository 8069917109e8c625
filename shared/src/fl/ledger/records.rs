//! The coordinator's rows: its schema, and typed reads and writes over [`SqlExec`].
//!
//! Every stored enum is written by its serde name and read back strictly: a name this code does
//! not know is [`StoreError::Corrupt`], never a default state.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::fl::participation::{ParticipationState, UploadState};
use crate::fl::pieces::Piece;
use crate::fl::round::{RejectReason, RoundFailure, RoundState};
use crate::fl::validate::{UpdateMeta, UpdateSource};
use crate::fl::wire::{ParticipationId, Requester, RoundConfig};
use crate::ids::{DeviceId, ModelVersionId, UploadId};
use crate::store::{Row, SqlExec, StoreError, Value};
use crate::vals;

/// The schema, in order. Each step runs once per object (tracked in `schema_version`), so an
/// object created by an older release is brought forward when it next wakes.
const MIGRATIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE IF NOT EXISTS round (id INTEGER PRIMARY KEY CHECK (id = 1), config TEXT NOT NULL, \
         state TEXT NOT NULL, accepted INTEGER NOT NULL DEFAULT 0, total_weight REAL NOT NULL DEFAULT 0, \
         total_samples INTEGER NOT NULL DEFAULT 0, folded INTEGER NOT NULL DEFAULT 0, \
         version_id TEXT, noise_seed TEXT, closed_at_ms INTEGER)",
        "CREATE TABLE IF NOT EXISTS participants (id TEXT PRIMARY KEY, device_id TEXT NOT NULL UNIQUE, \
         state TEXT NOT NULL, joined_at_ms INTEGER NOT NULL, capabilities TEXT NOT NULL, upload_id TEXT)",
        "CREATE TABLE IF NOT EXISTS uploads (id TEXT PRIMARY KEY, participation_id TEXT NOT NULL, \
         device_id TEXT NOT NULL, state TEXT NOT NULL, meta TEXT NOT NULL, parts INTEGER NOT NULL, \
         created_at_ms INTEGER NOT NULL, seq INTEGER UNIQUE, weight REAL, source TEXT, \
         reject_reason TEXT, reject_message TEXT, released INTEGER NOT NULL DEFAULT 0)",
        "CREATE TABLE IF NOT EXISTS parts (upload_id TEXT NOT NULL, part INTEGER NOT NULL, key TEXT NOT NULL, \
         size INTEGER NOT NULL, PRIMARY KEY (upload_id, part))",
        "CREATE TABLE IF NOT EXISTS revoked (device_id TEXT PRIMARY KEY)",
    ],
    &[
        // Terminal states are written to D1 (with their audit record) after the object decided
        // them; `recorded` says that happened, `ended` keeps what the record needs.
        "ALTER TABLE round ADD COLUMN failure TEXT",
        "ALTER TABLE round ADD COLUMN recorded INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE round ADD COLUMN ended TEXT",
        "ALTER TABLE round ADD COLUMN capped INTEGER NOT NULL DEFAULT 0",
        // Rounds that ended before this column existed were cleaned up by the code of the time.
        "ALTER TABLE round ADD COLUMN cleaned INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE uploads ADD COLUMN completed_at_ms INTEGER",
    ],
    &[
        // Validation while parts stream in, in order: how many leading parts it covers, where
        // it stands, and whether a replaced part broke it (then `complete` reads once instead).
        "ALTER TABLE uploads ADD COLUMN streamed_parts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE uploads ADD COLUMN stream_state BLOB",
        "ALTER TABLE uploads ADD COLUMN stream_broken INTEGER NOT NULL DEFAULT 0",
    ],
];

/// Brings the object's schema up to date.
pub fn migrate(sql: &impl SqlExec) -> Result<(), StoreError> {
    sql.exec(
        "CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
        &[],
    )?;
    let have: i64 = match sql.one("SELECT version FROM schema_version WHERE id = 1", &[])? {
        Some(r) => r.get(0)?,
        // Objects from before versioning have the first step's tables already (IF NOT EXISTS
        // makes running it again harmless).
        None => 0,
    };
    for (i, step) in MIGRATIONS.iter().enumerate().skip(have.max(0) as usize) {
        for stmt in *step {
            sql.exec(stmt, &[])?;
        }
        sql.exec(
            "INSERT INTO schema_version (id, version) VALUES (1, ?) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            &vals![(i + 1) as i64],
        )?;
    }
    Ok(())
}

/// A serde enum or struct stored as text.
pub(crate) fn enc<T: Serialize>(v: &T) -> Result<Value, StoreError> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => Ok(Value::Text(s)),
        Ok(other) => Ok(Value::Text(other.to_string())),
        Err(e) => Err(StoreError::corrupt(e)),
    }
}

/// Reads back what [`enc`] wrote.
pub(crate) fn dec<T: DeserializeOwned>(row: &Row, i: usize) -> Result<T, StoreError> {
    let s: String = row.get(i)?;
    serde_json::from_str::<T>(&s)
        .or_else(|_| serde_json::from_value::<T>(serde_json::Value::String(s.clone())))
        .map_err(|e| StoreError::corrupt(format!("column {i} {s:?}: {e}")))
}

pub(crate) fn dec_opt<T: DeserializeOwned>(row: &Row, i: usize) -> Result<Option<T>, StoreError> {
    match row.0.get(i) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => dec(row, i).map(Some),
    }
}

/// How a round ended, as the object keeps it until D1 has it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ended {
    Cancelled {
        previous: RoundState,
        requester: Requester,
    },
    InsufficientUpdates {
        accepted: i64,
    },
    Failed {
        failure: RoundFailure,
        detail: String,
    },
    Published {
        version_id: ModelVersionId,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoundRecord {
    pub config: RoundConfig,
    pub state: RoundState,
    pub accepted: i64,
    pub total_weight: f64,
    pub total_samples: i64,
    pub capped: i64,
    pub folded: i64,
    pub version_id: Option<ModelVersionId>,
    pub noise_seed: Option<String>,
    pub closed_at_ms: Option<i64>,
    pub failure: Option<RoundFailure>,
    /// D1 and the audit log have the terminal state.
    pub recorded: bool,
    pub ended: Option<Ended>,
    /// After the end: staged bytes and the shards' sums are gone.
    pub cleaned: bool,
}

pub fn round(sql: &impl SqlExec) -> Result<Option<RoundRecord>, StoreError> {
    let Some(r) = sql.one(
        "SELECT config, state, accepted, total_weight, total_samples, capped, folded, version_id, \
         noise_seed, closed_at_ms, failure, recorded, ended, cleaned FROM round WHERE id = 1",
        &[],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(RoundRecord {
        config: dec(&r, 0)?,
        state: dec(&r, 1)?,
        accepted: r.get(2)?,
        total_weight: r.get(3)?,
        total_samples: r.get(4)?,
        capped: r.get(5)?,
        folded: r.get(6)?,
        version_id: r.get(7)?,
        noise_seed: r.get(8)?,
        closed_at_ms: r.get(9)?,
        failure: dec_opt(&r, 10)?,
        recorded: r.get(11)?,
        ended: dec_opt(&r, 12)?,
        cleaned: r.get(13)?,
    }))
}

pub fn insert_round(sql: &impl SqlExec, cfg: &RoundConfig) -> Result<(), StoreError> {
    sql.exec(
        "INSERT INTO round (id, config, state) VALUES (1, ?, ?)",
        &[enc(cfg)?, enc(&RoundState::Open)?],
    )
}

pub fn set_state(sql: &impl SqlExec, state: RoundState) -> Result<(), StoreError> {
    sql.exec("UPDATE round SET state = ? WHERE id = 1", &[enc(&state)?])
}

/// Ends the round in this object: the state, when, how, and that D1 does not have it yet.
pub fn set_ended(
    sql: &impl SqlExec,
    state: RoundState,
    failure: Option<RoundFailure>,
    ended: &Ended,
    now_ms: i64,
) -> Result<(), StoreError> {
    sql.exec(
        "UPDATE round SET state = ?, failure = ?, ended = ?, recorded = 0, cleaned = 0, \
         closed_at_ms = ? WHERE id = 1",
        &[
            enc(&state)?,
            failure.map(|f| enc(&f)).transpose()?.unwrap_or(Value::Null),
            enc(ended)?,
            Value::Int(now_ms),
        ],
    )
}

pub fn set_recorded(sql: &impl SqlExec) -> Result<(), StoreError> {
    sql.exec("UPDATE round SET recorded = 1 WHERE id = 1", &[])
}

pub fn set_cleaned(sql: &impl SqlExec) -> Result<(), StoreError> {
    sql.exec("UPDATE round SET cleaned = 1 WHERE id = 1", &[])
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantRecord {
    pub id: ParticipationId,
    pub device_id: DeviceId,
    pub state: ParticipationState,
    pub joined_at_ms: i64,
    pub upload_id: Option<UploadId>,
}

const PARTICIPANT_COLUMNS: &str = "id, device_id, state, joined_at_ms, upload_id";

fn participant_of(r: &Row) -> Result<ParticipantRecord, StoreError> {
    let id: String = r.get(0)?;
    Ok(ParticipantRecord {
        id: ParticipationId::parse(&id).map_err(|_| StoreError::corrupt("participation id"))?,
        device_id: r.get(1)?,
        state: dec(r, 2)?,
        joined_at_ms: r.get(3)?,
        upload_id: r.get(4)?,
    })
}

pub fn participant(
    sql: &impl SqlExec,
    id: &ParticipationId,
) -> Result<Option<ParticipantRecord>, StoreError> {
    sql.one(
        &format!("SELECT {PARTICIPANT_COLUMNS} FROM participants WHERE id = ?"),
        &vals![id.as_str()],
    )?
    .map(|r| participant_of(&r))
    .transpose()
}

pub fn participant_of_device(
    sql: &impl SqlExec,
    device: &DeviceId,
) -> Result<Option<ParticipantRecord>, StoreError> {
    sql.one(
        &format!("SELECT {PARTICIPANT_COLUMNS} FROM participants WHERE device_id = ?"),
        &vals![device],
    )?
    .map(|r| participant_of(&r))
    .transpose()
}

pub fn participants(sql: &impl SqlExec) -> Result<Vec<ParticipantRecord>, StoreError> {
    sql.query(
        &format!("SELECT {PARTICIPANT_COLUMNS} FROM participants ORDER BY joined_at_ms, id"),
        &[],
    )?
    .iter()
    .map(participant_of)
    .collect()
}

/// Participations that hold one of the round's `max` places: a revoked one never uploads
/// again, so its place goes back to the round (an interrupted `simulate round`, a lost phone).
pub fn count_participants_holding_a_place(sql: &impl SqlExec) -> Result<u32, StoreError> {
    match sql.one(
        "SELECT count(*) FROM participants WHERE state != ?",
        &[enc(&ParticipationState::Revoked)?],
    )? {
        Some(r) => r.get(0),
        None => Ok(0),
    }
}

pub fn insert_participant(
    sql: &impl SqlExec,
    p: &ParticipantRecord,
    capabilities: &str,
) -> Result<(), StoreError> {
    sql.exec(
        "INSERT INTO participants (id, device_id, state, joined_at_ms, capabilities) VALUES (?, ?, ?, ?, ?)",
        &[
            Value::from(p.id.as_str()),
            Value::from(&p.device_id),
            enc(&p.state)?,
            Value::Int(p.joined_at_ms),
            Value::from(capabilities),
        ],
    )
}

pub fn set_participant(
    sql: &impl SqlExec,
    id: &ParticipationId,
    state: ParticipationState,
    upload: Option<&UploadId>,
) -> Result<(), StoreError> {
    sql.exec(
        "UPDATE participants SET state = ?, upload_id = ? WHERE id = ?",
        &[enc(&state)?, Value::from(upload), Value::from(id.as_str())],
    )
}

#[derive(Debug, Clone, PartialEq)]
pub struct UploadRecord {
    pub id: UploadId,
    pub participation_id: ParticipationId,
    pub device_id: DeviceId,
    pub state: UploadState,
    pub meta: UpdateMeta,
    pub parts: u32,
    pub created_at_ms: i64,
    /// When it was accepted (refused uploads keep none).
    pub completed_at_ms: Option<i64>,
    pub seq: Option<i64>,
    pub weight: Option<f64>,
    pub source: Option<UpdateSource>,
    pub reject: Option<(RejectReason, String)>,
    pub released: bool,
    pub stream: StreamProgress,
}

/// How far validation got while the upload's parts streamed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamProgress {
    /// Parts `0..parts` were validated in order.
    pub parts: u32,
    pub state: Option<Vec<u8>>,
    /// A part already validated was replaced: validation happens at `complete` instead.
    pub broken: bool,
}

const UPLOAD_COLUMNS: &str = "id, participation_id, device_id, state, meta, parts, created_at_ms, \
     seq, weight, source, reject_reason, reject_message, released, streamed_parts, stream_state, \
     stream_broken, completed_at_ms";

fn upload_of(r: &Row) -> Result<UploadRecord, StoreError> {
    let pid: String = r.get(1)?;
    let reject = match dec_opt::<RejectReason>(r, 10)? {
        Some(reason) => Some((reason, r.get::<Option<String>>(11)?.unwrap_or_default())),
        None => None,
    };
    Ok(UploadRecord {
        id: r.get(0)?,
        participation_id: ParticipationId::parse(&pid)
            .map_err(|_| StoreError::corrupt("participation id"))?,
        device_id: r.get(2)?,
        state: dec(r, 3)?,
        meta: dec(r, 4)?,
        parts: r.get(5)?,
        created_at_ms: r.get(6)?,
        seq: r.get(7)?,
        weight: r.get(8)?,
        source: dec_opt(r, 9)?,
        reject,
        released: r.get(12)?,
        stream: StreamProgress {
            parts: r.get(13)?,
            state: r.get(14)?,
            broken: r.get(15)?,
        },
        completed_at_ms: r.get(16)?,
    })
}

pub fn upload(sql: &impl SqlExec, id: &UploadId) -> Result<Option<UploadRecord>, StoreError> {
    sql.one(
        &format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?"),
        &vals![id],
    )?
    .map(|r| upload_of(&r))
    .transpose()
}

pub fn accepted_upload(sql: &impl SqlExec, seq: i64) -> Result<Option<UploadRecord>, StoreError> {
    sql.one(
        &format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE seq = ? AND state = ?"),
        &[Value::Int(seq), enc(&UploadState::Accepted)?],
    )?
    .map(|r| upload_of(&r))
    .transpose()
}

/// Uploads in `states`, oldest first.
pub fn uploads_in(
    sql: &impl SqlExec,
    states: &[UploadState],
) -> Result<Vec<UploadRecord>, StoreError> {
    let mut out = Vec::new();
    for s in states {
        for r in sql.query(
            &format!(
                "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE state = ? ORDER BY created_at_ms, id"
            ),
            &[enc(s)?],
        )? {
            out.push(upload_of(&r)?);
        }
    }
    Ok(out)
}

/// What a device's page needs of an upload: whose it was, how it ended and when, and why it
/// was refused. Only these columns, so reading every upload of a large round stays small.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadOutcome {
    pub participation_id: ParticipationId,
    pub state: UploadState,
    pub created_at_ms: i64,
    pub completed_at_ms: Option<i64>,
    pub reject: Option<(RejectReason, String)>,
}

/// Every upload's outcome, oldest first.
pub fn upload_outcomes(sql: &impl SqlExec) -> Result<Vec<UploadOutcome>, StoreError> {
    sql.query(
        "SELECT participation_id, state, created_at_ms, completed_at_ms, reject_reason, \
         reject_message FROM uploads ORDER BY created_at_ms, id",
        &[],
    )?
    .iter()
    .map(|r| {
        let pid: String = r.get(0)?;
        let reject = match dec_opt::<RejectReason>(r, 4)? {
            Some(reason) => Some((reason, r.get::<Option<String>>(5)?.unwrap_or_default())),
            None => None,
        };
        Ok(UploadOutcome {
            participation_id: ParticipationId::parse(&pid)
                .map_err(|_| StoreError::corrupt("participation id"))?,
            state: dec(r, 1)?,
            created_at_ms: r.get(2)?,
            completed_at_ms: r.get(3)?,
            reject,
        })
    })
    .collect()
}

pub fn insert_upload(sql: &impl SqlExec, u: &UploadRecord) -> Result<(), StoreError> {
    sql.exec(
        "INSERT INTO uploads (id, participation_id, device_id, state, meta, parts, created_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        &[
            Value::from(&u.id),
            Value::from(u.participation_id.as_str()),
            Value::from(&u.device_id),
            enc(&u.state)?,
            enc(&u.meta)?,
            Value::from(u.parts),
            Value::Int(u.created_at_ms),
        ],
    )
}

pub fn set_upload_state(
    sql: &impl SqlExec,
    id: &UploadId,
    state: UploadState,
) -> Result<(), StoreError> {
    sql.exec(
        "UPDATE uploads SET state = ? WHERE id = ?",
        &[enc(&state)?, Value::from(id)],
    )
}

pub fn set_upload_meta(
    sql: &impl SqlExec,
    id: &UploadId,
    meta: &UpdateMeta,
) -> Result<(), StoreError> {
    sql.exec(
        "UPDATE uploads SET meta = ? WHERE id = ?",
        &[enc(meta)?, Value::from(id)],
    )
}

pub fn reject_upload(
    sql: &impl SqlExec,
    id: &UploadId,
    reason: RejectReason,
    message: &str,
) -> Result<(), StoreError> {
    sql.exec(
        "UPDATE uploads SET state = ?, reject_reason = ?, reject_message = ? WHERE id = ?",
        &[
            enc(&UploadState::Rejected)?,
            enc(&reason)?,
            Value::from(message),
            Value::from(id),
        ],
    )
}

pub fn accept_upload(
    sql: &impl SqlExec,
    id: &UploadId,
    seq: i64,
    weight: f64,
    source: &UpdateSource,
    now_ms: i64,
) -> Result<(), StoreError> {
    sql.exec(
        "UPDATE uploads SET state = ?, seq = ?, weight = ?, source = ?, completed_at_ms = ? WHERE id = ?",
        &[
            enc(&UploadState::Accepted)?,
            Value::Int(seq),
            Value::Real(weight),
            enc(source)?,
            Value::Int(now_ms),
            Value::from(id),
        ],
    )
}

pub fn set_stream(
    sql: &impl SqlExec,
    id: &UploadId,
    stream: &StreamProgress,
) -> Result<(), StoreError> {
    sql.exec(
        "UPDATE uploads SET streamed_parts = ?, stream_state = ?, stream_broken = ? WHERE id = ?",
        &[
            Value::from(stream.parts),
            Value::from(stream.state.clone()),
            Value::from(stream.broken),
            Value::from(id),
        ],
    )
}

pub fn set_released(sql: &impl SqlExec, id: &UploadId) -> Result<(), StoreError> {
    sql.exec("UPDATE uploads SET released = 1 WHERE id = ?", &vals![id])
}

/// Uploads whose staged bytes are still kept.
pub fn unreleased(sql: &impl SqlExec) -> Result<Vec<UploadId>, StoreError> {
    sql.query("SELECT id FROM uploads WHERE released = 0 ORDER BY id", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Accepted uploads up to `seq` whose staged bytes are still kept.
pub fn releasable(sql: &impl SqlExec, through_seq: i64) -> Result<Vec<UploadId>, StoreError> {
    sql.query(
        "SELECT id FROM uploads WHERE state = ? AND released = 0 AND seq <= ? ORDER BY seq",
        &[enc(&UploadState::Accepted)?, Value::Int(through_seq)],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartRecord {
    pub part: u32,
    pub key: String,
    pub size: u64,
}

pub fn parts(sql: &impl SqlExec, upload: &UploadId) -> Result<Vec<PartRecord>, StoreError> {
    sql.query(
        "SELECT part, key, size FROM parts WHERE upload_id = ? ORDER BY part",
        &vals![upload],
    )?
    .iter()
    .map(|r| {
        Ok(PartRecord {
            part: r.get(0)?,
            key: r.get(1)?,
            size: r.get(2)?,
        })
    })
    .collect()
}

pub fn put_part(sql: &impl SqlExec, upload: &UploadId, p: &PartRecord) -> Result<(), StoreError> {
    sql.exec(
        "INSERT INTO parts (upload_id, part, key, size) VALUES (?, ?, ?, ?) \
         ON CONFLICT (upload_id, part) DO UPDATE SET key = excluded.key, size = excluded.size",
        &vals![upload, p.part, p.key.as_str(), p.size],
    )
}

/// The staged pieces of an upload, in part order (the file's byte order).
pub fn pieces(sql: &impl SqlExec, upload: &UploadId) -> Result<Vec<Piece>, StoreError> {
    Ok(parts(sql, upload)?
        .into_iter()
        .map(|p| Piece {
            key: p.key,
            size: p.size,
        })
        .collect())
}

pub fn is_revoked(sql: &impl SqlExec, device: &DeviceId) -> Result<bool, StoreError> {
    Ok(sql
        .one("SELECT 1 FROM revoked WHERE device_id = ?", &vals![device])?
        .is_some())
}

pub fn add_revoked(sql: &impl SqlExec, device: &DeviceId) -> Result<(), StoreError> {
    sql.exec(
        "INSERT OR IGNORE INTO revoked (device_id) VALUES (?)",
        &vals![device],
    )
}
