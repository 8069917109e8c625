//! The audit log's runtime half, shared by both workers: how a change reaches its chain's
//! `AuditSequencer` (a Durable Object class of the gateway, bound as `AUDIT_SEQUENCER` in both
//! workers), and the one mutation path for code that serves no request.
//!
//! ```text
//! Cx::commit (gateway request)         -> Db::commit -> poke(chain)      after the answer
//! commit_with_facts (DO, queue worker) -> Db::commit -> poke_now(chain)  awaited
//! audit read, cron                     -> sync(chain)                    waits for a run
//! ```
//!
//! A lost poke costs only latency: the next poke, an audit read or cron places the events.

use edgeplane_core::audit::{Event, Facts};
use worker::{Context, Env, Method, Request, RequestInit, Stub};

use crate::clock::now_ms;
use crate::db::{Db, DbError, Writes};
use crate::log;

fn sequencer_request(env: &Env, chain: &str, action: &str) -> worker::Result<(Stub, Request)> {
    let stub = env.durable_object("AUDIT_SEQUENCER")?.get_by_name(chain)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post);
    let req = Request::new_with_init(
        &format!("https://audit-sequencer/{action}?chain={chain}"),
        &init,
    )?;
    Ok((stub, req))
}

/// Asks `chain`'s sequencer to place what is pending, after the response is sent.
pub fn poke(env: &Env, ctx: &Context, chain: &str) {
    let Ok((stub, req)) = sequencer_request(env, chain, "poke") else {
        log::warn("audit poke", "no sequencer binding");
        return;
    };
    ctx.wait_until(async move {
        if let Err(e) = stub.fetch_with_request(req).await {
            log::warn("audit poke", &e.to_string());
        }
    });
}

/// [`poke`], awaited: for callers with no request context to outlive (a Durable Object, the
/// queue consumer). Returns at once if the sequencer is already running (it goes around again).
pub async fn poke_now(env: &Env, chain: &str) {
    let result = match sequencer_request(env, chain, "poke") {
        Ok((stub, req)) => stub.fetch_with_request(req).await.map(|r| r.status_code()),
        Err(e) => Err(e),
    };
    match result {
        Ok(200..=299) => {}
        Ok(status) => log::warn("audit poke", &format!("sequencer answered {status}")),
        Err(e) => log::warn("audit poke", &e.to_string()),
    }
}

/// Waits until `chain`'s sequencer has placed every event committed before this call, so a
/// reader sees a chain that includes its own writes. Failure is logged, not fatal: the reader
/// then sees the chain as placed so far, which is still consistent.
pub async fn sync(env: &Env, chain: &str) {
    let result = match sequencer_request(env, chain, "sync") {
        Ok((stub, req)) => stub.fetch_with_request(req).await.map(|r| r.status_code()),
        Err(e) => Err(e),
    };
    match result {
        Ok(200) => {}
        Ok(status) => log::warn("audit sync", &format!("sequencer answered {status}")),
        Err(e) => log::warn("audit sync", &e.to_string()),
    }
}

/// The one mutation path where no request is served (`Cx::commit` is the path of requests): a
/// Durable Object recording a round's end, the review worker finishing a review. `facts` say
/// who acted, in which org and on whose request, since there is no request to say it. Applies
/// `writes` and records `events` in one D1 batch ([`Db::commit`]), then pokes the chains'
/// sequencers and waits for the pokes. Returns the rows each write changed.
pub async fn commit_with_facts(
    env: &Env,
    db: &Db,
    writes: impl Into<Writes>,
    events: impl IntoIterator<Item = Event>,
    facts: Facts,
) -> Result<Vec<u64>, DbError> {
    let committed = db.commit(writes.into(), events, facts, now_ms()).await?;
    for chain in &committed.chains {
        poke_now(env, chain).await;
    }
    Ok(committed.changes)
}
