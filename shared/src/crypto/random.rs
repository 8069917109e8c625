//! Randomness from the platform CSPRNG (`crypto.getRandomValues` on Workers, the OS elsewhere).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::ApiError;

pub fn random_bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|_| ApiError::internal())?;
    Ok(buf)
}

/// An opaque bearer secret: `prefix` + 32 random bytes in base64url (256 bits). The prefix makes
/// leaked tokens recognisable to secret scanners and tells a reader what kind of credential it is.
pub fn random_token(prefix: &str) -> Result<String, ApiError> {
    let bytes = random_bytes::<32>()?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_and_unique() {
        let a = random_token("ep_test_").unwrap();
        let b = random_token("ep_test_").unwrap();
        assert!(a.starts_with("ep_test_"));
        assert_eq!(a.len(), "ep_test_".len() + 43);
        assert_ne!(a, b);
    }
}
