//! The review queue's wire format, shared by its producer (gateway) and consumer (review worker).
//!
//! Messages carry ids only — never source code, secrets or payloads — so a message is small
//! (well under the 128 KB limit), safe to dead-letter, and always re-read from D1 on delivery.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReviewQueueMessage {
    /// An operator's self-test of the queue path (see `diagnostics`).
    Probe { org_id: String, probe_id: String },
    /// Run (or resume) one code review. The review row holds everything else; the worker
    /// re-reads it on every delivery.
    Review { org_id: String, review_id: String },
}

/// Exponential backoff for redelivery: `base * 2^(attempt-1)`, capped. `attempt` is 1 for the
/// first failed delivery.
pub fn retry_delay_seconds(attempt: u32, base: u32, cap: u32) -> u32 {
    let exp = attempt.saturating_sub(1).min(20);
    base.saturating_mul(1u32 << exp).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_tagged_and_strict() {
        let m = ReviewQueueMessage::Probe {
            org_id: "org_1".into(),
            probe_id: "qpr_1".into(),
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"probe","org_id":"org_1","probe_id":"qpr_1"}"#
        );
        assert_eq!(
            serde_json::from_str::<ReviewQueueMessage>(&json).unwrap(),
            m
        );
        assert!(serde_json::from_str::<ReviewQueueMessage>(r#"{"kind":"other"}"#).is_err());
        let r = ReviewQueueMessage::Review {
            org_id: "org_1".into(),
            review_id: "rev_1".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"kind":"review","org_id":"org_1","review_id":"rev_1"}"#
        );
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(retry_delay_seconds(1, 2, 300), 2);
        assert_eq!(retry_delay_seconds(2, 2, 300), 4);
        assert_eq!(retry_delay_seconds(3, 2, 300), 8);
        assert_eq!(retry_delay_seconds(30, 2, 300), 300);
        assert_eq!(retry_delay_seconds(0, 2, 300), 2);
    }
}
