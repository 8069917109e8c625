//! Finishing a sign-in, whichever way it started: find or create the user, link a provider
//! identity, open a session — one audited batch, so a sign-in either fully happens or not at all.

use edgeplane_core::audit::{Actor, NewEvent};
use edgeplane_core::identity::oidc::ExternalIdentity;
use edgeplane_core::identity::session::SessionKind;
use edgeplane_core::ids::new_id;
use edgeplane_core::{validate, ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;
use serde::Deserialize;
use serde_json::json;

use super::issue::{self, SessionSpec};
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;

#[derive(Deserialize)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub display_name: Option<String>,
    pub disabled_at_ms: Option<i64>,
}

impl UserRow {
    pub fn view(&self) -> serde_json::Value {
        json!({"id": self.id, "email": self.email, "display_name": self.display_name})
    }
}

const USER_COLUMNS: &str = "id, email, display_name, disabled_at_ms";

pub async fn user_by_email(cx: &Cx<'_>, email: &str) -> Result<Option<UserRow>, ApiError> {
    cx.db()
        .first(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?"),
            args![email],
        )
        .await
}

fn disabled() -> ApiError {
    ApiError::forbidden("this account is disabled")
}

fn user_actor(id: &str) -> Actor {
    Actor {
        kind: "user".into(),
        id: id.to_owned(),
    }
}

/// The user for `email`: the existing one, or statements and an event creating it.
fn existing_or_new(
    cx: &Cx<'_>,
    existing: Option<UserRow>,
    email: &str,
    name: Option<&str>,
    via: &str,
    now: i64,
) -> Result<(UserRow, Vec<Stmt>, Vec<NewEvent>, bool), ApiError> {
    if let Some(u) = existing {
        if u.disabled_at_ms.is_some() {
            return Err(disabled());
        }
        return Ok((u, vec![], vec![], false));
    }
    let id = new_id("usr", now)?;
    let display_name = name.and_then(|n| validate::display_name(n, "name").ok());
    let stmts = vec![Stmt::new(
        "INSERT INTO users (id, email, display_name, created_at_ms) VALUES (?, ?, ?, ?)",
        args![&id, email, display_name.clone(), now],
    )];
    let events = vec![cx.rc.audit_as(
        user_actor(&id),
        None,
        "user.created",
        "user",
        &id,
        json!({"email": email, "via": via}),
    )];
    let user = UserRow {
        id,
        email: email.to_owned(),
        display_name,
        disabled_at_ms: None,
    };
    Ok((user, stmts, events, true))
}

/// Opens a web session for `user` after `pre` (e.g. spending the magic link) in one batch.
async fn open_session(
    cx: &Cx<'_>,
    user: UserRow,
    mut stmts: Vec<Stmt>,
    mut events: Vec<NewEvent>,
    method: &str,
    new_user: bool,
    now: i64,
) -> HttpResult {
    let (session_stmts, event, issued) = issue::new_session(
        cx,
        &SessionSpec {
            user_id: &user.id,
            kind: SessionKind::Web,
            org: None,
            auth_method: method,
        },
        now,
    )?;
    stmts.extend(session_stmts);
    events.push(event);
    cx.db().commit_audited(stmts, events, now).await?;
    let mut body = issue::session_body(&issued, user.view());
    body["new_user"] = json!(new_user);
    respond::ok(&body)
}

/// Signs in the owner of `email` (already proven, e.g. by a spent magic link in `pre`).
pub async fn by_email(cx: &Cx<'_>, email: &str, pre: Vec<Stmt>, method: &str) -> HttpResult {
    // A concurrent first sign-in of the same address makes one batch fail on the unique email;
    // the retry then finds the user the other created.
    for attempt in 0..2 {
        let now = now_ms();
        let existing = user_by_email(cx, email).await?;
        let (user, mut stmts, events, new_user) =
            existing_or_new(cx, existing, email, None, method, now)?;
        let mut all = pre.clone();
        all.append(&mut stmts);
        match open_session(cx, user, all, events, method, new_user, now).await {
            Err(e) if e.code == ErrorCode::AlreadyExists && attempt == 0 => continue,
            other => return other,
        }
    }
    Err(ApiError::conflict("the sign-in raced another one; retry"))
}

#[derive(Deserialize)]
struct LinkedRow {
    user_id: String,
}

/// Signs in the person an identity provider vouched for. A known provider identity signs in
/// its user; an unknown one is linked to the user with the same email only if the provider
/// verified that email (never on an unverified claim, which anyone could set), or creates one.
pub async fn by_identity(cx: &Cx<'_>, provider: &str, id: &ExternalIdentity) -> HttpResult {
    let method = format!("provider:{provider}");
    for attempt in 0..2 {
        let now = now_ms();
        let linked: Option<LinkedRow> = cx
            .db()
            .first(
                "SELECT user_id FROM user_identities WHERE provider = ? AND subject = ?",
                args![provider, &id.subject],
            )
            .await?;
        let result = if let Some(l) = linked {
            let user: UserRow = cx
                .db()
                .first(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"),
                    args![&l.user_id],
                )
                .await?
                .ok_or_else(ApiError::internal)?;
            if user.disabled_at_ms.is_some() {
                return Err(disabled());
            }
            let stmts = vec![Stmt::new(
                "UPDATE user_identities SET last_used_at_ms = ? WHERE provider = ? AND subject = ?",
                args![now, provider, &id.subject],
            )];
            open_session(cx, user, stmts, vec![], &method, false, now).await
        } else {
            let email = id
                .email
                .as_deref()
                .filter(|_| id.email_verified)
                .and_then(|e| validate::email(e).ok())
                .ok_or_else(|| {
                    ApiError::forbidden(
                        "the identity provider did not confirm an email address for this account",
                    )
                })?;
            let existing = user_by_email(cx, &email).await?;
            let (user, mut stmts, mut events, new_user) =
                existing_or_new(cx, existing, &email, id.name.as_deref(), &method, now)?;
            stmts.push(Stmt::new(
                "INSERT INTO user_identities (provider, subject, user_id, email, created_at_ms, \
                 last_used_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                args![provider, &id.subject, &user.id, &email, now, now],
            ));
            events.push(cx.rc.audit_as(
                user_actor(&user.id),
                None,
                "user.identity_linked",
                "user",
                &user.id,
                json!({"provider": provider}),
            ));
            open_session(cx, user, stmts, events, &method, new_user, now).await
        };
        match result {
            Err(e) if e.code == ErrorCode::AlreadyExists && attempt == 0 => continue,
            other => return other,
        }
    }
    Err(ApiError::conflict("the sign-in raced another one; retry"))
}
