//! Devices in the control plane (list, tag, revoke) and the device heartbeat.

use edgeplane_core::ids::looks_like_id;
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;
use edgeplane_runtime::log;
use serde::{Deserialize, Serialize};

use super::common::{device, identifier, iso, query};
use crate::clients::round::RoundClient;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;
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

fn view(d: DeviceRow) -> serde_json::Value {
    serde_json::json!({
        "id": d.id,
        "device_identifier": d.device_identifier,
        "tags": serde_json::from_str::<serde_json::Value>(&d.tags).unwrap_or_default(),
        "created_at": iso(d.created_at_ms),
        "last_seen_at": d.last_seen_at_ms.map(iso),
        "revoked_at": d.revoked_at_ms.map(iso),
        "revoked_reason": d.revoked_reason,
        "heartbeat": d.heartbeat.and_then(|h| serde_json::from_str::<serde_json::Value>(&h).ok()),
        "heartbeat_at": d.heartbeat_at_ms.map(iso),
    })
}

async fn load(cx: &Cx<'_>) -> Result<DeviceRow, ApiError> {
    let id = cx.param("device")?;
    if !looks_like_id(id, "dev") {
        return Err(ApiError::not_found("device"));
    }
    cx.db()
        .first(
            &format!("SELECT {COLUMNS} FROM fl_devices WHERE id = ? AND org_id = ?"),
            args![id, &cx.org()?.org_id],
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
    let devices: Vec<_> = rows.into_iter().map(view).collect();
    respond::ok(&serde_json::json!({"devices": devices, "next_after": next}))
}

pub async fn get(cx: &mut Cx<'_>) -> HttpResult {
    let d = load(cx).await?;
    respond::ok(&serde_json::json!({"device": view(d)}))
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
    let org_id = cx.org()?.org_id.clone();
    let now = now_ms();
    let tags_json = serde_json::to_string(&tags).map_err(|_| ApiError::internal())?;
    let event = cx.rc.audit(
        &cx.principal,
        Some(&org_id),
        "device.updated",
        "device",
        &d.id,
        serde_json::json!({"tags": tags}),
    );
    cx.db()
        .commit_audited(
            vec![Stmt::new(
                "UPDATE fl_devices SET tags = ? WHERE id = ?",
                args![&tags_json, &d.id],
            )],
            vec![event],
            now,
        )
        .await?;
    let d = load(cx).await?;
    respond::ok(&serde_json::json!({"device": view(d)}))
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
    let stmts = vec![
        Stmt::new(
            "UPDATE fl_devices SET revoked_at_ms = ?, revoked_reason = ? WHERE id = ? AND revoked_at_ms IS NULL",
            args![now, &reason, &d.id],
        ),
        Stmt::new(
            "UPDATE fl_device_families SET revoked_at_ms = ?, revoked_reason = 'device_revoked' \
             WHERE device_id = ? AND revoked_at_ms IS NULL",
            args![now, &d.id],
        ),
    ];
    let event = cx.rc.audit(
        &cx.principal,
        Some(&org_id),
        "device.revoked",
        "device",
        &d.id,
        serde_json::json!({"device_identifier": d.device_identifier, "reason": reason}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;
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
    respond::ok(&serde_json::json!({"device": view(d)}))
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Heartbeat {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    battery_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    charging: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    network_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    storage_free_mb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    app_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sdk_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<String>,
}

fn short(s: &Option<String>, what: &str) -> Result<(), ApiError> {
    match s {
        Some(v) if v.is_empty() || v.len() > 64 || v.chars().any(char::is_control) => Err(
            ApiError::validation(format!("{what} must be 1-64 printable characters")),
        ),
        _ => Ok(()),
    }
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
    if body
        .battery_pct
        .is_some_and(|b| !(0.0..=100.0).contains(&b))
    {
        return Err(ApiError::validation(
            "battery_pct must be between 0 and 100",
        ));
    }
    if body
        .storage_free_mb
        .is_some_and(|s| !(s.is_finite() && s >= 0.0))
    {
        return Err(ApiError::validation(
            "storage_free_mb must be a non-negative number",
        ));
    }
    for (v, what) in [
        (&body.network_type, "network_type"),
        (&body.app_version, "app_version"),
        (&body.sdk_version, "sdk_version"),
        (&body.os_version, "os_version"),
        (&body.platform, "platform"),
    ] {
        short(v, what)?;
    }
    let now = now_ms();
    let json = serde_json::to_string(&body).map_err(|_| ApiError::internal())?;
    cx.db()
        .run_unaudited(
            "UPDATE fl_devices SET heartbeat = ?, heartbeat_at_ms = ?, last_seen_at_ms = ? WHERE id = ?",
            args![json, now, now, &dev.id],
        )
        .await?;
    respond::ok(&serde_json::json!({"device_id": dev.id, "received_at": iso(now)}))
}
