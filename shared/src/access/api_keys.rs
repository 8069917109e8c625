//! API key lifecycle rules: what a new key may hold, when it expires, how rotation overlaps.

use crate::auth::{OrgAccess, Scopes};
use crate::error::{ApiError, ErrorCode};

/// Longest a key may be created for; keys without an expiry are allowed (operators choose).
pub const MAX_TTL_SECONDS: u64 = 2 * 365 * 24 * 3600;
/// Rotation overlap: how long the old key keeps working next to its replacement.
pub const DEFAULT_OVERLAP_SECONDS: u64 = 24 * 3600;
pub const MAX_OVERLAP_SECONDS: u64 = 30 * 24 * 3600;

/// A key holds what its creator asks for, never more than the creator holds (no elevation by
/// minting), and at least one scope.
pub fn grantable(requested: Scopes, creator: &OrgAccess) -> Result<Scopes, ApiError> {
    if requested.is_empty() {
        return Err(ApiError::validation("scopes must name at least one scope"));
    }
    requested
        .validate_scim_only()
        .map_err(ApiError::validation)?;
    if !creator.scopes.contains_all(requested) {
        let missing: Vec<&str> = requested
            .iter()
            .filter(|s| !creator.scopes.contains(*s))
            .map(|s| s.as_str())
            .collect();
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "you cannot grant scopes you do not hold: {}",
                missing.join(", ")
            ),
        ));
    }
    Ok(requested)
}

pub fn expires_at_ms(now_ms: i64, ttl_seconds: Option<u64>) -> Result<Option<i64>, ApiError> {
    match ttl_seconds {
        None => Ok(None),
        Some(s) if (60..=MAX_TTL_SECONDS).contains(&s) => Ok(Some(now_ms + (s as i64) * 1000)),
        Some(_) => Err(ApiError::validation(format!(
            "expires_in_seconds must be between 60 and {MAX_TTL_SECONDS}"
        ))),
    }
}

/// When the old key stops working after a rotation: the end of the overlap, or its own earlier
/// expiry (rotation never extends a key's life).
pub fn rotated_expiry_ms(
    now_ms: i64,
    overlap_seconds: Option<u64>,
    current_expiry_ms: Option<i64>,
) -> Result<i64, ApiError> {
    let overlap = overlap_seconds.unwrap_or(DEFAULT_OVERLAP_SECONDS);
    if overlap > MAX_OVERLAP_SECONDS {
        return Err(ApiError::validation(format!(
            "overlap_seconds must be at most {MAX_OVERLAP_SECONDS}"
        )));
    }
    let end = now_ms + (overlap as i64) * 1000;
    Ok(current_expiry_ms.map_or(end, |e| e.min(end)))
}

/// Listing status of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    /// Works until its expiry (a rotated-out key in its overlap, or a key made with a lifetime).
    ActiveUntilExpiry,
    Expired,
    Revoked,
}

impl KeyStatus {
    /// Whether the key still authenticates.
    pub fn is_active(self) -> bool {
        matches!(self, KeyStatus::Active | KeyStatus::ActiveUntilExpiry)
    }
}

pub fn status(revoked_at_ms: Option<i64>, expires_at_ms: Option<i64>, now_ms: i64) -> KeyStatus {
    if revoked_at_ms.is_some() {
        KeyStatus::Revoked
    } else if expires_at_ms.is_some_and(|e| e <= now_ms) {
        KeyStatus::Expired
    } else if expires_at_ms.is_some() {
        KeyStatus::ActiveUntilExpiry
    } else {
        KeyStatus::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Role, Scope};

    #[test]
    fn no_elevation_by_minting() {
        let admin = OrgAccess::for_member("o".into(), Role::Admin);
        let want = Scopes::from_iter([Scope::RoundsRead, Scope::AuditRead]);
        assert_eq!(grantable(want, &admin).unwrap(), want);
        let owner_only = Scopes::from_iter([Scope::OrgOwner]);
        let err = grantable(owner_only, &admin).unwrap_err();
        assert_eq!(err.status(), 403);
        assert!(err.message.contains("org:owner"));
        assert!(grantable(Scopes::empty(), &admin).is_err());
        // `scim`: owners only, and alone.
        let owner = OrgAccess::for_member("o".into(), Role::Owner);
        let scim = Scopes::from_iter([Scope::Scim]);
        assert_eq!(grantable(scim, &owner).unwrap(), scim);
        assert_eq!(grantable(scim, &admin).unwrap_err().status(), 403);
        let mixed = Scopes::from_iter([Scope::Scim, Scope::RoundsRead]);
        assert_eq!(grantable(mixed, &owner).unwrap_err().status(), 422);
    }

    #[test]
    fn expiry_and_rotation() {
        assert_eq!(expires_at_ms(1000, None).unwrap(), None);
        assert_eq!(expires_at_ms(1000, Some(60)).unwrap(), Some(61_000));
        assert!(expires_at_ms(0, Some(59)).is_err());
        assert_eq!(rotated_expiry_ms(0, Some(10), None).unwrap(), 10_000);
        assert_eq!(rotated_expiry_ms(0, Some(10), Some(5_000)).unwrap(), 5_000);
        assert_eq!(rotated_expiry_ms(0, Some(0), None).unwrap(), 0);
        assert!(rotated_expiry_ms(0, Some(MAX_OVERLAP_SECONDS + 1), None).is_err());
        assert_eq!(status(None, Some(5), 10), KeyStatus::Expired);
        assert_eq!(status(Some(1), None, 10), KeyStatus::Revoked);
        assert_eq!(status(None, None, 10), KeyStatus::Active);
        assert_eq!(status(None, Some(50), 10), KeyStatus::ActiveUntilExpiry);
        assert_eq!(
            serde_json::to_string(&KeyStatus::ActiveUntilExpiry).unwrap(),
            "\"active_until_expiry\""
        );
    }
}
