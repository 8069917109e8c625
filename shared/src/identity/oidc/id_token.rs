//! ID-token validation (OpenID Connect Core §3.1.3.7): RS256 signature over the raw signing
//! input with a key from the provider's JWKS, then issuer, audience (and `azp`), expiry, issue
//! time and nonce. Exactly one algorithm is accepted; `none`, HMAC and unknown keys never pass.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use serde::Deserialize;
use sha2::Sha256;

use crate::crypto::constant_time_eq;

/// Clock skew tolerated on `exp`, `iat` and `nbf`.
pub const LEEWAY_SECS: i64 = 60;
/// Keys shorter than this are refused even if a provider publishes them.
const MIN_RSA_BITS: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenError {
    Malformed,
    UnsupportedAlgorithm,
    /// No key with the token's `kid`: the caller may refresh the JWKS once and retry.
    UnknownKey,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    Expired,
    NotYetValid,
    NonceMismatch,
    MissingSubject,
}

impl IdTokenError {
    /// A fixed description for logs and the caller (never token contents).
    pub fn as_str(self) -> &'static str {
        match self {
            IdTokenError::Malformed => "the ID token is malformed",
            IdTokenError::UnsupportedAlgorithm => "the ID token uses an algorithm other than RS256",
            IdTokenError::UnknownKey => {
                "the ID token is signed with a key the provider does not publish"
            }
            IdTokenError::BadSignature => "the ID token signature does not verify",
            IdTokenError::WrongIssuer => "the ID token was issued by another issuer",
            IdTokenError::WrongAudience => "the ID token is meant for another client",
            IdTokenError::Expired => "the ID token has expired",
            IdTokenError::NotYetValid => "the ID token is not valid yet",
            IdTokenError::NonceMismatch => "the ID token nonce does not match this sign-in",
            IdTokenError::MissingSubject => "the ID token has no subject",
        }
    }
}

struct Key {
    kid: Option<String>,
    key: RsaPublicKey,
}

/// A provider's signing keys (RSA `sig` keys only; others are skipped).
pub struct Jwks {
    keys: Vec<Key>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

impl Jwks {
    pub fn parse(json: &[u8]) -> Result<Jwks, IdTokenError> {
        let set: JwkSet = serde_json::from_slice(json).map_err(|_| IdTokenError::Malformed)?;
        let keys = set
            .keys
            .into_iter()
            .filter(|k| k.kty == "RSA")
            .filter(|k| k.use_.as_deref().is_none_or(|u| u == "sig"))
            .filter(|k| k.alg.as_deref().is_none_or(|a| a == "RS256"))
            .filter_map(|k| {
                let n = URL_SAFE_NO_PAD.decode(k.n?).ok()?;
                let e = URL_SAFE_NO_PAD.decode(k.e?).ok()?;
                let key = RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e))
                    .ok()?;
                (key.n().bits() >= MIN_RSA_BITS).then_some(Key { kid: k.kid, key })
            })
            .collect();
        Ok(Jwks { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn find(&self, kid: Option<&str>) -> Option<&RsaPublicKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| &k.key),
            // No `kid`: acceptable only when the set is unambiguous.
            None if self.keys.len() == 1 => Some(&self.keys[0].key),
            None => None,
        }
    }
}

/// Which `iss` values are acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerRule {
    Exact(String),
    /// Microsoft Entra multi-tenant endpoints (`common`, `organizations`): the token's `iss` is
    /// `https://login.microsoftonline.com/{tid}/v2.0` with the token's own `tid`.
    MicrosoftTenantTemplate {
        authority: String,
    },
}

impl IssuerRule {
    fn accepts(&self, iss: &str, tid: Option<&str>) -> bool {
        match self {
            IssuerRule::Exact(want) => iss == want,
            IssuerRule::MicrosoftTenantTemplate { authority } => tid.is_some_and(|tid| {
                tid.len() == 36
                    && tid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
                    && iss == format!("{}/{tid}/v2.0", authority.trim_end_matches('/'))
            }),
        }
    }

    /// Whether a discovery document's `issuer` matches this rule (templates verbatim).
    pub fn matches_discovery(&self, issuer: &str) -> bool {
        match self {
            IssuerRule::Exact(want) => issuer == want,
            IssuerRule::MicrosoftTenantTemplate { authority } => {
                issuer == format!("{}/{{tenantid}}/v2.0", authority.trim_end_matches('/'))
            }
        }
    }
}

pub struct Expectations<'a> {
    pub issuer: &'a IssuerRule,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub now_secs: i64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Text(String),
}

impl Flag {
    fn truthy(&self) -> bool {
        match self {
            Flag::Bool(b) => *b,
            Flag::Text(s) => s == "true",
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct RawClaims {
    iss: String,
    #[serde(default)]
    sub: String,
    aud: Audience,
    exp: i64,
    iat: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<Flag>,
    /// Entra: the email's domain is verified by its owner (optional claim `xms_edov`).
    #[serde(default)]
    xms_edov: Option<Flag>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tid: Option<String>,
}

/// What a valid ID token says about the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTokenClaims {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// The `kid` in a token's header, to decide whether a JWKS refresh could help.
pub fn header_kid(token: &str) -> Option<String> {
    let h64 = token.split('.').next()?;
    let header: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h64).ok()?).ok()?;
    header.kid
}

pub fn validate(
    token: &str,
    jwks: &Jwks,
    want: &Expectations<'_>,
) -> Result<IdTokenClaims, IdTokenError> {
    let mut parts = token.split('.');
    let (Some(h64), Some(c64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdTokenError::Malformed);
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(h64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(IdTokenError::Malformed)?;
    if header.alg != "RS256" {
        return Err(IdTokenError::UnsupportedAlgorithm);
    }
    let key = jwks
        .find(header.kid.as_deref())
        .ok_or(IdTokenError::UnknownKey)?;
    let sig_bytes = URL_SAFE_NO_PAD
        .decode(s64)
        .map_err(|_| IdTokenError::Malformed)?;
    let sig = Signature::try_from(sig_bytes.as_slice()).map_err(|_| IdTokenError::BadSignature)?;
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(&token.as_bytes()[..h64.len() + 1 + c64.len()], &sig)
        .map_err(|_| IdTokenError::BadSignature)?;

    let c: RawClaims = URL_SAFE_NO_PAD
        .decode(c64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(IdTokenError::Malformed)?;
    if !want.issuer.accepts(&c.iss, c.tid.as_deref()) {
        return Err(IdTokenError::WrongIssuer);
    }
    let audiences = match &c.aud {
        Audience::One(a) => vec![a.as_str()],
        Audience::Many(v) => v.iter().map(String::as_str).collect(),
    };
    if !audiences.contains(&want.client_id) {
        return Err(IdTokenError::WrongAudience);
    }
    // Several audiences: the token must say it was issued to us (`azp`).
    if (audiences.len() > 1 || c.azp.is_some()) && c.azp.as_deref() != Some(want.client_id) {
        return Err(IdTokenError::WrongAudience);
    }
    if want.now_secs > c.exp + LEEWAY_SECS {
        return Err(IdTokenError::Expired);
    }
    if c.iat > want.now_secs + LEEWAY_SECS || c.nbf.is_some_and(|n| n > want.now_secs + LEEWAY_SECS)
    {
        return Err(IdTokenError::NotYetValid);
    }
    let nonce_ok = c
        .nonce
        .as_deref()
        .is_some_and(|n| constant_time_eq(n.as_bytes(), want.nonce.as_bytes()));
    if !nonce_ok {
        return Err(IdTokenError::NonceMismatch);
    }
    if c.sub.is_empty() || c.sub.len() > 255 {
        return Err(IdTokenError::MissingSubject);
    }
    let email_verified = c.email_verified.as_ref().is_some_and(Flag::truthy)
        || c.xms_edov.as_ref().is_some_and(Flag::truthy);
    Ok(IdTokenClaims {
        issuer: c.iss,
        subject: c.sub,
        email: c.email,
        email_verified,
        name: c.name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    use rsa::RsaPrivateKey;

    const ISS: &str = "https://idp.test";

    fn private_key() -> RsaPrivateKey {
        RsaPrivateKey::from_pkcs8_pem(include_str!("testdata/rsa_test_key.pem")).unwrap()
    }

    fn jwks_json(kid: &str) -> Vec<u8> {
        let pk = private_key().to_public_key();
        serde_json::to_vec(&serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "x": "", "y": "", "kid": "ec"},
            {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
             "n": URL_SAFE_NO_PAD.encode(pk.n().to_bytes_be()),
             "e": URL_SAFE_NO_PAD.encode(pk.e().to_bytes_be())}
        ]}))
        .unwrap()
    }

    fn sign(header: serde_json::Value, claims: serde_json::Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = SigningKey::<Sha256>::new(private_key()).sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    fn claims(now: i64) -> serde_json::Value {
        serde_json::json!({"iss": ISS, "sub": "user-1", "aud": "client-1", "exp": now + 300,
            "iat": now, "nonce": "n-1", "email": "ada@example.com", "email_verified": true,
            "name": "Ada"})
    }

    fn check(token: &str, now: i64) -> Result<IdTokenClaims, IdTokenError> {
        let jwks = Jwks::parse(&jwks_json("k1")).unwrap();
        let rule = IssuerRule::Exact(ISS.into());
        validate(
            token,
            &jwks,
            &Expectations {
                issuer: &rule,
                client_id: "client-1",
                nonce: "n-1",
                now_secs: now,
            },
        )
    }

    fn hdr() -> serde_json::Value {
        serde_json::json!({"alg": "RS256", "kid": "k1", "typ": "JWT"})
    }

    #[test]
    fn a_valid_token_yields_its_identity() {
        let c = check(&sign(hdr(), claims(1_000)), 1_010).unwrap();
        assert_eq!(c.subject, "user-1");
        assert_eq!(c.email.as_deref(), Some("ada@example.com"));
        assert!(c.email_verified);
        assert_eq!(Jwks::parse(&jwks_json("k1")).unwrap().len(), 1);
        assert_eq!(header_kid(&sign(hdr(), claims(1))).as_deref(), Some("k1"));
    }

    #[test]
    fn each_claim_is_enforced() {
        let now = 1_000;
        let with = |k: &str, v: serde_json::Value| {
            let mut c = claims(now);
            c[k] = v;
            check(&sign(hdr(), c), now)
        };
        assert_eq!(
            with("iss", "https://evil.test".into()),
            Err(IdTokenError::WrongIssuer)
        );
        assert_eq!(
            with("aud", "client-2".into()),
            Err(IdTokenError::WrongAudience)
        );
        assert_eq!(
            with("aud", serde_json::json!(["client-1", "client-2"])),
            Err(IdTokenError::WrongAudience)
        );
        assert_eq!(
            with("nonce", "n-2".into()),
            Err(IdTokenError::NonceMismatch)
        );
        assert_eq!(with("sub", "".into()), Err(IdTokenError::MissingSubject));
        assert_eq!(
            with("exp", (now - LEEWAY_SECS - 1).into()),
            Err(IdTokenError::Expired)
        );
        assert_eq!(
            with("iat", (now + LEEWAY_SECS + 1).into()),
            Err(IdTokenError::NotYetValid)
        );
        let mut no_nonce = claims(now);
        no_nonce.as_object_mut().unwrap().remove("nonce");
        assert_eq!(
            check(&sign(hdr(), no_nonce), now),
            Err(IdTokenError::NonceMismatch)
        );
        let mut azp = claims(now);
        azp["aud"] = serde_json::json!(["client-1", "client-2"]);
        azp["azp"] = "client-1".into();
        assert!(check(&sign(hdr(), azp), now).is_ok());
        let mut unverified = claims(now);
        unverified["email_verified"] = "false".into();
        assert!(!check(&sign(hdr(), unverified), now).unwrap().email_verified);
    }

    #[test]
    fn signatures_algorithms_and_keys() {
        let now = 1_000;
        let good = sign(hdr(), claims(now));
        // Tampered claims.
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_claims = {
            let mut c = claims(now);
            c["sub"] = "admin".into();
            URL_SAFE_NO_PAD.encode(c.to_string())
        };
        parts[1] = &forged_claims;
        assert_eq!(
            check(&parts.join("."), now),
            Err(IdTokenError::BadSignature)
        );
        // alg none / HS256.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(claims(now).to_string())
        );
        assert_eq!(check(&none, now), Err(IdTokenError::UnsupportedAlgorithm));
        let hs = sign(
            serde_json::json!({"alg": "HS256", "kid": "k1"}),
            claims(now),
        );
        assert_eq!(check(&hs, now), Err(IdTokenError::UnsupportedAlgorithm));
        // Unknown kid.
        let other = sign(
            serde_json::json!({"alg": "RS256", "kid": "k2"}),
            claims(now),
        );
        assert_eq!(check(&other, now), Err(IdTokenError::UnknownKey));
        // No kid, one key: used.
        assert!(check(&sign(serde_json::json!({"alg": "RS256"}), claims(now)), now).is_ok());
        assert_eq!(check("a.b", now), Err(IdTokenError::Malformed));
        assert_eq!(check("!.!.!", now), Err(IdTokenError::Malformed));
    }

    #[test]
    fn microsoft_multi_tenant_issuers() {
        let rule = IssuerRule::MicrosoftTenantTemplate {
            authority: "https://login.microsoftonline.com".into(),
        };
        let tid = "9188040d-6c67-4c5b-b112-36a304b66dad";
        assert!(rule.accepts(
            &format!("https://login.microsoftonline.com/{tid}/v2.0"),
            Some(tid)
        ));
        assert!(!rule.accepts(
            &format!("https://login.microsoftonline.com/{tid}/v2.0"),
            Some("00000000-0000-0000-0000-000000000000")
        ));
        assert!(!rule.accepts("https://login.microsoftonline.com/x/v2.0", Some("x")));
        assert!(rule.matches_discovery("https://login.microsoftonline.com/{tenantid}/v2.0"));
    }
}
