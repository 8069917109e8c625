//! An org's devices as the control plane sees them: the listing, one device, and revocation
//! (every token family ends, live rounds drop its in-flight uploads, the act is audited). The
//! JSON routes and the console call these.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::fl::presence::LastSeen;
use edgeplane_core::fl::wire::DeviceRequest;
use edgeplane_core::ids::{DeviceId, RoundId};
use edgeplane_core::time::IsoMillis;
use edgeplane_core::views::federation::{Device, DeviceFilter, DeviceList, Heartbeat};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::OrgBatch;
use edgeplane_runtime::log;
use serde::Deserialize;
use serde_json::json;

use super::{corrupt, group_selects_device};
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
    cx.commit(batch, [event]).await?;
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
