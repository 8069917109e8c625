//! A new model version's row, written once: an uploaded base (the gateway's upload route) and a
//! round's publication (its coordinator) record a version the same way. The version number is
//! the model's latest plus one, computed in the inserting statement itself, so two writers
//! cannot take one number (the second fails on `UNIQUE (model_id, version)`).

use crate::store::Value;

/// A version about to be recorded as `ready`. The org is not here: the caller's org batch binds
/// it (see `edgeplane_runtime::db::OrgBatch::insert_select`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewVersion<'a> {
    pub id: &'a str,
    pub model_id: &'a str,
    /// The version a round started from; none for an upload.
    pub parent_id: Option<&'a str>,
    /// The round that produced it; none for an upload.
    pub round_id: Option<&'a str>,
    pub sha256: &'a str,
    pub size_bytes: i64,
    pub parameters: i64,
    /// The tensor manifest, as JSON.
    pub layout: String,
    /// Where the bytes are in R2, as JSON.
    pub pieces: String,
    /// How a round aggregated it, as JSON; none for an upload.
    pub aggregation: Option<String>,
    pub created_by: &'a str,
    pub created_at_ms: i64,
}

impl NewVersion<'_> {
    pub const TABLE: &'static str = "fl_model_versions";
    /// The columns after `org_id`.
    pub const COLUMNS: &'static [&'static str] = &[
        "id",
        "model_id",
        "version",
        "parent_id",
        "round_id",
        "status",
        "sha256",
        "size_bytes",
        "parameters",
        "layout",
        "pieces",
        "aggregation",
        "created_by",
        "created_at_ms",
    ];
    /// The rest of the `SELECT` after the org id; [`NewVersion::values`] binds it.
    pub const SELECT: &'static str =
        "?, ?, coalesce(max(version), 0) + 1, ?, ?, 'ready', ?, ?, ?, ?, ?, ?, ?, ? \
         FROM fl_model_versions WHERE model_id = ?";

    pub fn values(&self) -> Vec<Value> {
        vec![
            self.id.into(),
            self.model_id.into(),
            self.parent_id.into(),
            self.round_id.into(),
            self.sha256.into(),
            self.size_bytes.into(),
            self.parameters.into(),
            self.layout.as_str().into(),
            self.pieces.as_str().into(),
            self.aggregation.clone().into(),
            self.created_by.into(),
            self.created_at_ms.into(),
            self.model_id.into(),
        ]
    }
}
