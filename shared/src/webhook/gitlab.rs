//! GitLab: the shared secret arrives verbatim in `X-Gitlab-Token` (compared in constant time).
//! When the integration has a signing token, the delivery must also carry a Standard Webhooks
//! signature: `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
//! (several space-separated signatures may be sent during GitLab's own rotations), with
//! `webhook-timestamp` within [`TOLERANCE_SECONDS`] of now so a captured delivery cannot be
//! replayed later. The delivery id is `webhook-id`, `Idempotency-Key` or `X-Gitlab-Event-UUID`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{Headers, Platform, Refused, Replay, Secrets, Slot, VerifiedWebhook, VerifyError};
use crate::crypto::{constant_time_eq, hmac_sha256, hmac_sha256_parts};

pub const TOLERANCE_SECONDS: i64 = 5 * 60;

pub fn verify(
    headers: &Headers,
    body: Vec<u8>,
    secrets: &Secrets<'_>,
    now_secs: i64,
) -> Result<VerifiedWebhook, VerifyError> {
    verify_keeping(headers, body, secrets, now_secs).map_err(|r| r.error)
}

/// [`verify`], handing the body back on refusal.
pub(super) fn verify_keeping(
    headers: &Headers,
    body: Vec<u8>,
    secrets: &Secrets<'_>,
    now_secs: i64,
) -> Result<VerifiedWebhook, Refused> {
    let (slot, id_signed) = match check(headers, &body, secrets, now_secs) {
        Ok(checked) => checked,
        Err(error) => return Err(Refused { error, body }),
    };
    let delivery = headers
        .get("webhook-id")
        .or_else(|| headers.get("idempotency-key"))
        .or_else(|| headers.get("x-gitlab-event-uuid"));
    Ok(VerifiedWebhook::new(
        Platform::GitLab,
        delivery,
        headers.get("x-gitlab-event"),
        body,
        slot,
    )
    .replay(if id_signed {
        Replay::IdSigned
    } else {
        Replay::BodyHash
    }))
}

/// The secret that authenticated the delivery, and whether the id is signed too.
fn check(
    headers: &Headers,
    body: &[u8],
    secrets: &Secrets<'_>,
    now_secs: i64,
) -> Result<(Slot, bool), VerifyError> {
    let token = headers.get("x-gitlab-token").ok_or(VerifyError::Missing)?;
    let mut slot = None;
    for (s, secret) in secrets.candidates() {
        if constant_time_eq(token.as_bytes(), secret) && slot.is_none() {
            slot = Some(s);
        }
    }
    let slot: Slot = slot.ok_or(VerifyError::Mismatch)?;
    let id_signed = match secrets.signing_token {
        Some(signing) => {
            verify_standard_webhook(headers, body, signing, now_secs)?;
            true
        }
        None => false,
    };
    Ok((slot, id_signed))
}

/// The HMAC key of a Standard Webhooks secret: `whsec_<base64>` decodes to the key bytes; any
/// other form is used as given.
pub fn signing_key(token: &[u8]) -> Vec<u8> {
    token
        .strip_prefix(b"whsec_")
        .and_then(|b64| STANDARD.decode(b64).ok())
        .unwrap_or_else(|| token.to_vec())
}

/// `v1,<base64>` for a delivery: what GitLab sends (tests, fakes, benches).
pub fn sign_standard_webhook(token: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut msg = format!("{id}.{timestamp}.").into_bytes();
    msg.extend_from_slice(body);
    format!(
        "v1,{}",
        STANDARD.encode(hmac_sha256(&signing_key(token), &msg))
    )
}

fn verify_standard_webhook(
    headers: &Headers,
    body: &[u8],
    token: &[u8],
    now_secs: i64,
) -> Result<(), VerifyError> {
    let id = headers.get("webhook-id").ok_or(VerifyError::Missing)?;
    let ts_raw = headers
        .get("webhook-timestamp")
        .ok_or(VerifyError::Missing)?;
    let sigs = headers
        .get("webhook-signature")
        .ok_or(VerifyError::Missing)?;
    let ts: i64 = ts_raw.parse().map_err(|_| VerifyError::Malformed)?;
    // Checked arithmetic: a timestamp near i64::MIN or i64::MAX is simply stale (found by
    // fuzzing: `now - ts` overflowed and panicked where overflow checks are on).
    let skew = now_secs.checked_sub(ts).and_then(i64::checked_abs);
    if skew.is_none_or(|s| s > TOLERANCE_SECONDS) {
        return Err(VerifyError::StaleTimestamp);
    }
    // `{id}.{timestamp}.{body}`, MACed in place rather than copied together.
    let expected = hmac_sha256_parts(
        &signing_key(token),
        &[id.as_bytes(), b".", ts_raw.as_bytes(), b".", body],
    );
    let mut any_v1 = false;
    let mut ok = false;
    for sig in sigs.split_whitespace() {
        let Some(b64) = sig.strip_prefix("v1,") else {
            continue;
        };
        any_v1 = true;
        if let Ok(bytes) = STANDARD.decode(b64) {
            ok |= constant_time_eq(&bytes, &expected);
        }
    }
    match (any_v1, ok) {
        (_, true) => Ok(()),
        (false, false) => Err(VerifyError::Malformed),
        (true, false) => Err(VerifyError::Mismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000;

    fn secrets<'a>(signing: Option<&'a [u8]>) -> Secrets<'a> {
        Secrets {
            current: b"gl-token",
            previous: Some(b"gl-old"),
            signing_token: signing,
        }
    }

    fn signed(body: &[u8], ts: i64, signing: &[u8]) -> Headers {
        Headers::new()
            .with("X-Gitlab-Token", "gl-token")
            .with("X-Gitlab-Event", "Merge Request Hook")
            .with("webhook-id", "msg_1")
            .with("webhook-timestamp", &ts.to_string())
            .with(
                "webhook-signature",
                &sign_standard_webhook(signing, "msg_1", ts, body),
            )
    }

    #[test]
    fn token_only_integrations_compare_the_token() {
        let body = b"{}".to_vec();
        let h = Headers::new()
            .with("X-Gitlab-Token", "gl-token")
            .with("X-Gitlab-Event-UUID", "uuid-1");
        let v = verify(&h, body.clone(), &secrets(None), NOW).unwrap();
        assert_eq!(v.delivery_id(), "uuid-1");
        // A bare token covers nothing of the delivery: replays are recognised by the body.
        assert!(v.replay_key().is_some());
        let old = Headers::new().with("X-Gitlab-Token", "gl-old");
        assert_eq!(
            verify(&old, body.clone(), &secrets(None), NOW)
                .unwrap()
                .slot(),
            Slot::Previous
        );
        let bad = Headers::new().with("X-Gitlab-Token", "gl-tokem");
        assert_eq!(
            verify(&bad, body.clone(), &secrets(None), NOW).unwrap_err(),
            VerifyError::Mismatch
        );
        assert_eq!(
            verify(&Headers::new(), body, &secrets(None), NOW).unwrap_err(),
            VerifyError::Missing
        );
    }

    /// Fuzzing found this (fuzz/findings/webhook-timestamp-overflow): a timestamp of i64::MIN
    /// overflowed `now - ts`. It is stale, like any timestamp far from now.
    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let key = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = b"{}".to_vec();
        for ts in [i64::MIN, i64::MAX, i64::MIN + 1] {
            assert_eq!(
                verify(
                    &signed(&body, ts, key),
                    body.clone(),
                    &secrets(Some(key)),
                    NOW
                )
                .unwrap_err(),
                VerifyError::StaleTimestamp
            );
        }
    }

    #[test]
    fn standard_webhooks_signature_and_tolerance() {
        let key = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"object_kind":"merge_request"}"#.to_vec();
        let s = secrets(Some(key));
        let v = verify(&signed(&body, NOW - 10, key), body.clone(), &s, NOW).unwrap();
        assert_eq!(v.delivery_id(), "msg_1");
        // The signature covers the id: no body-based replay key is needed.
        assert_eq!(v.replay_key(), None);
        // Tampered body.
        let mut t = body.clone();
        t[2] ^= 1;
        assert_eq!(
            verify(&signed(&body, NOW, key), t, &s, NOW).unwrap_err(),
            VerifyError::Mismatch
        );
        // Stale and future timestamps.
        for ts in [NOW - TOLERANCE_SECONDS - 1, NOW + TOLERANCE_SECONDS + 1] {
            assert_eq!(
                verify(&signed(&body, ts, key), body.clone(), &s, NOW).unwrap_err(),
                VerifyError::StaleTimestamp
            );
        }
        // Token right, signature missing.
        let h = Headers::new().with("X-Gitlab-Token", "gl-token");
        assert_eq!(
            verify(&h, body.clone(), &s, NOW).unwrap_err(),
            VerifyError::Missing
        );
        // Several signatures: one valid is enough.
        let good = sign_standard_webhook(key, "msg_1", NOW, &body);
        let h = signed(&body, NOW, key).with("webhook-signature", "");
        let mut h2 = Headers::new();
        for name in ["x-gitlab-token", "webhook-id", "webhook-timestamp"] {
            h2.insert(name, h.get(name).unwrap());
        }
        h2.insert("webhook-signature", &format!("v1,AAAA {good}"));
        assert!(verify(&h2, body.clone(), &s, NOW).is_ok());
        // The wrong signing key.
        let other = b"whsec_c29tZXRoaW5nLWVsc2UtZW50aXJlbHk=";
        assert_eq!(
            verify(&signed(&body, NOW, other), body, &s, NOW).unwrap_err(),
            VerifyError::Mismatch
        );
    }

    #[test]
    fn whsec_keys_decode() {
        assert_eq!(signing_key(b"whsec_aGVsbG8="), b"hello");
        assert_eq!(signing_key(b"raw-token"), b"raw-token");
    }
}
