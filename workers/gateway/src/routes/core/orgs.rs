//! Organizations (tenants).

use serde::{Deserialize, Serialize};

use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::ApiError;
use edgeplane_runtime::args;

#[derive(Deserialize)]
struct OrgRow {
    id: String,
    slug: String,
    name: String,
    created_at_ms: i64,
}

#[derive(Serialize)]
pub struct OrgView {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub created_at: String,
}

pub async fn get(cx: &mut Cx<'_>) -> HttpResult {
    let access = cx.org()?;
    let row: OrgRow = cx
        .db()
        .first(
            "SELECT id, slug, name, created_at_ms FROM orgs WHERE id = ? AND deleted_at_ms IS NULL",
            args![&access.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    respond::ok(&serde_json::json!({
        "org": OrgView {
            id: row.id,
            slug: row.slug,
            name: row.name,
            created_at: rfc3339_millis(row.created_at_ms),
        },
        "access": {
            "role": access.role,
            "scopes": access.scopes,
        }
    }))
}
