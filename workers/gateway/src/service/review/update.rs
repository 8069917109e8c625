//! Partial updates (PATCH) as one statement: each changed field adds its assignment, and the
//! list of changed field names goes into the audit record (never the secret values).

use edgeplane_core::queue::ReviewQueueMessage;
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::db::{OrgBatch, Val};

use crate::cx::Cx;
use crate::http::log;

#[derive(Default)]
pub struct Update {
    sets: Vec<&'static str>,
    vals: Vec<Val>,
    pub changed: Vec<&'static str>,
}

impl Update {
    /// `assignment` is SQL like `name = ?`; `vals` bind its placeholders in order.
    pub fn set(&mut self, field: &'static str, assignment: &'static str, vals: Vec<Val>) {
        self.sets.push(assignment);
        self.vals.extend(vals);
        self.changed.push(field);
    }

    /// Adds `UPDATE <table> SET …, updated_at_ms = ? WHERE org_id = ? AND (id = ? <extra_where>)`
    /// to `batch`; answers the batch and the names of the changed fields.
    pub fn apply(
        mut self,
        batch: OrgBatch,
        table: &str,
        extra_where: &str,
        now: i64,
        id: &str,
    ) -> Result<(OrgBatch, Vec<&'static str>), ApiError> {
        if self.sets.is_empty() {
            return Err(ApiError::validation("nothing to update"));
        }
        self.sets.push("updated_at_ms = ?");
        self.vals.push(Val::from(now));
        let batch = batch.update(
            table,
            &self.sets.join(", "),
            self.vals,
            &format!("id = ?{extra_where}"),
            vec![Val::from(id)],
        );
        Ok((batch, self.changed))
    }
}

/// Sends a review job; a queue that refuses is a 503 the caller (or the platform) retries.
pub async fn enqueue(cx: &Cx<'_>, msg: &ReviewQueueMessage) -> Result<(), ApiError> {
    let sent = match cx.env.queue("REVIEW_QUEUE") {
        Ok(q) => q.send(msg).await,
        Err(e) => Err(e),
    };
    sent.map_err(|e| {
        log::error("enqueue review", &e.to_string());
        ApiError::new(
            ErrorCode::Unavailable,
            "the review queue did not accept the job",
        )
        .with_retry_after(30)
    })
}
