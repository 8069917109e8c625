//! The gateway's side of the audit log: the one mutation path (`Cx::commit`), the sequencer
//! objects it pokes, and what audit reads need (an up-to-date chain, its latest checkpoint).
//!
//! ```text
//! handler -> cx.commit(writes, events) -> one D1 batch: change + events in audit_pending
//!         -> poke AuditSequencer(chain) (after the answer, ctx.wait_until)
//!            -> places pending events in audit_events, signs a checkpoint, one D1 batch
//! reader  -> sync AuditSequencer(chain) (waits for a run) -> reads audit_events only
//! cron    -> pokes every chain with pending events (what a lost poke left behind)
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use edgeplane_core::audit::checkpoint::{origin, CheckpointError, CheckpointSigner, NoteVerifier};
use edgeplane_core::audit::sequencer::{ChainStore, SequenceError};
use edgeplane_core::audit::sql::{self as audit_sql, Statement};
use edgeplane_core::audit::{Actor, ChainHead, Event, Facts, NewEvent, PLATFORM_CHAIN};
use edgeplane_core::crypto::kdf::RootSecret;
use edgeplane_core::store::{Row, StoreError, Value};
use edgeplane_core::views::access::CheckpointView;
use edgeplane_core::ApiError;
use edgeplane_runtime::db::{Db, DbError, OrgBatch, Stmt};
use worker::{Context, Env, Method, Request, RequestInit};

use crate::http::ctx::now_ms;
use crate::http::log;
use crate::routes::Cx;

/// The writes of a change: an org's ([`OrgBatch`], org id bound in every statement) or rows that
/// belong to no org (users, sessions, sign-in artifacts).
pub enum Writes {
    Org(OrgBatch),
    Unscoped(Vec<Stmt>),
}

impl From<OrgBatch> for Writes {
    fn from(b: OrgBatch) -> Self {
        Writes::Org(b)
    }
}

impl From<Vec<Stmt>> for Writes {
    fn from(s: Vec<Stmt>) -> Self {
        Writes::Unscoped(s)
    }
}

impl Cx<'_> {
    /// What this request knows about every change it makes: who, in which org, from where.
    pub fn facts(&self) -> Facts {
        Facts {
            actor: Actor::of(&self.principal),
            org_id: self.org().ok().map(|o| o.org_id.clone()),
            ip: self.rc.ip.clone(),
            user_agent: self.rc.user_agent.clone(),
            request_id: Some(self.rc.request_id.clone()),
        }
    }

    /// The one mutation path: applies `writes` and records `events` (completed with this
    /// request's facts) in one D1 batch, then pokes the chains' sequencers. On a route that acts
    /// in an org, only that org's [`OrgBatch`] is accepted, and events default to its chain.
    /// Returns the rows each write changed.
    pub async fn commit(
        &self,
        writes: impl Into<Writes>,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<Vec<u64>, DbError> {
        let mut facts = self.facts();
        let stmts = match writes.into() {
            Writes::Org(batch) => {
                if facts.org_id.as_deref().is_some_and(|o| o != batch.org_id()) {
                    log::error("commit", "writes for another org than the route's");
                    return Err(DbError::Other);
                }
                facts.org_id = Some(batch.org_id().to_owned());
                batch.into_stmts()
            }
            Writes::Unscoped(stmts) => {
                if facts.org_id.is_some() && !stmts.is_empty() {
                    log::error("commit", "an org route wrote without an OrgBatch");
                    return Err(DbError::Other);
                }
                stmts
            }
        };
        let events: Vec<NewEvent> = events.into_iter().map(|e| e.complete(&facts)).collect();
        let mut chains: Vec<String> = events.iter().map(|e| e.chain.clone()).collect();
        chains.sort();
        chains.dedup();
        let changes = self.db().commit(stmts, events, now_ms()).await?;
        for chain in &chains {
            poke(self.env, self.ctx, chain);
        }
        Ok(changes)
    }
}

/// Whether `chain` names a chain: an org id or the platform chain (sequencer objects are
/// addressed by it, so nothing else may reach one).
pub fn valid_chain(chain: &str) -> bool {
    chain == PLATFORM_CHAIN
        || <edgeplane_core::ids::OrgId as edgeplane_core::ids::TypedId>::parse(chain).is_ok()
}

fn sequencer_request(
    env: &Env,
    chain: &str,
    action: &str,
) -> worker::Result<(worker::Stub, Request)> {
    let stub = env.durable_object("AUDIT_SEQUENCER")?.get_by_name(chain)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post);
    let req = Request::new_with_init(
        &format!("https://audit-sequencer/{action}?chain={chain}"),
        &init,
    )?;
    Ok((stub, req))
}

/// Asks `chain`'s sequencer to place what is pending, after the response is sent. A lost poke
/// costs only latency: the next poke, an audit read or cron places the events.
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

thread_local! {
    static SIGNER: RefCell<Option<Rc<CheckpointSigner>>> = const { RefCell::new(None) };
}

/// The checkpoint key, derived once per isolate.
pub fn signer(root: &RootSecret) -> Rc<CheckpointSigner> {
    if let Some(s) = SIGNER.with(|s| s.borrow().clone()) {
        return s;
    }
    let s = Rc::new(CheckpointSigner::derive(root));
    SIGNER.with(|c| *c.borrow_mut() = Some(s.clone()));
    s
}

/// The verifier of `chain`'s checkpoints at this deployment.
pub fn verifier(cx: &Cx<'_>, chain: &str) -> Result<NoteVerifier, ApiError> {
    signer(&cx.cfg.root)
        .verifier(&origin(&cx.cfg.issuer, chain))
        .map_err(|_| ApiError::internal())
}

/// A chain's newest stored checkpoint.
pub enum Latest {
    /// The chain has no event yet.
    None,
    /// Its signature verifies: the view served with audit reads, and the head it pins.
    Verified(CheckpointView, ChainHead),
    /// The stored note does not verify under this deployment's key: it was altered.
    Forged { size: i64, error: CheckpointError },
}

impl Latest {
    pub fn view(self) -> Option<CheckpointView> {
        match self {
            Latest::Verified(v, _) => Some(v),
            _ => None,
        }
    }
}

/// The newest stored checkpoint of `chain`, its signature checked.
pub async fn latest_checkpoint(cx: &Cx<'_>, chain: &str) -> Result<Latest, ApiError> {
    let rows = cx
        .db()
        .rows(audit_sql::LATEST_CHECKPOINT, vec![chain.into()])
        .await?;
    let Some((size, note)) = audit_sql::latest_from_rows(&rows).map_err(corrupt)? else {
        return Ok(Latest::None);
    };
    let v = verifier(cx, chain)?;
    match v.open(&note) {
        Ok(cp) => {
            let head = ChainHead {
                seq: cp.size as i64,
                hash: cp.head_hash_hex(),
            };
            Ok(Latest::Verified(
                CheckpointView {
                    origin: v.name().to_owned(),
                    size: head.seq,
                    head_hash: head.hash.clone(),
                    note,
                    verifier_key: v.to_string(),
                },
                head,
            ))
        }
        Err(error) => {
            log::error("audit checkpoint", &format!("{chain} at {size}: {error}"));
            Ok(Latest::Forged { size, error })
        }
    }
}

fn corrupt(e: StoreError) -> ApiError {
    log::error("audit row", &e.to_string());
    ApiError::internal()
}

/// D1 as the sequencer's store.
pub struct D1Chain<'a>(pub &'a Db);

impl ChainStore for D1Chain<'_> {
    async fn rows(&self, sql: &'static str, args: Vec<Value>) -> Result<Vec<Row>, StoreError> {
        self.0
            .rows(sql, args)
            .await
            .map_err(|e| StoreError::Exec(format!("{e:?}")))
    }

    async fn batch(&self, stmts: Vec<Statement>) -> Result<(), SequenceError> {
        let stmts: Vec<Stmt> = stmts.into_iter().map(Stmt::from).collect();
        match self.0.batch(&stmts).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_unique_in("audit_events") || e.is_unique_in("audit_checkpoints") => {
                Err(SequenceError::Moved)
            }
            Err(e) => Err(StoreError::Exec(format!("{e:?}")).into()),
        }
    }
}
