//! Views of the core area: service metadata, organizations, first-run setup, diagnostics.

use serde::{Deserialize, Serialize};

use crate::auth::{Role, Scopes};
use crate::ids::{ApiKeyId, OrgId, ProbeId, UserId};

/// `GET /livez`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LivezView {
    pub status: String,
}

/// One dependency's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckView {
    pub ok: bool,
    /// What failed (never the underlying error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthChecks {
    pub d1: CheckView,
    pub durable_object: CheckView,
    pub r2: CheckView,
    pub queue: CheckView,
}

impl HealthChecks {
    pub fn all_ok(&self) -> bool {
        [&self.d1, &self.durable_object, &self.r2, &self.queue]
            .iter()
            .all(|c| c.ok)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CronView {
    pub last_run_finished_at_ms: Option<i64>,
}

/// `GET /healthz`: `ok`, or `degraded` (answered with 503) when any check fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthView {
    pub status: String,
    pub checks: HealthChecks,
    pub cron: CronView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionView {
    pub name: String,
    pub version: String,
    pub api: String,
    pub git_sha: Option<String>,
    pub environment: String,
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgView {
    pub id: OrgId,
    pub slug: String,
    pub name: String,
    pub created_at: String,
    /// Days the org's audit events are kept before the cron prunes them (30..=3650).
    pub audit_retention_days: i64,
}

/// `PUT /v1/orgs/{org}/audit-retention`'s body and answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRetentionView {
    pub audit_retention_days: i64,
}

/// What the caller may do in an org.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessView {
    pub role: Option<Role>,
    pub scopes: Scopes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgWithAccess {
    pub org: OrgView,
    pub access: AccessView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupOrg {
    pub id: OrgId,
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupOwner {
    pub id: UserId,
    pub email: String,
}

/// The owner key made by setup: its plaintext is shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupKey {
    pub id: ApiKeyId,
    pub key: String,
    pub hint: String,
    pub scopes: Scopes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupView {
    pub org: SetupOrg,
    pub owner: SetupOwner,
    pub api_key: SetupKey,
}

/// A queue probe and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeView {
    pub id: ProbeId,
    pub status: String,
    pub fail_times: i64,
    pub attempts: i64,
    pub created_at: String,
    pub processed_at: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeEnvelope {
    pub probe: ProbeView,
}

/// The answer to sending a probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeQueued {
    pub id: ProbeId,
    pub status: String,
    pub fail_times: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeQueuedEnvelope {
    pub probe: ProbeQueued,
}

/// The public key that signs audit checkpoints, for verifying them without asking this
/// deployment (README, "The audit log").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointKeyView {
    /// Always `ed25519`.
    pub algorithm: String,
    /// The 32-byte public key, standard base64.
    pub public_key: String,
    /// Checkpoint origins (and key names) are this prefix followed by the chain: an org id, or
    /// `_platform`.
    pub origin_prefix: String,
    /// The signed-note verifier key of the platform chain, as an example of the format:
    /// `<origin>+<key id>+<base64(0x01 || public key)>`.
    pub platform_verifier_key: String,
}
