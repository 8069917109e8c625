//! The gateway's side of the audit log: the one mutation path of requests (`Cx::commit`; the
//! sequencer client and the path for code that serves no request are in
//! `edgeplane_runtime::audit`), and what audit reads need (an up-to-date chain, its latest
//! checkpoint).
//!
//! ```text
//! handler -> cx.commit(writes, events) -> one D1 batch: change + events in audit_pending
//!         -> poke AuditSequencer(chain) (after the answer, ctx.wait_until)
//!            -> places pending events in audit_events, signs a checkpoint, one D1 batch
//! reader  -> sync AuditSequencer(chain) (waits for a run) -> reads audit_events only
//! cron    -> syncs every chain with pending events (what a lost poke left behind)
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use edgeplane_core::audit::checkpoint::{origin, CheckpointError, CheckpointSigner, NoteVerifier};
use edgeplane_core::audit::retention;
use edgeplane_core::audit::sequencer::{ChainStore, SequenceError};
use edgeplane_core::audit::sql::{self as audit_sql, Statement};
use edgeplane_core::audit::{Actor, ChainHead, Event, Facts, PLATFORM_CHAIN};
use edgeplane_core::crypto::kdf::RootSecret;
use edgeplane_core::store::{Row, StoreError, Value};
use edgeplane_core::views::access::CheckpointView;
use edgeplane_core::ApiError;
use edgeplane_runtime::audit::poke;
pub use edgeplane_runtime::audit::sync;
use edgeplane_runtime::db::{Db, DbError, Stmt, Writes};

use crate::config::Config;
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::http::log;

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
    /// request's facts) in one D1 batch ([`Db::commit`]), then pokes the chains' sequencers
    /// after the answer. On a route that acts in an org, only that org's [`OrgBatch`] is
    /// accepted, and events default to its chain. Returns the rows each write changed.
    /// (Code that serves no request uses `edgeplane_runtime::audit::commit_with_facts`.)
    ///
    /// [`OrgBatch`]: edgeplane_runtime::db::OrgBatch
    pub async fn commit(
        &self,
        writes: impl Into<Writes>,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<Vec<u64>, DbError> {
        let committed = self
            .db()
            .commit(writes.into(), events, self.facts(), now_ms())
            .await?;
        for chain in &committed.chains {
            poke(self.env, self.ctx, chain);
        }
        Ok(committed.changes)
    }
}

/// Whether `chain` names a chain: an org id or the platform chain (sequencer objects are
/// addressed by it, so nothing else may reach one).
pub fn valid_chain(chain: &str) -> bool {
    chain == PLATFORM_CHAIN
        || <edgeplane_core::ids::OrgId as edgeplane_core::ids::TypedId>::parse(chain).is_ok()
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
    verifier_for(&cx.cfg, chain)
}

/// [`verifier`] for code that serves no request (the cron's export jobs).
pub fn verifier_for(cfg: &Config, chain: &str) -> Result<NoteVerifier, ApiError> {
    signer(&cfg.root)
        .verifier(&origin(&cfg.issuer, chain))
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
    latest_checkpoint_in(cx.db(), &cx.cfg, chain).await
}

/// [`latest_checkpoint`] for code that serves no request (the cron's export jobs).
pub async fn latest_checkpoint_in(db: &Db, cfg: &Config, chain: &str) -> Result<Latest, ApiError> {
    let rows = db
        .rows(audit_sql::LATEST_CHECKPOINT, vec![chain.into()])
        .await?;
    let Some((size, note)) = audit_sql::latest_from_rows(&rows).map_err(corrupt)? else {
        return Ok(Latest::None);
    };
    let v = verifier_for(cfg, chain)?;
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

/// The signed anchor of `chain`'s pruned prefix, if retention pruned it. Not checked here:
/// whoever verifies from it checks its signature (`retention::verifier_from`), so a forged one
/// fails there with the reason.
pub async fn anchor_note(db: &Db, chain: &str) -> Result<Option<String>, ApiError> {
    let rows = db
        .rows(retention::SELECT_ANCHOR, vec![chain.into()])
        .await?;
    rows.first()
        .map(|r| r.get::<String>(0))
        .transpose()
        .map_err(corrupt)
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
