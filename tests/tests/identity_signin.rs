//! Sign-in: magic links through the Resend-compatible email fake, and OpenID Connect against a
//! real OpenID Provider (`oidc-provider`) on loopback — happy paths, abuse, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::identity::*;
use e2e::{stack, stack_log, wait_for, Client};
use serde_json::json;

#[test]
fn magic_link_signs_in_a_new_user_once() {
    let email = unique_email("Magic");
    let fake = email_fake();
    let ip = unique_ip();
    let r = request_magic_link(&email, &ip).expect(202).json();
    assert_eq!(r["status"], "sent");
    assert_eq!(r["expires_in"], 900);
    // Delivered through the provider API to the normalized address, with the link in text and
    // HTML and the token in the URL fragment.
    let lower = email.to_lowercase();
    let msg = wait_for("magic link", Duration::from_secs(20), || {
        fake.messages_to(&lower).first().cloned()
    });
    assert_eq!(msg["from"], "edgeplane <no-reply@edgeplane.test>");
    let token = token_in(&msg);
    assert!(token.starts_with("epml_"));
    assert!(msg["html"].as_str().unwrap().contains(&token));
    assert!(msg["text"]
        .as_str()
        .unwrap()
        .contains("/sign-in/magic-link#token="));

    let body = verify_magic_link(&token, &ip).expect(200).json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["new_user"], true);
    assert_eq!(body["user"]["email"], lower.as_str());
    assert!(body["refresh_token"].as_str().unwrap().starts_with("eprt_"));
    let session = Client::anonymous().with_bearer(body["access_token"].as_str().unwrap());
    let me = session.get("/v1/me").expect(200).json();
    assert_eq!(me["user"]["email"], lower.as_str());
    assert_eq!(me["memberships"], json!([]));

    // Replayed link: refused, whoever presents it.
    verify_magic_link(&token, &ip).expect_error(400, "invalid_grant");
    verify_magic_link(&token, &unique_ip()).expect_error(400, "invalid_grant");

    // A second sign-in finds the same user; the user and session creation were audited.
    let again = sign_in(&email);
    assert_eq!(again.user_id, body["user"]["id"].as_str().unwrap());
    assert_eq!(audit_events("user.created", &again.user_id).len(), 1);
    let created = audit_events("session.created", &again.session_id);
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["actor_id"], again.user_id.as_str());
    assert!(!created[0]["metadata"].as_str().unwrap().contains("epml_"));
}

#[test]
fn the_seeded_owner_signs_in_and_sees_the_org() {
    let s = owner_session();
    let me = s.client().get("/v1/me").expect(200).json();
    let m = me["memberships"].as_array().unwrap();
    assert!(m
        .iter()
        .any(|m| m["org"]["id"] == stack().org_id.as_str() && m["role"] == "owner"));
    let access = s
        .client()
        .get(&format!("/v1/orgs/{}/me", stack().org_slug))
        .expect(200)
        .json();
    assert_eq!(access["role"], "owner");
    assert_eq!(access["principal"]["kind"], "user");
    s.client()
        .get(&format!("/v1/orgs/{}", stack().org_id))
        .expect(200);
}

#[test]
fn requests_answer_the_same_for_any_address_and_bad_input_is_refused() {
    let ip = unique_ip();
    let a = request_magic_link(&unique_email("nobody"), &ip)
        .expect(202)
        .json();
    let b = request_magic_link(&stack().owner_email, &ip)
        .expect(202)
        .json();
    assert_eq!(a, b);

    let c = Client::anonymous();
    let path = "/v1/auth/magic-link";
    request_magic_link("not-an-email", &ip).expect_error(422, "validation_failed");
    c.post(path, &json!({"email": "a@example.com", "remember": true}))
        .expect_error(422, "validation_failed");
    c.post(path, &json!({}))
        .expect_error(422, "validation_failed");
    c.post_raw(path, "application/json", b"{\"email\": ".to_vec())
        .expect_error(400, "invalid_json");
    c.post_raw(
        path,
        "text/plain",
        b"{\"email\": \"a@example.com\"}".to_vec(),
    )
    .expect_error(415, "unsupported_media_type");
    let mut big = b"{\"email\": \"a@example.com\"".to_vec();
    big.extend(vec![b' '; 20_000]);
    big.push(b'}');
    c.post_raw(path, "application/json", big)
        .expect_error(413, "payload_too_large");

    let v = "/v1/auth/magic-link/verify";
    for bad in [
        "",
        "epml_short",
        "eprt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "epml_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        verify_magic_link(bad, &ip).expect_error(400, "invalid_grant");
    }
    c.post(v, &json!({"token": 5}))
        .expect_error(422, "validation_failed");
    c.post(v, &json!({"token": "x", "email": "a@b.c"}))
        .expect_error(422, "validation_failed");
    c.post_raw(v, "application/x-www-form-urlencoded", b"token=x".to_vec())
        .expect_error(415, "unsupported_media_type");
}

#[test]
fn magic_links_are_rate_limited_per_address_and_per_ip() {
    let email = unique_email("limited");
    for _ in 0..5 {
        request_magic_link(&email, &unique_ip()).expect(202);
    }
    let r = request_magic_link(&email, &unique_ip()).expect_error(429, "rate_limited");
    let retry: u32 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    // Another address from the same IPs is unaffected; one IP asking for many addresses is not.
    let ip = unique_ip();
    let allowed = allowed_until_limited(|| request_magic_link(&unique_email("spray"), &ip));
    assert!(allowed >= 30, "{allowed}");
}

/// Sends requests until one is refused with 429 (and `Retry-After`); returns how many were
/// allowed before it. The buckets refill (a 30-per-10-minutes limit gains one every 20 s), so
/// on a loaded machine a few more than the capacity may pass; far more never does.
fn allowed_until_limited(mut send: impl FnMut() -> e2e::Resp) -> usize {
    for allowed in 0..45 {
        let r = send();
        if r.status == 429 {
            let r = r.expect_error(429, "rate_limited");
            assert!(r.header("retry-after").is_some());
            return allowed;
        }
        r.expect(202);
    }
    panic!("45 requests passed a limit of 30");
}

/// One subscriber holds a whole IPv6 /64 and may use any address in it: rotating through it
/// must not reset the per-address budget. (Another /64 is another client.)
#[test]
fn per_ip_limits_count_an_ipv6_slash_64_as_one_client() {
    let prefix = unique_ipv6_prefix();
    let mut n = 0u32;
    let allowed = allowed_until_limited(|| {
        n += 1;
        // A different address of the same /64 every time.
        request_magic_link(
            &unique_email("v6"),
            &format!("{prefix}{n:x}:1:2:{:x}", n * 7),
        )
    });
    assert!(allowed >= 30, "{allowed}");
    // Another /64 is another client.
    request_magic_link(
        &unique_email("v6"),
        &format!("{}1::1", unique_ipv6_prefix()),
    )
    .expect(202);
}

/// Issue 5: every sign-in without an org (magic links, sessions, device authorizations) records
/// an event in the one platform chain, and appending to it raced: eight conflicts and a
/// sign-in failed with 503, so a crowd of unauthenticated requests could block every tenant's
/// sign-ins. Now the event is committed with its change without taking a position, and the
/// chain's sequencer places the events afterwards.
#[test]
fn two_hundred_concurrent_sign_in_requests_all_succeed_and_the_platform_chain_verifies() {
    let emails: Vec<String> = (0..200).map(|_| unique_email("crowd")).collect();
    let mut statuses = Vec::new();
    for wave in emails.chunks(32) {
        let handles: Vec<_> = wave
            .iter()
            .cloned()
            .map(|email| {
                std::thread::spawn(move || {
                    let r = request_magic_link(&email, &unique_ip());
                    (r.status, r.text)
                })
            })
            .collect();
        statuses.extend(handles.into_iter().map(|h| h.join().unwrap()));
    }
    let failed: Vec<_> = statuses.iter().filter(|(s, _)| *s != 202).collect();
    assert!(
        failed.is_empty(),
        "{} of 200 failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );

    // The sequencer, poked by each commit, places all 200 events (no read asks it to).
    wait_for(
        "the requests' events in the platform chain",
        Duration::from_secs(60),
        || {
            let n = d1(
                "SELECT count(*) AS n FROM audit_events WHERE chain = '_platform' \
             AND action = 'magic_link.requested' \
             AND json_extract(metadata, '$.email') IN (SELECT value FROM json_each(?))",
                &[json!(serde_json::to_string(&emails).unwrap())],
            )[0]["n"]
                .as_u64();
            (n == Some(200)).then_some(())
        },
    );

    // The whole platform chain verifies offline, against its newest signed checkpoint checked
    // with the deployment's published key.
    let key = Client::anonymous()
        .get("/v1/audit/checkpoint-key")
        .expect(200)
        .json();
    let latest = d1(
        "SELECT size, note FROM audit_checkpoints WHERE chain = '_platform' \
         ORDER BY size DESC LIMIT 1",
        &[],
    );
    let origin = format!("{}_platform", key["origin_prefix"].as_str().unwrap());
    let verifier = edgeplane_core::audit::checkpoint::NoteVerifier::from_published(
        &origin,
        key["public_key"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(
        verifier.to_string(),
        key["platform_verifier_key"].as_str().unwrap()
    );
    let cp = verifier.open(latest[0]["note"].as_str().unwrap()).unwrap();
    let events: Vec<edgeplane_core::audit::ChainedEvent> = d1(
        "SELECT * FROM audit_events WHERE chain = '_platform' ORDER BY seq",
        &[],
    )
    .into_iter()
    .map(|r| serde_json::from_value(r).unwrap())
    .collect();
    let mut v = edgeplane_core::audit::ChainVerifier::new();
    v.expect(edgeplane_core::audit::ChainHead {
        seq: cp.size as i64,
        hash: cp.head_hash_hex(),
    });
    events.iter().for_each(|e| v.feed(e));
    let report = v.finish();
    assert!(report.valid, "{report:?}");
    assert!(report.events_checked >= 200);
}

#[test]
fn the_development_outbox_does_not_exist_outside_development() {
    let email = unique_email("outbox");
    sign_in(&email);
    Client::anonymous()
        .get(&format!("/v1/dev/outbox/{email}"))
        .expect_error(404, "route_not_found");
}

#[test]
fn a_failing_email_provider_is_503_and_links_never_reach_the_logs() {
    let fake = email_fake();
    let email = unique_email("outage");
    fake.fail_next(&email.to_lowercase(), 500, 1);
    request_magic_link(&email, &unique_ip()).expect_error(503, "unavailable");
    // The next one goes through.
    let s = sign_in(&email);
    let log = stack_log();
    assert!(
        !log.contains("epml_"),
        "a sign-in link token reached the logs"
    );
    assert!(!log.contains(&s.refresh_token));
    assert!(!log.contains(&s.access_token));
}

// ---------------------------------------------------------------------------------------------
// OpenID Connect (authorization code + PKCE + state + nonce) against oidc-provider.
// ---------------------------------------------------------------------------------------------

#[test]
fn providers_are_listed() {
    let p = Client::anonymous()
        .get("/v1/auth/providers")
        .expect(200)
        .json();
    let list = p["providers"].as_array().unwrap();
    assert!(list
        .iter()
        .any(|p| p["name"] == "test" && p["preset"] == "generic"));
    Client::anonymous()
        .get("/v1/auth/providers/nope/start")
        .expect_error(404, "not_found");
}

#[test]
fn oidc_sign_in_creates_links_and_reuses_the_user() {
    let email = unique_email("oidc");
    let start = oidc_start(&email);
    // The request carries PKCE (S256), state and nonce; never the verifier.
    let url = reqwest::Url::parse(&start.authorization_url).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["state"].len(), 43);
    assert_eq!(q["nonce"].len(), 43);
    assert!(url
        .as_str()
        .starts_with(&std::env::var("EP_OIDC_ISSUER").unwrap()));

    let cb = oidc_authorize(&start.authorization_url);
    let first = oidc_callback(&cb, &start.cookie).expect(200);
    assert!(first.header("set-cookie").unwrap().contains("Max-Age=0"));
    let body = first.json();
    assert_eq!(body["new_user"], true);
    assert_eq!(body["user"]["email"], email.as_str());
    assert_eq!(
        body["user"]["display_name"],
        format!("Test {}", email.split('@').next().unwrap())
    );
    let user_id = body["user"]["id"].as_str().unwrap().to_owned();
    assert_eq!(audit_events("user.identity_linked", &user_id).len(), 1);

    // Signing in again (through the provider or by email) is the same person.
    let again = oidc_sign_in(&email);
    assert_eq!(again.user_id, user_id);
    assert_eq!(sign_in(&email).user_id, user_id);
    let sessions = again.client().get("/v1/sessions").expect(200).json();
    assert!(sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["auth_method"] == "provider:test" && s["current"] == true));

    // Replaying the callback (same code, same state): the state is spent.
    oidc_callback(&cb, &start.cookie).expect_error(400, "invalid_grant");
}

#[test]
fn oidc_links_an_existing_account_only_by_a_verified_email() {
    let existing = new_user("linked");
    let s = oidc_sign_in(&existing.email);
    assert_eq!(s.user_id, existing.user_id);

    // The provider says the address is unverified: no account is created or linked.
    let email = unique_email("unverified");
    let start = oidc_start(&email);
    let cb = oidc_authorize(&start.authorization_url);
    oidc_callback(&cb, &start.cookie).expect_error(403, "forbidden");
}

#[test]
fn oidc_refuses_bad_state_missing_binding_and_foreign_browsers() {
    let email = unique_email("state");
    let start = oidc_start(&email);
    let cb = oidc_authorize(&start.authorization_url);
    // Callback without the binding cookie (another browser): refused, and the flow survives.
    oidc_callback(&cb, "").expect_error(400, "invalid_grant");
    oidc_callback(&cb, "ep_signin=forged").expect_error(400, "invalid_grant");
    // A tampered state.
    let url = reqwest::Url::parse(&cb).unwrap();
    let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let mut bad = url.clone();
    bad.query_pairs_mut().clear();
    for (k, v) in &q {
        let v = if k == "state" {
            // Change the last character (to one it is not already).
            let last = if v.ends_with('A') { 'B' } else { 'A' };
            format!("{}{last}", &v[..v.len() - 1])
        } else {
            v.clone()
        };
        bad.query_pairs_mut().append_pair(k, &v);
    }
    oidc_callback(bad.as_str(), &start.cookie).expect_error(400, "invalid_grant");
    let mut junk = url.clone();
    junk.set_query(Some("state=x&code=y"));
    oidc_callback(junk.as_str(), &start.cookie).expect_error(400, "invalid_grant");
    // A state from another flow (another browser's cookie).
    let other = oidc_start(&email);
    oidc_callback(&cb, &other.cookie).expect_error(400, "invalid_grant");
    // The real one still works once.
    oidc_callback(&cb, &start.cookie).expect(200);
    // The provider refusing.
    let mut denied = url.clone();
    denied.set_query(Some("error=access_denied&state=abc"));
    oidc_callback(denied.as_str(), &start.cookie).expect_error(403, "forbidden");
}

/// Rewrites one query parameter of a URL.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let u = reqwest::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = u.query_pairs().into_owned().collect();
    let mut out = u.clone();
    out.query_pairs_mut().clear();
    for (k, v) in pairs {
        out.query_pairs_mut()
            .append_pair(&k, if k == name { value } else { &v });
    }
    out.to_string()
}

#[test]
fn oidc_refuses_an_id_token_with_another_nonce() {
    let start = oidc_start(&unique_email("nonce"));
    // Someone swaps the nonce on the way to the provider: the ID token carries theirs.
    let tampered = with_param(
        &start.authorization_url,
        "nonce",
        "attacker-chosen-nonce-value-0000000000000",
    );
    let cb = oidc_authorize(&tampered);
    let r = oidc_callback(&cb, &start.cookie).expect_error(401, "invalid_token");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nonce"));
}

#[test]
fn oidc_refuses_a_code_issued_for_another_pkce_challenge() {
    let start = oidc_start(&unique_email("pkce"));
    // The code is bound to a challenge whose verifier the gateway does not hold.
    let tampered = with_param(
        &start.authorization_url,
        "code_challenge",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    );
    let cb = oidc_authorize(&tampered);
    oidc_callback(&cb, &start.cookie).expect_error(400, "invalid_grant");

    // A code from one flow with another flow's state (its own verifier): refused by the
    // provider's PKCE check too.
    let a = oidc_start(&unique_email("pkce-a"));
    let b = oidc_start(&unique_email("pkce-b"));
    let cb_a = oidc_authorize(&a.authorization_url);
    let code_a = reqwest::Url::parse(&cb_a)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let state_b = reqwest::Url::parse(&b.authorization_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let mixed = with_param(&with_param(&cb_a, "state", &state_b), "code", &code_a);
    oidc_callback(&mixed, &b.cookie).expect_error(400, "invalid_grant");
}
