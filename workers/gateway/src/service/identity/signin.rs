//! Finishing a sign-in, whichever way it started: find or create the user, link a provider
//! identity, open a session — one audited batch, so a sign-in either fully happens or not at all.

use edgeplane_core::audit::{Actor, AuditAction, Event};
use edgeplane_core::identity::oidc::ExternalIdentity;
use edgeplane_core::identity::session::SessionKind;
use edgeplane_core::ids::{TypedId, UserId};
use edgeplane_core::views::identity::{SessionIssued, UserView};
use edgeplane_core::{validate, ApiError};
use edgeplane_runtime::args;
use edgeplane_runtime::db::{DbError, Stmt};
use serde::Deserialize;
use serde_json::json;

use super::issue::{self, SessionSpec};
use crate::cx::Cx;
use crate::http::ctx::now_ms;

#[derive(Deserialize)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub display_name: Option<String>,
    pub disabled_at_ms: Option<i64>,
}

impl UserRow {
    pub fn view(&self) -> Result<UserView, ApiError> {
        Ok(UserView {
            id: UserId::parse(&self.id).map_err(|_| ApiError::internal())?,
            email: self.email.clone(),
            display_name: self.display_name.clone(),
        })
    }
}

pub const USER_COLUMNS: &str = "id, email, display_name, disabled_at_ms";

pub async fn user_by_id(cx: &Cx<'_>, id: &str) -> Result<UserRow, ApiError> {
    cx.db()
        .first(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"),
            args![id],
        )
        .await?
        .ok_or_else(ApiError::internal)
}

pub(crate) async fn user_by_email(cx: &Cx<'_>, email: &str) -> Result<Option<UserRow>, ApiError> {
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

/// Who creates an account: the person signing in (who has no credential yet), or the request's
/// credential (an org's SCIM key provisioning the person).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CreatedBy {
    Themselves,
    Request,
}

/// The user for `email`: the existing one, or statements and an event creating it.
pub(crate) fn existing_or_new(
    existing: Option<UserRow>,
    email: &str,
    name: Option<&str>,
    via: &str,
    now: i64,
    by: CreatedBy,
) -> Result<(UserRow, Vec<Stmt>, Vec<Event>, bool), ApiError> {
    if let Some(u) = existing {
        if u.disabled_at_ms.is_some() {
            return Err(disabled());
        }
        return Ok((u, vec![], vec![], false));
    }
    let id = UserId::generate(now)?.into_string();
    let display_name = name.and_then(|n| validate::display_name(n, "name").ok());
    let stmts = vec![Stmt::new(
        "INSERT INTO users (id, email, display_name, created_at_ms) VALUES (?, ?, ?, ?)",
        args![&id, email, display_name.clone(), now],
    )];
    let created =
        Event::new(AuditAction::UserCreated, "user", &id).meta(json!({"email": email, "via": via}));
    let events = vec![match by {
        CreatedBy::Themselves => created.by(Actor::user(&id)),
        CreatedBy::Request => created,
    }];
    let user = UserRow {
        id,
        email: email.to_owned(),
        display_name,
        disabled_at_ms: None,
    };
    Ok((user, stmts, events, true))
}

/// Why an attempt to finish a sign-in failed.
enum Failed {
    /// A concurrent first sign-in of the same person won a unique key; the retry finds what the
    /// other created.
    Raced,
    Api(ApiError),
}

impl From<ApiError> for Failed {
    fn from(e: ApiError) -> Self {
        Failed::Api(e)
    }
}

impl From<DbError> for Failed {
    fn from(e: DbError) -> Self {
        if e.is_unique_in("users") || e.is_unique_in("user_identities") {
            Failed::Raced
        } else {
            Failed::Api(e.into())
        }
    }
}

/// Opens a web session for `user` after `stmts` (e.g. spending the magic link) in one batch.
async fn open_session(
    cx: &Cx<'_>,
    user: UserRow,
    mut stmts: Vec<Stmt>,
    mut events: Vec<Event>,
    method: &str,
    new_user: bool,
    now: i64,
) -> Result<SessionIssued, Failed> {
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
    cx.commit(stmts, events).await?;
    let mut body = issue::session_body(issued, user.view()?)?;
    body.new_user = Some(new_user);
    Ok(body)
}

/// Signs in the owner of `email` (already proven, e.g. by a spent magic link in `pre`).
pub async fn by_email(
    cx: &Cx<'_>,
    email: &str,
    pre: Vec<Stmt>,
    method: &str,
) -> Result<SessionIssued, ApiError> {
    for attempt in 0..2 {
        let now = now_ms();
        let existing = user_by_email(cx, email).await?;
        let (user, stmts, events, new_user) =
            existing_or_new(existing, email, None, method, now, CreatedBy::Themselves)?;
        let mut all = pre.clone();
        all.extend(stmts);
        match open_session(cx, user, all, events, method, new_user, now).await {
            Ok(body) => return Ok(body),
            Err(Failed::Raced) if attempt == 0 => continue,
            Err(Failed::Raced) => break,
            Err(Failed::Api(e)) => return Err(e),
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
pub async fn by_identity(
    cx: &Cx<'_>,
    provider: &str,
    id: &ExternalIdentity,
) -> Result<SessionIssued, ApiError> {
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
            let user = user_by_id(cx, &l.user_id).await?;
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
            let (user, mut stmts, mut events, new_user) = existing_or_new(
                existing,
                &email,
                id.name.as_deref(),
                &method,
                now,
                CreatedBy::Themselves,
            )?;
            stmts.push(Stmt::new(
                "INSERT INTO user_identities (provider, subject, user_id, email, created_at_ms, \
                 last_used_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                args![provider, &id.subject, &user.id, &email, now, now],
            ));
            events.push(
                Event::new(AuditAction::UserIdentityLinked, "user", &user.id)
                    .by(Actor::user(&user.id))
                    .meta(json!({"provider": provider})),
            );
            open_session(cx, user, stmts, events, &method, new_user, now).await
        };
        match result {
            Ok(body) => return Ok(body),
            Err(Failed::Raced) if attempt == 0 => continue,
            Err(Failed::Raced) => break,
            Err(Failed::Api(e)) => return Err(e),
        }
    }
    Err(ApiError::conflict("the sign-in raced another one; retry"))
}
