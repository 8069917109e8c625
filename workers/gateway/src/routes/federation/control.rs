//! The Octomil control contract for devices (`octomil.control.OctomilControl`): register,
//! assignments, desired state, sync and observed state. A device reads only its own state: the
//! `{device}` in the path must be the calling device (its id or identifier), anything else is
//! 404. What it should run is decided by `edgeplane_core::fl::rollout` from the deployments
//! whose groups select it; reports are bookkeeping (like heartbeats), not audited.
//!
//! A request reads nothing from D1 in the common case: the device's revocation state, tags,
//! groups and stored reports come from the isolate's cache of device facts (valid while the
//! org's device epoch stands, see `authn::device`), and the org's rollouts from the per-isolate
//! rollouts cache. Reports are written only where they differ from what this isolate last read
//! or wrote (or once a minute when nothing changed, to keep "last seen" fresh), so a fleet
//! polling with an unchanged inventory writes nothing.

use edgeplane_core::fl::control::{
    self, inventory_reports, DesiredStateRequest, ObservedStateRequest, RegisterRequest,
    Registration, Report, StoredReport, SyncRequest,
};
use edgeplane_core::fl::device_scope::DeviceScope;
use edgeplane_core::fl::rollout::desired_for_device;
use edgeplane_core::time::IsoMillis;
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;
use serde::Serialize;

use super::common::{device, query, DeviceCx};
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::service::federation::deployments::candidates_for_device;

/// The calling device, allowed to read models, and named by the path.
fn reader(cx: &Cx<'_>) -> Result<DeviceCx, ApiError> {
    let dev = device(cx)?;
    dev.require(
        dev.scopes.may_download_models(),
        "reading its desired state",
    )?;
    if !dev.is_me(cx.param("device")?) {
        return Err(ApiError::not_found("device"));
    }
    Ok(dev)
}

/// A `deviceId` in a body must name the caller too.
fn same_device(dev: &DeviceCx, named: Option<&str>) -> Result<(), ApiError> {
    match named {
        Some(n) if !dev.is_me(n) => Err(ApiError::not_found("device")),
        _ => Ok(()),
    }
}

/// `POST /api/v1/devices/register`: the device behind the token, by its identifier. Registering
/// is idempotent; the answer carries the id the other control routes take.
pub async fn register(cx: &mut Cx<'_>) -> HttpResult {
    let dev = device(cx)?;
    dev.require(
        dev.scopes.contains(DeviceScope::DevicesWrite),
        "registration",
    )?;
    let body: RegisterRequest = cx.json().await?;
    body.validate()?;
    if body.device_identifier != dev.identifier {
        return Err(ApiError::forbidden(
            "this token belongs to another device_identifier",
        ));
    }
    if body.org_id.as_deref().is_some_and(|o| o != dev.org_id) {
        return Err(ApiError::forbidden("this token belongs to another org"));
    }
    cx.db()
        .run_unaudited(
            "UPDATE fl_devices SET last_seen_at_ms = ? WHERE org_id = ? AND id = ?",
            args![now_ms(), &dev.org_id, &dev.id],
        )
        .await?;
    respond::ok(&Registration {
        id: dev.id.clone(),
        device_identifier: dev.identifier.clone(),
        org_id: dev.org_id.clone(),
        status: "active".into(),
        metadata: serde_json::Map::new(),
    })
}

async fn desired(cx: &Cx<'_>, dev: &DeviceCx) -> Result<control::DesiredState, ApiError> {
    let candidates = candidates_for_device(cx.db(), &dev.org_id, &dev.id, &dev.targets()?).await?;
    let chosen = desired_for_device(&dev.id, &candidates);
    Ok(control::desired_state(
        &dev.id,
        &chosen,
        &cx.cfg.issuer,
        now_ms(),
    ))
}

/// Records what the device reports about models of its org (others are ignored: a device may
/// run models this deployment does not manage). Returns how many were reported. Only reports
/// that differ from the stored ones are written (`control::reports_to_write`), and `last_seen`
/// at most once a minute unless something changed.
async fn record(cx: &Cx<'_>, dev: &DeviceCx, reports: &[Report]) -> Result<usize, ApiError> {
    let now = now_ms();
    let stored = dev.stored_reports()?;
    let changed = control::reports_to_write(&stored, reports, now);
    if changed.is_empty() && !control::last_seen_due(dev.session.facts.last_seen_at_ms, now) {
        return Ok(reports.len());
    }
    let mut stmts = Vec::with_capacity(changed.len() + 1);
    for r in &changed {
        stmts.push(Stmt::new(
            "INSERT INTO fl_device_models (org_id, device_id, model_id, installed_version, \
             active_version, status, last_error, reported_at_ms) \
             SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM fl_models WHERE id = ? AND org_id = ?) \
             ON CONFLICT (device_id, model_id) DO UPDATE SET installed_version = excluded.installed_version, \
             active_version = excluded.active_version, status = excluded.status, \
             last_error = excluded.last_error, reported_at_ms = excluded.reported_at_ms",
            args![
                &dev.org_id,
                &dev.id,
                &r.model_id,
                r.installed_version.clone(),
                r.active_version.clone(),
                r.status.as_str(),
                r.last_error.clone(),
                now,
                &r.model_id,
                &dev.org_id
            ],
        ));
    }
    stmts.push(Stmt::new(
        "UPDATE fl_devices SET last_seen_at_ms = ? WHERE org_id = ? AND id = ?",
        args![now, &dev.org_id, &dev.id],
    ));
    cx.db().batch_unaudited(stmts).await?;
    let after =
        StoredReport::after_writing(&stored, &changed, now).map_err(|_| ApiError::internal())?;
    dev.session.remember_written(after, now);
    Ok(reports.len())
}

pub async fn assignments(cx: &mut Cx<'_>) -> HttpResult {
    let dev = reader(cx)?;
    let known = query(cx, "config_version")?;
    let candidates = candidates_for_device(cx.db(), &dev.org_id, &dev.id, &dev.targets()?).await?;
    let chosen = desired_for_device(&dev.id, &candidates);
    respond::ok(&control::assignments(&chosen, known.as_deref()))
}

pub async fn get_desired_state(cx: &mut Cx<'_>) -> HttpResult {
    let dev = reader(cx)?;
    respond::ok(&desired(cx, &dev).await?)
}

pub async fn post_desired_state(cx: &mut Cx<'_>) -> HttpResult {
    let dev = reader(cx)?;
    let body: DesiredStateRequest = cx.json().await?;
    same_device(&dev, body.device_id.as_deref())?;
    let reports = inventory_reports(
        body.installed_models.as_deref(),
        body.active_versions.as_deref(),
    )?;
    if !reports.is_empty() {
        record(cx, &dev, &reports).await?;
    }
    respond::ok(&desired(cx, &dev).await?)
}

pub async fn sync(cx: &mut Cx<'_>) -> HttpResult {
    let dev = reader(cx)?;
    let body: SyncRequest = cx.json().await?;
    same_device(&dev, body.device_id.as_deref())?;
    let reports = inventory_reports(
        body.model_inventory.as_deref(),
        body.active_versions.as_deref(),
    )?;
    if !reports.is_empty() {
        record(cx, &dev, &reports).await?;
    }
    let state = desired(cx, &dev).await?;
    respond::ok(&control::sync_response(
        state,
        body.known_state_version.as_deref(),
        now_ms(),
    ))
}

#[derive(Serialize)]
struct ObservedAck {
    accepted: bool,
    device_id: String,
    models: usize,
    received_at: IsoMillis,
}

pub async fn observed_state(cx: &mut Cx<'_>) -> HttpResult {
    let dev = reader(cx)?;
    let body: ObservedStateRequest = cx.json().await?;
    same_device(&dev, body.device_id.as_deref())?;
    let reports = body.reports()?;
    let models = record(cx, &dev, &reports).await?;
    respond::ok(&ObservedAck {
        accepted: true,
        device_id: dev.id.clone(),
        models,
        received_at: IsoMillis(now_ms()),
    })
}
