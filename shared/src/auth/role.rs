//! Membership roles. Ordered: `Member < Admin < Owner`.

use serde::{Deserialize, Serialize};

use super::scope::{Scope, Scopes};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// What a role may do, as scopes. A member reads the workspace and does the day-to-day work
    /// (models, rounds, reviews); an admin manages the workspace (people, keys, devices,
    /// integrations, audit); an owner additionally controls ownership and the org's existence.
    pub fn scopes(self) -> Scopes {
        use Scope::*;
        let member = Scopes::from_iter([
            OrgRead,
            MembersRead,
            DevicesRead,
            ModelsRead,
            ModelsWrite,
            RoundsRead,
            RoundsWrite,
            IntegrationsRead,
            ReviewsRead,
            ReviewsWrite,
        ]);
        let admin = member.union(Scopes::from_iter([
            OrgAdmin,
            MembersWrite,
            ApiKeysRead,
            ApiKeysWrite,
            AuditRead,
            DevicesWrite,
            IntegrationsWrite,
        ]));
        match self {
            Role::Member => member,
            Role::Admin => admin,
            // Only an owner may mint a SCIM key: provisioning can remove admins and owners.
            Role::Owner => admin.union(Scopes::from_iter([OrgOwner, Scim])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest() {
        assert!(Role::Admin.scopes().contains_all(Role::Member.scopes()));
        assert!(Role::Owner.scopes().contains_all(Role::Admin.scopes()));
        assert!(!Role::Member.scopes().contains(Scope::AuditRead));
        assert!(!Role::Admin.scopes().contains(Scope::OrgOwner));
        assert_eq!(Role::Owner.scopes(), Scopes::all());
        assert!(Role::Member < Role::Admin && Role::Admin < Role::Owner);
    }
}
