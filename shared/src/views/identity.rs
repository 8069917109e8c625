//! Views of the identity area: sign-in answers, sessions and CLI tokens, the signed-in person,
//! their organizations, device authorizations.

use serde::{Deserialize, Serialize};

use super::core::OrgView;
use crate::auth::{Role, Scopes};
use crate::identity::session::SessionKind;
use crate::ids::{OrgId, SessionId, UserId};

/// A user as sign-in answers show them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    pub id: UserId,
    pub email: String,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserEnvelope {
    pub user: UserView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRef {
    pub id: SessionId,
    pub kind: SessionKind,
}

/// The product's token answer (sign-in and `POST /v1/auth/refresh`). The refresh token is
/// shown here only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionIssued {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub session: SessionRef,
    pub user: UserView,
    /// Sign-in only: whether this sign-in created the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_user: Option<bool>,
}

/// The RFC 6749 §5.1 token answer (`/oauth/token`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuthToken {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub refresh_token: String,
    /// Space-separated scopes.
    pub scope: String,
}

/// One of the caller's live sessions or CLI tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    pub id: SessionId,
    pub kind: SessionKind,
    pub org_id: Option<OrgId>,
    pub scopes: Option<Vec<String>>,
    pub auth_method: String,
    pub created_at: String,
    pub last_used_at: String,
    pub last_refreshed_at: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The session this request authenticated with.
    pub current: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionsView {
    pub sessions: Vec<SessionView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevokedCount {
    pub revoked: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgSummary {
    pub id: OrgId,
    pub slug: String,
    pub name: String,
}

/// An org the person belongs to, and as what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgMembershipView {
    pub org: OrgSummary,
    pub role: Role,
    pub joined_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgsView {
    pub orgs: Vec<OrgMembershipView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileView {
    pub id: UserId,
    pub email: String,
    pub display_name: Option<String>,
    pub created_at: String,
}

/// The credential a request authenticated with: its session (or token family) and kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialRef {
    pub id: Option<String>,
    /// `user` (a session) or `cli_token`.
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeView {
    pub user: ProfileView,
    pub memberships: Vec<OrgMembershipView>,
    pub session: CredentialRef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgCreated {
    pub org: OrgView,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrincipalView {
    pub kind: String,
    pub id: String,
    pub user_id: Option<String>,
}

/// `GET /v1/orgs/{org}/me`: the caller's standing in an org.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgMeView {
    pub org_id: OrgId,
    pub principal: PrincipalView,
    pub role: Option<Role>,
    pub scopes: Scopes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MagicLinkSent {
    /// Always `sent`: the answer is the same for every address.
    pub status: String,
    pub message: String,
    pub expires_in: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderView {
    pub name: String,
    pub display_name: String,
    pub preset: String,
    pub start_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvidersView {
    pub providers: Vec<ProviderView>,
}

/// The body of the provider redirect (its `Location` says the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderRedirect {
    pub authorization_url: String,
}

/// RFC 8628 §3.2 device authorization response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceAuthorizationStarted {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

/// A pending device authorization, as the approving person sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceAuthorizationView {
    pub id: String,
    pub client_id: String,
    pub requested_scopes: Option<Scopes>,
    pub created_at: String,
    pub expires_at: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// What became of a device authorization (approved: for which org, with which scopes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceDecisionView {
    pub id: String,
    /// `approved` or `denied`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<OrgId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Scopes>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceAuthorizationEnvelope<T> {
    pub device_authorization: T,
}

/// A message the development outbox kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxView {
    pub messages: Vec<OutboxMessage>,
}
