//! Devices in the control plane (list, tag, revoke) and the device heartbeat.

use crate::service::federation::corrupt;
use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::time::IsoMillis;
use edgeplane_core::views::federation::{Device, DeviceBody, DeviceList, Heartbeat, HeartbeatAck};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::OrgBatch;
use edgeplane_runtime::log;
use serde::Deserialize;
use serde_json::json;

use super::common::{device, identifier, query};
use crate::clients::round::RoundClient;
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use edgeplane_core::fl::wire::DeviceRequest;
use edgeplane_core::ids::DeviceId;

const MAX_TAGS: usize = 32;

#[derive(Deserialize)]
struct DeviceRow {
    id: String,
    device_identifier: String,
    tags: String,
    created_at_ms: i64,
    last_seen_at_ms: Option<i64>,
    revoked_at_ms: Option<i64>,
    revoked_reason: Option<String>,
    heartbeat: Option<String>,
    heartbeat_at_ms: Option<i64>,
}

const COLUMNS: &str =
    "id, device_identifier, tags, created_at_ms, last_seen_at_ms, revoked_at_ms, \
     revoked_reason, heartbeat, heartbeat_at_ms";

fn view(d: DeviceRow) -> Result<Device, ApiError> {
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

async fn load(cx: &Cx<'_>) -> Result<DeviceRow, ApiError> {
    let id: DeviceId = cx.id("device")?;
    cx.db()
        .first(
            &format!("SELECT {COLUMNS} FROM fl_devices WHERE id = ? AND org_id = ?"),
            args![id.as_str(), &cx.org()?.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("device"))
}

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    let after = query(cx, "after")?.unwrap_or_default();
    let limit = query(cx, "limit")?
        .map(|l| {
            l.parse::<u32>().map_err(|_| {
                ApiError::new(
                    edgeplane_core::ErrorCode::InvalidQuery,
                    "limit must be a number",
                )
            })
        })
        .transpose()?
        .unwrap_or(100)
        .clamp(1, 500);
    let rows: Vec<DeviceRow> = cx
        .db()
        .all(
            &format!(
                "SELECT {COLUMNS} FROM fl_devices WHERE org_id = ? AND id > ? ORDER BY id LIMIT ?"
            ),
            args![&cx.org()?.org_id, after, limit],
        )
        .await?;
    let next = if rows.len() as u32 == limit {
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    respond::ok(&DeviceList {
        devices: rows.into_iter().map(view).collect::<Result<_, _>>()?,
        next_after: next
            .map(|n| n.parse())
            .transpose()
            .map_err(|_| corrupt("device id"))?,
    })
}

pub async fn get(cx: &mut Cx<'_>) -> HttpResult {
    let d = load(cx).await?;
    respond::ok(&DeviceBody { device: view(d)? })
}

pub fn validate_tags(tags: &[String]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::validation(format!("at most {MAX_TAGS} tags")));
    }
    for t in tags {
        identifier(t, "each tag")?;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateDevice {
    tags: Vec<String>,
}

pub async fn update(cx: &mut Cx<'_>) -> HttpResult {
    let body: UpdateDevice = cx.json().await?;
    validate_tags(&body.tags)?;
    let mut tags = body.tags;
    tags.sort();
    tags.dedup();
    let d = load(cx).await?;
    let tags_json = serde_json::to_string(&tags).map_err(|_| ApiError::internal())?;
    let batch = OrgBatch::new(&cx.org()?.org_id).update(
        "fl_devices",
        "tags = ?",
        args![&tags_json],
        "id = ?",
        args![&d.id],
    );
    let event = Event::new(AuditAction::DeviceUpdated, "device", &d.id).meta(json!({"tags": tags}));
    cx.commit(batch, [event]).await?;
    let d = load(cx).await?;
    respond::ok(&DeviceBody { device: view(d)? })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeDevice {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct LiveRound {
    id: edgeplane_core::ids::RoundId,
}

/// Admin revocation: the device's every token family ends now (its next request is 401), its
/// in-flight uploads are rejected in every live round, and the act is audited.
pub async fn revoke(cx: &mut Cx<'_>) -> HttpResult {
    let body: RevokeDevice = cx.json_or_default().await?;
    let reason: String = body
        .reason
        .unwrap_or_else(|| "revoked by an administrator".into())
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let d = load(cx).await?;
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
    let device_id: DeviceId = d.id.parse().map_err(|_| ApiError::internal())?;
    for r in rounds {
        let req = DeviceRequest {
            device_id: device_id.clone(),
        };
        let done = match RoundClient::for_round(cx.env, &r.id) {
            Ok(c) => c.revoke_device(&req).await,
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            log::warn("revoke device in round", &e.message);
        }
    }
    let d = load(cx).await?;
    respond::ok(&DeviceBody { device: view(d)? })
}

/// Device telemetry (latest values kept on the device). Bookkeeping, like `last_used_at`: it is
/// not an audited action, or every phone would write to the audit chain every minute.
pub async fn heartbeat(cx: &mut Cx<'_>) -> HttpResult {
    let dev = device(cx)?;
    dev.require(dev.scopes.may_heartbeat(), "heartbeats")?;
    let named = cx.param("device")?.to_owned();
    if !dev.is_me(&named) {
        return Err(ApiError::not_found("device"));
    }
    let body: Heartbeat = cx.json().await?;
    body.validate()?;
    let now = now_ms();
    let json = serde_json::to_string(&body).map_err(|_| ApiError::internal())?;
    cx.db()
        .run_unaudited(
            "UPDATE fl_devices SET heartbeat = ?, heartbeat_at_ms = ?, last_seen_at_ms = ? \
             WHERE org_id = ? AND id = ?",
            args![json, now, now, &dev.org_id, &dev.id],
        )
        .await?;
    respond::ok(&HeartbeatAck {
        device_id: dev.device_id()?,
        received_at: IsoMillis(now),
    })
}
