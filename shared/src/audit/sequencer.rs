//! Placing recorded events in their chain, in batches, with a signed checkpoint per batch.
//!
//! A change and its audit event are committed together in one batch, but the event takes no
//! position there (`audit_pending`): two writers in one org never conflict, however many there
//! are. Each chain has one sequencer (in production a Durable Object per chain, which serializes
//! its runs) that reads the oldest pending events, gives them the next sequence numbers and
//! hashes, and in one transaction inserts them into `audit_events`, adds a signed checkpoint and
//! deletes them from `audit_pending`. A run that fails half way changed nothing; a second
//! sequencer racing the first loses on the `(chain, seq)` and `id` keys and changes nothing.
//! So every committed event is placed exactly once, in commit order, whatever crashes.
//!
//! [`Sequencer`] is the whole logic, over the [`ChainStore`] trait: D1 in the gateway, SQLite
//! (with the real `schema.sql`) in the tests below.

use super::checkpoint::{origin, Checkpoint, CheckpointSigner};
use super::sql::{self, Statement};
use crate::store::{Row, StoreError, Value};

/// Events placed per transaction: one statement each, plus the checkpoint and the delete, which
/// keeps a batch well inside D1's per-invocation statement budget.
pub const PAGE: i64 = 50;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SequenceError {
    /// Another sequencer placed events first; nothing was written. The next pass starts over
    /// from the new head.
    #[error("the chain moved underneath this pass")]
    Moved,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not sign the checkpoint")]
    Checkpoint,
}

/// Where a chain's events live. `batch` is atomic: every statement applies or none does.
///
/// The futures need not be `Send`: a Worker isolate (and a native test) is single-threaded.
#[allow(async_fn_in_trait)]
pub trait ChainStore {
    async fn rows(&self, sql: &'static str, args: Vec<Value>) -> Result<Vec<Row>, StoreError>;

    /// Applies the statements in one transaction. A uniqueness failure on `audit_events` or
    /// `audit_checkpoints` is [`SequenceError::Moved`].
    async fn batch(&self, stmts: Vec<Statement>) -> Result<(), SequenceError>;
}

/// What one run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    pub placed: u64,
    /// The chain's size after the run.
    pub size: i64,
    /// Pending events remain (the run stopped at its pass budget).
    pub more: bool,
}

/// The sequencer of one chain.
pub struct Sequencer<'a> {
    chain: &'a str,
    origin: String,
    signer: &'a CheckpointSigner,
}

impl<'a> Sequencer<'a> {
    /// `issuer` is the deployment's public URL: it names the checkpoints' origin.
    pub fn new(chain: &'a str, issuer: &str, signer: &'a CheckpointSigner) -> Self {
        Self {
            chain,
            origin: origin(issuer, chain),
            signer,
        }
    }

    /// Places up to [`PAGE`] pending events. Returns how many, and the chain's size.
    pub async fn pass<S: ChainStore>(
        &self,
        store: &S,
        now_ms: i64,
    ) -> Result<(u64, i64), SequenceError> {
        let head_rows = store
            .rows(sql::SELECT_HEAD, vec![self.chain.into()])
            .await?;
        let mut head = sql::head_from_rows(&head_rows)?;
        let pending = store
            .rows(sql::SELECT_PENDING, vec![self.chain.into(), PAGE.into()])
            .await?;
        let (Some(first), Some(last)) = (pending.first(), pending.last()) else {
            return Ok((0, head.seq));
        };
        let range = (
            sql::pending_from_row(first)?.0,
            sql::pending_from_row(last)?.0,
        );
        let mut stmts = Vec::with_capacity(pending.len() + 2);
        for row in &pending {
            let (_, event) = sql::pending_from_row(row)?;
            if event.chain != self.chain {
                return Err(StoreError::corrupt("a pending event of another chain").into());
            }
            let placed = event.place(&head);
            head = placed.head();
            stmts.push(sql::insert_event(&placed));
        }
        let checkpoint = Checkpoint::new(self.origin.clone(), head.seq as u64, &head.hash)
            .ok_or(SequenceError::Checkpoint)?;
        let note = self
            .signer
            .sign(&checkpoint)
            .map_err(|_| SequenceError::Checkpoint)?;
        stmts.push(sql::insert_checkpoint(self.chain, &head, &note, now_ms));
        stmts.push((
            sql::DELETE_PENDING,
            vec![self.chain.into(), range.0.into(), range.1.into()],
        ));
        store.batch(stmts).await?;
        Ok((pending.len() as u64, head.seq))
    }

    /// Passes until nothing is pending, or `max_passes` ran. A pass that lost a race is
    /// repeated once from the new head before giving up.
    pub async fn run<S: ChainStore>(
        &self,
        store: &S,
        now_ms: i64,
        max_passes: u32,
    ) -> Result<Progress, SequenceError> {
        let mut progress = Progress::default();
        let mut raced = false;
        for _ in 0..max_passes {
            match self.pass(store, now_ms).await {
                Ok((0, size)) => {
                    progress.size = size;
                    progress.more = false;
                    return Ok(progress);
                }
                Ok((n, size)) => {
                    progress.placed += n;
                    progress.size = size;
                    progress.more = true;
                }
                Err(SequenceError::Moved) if !raced => raced = true,
                Err(e) => return Err(e),
            }
        }
        Ok(progress)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::audit::chain::{Actor, ChainVerifier, NewEvent};
    use crate::audit::checkpoint::NoteVerifier;
    use crate::crypto::kdf::RootSecret;
    use crate::store::testing::MemSql;
    use crate::store::SqlExec;

    /// The test store's futures are always ready; one poll runs them.
    fn run_now<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the test store never waits"),
        }
    }

    /// SQLite with the real schema, standing in for D1. `fail_next_batch` makes the next batch
    /// fail before it applies anything (a crash, a D1 error).
    struct Db {
        sql: MemSql,
        fail_next_batch: Cell<bool>,
        batches: RefCell<Vec<usize>>,
    }

    impl Db {
        fn new() -> Self {
            let sql = MemSql::with_d1_schema();
            Self {
                sql,
                fail_next_batch: Cell::new(false),
                batches: RefCell::new(Vec::new()),
            }
        }

        /// A change and its event, committed together the way every mutation is.
        fn commit(&self, chain: &str, n: u32) {
            let event = NewEvent {
                chain: chain.into(),
                org_id: Some(chain.into()),
                actor: Actor::user("usr_1"),
                action: "api_key.created".into(),
                resource_type: "api_key".into(),
                resource_id: format!("key_{n}"),
                ip: None,
                user_agent: None,
                request_id: Some(format!("req_{n}")),
                metadata: serde_json::json!({"n": n, "x": 0.1}),
            }
            .record(format!("aud_{chain}_{n}"), 1_000 + i64::from(n));
            let (q, args) = sql::insert_pending(&event);
            self.sql.exec(q, &args).unwrap();
        }

        fn count(&self, q: &str) -> i64 {
            self.sql.one(q, &[]).unwrap().unwrap().get(0).unwrap()
        }
    }

    impl ChainStore for Db {
        async fn rows(&self, q: &'static str, args: Vec<Value>) -> Result<Vec<Row>, StoreError> {
            self.sql.query(q, &args)
        }

        async fn batch(&self, stmts: Vec<Statement>) -> Result<(), SequenceError> {
            if self.fail_next_batch.replace(false) {
                return Err(StoreError::Exec("D1_ERROR: Network connection lost".into()).into());
            }
            self.batches.borrow_mut().push(stmts.len());
            self.sql.exec("BEGIN", &[])?;
            for (q, args) in &stmts {
                if let Err(e) = self.sql.exec(q, args) {
                    self.sql.exec("ROLLBACK", &[])?;
                    return Err(match e {
                        StoreError::Exec(m) if m.contains("UNIQUE") => SequenceError::Moved,
                        other => other.into(),
                    });
                }
            }
            self.sql.exec("COMMIT", &[])?;
            Ok(())
        }
    }

    fn signer() -> CheckpointSigner {
        CheckpointSigner::derive(&RootSecret::new(&[3u8; 32]).unwrap())
    }

    const ISSUER: &str = "https://edgeplane.example";

    /// Verifies `chain` as the gateway does: every stored checkpoint's hash, the newest one's
    /// signature, and every link.
    fn verify(db: &Db, chain: &str, signer: &CheckpointSigner) -> crate::audit::ChainReport {
        let mut v = ChainVerifier::new();
        let latest = sql::latest_from_rows(
            &db.sql
                .query(sql::LATEST_CHECKPOINT, &[chain.into()])
                .unwrap(),
        )
        .unwrap();
        if let Some((_, note)) = latest {
            let cp = signer
                .verifier(&origin(ISSUER, chain))
                .unwrap()
                .open(&note)
                .unwrap();
            v.expect(crate::audit::ChainHead {
                seq: cp.size as i64,
                hash: cp.head_hash_hex(),
            });
        }
        for r in db
            .sql
            .query(
                sql::CHECKPOINTS_IN,
                &[chain.into(), 0i64.into(), i64::MAX.into()],
            )
            .unwrap()
        {
            v.expect(sql::checkpoint_head_from_row(&r).unwrap());
        }
        for r in db
            .sql
            .query(
                sql::EVENTS_AFTER,
                &[chain.into(), 0i64.into(), 1_000_000i64.into()],
            )
            .unwrap()
        {
            v.feed(&sql::event_from_row(&r).unwrap());
        }
        v.finish()
    }

    #[test]
    fn concurrent_commits_all_land_in_commit_order_and_verify() {
        let db = Db::new();
        let s = signer();
        let seq = Sequencer::new("org_a", ISSUER, &s);
        // 200 writers commit while the sequencer runs between them, as on a busy org: none of
        // them conflicts, and every event gets a place.
        for n in 0..200 {
            db.commit("org_a", n);
            db.commit("org_b", n);
            if n % 7 == 0 {
                run_now(seq.pass(&db, 5)).unwrap();
            }
        }
        let p = run_now(seq.run(&db, 6, 100)).unwrap();
        assert!(!p.more);
        assert_eq!(p.size, 200);
        assert_eq!(
            db.count("SELECT count(*) FROM audit_events WHERE chain = 'org_a'"),
            200
        );
        // The other chain's events wait for their own sequencer; this one never touched them.
        assert_eq!(
            db.count("SELECT count(*) FROM audit_pending WHERE chain = 'org_b'"),
            200
        );
        assert_eq!(
            db.count("SELECT count(*) FROM audit_pending WHERE chain = 'org_a'"),
            0
        );
        // Commit order is chain order.
        let order: Vec<i64> = db
            .sql
            .query(
                "SELECT created_at_ms FROM audit_events WHERE chain = 'org_a' ORDER BY seq",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0).unwrap())
            .collect();
        assert_eq!(order, (1_000..1_200).collect::<Vec<_>>());
        assert!(db.batches.borrow().iter().all(|n| *n as i64 <= PAGE + 2));
        let report = verify(&db, "org_a", &s);
        assert!(report.valid, "{report:?}");
        assert_eq!(report.events_checked, 200);
        assert!(report.checkpoints_checked > 1);
    }

    #[test]
    fn a_failed_pass_loses_nothing_and_places_nothing_twice() {
        let db = Db::new();
        let s = signer();
        let seq = Sequencer::new("org_a", ISSUER, &s);
        for n in 0..5 {
            db.commit("org_a", n);
        }
        db.fail_next_batch.set(true);
        assert!(run_now(seq.pass(&db, 1)).is_err());
        assert_eq!(db.count("SELECT count(*) FROM audit_events"), 0);
        assert_eq!(db.count("SELECT count(*) FROM audit_pending"), 5);
        // The retry (the next poke, or cron) places them all, once.
        assert_eq!(run_now(seq.run(&db, 2, 10)).unwrap().placed, 5);
        assert_eq!(run_now(seq.run(&db, 3, 10)).unwrap().placed, 0);
        assert!(verify(&db, "org_a", &s).valid);
    }

    #[test]
    fn a_second_sequencer_racing_the_first_changes_nothing() {
        let db = Db::new();
        let s = signer();
        let a = Sequencer::new("org_a", ISSUER, &s);
        db.commit("org_a", 1);
        // Sequencer B read the same pending event and head, then A committed first.
        let head = sql::head_from_rows(&db.sql.query(sql::SELECT_HEAD, &["org_a".into()]).unwrap())
            .unwrap();
        let (_, event) = sql::pending_from_row(
            &db.sql
                .query(sql::SELECT_PENDING, &["org_a".into(), PAGE.into()])
                .unwrap()[0],
        )
        .unwrap();
        run_now(a.pass(&db, 1)).unwrap();
        let stale = event.place(&head);
        assert_eq!(
            run_now(db.batch(vec![sql::insert_event(&stale)])),
            Err(SequenceError::Moved)
        );
        assert_eq!(db.count("SELECT count(*) FROM audit_events"), 1);
        assert!(verify(&db, "org_a", &s).valid);
    }

    #[test]
    fn a_deleted_or_rewritten_tail_fails_verification() {
        let db = Db::new();
        let s = signer();
        let seq = Sequencer::new("org_a", ISSUER, &s);
        for n in 0..3 {
            db.commit("org_a", n);
            run_now(seq.run(&db, 1, 10)).unwrap();
        }
        assert!(verify(&db, "org_a", &s).valid);

        // Deleting the newest event leaves a chain whose links are intact.
        db.sql
            .exec(
                "DELETE FROM audit_events WHERE chain = 'org_a' AND seq = 3",
                &[],
            )
            .unwrap();
        let r = verify(&db, "org_a", &s);
        assert!(!r.valid, "{r:?}");
        assert_eq!(r.first_broken_seq, Some(3));
        assert!(r.reason.unwrap().contains("deleted from its end"));

        // Re-creating the tail with other content, re-hashed, still disagrees with the
        // signed checkpoint, which nobody without the key can re-sign.
        let head = sql::head_from_rows(&db.sql.query(sql::SELECT_HEAD, &["org_a".into()]).unwrap())
            .unwrap();
        let forged = NewEvent {
            chain: "org_a".into(),
            org_id: Some("org_a".into()),
            actor: Actor::user("usr_1"),
            action: "api_key.revoked".into(),
            resource_type: "api_key".into(),
            resource_id: "key_x".into(),
            ip: None,
            user_agent: None,
            request_id: None,
            metadata: serde_json::json!({}),
        }
        .chain_after(&head, "aud_forged".into(), 9);
        let (q, args) = sql::insert_event(&forged);
        db.sql.exec(q, &args).unwrap();
        let r = verify(&db, "org_a", &s);
        assert!(!r.valid);
        assert_eq!(r.first_broken_seq, Some(3));
        assert!(r.reason.unwrap().contains("rewritten"));
    }

    #[test]
    fn checkpoints_are_signed_notes_of_the_chain_head() {
        let db = Db::new();
        let s = signer();
        let seq = Sequencer::new("_platform", ISSUER, &s);
        for n in 0..3 {
            db.commit("_platform", n);
        }
        run_now(seq.run(&db, 1, 10)).unwrap();
        let (size, note) = sql::latest_from_rows(
            &db.sql
                .query(sql::LATEST_CHECKPOINT, &["_platform".into()])
                .unwrap(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(size, 3);
        let head = sql::head_from_rows(
            &db.sql
                .query(sql::SELECT_HEAD, &["_platform".into()])
                .unwrap(),
        )
        .unwrap();
        let vkey = s
            .verifier("edgeplane.example/audit/_platform")
            .unwrap()
            .to_string();
        let cp = NoteVerifier::parse(&vkey).unwrap().open(&note).unwrap();
        assert_eq!((cp.size, cp.head_hash_hex()), (3, head.hash));
    }
}
