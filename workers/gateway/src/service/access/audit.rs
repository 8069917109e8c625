//! Reading the audit log and verifying its hash chain against its signed checkpoints.
//!
//! Both first ask the chain's sequencer to place every event committed so far, then read only
//! placed events: a reader sees its own writes, and always a chain prefix that verifies.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use edgeplane_core::access::audit_query::{AuditQuery, QueryArg};
use edgeplane_core::audit::checkpoint::MAX_NOTE_BYTES;
use edgeplane_core::audit::export::{self, ExportQuery};
use edgeplane_core::audit::retention;
use edgeplane_core::audit::sql::{self as audit_sql, EVENT_COLUMNS};
use edgeplane_core::audit::{AuditAction, ChainedEvent, Event};
use edgeplane_core::ids::{AuditEventId, TypedId};
use edgeplane_core::store::StoreError;
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::views::access::{AuditEventView, AuditEventsView, AuditVerifyView, TypedRef};
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::db::{Db, OrInternal, Stmt, Val};
use serde_json::json;
use worker::Response;

use crate::audit::{self, Latest};
use crate::config::Config;
use crate::cx::Cx;
use crate::http::log;

/// Events verified per D1 read: bounded memory however long the chain is.
const VERIFY_PAGE: i64 = 500;

fn corrupt(e: impl std::fmt::Display) -> ApiError {
    log::error("audit row", &e.to_string());
    ApiError::internal()
}

fn view(placed: ChainedEvent) -> Result<AuditEventView, ApiError> {
    let e = placed.event;
    Ok(AuditEventView {
        id: AuditEventId::parse(&e.id).map_err(corrupt)?,
        seq: placed.seq,
        actor: TypedRef {
            kind: e.actor_type,
            id: e.actor_id,
        },
        action: AuditAction::parse(&e.action).map_err(corrupt)?,
        resource: TypedRef {
            kind: e.resource_type,
            id: e.resource_id,
        },
        ip: e.ip,
        user_agent: e.user_agent,
        request_id: e.request_id,
        metadata: serde_json::from_str(&e.metadata).map_err(corrupt)?,
        created_at: rfc3339_millis(e.created_at_ms),
        prev_hash: placed.prev_hash,
        hash: placed.hash,
    })
}

/// A bound argument of the audit query.
fn val(a: QueryArg) -> Val {
    match a {
        QueryArg::Text(s) => Val::Text(s),
        QueryArg::Int(i) => Val::Int(i),
    }
}

fn events(rows: &[edgeplane_core::store::Row]) -> Result<Vec<ChainedEvent>, ApiError> {
    rows.iter()
        .map(audit_sql::event_from_row)
        .collect::<Result<_, StoreError>>()
        .map_err(corrupt)
}

/// The org's events, newest first, filtered, with the chain's newest checkpoint.
pub async fn list(cx: &Cx<'_>, q: AuditQuery) -> Result<AuditEventsView, ApiError> {
    let chain = cx.org()?.org_id.clone();
    audit::sync(cx.env, &chain).await;
    let (filters, qargs) = q.where_clause();
    let mut vals: Vec<Val> = vec![chain.as_str().into()];
    vals.extend(qargs.into_iter().map(val));
    vals.push(Val::Int(q.limit + 1));
    let rows = cx
        .db()
        .rows(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM audit_events WHERE chain = ?{filters} \
                 ORDER BY seq DESC LIMIT ?"
            ),
            vals,
        )
        .await?;
    let mut page = events(&rows)?;
    let next_cursor = if page.len() as i64 > q.limit {
        page.truncate(q.limit as usize);
        page.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    let checkpoint = audit::latest_checkpoint(cx, &chain).await?.view();
    Ok(AuditEventsView {
        events: page.into_iter().map(view).collect::<Result<_, _>>()?,
        next_cursor,
        checkpoint,
    })
}

/// Walks the org's whole chain in `seq` order, page by page, recomputing every link and
/// comparing it with every stored checkpoint, the newest one's signature verified — and with
/// `kept`, a checkpoint the caller saved earlier, if given. A chain cut short or rewritten at
/// its end fails against a checkpoint that covered the lost events.
///
/// A chain whose prefix retention pruned is verified from its signed anchor: the anchor's
/// signature is checked and the first kept event must link to it; a pruned chain whose anchor
/// is missing or forged fails with that reason.
pub async fn verify(cx: &Cx<'_>, kept: Option<&str>) -> Result<AuditVerifyView, ApiError> {
    let chain = cx.org()?.org_id.clone();
    if kept.is_some_and(|note| note.len() > MAX_NOTE_BYTES) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "checkpoint is too long",
        ));
    }
    audit::sync(cx.env, &chain).await;
    let key = audit::verifier(cx, &chain)?;
    let anchor = audit::anchor_note(cx.db(), &chain).await?;
    let mut verifier = retention::verifier_from(&key, anchor.as_deref());
    if let Some(note) = kept {
        let cp = key.open(note).map_err(|e| {
            ApiError::validation(format!("checkpoint is not one of this chain's: {e}"))
        })?;
        verifier.expect(edgeplane_core::audit::ChainHead {
            seq: cp.size as i64,
            hash: cp.head_hash_hex(),
        });
    }
    let latest = audit::latest_checkpoint(cx, &chain).await?;
    match &latest {
        Latest::Verified(_, head) => verifier.expect(head.clone()),
        Latest::Forged { size, error } => verifier.fail(
            *size,
            format!("the stored checkpoint at size {size} is not authentic: {error}"),
        ),
        Latest::None => {}
    }
    let mut after = verifier.next_seq() - 1;
    loop {
        let rows = cx
            .db()
            .rows(
                audit_sql::EVENTS_AFTER,
                vec![chain.as_str().into(), after.into(), VERIFY_PAGE.into()],
            )
            .await?;
        let page = events(&rows)?;
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        let stored = cx
            .db()
            .rows(
                audit_sql::CHECKPOINTS_IN,
                vec![chain.as_str().into(), after.into(), last.into()],
            )
            .await?;
        for r in &stored {
            verifier.expect(audit_sql::checkpoint_head_from_row(r).map_err(corrupt)?);
        }
        after = last;
        for e in &page {
            verifier.feed(e);
        }
        if verifier.is_broken() || (page.len() as i64) < VERIFY_PAGE {
            break;
        }
    }
    Ok(AuditVerifyView {
        chain,
        report: verifier.finish(),
        checkpoint: latest.view(),
    })
}

/// What an export covers, decided once at its start: the chain, the query, and the snapshot —
/// the newest checkpoint after a sync (its size is where the export stops) and the anchor of a
/// pruned prefix (whose size it starts after). The streaming export and the export jobs both
/// read through [`ExportPlan::page`], so a job's file holds the bytes the stream would send.
#[derive(Clone)]
pub struct ExportPlan {
    chain: String,
    pub format: export::Format,
    page_sql: String,
    filter_args: Vec<QueryArg>,
    /// The chain size the export stops at; `None` when the stored checkpoint is forged (all
    /// that is stored is exported, and the holder's verification fails on the checkpoint).
    pub size: Option<i64>,
    /// The signed checkpoint note at `size`.
    pub checkpoint: Option<String>,
    /// The signed anchor of the pruned prefix, sent as stored (a forged one fails the holder's
    /// verification on its signature).
    pub anchor: Option<String>,
    /// The seq the first page starts after.
    pub start: i64,
}

/// One page of an export: its bytes (the first page's start with the preamble) and where the
/// next page starts, `None` after the last.
pub struct ExportPage {
    pub bytes: Vec<u8>,
    pub events: usize,
    pub next_after: Option<i64>,
}

impl ExportPlan {
    /// Syncs `chain`'s sequencer and takes the snapshot the export of `q` covers.
    pub async fn take(
        env: &worker::Env,
        db: &Db,
        cfg: &Config,
        chain: &str,
        q: &ExportQuery,
    ) -> Result<Self, ApiError> {
        audit::sync(env, chain).await;
        let (size, checkpoint) = match audit::latest_checkpoint_in(db, cfg, chain).await? {
            Latest::Verified(view, head) => (Some(head.seq), Some(view.note)),
            Latest::None => (Some(0), None),
            Latest::Forged { .. } => (None, None),
        };
        let anchor = audit::anchor_note(db, chain).await?;
        let start = match &anchor {
            Some(note) => retention::verifier_from(&audit::verifier_for(cfg, chain)?, Some(note))
                .next_seq()
                .saturating_sub(1),
            None => 0,
        };
        let (page_sql, filter_args) = q.page_sql();
        Ok(Self {
            chain: chain.to_owned(),
            format: q.format,
            page_sql,
            filter_args,
            size,
            checkpoint,
            anchor,
            start,
        })
    }

    /// The page of events after `after` (one D1 read of [`export::PAGE`] events), encoded.
    pub async fn page(&self, db: &Db, after: i64) -> Result<ExportPage, ApiError> {
        let mut args: Vec<Val> = vec![self.chain.as_str().into()];
        args.extend([after.into(), self.size.unwrap_or(i64::MAX).into()]);
        args.extend(self.filter_args.iter().cloned().map(val));
        let rows = db.rows(&self.page_sql, args).await?;
        let page = events(&rows)?;
        let mut bytes = if after == self.start {
            export::preamble(self.format)
        } else {
            Vec::new()
        };
        for e in &page {
            bytes.extend_from_slice(export::line(self.format, e).as_bytes());
        }
        let next_after = match page.last() {
            Some(last) if page.len() as i64 == export::PAGE => Some(last.seq),
            _ => None,
        };
        Ok(ExportPage {
            bytes,
            events: page.len(),
            next_after,
        })
    }

    /// The export's headers: its format, the size it stops at, its checkpoint and anchor.
    pub fn set_headers(&self, h: &worker::Headers) {
        set_export_headers(
            h,
            self.format,
            self.size,
            self.checkpoint.as_deref(),
            self.anchor.as_deref(),
        );
    }
}

/// An export's headers, for the stream and for an export job's download alike: its format,
/// the size it stops at, its checkpoint and anchor (base64 notes).
pub fn set_export_headers(
    h: &worker::Headers,
    format: export::Format,
    size: Option<i64>,
    checkpoint: Option<&str>,
    anchor: Option<&str>,
) {
    let _ = h.set("content-type", format.content_type());
    if let Some(size) = size {
        let _ = h.set(export::SIZE_HEADER, &size.to_string());
    }
    if let Some(note) = checkpoint {
        let _ = h.set(export::CHECKPOINT_HEADER, &STANDARD.encode(note));
    }
    if let Some(note) = anchor {
        let _ = h.set(export::ANCHOR_HEADER, &STANDARD.encode(note));
    }
}

/// The org's chain as an export (`jsonl` or `csv`, see [`edgeplane_core::audit::export`]),
/// narrowed by the audit query's filters, streamed: one D1 read of [`export::PAGE`] events per
/// chunk, so memory stays bounded however long the chain is. The export is itself audited
/// (`audit.exported`, with its format and filters) before anything is read, so it appears in
/// the chain it exports. It stops at the size of the newest checkpoint after a sync, and that
/// checkpoint's signed note goes out as a header, so the export and its checkpoint agree.
pub async fn export(cx: &Cx<'_>, q: ExportQuery) -> Result<Response, ApiError> {
    let chain = cx.org()?.org_id.clone();
    let event = Event::new(AuditAction::AuditExported, "org", chain.as_str()).meta(json!({
        "format": q.format.name(),
        "filters": q.filters(),
    }));
    cx.commit(Vec::<Stmt>::new(), [event]).await?;
    let plan = ExportPlan::take(cx.env, cx.db(), &cx.cfg, &chain, &q).await?;
    let env = cx.env.clone();
    let headers = plan.clone();
    // State: the seq the next page starts after; `None` once the last page went out.
    let pages = futures_util::stream::unfold(Some(plan.start), move |state| {
        let env = env.clone();
        let plan = plan.clone();
        async move {
            let after = state?;
            // A fresh retry budget per page: a long export is many short reads.
            let db = match Db::from_env(&env) {
                Ok(db) => db,
                Err(_) => return Some((Err(stream_error("d1 binding")), None)),
            };
            match plan.page(&db, after).await {
                Ok(page) => Some((Ok(page.bytes), page.next_after)),
                Err(e) => Some((Err(stream_error(&e.message)), None)),
            }
        }
    });
    let mut resp = Response::from_stream(pages).or_internal("stream response")?;
    headers.set_headers(resp.headers_mut());
    Ok(resp)
}

fn stream_error(what: &str) -> worker::Error {
    log::error("audit export", what);
    worker::Error::RustError("audit export failed".into())
}
