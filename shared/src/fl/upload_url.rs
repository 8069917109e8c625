//! Short-lived signed URLs for upload parts: the part PUT carries its own authority (like a
//! presigned object-store URL), bound to one round, upload and part number, and an expiry.

use crate::crypto::{constant_time_eq, hmac_sha256};

/// How long a part URL stays valid. Long enough for a slow phone to send one part; a device that
/// needs more asks for new URLs by initiating again.
pub const PART_URL_TTL_SECONDS: i64 = 15 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlError {
    Expired,
    BadSignature,
}

fn message(round: &str, upload: &str, part: u32, expires: i64) -> String {
    format!("edgeplane/v1/upload-part\n{round}\n{upload}\n{part}\n{expires}")
}

pub fn sign(key: &[u8; 32], round: &str, upload: &str, part: u32, expires: i64) -> String {
    hex::encode(hmac_sha256(
        key,
        message(round, upload, part, expires).as_bytes(),
    ))
}

/// Checks the signature first (constant time), then the expiry.
pub fn verify(
    key: &[u8; 32],
    round: &str,
    upload: &str,
    part: u32,
    expires: i64,
    signature: &str,
    now: i64,
) -> Result<(), UrlError> {
    let want = sign(key, round, upload, part, expires);
    if !constant_time_eq(want.as_bytes(), signature.as_bytes()) {
        return Err(UrlError::BadSignature);
    }
    if now > expires {
        return Err(UrlError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_field() {
        let k = [1u8; 32];
        let sig = sign(&k, "rnd_1", "upl_1", 2, 1000);
        assert_eq!(verify(&k, "rnd_1", "upl_1", 2, 1000, &sig, 999), Ok(()));
        assert_eq!(
            verify(&k, "rnd_1", "upl_1", 2, 1000, &sig, 1001),
            Err(UrlError::Expired)
        );
        assert_eq!(
            verify(&k, "rnd_1", "upl_1", 3, 1000, &sig, 999),
            Err(UrlError::BadSignature)
        );
        assert_eq!(
            verify(&k, "rnd_1", "upl_2", 2, 1000, &sig, 999),
            Err(UrlError::BadSignature)
        );
        assert_eq!(
            verify(&k, "rnd_1", "upl_1", 2, 2000, &sig, 999),
            Err(UrlError::BadSignature)
        );
        assert_eq!(
            verify(&[2u8; 32], "rnd_1", "upl_1", 2, 1000, &sig, 999),
            Err(UrlError::BadSignature)
        );
    }
}
