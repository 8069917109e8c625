//! First-run setup: creates the first organization, its owner and an owner API key.
//!
//! A fresh deployment has no users to sign in as and no keys to call the API with. The operator
//! sets the `SETUP_TOKEN` secret, calls this once, and gets an owner key; afterwards the endpoint
//! refuses (409) because an organization exists. `scripts/dev` uses it to seed the demo org.

use edgeplane_core::audit::Actor;
use edgeplane_core::auth::credential::{mint, CredentialKind};
use edgeplane_core::auth::{Role, Scopes};
use edgeplane_core::crypto::constant_time_eq;
use edgeplane_core::ids::new_id;
use edgeplane_core::{validate, ApiError, ErrorCode};
use serde::Deserialize;

use crate::authn;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupRequest {
    org_name: String,
    #[serde(default)]
    org_slug: Option<String>,
    owner_email: String,
}

pub async fn setup(cx: &mut Cx<'_>) -> HttpResult {
    let Some(expected) = cx.cfg.setup_token.clone() else {
        return Err(ApiError::forbidden(
            "setup is disabled: SETUP_TOKEN is not configured",
        ));
    };
    let presented = authn::bearer(&cx.req)?
        .ok_or_else(|| ApiError::unauthenticated("setup requires the setup token as a bearer"))?;
    if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::new(
            ErrorCode::InvalidToken,
            "the setup token is not valid",
        ));
    }
    let body: SetupRequest = cx.json().await?;
    let name = validate::display_name(&body.org_name, "org_name")?;
    let slug = body.org_slug.unwrap_or_else(|| validate::slugify(&name));
    validate::slug(&slug)?;
    let email = validate::email(&body.owner_email)?;

    let now = now_ms();
    let org_id = new_id("org", now)?;
    let user_id = new_id("usr", now)?;
    let key_id = new_id("key", now)?;
    let key = mint(CredentialKind::ApiKey)?;
    let scopes = Scopes::all();

    let stmts = vec![
        Stmt::guard(
            "NOT EXISTS (SELECT 1 FROM orgs)",
            args![],
            ApiError::new(ErrorCode::Conflict, "this deployment is already set up"),
        ),
        Stmt::new(
            "INSERT INTO users (id, email, display_name, created_at_ms) VALUES (?, ?, NULL, ?)",
            args![&user_id, &email, now],
        ),
        Stmt::new(
            "INSERT INTO orgs (id, slug, name, created_at_ms, created_by) VALUES (?, ?, ?, ?, ?)",
            args![&org_id, &slug, &name, now, &user_id],
        ),
        Stmt::new(
            "INSERT INTO memberships (org_id, user_id, role, created_at_ms) VALUES (?, ?, ?, ?)",
            args![&org_id, &user_id, Role::Owner.as_str(), now],
        ),
        Stmt::new(
            "INSERT INTO api_keys (id, org_id, name, key_hash, hint, scopes, created_by, \
             created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            args![
                &key_id,
                &org_id,
                "setup owner key",
                &key.hash,
                &key.hint,
                scopes.to_space_separated(),
                &user_id,
                now
            ],
        ),
    ];
    let actor = Actor::system("setup");
    let events = vec![
        cx.rc.audit_as(
            actor.clone(),
            Some(&org_id),
            "org.created",
            "org",
            &org_id,
            serde_json::json!({"slug": slug, "name": name, "owner_user_id": user_id, "via": "setup"}),
        ),
        cx.rc.audit_as(
            actor,
            Some(&org_id),
            "api_key.created",
            "api_key",
            &key_id,
            serde_json::json!({"name": "setup owner key", "scopes": scopes.names()}),
        ),
    ];
    cx.db().commit_audited(stmts, events, now).await?;

    respond::created(&serde_json::json!({
        "org": {"id": org_id, "slug": slug, "name": name},
        "owner": {"id": user_id, "email": email},
        "api_key": {"id": key_id, "key": key.plaintext, "hint": key.hint, "scopes": scopes},
    }))
}
