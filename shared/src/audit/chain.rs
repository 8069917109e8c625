//! Audit events and their hash chain.
//!
//! Each org has its own chain (`chain` = org id, or [`PLATFORM_CHAIN`] for events that belong to
//! no org, such as a user's own sign-in). Event `n` stores `prev_hash` = hash of event `n-1` and
//! `hash` = SHA-256 over `prev_hash` and the event's canonical encoding. Editing, deleting or
//! re-ordering any stored event breaks every later link, which [`ChainVerifier`] reports; a
//! signed checkpoint ([`super::checkpoint`]) also catches a tail that was cut off or rewritten.

use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::crypto::sha256_hex;

pub const PLATFORM_CHAIN: &str = "_platform";
/// `prev_hash` of the first event in a chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `user`, `api_key`, `cli_token`, `device`, `platform`, `system`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

impl Actor {
    pub fn system(component: &str) -> Self {
        Self {
            kind: "system".into(),
            id: component.into(),
        }
    }

    pub fn user(id: &str) -> Self {
        Self {
            kind: "user".into(),
            id: id.into(),
        }
    }

    /// The credential that made the request; nobody signed in is the `anonymous` system actor.
    pub fn of(principal: &Principal) -> Self {
        if principal.is_anonymous() {
            Actor::system("anonymous")
        } else {
            Self {
                kind: principal.kind.as_str().into(),
                id: principal.id.clone(),
            }
        }
    }
}

/// An event as a change describes it, before it is recorded. (Callers that have a request use
/// [`super::Event`], which fills in the request's facts; this is the record it produces.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub chain: String,
    pub org_id: Option<String>,
    pub actor: Actor,
    /// Dotted verb, e.g. `api_key.created`: an [`super::AuditAction`] name.
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// JSON object. Never secrets: callers put ids, names, old/new values of non-secret fields.
    pub metadata: serde_json::Value,
}

/// An event committed together with its change, not yet placed in its chain: everything the
/// hash covers except the position. It is stored in `audit_pending` until the chain's sequencer
/// places it (see [`super::sequencer`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub id: String,
    pub chain: String,
    pub org_id: Option<String>,
    pub actor_type: String,
    pub actor_id: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// Canonical JSON text of the metadata object, fixed at recording so that placing the event
    /// later hashes exactly the bytes that were stored.
    pub metadata: String,
    pub created_at_ms: i64,
}

/// An event placed in its chain: what is stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainedEvent {
    #[serde(flatten)]
    pub event: RecordedEvent,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// The head of a chain: the last event's sequence number (the chain's size) and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

impl ChainHead {
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.into(),
        }
    }
}

impl NewEvent {
    /// The event as recorded with its change at `created_at_ms`, under `id`.
    pub fn record(self, id: String, created_at_ms: i64) -> RecordedEvent {
        RecordedEvent {
            id,
            chain: self.chain,
            org_id: self.org_id,
            actor_type: self.actor.kind,
            actor_id: self.actor.id,
            action: self.action,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            ip: self.ip,
            user_agent: self.user_agent,
            request_id: self.request_id,
            // serde_json writes object keys in sorted order (no `preserve_order`): canonical.
            metadata: self.metadata.to_string(),
            created_at_ms,
        }
    }

    /// Records and places the event after `head` in one step.
    pub fn chain_after(self, head: &ChainHead, id: String, created_at_ms: i64) -> ChainedEvent {
        self.record(id, created_at_ms).place(head)
    }
}

impl RecordedEvent {
    /// Places the event right after `head`.
    pub fn place(self, head: &ChainHead) -> ChainedEvent {
        let mut ev = ChainedEvent {
            event: self,
            seq: head.seq + 1,
            prev_hash: head.hash.clone(),
            hash: String::new(),
        };
        ev.hash = event_hash(&ev);
        ev
    }
}

impl ChainedEvent {
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}

/// SHA-256 over `prev_hash` and a JSON array of every other stored field in a fixed order.
pub fn event_hash(placed: &ChainedEvent) -> String {
    let ev = &placed.event;
    let canonical = serde_json::json!([
        ev.id,
        ev.chain,
        placed.seq,
        ev.org_id,
        ev.actor_type,
        ev.actor_id,
        ev.action,
        ev.resource_type,
        ev.resource_id,
        ev.ip,
        ev.user_agent,
        ev.request_id,
        ev.metadata,
        ev.created_at_ms,
    ]);
    sha256_hex(format!("{}\n{}", placed.prev_hash, canonical).as_bytes())
}

/// The outcome of checking a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReport {
    pub valid: bool,
    pub events_checked: u64,
    /// The first broken link: the sequence number where verification failed, and why.
    pub first_broken_seq: Option<i64>,
    pub reason: Option<String>,
    pub head_hash: String,
    /// How many signed checkpoints the chain was compared against (each pins the chain's head
    /// at its size, so a rewritten or truncated tail under one is caught).
    #[serde(default)]
    pub checkpoints_checked: u64,
    /// The size of the pruned prefix the check started after (its signed anchor's size), or
    /// `None` when it started at the genesis: retention deleted events `1..=n`, and only the
    /// anchor, signed before they went, still commits to them.
    #[serde(default)]
    pub anchored_at: Option<i64>,
}

/// Incremental verification, so a long chain is checked page by page in bounded memory.
///
/// Links alone cannot show that events are missing *after* the last one stored, nor that the
/// tail was rewritten and re-hashed consistently; [`ChainVerifier::expect`] adds what a signed
/// checkpoint says (the chain had `size` events and this head hash), and the verifier fails if
/// the chain it is fed disagrees or ends before that size.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected_prev: String,
    expected_seq: i64,
    checked: u64,
    broken: Option<(i64, String)>,
    /// Checkpoints not yet reached, ascending by size.
    pending_checkpoints: Vec<ChainHead>,
    checkpoints_checked: u64,
    /// The signed anchor the check starts after, if the chain's prefix was pruned.
    anchor: Option<ChainHead>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self {
            expected_prev: GENESIS_HASH.into(),
            expected_seq: 1,
            checked: 0,
            broken: None,
            pending_checkpoints: Vec::new(),
            checkpoints_checked: 0,
            anchor: None,
        }
    }

    /// A verifier that starts right after a pruned prefix: the first event fed must be
    /// `anchor.seq + 1` and link to `anchor.hash`. The caller has checked the anchor's signature
    /// (see [`super::retention::Anchor::open`]); the anchor then stands in for the deleted
    /// events, exactly as the genesis hash stands in for "nothing before".
    pub fn after(anchor: ChainHead) -> Self {
        let mut v = Self::new();
        v.expected_prev = anchor.hash.clone();
        v.expected_seq = anchor.seq + 1;
        v.anchor = Some(anchor);
        v
    }

    /// The chain must have had `head.seq` events ending in `head.hash` (a checkpoint whose
    /// signature the caller has verified, or a stored one it compares against). Checkpoints may
    /// be added in any order, before or during feeding, as long as they are not behind the
    /// events already fed.
    pub fn expect(&mut self, head: ChainHead) {
        if head.seq == 0 {
            if head.hash != GENESIS_HASH {
                self.break_at(1, "a checkpoint of the empty chain has a head hash".into());
            }
            self.checkpoints_checked += 1;
            return;
        }
        if let Some(anchor) = self.anchor.as_ref().filter(|a| head.seq <= a.seq) {
            // A checkpoint of the pruned prefix: only the anchor's own size can still be
            // compared (its events are gone); an older one pins history that no longer exists.
            if head.seq == anchor.seq {
                self.checkpoints_checked += 1;
                if head.hash != anchor.hash {
                    self.break_at(
                        head.seq,
                        format!(
                            "the signed anchor differs from a signed checkpoint at size {}: \
                             the pruned history was rewritten",
                            head.seq
                        ),
                    );
                }
            }
            return;
        }
        if head.seq < self.expected_seq {
            // Already passed: only a caller bug puts us here; say so rather than pass silently.
            self.break_at(head.seq, "a checkpoint was given after its events".into());
            return;
        }
        let at = self
            .pending_checkpoints
            .partition_point(|c| c.seq <= head.seq);
        self.pending_checkpoints.insert(at, head);
    }

    /// Records a failure found outside the events themselves (a forged checkpoint); the first
    /// failure is the one reported.
    pub fn fail(&mut self, seq: i64, reason: String) {
        self.break_at(seq, reason);
    }

    fn break_at(&mut self, seq: i64, reason: String) {
        if self.broken.is_none() {
            self.broken = Some((seq, reason));
        }
    }

    /// Feed events in ascending `seq` order.
    pub fn feed(&mut self, ev: &ChainedEvent) {
        if self.broken.is_some() {
            return;
        }
        self.checked += 1;
        let first = self.checked == 1;
        let start = self.anchor.as_ref().map_or(0, |a| a.seq);
        let reason = if first && ev.seq > self.expected_seq && self.anchor.is_none() {
            Some(format!(
                "the chain starts at seq {} but no signed anchor covers the pruned events \
                 1..={}",
                ev.seq,
                ev.seq - 1
            ))
        } else if first && ev.seq != self.expected_seq {
            Some(format!(
                "the chain starts at seq {} but its signed anchor ends the pruned prefix at \
                 size {start}",
                ev.seq
            ))
        } else if first && self.anchor.is_some() && ev.prev_hash != self.expected_prev {
            Some(format!(
                "the first kept event does not link to the signed anchor at size {start}"
            ))
        } else if ev.seq != self.expected_seq {
            Some(format!(
                "expected seq {}, found {}",
                self.expected_seq, ev.seq
            ))
        } else if ev.prev_hash != self.expected_prev {
            Some("prev_hash does not match the previous event".to_string())
        } else if event_hash(ev) != ev.hash {
            Some("event content does not match its hash".to_string())
        } else {
            None
        };
        if let Some(r) = reason {
            self.break_at(self.expected_seq, r);
            return;
        }
        self.expected_prev = ev.hash.clone();
        self.expected_seq += 1;
        while let Some(cp) = self.pending_checkpoints.first() {
            if cp.seq != ev.seq {
                break;
            }
            let cp = self.pending_checkpoints.remove(0);
            self.checkpoints_checked += 1;
            if cp.hash != ev.hash {
                self.break_at(
                    ev.seq,
                    format!(
                        "the chain's hash at size {} differs from its signed checkpoint: \
                         history up to here was rewritten",
                        cp.seq
                    ),
                );
                return;
            }
        }
    }

    /// The seq the next event fed must have: where a reader of a (possibly pruned) chain starts
    /// reading, just after the anchor or at 1.
    pub fn next_seq(&self) -> i64 {
        self.expected_seq
    }

    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    pub fn finish(mut self) -> ChainReport {
        if let Some(cp) = self.pending_checkpoints.last().cloned() {
            let ends_at = self.expected_seq - 1;
            self.break_at(
                self.expected_seq,
                format!(
                    "the chain ends at seq {ends_at} but a signed checkpoint covers {} events: \
                     events were deleted from its end",
                    cp.seq
                ),
            );
        }
        let (first_broken_seq, reason) = match self.broken {
            Some((s, r)) => (Some(s), Some(r)),
            None => (None, None),
        };
        ChainReport {
            valid: first_broken_seq.is_none(),
            events_checked: self.checked,
            first_broken_seq,
            reason,
            head_hash: self.expected_prev,
            checkpoints_checked: self.checkpoints_checked,
            anchored_at: self.anchor.map(|a| a.seq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: i64) -> NewEvent {
        NewEvent {
            chain: "org_1".into(),
            org_id: Some("org_1".into()),
            actor: Actor {
                kind: "user".into(),
                id: "usr_1".into(),
            },
            action: "api_key.created".into(),
            resource_type: "api_key".into(),
            resource_id: format!("key_{n}"),
            ip: Some("127.0.0.1".into()),
            user_agent: None,
            request_id: Some(format!("req_{n}")),
            metadata: serde_json::json!({"b": 1, "a": [n]}),
        }
    }

    fn chain(len: i64) -> Vec<ChainedEvent> {
        let mut head = ChainHead::genesis();
        let mut out = Vec::new();
        for n in 0..len {
            let ev = event(n).chain_after(&head, format!("aud_{n}"), 1000 + n);
            head = ChainHead {
                seq: ev.seq,
                hash: ev.hash.clone(),
            };
            out.push(ev);
        }
        out
    }

    fn verify(evs: &[ChainedEvent]) -> ChainReport {
        let mut v = ChainVerifier::new();
        evs.iter().for_each(|e| v.feed(e));
        v.finish()
    }

    #[test]
    fn intact_chain_verifies() {
        let evs = chain(5);
        let r = verify(&evs);
        assert!(r.valid);
        assert_eq!(r.events_checked, 5);
        assert_eq!(r.head_hash, evs[4].hash);
        assert_eq!(evs[0].prev_hash, GENESIS_HASH);
        assert_eq!(evs[0].event.metadata, r#"{"a":[0],"b":1}"#);
    }

    #[test]
    fn edits_deletions_and_reorders_are_detected() {
        let mut edited = chain(5);
        edited[2].event.action = "api_key.revoked".into();
        assert_eq!(verify(&edited).first_broken_seq, Some(3));

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(verify(&deleted).first_broken_seq, Some(2));

        let mut swapped = chain(5);
        swapped.swap(3, 4);
        assert!(!verify(&swapped).valid);

        // Re-hashing an edited event does not help: the next link still breaks.
        let mut rehashed = chain(5);
        rehashed[1].event.metadata = "{}".into();
        rehashed[1].hash = event_hash(&rehashed[1]);
        assert_eq!(verify(&rehashed).first_broken_seq, Some(3));
    }

    #[test]
    fn a_checkpoint_catches_a_cut_or_rewritten_tail() {
        let evs = chain(5);
        let pinned = evs[4].head();
        let check = |evs: &[ChainedEvent]| {
            let mut v = ChainVerifier::new();
            v.expect(pinned.clone());
            evs.iter().for_each(|e| v.feed(e));
            v.finish()
        };
        let ok = check(&evs);
        assert!(ok.valid, "{ok:?}");
        assert_eq!(ok.checkpoints_checked, 1);
        // Without the checkpoint, a chain missing its newest event looks intact.
        assert!(verify(&evs[..4]).valid);
        let cut = check(&evs[..4]);
        assert_eq!((cut.valid, cut.first_broken_seq), (false, Some(5)));
        // A tail rebuilt with other content links up, but not to the signed head.
        let mut rebuilt = evs[..4].to_vec();
        rebuilt.push(event(99).chain_after(&evs[3].head(), "aud_x".into(), 1));
        assert!(verify(&rebuilt).valid);
        let r = check(&rebuilt);
        assert_eq!((r.valid, r.first_broken_seq), (false, Some(5)));
        // A chain that grew past its checkpoint is fine; an empty-chain checkpoint is trivial.
        let mut v = ChainVerifier::new();
        v.expect(evs[1].head());
        v.expect(ChainHead::genesis());
        evs.iter().for_each(|e| v.feed(e));
        assert!(v.finish().valid);
    }
}
