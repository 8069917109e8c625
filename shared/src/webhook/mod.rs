//! Webhook authentication: raw bytes and headers in, a [`VerifiedWebhook`] out — or nothing.
//!
//! Every platform module checks the signature over the exact bytes received *before* anything
//! parses them. [`VerifiedWebhook`] has private fields and no public constructor, so code that
//! holds one holds proof that a secret the integration owns signed (or authenticated) the body.
//! Classifying the event (`event.rs`) takes a `&VerifiedWebhook`, so unverified bytes cannot
//! reach the parser by mistake.

pub mod bitbucket;
pub mod event;
pub mod github;
pub mod gitlab;
pub mod inbox;

use serde::{Deserialize, Serialize};

use crate::crypto::{constant_time_eq, hmac_sha256, sha256_hex};
use crate::review::git_platform::Platform;

/// The request headers a verifier may look at, with case-insensitive names. The gateway copies
/// only the few it needs ([`Headers::WANTED`]), so nothing else of the request travels inward.
#[derive(Debug, Clone, Default)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// Every header any platform module reads.
    pub const WANTED: &'static [&'static str] = &[
        "x-hub-signature-256",
        "x-hub-signature",
        "x-github-delivery",
        "x-github-event",
        "x-gitlab-token",
        "x-gitlab-event",
        "x-gitlab-event-uuid",
        "idempotency-key",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-event-key",
        "x-request-uuid",
        "x-request-id",
        "content-type",
    ];

    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.insert(name, value);
        self
    }

    pub fn insert(&mut self, name: &str, value: &str) {
        self.0.push((name.to_ascii_lowercase(), value.to_owned()));
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// The secrets an integration verifies with. `previous` is only passed while its rotation
/// overlap window is open: the caller decides that with the clock, this module never sees time
/// except for Standard Webhooks timestamps.
pub struct Secrets<'a> {
    pub current: &'a [u8],
    pub previous: Option<&'a [u8]>,
    /// GitLab's optional signing token (Standard Webhooks `whsec_…` or raw).
    pub signing_token: Option<&'a [u8]>,
}

impl Secrets<'_> {
    fn candidates(&self) -> impl Iterator<Item = (Slot, &[u8])> {
        std::iter::once((Slot::Current, self.current))
            .chain(self.previous.map(|p| (Slot::Previous, p)))
            .filter(|(_, s)| !s.is_empty())
    }
}

/// Which secret verified a delivery. A delivery verified by the previous secret is a signal the
/// platform has not been updated yet; the gateway records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    Current,
    Previous,
}

impl Slot {
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Current => "current",
            Slot::Previous => "previous",
        }
    }
}

/// Why a delivery was refused. All of them answer 401 with nothing parsed, stored or queued; the
/// variant is logged (never the header values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// The signature (or token) header is absent.
    Missing,
    /// Present but not of the documented shape.
    Malformed,
    /// Well-formed, but no configured secret produces it.
    Mismatch,
    /// A Standard Webhooks timestamp outside the tolerance window (replay protection).
    StaleTimestamp,
}

impl VerifyError {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyError::Missing => "signature_missing",
            VerifyError::Malformed => "signature_malformed",
            VerifyError::Mismatch => "signature_mismatch",
            VerifyError::StaleTimestamp => "timestamp_out_of_tolerance",
        }
    }
}

/// A refused delivery, with its body handed back: a caller holding possibly stale secrets can
/// verify again with fresh ones without having copied the body first.
#[derive(Debug)]
pub struct Refused {
    pub error: VerifyError,
    pub body: Vec<u8>,
}

/// Verifies a delivery for `platform` over the exact bytes received, taking the body and handing
/// it back on refusal (see [`Refused`]). `now_secs` bounds GitLab's signed timestamps.
pub fn verify(
    platform: Platform,
    headers: &Headers,
    body: Vec<u8>,
    secrets: &Secrets<'_>,
    now_secs: i64,
) -> Result<VerifiedWebhook, Refused> {
    match platform {
        Platform::GitHub => github::verify_keeping(headers, body, secrets),
        Platform::GitLab => gitlab::verify_keeping(headers, body, secrets, now_secs),
        Platform::Bitbucket => bitbucket::verify_keeping(headers, body, secrets),
    }
}

/// A webhook whose body a configured secret authenticated. Only this module's platform verifiers
/// construct one.
#[derive(Debug)]
pub struct VerifiedWebhook {
    platform: Platform,
    delivery_id: String,
    event: String,
    body: Vec<u8>,
    slot: Slot,
    /// The body is `application/x-www-form-urlencoded` with the JSON in its `payload` field
    /// (GitHub's default `content_type: form`).
    form_encoded: bool,
    replay: Replay,
}

/// What recognises a replay of a verified delivery under a fresh delivery id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// The authenticator covers the id (GitLab's Standard Webhooks signature): a replay under
    /// another id does not verify, and one under the same id is a duplicate by id.
    IdSigned,
    /// An HMAC over the body alone (GitHub, Bitbucket). The verified MAC already fingerprints
    /// the exact bytes under the integration's secret, so no second pass over the body is
    /// needed: a replay carries the same MAC, and nobody without the secret can make another.
    BodyMac([u8; 32]),
    /// A bare shared token (GitLab's `X-Gitlab-Token`), which says nothing about the body: its
    /// SHA-256 is the fingerprint.
    BodyHash,
}

impl VerifiedWebhook {
    /// The delivery id is the platform's when it sent one, otherwise the body's SHA-256 (so a
    /// byte-identical redelivery still de-duplicates). Capped: it is stored and indexed.
    fn new(
        platform: Platform,
        delivery_id: Option<&str>,
        event: Option<&str>,
        body: Vec<u8>,
        slot: Slot,
    ) -> Self {
        let delivery_id = match delivery_id {
            Some(d) if d.len() <= 200 && !d.chars().any(char::is_control) => d.to_owned(),
            _ => format!("sha256:{}", sha256_hex(&body)),
        };
        let event = event
            .map(|e| e.chars().take(100).collect())
            .unwrap_or_default();
        Self {
            platform,
            delivery_id,
            event,
            body,
            slot,
            form_encoded: false,
            replay: Replay::BodyHash,
        }
    }

    fn form_encoded(mut self, yes: bool) -> Self {
        self.form_encoded = yes;
        self
    }

    fn replay(mut self, replay: Replay) -> Self {
        self.replay = replay;
        self
    }

    pub fn platform(&self) -> Platform {
        self.platform
    }
    pub fn delivery_id(&self) -> &str {
        &self.delivery_id
    }
    /// The platform's event name header (`pull_request`, `Merge Request Hook`,
    /// `pullrequest:created`), empty when absent.
    pub fn event(&self) -> &str {
        &self.event
    }
    /// The exact bytes that were verified.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
    pub fn slot(&self) -> Slot {
        self.slot
    }
    pub fn is_form_encoded(&self) -> bool {
        self.form_encoded
    }

    /// What identifies a replay of this delivery beyond its id, for every scheme whose
    /// authenticator does not cover the delivery id (GitHub's and Bitbucket's HMACs: the
    /// verified MAC; GitLab's bare token: the body's SHA-256). Without it anyone holding one
    /// captured delivery could resend it under fresh ids and have each recorded as new. `None`
    /// for GitLab's Standard Webhooks signature (see [`Replay::IdSigned`]). Platforms never send
    /// byte-identical bodies for distinct events (every payload carries its own timestamps and
    /// ids), so nothing legitimate collides.
    pub fn replay_key(&self) -> Option<String> {
        match self.replay {
            Replay::IdSigned => None,
            Replay::BodyMac(mac) => Some(format!("hmac-sha256:{}", hex::encode(mac))),
            Replay::BodyHash => Some(sha256_hex(&self.body)),
        }
    }
}

/// Whether a `Content-Type` names a form-encoded body (parameters such as a charset allowed).
fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// `sha256=<hex>` HMAC-SHA256 over the raw body, checked against each candidate secret in
/// constant time. Shared by GitHub (`X-Hub-Signature-256`) and Bitbucket (`X-Hub-Signature`).
/// Returns the secret that matched and the verified MAC.
fn verify_hex_hmac(
    header: Option<&str>,
    body: &[u8],
    secrets: &Secrets<'_>,
) -> Result<(Slot, [u8; 32]), VerifyError> {
    let header = header.ok_or(VerifyError::Missing)?;
    let (algo, hex_sig) = header.split_once('=').ok_or(VerifyError::Malformed)?;
    if !algo.trim().eq_ignore_ascii_case("sha256") {
        return Err(VerifyError::Malformed);
    }
    let mut presented = [0u8; 32];
    hex::decode_to_slice(hex_sig.trim(), &mut presented).map_err(|_| VerifyError::Malformed)?;
    let mut matched = None;
    // Every candidate is computed and compared, so timing does not say which secret matched.
    for (slot, secret) in secrets.candidates() {
        if constant_time_eq(&hmac_sha256(secret, body), &presented) && matched.is_none() {
            matched = Some(slot);
        }
    }
    matched
        .map(|slot| (slot, presented))
        .ok_or(VerifyError::Mismatch)
}

/// `sha256=<hex>` for `body` under `secret`: what a platform sends (tests, fakes, benches).
pub fn sign_hex_sha256(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive_and_blank_is_absent() {
        let h = Headers::new()
            .with("X-GitHub-Event", "ping")
            .with("X-Empty", "  ");
        assert_eq!(h.get("x-github-event"), Some("ping"));
        assert_eq!(h.get("x-empty"), None);
    }

    #[test]
    fn delivery_id_falls_back_to_body_hash() {
        let v = VerifiedWebhook::new(Platform::GitLab, None, None, b"{}".to_vec(), Slot::Current);
        assert!(v.delivery_id().starts_with("sha256:"));
        let long = "x".repeat(500);
        let v = VerifiedWebhook::new(
            Platform::GitLab,
            Some(&long),
            None,
            b"{}".to_vec(),
            Slot::Current,
        );
        assert!(v.delivery_id().starts_with("sha256:"));
    }

    #[test]
    fn replay_key_is_the_verified_mac_or_the_body_hash_unless_the_id_is_signed() {
        let v = VerifiedWebhook::new(
            Platform::GitLab,
            Some("d"),
            None,
            b"{}".to_vec(),
            Slot::Current,
        );
        assert_eq!(v.replay_key(), Some(sha256_hex(b"{}")));
        assert_eq!(v.replay(Replay::IdSigned).replay_key(), None);

        // An HMAC scheme keys on the MAC: the same bytes replayed give the same key, other
        // bytes another, and the header's spelling of the MAC does not matter.
        let body = br#"{"action":"opened"}"#.to_vec();
        let sig = sign_hex_sha256(b"k", &body);
        let key = |sig: &str, body: &[u8]| {
            let h = Headers::new().with("x-hub-signature-256", sig);
            let s = Secrets {
                current: b"k",
                previous: None,
                signing_token: None,
            };
            github::verify(&h, body.to_vec(), &s).unwrap().replay_key()
        };
        let first = key(&sig, &body).unwrap();
        assert_eq!(
            first,
            format!("hmac-sha256:{}", hex::encode(hmac_sha256(b"k", &body)))
        );
        assert_eq!(
            key(&sig.to_uppercase().replace("SHA256=", "sha256="), &body).unwrap(),
            first
        );
        let other = br#"{"action":"closed"}"#;
        assert_ne!(key(&sign_hex_sha256(b"k", other), other).unwrap(), first);
    }

    #[test]
    fn a_refused_body_is_handed_back_unchanged() {
        let body = br#"{"action":"opened"}"#.to_vec();
        let h = Headers::new().with("x-hub-signature-256", &sign_hex_sha256(b"new", &body));
        let stale = Secrets {
            current: b"old",
            previous: None,
            signing_token: None,
        };
        let refused = verify(Platform::GitHub, &h, body.clone(), &stale, 0).unwrap_err();
        assert_eq!(refused.error, VerifyError::Mismatch);
        assert_eq!(refused.body, body);
        let fresh = Secrets {
            current: b"new",
            ..stale
        };
        let v = verify(Platform::GitHub, &h, refused.body, &fresh, 0).unwrap();
        assert_eq!(v.body(), body.as_slice());
        // GitLab's token and Bitbucket's HMAC hand the body back the same way.
        for platform in [Platform::GitLab, Platform::Bitbucket] {
            let r = verify(platform, &Headers::new(), body.clone(), &fresh, 0).unwrap_err();
            assert_eq!((r.error, r.body), (VerifyError::Missing, body.clone()));
        }
    }

    #[test]
    fn form_content_types() {
        assert!(is_form(Some("application/x-www-form-urlencoded")));
        assert!(is_form(Some(
            "Application/X-WWW-Form-Urlencoded; charset=utf-8"
        )));
        assert!(!is_form(Some("application/json")));
        assert!(!is_form(None));
    }
}
