//! The states a review and its inline comments move through, as stored in D1 and shown by the
//! API. Stored values are read with serde: an unknown name is a decoding error, never a default.

use serde::{Deserialize, Serialize};

/// Where a review is. `queued` until a worker claims it; then one phase after another, each a
/// conditional transition from the one before, until it ends `done`, `failed` or `skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    Queued,
    Fetching,
    Indexing,
    Reviewing,
    Commenting,
    Done,
    Failed,
    Skipped,
}

impl ReviewStatus {
    pub const ALL: [ReviewStatus; 8] = [
        ReviewStatus::Queued,
        ReviewStatus::Fetching,
        ReviewStatus::Indexing,
        ReviewStatus::Reviewing,
        ReviewStatus::Commenting,
        ReviewStatus::Done,
        ReviewStatus::Failed,
        ReviewStatus::Skipped,
    ];

    /// The statuses of a review that has not ended, as a SQL list (`status IN …`). A test keeps
    /// it equal to [`ReviewStatus::is_finished`].
    pub const UNFINISHED_SQL: &'static str =
        "('queued', 'fetching', 'indexing', 'reviewing', 'commenting')";
    /// The statuses of a review a worker holds (claimed, not ended), as a SQL list.
    pub const ACTIVE_SQL: &'static str = "('fetching', 'indexing', 'reviewing', 'commenting')";

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Queued => "queued",
            ReviewStatus::Fetching => "fetching",
            ReviewStatus::Indexing => "indexing",
            ReviewStatus::Reviewing => "reviewing",
            ReviewStatus::Commenting => "commenting",
            ReviewStatus::Done => "done",
            ReviewStatus::Failed => "failed",
            ReviewStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Ended: nothing more happens to it (unless an operator requeues a failed one).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            ReviewStatus::Done | ReviewStatus::Failed | ReviewStatus::Skipped
        )
    }

    /// Claimed by a worker and in one of its phases.
    pub fn is_active(self) -> bool {
        !self.is_finished() && self != ReviewStatus::Queued
    }

    /// The column stamped when this phase starts; `None` for `queued` (that is
    /// `created_at_ms`) and for the end states (`finished_at_ms`).
    pub fn started_column(self) -> Option<&'static str> {
        match self {
            ReviewStatus::Fetching => Some("fetching_at_ms"),
            ReviewStatus::Indexing => Some("indexing_at_ms"),
            ReviewStatus::Reviewing => Some("reviewing_at_ms"),
            ReviewStatus::Commenting => Some("commenting_at_ms"),
            _ => None,
        }
    }

    /// `a, b or c` of every status, for error messages.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

/// What became of one inline comment (`review_comments.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommentState {
    /// Placed on the diff.
    Posted,
    /// Refused by the platform (the line moved); folded into the summary instead.
    Fallback,
}

impl CommentState {
    pub fn as_str(self) -> &'static str {
        match self {
            CommentState::Posted => "posted",
            CommentState::Fallback => "fallback",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_lists_match_the_enum() {
        let list = |f: fn(ReviewStatus) -> bool| {
            let names: Vec<String> = ReviewStatus::ALL
                .into_iter()
                .filter(|s| f(*s))
                .map(|s| format!("'{}'", s.as_str()))
                .collect();
            format!("({})", names.join(", "))
        };
        assert_eq!(ReviewStatus::UNFINISHED_SQL, list(|s| !s.is_finished()));
        assert_eq!(ReviewStatus::ACTIVE_SQL, list(ReviewStatus::is_active));
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for s in ReviewStatus::ALL {
            assert_eq!(ReviewStatus::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<ReviewStatus>(&json).unwrap(), s);
        }
        assert_eq!(ReviewStatus::parse("paused"), None);
        assert!(serde_json::from_str::<ReviewStatus>("\"paused\"").is_err());
        assert!(serde_json::from_str::<CommentState>("\"lost\"").is_err());
        assert_eq!(
            serde_json::to_string(&CommentState::Fallback).unwrap(),
            "\"fallback\""
        );
    }
}
