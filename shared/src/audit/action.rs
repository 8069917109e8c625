//! Every action the audit log records, as one closed set.
//!
//! The stored form is the dotted name (`api_key.created`). It is part of the public API (the
//! audit query filters on it, exports carry it), so a variant's name never changes once shipped;
//! reading a name that is not listed here is an error ([`UnknownAction`]), never a default, so a
//! typo in code or a row written by something else cannot pass as a known action.
//!
//! Each area adds its variants in its own block; the names follow `resource.past_tense_verb`.

use serde::{Deserialize, Serialize};

/// A stored action name that no variant carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit action `{0}`")]
pub struct UnknownAction(pub String);

macro_rules! audit_actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What happened. See the module documentation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum AuditAction {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)*
        }

        impl AuditAction {
            /// Every action, in declaration order.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)*];

            /// The stored, public name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $name,)*
                }
            }

            pub fn parse(s: &str) -> Result<Self, UnknownAction> {
                match s {
                    $($name => Ok(AuditAction::$variant),)*
                    other => Err(UnknownAction(other.to_owned())),
                }
            }
        }
    };
}

audit_actions! {
    // Core: organizations and operator diagnostics.
    OrgCreated => "org.created",
    QueueProbeCreated => "diagnostics.queue_probe_created",

    // Access: members, invitations, API keys.
    MemberRoleChanged => "member.role_changed",
    MemberRemoved => "member.removed",
    MemberLeft => "member.left",
    InvitationCreated => "invitation.created",
    InvitationRevoked => "invitation.revoked",
    InvitationAccepted => "invitation.accepted",
    ApiKeyCreated => "api_key.created",
    ApiKeyRotated => "api_key.rotated",
    ApiKeyRevoked => "api_key.revoked",
    AuditExported => "audit.exported",
    /// An owner changed how long the org's audit events are kept.
    AuditRetentionChanged => "audit.retention_changed",
    /// The cron deleted events older than the org's retention, after signing an anchor.
    AuditPruned => "audit.pruned",
    /// Someone asked for an export to be written to R2 in the background (format, filters).
    AuditExportJobCreated => "audit.export_job_created",
    /// The cron finished an export job: its file is ready, or it failed (and why).
    AuditExportJobFinished => "audit.export_job_finished",
    /// The cron deleted a finished export job's file after its time (`ready` -> `expired`).
    AuditExportJobExpired => "audit.export_job_expired",
    /// A finished export job's file was downloaded through its signed link (by the link's
    /// holder: the anonymous actor).
    AuditExportDownloaded => "audit.export_downloaded",

    // Identity: users, sign-in, sessions, CLI tokens.
    UserCreated => "user.created",
    UserIdentityLinked => "user.identity_linked",
    UserUpdated => "user.updated",
    MagicLinkRequested => "magic_link.requested",
    SignInStarted => "sign_in.started",
    SessionCreated => "session.created",
    SessionRefreshed => "session.refreshed",
    SessionRevoked => "session.revoked",
    SessionRevokedAll => "session.revoked_all",
    SessionRefreshReuseDetected => "session.refresh_reuse_detected",
    DeviceAuthorizationCreated => "device_authorization.created",
    DeviceAuthorizationApproved => "device_authorization.approved",
    DeviceAuthorizationDenied => "device_authorization.denied",
    CliTokenIssued => "cli_token.issued",
    CliTokenRefreshed => "cli_token.refreshed",
    CliTokenRevoked => "cli_token.revoked",
    CliTokenRefreshReuseDetected => "cli_token.refresh_reuse_detected",

    // Federated learning: devices, groups, models, rounds.
    DeviceBootstrapTokenCreated => "device.bootstrap_token_created",
    DeviceBootstrapped => "device.bootstrapped",
    DeviceUpdated => "device.updated",
    DeviceRevoked => "device.revoked",
    DeviceTokenRefreshed => "device.token_refreshed",
    DeviceTokenRevoked => "device.token_revoked",
    DeviceTokenFamilyRevoked => "device.token_family_revoked",
    DeviceGroupCreated => "device_group.created",
    DeviceGroupMembersAdded => "device_group.members_added",
    ModelCreated => "model.created",
    ModelVersionCreated => "model_version.created",
    ModelVersionApproved => "model_version.approved",
    RoundCreated => "round.created",
    RoundCancelled => "round.cancelled",
    RoundPublished => "round.published",
    RoundInsufficientUpdates => "round.insufficient_updates",
    RoundFailed => "round.failed",
    RolloutCreated => "rollout.created",
    RolloutPromoted => "rollout.promoted",
    RolloutPaused => "rollout.paused",
    RolloutResumed => "rollout.resumed",
    RolloutRolledBack => "rollout.rolled_back",

    // Code review: integrations, providers, reviews.
    IntegrationCreated => "integration.created",
    IntegrationUpdated => "integration.updated",
    IntegrationDeleted => "integration.deleted",
    IntegrationAccessTokenRotated => "integration.access_token_rotated",
    IntegrationWebhookSecretRotated => "integration.webhook_secret_rotated",
    LlmProviderKeySet => "llm_provider.key_set",
    LlmProviderKeyRotated => "llm_provider.key_rotated",
    LlmProviderKeyDeleted => "llm_provider.key_deleted",
    LlmProviderUpdated => "llm_provider.updated",
    ReviewRequeued => "review.requeued",
    ReviewPosted => "review.posted",
    ReviewFailed => "review.failed",

    // SCIM provisioning (by the org's SCIM key) and its group → role mapping (by an owner).
    ScimUserCreated => "scim_user.created",
    ScimUserUpdated => "scim_user.updated",
    /// `active` became false: membership removed, sessions revoked; the resource remains.
    ScimUserDeactivated => "scim_user.deactivated",
    ScimUserReactivated => "scim_user.reactivated",
    ScimUserDeleted => "scim_user.deleted",
    ScimGroupCreated => "scim_group.created",
    ScimGroupUpdated => "scim_group.updated",
    ScimGroupDeleted => "scim_group.deleted",
    ScimGroupRolesUpdated => "scim_group_roles.updated",
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AuditAction {
    type Err = UnknownAction;
    fn from_str(s: &str) -> Result<Self, UnknownAction> {
        AuditAction::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for a in AuditAction::ALL {
            assert!(seen.insert(a.as_str()), "duplicate name {}", a.as_str());
            assert_eq!(AuditAction::parse(a.as_str()), Ok(*a));
            let json = serde_json::to_string(a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.as_str()));
            assert_eq!(serde_json::from_str::<AuditAction>(&json).unwrap(), *a);
            // `resource.verb`: one dot, lowercase and underscores only, so the `family.*`
            // filter of the audit query means what it says.
            let (family, verb) = a.as_str().split_once('.').unwrap();
            for part in [family, verb] {
                assert!(
                    !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                );
            }
        }
    }

    #[test]
    fn an_unknown_name_is_an_error_not_a_default() {
        assert_eq!(
            AuditAction::parse("api_key.exploded"),
            Err(UnknownAction("api_key.exploded".into()))
        );
        assert!(serde_json::from_str::<AuditAction>("\"API_KEY.CREATED\"").is_err());
        assert!(AuditAction::parse("").is_err());
    }
}
