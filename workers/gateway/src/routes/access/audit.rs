//! Reading the audit log and verifying its hash chain.

use edgeplane_core::access::audit_query::{AuditQuery, QueryArg};
use edgeplane_core::audit::{ChainVerifier, ChainedEvent};
use edgeplane_core::time::rfc3339_millis;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Val;
use serde_json::json;

use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;

const COLUMNS: &str = "id, chain, seq, org_id, actor_type, actor_id, action, resource_type, \
                       resource_id, ip, user_agent, request_id, metadata, created_at_ms, \
                       prev_hash, hash";

/// Events verified per D1 read: bounded memory however long the chain is.
const VERIFY_PAGE: i64 = 500;

fn view(e: ChainedEvent) -> serde_json::Value {
    let metadata: serde_json::Value =
        serde_json::from_str(&e.metadata).unwrap_or(serde_json::Value::Null);
    json!({
        "id": e.id,
        "seq": e.seq,
        "actor": {"type": e.actor_type, "id": e.actor_id},
        "action": e.action,
        "resource": {"type": e.resource_type, "id": e.resource_id},
        "ip": e.ip,
        "user_agent": e.user_agent,
        "request_id": e.request_id,
        "metadata": metadata,
        "created_at": rfc3339_millis(e.created_at_ms),
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    let q = AuditQuery::parse(cx.query()?)?;
    let (filters, qargs) = q.where_clause();
    let mut vals: Vec<Val> = args![&cx.org()?.org_id];
    vals.extend(qargs.into_iter().map(|a| match a {
        QueryArg::Text(s) => Val::Text(s),
        QueryArg::Int(i) => Val::Int(i),
    }));
    vals.push(Val::Int(q.limit + 1));
    let mut rows: Vec<ChainedEvent> = cx
        .db()
        .all(
            &format!(
                "SELECT {COLUMNS} FROM audit_events WHERE chain = ?{filters} ORDER BY seq DESC LIMIT ?"
            ),
            vals,
        )
        .await?;
    let next_cursor = if rows.len() as i64 > q.limit {
        rows.truncate(q.limit as usize);
        rows.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    respond::ok(&json!({
        "events": rows.into_iter().map(view).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    }))
}

/// Walks the org's whole chain in `seq` order, page by page, recomputing every link.
pub async fn verify(cx: &mut Cx<'_>) -> HttpResult {
    let org_id = cx.org()?.org_id.clone();
    let mut verifier = ChainVerifier::new();
    let mut after = 0i64;
    loop {
        let page: Vec<ChainedEvent> = cx
            .db()
            .all(
                &format!(
                    "SELECT {COLUMNS} FROM audit_events WHERE chain = ? AND seq > ? ORDER BY seq LIMIT ?"
                ),
                args![&org_id, after, VERIFY_PAGE],
            )
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let full = page.len() as i64 == VERIFY_PAGE;
        for e in &page {
            verifier.feed(e);
        }
        if verifier.is_broken() || !full {
            break;
        }
    }
    respond::ok(&json!({"chain": org_id, "report": verifier.finish()}))
}
