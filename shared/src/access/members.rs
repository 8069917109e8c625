//! Who acts, as which role, on a membership.

use crate::auth::{OrgAccess, Role, Scope};

/// The role a principal acts with when managing people. Members act with their membership role.
/// A credential without a role (an API key) acts as the most its scopes allow: `org:owner` makes
/// it owner-equivalent, `members:write` admin-equivalent, anything less member-equivalent — so a
/// key can never do to people what no role holding its scopes could.
pub fn acting_role(access: &OrgAccess) -> Role {
    match access.role {
        Some(role) => role,
        None if access.scopes.contains(Scope::OrgOwner) => Role::Owner,
        None if access.scopes.contains(Scope::MembersWrite) => Role::Admin,
        None => Role::Member,
    }
}

/// Whether an actor may remove `target_role` from the org. Leaving (removing oneself) is always
/// allowed, subject to the last-owner rule enforced atomically at write time.
pub fn may_remove(actor: Role, actor_is_target: bool, target_role: Role) -> bool {
    actor_is_target
        || match actor {
            Role::Owner => true,
            Role::Admin => target_role != Role::Owner,
            Role::Member => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scopes;

    #[test]
    fn keys_act_as_their_scopes_allow() {
        let key =
            |s: &[Scope]| OrgAccess::for_credential("o".into(), s.iter().copied().collect(), None);
        assert_eq!(
            acting_role(&key(&[Scope::OrgOwner, Scope::MembersWrite])),
            Role::Owner
        );
        assert_eq!(acting_role(&key(&[Scope::MembersWrite])), Role::Admin);
        assert_eq!(acting_role(&key(&[Scope::MembersRead])), Role::Member);
        let member = OrgAccess::for_member("o".into(), Role::Member);
        assert_eq!(acting_role(&member), Role::Member);
        let cli = OrgAccess::for_credential("o".into(), Scopes::all(), Some(Role::Admin));
        assert_eq!(acting_role(&cli), Role::Admin);
    }

    #[test]
    fn removal_rules() {
        assert!(may_remove(Role::Owner, false, Role::Owner));
        assert!(may_remove(Role::Admin, false, Role::Member));
        assert!(may_remove(Role::Admin, false, Role::Admin));
        assert!(!may_remove(Role::Admin, false, Role::Owner));
        assert!(!may_remove(Role::Member, false, Role::Member));
        assert!(may_remove(Role::Member, true, Role::Member));
    }
}
