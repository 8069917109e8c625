//! The audit log's pages: the list (filters, page size and cursor in the URL; the chain's
//! verification beside it), one event (the list's own query at `cursor = seq + 1, limit = 1`)
//! and the export download (the JSON route's streamed response, as an attachment).

use edgeplane_core::access::audit_query::AuditQuery;
use edgeplane_core::audit::export::ExportQuery;
use edgeplane_core::audit::retention::RetentionDays;
use edgeplane_core::auth::{authorize, Action};
use edgeplane_core::console::pages::{self, AuditFilters, RetentionSetting};
use edgeplane_core::http::Method::{Get, Post};
use edgeplane_core::ApiError;
use futures_util::future::try_join4;

use super::page::{membership, not_found, org_page, render, Answer, Page};
use super::{route, ConsoleRoute, Gate};
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::service::access::audit;
use crate::service::core;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    Audit,
    AuditEvent,
    ExportAudit,
    SetRetention,
}

const fn r(id: Id) -> super::Id {
    super::Id::Audit(id)
}

pub const ROUTES: &[ConsoleRoute] = &[
    route(
        r(Id::Audit),
        Get,
        "/orgs/{org}/audit",
        Gate::Org(Action::ReadAudit),
    ),
    route(
        r(Id::AuditEvent),
        Get,
        "/orgs/{org}/audit/events/{seq}",
        Gate::Org(Action::ReadAudit),
    ),
    route(
        r(Id::ExportAudit),
        Get,
        "/orgs/{org}/audit/export",
        Gate::Org(Action::ReadAudit),
    ),
    // Owners only, as `PUT /v1/orgs/{org}/audit-retention`.
    route(
        r(Id::SetRetention),
        Post,
        "/orgs/{org}/audit/retention",
        Gate::Org(Action::ManageAuditRetention),
    ),
];

pub async fn handle(id: Id, cx: &mut Cx<'_>, page: &mut Page) -> Result<Answer, ApiError> {
    match id {
        Id::Audit => {
            let filters = AuditFilters::from_query(cx.query()?)?;
            let q = AuditQuery::parse(filters.query(now_ms(), true))?;
            let (m, events, verified, org) = try_join4(
                membership(cx),
                audit::list(cx, q),
                audit::verify(cx, None),
                core::get_org(cx),
            )
            .await?;
            let retention = RetentionSetting {
                days: org.org.audit_retention_days,
                can_change: authorize(cx.org()?, Action::ManageAuditRetention).is_ok(),
            };
            render(pages::audit(
                &page.chrome("Audit log", Some(&m)),
                &m.org.slug,
                &filters,
                &events,
                &verified,
                retention,
            ))
        }
        Id::AuditEvent => {
            // The event at `seq`: the list's own query, one event below `seq + 1`.
            let seq: i64 = cx
                .param("seq")?
                .parse()
                .ok()
                .filter(|s| *s > 0 && *s < i64::MAX)
                .ok_or_else(not_found)?;
            let m = membership(cx).await?;
            let q = AuditQuery::parse(vec![
                ("cursor".into(), (seq + 1).to_string()),
                ("limit".into(), "1".into()),
            ])?;
            let event = audit::list(cx, q)
                .await?
                .events
                .into_iter()
                .find(|e| e.seq == seq)
                .ok_or_else(|| ApiError::not_found("audit event"))?;
            let title = format!("Audit event {seq}");
            render(pages::audit_event(
                &page.chrome(&title, Some(&m)),
                &m.org.slug,
                &event,
            ))
        }
        Id::ExportAudit => {
            // The page's filters, plus the export's format, parsed by the JSON route's code.
            let (format, rest): (Vec<_>, Vec<_>) =
                cx.query()?.into_iter().partition(|(k, _)| k == "format");
            let filters = AuditFilters::from_query(rest)?;
            let mut pairs = filters.query(now_ms(), false);
            pairs.extend(format);
            let q = ExportQuery::parse(pairs)?;
            let ext = q.format.name();
            let mut resp = audit::export(cx, q).await?;
            let file = format!("audit-{}.{ext}", cx.param("org")?);
            let _ = resp.headers_mut().set(
                "content-disposition",
                &format!("attachment; filename=\"{file}\""),
            );
            Ok(Answer::Download(resp))
        }
        Id::SetRetention => {
            // Parsed and bounded by the JSON route's own code.
            let days = RetentionDays::new(page.number("days")?)?;
            core::set_audit_retention(cx, days).await?;
            org_page(cx, "/audit")
        }
    }
}
