//! Helpers the federation handlers share: the calling device, timestamps in the wire format,
//! query parameters and round look-ups.

use chrono::{DateTime, SecondsFormat, Utc};
use edgeplane_core::fl::device_scope::DeviceScopes;
use edgeplane_core::ids::{DeviceId, RoundId};
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::Db;
use serde::Deserialize;

use crate::authn;
use crate::http::ctx::now_secs;
use crate::routes::Cx;

/// ISO 8601 in UTC with an explicit `+00:00` offset and milliseconds: the form every Octomil
/// SDK parses (Python `fromisoformat`, Swift with fractional seconds, Kotlin `OffsetDateTime`).
pub fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// The device calling a device route, with its own scopes.
pub struct DeviceCx {
    pub id: String,
    pub org_id: String,
    pub identifier: String,
    pub scopes: DeviceScopes,
}

pub fn device(cx: &Cx<'_>) -> Result<DeviceCx, ApiError> {
    let bearer = authn::bearer(&cx.req)?;
    let (claims, scopes) = authn::device::scopes_of(&cx.cfg, bearer.as_deref(), now_secs())?;
    Ok(DeviceCx {
        id: cx.principal.id.clone(),
        org_id: claims.org_id,
        identifier: claims.did,
        scopes,
    })
}

impl DeviceCx {
    pub fn require(&self, ok: bool, what: &str) -> Result<(), ApiError> {
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::InsufficientScope,
                format!("this device token does not allow {what}"),
            ))
        }
    }

    /// The device's id, typed (it came from a verified token, so it is well formed).
    pub fn device_id(&self) -> Result<DeviceId, ApiError> {
        self.id.parse().map_err(|_| ApiError::internal())
    }

    /// A `device_id` a device named in a request must be itself (its id or its identifier).
    pub fn is_me(&self, named: &str) -> bool {
        named == self.id || named == self.identifier
    }
}

pub fn query(cx: &Cx<'_>, name: &str) -> Result<Option<String>, ApiError> {
    let url = cx
        .req
        .url()
        .map_err(|_| ApiError::bad_request("invalid URL"))?;
    Ok(url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned()))
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

#[derive(Debug, Clone, Deserialize)]
pub struct RoundRow {
    pub id: String,
    pub org_id: String,
    pub model_id: String,
    pub base_version_id: String,
    pub base_version: i64,
    pub plan_id: String,
    pub state: String,
    pub target: i64,
    pub min_updates: i64,
    pub max_participants: i64,
    pub deadline_at_ms: i64,
    pub device_group_id: Option<String>,
    pub aggregation: String,
    pub plan: String,
    pub created_by: String,
    pub created_at_ms: i64,
    pub closed_at_ms: Option<i64>,
    pub published_version_id: Option<String>,
}

pub const ROUND_COLUMNS: &str = "r.id, r.org_id, r.model_id, r.base_version_id, v.version AS base_version, \
     r.plan_id, r.state, r.target, r.min_updates, r.max_participants, r.deadline_at_ms, r.device_group_id, \
     r.aggregation, r.plan, r.created_by, r.created_at_ms, r.closed_at_ms, r.published_version_id";

pub async fn round_in_org(db: &Db, round_id: &RoundId, org_id: &str) -> Result<RoundRow, ApiError> {
    db.first(
        &format!(
            "SELECT {ROUND_COLUMNS} FROM fl_rounds r JOIN fl_model_versions v ON v.id = r.base_version_id \
             WHERE r.id = ? AND r.org_id = ?"
        ),
        args![round_id.as_str(), org_id],
    )
    .await?
    .ok_or_else(|| ApiError::not_found("round"))
}

/// SQL (for `WHERE`; binds one parameter, the device id) true when that device may take part in a round `r` targeting a group:
/// explicit membership, or every tag of a tag group present on the device.
pub const ELIGIBLE: &str = "(r.device_group_id IS NULL OR EXISTS (SELECT 1 FROM fl_device_groups g \
     JOIN fl_devices d ON d.id = ? WHERE g.id = r.device_group_id AND ( \
       (g.tags IS NULL AND EXISTS (SELECT 1 FROM fl_device_group_members m WHERE m.group_id = g.id AND m.device_id = d.id)) \
       OR (g.tags IS NOT NULL AND NOT EXISTS (SELECT 1 FROM json_each(g.tags) t \
            WHERE t.value NOT IN (SELECT value FROM json_each(d.tags)))))))";
