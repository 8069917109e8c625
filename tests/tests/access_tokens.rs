//! Access tokens minted with the deployment's real signing key (derived from this checkout's
//! root secret, as the gateway derives it) but outside their validity: expired, not yet valid,
//! for another audience or issuer, or with a `kid` the deployment does not hold. Each must be
//! refused with the right code even though its signature is genuine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::identity::new_user;
use e2e::{stack, Client};
use edgeplane_core::auth::access_token::{AUD_CLI, AUD_DEVICE, AUD_USER};
use edgeplane_core::crypto::jwt::{Claims, KeySet, LEEWAY_SECONDS};
use edgeplane_core::crypto::kdf::RootSecret;
use edgeplane_core::identity::session::SessionClaims;

fn deployment_keys(version: u32) -> KeySet {
    let hex = std::env::var("EP_ROOT_SECRET").expect("EP_ROOT_SECRET from scripts/test");
    KeySet::derive(&RootSecret::from_hex(&hex).unwrap(), version, 0)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token(keys: &KeySet, iss: &str, aud: &str, sub: &str, sid: &str, iat: i64, exp: i64) -> String {
    keys.signing_key()
        .sign(&Claims {
            iss: iss.to_owned(),
            aud: aud.to_owned(),
            sub: sub.to_owned(),
            iat,
            nbf: iat,
            exp,
            jti: format!("jti-{iat}-{exp}"),
            extra: SessionClaims {
                sid: sid.to_owned(),
                org: None,
                scope: None,
            },
        })
        .unwrap()
}

#[test]
fn genuine_signatures_outside_their_validity_are_refused() {
    let s = new_user("minted");
    let me = "/v1/me";
    s.client().get(me).expect(200);
    let keys = deployment_keys(1);
    let iss = stack().base_url.clone();
    let t = now();
    let call = |tok: &str| Client::anonymous().with_bearer(tok).get(me);

    // The control: a fresh token minted the same way is accepted, so the refusals below are
    // about the one claim each changes.
    call(&token(
        &keys,
        &iss,
        AUD_USER,
        &s.user_id,
        &s.session_id,
        t,
        t + 600,
    ))
    .expect(200);

    // Expired beyond the clock-skew leeway.
    let expired = token(
        &keys,
        &iss,
        AUD_USER,
        &s.user_id,
        &s.session_id,
        t - 3600,
        t - LEEWAY_SECONDS - 5,
    );
    call(&expired).expect_error(401, "token_expired");
    // Not valid yet.
    let future = token(
        &keys,
        &iss,
        AUD_USER,
        &s.user_id,
        &s.session_id,
        t + 3600,
        t + 4000,
    );
    call(&future).expect_error(401, "token_expired");
    // Another issuer (a different deployment's origin).
    let foreign = token(
        &keys,
        "https://elsewhere.example",
        AUD_USER,
        &s.user_id,
        &s.session_id,
        t,
        t + 600,
    );
    call(&foreign).expect_error(401, "invalid_token");
    // A device audience where a person is required, and a made-up audience.
    let device = token(
        &keys,
        &iss,
        AUD_DEVICE,
        &s.user_id,
        &s.session_id,
        t,
        t + 600,
    );
    assert_eq!(
        call(&device).status,
        401,
        "a device-audience token passed as a user"
    );
    let odd = token(
        &keys,
        &iss,
        "edgeplane:admin",
        &s.user_id,
        &s.session_id,
        t,
        t + 600,
    );
    call(&odd).expect_error(401, "invalid_token");
    // A CLI audience for a web session: the session kind must match the audience.
    let cli = token(&keys, &iss, AUD_CLI, &s.user_id, &s.session_id, t, t + 600);
    assert_eq!(
        call(&cli).status,
        401,
        "a CLI-audience token passed for a web session"
    );
    // A key version the deployment does not use (as after a rotation past it).
    let old = token(
        &deployment_keys(7),
        &iss,
        AUD_USER,
        &s.user_id,
        &s.session_id,
        t,
        t + 600,
    );
    call(&old).expect_error(401, "invalid_token");
    // A session id that does not exist, and another user's subject on a real session.
    let ghost = token(
        &keys,
        &iss,
        AUD_USER,
        &s.user_id,
        "ses_0000000000000000000000000000",
        t,
        t + 600,
    );
    call(&ghost).expect_error(401, "invalid_token");
    let other = new_user("minted-other");
    let swapped = token(
        &keys,
        &iss,
        AUD_USER,
        &other.user_id,
        &s.session_id,
        t,
        t + 600,
    );
    call(&swapped).expect_error(401, "invalid_token");
}
