//! GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`, delivery id in
//! `X-GitHub-Delivery`, event name in `X-GitHub-Event`. The legacy SHA-1 header is ignored.
//!
//! A hook's `content_type` is `json` or — GitHub's default — `form`, which sends
//! `payload=<url-encoded JSON>` as `application/x-www-form-urlencoded`. The signature covers the
//! raw bytes as sent either way, so it is checked first; the form is decoded only when the event
//! is classified.

use super::{
    is_form, verify_hex_hmac, Headers, Platform, Refused, Replay, Secrets, VerifiedWebhook,
    VerifyError,
};

pub fn verify(
    headers: &Headers,
    body: Vec<u8>,
    secrets: &Secrets<'_>,
) -> Result<VerifiedWebhook, VerifyError> {
    verify_keeping(headers, body, secrets).map_err(|r| r.error)
}

/// [`verify`], handing the body back on refusal.
pub(super) fn verify_keeping(
    headers: &Headers,
    body: Vec<u8>,
    secrets: &Secrets<'_>,
) -> Result<VerifiedWebhook, Refused> {
    let (slot, mac) = match verify_hex_hmac(headers.get("x-hub-signature-256"), &body, secrets) {
        Ok(verified) => verified,
        Err(error) => return Err(Refused { error, body }),
    };
    Ok(VerifiedWebhook::new(
        Platform::GitHub,
        headers.get("x-github-delivery"),
        headers.get("x-github-event"),
        body,
        slot,
    )
    .form_encoded(is_form(headers.get("content-type")))
    .replay(Replay::BodyMac(mac)))
}

#[cfg(test)]
mod tests {
    use super::super::sign_hex_sha256;
    use super::*;

    fn secrets<'a>(cur: &'a [u8], prev: Option<&'a [u8]>) -> Secrets<'a> {
        Secrets {
            current: cur,
            previous: prev,
            signing_token: None,
        }
    }

    #[test]
    fn github_documented_example_verifies() {
        // The example from GitHub's "validating webhook deliveries" documentation.
        let h = Headers::new().with(
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        );
        let v = verify(
            &h,
            b"Hello, World!".to_vec(),
            &secrets(b"It's a Secret to Everybody", None),
        )
        .unwrap();
        assert_eq!(v.platform(), Platform::GitHub);
    }

    #[test]
    fn tampered_missing_and_malformed_are_refused() {
        let body = br#"{"action":"opened"}"#.to_vec();
        let sig = sign_hex_sha256(b"s3cret", &body);
        let h = Headers::new()
            .with("x-hub-signature-256", &sig)
            .with("x-github-delivery", "d-1")
            .with("x-github-event", "pull_request");
        let ok = verify(&h, body.clone(), &secrets(b"s3cret", None)).unwrap();
        assert_eq!(ok.delivery_id(), "d-1");
        assert_eq!(ok.event(), "pull_request");
        let mut tampered = body.clone();
        tampered[3] ^= 1;
        assert_eq!(
            verify(&h, tampered, &secrets(b"s3cret", None)).unwrap_err(),
            VerifyError::Mismatch
        );
        assert_eq!(
            verify(&Headers::new(), body.clone(), &secrets(b"s3cret", None)).unwrap_err(),
            VerifyError::Missing
        );
        for bad in ["sha1=abcd", "sha256=zz", "sha256=abcd", "nonsense"] {
            let h = Headers::new().with("x-hub-signature-256", bad);
            assert_eq!(
                verify(&h, body.clone(), &secrets(b"s3cret", None)).unwrap_err(),
                VerifyError::Malformed,
                "{bad}"
            );
        }
        assert_eq!(
            verify(&h, body, &secrets(b"another org's secret", None)).unwrap_err(),
            VerifyError::Mismatch
        );
    }

    #[test]
    fn form_deliveries_are_verified_on_the_raw_form_body() {
        let body = b"payload=%7B%22zen%22%3A%22x%22%7D".to_vec();
        let h = Headers::new()
            .with("x-hub-signature-256", &sign_hex_sha256(b"s3cret", &body))
            .with("content-type", "application/x-www-form-urlencoded");
        let v = verify(&h, body.clone(), &secrets(b"s3cret", None)).unwrap();
        assert!(v.is_form_encoded());
        assert_eq!(v.body(), body.as_slice());
        // Signing the decoded JSON instead of the bytes sent does not verify.
        let h = Headers::new()
            .with(
                "x-hub-signature-256",
                &sign_hex_sha256(b"s3cret", br#"{"zen":"x"}"#),
            )
            .with("content-type", "application/x-www-form-urlencoded");
        assert_eq!(
            verify(&h, body, &secrets(b"s3cret", None)).unwrap_err(),
            VerifyError::Mismatch
        );
    }

    #[test]
    fn rotation_overlap_accepts_old_and_new() {
        let body = b"{}".to_vec();
        let old = Headers::new().with("x-hub-signature-256", &sign_hex_sha256(b"old", &body));
        let new = Headers::new().with("x-hub-signature-256", &sign_hex_sha256(b"new", &body));
        let s = secrets(b"new", Some(b"old"));
        assert_eq!(
            verify(&old, body.clone(), &s).unwrap().slot(),
            super::super::Slot::Previous
        );
        assert_eq!(
            verify(&new, body.clone(), &s).unwrap().slot(),
            super::super::Slot::Current
        );
        // After the window closes the caller stops passing `previous`.
        assert!(verify(&old, body, &secrets(b"new", None)).is_err());
    }
}
