//! Members and roles. Role changes and removals follow `edgeplane_core::auth::policy` and
//! `edgeplane_core::access::members`; what the decision read (the member's role, another owner
//! remaining) is re-checked by guards inside the same batch as the change, so two concurrent
//! changes cannot both act on a state only one of them saw.

use edgeplane_core::access::members::{acting_role, may_remove};
use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::auth::policy::may_change_role;
use edgeplane_core::auth::Role;
use edgeplane_core::ids::{OrgId, TypedId, UserId};
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::views::access::{MemberView, MembersView};
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::OrgBatch;
use serde::Deserialize;
use serde_json::json;

use crate::authn;
use crate::cx::Cx;

#[derive(Deserialize)]
struct MemberRow {
    user_id: String,
    email: String,
    display_name: Option<String>,
    role: String,
    created_at_ms: i64,
}

impl MemberRow {
    fn view(self) -> Result<MemberView, ApiError> {
        Ok(MemberView {
            user_id: UserId::parse(&self.user_id).map_err(|_| ApiError::internal())?,
            email: self.email,
            display_name: self.display_name,
            role: Role::parse(&self.role).ok_or_else(ApiError::internal)?,
            joined_at: rfc3339_millis(self.created_at_ms),
        })
    }
}

const SELECT: &str = "SELECT m.user_id, u.email, u.display_name, m.role, m.created_at_ms \
                      FROM memberships m JOIN users u ON u.id = m.user_id";

pub async fn list(cx: &Cx<'_>) -> Result<MembersView, ApiError> {
    let rows: Vec<MemberRow> = cx
        .db()
        .all(
            &format!("{SELECT} WHERE m.org_id = ? ORDER BY m.created_at_ms, m.user_id"),
            args![&cx.org()?.org_id],
        )
        .await?;
    Ok(MembersView {
        members: rows
            .into_iter()
            .map(MemberRow::view)
            .collect::<Result<_, _>>()?,
    })
}

async fn load(cx: &Cx<'_>, user: &UserId) -> Result<MemberView, ApiError> {
    cx.db()
        .first::<MemberRow>(
            &format!("{SELECT} WHERE m.org_id = ? AND m.user_id = ?"),
            args![&cx.org()?.org_id, user.as_str()],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?
        .view()
}

/// Whether the caller is `user` acting as themselves. Sessions and CLI tokens act as their
/// person (they carry a membership role); an API key is org automation, never "oneself", even
/// though it records who created it.
fn acts_as(cx: &Cx<'_>, user: &UserId) -> Result<bool, ApiError> {
    Ok(cx.org()?.role.is_some() && cx.principal.user_id.as_deref() == Some(user.as_str()))
}

/// The member still has the role the decision saw: checked inside the batch. Without it a
/// concurrent change (a promotion to owner) would let a decision made for the old role apply to
/// the new one.
fn role_unchanged(batch: OrgBatch, org: &str, user: &UserId, seen: Role) -> OrgBatch {
    batch.guard(
        "(SELECT role FROM memberships WHERE org_id = ? AND user_id = ?) = ?",
        args![org, user.as_str(), seen.as_str()],
        ApiError::conflict("the member's role changed concurrently; retry"),
    )
}

/// At least one owner other than `user` remains: checked inside the batch.
fn another_owner_remains(batch: OrgBatch, org: &str, user: &UserId) -> OrgBatch {
    batch.guard(
        "(SELECT COUNT(*) FROM memberships WHERE org_id = ? AND role = 'owner' AND user_id != ?) >= 1",
        args![org, user.as_str()],
        ApiError::new(
            ErrorCode::Conflict,
            "an organization must keep at least one owner: make someone else owner first",
        ),
    )
}

/// The writes of a role change decided on `seen`.
pub fn role_change_batch(org: &OrgId, user: &UserId, seen: Role, new: Role) -> OrgBatch {
    let mut b = role_unchanged(OrgBatch::new(org.as_str()), org.as_str(), user, seen);
    if seen == Role::Owner {
        b = another_owner_remains(b, org.as_str(), user);
    }
    b.update(
        "memberships",
        "role = ?",
        args![new.as_str()],
        "user_id = ?",
        args![user.as_str()],
    )
}

/// The writes of a removal decided on `seen`: the same guards as a role change.
pub fn removal_batch(org: &OrgId, user: &UserId, seen: Role) -> OrgBatch {
    let mut b = role_unchanged(OrgBatch::new(org.as_str()), org.as_str(), user, seen);
    if seen == Role::Owner {
        b = another_owner_remains(b, org.as_str(), user);
    }
    b.delete("memberships", "user_id = ?", args![user.as_str()])
}

fn org_id(cx: &Cx<'_>) -> Result<OrgId, ApiError> {
    OrgId::parse(&cx.org()?.org_id).map_err(|_| ApiError::internal())
}

pub async fn change_role(cx: &Cx<'_>, user: &UserId, new: Role) -> Result<MemberView, ApiError> {
    let current = load(cx, user).await?;
    let org = cx.org()?;
    may_change_role(acting_role(org), acts_as(cx, user)?, current.role, new)?;
    if current.role == new {
        return Ok(current);
    }
    let event = Event::new(AuditAction::MemberRoleChanged, "membership", user.as_str())
        .meta(json!({"from": current.role.as_str(), "to": new.as_str()}));
    cx.commit(
        role_change_batch(&org_id(cx)?, user, current.role, new),
        [event],
    )
    .await?;
    authn::forget_memberships(user.as_str());
    load(cx, user).await
}

async fn remove_member(cx: &Cx<'_>, user: &UserId, action: AuditAction) -> Result<(), ApiError> {
    let role = load(cx, user).await?.role;
    if !may_remove(acting_role(cx.org()?), acts_as(cx, user)?, role) {
        return Err(ApiError::forbidden("only an owner can remove an owner"));
    }
    let event =
        Event::new(action, "membership", user.as_str()).meta(json!({"role": role.as_str()}));
    cx.commit(removal_batch(&org_id(cx)?, user, role), [event])
        .await?;
    authn::forget_memberships(user.as_str());
    Ok(())
}

pub async fn remove(cx: &Cx<'_>, user: &UserId) -> Result<(), ApiError> {
    remove_member(cx, user, AuditAction::MemberRemoved).await
}

/// A person leaves an org themselves (any role; the last owner cannot).
pub async fn leave(cx: &Cx<'_>) -> Result<(), ApiError> {
    // Only a person acting as themselves (a session or CLI token, which carry a role) leaves;
    // an API key has no membership to give up.
    let me = match (cx.org()?.role, cx.principal.user_id.as_deref()) {
        (Some(_), Some(user)) => UserId::parse(user).map_err(|_| ApiError::internal())?,
        _ => {
            return Err(ApiError::forbidden(
                "only a member signed in as themselves can leave an organization",
            ))
        }
    };
    remove_member(cx, &me, AuditAction::MemberLeft).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::access::sqlite;

    const ORG: &str = "org_0190000000000123456789abcdef";
    const OWNER: &str = "usr_0190000000000000000000000001";
    const TARGET: &str = "usr_0190000000000000000000000002";

    fn org_with_member() -> rusqlite::Connection {
        let conn = sqlite::schema();
        sqlite::exec(
            &conn,
            &format!(
                "INSERT INTO users (id, email, created_at_ms) VALUES ('{OWNER}', 'o@x', 1), ('{TARGET}', 't@x', 1);
                 INSERT INTO orgs (id, slug, name, created_at_ms, created_by) VALUES ('{ORG}', 's', 'S', 1, '{OWNER}');
                 INSERT INTO memberships (org_id, user_id, role, created_at_ms) VALUES
                   ('{ORG}', '{OWNER}', 'owner', 1), ('{ORG}', '{TARGET}', 'member', 1);"
            ),
        );
        conn
    }

    fn ids() -> (OrgId, UserId) {
        (OrgId::parse(ORG).unwrap(), UserId::parse(TARGET).unwrap())
    }

    /// An admin decides to remove a member; before the removal's batch lands, an owner promotes
    /// that member to owner. The removal, decided for a member, must not remove an owner.
    #[test]
    fn a_removal_decided_before_a_promotion_does_not_remove_the_new_owner() {
        let mut conn = org_with_member();
        let (org, user) = ids();
        let removal = removal_batch(&org, &user, Role::Member).into_stmts();
        sqlite::batch(
            &mut conn,
            &role_change_batch(&org, &user, Role::Member, Role::Owner).into_stmts(),
        )
        .unwrap();
        assert!(sqlite::batch(&mut conn, &removal).is_err());
        let role = sqlite::text(
            &conn,
            &format!("SELECT role FROM memberships WHERE user_id = '{TARGET}'"),
        );
        assert_eq!(role.as_deref(), Some("owner"));
    }

    #[test]
    fn a_removal_on_the_state_it_saw_applies_and_binds_the_org() {
        let mut conn = org_with_member();
        let (org, user) = ids();
        let removal = removal_batch(&org, &user, Role::Member).into_stmts();
        // Every write names the org itself.
        assert!(removal
            .iter()
            .filter(|s| !s.sql.contains("batch_guards"))
            .all(|s| s.sql.contains("org_id = ?")));
        sqlite::batch(&mut conn, &removal).unwrap();
        assert_eq!(
            sqlite::text(
                &conn,
                &format!("SELECT role FROM memberships WHERE user_id = '{TARGET}'")
            ),
            None
        );
        // The last owner cannot be removed, whoever decided it.
        let owner = UserId::parse(OWNER).unwrap();
        assert!(sqlite::batch(
            &mut conn,
            &removal_batch(&org, &owner, Role::Owner).into_stmts()
        )
        .is_err());
    }
}
