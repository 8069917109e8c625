//! Audit events and their tamper-evident chain.
//!
//! Each org has its own chain (`chain` = org id, or [`PLATFORM_CHAIN`] for events that belong to
//! no org, such as a user's own sign-in). Event `n` stores `prev_hash` = hash of event `n-1` and
//! `hash` = SHA-256 over `prev_hash` and the event's canonical encoding. Editing, deleting or
//! re-ordering any stored event breaks every later link, which [`verify_chain`] reports.

use serde::{Deserialize, Serialize};

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
}

/// An event before it is placed in its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub chain: String,
    pub org_id: Option<String>,
    pub actor: Actor,
    /// Dotted verb, e.g. `api_key.created`, `member.role_changed`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// JSON object. Never secrets: callers put ids, names, old/new values of non-secret fields.
    pub metadata: serde_json::Value,
}

/// An event placed in its chain: what is stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainedEvent {
    pub id: String,
    pub chain: String,
    pub seq: i64,
    pub org_id: Option<String>,
    pub actor_type: String,
    pub actor_id: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// Canonical JSON text of the metadata object.
    pub metadata: String,
    pub created_at_ms: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// The head of a chain: the last event's sequence number and hash.
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
    /// Places the event after `head`.
    pub fn chain_after(self, head: &ChainHead, id: String, created_at_ms: i64) -> ChainedEvent {
        // serde_json writes object keys in sorted order (no `preserve_order`), so this is canonical.
        let metadata = self.metadata.to_string();
        let mut ev = ChainedEvent {
            id,
            chain: self.chain,
            seq: head.seq + 1,
            org_id: self.org_id,
            actor_type: self.actor.kind,
            actor_id: self.actor.id,
            action: self.action,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            ip: self.ip,
            user_agent: self.user_agent,
            request_id: self.request_id,
            metadata,
            created_at_ms,
            prev_hash: head.hash.clone(),
            hash: String::new(),
        };
        ev.hash = event_hash(&ev);
        ev
    }
}

/// SHA-256 over `prev_hash` and a JSON array of every other stored field in a fixed order.
pub fn event_hash(ev: &ChainedEvent) -> String {
    let canonical = serde_json::json!([
        ev.id,
        ev.chain,
        ev.seq,
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
    sha256_hex(format!("{}\n{}", ev.prev_hash, canonical).as_bytes())
}

/// The outcome of checking a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub valid: bool,
    pub events_checked: u64,
    /// The first broken link: the sequence number where verification failed, and why.
    pub first_broken_seq: Option<i64>,
    pub reason: Option<String>,
    pub head_hash: String,
}

/// Incremental verification, so a long chain is checked page by page in bounded memory.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected_prev: String,
    expected_seq: i64,
    checked: u64,
    broken: Option<(i64, String)>,
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
        }
    }

    /// Feed events in ascending `seq` order.
    pub fn feed(&mut self, ev: &ChainedEvent) {
        if self.broken.is_some() {
            return;
        }
        self.checked += 1;
        let reason = if ev.seq != self.expected_seq {
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
        match reason {
            Some(r) => self.broken = Some((self.expected_seq, r)),
            None => {
                self.expected_prev = ev.hash.clone();
                self.expected_seq += 1;
            }
        }
    }

    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    pub fn finish(self) -> ChainReport {
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
        assert_eq!(evs[0].metadata, r#"{"a":[0],"b":1}"#);
    }

    #[test]
    fn edits_deletions_and_reorders_are_detected() {
        let mut edited = chain(5);
        edited[2].action = "api_key.revoked".into();
        assert_eq!(verify(&edited).first_broken_seq, Some(3));

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(verify(&deleted).first_broken_seq, Some(2));

        let mut swapped = chain(5);
        swapped.swap(3, 4);
        assert!(!verify(&swapped).valid);

        // Re-hashing an edited event does not help: the next link still breaks.
        let mut rehashed = chain(5);
        rehashed[1].metadata = "{}".into();
        rehashed[1].hash = event_hash(&rehashed[1]);
        assert_eq!(verify(&rehashed).first_broken_seq, Some(3));
    }
}
