//! The per-flow secrets of an authorization-code sign-in: `state`, the PKCE verifier (S256) and
//! the OIDC `nonce`.
//!
//! Only the state is random; the verifier and nonce are derived from it with a deployment key
//! (HMAC-SHA256), so D1 stores nothing but the state's hash and a hash of the browser binding:
//! a database reader can neither finish a flow nor forge a nonce, and nothing needs decrypting.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::crypto::{hmac_sha256, random_token, sha256, sha256_hex};
use crate::error::ApiError;

/// The secrets of one flow. No `Debug`: they must not be printed.
pub struct FlowSecrets {
    pub state: String,
    /// RFC 7636 verifier: 43 characters of base64url (256 bits).
    pub code_verifier: String,
    pub code_challenge: String,
    pub nonce: String,
}

impl FlowSecrets {
    /// A new flow with a random state.
    pub fn new(key: &[u8; 32]) -> Result<Self, ApiError> {
        Ok(Self::for_state(key, random_token("")?))
    }

    /// Re-derives a flow's secrets from the state the provider sent back.
    pub fn for_state(key: &[u8; 32], state: String) -> Self {
        let derive = |label: &str| {
            URL_SAFE_NO_PAD.encode(hmac_sha256(key, format!("{label}\0{state}").as_bytes()))
        };
        let code_verifier = derive("pkce-verifier");
        let nonce = derive("oidc-nonce");
        let code_challenge = s256_challenge(&code_verifier);
        Self {
            state,
            code_verifier,
            code_challenge,
            nonce,
        }
    }

    /// What D1 stores to find (and single-use) the flow.
    pub fn state_hash(&self) -> String {
        state_hash(&self.state)
    }
}

pub fn state_hash(state: &str) -> String {
    sha256_hex(format!("oidc-state:{state}").as_bytes())
}

/// `BASE64URL(SHA256(verifier))` (RFC 7636 §4.2).
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes()))
}

/// States are what `random_token("")` makes: 43 base64url characters. Anything else is refused
/// before a database look-up.
pub fn plausible_state(state: &str) -> bool {
    state.len() == 43
        && state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn secrets_rederive_from_the_state_and_depend_on_the_key() {
        let key = [7u8; 32];
        let a = FlowSecrets::new(&key).unwrap();
        assert!(plausible_state(&a.state));
        let again = FlowSecrets::for_state(&key, a.state.clone());
        assert_eq!(again.code_verifier, a.code_verifier);
        assert_eq!(again.nonce, a.nonce);
        assert_eq!(a.code_verifier.len(), 43);
        assert_ne!(a.code_verifier, a.nonce);
        let other = FlowSecrets::for_state(&[8u8; 32], a.state.clone());
        assert_ne!(other.code_verifier, a.code_verifier);
        assert_ne!(FlowSecrets::new(&key).unwrap().state, a.state);
        assert!(!plausible_state("short"));
        assert!(!plausible_state(&format!("{}!", &a.state[..42])));
    }
}
