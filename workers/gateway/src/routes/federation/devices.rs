//! Devices in the control plane (list, tag, revoke) and the device heartbeat.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::fl::history::HeartbeatHourRow;
use edgeplane_core::ids::DeviceId;
use edgeplane_core::time::IsoMillis;
use edgeplane_core::views::federation::{
    DeviceBody, DeviceFilter, Heartbeat, HeartbeatAck, ParticipationPage,
};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::OrgBatch;
use serde::Deserialize;
use serde_json::json;

use super::common::{device, query};
use crate::authn::forget_device_facts;
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::service::federation::devices::{self, validate_tags};

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
        .unwrap_or(100);
    let url = cx
        .req
        .url()
        .map_err(|_| ApiError::bad_request("invalid URL"))?;
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let filter = DeviceFilter::from_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|m| ApiError::new(edgeplane_core::ErrorCode::InvalidQuery, m))?;
    respond::ok(&devices::list(cx, &filter, &after, limit).await?)
}

pub async fn get(cx: &mut Cx<'_>) -> HttpResult {
    let id: DeviceId = cx.id("device")?;
    respond::ok(&DeviceBody {
        device: devices::get(cx, &id).await?,
    })
}

/// `GET …/devices/{device}/heartbeats`: the heartbeat timeline (`fl::history`).
pub async fn heartbeats(cx: &mut Cx<'_>) -> HttpResult {
    let id: DeviceId = cx.id("device")?;
    respond::ok(&devices::heartbeats(cx, &id).await?)
}

/// `GET …/devices/{device}/participations?before=&limit=`: ended rounds, newest first.
pub async fn participations(cx: &mut Cx<'_>) -> HttpResult {
    let id: DeviceId = cx.id("device")?;
    let page =
        ParticipationPage::from_query(cx.query()?.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|m| ApiError::new(edgeplane_core::ErrorCode::InvalidQuery, m))?;
    respond::ok(&devices::participations(cx, &id, page.before.as_ref(), page.limit).await?)
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
    let id: DeviceId = cx.id("device")?;
    let d = devices::load(cx, &id).await?;
    let tags_json = serde_json::to_string(&tags).map_err(|_| ApiError::internal())?;
    let batch = OrgBatch::new(&cx.org()?.org_id).update(
        "fl_devices",
        "tags = ?",
        args![&tags_json],
        "id = ?",
        args![&d.id],
    );
    let event = Event::new(AuditAction::DeviceUpdated, "device", &d.id).meta(json!({"tags": tags}));
    let committed = cx.commit(batch, [event]).await;
    forget_device_facts(&cx.org()?.org_id);
    committed?;
    respond::ok(&DeviceBody {
        device: devices::get(cx, &id).await?,
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeDevice {
    #[serde(default)]
    reason: Option<String>,
}

/// Admin revocation (`service::federation::devices::revoke`).
pub async fn revoke(cx: &mut Cx<'_>) -> HttpResult {
    let body: RevokeDevice = cx.json_or_default().await?;
    let id: DeviceId = cx.id("device")?;
    respond::ok(&DeviceBody {
        device: devices::revoke(cx, &id, body.reason.as_deref()).await?,
    })
}

/// Device telemetry: the latest values kept on the device, and counted in the hour's row of its
/// timeline (`fl::history`), in one batch. Bookkeeping, like `last_used_at`: it is not an
/// audited action, or every phone would write to the audit chain every minute.
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
    let writes = OrgBatch::new(&dev.org_id)
        .update(
            "fl_devices",
            "heartbeat = ?, heartbeat_at_ms = ?, last_seen_at_ms = ?",
            args![&json, now, now],
            "id = ?",
            args![&dev.id],
        )
        .upsert(
            HeartbeatHourRow::TABLE,
            HeartbeatHourRow::COLUMNS,
            HeartbeatHourRow::values(&dev.id, &json, now),
            HeartbeatHourRow::KEY,
            HeartbeatHourRow::ON_CONFLICT,
        );
    cx.db().batch_unaudited(writes.into_stmts()).await?;
    respond::ok(&HeartbeatAck {
        device_id: dev.device_id()?,
        received_at: IsoMillis(now),
    })
}
