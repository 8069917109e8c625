//! SCIM Users: a person's account (by email) and their membership in the key's org.
//!
//! Creating links the account with that email, or creates it, and adds the membership with the
//! default role. `active = false` and DELETE deprovision: in one batch, the person's web sessions
//! and this org's CLI tokens are revoked (`sessions::plan_sign_out`, the sign-out path of the
//! product itself) and the membership is removed with the guards of any removal
//! (`members::removal_batch`: never the org's last owner); after the batch this isolate forgets
//! the revoked sessions and the membership, so the person's next request is refused.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::auth::Role;
use edgeplane_core::ids::{OrgId, TypedId, UserId};
use edgeplane_core::scim::list::{self, ListQuery};
use edgeplane_core::scim::patch;
use edgeplane_core::scim::resource::{UserAttr, UserFields, UserRecord};
use edgeplane_core::scim::{ScimError, ScimType};
use edgeplane_runtime::args;
use edgeplane_runtime::db::{DbError, OrgBatch, Stmt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{db_error, page, sync_roles, Listing};
use crate::authn;
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::service::access::members;
use crate::service::identity::sessions::{self, SignOutScope};
use crate::service::identity::signin::{self, CreatedBy};

#[derive(Deserialize)]
struct Row {
    user_id: String,
    user_name: String,
    external_id: Option<String>,
    display_name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    active: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
    email: String,
}

impl Row {
    fn record(self) -> UserRecord {
        UserRecord {
            id: self.user_id,
            fields: UserFields {
                user_name: self.user_name,
                external_id: self.external_id,
                display_name: self.display_name,
                given_name: self.given_name,
                family_name: self.family_name,
                email: self.email,
                active: self.active != 0,
            },
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        }
    }
}

const LISTING: Listing = Listing {
    from: "scim_users s JOIN users u ON u.id = s.user_id",
    org_column: "s.org_id",
    columns: "s.user_id, s.user_name, s.external_id, s.display_name, s.given_name, \
              s.family_name, s.active, s.created_at_ms, s.updated_at_ms, u.email",
    order: "s.created_at_ms, s.user_id",
};

async fn load(cx: &Cx<'_>, org: &OrgId, user: &UserId) -> Result<UserRecord, ScimError> {
    cx.db()
        .first::<Row>(
            &format!(
                "SELECT {} FROM {} WHERE s.org_id = ? AND s.user_id = ?",
                LISTING.columns, LISTING.from
            ),
            args![org.as_str(), user.as_str()],
        )
        .await?
        .map(Row::record)
        .ok_or_else(|| ScimError::not_found("user"))
}

pub async fn get(cx: &Cx<'_>, org: &OrgId, user: &UserId, base: &str) -> Result<Value, ScimError> {
    Ok(load(cx, org, user).await?.to_json(base))
}

pub async fn list(cx: &Cx<'_>, org: &OrgId, q: &ListQuery, base: &str) -> Result<Value, ScimError> {
    let (total, rows) = page::<UserAttr, Row>(cx, org, q, &LISTING).await?;
    let resources = rows.into_iter().map(|r| r.record().to_json(base)).collect();
    Ok(list::response(total, q.start_index, resources))
}

/// The membership insert and role sync of an active SCIM user. A person who is already a
/// member keeps their membership (and role, unless a group mapping decides it).
fn provision(batch: OrgBatch, org: &OrgId, user: &str, now: i64) -> OrgBatch {
    let batch = batch.insert_select(
        "memberships",
        &["user_id", "role", "created_at_ms"],
        "?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM memberships WHERE org_id = ? AND user_id = ?)",
        args![user, Role::Member.as_str(), now, org.as_str(), user],
    );
    sync_roles(batch, org)
}

#[derive(Deserialize)]
struct RoleRow {
    role: String,
}

/// The writes that take a person out of the org: their sessions reaching it revoked (the
/// statement and event added to `stmts` and `events`), their membership removed (if they still
/// have one) under the guards of every removal. The sign-out's `forget` is for after the commit.
async fn deprovision(
    cx: &Cx<'_>,
    org: &OrgId,
    user: &UserId,
    stmts: &mut Vec<Stmt>,
    events: &mut Vec<Event>,
) -> Result<(sessions::SignOut, OrgBatch), ScimError> {
    let role = cx
        .db()
        .first::<RoleRow>(
            "SELECT role FROM memberships WHERE org_id = ? AND user_id = ?",
            args![org.as_str(), user.as_str()],
        )
        .await?;
    let batch = match role {
        Some(r) => {
            let role = Role::parse(&r.role).ok_or_else(ScimError::internal)?;
            members::removal_batch(org, user, role)
        }
        None => OrgBatch::new(org.as_str()),
    };
    let sign_out =
        sessions::plan_sign_out(cx, user.as_str(), SignOutScope::ReachingOrg(org)).await?;
    stmts.push(sign_out.stmt.clone());
    events.push(sign_out.event.clone());
    Ok((sign_out, batch))
}

fn update_row(batch: OrgBatch, user: &str, f: &UserFields, now: i64) -> OrgBatch {
    batch.update(
        "scim_users",
        "user_name = ?, external_id = ?, display_name = ?, given_name = ?, family_name = ?, \
         active = ?, updated_at_ms = ?",
        args![
            &f.user_name,
            f.external_id.clone(),
            f.display_name.clone(),
            f.given_name.clone(),
            f.family_name.clone(),
            i64::from(f.active),
            now
        ],
        "user_id = ?",
        args![user],
    )
}

/// A user's userName (or, on creation, the account) is already this org's: `uniqueness`.
fn user_db_error(e: DbError) -> ScimError {
    if e.is_unique_in("scim_users") {
        ScimError::uniqueness("a user with this userName or email exists in this org")
    } else {
        db_error(e)
    }
}

/// `POST /Users`.
pub async fn create(
    cx: &Cx<'_>,
    org: &OrgId,
    body: &Value,
    base: &str,
) -> Result<Value, ScimError> {
    let f = UserFields::from_json(body)?;
    let now = now_ms();
    let existing = signin::user_by_email(cx, &f.email).await?;
    let (account, mut stmts, mut events, created) = signin::existing_or_new(
        existing,
        &f.email,
        f.display_name.as_deref(),
        "scim",
        now,
        CreatedBy::Request,
    )?;
    let mut batch = OrgBatch::new(org.as_str()).insert(
        "scim_users",
        &[
            "user_id",
            "user_name",
            "external_id",
            "display_name",
            "given_name",
            "family_name",
            "active",
            "created_at_ms",
            "updated_at_ms",
        ],
        args![
            &account.id,
            &f.user_name,
            f.external_id.clone(),
            f.display_name.clone(),
            f.given_name.clone(),
            f.family_name.clone(),
            i64::from(f.active),
            now,
            now
        ],
    );
    if f.active {
        batch = provision(batch, org, &account.id, now);
    }
    stmts.extend(batch.into_stmts());
    events.push(
        Event::new(AuditAction::ScimUserCreated, "user", &account.id)
            .in_org(org.as_str())
            .meta(
                json!({"user_name": f.user_name, "external_id": f.external_id,
                "active": f.active, "account_created": created}),
            ),
    );
    cx.commit(stmts, events).await.map_err(user_db_error)?;
    authn::forget_memberships(&account.id);
    let id = UserId::parse(&account.id).map_err(|_| ScimError::internal())?;
    get(cx, org, &id, base).await
}

/// Writes `next` over `current`: the row, and the membership when `active` changed.
async fn write(
    cx: &Cx<'_>,
    org: &OrgId,
    current: UserRecord,
    next: UserFields,
    base: &str,
) -> Result<Value, ScimError> {
    if next.email != current.fields.email {
        return Err(ScimError::bad(
            ScimType::Mutability,
            "the account's email cannot be changed through SCIM",
        ));
    }
    let user = UserId::parse(&current.id).map_err(|_| ScimError::not_found("user"))?;
    let now = now_ms();
    let changed: Vec<&str> = [
        ("userName", current.fields.user_name != next.user_name),
        ("externalId", current.fields.external_id != next.external_id),
        (
            "displayName",
            current.fields.display_name != next.display_name,
        ),
        (
            "name",
            current.fields.given_name != next.given_name
                || current.fields.family_name != next.family_name,
        ),
        ("active", current.fields.active != next.active),
    ]
    .into_iter()
    .filter_map(|(n, c)| c.then_some(n))
    .collect();
    let meta = json!({"changed": changed, "user_name": next.user_name});
    let mut stmts: Vec<Stmt> = Vec::new();
    let mut events = Vec::new();
    let mut sign_out = None;
    let batch = match (current.fields.active, next.active) {
        (true, false) => {
            let (plan, batch) = deprovision(cx, org, &user, &mut stmts, &mut events).await?;
            sign_out = Some(plan);
            events.push(
                Event::new(AuditAction::ScimUserDeactivated, "user", user.as_str())
                    .in_org(org.as_str())
                    .meta(meta),
            );
            update_row(batch, user.as_str(), &next, now)
        }
        (false, true) => {
            events.push(
                Event::new(AuditAction::ScimUserReactivated, "user", user.as_str())
                    .in_org(org.as_str())
                    .meta(meta),
            );
            provision(
                update_row(OrgBatch::new(org.as_str()), user.as_str(), &next, now),
                org,
                user.as_str(),
                now,
            )
        }
        _ => {
            events.push(
                Event::new(AuditAction::ScimUserUpdated, "user", user.as_str())
                    .in_org(org.as_str())
                    .meta(meta),
            );
            update_row(OrgBatch::new(org.as_str()), user.as_str(), &next, now)
        }
    };
    stmts.extend(batch.into_stmts());
    cx.commit(stmts, events).await.map_err(user_db_error)?;
    if let Some(plan) = sign_out {
        plan.forget();
    }
    authn::forget_memberships(user.as_str());
    get(cx, org, &user, base).await
}

/// `PUT /Users/{id}`: the body replaces what SCIM keeps of the user.
pub async fn replace(
    cx: &Cx<'_>,
    org: &OrgId,
    user: &UserId,
    body: &Value,
    base: &str,
) -> Result<Value, ScimError> {
    let current = load(cx, org, user).await?;
    let next = UserFields::from_json(body)?;
    write(cx, org, current, next, base).await
}

/// `PATCH /Users/{id}`.
pub async fn patch(
    cx: &Cx<'_>,
    org: &OrgId,
    user: &UserId,
    body: &Value,
    base: &str,
) -> Result<Value, ScimError> {
    let ops = patch::parse(body)?;
    let current = load(cx, org, user).await?;
    let next = patch::apply_to_user(&current.fields, &ops)?;
    write(cx, org, current, next, base).await
}

/// `DELETE /Users/{id}`: deprovisions (if still active) and forgets the SCIM resource and its
/// group memberships. The account itself stays: it may belong to other orgs.
pub async fn delete(cx: &Cx<'_>, org: &OrgId, user: &UserId) -> Result<(), ScimError> {
    let current = load(cx, org, user).await?;
    let mut stmts: Vec<Stmt> = Vec::new();
    let mut events = Vec::new();
    let mut sign_out = None;
    let batch = if current.fields.active {
        let (plan, batch) = deprovision(cx, org, user, &mut stmts, &mut events).await?;
        sign_out = Some(plan);
        batch
    } else {
        OrgBatch::new(org.as_str())
    };
    let batch = batch
        .delete("scim_group_members", "user_id = ?", args![user.as_str()])
        .delete("scim_users", "user_id = ?", args![user.as_str()]);
    stmts.extend(batch.into_stmts());
    events.push(
        Event::new(AuditAction::ScimUserDeleted, "user", user.as_str())
            .in_org(org.as_str())
            .meta(
                json!({"user_name": current.fields.user_name, "was_active": current.fields.active}),
            ),
    );
    cx.commit(stmts, events).await.map_err(db_error)?;
    if let Some(plan) = sign_out {
        plan.forget();
    }
    authn::forget_memberships(user.as_str());
    Ok(())
}
