//! The review row and its state transitions. Every transition is conditional on the state it
//! leaves, so a superseded review (or a concurrent redelivery) finds 0 rows changed and stops.

use edgeplane_core::review::status::ReviewStatus;
use edgeplane_core::ApiError;
use edgeplane_runtime::{args, Db};
use serde::Deserialize;

/// How long a claimed review is reserved for the delivery working on it. A redelivery within
/// the lease waits; after it (the worker died mid-job) the next delivery takes over.
pub const LEASE_MS: i64 = 15 * 60 * 1000;

#[derive(Deserialize, Clone)]
pub struct ReviewRow {
    pub id: String,
    pub org_id: String,
    pub integration_id: String,
    pub repo_id: String,
    pub repo_name: String,
    pub pr_number: i64,
    pub head_sha: String,
    pub status: ReviewStatus,
    pub attempts: i64,
    pub work_sealed: Option<String>,
}

const COLUMNS: &str =
    "id, org_id, integration_id, repo_id, repo_name, pr_number, head_sha, status, attempts, \
    work_sealed";

pub enum Claim {
    /// This delivery owns the review now.
    Claimed(Box<ReviewRow>),
    /// Already ended (done, failed, skipped): a redelivery, nothing to do.
    Finished,
    /// Another delivery holds the lease; try again after it.
    Busy { retry_in_secs: u32 },
    /// No such review in this org.
    Missing,
}

#[derive(Deserialize)]
struct StatusRow {
    status: ReviewStatus,
    lease_until_ms: Option<i64>,
}

pub async fn claim(db: &Db, org_id: &str, review_id: &str, now: i64) -> Result<Claim, ApiError> {
    let row: Option<ReviewRow> = db
        .first(
            &format!(
                "UPDATE reviews SET attempts = attempts + 1, lease_until_ms = ?, \
                 fetching_at_ms = CASE WHEN status = 'queued' THEN ? ELSE fetching_at_ms END, \
                 status = CASE WHEN status = 'queued' THEN 'fetching' ELSE status END \
                 WHERE id = ? AND org_id = ? AND (status = 'queued' OR \
                 (status IN {active} AND coalesce(lease_until_ms, 0) < ?)) \
                 RETURNING {COLUMNS}",
                active = ReviewStatus::ACTIVE_SQL
            ),
            args![now + LEASE_MS, now, review_id, org_id, now],
        )
        .await?;
    if let Some(r) = row {
        return Ok(Claim::Claimed(Box::new(r)));
    }
    let s: Option<StatusRow> = db
        .first(
            "SELECT status, lease_until_ms FROM reviews WHERE id = ? AND org_id = ?",
            args![review_id, org_id],
        )
        .await?;
    Ok(match s {
        None => Claim::Missing,
        Some(s) if s.status.is_finished() => Claim::Finished,
        Some(s) => Claim::Busy {
            retry_in_secs: ((s.lease_until_ms.unwrap_or(now) - now).max(0) / 1000 + 1).min(900)
                as u32,
        },
    })
}

/// Moves from `from` to the phase `to`, stamping its start. False when the review left `from`
/// (superseded): the caller stops.
pub async fn advance(
    db: &Db,
    id: &str,
    from: ReviewStatus,
    to: ReviewStatus,
    now: i64,
) -> Result<bool, ApiError> {
    // Only the phases have a start column; an end state is never reached through here.
    let column = to.started_column().ok_or_else(ApiError::internal)?;
    let w = db
        .run_unaudited(
            &format!("UPDATE reviews SET status = ?, {column} = ? WHERE id = ? AND status = ?"),
            args![to.as_str(), now, id, from.as_str()],
        )
        .await?;
    Ok(w.changes == 1)
}

/// Gives the lease back so the queue's retry can claim the review again.
pub async fn release(db: &Db, id: &str, error: &str) -> Result<(), ApiError> {
    db.run_unaudited(
        &format!(
            "UPDATE reviews SET lease_until_ms = NULL, error = ? WHERE id = ? AND status IN {}",
            ReviewStatus::ACTIVE_SQL
        ),
        args![error, id],
    )
    .await
    .map(|_| ())
}

pub async fn is_active(db: &Db, id: &str) -> Result<bool, ApiError> {
    let s: Option<StatusRow> = db
        .first(
            "SELECT status, lease_until_ms FROM reviews WHERE id = ?",
            args![id],
        )
        .await?;
    Ok(s.is_some_and(|s| s.status.is_active()))
}
