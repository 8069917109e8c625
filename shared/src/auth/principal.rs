//! The resolved caller of a request.

use super::role::Role;
use super::scope::Scopes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// No credential presented (public routes only).
    Anonymous,
    /// A signed-in person with a session access token.
    User,
    /// An org API key.
    ApiKey,
    /// A CLI token from the device-code grant (acts for one user in one org).
    CliToken,
    /// A federated-learning device with a device access token.
    Device,
    /// A git platform whose webhook signature verified.
    Platform,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Anonymous => "anonymous",
            PrincipalKind::User => "user",
            PrincipalKind::ApiKey => "api_key",
            PrincipalKind::CliToken => "cli_token",
            PrincipalKind::Device => "device",
            PrincipalKind::Platform => "platform",
        }
    }
}

/// What a principal may do inside one org. Built only after the org was resolved and the
/// principal's tie to it checked (membership, key's org, device's org), so holding one *is* proof
/// of access to that org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccess {
    pub org_id: String,
    /// Present for users and CLI tokens (the member's current role).
    pub role: Option<Role>,
    /// The effective scopes: for users the role's; for keys/tokens their own, capped by role.
    pub scopes: Scopes,
}

impl OrgAccess {
    pub fn for_member(org_id: String, role: Role) -> Self {
        Self {
            org_id,
            role: Some(role),
            scopes: role.scopes(),
        }
    }

    /// A credential with its own scopes, capped by the role of the person behind it (if any), so
    /// a demoted user's CLI token loses what the demotion took away.
    pub fn for_credential(org_id: String, scopes: Scopes, role: Option<Role>) -> Self {
        let scopes = match role {
            Some(r) => scopes.intersect(r.scopes()),
            None => scopes,
        };
        Self {
            org_id,
            role,
            scopes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// The credential's subject: user id, API key id, CLI token id, device id, integration id.
    pub id: String,
    /// The person behind it, where there is one (users, CLI tokens, and a key's creator).
    pub user_id: Option<String>,
    /// The session (users), token family (CLI, devices) this request authenticated with.
    pub session_id: Option<String>,
    /// For credentials bound to one org (API keys, CLI tokens, devices, platforms): that org and
    /// the scopes. Users get theirs per request from their membership.
    pub bound: Option<OrgAccess>,
}

impl Principal {
    pub fn anonymous() -> Self {
        Self {
            kind: PrincipalKind::Anonymous,
            id: String::new(),
            user_id: None,
            session_id: None,
            bound: None,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.kind == PrincipalKind::Anonymous
    }
}
