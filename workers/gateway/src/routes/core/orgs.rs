//! Organizations (tenants): `GET /v1/orgs/{org}` and `PUT /v1/orgs/{org}/audit-retention`.

use edgeplane_core::audit::retention::RetentionDays;
use edgeplane_core::views::core::AuditRetentionView;

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::core;

pub async fn get(cx: &mut Cx<'_>) -> HttpResult {
    respond::ok(&core::get_org(cx).await?)
}

/// `{"audit_retention_days": 90}`: outside 30..=3650 is a validation error (422).
pub async fn set_audit_retention(cx: &mut Cx<'_>) -> HttpResult {
    let body: AuditRetentionView = cx.json().await?;
    let days = RetentionDays::new(body.audit_retention_days)?;
    respond::ok(&core::set_audit_retention(cx, days).await?)
}
