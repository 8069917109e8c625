//! Short-lived signed URLs: a URL that carries its own authority, like a presigned object-store
//! URL, for a client that holds no bearer credential at that moment (a device sending an
//! upload part, a browser or script fetching a finished audit export).
//!
//! The signature is HMAC-SHA256 under a purpose-derived key over a message naming what the URL
//! is for (`edgeplane/v1/<purpose>`), each field it is bound to, and its expiry (Unix seconds),
//! one per line. Every user goes through [`sign`] and [`verify`], so the constant-time check
//! and the order "signature, then expiry" live in one place.

use super::{constant_time_eq, hmac_sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlError {
    Expired,
    BadSignature,
}

/// What a URL grants: the purpose names the route family, and `fields` the resources it is
/// bound to, in a fixed order. Fields are ids and numbers, which hold no line break, so the
/// message has exactly one reading.
#[derive(Debug, Clone, Copy)]
pub struct Grant<'a> {
    pub purpose: &'static str,
    pub fields: &'a [&'a str],
}

impl Grant<'_> {
    fn message(&self, expires: i64) -> String {
        let mut m = format!("edgeplane/v1/{}", self.purpose);
        for f in self.fields {
            m.push('\n');
            m.push_str(f);
        }
        m.push('\n');
        m.push_str(&expires.to_string());
        m
    }
}

/// The signature (hex) for `grant` until `expires` (Unix seconds).
pub fn sign(key: &[u8; 32], grant: Grant<'_>, expires: i64) -> String {
    hex::encode(hmac_sha256(key, grant.message(expires).as_bytes()))
}

/// Checks the signature first (constant time), then the expiry, so a forged URL learns
/// nothing about whether its expiry would have passed.
pub fn verify(
    key: &[u8; 32],
    grant: Grant<'_>,
    expires: i64,
    signature: &str,
    now: i64,
) -> Result<(), UrlError> {
    let want = sign(key, grant, expires);
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

    const A: Grant<'static> = Grant {
        purpose: "thing",
        fields: &["a", "b"],
    };

    #[test]
    fn purpose_fields_and_expiry_are_all_bound() {
        let k = [7u8; 32];
        let sig = sign(&k, A, 100);
        assert_eq!(verify(&k, A, 100, &sig, 100), Ok(()));
        assert_eq!(verify(&k, A, 100, &sig, 101), Err(UrlError::Expired));
        let other_purpose = Grant {
            purpose: "other",
            ..A
        };
        assert_eq!(
            verify(&k, other_purpose, 100, &sig, 1),
            Err(UrlError::BadSignature)
        );
        // Moving a field boundary changes the message.
        let shifted = Grant {
            purpose: "thing",
            fields: &["ab", ""],
        };
        assert_eq!(
            verify(&k, shifted, 100, &sig, 1),
            Err(UrlError::BadSignature)
        );
        assert_eq!(verify(&k, A, 99, &sig, 1), Err(UrlError::BadSignature));
        assert_eq!(
            verify(&[8u8; 32], A, 100, &sig, 1),
            Err(UrlError::BadSignature)
        );
        // An expired URL with a bad signature reports the signature.
        assert_eq!(verify(&k, A, 100, "00", 500), Err(UrlError::BadSignature));
    }
}
