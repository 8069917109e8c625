//! Per-org retention of the audit log, and the signed anchor that keeps a pruned chain
//! verifiable.
//!
//! An org keeps its audit events for [`RetentionDays`] (default 365, bounds 30..=3650). The
//! cron deletes older events, oldest first, as a *prefix* of the chain: a hole in the middle
//! would be indistinguishable from tampering. Deleting a prefix removes what every later link
//! was computed from, so before the prefix goes the cron signs an **anchor**: a C2SP checkpoint
//! (the same format and key as every checkpoint, [`super::checkpoint`]) of the chain at the
//! size of the prefix, whose root hash is the hash of the last pruned event. Verification then
//! starts at the anchor instead of the genesis ([`ChainVerifier::after`]): the first kept event
//! must be `size + 1` and carry the anchor's hash as its `prev_hash`. Only the holder of the
//! checkpoint key can sign an anchor, so nobody who can merely write the database can cut a
//! prefix (or rewrite one) and call it retention.
//!
//! One anchor per chain is stored (`audit_anchors`), replaced by each later prune; the
//! deletion, the new anchor and the removal of the checkpoints it supersedes go in one D1 batch,
//! with the `audit.pruned` event. Pruning never deletes the chain's newest event (the
//! sequencer extends the chain from it) and never prunes across a link that does not verify,
//! so an anchor only ever vouches for history that was intact when it was signed.

use serde::{Deserialize, Serialize};

use super::chain::{ChainHead, ChainVerifier, ChainedEvent};
use super::checkpoint::{Checkpoint, CheckpointError, CheckpointSigner, NoteVerifier};
use super::sql::Statement;
use crate::error::ApiError;

/// A day, in the milliseconds every stored instant uses.
pub const DAY_MS: i64 = 24 * 3600 * 1000;

/// Events deleted per org per cron run: one D1 read of this many events (each verified before
/// it is anchored) and one delete, well inside a Worker invocation's budget. A backlog (an org
/// that shortened its retention) is worked off over successive runs.
pub const PRUNE_BATCH: i64 = 1000;

/// Orgs pruned per cron run, so one run's work stays bounded however many tenants there are.
pub const ORGS_PER_RUN: i64 = 20;

/// How long an org keeps its audit events, in days. The bounds are documented (README, "The
/// audit log"): at least 30 days, so a mistaken setting cannot erase last month's evidence
/// before anyone notices; at most 3650, ten years, beyond any retention rule we know of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct RetentionDays(u16);

impl RetentionDays {
    pub const MIN: i64 = 30;
    pub const MAX: i64 = 3650;
    pub const DEFAULT: RetentionDays = RetentionDays(365);

    pub fn new(days: i64) -> Result<Self, ApiError> {
        if (Self::MIN..=Self::MAX).contains(&days) {
            // In range, so it fits a u16.
            Ok(Self(days as u16))
        } else {
            Err(ApiError::validation(format!(
                "audit_retention_days must be between {} and {} days",
                Self::MIN,
                Self::MAX
            )))
        }
    }

    pub fn days(self) -> i64 {
        i64::from(self.0)
    }

    /// Events created before this instant are past retention at `now_ms`.
    pub fn cutoff_ms(self, now_ms: i64) -> i64 {
        now_ms - self.days() * DAY_MS
    }
}

impl Default for RetentionDays {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<i64> for RetentionDays {
    type Error = String;
    fn try_from(days: i64) -> Result<Self, String> {
        Self::new(days).map_err(|e| e.message)
    }
}

impl From<RetentionDays> for i64 {
    fn from(d: RetentionDays) -> i64 {
        d.days()
    }
}

/// The signed anchor of a pruned prefix: the chain's head at the prefix's size, as a signed
/// checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub head: ChainHead,
    pub note: String,
}

impl Anchor {
    /// Signs the anchor for a prefix ending at `through` (the last event to be deleted).
    pub fn sign(
        signer: &CheckpointSigner,
        origin: &str,
        through: &ChainHead,
    ) -> Result<Self, CheckpointError> {
        let cp = Checkpoint::new(origin.to_owned(), through.seq as u64, &through.hash)
            .ok_or(CheckpointError::Malformed)?;
        Ok(Self {
            head: through.clone(),
            note: signer.sign(&cp)?,
        })
    }

    /// Checks the anchor's signature (and origin) with `key`: the head it vouches for.
    pub fn open(key: &NoteVerifier, note: &str) -> Result<Self, CheckpointError> {
        let cp = key.open(note)?;
        Ok(Self {
            head: ChainHead {
                seq: cp.size as i64,
                hash: cp.head_hash_hex(),
            },
            note: note.to_owned(),
        })
    }
}

/// The verifier for a chain that may have been pruned: from the genesis without an anchor,
/// from the anchor when its signature verifies, and already failed, with the reason, when it
/// does not. (A pruned chain with no anchor at all fails on its first event.)
pub fn verifier_from(key: &NoteVerifier, anchor_note: Option<&str>) -> ChainVerifier {
    match anchor_note.map(|n| Anchor::open(key, n)) {
        None => ChainVerifier::new(),
        Some(Ok(anchor)) => ChainVerifier::after(anchor.head),
        Some(Err(e)) => {
            let mut v = ChainVerifier::new();
            v.fail(
                1,
                format!("the signed anchor of the pruned events is not authentic: {e}"),
            );
            v
        }
    }
}

/// What one run prunes from a chain: every event up to `through`, `count` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prune {
    pub through: ChainHead,
    pub count: u64,
}

/// Why a chain is not pruned although it has old events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PruneError {
    /// Anchoring past a broken link would sign over the evidence of tampering.
    #[error("the chain does not verify at seq {seq}: {reason}")]
    Broken { seq: i64, reason: String },
}

/// Decides what to prune. `oldest` are the chain's first stored events in `seq` order (at most
/// [`PRUNE_BATCH`] are considered), `start` the current anchor (`None`: the chain was never
/// pruned), `head_seq` the chain's size, `cutoff_ms` the retention cutoff. The prefix ends
/// before the first event that is not past retention, before the newest event, and after
/// [`PRUNE_BATCH`] events; each event in it is verified from `start` first.
pub fn plan(
    start: Option<&ChainHead>,
    oldest: &[ChainedEvent],
    head_seq: i64,
    cutoff_ms: i64,
) -> Result<Option<Prune>, PruneError> {
    let mut verifier = start
        .cloned()
        .map_or_else(ChainVerifier::new, ChainVerifier::after);
    let mut last: Option<&ChainedEvent> = None;
    let mut count = 0u64;
    for ev in oldest.iter().take(PRUNE_BATCH as usize) {
        if ev.event.created_at_ms >= cutoff_ms || ev.seq >= head_seq {
            break;
        }
        verifier.feed(ev);
        if verifier.is_broken() {
            let report = verifier.finish();
            return Err(PruneError::Broken {
                seq: report.first_broken_seq.unwrap_or(ev.seq),
                reason: report.reason.unwrap_or_default(),
            });
        }
        last = Some(ev);
        count += 1;
    }
    Ok(last.map(|ev| Prune {
        through: ev.head(),
        count,
    }))
}

/// The org whose chain is pruned and its retention: `[now_ms, limit]`. Only orgs with an event
/// past retention that is not their newest are listed (the newest is never pruned, so an idle
/// org with one old event would otherwise take a slot every run). They come in random order,
/// so orgs that cannot be pruned (a broken link is refused, never signed over) never hold every
/// slot run after run: each other org is reached within a few runs.
pub const ORGS_TO_PRUNE: &str = "SELECT id, audit_retention_days FROM orgs o \
     WHERE deleted_at_ms IS NULL AND EXISTS (SELECT 1 FROM audit_events e \
     WHERE e.org_id = o.id AND e.chain = o.id \
     AND e.created_at_ms < ? - o.audit_retention_days * 86400000 \
     AND e.seq < (SELECT max(seq) FROM audit_events h WHERE h.chain = o.id)) \
     ORDER BY random() LIMIT ?";

/// A chain's anchor, `[chain]`: its signed note (the size and hash columns are for reading the
/// table; verification trusts the note only).
pub const SELECT_ANCHOR: &str = "SELECT note FROM audit_anchors WHERE chain = ?";

const UPSERT_ANCHOR: &str = "INSERT INTO audit_anchors (chain, size, head_hash, note, \
     created_at_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (chain) DO UPDATE SET \
     size = excluded.size, head_hash = excluded.head_hash, note = excluded.note, \
     created_at_ms = excluded.created_at_ms WHERE excluded.size > audit_anchors.size";

const DELETE_EVENTS_THROUGH: &str = "DELETE FROM audit_events WHERE chain = ? AND seq <= ?";

/// Checkpoints of sizes inside the pruned prefix pin events that no longer exist: nothing can
/// be compared with them any more, and the anchor (a checkpoint at the prefix's size) carries
/// what they vouched for. Keeping them would keep one row per sequencing batch forever.
const DELETE_CHECKPOINTS_THROUGH: &str =
    "DELETE FROM audit_checkpoints WHERE chain = ? AND size <= ?";

/// The prune's writes, for one batch: the new anchor, then the deletions it covers.
pub fn prune_statements(chain: &str, anchor: &Anchor, now_ms: i64) -> Vec<Statement> {
    let h = &anchor.head;
    vec![
        (
            UPSERT_ANCHOR,
            vec![
                chain.into(),
                h.seq.into(),
                h.hash.as_str().into(),
                anchor.note.as_str().into(),
                now_ms.into(),
            ],
        ),
        (DELETE_EVENTS_THROUGH, vec![chain.into(), h.seq.into()]),
        (DELETE_CHECKPOINTS_THROUGH, vec![chain.into(), h.seq.into()]),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::origin;
    use crate::audit::testing::{api_key_created, chain_of};
    use crate::crypto::kdf::RootSecret;

    const ORIGIN_ISSUER: &str = "https://audit.example.com";

    fn signer(seed: u8) -> CheckpointSigner {
        CheckpointSigner::derive(&RootSecret::new(&[seed; 32]).unwrap())
    }

    /// `len` events, event `n` created at `created(n)`.
    fn chain(len: i64, created: impl Fn(i64) -> i64) -> Vec<ChainedEvent> {
        chain_of(1..=len, api_key_created, created)
    }

    fn key() -> NoteVerifier {
        signer(9).verifier(&origin(ORIGIN_ISSUER, "org_1")).unwrap()
    }

    fn anchor_at(evs: &[ChainedEvent], size: usize, by: &CheckpointSigner) -> Anchor {
        let o = origin(ORIGIN_ISSUER, "org_1");
        Anchor::sign(by, &o, &evs[size - 1].head()).unwrap()
    }

    fn verify_kept(anchor: Option<&str>, kept: &[ChainedEvent]) -> crate::audit::ChainReport {
        let mut v = verifier_from(&key(), anchor);
        kept.iter().for_each(|e| v.feed(e));
        v.finish()
    }

    #[test]
    fn a_pruned_chain_verifies_from_its_signed_anchor() {
        let evs = chain(10, |n| n);
        let anchor = anchor_at(&evs, 4, &signer(9));
        let r = verify_kept(Some(&anchor.note), &evs[4..]);
        assert!(r.valid, "{r:?}");
        assert_eq!(r.events_checked, 6);
        assert_eq!(r.anchored_at, Some(4));
        assert_eq!(r.head_hash, evs[9].hash);
        // A checkpoint at the anchor's size agrees; one inside the pruned prefix is not counted.
        let mut v = ChainVerifier::after(anchor.head.clone());
        v.expect(evs[3].head());
        v.expect(evs[1].head());
        v.expect(evs[9].head());
        evs[4..].iter().for_each(|e| v.feed(e));
        let r = v.finish();
        assert!(r.valid, "{r:?}");
        assert_eq!(r.checkpoints_checked, 2);
    }

    #[test]
    fn an_anchor_signed_by_another_key_fails() {
        let evs = chain(10, |n| n);
        let forged = anchor_at(&evs, 4, &signer(7));
        let r = verify_kept(Some(&forged.note), &evs[4..]);
        assert!(!r.valid);
        assert!(
            r.reason.as_deref().unwrap().contains("anchor")
                && r.reason.unwrap().contains("not authentic"),
        );
        // An edited size under a real signature fails too.
        let real = anchor_at(&evs, 4, &signer(9));
        let edited = real.note.replacen("\n4\n", "\n3\n", 1);
        assert!(!verify_kept(Some(&edited), &evs[3..]).valid);
    }

    #[test]
    fn an_anchor_that_does_not_match_the_first_kept_event_fails() {
        let evs = chain(10, |n| n);
        // Signed at size 3, but events 4.. are kept: the first kept event is not size + 1.
        let early = anchor_at(&evs, 3, &signer(9));
        let r = verify_kept(Some(&early.note), &evs[4..]);
        assert_eq!((r.valid, r.first_broken_seq), (false, Some(4)));
        assert!(r
            .reason
            .unwrap()
            .contains("signed anchor ends the pruned prefix at size 3"));
        // Right size, other history: a genuine anchor of a different chain prefix.
        let other = chain(10, |n| n + 1_000);
        let wrong = anchor_at(&other, 4, &signer(9));
        let r = verify_kept(Some(&wrong.note), &evs[4..]);
        assert_eq!((r.valid, r.first_broken_seq), (false, Some(5)));
        assert!(r
            .reason
            .unwrap()
            .contains("does not link to the signed anchor"));
        // A checkpoint at the anchor's size that disagrees with it.
        let mut v = ChainVerifier::after(anchor_at(&evs, 4, &signer(9)).head);
        v.expect(other[3].head());
        assert!(!v.finish().valid);
    }

    #[test]
    fn a_pruned_chain_without_an_anchor_fails() {
        let evs = chain(10, |n| n);
        let r = verify_kept(None, &evs[4..]);
        assert_eq!((r.valid, r.first_broken_seq), (false, Some(1)));
        assert!(r
            .reason
            .unwrap()
            .contains("no signed anchor covers the pruned events 1..=4"));
        // The unpruned chain still verifies from the genesis.
        assert!(verify_kept(None, &evs).valid);
    }

    #[test]
    fn the_plan_prunes_the_old_prefix_but_never_the_newest_event() {
        // Events 1..=6 are old (created before the cutoff 100), 7.. new.
        let evs = chain(10, |n| if n <= 6 { n } else { 100 + n });
        let p = plan(None, &evs, 10, 100).unwrap().unwrap();
        assert_eq!((p.through.seq, p.count), (6, 6));
        assert_eq!(p.through.hash, evs[5].hash);
        // An old event after a new one is not pruned: only a prefix goes.
        let mut mixed = chain(10, |n| if n == 3 { 500 } else { n });
        assert_eq!(plan(None, &mixed, 10, 100).unwrap().unwrap().through.seq, 2);
        // Everything old: the newest event stays (the sequencer extends the chain from it).
        mixed = chain(5, |n| n);
        assert_eq!(plan(None, &mixed, 5, 100).unwrap().unwrap().count, 4);
        // Nothing old: nothing to do.
        assert_eq!(plan(None, &evs[6..], 10, 100).unwrap(), None);
        // After an earlier prune, the plan continues from its anchor.
        let p = plan(Some(&evs[2].head()), &evs[3..], 10, 100)
            .unwrap()
            .unwrap();
        assert_eq!((p.through.seq, p.count), (6, 3));
    }

    #[test]
    fn the_plan_is_bounded_by_the_batch() {
        let len = PRUNE_BATCH + 50;
        let evs = chain(len, |n| n);
        let p = plan(None, &evs, len, i64::MAX).unwrap().unwrap();
        assert_eq!(p.count, PRUNE_BATCH as u64);
        assert_eq!(p.through.seq, PRUNE_BATCH);
        // The next run takes the rest, up to the newest event.
        let rest = plan(
            Some(&p.through),
            &evs[PRUNE_BATCH as usize..],
            len,
            i64::MAX,
        )
        .unwrap()
        .unwrap();
        assert_eq!((rest.through.seq, rest.count), (len - 1, 49));
    }

    #[test]
    fn the_plan_refuses_to_anchor_over_a_broken_link() {
        let mut evs = chain(10, |n| n);
        evs[2].event.metadata = r#"{"n":99}"#.into();
        assert_eq!(
            plan(None, &evs, 10, 100),
            Err(PruneError::Broken {
                seq: 3,
                reason: "event content does not match its hash".into()
            })
        );
        // And over a gap left by someone deleting an event.
        let mut gap = chain(10, |n| n);
        gap.remove(1);
        assert!(plan(None, &gap, 10, 100).is_err());
    }

    /// The statements against the real schema (SQLite with `schema.sql`): which org the cron
    /// picks, what one prune deletes and keeps, and that an older anchor never replaces a newer.
    #[test]
    fn a_prune_batch_deletes_the_prefix_and_stores_its_anchor() {
        use crate::audit::sql as audit_sql;
        use crate::store::testing::MemSql;
        use crate::store::SqlExec;

        let db = MemSql::with_d1_schema();
        let now = 400 * DAY_MS;
        db.exec(
            "INSERT INTO orgs (id, slug, name, created_at_ms, audit_retention_days) \
             VALUES ('org_1', 'one', 'One', 0, 30)",
            &[],
        )
        .unwrap();
        // Events 1..=6 are 100 days old, 7..=10 a day old; a checkpoint at every even size.
        let evs = chain(10, |n| {
            if n <= 6 {
                now - 100 * DAY_MS
            } else {
                now - DAY_MS
            }
        });
        let s = signer(9);
        for ev in &evs {
            let (q, args) = audit_sql::insert_event(ev);
            db.exec(q, &args).unwrap();
            if ev.seq % 2 == 0 {
                let (q, args) = audit_sql::insert_checkpoint("org_1", &ev.head(), "note", 1);
                db.exec(q, &args).unwrap();
            }
        }
        let picked = db
            .query(ORGS_TO_PRUNE, &[now.into(), ORGS_PER_RUN.into()])
            .unwrap();
        assert_eq!(picked.len(), 1);
        let days: i64 = picked[0].get(1).unwrap();
        let cutoff = RetentionDays::new(days).unwrap().cutoff_ms(now);

        let prune = plan(None, &evs, 10, cutoff).unwrap().unwrap();
        let anchor = Anchor::sign(&s, &origin(ORIGIN_ISSUER, "org_1"), &prune.through).unwrap();
        for (q, args) in prune_statements("org_1", &anchor, now) {
            db.exec(q, &args).unwrap();
        }
        let count = |q: &str| -> i64 { db.one(q, &[]).unwrap().unwrap().get(0).unwrap() };
        assert_eq!(count("SELECT min(seq) FROM audit_events"), 7);
        assert_eq!(count("SELECT count(*) FROM audit_events"), 4);
        assert_eq!(count("SELECT min(size) FROM audit_checkpoints"), 8);
        // The chain left verifies from the stored anchor.
        let stored: String = db
            .one(SELECT_ANCHOR, &["org_1".into()])
            .unwrap()
            .unwrap()
            .get(0)
            .unwrap();
        let kept = db
            .query(
                audit_sql::EVENTS_AFTER,
                &["org_1".into(), 6i64.into(), PRUNE_BATCH.into()],
            )
            .unwrap()
            .iter()
            .map(|r| audit_sql::event_from_row(r).unwrap())
            .collect::<Vec<_>>();
        let r = verify_kept(Some(&stored), &kept);
        assert!(r.valid, "{r:?}");
        assert_eq!(r.anchored_at, Some(6));
        // Nothing old is left that is not the newest event: the org is not picked again.
        assert!(db
            .query(ORGS_TO_PRUNE, &[now.into(), ORGS_PER_RUN.into()])
            .unwrap()
            .is_empty());
        // A stale run's anchor (a smaller size) does not replace the newer one.
        let stale = anchor_at(&evs, 3, &s);
        for (q, args) in prune_statements("org_1", &stale, now) {
            db.exec(q, &args).unwrap();
        }
        assert_eq!(count("SELECT size FROM audit_anchors"), 6);
    }

    #[test]
    fn retention_days_are_bounded() {
        assert_eq!(RetentionDays::default().days(), 365);
        assert!(RetentionDays::new(29).is_err());
        assert!(RetentionDays::new(3651).is_err());
        assert!(RetentionDays::new(-1).is_err());
        assert_eq!(RetentionDays::new(30).unwrap().days(), 30);
        assert_eq!(RetentionDays::new(3650).unwrap().days(), 3650);
        assert_eq!(
            RetentionDays::new(30).unwrap().cutoff_ms(31 * DAY_MS),
            DAY_MS
        );
        let parsed: Result<RetentionDays, _> = serde_json::from_str("10");
        assert!(parsed.is_err());
        assert_eq!(
            serde_json::from_str::<RetentionDays>("90").unwrap().days(),
            90
        );
    }
}
