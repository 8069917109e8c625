//! Views of the access area: members, invitations, API keys, the audit log.

use serde::{Deserialize, Serialize};

use crate::access::api_keys::KeyStatus;
use crate::access::invitations::InvitationState;
use crate::audit::{AuditAction, ChainReport};
use crate::auth::{Role, Scopes};
use crate::ids::{ApiKeyId, AuditEventId, InvitationId, OrgId, UserId};

/// A member of an org.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub user_id: UserId,
    pub email: String,
    pub display_name: Option<String>,
    pub role: Role,
    pub joined_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembersView {
    pub members: Vec<MemberView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberEnvelope {
    pub member: MemberView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvitationView {
    pub id: InvitationId,
    pub email: String,
    pub role: Role,
    pub status: InvitationState,
    /// The principal that invited (a user, or an API key).
    pub invited_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub accepted_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvitationsView {
    pub invitations: Vec<InvitationView>,
}

/// The answer to creating an invitation: the token and link are shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvitationCreated {
    pub invitation: InvitationView,
    pub token: String,
    pub accept_url: String,
    pub email_sent: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembershipView {
    pub org_id: OrgId,
    pub user_id: UserId,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvitationAccepted {
    pub membership: MembershipView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyView {
    pub id: ApiKeyId,
    pub name: String,
    pub hint: String,
    pub scopes: Scopes,
    pub status: KeyStatus,
    pub created_by: Option<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    pub rotated_from: Option<ApiKeyId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeysView {
    pub api_keys: Vec<ApiKeyView>,
}

/// The key a rotation replaced, and when it stops working.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousKey {
    pub id: ApiKeyId,
    pub expires_at: String,
}

/// A new key: its plaintext is shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyIssued {
    pub api_key: ApiKeyView,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key: Option<PreviousKey>,
}

/// `{"type", "id"}` of an actor or a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypedRef {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEventView {
    pub id: AuditEventId,
    pub seq: i64,
    pub actor: TypedRef,
    pub action: AuditAction,
    pub resource: TypedRef,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub metadata: serde_json::Value,
    pub created_at: String,
    pub prev_hash: String,
    pub hash: String,
}

/// A signed checkpoint of a chain (C2SP signed note) and the key that verifies it. Keep one,
/// and any later audit read or export can be checked against it (README, "The audit log").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointView {
    pub origin: String,
    /// Events in the chain at the checkpoint.
    pub size: i64,
    /// The chain's head hash (hex) at that size: the checkpoint's root hash.
    pub head_hash: String,
    /// The signed note itself.
    pub note: String,
    /// `<origin>+<key id>+<base64 key>`, as signed-note verifiers take it.
    pub verifier_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEventsView {
    pub events: Vec<AuditEventView>,
    pub next_cursor: Option<String>,
    /// The newest checkpoint of the chain (absent before its first event).
    pub checkpoint: Option<CheckpointView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditVerifyView {
    pub chain: String,
    pub report: ChainReport,
    pub checkpoint: Option<CheckpointView>,
}
