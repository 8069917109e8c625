//! CLI tokens through the OAuth 2.0 Device Authorization Grant (RFC 8628): every polling state,
//! approval for one org, scope capping by the approver's current role, revocation, refresh, and
//! RFC 6749 error bodies for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::access::{add_member, remove_member, set_role};
use e2e::identity::*;
use e2e::Client;
use serde_json::{json, Value};

fn code(d: &Value, field: &str) -> String {
    d[field].as_str().unwrap().to_owned()
}

#[test]
fn the_device_flow_from_pending_to_tokens() {
    let s = new_user("cli");
    let org = create_org(&s, "CLI Org");
    let org_id = org["id"].as_str().unwrap();
    let d = device_authorize(None);
    let user_code = code(&d, "user_code");
    assert_eq!(user_code.len(), 9);
    assert!(user_code
        .chars()
        .all(|c| c == '-' || "BCDFGHJKLMNPQRSTVWXZ".contains(c)));
    assert_eq!(&user_code[4..5], "-");
    assert!(code(&d, "device_code").starts_with("epdc_"));
    assert!(code(&d, "verification_uri").ends_with("/device"));
    assert_eq!(
        code(&d, "verification_uri_complete"),
        format!("{}?user_code={user_code}", code(&d, "verification_uri"))
    );
    assert_eq!(d["expires_in"], 30);
    assert_eq!(d["interval"], 5);

    let dc = code(&d, "device_code");
    expect_oauth_error(&poll_token(&dc), 400, "authorization_pending");
    // Polling faster than the interval: slow_down, and the interval grows by 5 s each time.
    let r = poll_token(&dc);
    expect_oauth_error(&r, 400, "slow_down");
    assert!(r.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("10 seconds"));
    let r = poll_token(&dc);
    expect_oauth_error(&r, 400, "slow_down");
    assert!(r.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("15 seconds"));

    // The person looks the code up (typed loosely) and approves it for one org.
    let looked = post_from(
        &s.client(),
        "/v1/device/verify",
        &json!({"user_code": user_code.to_lowercase().replace('-', " ")}),
        &unique_ip(),
    )
    .expect(200)
    .json();
    assert_eq!(looked["device_authorization"]["client_id"], CLI_CLIENT_ID);
    let approved = approve_device(&s, &user_code, org["slug"].as_str().unwrap())
        .expect(200)
        .json();
    assert_eq!(approved["device_authorization"]["org_id"], org_id);
    assert_eq!(
        audit_events(
            "device_authorization.approved",
            approved["device_authorization"]["id"].as_str().unwrap()
        )
        .len(),
        1
    );
    // Approving twice: the code is no longer pending.
    approve_device(&s, &user_code, org_id).expect_error(404, "not_found");

    let t = poll_token(&dc).expect(200).json();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    assert!(code(&t, "refresh_token").starts_with("epcr_"));
    assert!(code(&t, "scope").contains("org:owner"));
    // Replayed device code.
    expect_oauth_error(&poll_token(&dc), 400, "invalid_grant");

    let cli = Client::anonymous().with_bearer(t["access_token"].as_str().unwrap());
    let access = cli.get(&format!("/v1/orgs/{org_id}/me")).expect(200).json();
    assert_eq!(access["principal"]["kind"], "cli_token");
    assert_eq!(access["principal"]["user_id"], s.user_id.as_str());
    assert_eq!(access["role"], "owner");
    // Bound to its one org: another org of the same person is invisible to it.
    let second = create_org(&s, "Second Org");
    cli.get(&format!("/v1/orgs/{}", second["id"].as_str().unwrap()))
        .expect_error(404, "not_found");
    let me = cli.get("/v1/me").expect(200).json();
    assert_eq!(me["memberships"].as_array().unwrap().len(), 1);
    // It shows among the person's sessions, as a CLI token of that org.
    let sessions = s.client().get("/v1/sessions").expect(200).json();
    let entry = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "cli")
        .cloned()
        .unwrap();
    assert_eq!(entry["org_id"], org_id);
    assert_eq!(
        audit_events("cli_token.issued", entry["id"].as_str().unwrap())[0]["chain"],
        org_id
    );
}

#[test]
fn denied_and_expired_device_codes() {
    let s = new_user("deny");
    let d = device_authorize(None);
    let r = post_from(
        &s.client(),
        "/v1/device/deny",
        &json!({"user_code": code(&d, "user_code")}),
        &unique_ip(),
    )
    .expect(200)
    .json();
    assert_eq!(r["device_authorization"]["status"], "denied");
    expect_oauth_error(&poll_token(&code(&d, "device_code")), 400, "access_denied");

    // Expiry: this stack's device codes live 30 s.
    let org = create_org(&s, "Expiry Org");
    let d = device_authorize(None);
    std::thread::sleep(Duration::from_secs(31));
    expect_oauth_error(&poll_token(&code(&d, "device_code")), 400, "expired_token");
    approve_device(&s, &code(&d, "user_code"), org["id"].as_str().unwrap())
        .expect_error(404, "not_found");
    expect_oauth_error(&poll_token(&code(&d, "device_code")), 400, "expired_token");
}

#[test]
fn scopes_are_what_was_asked_capped_by_the_current_role() {
    let owner = new_user("scopes-owner");
    let org = create_org(&owner, "Scoped");
    let org_id = org["id"].as_str().unwrap().to_owned();
    let probes = format!("/v1/orgs/{org_id}/diagnostics/queue-probes");

    // Asked for read-only: that is all the token can do, even for an owner.
    let ro = cli_token(&owner, &org_id, Some("org:read members:read"));
    assert_eq!(ro.scope, "org:read members:read");
    ro.client().get(&format!("/v1/orgs/{org_id}")).expect(200);
    ro.client()
        .post(&probes, &json!({}))
        .expect_error(403, "insufficient_scope");

    // An admin approves everything: the token gets the admin's scopes, not the owner's.
    let admin = new_user("scopes-admin");
    add_member(&owner, &org_id, &admin, "admin");
    let t = cli_token(&admin, &org_id, None);
    assert!(t.scope.contains("org:admin") && !t.scope.contains("org:owner"));
    t.client().post(&probes, &json!({})).expect(202);
    // Demoted to member: the token loses at once what the demotion took away (the demoting
    // isolate forgets the cached membership before answering).
    set_role(&owner, &org_id, &admin.user_id, "member").expect(200);
    t.client()
        .post(&probes, &json!({}))
        .expect_error(403, "insufficient_scope");
    let access = t
        .client()
        .get(&format!("/v1/orgs/{org_id}/me"))
        .expect(200)
        .json();
    assert_eq!(access["role"], "member");
    assert!(!access["scopes"]
        .as_array()
        .unwrap()
        .contains(&json!("org:admin")));
    // Removed from the org: the token reaches nothing there, and cannot be refreshed.
    remove_member(&owner, &org_id, &admin.user_id).expect(204);
    t.client()
        .get(&format!("/v1/orgs/{org_id}"))
        .expect_error(404, "not_found");
    let r = post_form(
        &Client::anonymous(),
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t.refresh_token),
            ("client_id", CLI_CLIENT_ID),
        ],
        &unique_ip(),
    );
    expect_oauth_error(&r, 400, "invalid_grant");

    // A member cannot approve for an org they are not in, nor ask for nothing.
    let d = device_authorize(Some("org:read"));
    approve_device(&admin, &code(&d, "user_code"), &org_id).expect_error(404, "not_found");
    let only_owner = device_authorize(Some("org:owner"));
    let member = new_user("scopes-member");
    add_member(&owner, &org_id, &member, "member");
    approve_device(&member, &code(&only_owner, "user_code"), &org_id)
        .expect_error(422, "validation_failed");
}

#[test]
fn cli_tokens_are_revocable_on_their_own_and_refresh_with_reuse_detection() {
    let s = new_user("cli-revoke");
    let org = create_org(&s, "Revocable");
    let org_id = org["id"].as_str().unwrap();
    let a = cli_token(&s, org_id, None);
    let b = cli_token(&s, org_id, None);
    let sessions = s.client().get("/v1/sessions").expect(200).json();
    let cli_ids: Vec<String> = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["kind"] == "cli")
        .map(|x| x["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(cli_ids.len(), 2);
    // Which one is `a`? Its own view names its id.
    let a_id = a
        .client()
        .get(&format!("/v1/orgs/{org_id}/me"))
        .expect(200)
        .json()["principal"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(cli_ids.contains(&a_id));
    s.client()
        .delete(&format!("/v1/sessions/{a_id}"))
        .expect(204);
    a.client().get("/v1/me").expect_error(401, "invalid_token");
    b.client().get("/v1/me").expect(200);
    s.client().get("/v1/me").expect(200);
    assert_eq!(audit_events("cli_token.revoked", &a_id)[0]["chain"], org_id);

    // Refresh rotates; presenting the old refresh token again revokes that CLI token.
    let refresh_cli = |token: &str| {
        post_form(
            &Client::anonymous(),
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", CLI_CLIENT_ID),
            ],
            &unique_ip(),
        )
    };
    let r1 = refresh_cli(&b.refresh_token).expect(200).json();
    assert_eq!(r1["scope"], b.scope.as_str());
    let newer = Client::anonymous().with_bearer(r1["access_token"].as_str().unwrap());
    newer.get(&format!("/v1/orgs/{org_id}/me")).expect(200);
    refresh_cli(r1["refresh_token"].as_str().unwrap()).expect(200);
    expect_oauth_error(&refresh_cli(&b.refresh_token), 400, "invalid_grant");
    newer.get("/v1/me").expect_error(401, "invalid_token");

    // A CLI token signs itself out.
    let c = cli_token(&s, org_id, None);
    c.client().post("/v1/auth/sign-out", &json!({})).expect(204);
    c.client().get("/v1/me").expect_error(401, "invalid_token");
}

#[test]
fn guessing_user_codes_is_rate_limited() {
    let s = new_user("guesser");
    let ip = unique_ip();
    for guess in [
        "BCDF-GHJK",
        "XXXX-XXXX",
        "not a code",
        "BBBB-BBBB",
        "CCCC-CCCC",
        "DDDD-DDDD",
        "FFFF-FFFF",
        "GGGG-GGGG",
        "HHHH-HHHH",
        "JJJJ-JJJJ",
    ] {
        post_from(
            &s.client(),
            "/v1/device/verify",
            &json!({"user_code": guess}),
            &ip,
        )
        .expect_error(404, "not_found");
    }
    // The 11th attempt within the window, whichever endpoint and from any IP.
    let d = device_authorize(None);
    let r = post_from(
        &s.client(),
        "/v1/device/approve",
        &json!({"user_code": code(&d, "user_code"), "org": "whatever"}),
        &unique_ip(),
    )
    .expect_error(429, "rate_limited");
    assert!(r.header("retry-after").unwrap().parse::<u32>().unwrap() >= 1);
}

#[test]
fn oauth_endpoints_answer_rfc6749_errors_for_bad_input() {
    let c = Client::anonymous();
    let ip = unique_ip();
    let token = "/oauth/token";
    // Wrong content type, malformed and oversized bodies.
    let r = c.post(token, &json!({"grant_type": "refresh_token"}));
    expect_oauth_error(&r, 415, "invalid_request");
    let r = c.post_raw(
        token,
        "application/x-www-form-urlencoded",
        vec![0xff, 0xfe, 0x00],
    );
    expect_oauth_error(&r, 400, "invalid_request");
    let r = c.post_raw(
        token,
        "application/x-www-form-urlencoded",
        vec![b'a'; 20_000],
    );
    expect_oauth_error(&r, 413, "invalid_request");
    expect_oauth_error(&c.get(token), 405, "invalid_request");
    // Missing, repeated and unknown parameters.
    expect_oauth_error(&post_form(&c, token, &[], &ip), 400, "invalid_request");
    let r = post_form(
        &c,
        token,
        &[("grant_type", "password"), ("client_id", CLI_CLIENT_ID)],
        &ip,
    );
    expect_oauth_error(&r, 400, "unsupported_grant_type");
    let r = post_form(
        &c,
        token,
        &[
            ("grant_type", DEVICE_GRANT),
            ("client_id", "someone-else"),
            ("device_code", "x"),
        ],
        &ip,
    );
    expect_oauth_error(&r, 401, "invalid_client");
    let r = c.post_raw(
        token,
        "application/x-www-form-urlencoded",
        format!(
            "grant_type=refresh_token&grant_type={}&client_id={CLI_CLIENT_ID}",
            "x"
        )
        .into_bytes(),
    );
    expect_oauth_error(&r, 400, "invalid_request");
    let r = post_form(
        &c,
        token,
        &[("grant_type", DEVICE_GRANT), ("client_id", CLI_CLIENT_ID)],
        &ip,
    );
    expect_oauth_error(&r, 400, "invalid_request");
    for bad in [
        "junk",
        "epdc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "epml_x",
    ] {
        let r = post_form(
            &c,
            token,
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", CLI_CLIENT_ID),
                ("device_code", bad),
            ],
            &ip,
        );
        expect_oauth_error(&r, 400, "invalid_grant");
    }
    // Bearer headers are not how OAuth clients authenticate here.
    let r = c.send(
        c.request(reqwest::Method::POST, token)
            .header("authorization", "Basic Y2xpOnNlY3JldA==")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=refresh_token"),
    );
    expect_oauth_error(&r, 401, "invalid_client");

    let da = "/oauth/device_authorization";
    let r = post_form(&c, da, &[("client_id", "nope")], &ip);
    expect_oauth_error(&r, 401, "invalid_client");
    let r = post_form(
        &c,
        da,
        &[("client_id", CLI_CLIENT_ID), ("scope", "rounds:admin")],
        &ip,
    );
    expect_oauth_error(&r, 400, "invalid_scope");
    let r = c.post(da, &json!({"client_id": CLI_CLIENT_ID}));
    expect_oauth_error(&r, 415, "invalid_request");
    // Unrecognized parameters are ignored (RFC 6749 §3.1).
    post_form(
        &c,
        da,
        &[("client_id", CLI_CLIENT_ID), ("audience", "x")],
        &ip,
    )
    .expect(200);
    // Device authorizations from one IP are rate limited, in the OAuth error form.
    let flood = unique_ip();
    for _ in 0..20 {
        post_form(&c, da, &[("client_id", CLI_CLIENT_ID)], &flood).expect(200);
    }
    let r = post_form(&c, da, &[("client_id", CLI_CLIENT_ID)], &flood);
    expect_oauth_error(&r, 429, "slow_down");
    assert!(r.header("retry-after").is_some());

    // The verification API is JSON and for signed-in people only.
    let s = new_user("verifier");
    s.client()
        .post("/v1/device/approve", &json!({"user_code": "BCDF-GHJK"}))
        .expect_error(422, "validation_failed");
    s.client()
        .post_raw(
            "/v1/device/verify",
            "application/x-www-form-urlencoded",
            b"user_code=x".to_vec(),
        )
        .expect_error(415, "unsupported_media_type");
    Client::owner_key()
        .post("/v1/device/verify", &json!({"user_code": "BCDF-GHJK"}))
        .expect_error(403, "forbidden");
    c.post("/v1/device/verify", &json!({"user_code": "BCDF-GHJK"}))
        .expect_error(401, "unauthenticated");
}
