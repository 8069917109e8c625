//! The inbox's exactly-once intake, natively: the object's storage is SQLite in memory, D1 is
//! SQLite loaded with the real `schema.sql`, and a crash is the struct dropped between two steps
//! and opened again over the same storage.

use super::*;
use crate::crypto::sha256_hex;
use crate::ids::{IntegrationId, OrgId};
use crate::store::testing::MemSql;
use crate::store::{Row, SqlExec, Value};
use crate::webhook::event::Trigger;

/// One object's storage, shared by every incarnation of the object.
struct Storage(MemSql);

/// What an incarnation holds: a handle on the storage, nothing else that survives.
struct Handle<'a>(&'a MemSql);

impl SqlExec for Handle<'_> {
    fn for_each(
        &self,
        sql: &str,
        args: &[Value],
        each: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.0.for_each(sql, args, each)
    }
}

impl Storage {
    fn new() -> Self {
        Storage(MemSql::new())
    }
    /// A fresh incarnation of the object over this storage (after a crash or an eviction).
    fn open(&self) -> Inbox<SqlInbox<Handle<'_>>> {
        Inbox::new(SqlInbox::open(Handle(&self.0)).unwrap())
    }
}

/// D1, with the schema production runs, and a switch that makes its batches fail.
struct D1 {
    db: MemSql,
}

impl D1 {
    fn new() -> Self {
        Self {
            db: MemSql::with_d1_schema(),
        }
    }

    /// Runs a batch atomically, as D1 does.
    fn batch(&self, writes: &[D1Write]) -> Result<(), StoreError> {
        self.db.exec("BEGIN", &[])?;
        for w in writes {
            if let Err(e) = self.db.exec(&w.sql, &w.args) {
                self.db.exec("ROLLBACK", &[])?;
                return Err(e);
            }
        }
        self.db.exec("COMMIT", &[])
    }

    fn refuse(&self, yes: bool) {
        let sql = if yes {
            "CREATE TRIGGER refuse BEFORE INSERT ON webhook_deliveries \
             BEGIN SELECT RAISE(ABORT, 'refused'); END"
        } else {
            "DROP TRIGGER refuse"
        };
        self.db.exec(sql, &[]).unwrap();
    }

    fn count(&self, sql: &str) -> i64 {
        self.db.one(sql, &[]).unwrap().unwrap().get(0).unwrap()
    }

    fn deliveries(&self) -> Vec<(String, String, Option<String>)> {
        self.db
            .query(
                "SELECT delivery_id, outcome, review_id FROM webhook_deliveries ORDER BY delivery_id",
                &[],
            )
            .unwrap()
            .into_iter()
            .map(|r| (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap()))
            .collect()
    }
}

/// The steps of one drain, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Planned,
    WroteD1,
    Enqueued,
    Retired,
}

const STEPS: [Step; 4] = [Step::Planned, Step::WroteD1, Step::Enqueued, Step::Retired];

/// Drains the outbox the way the object's alarm does. With `crash_after`, the object dies right
/// after that step of the first batch.
fn drain<S: InboxStore>(
    inbox: &Inbox<S>,
    d1: &D1,
    queue: &mut Vec<ReviewQueueMessage>,
    crash_after: Option<Step>,
) -> Result<(), StoreError> {
    while let Some(batch) = inbox.next_batch()? {
        if crash_after == Some(Step::Planned) {
            return Ok(());
        }
        d1.batch(&batch.d1_writes())?;
        if crash_after == Some(Step::WroteD1) {
            return Ok(());
        }
        let existing: Vec<ReviewId> = match batch.existing_reviews() {
            Some(q) => d1
                .db
                .query(&q.sql, &q.args)?
                .iter()
                .map(|r| r.get(0))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        queue.extend(batch.jobs(&existing));
        if crash_after == Some(Step::Enqueued) {
            return Ok(());
        }
        inbox.drained(&batch)?;
        if crash_after == Some(Step::Retired) {
            return Ok(());
        }
    }
    Ok(())
}

struct Org {
    org: OrgId,
    integration: IntegrationId,
}

impl Org {
    fn new() -> Self {
        Self {
            org: OrgId::generate(1).unwrap(),
            integration: IntegrationId::generate(1).unwrap(),
        }
    }

    fn delivery(&self, id: &str, body: &str, intent: Intent, at: i64) -> Delivery {
        Delivery {
            row_id: DeliveryRowId::generate(at).unwrap(),
            org_id: self.org.clone(),
            integration_id: self.integration.clone(),
            platform: Platform::GitHub,
            delivery_id: id.into(),
            event: "pull_request".into(),
            secret_slot: Slot::Current,
            received_at_ms: at,
            intent,
            replay_key: Some(sha256_hex(body.as_bytes())),
        }
    }
}

fn head(c: char) -> String {
    c.to_string().repeat(40)
}

fn review(number: u64, head_sha: &str) -> Intent {
    Intent::Review {
        review_id: ReviewId::generate(1).unwrap(),
        pr: PullRequestRef {
            repo_id: "1296269".into(),
            repo_name: "octo/hello".into(),
            number,
            head_sha: head_sha.into(),
            base_sha: Some(head('b')),
            trigger: Trigger::Opened,
        },
    }
}

fn ignore(reason: &str) -> Intent {
    Intent::Ignore {
        reason: reason.into(),
    }
}

fn queued_id(o: &Outcome) -> ReviewId {
    match o {
        Outcome::Queued { review_id } => review_id.clone(),
        other => panic!("not queued: {other:?}"),
    }
}

#[test]
fn a_new_delivery_is_recorded_with_its_outbox_entry_and_a_redelivery_is_a_duplicate() {
    let storage = Storage::new();
    let org = Org::new();
    let inbox = storage.open();
    let d = org.delivery("d-1", "body-1", review(7, &head('a')), 10);
    let outcome = inbox.accept(&d, 10).unwrap();
    let rev = queued_id(&outcome);
    // One write made it both remembered and pending.
    let pending = inbox.next_batch().unwrap().unwrap();
    assert_eq!(pending.entries().len(), 1);
    assert_eq!(pending.entries()[0].delivery, d);
    assert_eq!(pending.entries()[0].outcome, outcome);
    // The platform's redelivery (same id, same body).
    assert_eq!(inbox.accept(&d, 11).unwrap(), Outcome::Duplicate);
    // Another trigger for the same head: recorded, no second review.
    let again = org.delivery("d-2", "body-2", review(7, &head('a')), 12);
    assert_eq!(
        inbox.accept(&again, 12).unwrap(),
        Outcome::DuplicateHead {
            review_id: rev.clone()
        }
    );
    assert_eq!(inbox.next_batch().unwrap().unwrap().entries().len(), 2);
    // The schedule arms the alarm once for both.
    assert_eq!(inbox.schedule().after_accept(&outcome, 10), Some(10));
    assert_eq!(inbox.schedule().after_accept(&outcome, 12), None);
}

#[test]
fn a_replayed_body_under_a_fresh_delivery_id_is_a_duplicate() {
    let storage = Storage::new();
    let org = Org::new();
    let inbox = storage.open();
    let first = org.delivery("d-1", "signed-body", ignore("ping"), 1);
    assert!(inbox.accept(&first, 1).unwrap().is_new());
    for i in 0..3 {
        let replay = org.delivery(&format!("fresh-{i}"), "signed-body", ignore("ping"), 2);
        assert_eq!(inbox.accept(&replay, 2).unwrap(), Outcome::Duplicate);
    }
    // A delivery whose authenticator covers its id carries no replay key: only its id counts.
    let mut signed = org.delivery("msg-2", "signed-body", ignore("ping"), 3);
    signed.replay_key = None;
    assert!(inbox.accept(&signed, 3).unwrap().is_new());
    let d1 = D1::new();
    drain(&inbox, &d1, &mut Vec::new(), None).unwrap();
    let ids: Vec<String> = d1.deliveries().into_iter().map(|d| d.0).collect();
    assert_eq!(ids, vec!["d-1", "msg-2"]);
}

/// Accepts a mix of deliveries: two new heads, a second trigger for one of them, an ignored
/// event. Returns the deliveries and the review ids that must exist.
fn accept_mix(
    inbox: &Inbox<impl InboxStore>,
    org: &Org,
    tag: &str,
) -> (Vec<Delivery>, Vec<ReviewId>) {
    let n = tag.len() as u64 * 10;
    let d = |suffix: &str, intent: Intent, at: i64| {
        let id = format!("{tag}-{suffix}");
        org.delivery(&id, &id, intent, at)
    };
    let a = d("a", review(n + 1, &head('a')), 100);
    let b = d("b", review(n + 2, &head('c')), 101);
    let a2 = d("a2", review(n + 1, &head('a')), 102);
    let p = d("p", ignore("ping"), 103);
    let mut reviews = Vec::new();
    for d in [&a, &b] {
        reviews.push(queued_id(&inbox.accept(d, 100).unwrap()));
    }
    assert!(matches!(
        inbox.accept(&a2, 102).unwrap(),
        Outcome::DuplicateHead { .. }
    ));
    assert!(matches!(
        inbox.accept(&p, 103).unwrap(),
        Outcome::Ignored { .. }
    ));
    (vec![a, b, a2, p], reviews)
}

/// Every accepted delivery recorded exactly once, every review exactly once and enqueued at
/// least once, nothing left in the outbox.
fn assert_exactly_once(
    inbox: &Inbox<impl InboxStore>,
    d1: &D1,
    queue: &[ReviewQueueMessage],
    deliveries: &[Delivery],
    reviews: &[ReviewId],
) {
    assert!(inbox.next_batch().unwrap().is_none(), "outbox drained");
    let recorded = d1.deliveries();
    assert_eq!(recorded.len(), deliveries.len(), "{recorded:?}");
    for d in deliveries {
        assert_eq!(
            recorded.iter().filter(|r| r.0 == d.delivery_id).count(),
            1,
            "{}",
            d.delivery_id
        );
    }
    assert_eq!(
        d1.count("SELECT count(*) FROM reviews"),
        reviews.len() as i64
    );
    for r in reviews {
        assert!(
            queue.iter().any(|m| matches!(m, ReviewQueueMessage::Review { review_id, .. } if review_id == r.as_str())),
            "review {r} enqueued"
        );
    }
    // The second trigger names the first one's review.
    let dup = recorded.iter().find(|r| r.1 == "duplicate_head").unwrap();
    assert!(reviews.iter().any(|r| Some(r.as_str()) == dup.2.as_deref()));
}

#[test]
fn a_crash_after_any_drain_step_loses_nothing_and_records_nothing_twice() {
    for crash in STEPS {
        let storage = Storage::new();
        let d1 = D1::new();
        let org = Org::new();
        let mut queue = Vec::new();
        let (mut deliveries, mut reviews) = {
            let inbox = storage.open();
            let mix = accept_mix(&inbox, &org, "first");
            drain(&inbox, &d1, &mut queue, Some(crash)).unwrap();
            mix
            // The object dies here: everything in memory is gone.
        };
        let inbox = storage.open();
        // Its memory survived: the platform's redeliveries are duplicates.
        for d in &deliveries {
            assert_eq!(
                inbox.accept(d, 200).unwrap(),
                Outcome::Duplicate,
                "{crash:?}"
            );
        }
        // New deliveries keep coming while the outbox is drained again.
        let (more, more_reviews) = accept_mix(&inbox, &org, "second-mix");
        deliveries.extend(more);
        reviews.extend(more_reviews);
        drain(&inbox, &d1, &mut queue, None).unwrap();
        // And a drain after a completed one changes nothing.
        drain(&inbox, &d1, &mut queue, None).unwrap();
        assert_exactly_once(&inbox, &d1, &queue, &deliveries, &reviews);
    }
}

#[test]
fn repeating_a_written_batch_is_harmless_on_the_d1_side() {
    let storage = Storage::new();
    let d1 = D1::new();
    let org = Org::new();
    let inbox = storage.open();
    let (deliveries, reviews) = accept_mix(&inbox, &org, "x");
    let batch = inbox.next_batch().unwrap().unwrap();
    for _ in 0..3 {
        d1.batch(&batch.d1_writes()).unwrap();
    }
    let mut queue = Vec::new();
    drain(&inbox, &d1, &mut queue, None).unwrap();
    assert_exactly_once(&inbox, &d1, &queue, &deliveries, &reviews);
}

#[test]
fn while_d1_refuses_entries_stay_and_are_written_once_it_accepts() {
    let storage = Storage::new();
    let d1 = D1::new();
    let org = Org::new();
    let mut queue = Vec::new();
    let inbox = storage.open();
    let (deliveries, reviews) = accept_mix(&inbox, &org, "r");
    d1.refuse(true);
    for _ in 0..3 {
        assert!(drain(&inbox, &d1, &mut queue, None).is_err());
        let at = inbox.schedule().drain_failed(0);
        assert!(at > 0);
    }
    // All or nothing: the refused batch left no review behind and enqueued nothing.
    assert_eq!(d1.count("SELECT count(*) FROM reviews"), 0);
    assert!(queue.is_empty());
    assert_eq!(inbox.next_batch().unwrap().unwrap().entries().len(), 4);
    d1.refuse(false);
    // Whether the same incarnation retries or a new one does after an eviction.
    let inbox = storage.open();
    drain(&inbox, &d1, &mut queue, None).unwrap();
    assert_exactly_once(&inbox, &d1, &queue, &deliveries, &reviews);
}

#[test]
fn entries_accepted_during_a_drain_are_not_retired_with_it() {
    let storage = Storage::new();
    let d1 = D1::new();
    let org = Org::new();
    let inbox = storage.open();
    let first = org.delivery("first", "1", ignore("ping"), 1);
    inbox.accept(&first, 1).unwrap();
    let batch = inbox.next_batch().unwrap().unwrap();
    d1.batch(&batch.d1_writes()).unwrap();
    // The object awaits D1 and the queue; another delivery arrives meanwhile.
    let late = org.delivery("late", "2", ignore("ping"), 2);
    inbox.accept(&late, 2).unwrap();
    inbox.drained(&batch).unwrap();
    let left = inbox.next_batch().unwrap().unwrap();
    assert_eq!(left.entries().len(), 1);
    assert_eq!(left.entries()[0].delivery.delivery_id, "late");
}

#[test]
fn more_than_one_batch_drains_in_order() {
    let storage = Storage::new();
    let d1 = D1::new();
    let org = Org::new();
    let inbox = storage.open();
    let n = DRAIN_BATCH * 2 + 3;
    for i in 0..n {
        let d = org.delivery(
            &format!("d-{i:03}"),
            &i.to_string(),
            ignore("push"),
            i as i64,
        );
        inbox.accept(&d, i as i64).unwrap();
    }
    let first = inbox.next_batch().unwrap().unwrap();
    assert!(first.is_full());
    assert_eq!(first.entries()[0].delivery.delivery_id, "d-000");
    let mut queue = Vec::new();
    drain(&inbox, &d1, &mut queue, None).unwrap();
    assert_eq!(
        d1.count("SELECT count(*) FROM webhook_deliveries"),
        n as i64
    );
    assert!(queue.is_empty(), "ignored deliveries start nothing");
}

#[test]
fn a_head_d1_already_reviewed_gets_no_second_review_and_no_job() {
    // The inbox has forgotten the head (retention), but D1 still has its review.
    let storage = Storage::new();
    let d1 = D1::new();
    let org = Org::new();
    let mut queue = Vec::new();
    let inbox = storage.open();
    let old = org.delivery("old", "old", review(3, &head('d')), 0);
    let old_review = queued_id(&inbox.accept(&old, 0).unwrap());
    drain(&inbox, &d1, &mut queue, None).unwrap();
    inbox.prune(RETENTION_MS + 1).unwrap();
    let new = org.delivery("new", "new", review(3, &head('d')), RETENTION_MS + 2);
    let new_review = queued_id(&inbox.accept(&new, RETENTION_MS + 2).unwrap());
    assert_ne!(new_review, old_review);
    drain(&inbox, &d1, &mut queue, None).unwrap();
    assert_eq!(d1.count("SELECT count(*) FROM reviews"), 1);
    assert_eq!(queue.len(), 1, "{queue:?}");
    let recorded = d1.deliveries();
    assert_eq!(
        recorded[0],
        (
            "new".into(),
            "duplicate_head".into(),
            Some(old_review.to_string())
        )
    );
}

#[test]
fn pruning_forgets_what_retention_allows_and_never_an_undrained_entry() {
    let storage = Storage::new();
    let d1 = D1::new();
    let org = Org::new();
    let inbox = storage.open();
    let old = org.delivery("old", "old", review(1, &head('a')), 0);
    let recent = org.delivery("recent", "recent", ignore("ping"), 1000);
    inbox.accept(&old, 0).unwrap();
    inbox.accept(&recent, 1000).unwrap();
    drain(&inbox, &d1, &mut Vec::new(), None).unwrap();
    let stuck = org.delivery("stuck", "stuck", ignore("ping"), 0);
    inbox.accept(&stuck, 0).unwrap();
    let now = RETENTION_MS + 500;
    inbox.prune(now).unwrap();
    // Past retention and drained: forgotten (id, body and head).
    assert!(inbox.accept(&old, now).unwrap().is_new());
    // Within retention: remembered.
    assert_eq!(inbox.accept(&recent, now).unwrap(), Outcome::Duplicate);
    // Past retention but never drained: kept, still pending, still remembered.
    assert_eq!(inbox.accept(&stuck, now).unwrap(), Outcome::Duplicate);
    let pending: Vec<String> = inbox
        .next_batch()
        .unwrap()
        .unwrap()
        .entries()
        .iter()
        .map(|e| e.delivery.delivery_id.clone())
        .collect();
    assert_eq!(pending, vec!["stuck", "old"]);
}

#[test]
fn an_unreadable_entry_stops_the_drain_instead_of_being_dropped() {
    let storage = Storage::new();
    let inbox = storage.open();
    storage
        .0
        .exec(
            "INSERT INTO accepted (delivery_id, at_ms, entry) VALUES ('x', 1, '{\"nope\":1}')",
            &[],
        )
        .unwrap();
    assert!(matches!(inbox.next_batch(), Err(StoreError::Corrupt(_))));
    assert!(inbox.next_batch().is_err(), "still there");
}

#[test]
fn an_inbox_of_the_first_layout_is_folded_in_without_losing_or_repeating_anything() {
    let storage = Storage::new();
    let org = Org::new();
    let db = &storage.0;
    for ddl in [
        "CREATE TABLE seen (delivery_id TEXT PRIMARY KEY, at_ms INTEGER NOT NULL)",
        "CREATE TABLE heads (repo_id TEXT NOT NULL, pr_number INTEGER NOT NULL, head_sha TEXT NOT NULL, \
         review_id TEXT NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (repo_id, pr_number, head_sha))",
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, delivery TEXT NOT NULL, outcome TEXT NOT NULL)",
    ] {
        db.exec(ddl, &[]).unwrap();
    }
    // Drained long ago: remembered only.
    let done_review = ReviewId::generate(1).unwrap();
    db.exec("INSERT INTO seen VALUES ('old-1', 5)", &[])
        .unwrap();
    db.exec(
        "INSERT INTO heads VALUES ('1296269', 7, ?, ?, 5)",
        &crate::vals![head('a'), &done_review],
    )
    .unwrap();
    // Accepted, not drained yet, in the first layout's JSON (no replay key).
    let pending = org.delivery("old-2", "x", review(8, &head('e')), 6);
    let pending_review = match &pending.intent {
        Intent::Review { review_id, .. } => review_id.clone(),
        Intent::Ignore { .. } => unreachable!(),
    };
    let mut legacy = serde_json::to_value(&pending).unwrap();
    legacy.as_object_mut().unwrap().remove("replay_key");
    let outcome = Outcome::Queued {
        review_id: pending_review.clone(),
    };
    db.exec("INSERT INTO seen VALUES ('old-2', 6)", &[])
        .unwrap();
    db.exec(
        "INSERT INTO heads VALUES ('1296269', 8, ?, ?, 6)",
        &crate::vals![head('e'), &pending_review],
    )
    .unwrap();
    db.exec(
        "INSERT INTO outbox (delivery, outcome) VALUES (?, ?)",
        &crate::vals![legacy.to_string(), serde_json::to_string(&outcome).unwrap()],
    )
    .unwrap();

    let inbox = storage.open();
    let gone = db
        .one(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('seen', 'heads', 'outbox')",
            &[],
        )
        .unwrap()
        .unwrap();
    assert_eq!(gone.get::<i64>(0).unwrap(), 0);
    let old1 = org.delivery("old-1", "y", ignore("ping"), 9);
    assert_eq!(inbox.accept(&old1, 9).unwrap(), Outcome::Duplicate);
    let again = org.delivery("new-1", "z", review(7, &head('a')), 9);
    assert_eq!(
        inbox.accept(&again, 9).unwrap(),
        Outcome::DuplicateHead {
            review_id: done_review
        }
    );
    let d1 = D1::new();
    let mut queue = Vec::new();
    drain(&inbox, &d1, &mut queue, None).unwrap();
    let recorded: Vec<String> = d1.deliveries().into_iter().map(|d| d.0).collect();
    assert_eq!(recorded, vec!["new-1", "old-2"]);
    assert_eq!(
        queue,
        vec![ReviewQueueMessage::Review {
            org_id: org.org.to_string(),
            review_id: pending_review.to_string()
        }]
    );
    // Opening again finds nothing more to fold.
    assert!(storage.open().next_batch().unwrap().is_none());
}

#[test]
fn decisions() {
    let intent = review(7, &head('a'));
    let new_id = queued_id(&decide(&Memory::default(), &intent));
    let old = ReviewId::generate(2).unwrap();
    let known_head = Memory {
        head_review: Some(old.clone()),
        ..Memory::default()
    };
    assert_eq!(
        decide(&known_head, &intent),
        Outcome::DuplicateHead { review_id: old }
    );
    for seen in [
        Memory {
            delivery_seen: true,
            ..known_head.clone()
        },
        Memory {
            body_seen: true,
            ..Memory::default()
        },
    ] {
        assert_eq!(decide(&seen, &intent), Outcome::Duplicate);
    }
    assert_eq!(
        decide(&Memory::default(), &ignore("ping")),
        Outcome::Ignored {
            reason: "ping".into()
        }
    );
    assert!(!Outcome::Duplicate.is_new());
    assert_eq!(Outcome::Duplicate.recorded(), None);
    assert_eq!(
        Outcome::Queued { review_id: new_id }.recorded(),
        Some(DeliveryOutcome::Queued)
    );
}

#[test]
fn wire_format_round_trips_and_reads_the_first_layout() {
    let org = Org::new();
    let d = org.delivery("d-1", "b", review(1, &head('a')), 5);
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<Delivery>(&json).unwrap(), d);
    let mut first = serde_json::to_value(&d).unwrap();
    first.as_object_mut().unwrap().remove("replay_key");
    assert_eq!(first["platform"], "github");
    assert_eq!(first["secret_slot"], "current");
    let back: Delivery = serde_json::from_value(first).unwrap();
    assert_eq!(back.replay_key, None);
    let review_id = ReviewId::generate(1).unwrap();
    assert_eq!(
        serde_json::to_value(Outcome::Queued {
            review_id: review_id.clone()
        })
        .unwrap(),
        serde_json::json!({"status": "queued", "review_id": review_id.as_str()})
    );
    // Stored names are checked, never defaulted.
    let mut bad = serde_json::to_value(&d).unwrap();
    bad["platform"] = "svn".into();
    assert!(serde_json::from_value::<Delivery>(bad).is_err());
}

#[test]
fn drain_retries_back_off_from_one_second_to_five_minutes() {
    assert_eq!(retry_delay_ms(1), 1000);
    assert_eq!(retry_delay_ms(3), 4000);
    assert_eq!(retry_delay_ms(40), 300_000);
    let s = Schedule::default();
    let at: Vec<i64> = (0..11).map(|_| s.drain_failed(0)).collect();
    assert_eq!(&at[..4], &[1000, 2000, 4000, 8000]);
    assert_eq!(at[10], 300_000);
    assert_eq!(s.failures(), 11);
    // Armed by the retry: accepts meanwhile set no alarm of their own.
    let new = Outcome::Ignored {
        reason: "ping".into(),
    };
    assert_eq!(s.after_accept(&new, 5), None);
    s.alarm_started();
    s.drained();
    assert_eq!(s.failures(), 0);
    assert_eq!(s.after_accept(&Outcome::Duplicate, 6), None);
    assert_eq!(s.after_accept(&new, 6), Some(6));
    s.arm_failed();
    assert_eq!(s.after_accept(&new, 7), Some(7));
}
