//! Purpose-specific keys derived from the deployment's one root secret (HKDF-SHA256). A distinct
//! `info` string per purpose means a key leaked from one use never unlocks another.

use hkdf::Hkdf;
use sha2::Sha256;

use crate::error::ApiError;

/// Every purpose a key is derived for. Adding a purpose is adding a variant, never reusing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// Signing access tokens; the version lets keys rotate while old tokens still verify.
    JwtSigning { version: u32 },
    /// Sealing integration tokens and webhook secrets.
    IntegrationSecrets,
    /// Sealing BYOK LLM provider keys (only the review worker derives this one).
    LlmProviderKeys,
    /// Signing short-lived upload URLs.
    UploadUrls,
    /// Deriving the PKCE verifier and nonce of a sign-in flow from its state.
    SignInFlows,
    /// Signing audit-chain checkpoints (Ed25519; the public half is published).
    AuditCheckpoints,
    /// Binding the console's CSRF tokens to a session (HMAC of the session id).
    ConsoleCsrf,
    /// Signing short-lived download links (a finished audit export job's file).
    DownloadUrls,
}

impl KeyPurpose {
    fn info(self) -> String {
        match self {
            KeyPurpose::JwtSigning { version } => {
                format!("edgeplane/v1/jwt-signing/ed25519/{version}")
            }
            KeyPurpose::IntegrationSecrets => "edgeplane/v1/aead/integration-secrets".into(),
            KeyPurpose::LlmProviderKeys => "edgeplane/v1/aead/llm-provider-keys".into(),
            KeyPurpose::UploadUrls => "edgeplane/v1/hmac/upload-urls".into(),
            KeyPurpose::SignInFlows => "edgeplane/v1/hmac/sign-in-flows".into(),
            KeyPurpose::AuditCheckpoints => "edgeplane/v1/audit-checkpoints/ed25519/1".into(),
            KeyPurpose::ConsoleCsrf => "edgeplane/v1/hmac/console-csrf".into(),
            KeyPurpose::DownloadUrls => "edgeplane/v1/hmac/download-urls".into(),
        }
    }
}

/// The root secret, parsed once. It must carry at least 256 bits; shorter values are refused so a
/// placeholder never ends up protecting real data.
#[derive(Clone)]
pub struct RootSecret(Vec<u8>);

impl std::fmt::Debug for RootSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootSecret(<redacted>)")
    }
}

impl RootSecret {
    pub const MIN_LEN: usize = 32;

    pub fn new(bytes: &[u8]) -> Result<Self, ApiError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(ApiError::internal());
        }
        Ok(Self(bytes.to_vec()))
    }

    /// The form operators configure: hex, so any tool can generate it (`openssl rand -hex 32`).
    pub fn from_hex(s: &str) -> Result<Self, ApiError> {
        let bytes = hex::decode(s.trim()).map_err(|_| ApiError::internal())?;
        Self::new(&bytes)
    }

    pub fn derive(&self, purpose: KeyPurpose) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::new(Some(b"edgeplane-root-v1"), &self.0);
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 255 * 32 byte output limit, so expand cannot fail.
        if hk.expand(purpose.info().as_bytes(), &mut out).is_err() {
            unreachable_expand();
        }
        out
    }
}

#[cold]
fn unreachable_expand() -> ! {
    panic!("HKDF refused a 32-byte output, which is within its limit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_derive_distinct_keys() {
        let root = RootSecret::new(&[7u8; 32]).unwrap();
        let a = root.derive(KeyPurpose::IntegrationSecrets);
        let b = root.derive(KeyPurpose::LlmProviderKeys);
        let j1 = root.derive(KeyPurpose::JwtSigning { version: 1 });
        let j2 = root.derive(KeyPurpose::JwtSigning { version: 2 });
        assert_ne!(a, b);
        assert_ne!(j1, j2);
        assert_eq!(a, root.derive(KeyPurpose::IntegrationSecrets));
    }

    #[test]
    fn short_or_malformed_root_secret_is_refused() {
        assert!(RootSecret::new(b"too short").is_err());
        assert!(RootSecret::from_hex(&"ab".repeat(31)).is_err());
        assert!(RootSecret::from_hex(&"zz".repeat(32)).is_err());
        assert!(RootSecret::from_hex(&"ab".repeat(32)).is_ok());
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let root = RootSecret::new(&[0x41u8; 32]).unwrap();
        assert!(!format!("{root:?}").contains("AAAA"));
    }
}
