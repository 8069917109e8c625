//! The audit log: `GET …/audit-events`, `GET …/audit-events/verify[?checkpoint=<note>]` and
//! `GET …/audit-events/export[?format=jsonl|csv&since=<RFC 3339>]`.

use edgeplane_core::access::audit_query::AuditQuery;
use edgeplane_core::audit::export::ExportQuery;
use edgeplane_core::{ApiError, ErrorCode};

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::access::audit;

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    let q = AuditQuery::parse(cx.query()?)?;
    respond::ok(&audit::list(cx, q).await?)
}

pub async fn verify(cx: &mut Cx<'_>) -> HttpResult {
    let mut kept = None;
    for (k, v) in cx.query()? {
        match k.as_str() {
            "checkpoint" if kept.is_none() => kept = Some(v),
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    "the only query parameter is checkpoint (a signed note), given once",
                ))
            }
        }
    }
    respond::ok(&audit::verify(cx, kept.as_deref()).await?)
}

pub async fn export(cx: &mut Cx<'_>) -> HttpResult {
    let q = ExportQuery::parse(cx.query()?)?;
    audit::export(cx, q).await
}
