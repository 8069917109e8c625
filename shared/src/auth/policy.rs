//! "May this principal do this action in this org?" — the only question handlers ask.

use super::principal::OrgAccess;
use super::role::Role;
use super::scope::Scope;
use crate::error::{ApiError, ErrorCode};

/// Actions name what is being done; each maps to exactly one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ReadOrg,
    ManageOrg,
    DeleteOrg,
    /// Shortening the audit retention deletes evidence sooner: owners only.
    ManageAuditRetention,
    ReadMembers,
    ManageMembers,
    ReadApiKeys,
    ManageApiKeys,
    ReadAudit,
    ReadDevices,
    ManageDevices,
    ReadModels,
    ManageModels,
    ReadRounds,
    ManageRounds,
    ReadIntegrations,
    ManageIntegrations,
    ReadReviews,
    ManageReviews,
    /// The SCIM group → role mapping decides who becomes admin: owners only.
    ManageScimMapping,
}

impl Action {
    pub fn required_scope(self) -> Scope {
        use Action::*;
        match self {
            ReadOrg => Scope::OrgRead,
            ManageOrg => Scope::OrgAdmin,
            DeleteOrg => Scope::OrgOwner,
            ManageAuditRetention => Scope::OrgOwner,
            ReadMembers => Scope::MembersRead,
            ManageMembers => Scope::MembersWrite,
            ReadApiKeys => Scope::ApiKeysRead,
            ManageApiKeys => Scope::ApiKeysWrite,
            ReadAudit => Scope::AuditRead,
            ReadDevices => Scope::DevicesRead,
            ManageDevices => Scope::DevicesWrite,
            ReadModels => Scope::ModelsRead,
            ManageModels => Scope::ModelsWrite,
            ReadRounds => Scope::RoundsRead,
            ManageRounds => Scope::RoundsWrite,
            ReadIntegrations => Scope::IntegrationsRead,
            ManageIntegrations => Scope::IntegrationsWrite,
            ReadReviews => Scope::ReviewsRead,
            ManageReviews => Scope::ReviewsWrite,
            ManageScimMapping => Scope::OrgOwner,
        }
    }
}

/// Access inside the org is already established (see [`OrgAccess`]); what remains is whether
/// the scopes cover the action. A denial is 403: the caller can see the org, so saying so leaks
/// nothing.
pub fn authorize(access: &OrgAccess, action: Action) -> Result<(), ApiError> {
    let needed = action.required_scope();
    if access.scopes.contains(needed) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InsufficientScope,
            format!("this action requires the `{}` scope", needed.as_str()),
        ))
    }
}

/// Role changes: who may set `target`'s role from `current` to `new`.
///
/// - Only owners grant or take away ownership.
/// - Admins manage members and admins, never owners.
/// - Nobody changes their own role (no self-promotion; an owner steps down by another owner's
///   action, which also keeps "last owner" checks in one place).
pub fn may_change_role(
    actor: Role,
    actor_is_target: bool,
    current: Role,
    new: Role,
) -> Result<(), ApiError> {
    if actor_is_target {
        return Err(ApiError::forbidden("you cannot change your own role"));
    }
    let touches_owner = current == Role::Owner || new == Role::Owner;
    let allowed = match actor {
        Role::Owner => true,
        Role::Admin => !touches_owner,
        Role::Member => false,
    };
    if allowed {
        Ok(())
    } else if actor == Role::Member {
        Err(ApiError::new(
            ErrorCode::InsufficientScope,
            "changing roles requires the `members:write` scope",
        ))
    } else {
        Err(ApiError::forbidden(
            "only an owner can grant or remove the owner role",
        ))
    }
}

/// Inviting: the role offered cannot exceed what the inviter could grant by a role change.
pub fn may_invite_as(actor: Role, offered: Role) -> Result<(), ApiError> {
    may_change_role(actor, false, Role::Member, offered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scope::Scopes;

    #[test]
    fn scopes_decide() {
        let member = OrgAccess::for_member("org_1".into(), Role::Member);
        assert!(authorize(&member, Action::ReadRounds).is_ok());
        assert_eq!(
            authorize(&member, Action::ReadAudit).unwrap_err().code,
            ErrorCode::InsufficientScope
        );
        let key = OrgAccess::for_credential(
            "org_1".into(),
            Scopes::from_iter([Scope::DevicesWrite]),
            None,
        );
        assert!(authorize(&key, Action::ManageDevices).is_ok());
        assert!(authorize(&key, Action::ReadDevices).is_err());
    }

    #[test]
    fn credential_scopes_are_capped_by_role() {
        let cli = OrgAccess::for_credential("o".into(), Scopes::all(), Some(Role::Member));
        assert!(authorize(&cli, Action::ManageApiKeys).is_err());
        assert!(authorize(&cli, Action::ManageRounds).is_ok());
    }

    #[test]
    fn role_change_rules() {
        use Role::*;
        assert!(may_change_role(Owner, false, Member, Owner).is_ok());
        assert!(may_change_role(Owner, false, Owner, Admin).is_ok());
        assert!(may_change_role(Admin, false, Member, Admin).is_ok());
        assert!(may_change_role(Admin, false, Admin, Member).is_ok());
        assert!(may_change_role(Admin, false, Member, Owner).is_err());
        assert!(may_change_role(Admin, false, Owner, Member).is_err());
        assert!(may_change_role(Member, false, Member, Admin).is_err());
        assert!(may_change_role(Owner, true, Owner, Member).is_err());
        assert!(may_change_role(Admin, true, Admin, Owner).is_err());
        assert!(may_invite_as(Admin, Admin).is_ok());
        assert!(may_invite_as(Admin, Owner).is_err());
        assert!(may_invite_as(Member, Member).is_err());
    }
}
