//! SCIM Users: a person's account (by email) and their membership in the key's org.
//!
//! Creating a user for a new email creates the account and adds the membership with the
//! default role; an existing account is linked only when the person is already a member (an
//! org's key never adds someone else's account without their consent: they are invited).
//! `active = false` and DELETE deprovision a member: in one batch, this org's CLI tokens (and
//! the person's web sessions, when this was their last org) are revoked
//! (`sessions::plan_sign_out`, the sign-out path of the product itself) and the membership is
//! removed with the guards of any removal (`members::removal_batch`: never the org's last
//! owner); after the batch this isolate forgets the revoked sessions and the membership, so the
//! person's next request to this org is refused.
//!
//! Why these batches are committed as plain statements (`Writes::Unscoped`) rather than as the
//! `OrgBatch` (as groups are): a user's change may carry platform rows that belong to no org —
//! the new account's `users` insert and the sign-out's `UPDATE sessions` (web sessions are not
//! bound to an org) — and an `OrgBatch` only holds statements that name its org. The org's own
//! rows are still built by `OrgBatch` (each statement binds the key's org), and SCIM requests
//! carry no org in their facts, so nothing else could be bound; the events name the org's
//! chain explicitly.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::auth::Role;
use edgeplane_core::ids::{OrgId, TypedId, UserId};
use edgeplane_core::scim::list::{self, ListQuery};
use edgeplane_core::scim::patch;
use edgeplane_core::scim::resource::{UserAttr, UserFields, UserRecord};
use edgeplane_core::scim::{ScimError, ScimType};
use edgeplane_core::{ApiError, ErrorCode};
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

#[derive(Deserialize)]
struct Count {
    n: i64,
}

/// The writes that take a person out of the org, when they are a member: their membership
/// removed under the guards of every removal, and a sign-out planned into `stmts` and `events`.
/// The sign-out always ends this org's CLI tokens; it ends the person's web sessions (which are
/// not bound to an org) only when this was their last membership, since an org's IdP must not
/// sign a person out of the other orgs they belong to. Removing the membership is what cuts
/// their web access to this org (immediately on this isolate, within the membership cache's
/// lifetime elsewhere). With no membership there is nothing to take away and no sign-out. The
/// sign-out's `forget` is for after the commit.
async fn deprovision(
    cx: &Cx<'_>,
    org: &OrgId,
    user: &UserId,
    stmts: &mut Vec<Stmt>,
    events: &mut Vec<Event>,
) -> Result<(Option<sessions::SignOut>, OrgBatch), ScimError> {
    let role = cx
        .db()
        .first::<RoleRow>(
            "SELECT role FROM memberships WHERE org_id = ? AND user_id = ?",
            args![org.as_str(), user.as_str()],
        )
        .await?;
    let Some(role) = role else {
        return Ok((None, OrgBatch::new(org.as_str())));
    };
    let role = Role::parse(&role.role).ok_or_else(ScimError::internal)?;
    let batch = members::removal_batch(org, user, role);
    let elsewhere = cx
        .db()
        .first::<Count>(
            "SELECT COUNT(*) AS n FROM memberships WHERE user_id = ? AND org_id != ?",
            args![user.as_str(), org.as_str()],
        )
        .await?
        .map_or(0, |c| c.n);
    let scope = if elsewhere > 0 {
        SignOutScope::OrgTokens(org)
    } else {
        SignOutScope::ReachingOrg(org)
    };
    let sign_out = sessions::plan_sign_out(cx, user.as_str(), scope).await?;
    stmts.push(sign_out.stmt.clone());
    events.push(sign_out.event.clone());
    Ok((Some(sign_out), batch))
}

/// Writes `f` over the user's row, guarded in the same batch by `active` still being
/// `was_active`, the value the change was planned from: a concurrent (de)activation that
/// committed in between makes this batch fail with a 409 instead of writing a stale `active`
/// back (which would leave an active user without a membership, or the reverse).
fn update_row(batch: OrgBatch, user: &str, was_active: bool, f: &UserFields, now: i64) -> OrgBatch {
    let org = batch.org_id().to_owned();
    batch
        .guard(
            "(SELECT active FROM scim_users WHERE org_id = ? AND user_id = ?) = ?",
            args![org, user, i64::from(was_active)],
            ApiError::conflict(
                "the user was changed by another request meanwhile: read it again and retry",
            ),
        )
        .update(
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

/// SCIM links an existing account only when the person is already a member of the org: an
/// org's key must not pull someone else's account into the org without their consent (they are
/// invited instead). The same answer whether or not the account is disabled.
fn not_a_member() -> ApiError {
    ApiError::new(
        ErrorCode::AlreadyExists,
        "an account with this email exists and is not a member of this org: invite the person \
         to the org first (SCIM links only existing members)",
    )
}

/// `POST /Users`.
///
/// A new email creates the account. An existing account is linked only if it is already a
/// member of this org (a guard in the batch keeps it so); otherwise `409 uniqueness`. The
/// IdP's names are kept on the SCIM resource, never written onto an existing account.
pub async fn create(
    cx: &Cx<'_>,
    org: &OrgId,
    body: &Value,
    base: &str,
) -> Result<Value, ScimError> {
    let f = UserFields::from_json(body)?;
    let now = now_ms();
    let existing = signin::user_by_email(cx, &f.email).await?;
    let (account, mut stmts, mut events, created) = match existing {
        Some(u) => {
            let member = cx
                .db()
                .first::<RoleRow>(
                    "SELECT role FROM memberships WHERE org_id = ? AND user_id = ?",
                    args![org.as_str(), &u.id],
                )
                .await?;
            if member.is_none() {
                return Err(not_a_member().into());
            }
            (u, Vec::new(), Vec::new(), false)
        }
        None => signin::existing_or_new(
            None,
            &f.email,
            f.display_name.as_deref(),
            "scim",
            now,
            CreatedBy::Request,
        )?,
    };
    // Created inactive: a person who is already a member is taken out of the org, as by a
    // deactivation (a new account has no membership to remove).
    let mut sign_out = None;
    let batch = if f.active || created {
        OrgBatch::new(org.as_str())
    } else {
        let user = UserId::parse(&account.id).map_err(|_| ScimError::internal())?;
        let (plan, batch) = deprovision(cx, org, &user, &mut stmts, &mut events).await?;
        sign_out = plan;
        batch
    };
    let mut batch = batch.insert(
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
    // Linking an active member: the membership must still be there when the batch runs (an
    // inactive one was read by `deprovision`, whose removal guards check it the same way).
    if !created && f.active {
        batch = batch.guard(
            "EXISTS (SELECT 1 FROM memberships WHERE org_id = ? AND user_id = ?)",
            args![org.as_str(), &account.id],
            not_a_member(),
        );
    }
    if f.active {
        batch = provision(batch, org, &account.id, now);
    }
    stmts.extend(batch.into_stmts());
    events.push(
        Event::new(AuditAction::ScimUserCreated, "user", &account.id)
            .in_org(org.as_str())
            .meta(
                json!({"user_name": f.user_name, "external_id": f.external_id,
                "active": f.active}),
            ),
    );
    cx.commit(stmts, events).await.map_err(user_db_error)?;
    if let Some(plan) = sign_out {
        plan.forget();
    }
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
    // An inactive result takes the person out of the org whenever they are still a member
    // (also when the resource was inactive already: the membership may have come back since).
    let batch = if next.active {
        OrgBatch::new(org.as_str())
    } else {
        let (plan, batch) = deprovision(cx, org, &user, &mut stmts, &mut events).await?;
        sign_out = plan;
        batch
    };
    let action = match (current.fields.active, next.active) {
        (true, false) => AuditAction::ScimUserDeactivated,
        (false, true) => AuditAction::ScimUserReactivated,
        _ => AuditAction::ScimUserUpdated,
    };
    events.push(
        Event::new(action, "user", user.as_str())
            .in_org(org.as_str())
            .meta(meta),
    );
    let batch = update_row(batch, user.as_str(), current.fields.active, &next, now);
    let batch = if next.active && !current.fields.active {
        provision(batch, org, user.as_str(), now)
    } else {
        batch
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

/// `DELETE /Users/{id}`: deprovisions (if still a member) and forgets the SCIM resource and its
/// group memberships. The account itself stays: it may belong to other orgs.
pub async fn delete(cx: &Cx<'_>, org: &OrgId, user: &UserId) -> Result<(), ScimError> {
    let current = load(cx, org, user).await?;
    let mut stmts: Vec<Stmt> = Vec::new();
    let mut events = Vec::new();
    // Whether or not the resource was active: a membership that exists is removed.
    let (sign_out, batch) = deprovision(cx, org, user, &mut stmts, &mut events).await?;
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
