//! Access-token audiences. One signing key set signs every kind of access token; the audience
//! says which kind it is, so a device token can never pass as a user's and vice versa.

/// A signed-in user's session access token.
pub const AUD_USER: &str = "edgeplane:user";
/// A CLI token issued through the device-code grant.
pub const AUD_CLI: &str = "edgeplane:cli";
/// A federated-learning device's access token.
pub const AUD_DEVICE: &str = "edgeplane:device";

/// Every audience the gateway accepts as an API bearer.
pub const API_AUDIENCES: &[&str] = &[AUD_USER, AUD_CLI, AUD_DEVICE];

/// Whether a bearer string is shaped like a compact JWS (three base64url segments).
pub fn looks_like_jwt(token: &str) -> bool {
    let mut n = 0;
    for seg in token.split('.') {
        n += 1;
        if seg.is_empty() && n < 3
            || !seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    n == 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(!looks_like_jwt("epk_abc"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a b.c.d"));
    }
}
