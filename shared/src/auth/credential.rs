//! Opaque bearer credentials: how each kind looks, and how it is stored (SHA-256 only).
//!
//! A recognisable prefix per kind lets secret scanners flag leaks and lets the gateway route a
//! presented bearer to the right look-up without trying every table.

use crate::crypto::{random_token, sha256_hex};
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// Org API key.
    ApiKey,
    /// User session refresh token.
    SessionRefresh,
    /// CLI (device-code grant) refresh token.
    CliRefresh,
    /// Device bootstrap token (minted by the customer backend).
    DeviceBootstrap,
    /// Device refresh token.
    DeviceRefresh,
    /// RFC 8628 device code (polled by the CLI).
    DeviceCode,
    /// Magic-link sign-in token.
    MagicLink,
    /// Org invitation token.
    Invitation,
}

impl CredentialKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            CredentialKind::ApiKey => "epk_",
            CredentialKind::SessionRefresh => "eprt_",
            CredentialKind::CliRefresh => "epcr_",
            CredentialKind::DeviceBootstrap => "epbt_",
            CredentialKind::DeviceRefresh => "epdr_",
            CredentialKind::DeviceCode => "epdc_",
            CredentialKind::MagicLink => "epml_",
            CredentialKind::Invitation => "epin_",
        }
    }

    /// Which kind a presented string claims to be (by prefix). JWT access tokens have no prefix.
    pub fn of(token: &str) -> Option<Self> {
        use CredentialKind::*;
        [
            ApiKey,
            SessionRefresh,
            CliRefresh,
            DeviceBootstrap,
            DeviceRefresh,
            DeviceCode,
            MagicLink,
            Invitation,
        ]
        .into_iter()
        .find(|k| token.starts_with(k.prefix()))
    }
}

/// A freshly minted credential: the plaintext goes to the caller exactly once, the hash to D1.
#[derive(Debug)]
pub struct Minted {
    pub plaintext: String,
    pub hash: String,
    /// A short, non-secret hint for listings (`epk_AbCdEf…`).
    pub hint: String,
}

pub fn mint(kind: CredentialKind) -> Result<Minted, ApiError> {
    let plaintext = random_token(kind.prefix())?;
    let hash = sha256_hex(plaintext.as_bytes());
    let hint = format!("{}…", &plaintext[..kind.prefix().len() + 6]);
    Ok(Minted {
        plaintext,
        hash,
        hint,
    })
}

/// The storage form of a presented credential. Also validates shape cheaply so obvious junk never
/// reaches the database.
pub fn hash_presented(kind: CredentialKind, presented: &str) -> Option<String> {
    let body = presented.strip_prefix(kind.prefix())?;
    if body.len() != 43
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    Some(sha256_hex(presented.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_and_lookup_hash_agree() {
        let m = mint(CredentialKind::ApiKey).unwrap();
        assert_eq!(
            CredentialKind::of(&m.plaintext),
            Some(CredentialKind::ApiKey)
        );
        assert_eq!(
            hash_presented(CredentialKind::ApiKey, &m.plaintext).as_deref(),
            Some(m.hash.as_str())
        );
        assert!(!m.hash.contains(&m.plaintext[4..]));
        assert!(m.hint.starts_with("epk_") && m.hint.chars().count() == 11);
    }

    #[test]
    fn junk_is_rejected_before_lookup() {
        assert_eq!(hash_presented(CredentialKind::ApiKey, "epk_short"), None);
        assert_eq!(hash_presented(CredentialKind::ApiKey, "eprt_xxxx"), None);
        let m = mint(CredentialKind::SessionRefresh).unwrap();
        assert_eq!(hash_presented(CredentialKind::ApiKey, &m.plaintext), None);
        assert_eq!(CredentialKind::of("eyJhbGciOi..."), None);
    }

    #[test]
    fn prefixes_do_not_shadow_each_other() {
        use CredentialKind::*;
        let all = [
            ApiKey,
            SessionRefresh,
            CliRefresh,
            DeviceBootstrap,
            DeviceRefresh,
            DeviceCode,
            MagicLink,
            Invitation,
        ];
        for a in all {
            for b in all {
                if a != b {
                    assert!(!a.prefix().starts_with(b.prefix()), "{a:?} vs {b:?}");
                }
            }
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Only a string of the kind's exact shape is hashed for look-up.
        #[test]
        fn only_well_shaped_credentials_are_hashed(s in "(ep[a-z]{1,2}_)?[A-Za-z0-9_-]{0,50}") {
            if let Some(kind) = CredentialKind::of(&s) {
                let ok = hash_presented(kind, &s).is_some();
                prop_assert_eq!(ok, s.len() == kind.prefix().len() + 43);
            }
        }
    }
}
