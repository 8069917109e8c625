//! The audit log: `GET …/audit-events`, `GET …/audit-events/verify[?checkpoint=<note>]` and
//! `GET …/audit-events/export[?format=jsonl|csv&since=<RFC 3339>]`, and the export jobs that
//! write the same export to R2 (`POST …/audit-events/export-jobs`, `GET …/export-jobs/{job}`,
//! `GET /v1/audit-export-jobs/{job}/download?expires=&signature=`).

use edgeplane_core::access::audit_query::AuditQuery;
use edgeplane_core::audit::export::ExportQuery;
use edgeplane_core::{ApiError, ErrorCode};

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::http::signed_url::signed_query;
use crate::service::access::{audit, export_jobs};

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

pub async fn create_job(cx: &mut Cx<'_>) -> HttpResult {
    let body = cx.json().await?;
    respond::json(202, &export_jobs::create(cx, body).await?)
}

pub async fn get_job(cx: &mut Cx<'_>) -> HttpResult {
    let id = cx.id("job")?;
    respond::ok(&export_jobs::get(cx, &id).await?)
}

/// The link's `expires` and `signature`, each exactly once; a link without them is refused
/// like one with a bad signature (401), before anything is read.
pub async fn download_job(cx: &mut Cx<'_>) -> HttpResult {
    let id = cx.id("job")?;
    let link = signed_query(cx, "download link")?;
    export_jobs::download(cx, &id, link.expires, &link.signature).await
}
