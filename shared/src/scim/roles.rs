//! Which role a SCIM-managed member holds: the org's mapping from IdP group to role
//! (`scim_group_roles`), applied in SQL inside every batch that changes a group, a member's
//! groups, a member's activation or the mapping itself, so a role is never out of step with
//! the groups that decide it.
//!
//! The rule: in an org that has a mapping, an active SCIM-managed member who is not an owner
//! holds the highest role mapped from their groups, `member` when none maps. An org without a
//! mapping leaves roles alone (members get the default role on creation and keep whatever an
//! owner or admin gives them). A mapping never names `owner`: ownership controls the org's
//! existence and its SCIM key, and is only ever handed over by an owner, in the product.

use serde::Deserialize;

use crate::auth::Role;
use crate::error::ApiError;
use crate::validate;

/// A role a group may grant: never `owner` (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MappedRole {
    Member,
    Admin,
}

impl MappedRole {
    pub fn role(self) -> Role {
        match self {
            MappedRole::Member => Role::Member,
            MappedRole::Admin => Role::Admin,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.role().as_str()
    }

    pub fn parse(s: &str) -> Option<Self> {
        match Role::parse(s)? {
            Role::Member => Some(MappedRole::Member),
            Role::Admin => Some(MappedRole::Admin),
            Role::Owner => None,
        }
    }
}

/// `GET`/`PUT …/scim/group-roles` answer the whole mapping.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupRolesView {
    pub mappings: Vec<GroupRole>,
}

/// Most mappings one org keeps.
pub const MAX_MAPPINGS: usize = 100;

/// One mapping, as the owner-only route takes and answers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupRole {
    /// The group's `displayName` as the IdP sends it (compared exactly).
    pub group: String,
    pub role: MappedRole,
}

/// One mapping as a client sends it (and as the worker hands rows to SQL).
#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRoleInput {
    group: String,
    role: String,
}

impl From<&GroupRole> for GroupRoleInput {
    fn from(m: &GroupRole) -> Self {
        GroupRoleInput {
            group: m.group.clone(),
            role: m.role.as_str().to_owned(),
        }
    }
}

/// `PUT …/scim/group-roles`: the org's whole mapping.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRolesInput {
    mappings: Vec<GroupRoleInput>,
}

impl GroupRolesInput {
    /// The mapping, checked: group names as display names are, each at most once, at most
    /// [`MAX_MAPPINGS`], and no role above admin.
    pub fn validate(self) -> Result<Vec<GroupRole>, ApiError> {
        if self.mappings.len() > MAX_MAPPINGS {
            return Err(ApiError::validation(format!(
                "at most {MAX_MAPPINGS} group mappings"
            )));
        }
        let mut out: Vec<GroupRole> = Vec::with_capacity(self.mappings.len());
        for m in self.mappings {
            let group = validate::display_name(&m.group, "group")?;
            let role = match Role::parse(&m.role) {
                Some(Role::Owner) => {
                    return Err(ApiError::validation(
                        "a SCIM group never grants owner: ownership is handed over by an owner",
                    ))
                }
                _ => MappedRole::parse(&m.role)
                    .ok_or_else(|| ApiError::validation("role must be admin or member"))?,
            };
            if out.iter().any(|o| o.group == group) {
                return Err(ApiError::validation(format!(
                    "group `{group}` is mapped twice"
                )));
            }
            out.push(GroupRole { group, role });
        }
        Ok(out)
    }
}

/// The `SET` of the role update over `memberships` (see [`SYNC_FILTER`]).
pub const SYNC_SET: &str = "role = CASE WHEN EXISTS (SELECT 1 FROM scim_group_members m \
     JOIN scim_groups g ON g.id = m.group_id AND g.org_id = m.org_id \
     JOIN scim_group_roles r ON r.org_id = g.org_id AND r.group_name = g.display_name \
     WHERE m.org_id = memberships.org_id AND m.user_id = memberships.user_id AND r.role = 'admin') \
     THEN 'admin' ELSE 'member' END";

/// Which memberships the sync touches: active SCIM-managed non-owners, in an org with a
/// mapping. Binds the org id twice.
pub const SYNC_FILTER: &str = "role != 'owner' \
     AND user_id IN (SELECT user_id FROM scim_users WHERE org_id = ? AND active = 1) \
     AND EXISTS (SELECT 1 FROM scim_group_roles WHERE org_id = ?)";

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: serde_json::Value) -> Result<Vec<GroupRole>, ApiError> {
        serde_json::from_value::<GroupRolesInput>(json)
            .unwrap()
            .validate()
    }

    #[test]
    fn mappings_never_grant_owner_and_name_each_group_once() {
        let ok = input(serde_json::json!({"mappings": [
            {"group": "Eng Admins", "role": "admin"}, {"group": "Everyone", "role": "member"}]}))
        .unwrap();
        assert_eq!(ok[0].role.role(), Role::Admin);
        for bad in [
            serde_json::json!({"mappings": [{"group": "Owners", "role": "owner"}]}),
            serde_json::json!({"mappings": [{"group": "X", "role": "root"}]}),
            serde_json::json!({"mappings": [{"group": "X", "role": "admin"}, {"group": "X", "role": "member"}]}),
            serde_json::json!({"mappings": [{"group": "", "role": "admin"}]}),
        ] {
            assert_eq!(input(bad.clone()).unwrap_err().status(), 422, "{bad}");
        }
        assert_eq!(MappedRole::parse("owner"), None);
    }

    /// The sync runs against the real schema: mapped admins become admins, others members,
    /// owners, inactive and non-SCIM members are left alone, and an org without a mapping too.
    #[test]
    fn the_sync_follows_groups_within_one_org() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(include_str!("../../../schema.sql"))
            .unwrap();
        db.execute_batch(
            "INSERT INTO users (id, email, created_at_ms) VALUES ('u1','a@x',1),('u2','b@x',1),('u3','c@x',1),('u4','d@x',1),('u5','e@x',1);
             INSERT INTO orgs (id, slug, name, created_at_ms, created_by) VALUES ('o1','a','A',1,'u1'),('o2','b','B',1,'u1');
             INSERT INTO memberships (org_id, user_id, role, created_at_ms) VALUES
               ('o1','u1','owner',1),('o1','u2','admin',1),('o1','u3','member',1),('o1','u4','member',1),('o1','u5','admin',1),
               ('o2','u3','member',1);
             INSERT INTO scim_users (org_id, user_id, user_name, active, created_at_ms, updated_at_ms) VALUES
               ('o1','u1','a',1,1,1),('o1','u2','b',1,1,1),('o1','u3','c',1,1,1),('o1','u4','d',0,1,1),
               ('o2','u3','c',1,1,1);
             INSERT INTO scim_groups (id, org_id, display_name, created_at_ms, updated_at_ms) VALUES
               ('g1','o1','Admins',1,1),('g2','o2','Admins',1,1);
             INSERT INTO scim_group_members (org_id, group_id, user_id) VALUES
               ('o1','g1','u1'),('o1','g1','u3'),('o1','g1','u4'),('o2','g2','u3');
             INSERT INTO scim_group_roles (org_id, group_name, role) VALUES ('o1','Admins','admin');",
        )
        .unwrap();
        let sync = |org: &str| {
            db.execute(
                &format!(
                    "UPDATE memberships SET {SYNC_SET} WHERE org_id = ?1 AND ({})",
                    SYNC_FILTER.replace('?', "?1")
                ),
                [org],
            )
            .unwrap()
        };
        sync("o1");
        sync("o2");
        let role = |org: &str, u: &str| -> String {
            db.query_row(
                "SELECT role FROM memberships WHERE org_id = ?1 AND user_id = ?2",
                [org, u],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(role("o1", "u1"), "owner", "owners are never changed");
        assert_eq!(
            role("o1", "u2"),
            "member",
            "an active SCIM member in no mapped group"
        );
        assert_eq!(role("o1", "u3"), "admin", "in the mapped group");
        assert_eq!(role("o1", "u4"), "member", "inactive: left alone");
        assert_eq!(role("o1", "u5"), "admin", "not SCIM-managed: left alone");
        assert_eq!(
            role("o2", "u3"),
            "member",
            "org B has no mapping: left alone"
        );
    }
}
