//! Why a D1 call failed, classified once from the runtime's message into [`DbError`]: callers
//! match variants, never message text.

use edgeplane_core::{ApiError, ErrorCode};

/// Why a D1 call failed. Classified once ([`DbError::classify`]) from the runtime's message.
#[derive(Debug, Clone, PartialEq)]
pub enum DbError {
    /// The database was busy (locked, overloaded) and applied nothing: retrying may succeed.
    Busy,
    /// A `UNIQUE` (or primary key) constraint of `table` failed; the batch was rolled back.
    Unique { table: String },
    /// A guard of the batch did not hold; nothing was applied. Carries the guard's own error.
    Guard(ApiError),
    /// Anything else (logged where it happened; never shown to a caller).
    Other,
}

impl DbError {
    /// The one place D1's error messages are read. A guard failure is reported by SQLite as the
    /// `batch_guards` CHECK constraint; which guard failed is worked out afterwards.
    pub fn classify(message: &str) -> Self {
        if message.contains("SQLITE_BUSY")
            || message.contains("database is locked")
            || message.contains("is overloaded")
        {
            return DbError::Busy;
        }
        if let Some(rest) = message.split("UNIQUE constraint failed: ").nth(1) {
            let table = rest
                .split(['.', ':', ',', ' '])
                .next()
                .unwrap_or_default()
                .to_owned();
            return DbError::Unique { table };
        }
        if message.contains("CHECK constraint failed")
            && (message.contains("ok = 1") || message.contains("batch_guards"))
        {
            return DbError::Guard(ApiError::conflict(
                "the resource changed concurrently; retry the request",
            ));
        }
        DbError::Other
    }

    pub fn is_unique_in(&self, name: &str) -> bool {
        matches!(self, DbError::Unique { table } if table == name)
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Busy => ApiError::new(
                ErrorCode::Unavailable,
                "the database is busy; retry the request",
            )
            .with_retry_after(1),
            DbError::Unique { .. } => ApiError::new(
                ErrorCode::AlreadyExists,
                "a resource with these unique values already exists",
            ),
            DbError::Guard(err) => err,
            DbError::Other => ApiError::internal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d1_messages_are_classified_once() {
        for busy in [
            "D1_ERROR: SQLITE_BUSY: database is locked",
            "Error: database is locked",
            "D1 DB is overloaded. Requests queued for too long.",
        ] {
            assert_eq!(DbError::classify(busy), DbError::Busy, "{busy}");
        }
        let unique =
            DbError::classify("D1_ERROR: UNIQUE constraint failed: orgs.slug: SQLITE_CONSTRAINT");
        assert_eq!(
            unique,
            DbError::Unique {
                table: "orgs".into()
            }
        );
        assert!(unique.is_unique_in("orgs"));
        assert!(DbError::classify(
            "UNIQUE constraint failed: audit_events.chain, audit_events.seq"
        )
        .is_unique_in("audit_events"));
        assert!(matches!(
            DbError::classify("D1_ERROR: CHECK constraint failed: ok = 1: SQLITE_CONSTRAINT"),
            DbError::Guard(_)
        ));
        assert_eq!(DbError::classify("no such table: nope"), DbError::Other);
        assert_eq!(
            DbError::classify("CHECK constraint failed: role IN ('owner')"),
            DbError::Other
        );
    }

    /// A busy database is a retryable 503 with `Retry-After`, never a bare 500.
    #[test]
    fn busy_is_a_503_with_retry_after() {
        let e = ApiError::from(DbError::classify("SQLITE_BUSY: database is locked"));
        assert_eq!(e.status(), 503);
        assert_eq!(e.retry_after, Some(1));
        assert_eq!(ApiError::from(DbError::Other).status(), 500);
        assert_eq!(
            ApiError::from(DbError::Unique {
                table: "orgs".into()
            })
            .status(),
            409
        );
    }
}
