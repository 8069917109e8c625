//! An org's devices as the control plane sees them: the listing, one device, its history (the
//! heartbeat timeline and the ended rounds it took part in, `fl::history`), and revocation
//! (every token family ends, live rounds drop its in-flight uploads, the act is audited). The
//! JSON routes and the console call these.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::fl::history::{self, ParticipationOutcome};
use edgeplane_core::fl::presence::LastSeen;
use edgeplane_core::fl::wire::{DeviceRequest, ParticipationId};
use edgeplane_core::fl::{RejectReason, RoundState};
use edgeplane_core::ids::{DeviceId, ModelId, RoundId};
use edgeplane_core::time::IsoMillis;
use edgeplane_core::views::federation::{
    Device, DeviceFilter, DeviceList, DeviceParticipation, Heartbeat, HeartbeatHour,
    HeartbeatTimeline, ParticipationList, Rejection,
};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::OrgBatch;
use edgeplane_runtime::log;
use serde::Deserialize;
use serde_json::json;

use super::{corrupt, group_selects_device};
use crate::authn::forget_device_facts;
use crate::clients::round::RoundClient;
use crate::cx::Cx;
use crate::http::ctx::now_ms;

#[derive(Deserialize)]
pub struct DeviceRow {
    pub id: String,
    pub device_identifier: String,
    tags: String,
    created_at_ms: i64,
    last_seen_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    revoked_reason: Option<String>,
    heartbeat: Option<String>,
    heartbeat_at_ms: Option<i64>,
}

const COLUMNS: &str =
    "id, device_identifier, tags, created_at_ms, last_seen_at_ms, revoked_at_ms, \
     revoked_reason, heartbeat, heartbeat_at_ms";

pub fn view(d: DeviceRow) -> Result<Device, ApiError> {
    Ok(Device {
        id: d.id.parse().map_err(|_| corrupt("device id"))?,
        device_identifier: d.device_identifier,
        tags: serde_json::from_str(&d.tags).map_err(|_| corrupt("device tags"))?,
        created_at: IsoMillis(d.created_at_ms),
        last_seen_at: d.last_seen_at_ms.map(IsoMillis),
        revoked_at: d.revoked_at_ms.map(IsoMillis),
        revoked_reason: d.revoked_reason,
        heartbeat: d
            .heartbeat
            .map(|h| serde_json::from_str::<Heartbeat>(&h).map_err(|_| corrupt("heartbeat")))
            .transpose()?,
        heartbeat_at: d.heartbeat_at_ms.map(IsoMillis),
    })
}

/// Device `id` of the org `cx` acts in (another org's: 404).
pub async fn load(cx: &Cx<'_>, id: &DeviceId) -> Result<DeviceRow, ApiError> {
    cx.db()
        .first(
            &format!("SELECT {COLUMNS} FROM fl_devices WHERE id = ? AND org_id = ?"),
            args![id.as_str(), &cx.org()?.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("device"))
}

pub async fn get(cx: &Cx<'_>, id: &DeviceId) -> Result<Device, ApiError> {
    view(load(cx, id).await?)
}

#[derive(Deserialize)]
struct HourRow {
    hour_ms: i64,
    count: i64,
    last_heartbeat: String,
    last_at_ms: i64,
}

/// The device's heartbeats per hour over the retention window (`fl::history`): at most 168 rows.
pub async fn heartbeats(cx: &Cx<'_>, id: &DeviceId) -> Result<HeartbeatTimeline, ApiError> {
    let d = load(cx, id).await?;
    let now = now_ms();
    let rows: Vec<HourRow> = cx
        .db()
        .all(
            "SELECT hour_ms, count, last_heartbeat, last_at_ms FROM fl_heartbeat_hours \
             WHERE org_id = ? AND device_id = ? AND hour_ms >= ? ORDER BY hour_ms LIMIT ?",
            args![
                &cx.org()?.org_id,
                &d.id,
                history::window_start(now),
                history::RETENTION_HOURS
            ],
        )
        .await?;
    let hours = rows
        .into_iter()
        .map(|r| {
            Ok(HeartbeatHour {
                hour: IsoMillis(r.hour_ms),
                count: u64::try_from(r.count).map_err(|_| corrupt("heartbeat count"))?,
                last_at: IsoMillis(r.last_at_ms),
                last: serde_json::from_str(&r.last_heartbeat).map_err(|_| corrupt("heartbeat"))?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(history::timeline(id.clone(), hours, now))
}

#[derive(Deserialize)]
struct ParticipationRow {
    round_id: RoundId,
    model_id: ModelId,
    round_state: RoundState,
    participation_id: ParticipationId,
    outcome: ParticipationOutcome,
    joined_at_ms: i64,
    accepted_at_ms: Option<i64>,
    rejected_updates: i64,
    reject_reason: Option<RejectReason>,
    reject_message: Option<String>,
    rejected_at_ms: Option<i64>,
}

impl ParticipationRow {
    fn rejection(&self) -> Option<Rejection> {
        self.reject_reason.map(|reason| Rejection {
            round_id: self.round_id.clone(),
            reason,
            message: self.reject_message.clone().unwrap_or_default(),
            at: IsoMillis(self.rejected_at_ms.unwrap_or(self.joined_at_ms)),
        })
    }

    fn view(self) -> Result<DeviceParticipation, ApiError> {
        Ok(DeviceParticipation {
            last_rejection: self.rejection(),
            rejected_updates: u32::try_from(self.rejected_updates)
                .map_err(|_| corrupt("rejected updates"))?,
            round_id: self.round_id,
            model_id: self.model_id,
            round_state: self.round_state,
            participation_id: self.participation_id,
            outcome: self.outcome,
            joined_at: IsoMillis(self.joined_at_ms),
            accepted_at: self.accepted_at_ms.map(IsoMillis),
        })
    }
}

const PARTICIPATION_COLUMNS: &str = "p.round_id, r.model_id, r.state AS round_state, \
     p.participation_id, p.outcome, p.joined_at_ms, p.accepted_at_ms, p.rejected_updates, \
     p.reject_reason, p.reject_message, p.rejected_at_ms \
     FROM fl_participations p JOIN fl_rounds r ON r.id = p.round_id";

/// Most participations one page holds.
pub const MAX_PARTICIPATIONS_PAGE: u32 = 100;

/// A page of the ended rounds the device took part in, newest first, older than `before` (none:
/// from the newest); `limit` is clamped to 1..=100. With the device's last refused update in
/// any ended round, whatever the page.
pub async fn participations(
    cx: &Cx<'_>,
    id: &DeviceId,
    before: Option<&RoundId>,
    limit: u32,
) -> Result<ParticipationList, ApiError> {
    let d = load(cx, id).await?;
    let org = &cx.org()?.org_id;
    let limit = limit.clamp(1, MAX_PARTICIPATIONS_PAGE);
    let before = before.map(|b| b.as_str().to_owned());
    let mut rows: Vec<ParticipationRow> = cx
        .db()
        .all(
            &format!(
                "SELECT {PARTICIPATION_COLUMNS} WHERE p.org_id = ? AND p.device_id = ? \
                 AND (? IS NULL OR p.round_id < ?) ORDER BY p.round_id DESC LIMIT ?"
            ),
            args![org, &d.id, before.clone(), before, limit + 1],
        )
        .await?;
    let next_before = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.round_id.clone())
    } else {
        None
    };
    let last: Option<ParticipationRow> = cx
        .db()
        .first(
            &format!(
                "SELECT {PARTICIPATION_COLUMNS} WHERE p.org_id = ? AND p.device_id = ? \
                 AND p.reject_reason IS NOT NULL ORDER BY p.rejected_at_ms DESC, p.round_id DESC LIMIT 1"
            ),
            args![org, &d.id],
        )
        .await?;
    Ok(ParticipationList {
        participations: rows
            .into_iter()
            .map(ParticipationRow::view)
            .collect::<Result<_, _>>()?,
        next_before,
        last_rejection: last.and_then(|r| r.rejection()),
    })
}

/// The device list's filter (`DeviceFilter`), each condition off when its parameter is null.
/// Binds the group id twice, the platform twice, and the last-seen window.
const FILTERED: &str = concat!(
    "(? IS NULL OR EXISTS (SELECT 1 FROM fl_device_groups g WHERE g.id = ? AND g.org_id = d.org_id AND ",
    group_selects_device!(),
    ")) AND (? IS NULL OR json_extract(d.heartbeat, '$.platform') = ?) \
     AND coalesce(d.heartbeat_at_ms, -1) >= ? AND coalesce(d.heartbeat_at_ms, -1) < ?"
);

/// A page of the org's devices in id order that pass `filter`, after `after` (empty: from the
/// start); `limit` is clamped to 1..=500.
pub async fn list(
    cx: &Cx<'_>,
    filter: &DeviceFilter,
    after: &str,
    limit: u32,
) -> Result<DeviceList, ApiError> {
    let limit = limit.clamp(1, 500);
    let group = filter.group.as_ref().map(|g| g.as_str().to_owned());
    let (seen_from, seen_before) = match filter.last_seen {
        Some(c) => c.window(now_ms()),
        None => LastSeen::ANY,
    };
    let rows: Vec<DeviceRow> = cx
        .db()
        .all(
            &format!(
                "SELECT {COLUMNS} FROM fl_devices d WHERE d.org_id = ? AND d.id > ? AND {FILTERED} \
                 ORDER BY d.id LIMIT ?"
            ),
            args![
                &cx.org()?.org_id,
                after,
                group.clone(),
                group,
                filter.platform.clone(),
                filter.platform.clone(),
                seen_from,
                seen_before,
                limit
            ],
        )
        .await?;
    let next = if rows.len() as u32 == limit {
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(DeviceList {
        devices: rows.into_iter().map(view).collect::<Result<_, _>>()?,
        next_after: next
            .map(|n| n.parse())
            .transpose()
            .map_err(|_| corrupt("device id"))?,
    })
}

#[derive(Deserialize)]
struct LiveRound {
    id: RoundId,
}

/// Admin revocation: the device's every token family ends now (its next request is 401), its
/// in-flight uploads are rejected in every live round, and the act is audited.
pub async fn revoke(cx: &Cx<'_>, id: &DeviceId, reason: Option<&str>) -> Result<Device, ApiError> {
    let reason: String = reason
        .unwrap_or("revoked by an administrator")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let d = load(cx, id).await?;
    if d.revoked_at_ms.is_some() {
        return Err(ApiError::conflict("this device is already revoked"));
    }
    let org_id = cx.org()?.org_id.clone();
    let now = now_ms();
    let batch = OrgBatch::new(&org_id)
        .update(
            "fl_devices",
            "revoked_at_ms = ?, revoked_reason = ?",
            args![now, &reason],
            "id = ? AND revoked_at_ms IS NULL",
            args![&d.id],
        )
        .update(
            "fl_device_families",
            "revoked_at_ms = ?, revoked_reason = 'device_revoked'",
            args![now],
            "device_id = ? AND revoked_at_ms IS NULL",
            args![&d.id],
        );
    let event = Event::new(AuditAction::DeviceRevoked, "device", &d.id)
        .meta(json!({"device_identifier": d.device_identifier, "reason": reason}));
    let committed = cx.commit(batch, [event]).await;
    forget_device_facts(&org_id);
    committed?;
    // Live rounds drop the device's in-flight uploads. D1 already refuses its tokens, so a round
    // that misses this message still refuses its parts (the part route re-checks the device).
    let rounds: Vec<LiveRound> = cx
        .db()
        .all(
            "SELECT id FROM fl_rounds WHERE org_id = ? AND state IN ('open', 'collecting', 'aggregating')",
            args![&org_id],
        )
        .await?;
    for r in rounds {
        let req = DeviceRequest {
            device_id: id.clone(),
        };
        let done = match RoundClient::for_round(cx.env, &r.id) {
            Ok(c) => c.revoke_device(&req).await,
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            log::warn("revoke device in round", &e.message);
        }
    }
    get(cx, id).await
}

const MAX_TAGS: usize = 32;

/// A device's tags (or a tag group's): at most 32 identifiers.
pub fn validate_tags(tags: &[String]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::validation(format!("at most {MAX_TAGS} tags")));
    }
    for t in tags {
        identifier(t, "each tag")?;
    }
    Ok(())
}

/// Identifiers chosen by customers and devices: 1–128 of `A-Z a-z 0-9 . _ : -`.
pub fn identifier(s: &str, what: &str) -> Result<(), ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "{what} must be 1-128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'"
        )))
    }
}
