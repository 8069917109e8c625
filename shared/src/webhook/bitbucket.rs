//! Bitbucket Cloud and Data Center: `X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw
//! body)>`. The delivery id is Cloud's `X-Request-UUID` or Data Center's `X-Request-Id`; the
//! event name is `X-Event-Key` (`pullrequest:created` on Cloud, `pr:opened` on Data Center).

use super::{
    verify_hex_hmac, Headers, Platform, Refused, Replay, Secrets, VerifiedWebhook, VerifyError,
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
    let (slot, mac) = match verify_hex_hmac(headers.get("x-hub-signature"), &body, secrets) {
        Ok(verified) => verified,
        Err(error) => return Err(Refused { error, body }),
    };
    let delivery = headers
        .get("x-request-uuid")
        .or_else(|| headers.get("x-request-id"));
    Ok(VerifiedWebhook::new(
        Platform::Bitbucket,
        delivery,
        headers.get("x-event-key"),
        body,
        slot,
    )
    .replay(Replay::BodyMac(mac)))
}

#[cfg(test)]
mod tests {
    use super::super::sign_hex_sha256;
    use super::*;

    #[test]
    fn verifies_cloud_and_data_center_deliveries() {
        let body = br#"{"pullrequest":{}}"#.to_vec();
        let s = Secrets {
            current: b"bb-secret",
            previous: None,
            signing_token: None,
        };
        let cloud = Headers::new()
            .with("X-Hub-Signature", &sign_hex_sha256(b"bb-secret", &body))
            .with("X-Request-UUID", "7b1c2d3e")
            .with("X-Event-Key", "pullrequest:created");
        let v = verify(&cloud, body.clone(), &s).unwrap();
        assert_eq!(
            (v.delivery_id(), v.event()),
            ("7b1c2d3e", "pullrequest:created")
        );
        let dc = Headers::new()
            .with("X-Hub-Signature", &sign_hex_sha256(b"bb-secret", &body))
            .with("X-Request-Id", "dc-1")
            .with("X-Event-Key", "pr:opened");
        assert_eq!(verify(&dc, body.clone(), &s).unwrap().delivery_id(), "dc-1");
        // GitHub's header name is not Bitbucket's.
        let wrong =
            Headers::new().with("X-Hub-Signature-256", &sign_hex_sha256(b"bb-secret", &body));
        assert_eq!(verify(&wrong, body, &s).unwrap_err(), VerifyError::Missing);
    }
}
