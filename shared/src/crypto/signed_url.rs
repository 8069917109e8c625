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

/// A signed URL's own query parameters: its expiry and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedQuery {
    pub expires: i64,
    pub signature: String,
}

/// Why a signed URL's query cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A parameter other than `expires` and `signature`, or one of them twice.
    #[error("the query parameters are expires and signature, each once")]
    Unexpected,
    /// `expires` or `signature` is missing, or `expires` is not plain decimal digits.
    #[error("the signed URL is incomplete")]
    Incomplete,
}

impl SignedQuery {
    /// Reads `expires` and `signature`, each exactly once and nothing else. `expires` must be
    /// plain digits as [`sign`]'s users write them (no sign, no leading zero): one expiry has
    /// one spelling, so a URL cannot be varied without changing its signature's input.
    pub fn parse(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self, QueryError> {
        let (mut expires, mut signature) = (None, None);
        for (k, v) in pairs {
            match k.as_str() {
                "expires" if expires.is_none() => expires = Some(v),
                "signature" if signature.is_none() => signature = Some(v),
                _ => return Err(QueryError::Unexpected),
            }
        }
        let expires = expires
            .as_deref()
            .and_then(canonical_seconds)
            .ok_or(QueryError::Incomplete)?;
        let signature = signature.ok_or(QueryError::Incomplete)?;
        Ok(Self { expires, signature })
    }
}

/// Unix seconds written as plain decimal digits: `0`, or digits without a leading zero.
fn canonical_seconds(s: &str) -> Option<i64> {
    let plain = !s.is_empty()
        && s.len() <= 18
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if plain {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<SignedQuery, QueryError> {
        SignedQuery::parse(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn the_query_is_expires_and_signature_each_once() {
        assert_eq!(
            q(&[("expires", "1700000000"), ("signature", "ab")]),
            Ok(SignedQuery {
                expires: 1_700_000_000,
                signature: "ab".into()
            })
        );
        assert_eq!(
            q(&[("signature", "ab"), ("expires", "0")]).map(|s| s.expires),
            Ok(0)
        );
        assert_eq!(
            q(&[("expires", "1"), ("signature", "a"), ("signature", "b")]),
            Err(QueryError::Unexpected)
        );
        assert_eq!(
            q(&[("expires", "1"), ("signature", "a"), ("x", "1")]),
            Err(QueryError::Unexpected)
        );
        assert_eq!(q(&[("expires", "1")]), Err(QueryError::Incomplete));
        assert_eq!(q(&[("signature", "a")]), Err(QueryError::Incomplete));
        // One expiry, one spelling: no sign, no leading zero, no blanks, no overflow.
        for bad in [
            "+5",
            "05",
            "-1",
            " 5",
            "5 ",
            "",
            "1e3",
            "99999999999999999999",
        ] {
            assert_eq!(
                q(&[("expires", bad), ("signature", "a")]),
                Err(QueryError::Incomplete),
                "{bad:?}"
            );
        }
    }

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
