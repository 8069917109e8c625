//! A model's stored versions as the federation services read them: the row (with its layout and
//! the R2 pieces of its file) and the look-up by number or id that rounds and deployments use.

use edgeplane_core::fl::layout::ModelLayout;
use edgeplane_core::fl::pieces::Piece;
use edgeplane_core::ids::{ModelVersionId, TypedId};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use serde::Deserialize;

use crate::cx::Cx;

#[derive(Debug, Clone, Deserialize)]
pub struct VersionRow {
    pub id: String,
    pub model_id: String,
    pub version: i64,
    pub parent_id: Option<String>,
    pub parent_version: Option<i64>,
    pub round_id: Option<String>,
    pub status: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub parameters: i64,
    pub layout: String,
    pub pieces: String,
    pub aggregation: Option<String>,
    pub created_at_ms: i64,
    pub approved_at_ms: Option<i64>,
}

pub const VERSION_SELECT: &str = "SELECT v.id, v.model_id, v.version, v.parent_id, p.version AS parent_version, \
     v.round_id, v.status, v.sha256, v.size_bytes, v.parameters, v.layout, v.pieces, v.aggregation, \
     v.created_at_ms, v.approved_at_ms FROM fl_model_versions v LEFT JOIN fl_model_versions p ON p.id = v.parent_id";

impl VersionRow {
    pub fn layout(&self) -> Result<ModelLayout, ApiError> {
        serde_json::from_str(&self.layout).map_err(|_| ApiError::internal())
    }

    pub fn pieces(&self) -> Result<Vec<Piece>, ApiError> {
        serde_json::from_str(&self.pieces).map_err(|_| ApiError::internal())
    }
}

/// A version of `model_id` by number, or by id.
pub async fn load_version(
    cx: &Cx<'_>,
    model_id: &str,
    org_id: &str,
    which: &str,
) -> Result<VersionRow, ApiError> {
    let row = if let Ok(n) = which.parse::<i64>() {
        cx.db()
            .first(
                &format!(
                    "{VERSION_SELECT} WHERE v.model_id = ? AND v.org_id = ? AND v.version = ?"
                ),
                args![model_id, org_id, n],
            )
            .await?
    } else if let Ok(id) = ModelVersionId::parse(which) {
        cx.db()
            .first(
                &format!("{VERSION_SELECT} WHERE v.model_id = ? AND v.org_id = ? AND v.id = ?"),
                args![model_id, org_id, id.as_str()],
            )
            .await?
    } else {
        None
    };
    row.ok_or_else(|| ApiError::not_found("model version"))
}
