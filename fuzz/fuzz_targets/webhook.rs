//! Webhook verification and event classification for the three platforms, with fuzzed headers
//! and bodies: never panics; a body signed with the integration's secret always verifies, a
//! GitHub or Bitbucket body with any other signature never does; whatever verifies is
//! classified without panicking.
#![no_main]

use edgeplane_core::webhook::gitlab::sign_standard_webhook;
use edgeplane_core::webhook::{
    bitbucket, event, github, gitlab, sign_hex_sha256, Headers, Secrets,
};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const SECRET: &[u8] = b"fuzz-secret-current";
const PREVIOUS: &[u8] = b"fuzz-secret-previous";
const SIGNING: &[u8] = b"whsec_ZnV6ei1zaWduaW5nLXRva2Vu";
const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let (ctl, rest) = common::split_first(data);
    // event \n delivery \n signature \n timestamp \n body
    let mut fields = rest.splitn(5, |b| *b == b'\n');
    let mut text = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let (event_name, delivery, presented, timestamp) = (text(), text(), text(), text());
    let body = fields.next().unwrap_or_default().to_vec();
    let signed = ctl & 4 != 0;
    let secrets = Secrets {
        current: SECRET,
        previous: (ctl & 8 != 0).then_some(PREVIOUS),
        signing_token: (ctl & 3 == 3).then_some(SIGNING),
    };
    let signing_secret = if ctl & 16 != 0 && secrets.previous.is_some() {
        PREVIOUS
    } else {
        SECRET
    };
    let verified = match ctl & 3 {
        0 => {
            let sig = if signed {
                sign_hex_sha256(signing_secret, &body)
            } else {
                presented
            };
            let h = Headers::new()
                .with("x-hub-signature-256", &sig)
                .with("x-github-event", &event_name)
                .with("x-github-delivery", &delivery);
            let r = github::verify(&h, body.clone(), &secrets);
            assert_eq!(r.is_ok(), signed, "GitHub verification");
            r
        }
        2 => {
            let sig = if signed {
                sign_hex_sha256(signing_secret, &body)
            } else {
                presented
            };
            let h = Headers::new()
                .with("x-hub-signature", &sig)
                .with("x-event-key", &event_name)
                .with("x-request-uuid", &delivery);
            let r = bitbucket::verify(&h, body.clone(), &secrets);
            assert_eq!(r.is_ok(), signed, "Bitbucket verification");
            r
        }
        _ => {
            let token = if signed {
                String::from_utf8_lossy(signing_secret).into_owned()
            } else {
                presented.clone()
            };
            let mut h = Headers::new()
                .with("x-gitlab-token", &token)
                .with("x-gitlab-event", &event_name)
                .with("webhook-id", &delivery)
                .with("webhook-timestamp", &timestamp);
            if signed {
                let ts = timestamp.trim().parse::<i64>().unwrap_or(NOW);
                h.insert(
                    "webhook-signature",
                    &sign_standard_webhook(SIGNING, delivery.trim(), ts, &body),
                );
            } else {
                h.insert("webhook-signature", &presented);
            }
            gitlab::verify(&h, body.clone(), &secrets, NOW)
        }
    };
    if let Ok(w) = verified {
        let _ = event::classify(&w);
    }
});
