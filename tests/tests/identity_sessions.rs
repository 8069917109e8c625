//! Sessions: refresh rotation and reuse detection, revocation that is immediate, sign-out
//! everywhere, `me` and orgs, and credentials presented where they do not belong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::identity::*;
use e2e::{stack, Client};
use serde_json::json;

#[test]
fn refresh_rotates_and_reuse_revokes_the_family() {
    let s = new_user("rotate");
    let r1 = refresh(&s.refresh_token).expect(200).json();
    assert_eq!(r1["session"]["id"], s.session_id.as_str());
    let r2_token = r1["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r2_token, s.refresh_token);
    let r2 = refresh(&r2_token).expect(200).json();
    let latest = r2["access_token"].as_str().unwrap().to_owned();
    let latest_refresh = r2["refresh_token"].as_str().unwrap().to_owned();
    let c = Client::anonymous().with_bearer(&latest);
    c.get("/v1/me").expect(200);
    assert_eq!(audit_events("session.refreshed", &s.session_id).len(), 2);

    // The first token, long rotated away (its successor was used): reuse.
    let r = refresh(&s.refresh_token).expect_error(400, "invalid_grant");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    // The whole family is gone, at once: the newest access and refresh tokens included.
    c.get("/v1/me").expect_error(401, "invalid_token");
    s.client().get("/v1/me").expect_error(401, "invalid_token");
    refresh(&latest_refresh).expect_error(400, "invalid_grant");
    let ev = audit_events("session.refresh_reuse_detected", &s.session_id);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["chain"], "_platform");
    assert_eq!(ev[0]["actor_type"], "system");
    let meta = ev[0]["metadata"].as_str().unwrap();
    assert!(meta.contains(&s.user_id) && !meta.contains("eprt_"));
}

#[test]
fn a_lost_refresh_response_may_be_retried_within_the_grace_window() {
    let s = new_user("grace");
    let first = refresh(&s.refresh_token).expect(200).json();
    // The client never saw `first`; it retries with the same token at once.
    let retry = refresh(&s.refresh_token).expect(200).json();
    assert_eq!(retry["session"]["id"], s.session_id.as_str());
    let c = Client::anonymous().with_bearer(retry["access_token"].as_str().unwrap());
    c.get("/v1/me").expect(200);
    // The successor it never received was superseded: presenting it now is reuse.
    refresh(first["refresh_token"].as_str().unwrap()).expect_error(400, "invalid_grant");
    c.get("/v1/me").expect_error(401, "invalid_token");
}

#[test]
fn revoking_a_session_is_effective_on_the_very_next_request() {
    let email = unique_email("revoke");
    let a = sign_in(&email);
    let b = sign_in(&email);
    let list = a.client().get("/v1/sessions").expect(200).json();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let mine = sessions
        .iter()
        .find(|s| s["id"] == a.session_id.as_str())
        .unwrap();
    assert_eq!(mine["current"], true);
    assert_eq!(mine["kind"], "web");
    assert_eq!(mine["auth_method"], "magic_link");
    assert_eq!(mine["user_agent"], USER_AGENT);
    for field in ["created_at", "last_used_at", "ip", "user_agent"] {
        assert!(mine[field].is_string(), "{field}: {mine}");
    }
    let other = sessions
        .iter()
        .find(|s| s["id"] == b.session_id.as_str())
        .unwrap();
    assert_eq!(other["current"], false);

    b.client().get("/v1/me").expect(200);
    a.client()
        .delete(&format!("/v1/sessions/{}", b.session_id))
        .expect(204);
    b.client().get("/v1/me").expect_error(401, "invalid_token");
    refresh(&b.refresh_token).expect_error(400, "invalid_grant");
    a.client().get("/v1/me").expect(200);
    assert_eq!(audit_events("session.revoked", &b.session_id).len(), 1);
    // Already revoked, someone else's, or junk: 404.
    a.client()
        .delete(&format!("/v1/sessions/{}", b.session_id))
        .expect_error(404, "not_found");
    let stranger = new_user("stranger");
    stranger
        .client()
        .delete(&format!("/v1/sessions/{}", a.session_id))
        .expect_error(404, "not_found");
    a.client().get("/v1/me").expect(200);
    a.client()
        .delete("/v1/sessions/not-a-session")
        .expect_error(404, "not_found");

    // Signing out ends the calling session.
    a.client().post("/v1/auth/sign-out", &json!({})).expect(204);
    a.client().get("/v1/me").expect_error(401, "invalid_token");
}

#[test]
fn signing_out_everywhere_ends_every_session_and_cli_token() {
    let email = unique_email("everywhere");
    let a = sign_in(&email);
    let b = sign_in(&email);
    let c = oidc_sign_in(&email);
    assert_eq!(c.user_id, a.user_id);
    let org = create_org(&a, "Everywhere Inc");
    let cli = cli_token(&a, org["id"].as_str().unwrap(), None);
    cli.client().get("/v1/me").expect(200);

    let r = b.client().delete("/v1/sessions").expect(200).json();
    assert_eq!(r["revoked"], 4);
    for t in [
        &a.access_token,
        &b.access_token,
        &c.access_token,
        &cli.access_token,
    ] {
        Client::anonymous()
            .with_bearer(t)
            .get("/v1/me")
            .expect_error(401, "invalid_token");
    }
    refresh(&a.refresh_token).expect_error(400, "invalid_grant");
    assert_eq!(audit_events("session.revoked_all", &a.user_id).len(), 1);
    // A fresh sign-in works again.
    sign_in(&email).client().get("/v1/me").expect(200);
}

#[test]
fn creating_and_listing_orgs() {
    let s = new_user("founder");
    let slug = format!("founders-{}", &s.user_id[s.user_id.len() - 8..]);
    let created = s
        .client()
        .post("/v1/orgs", &json!({"name": "Founders Ltd", "slug": slug}))
        .expect(201)
        .json();
    assert_eq!(created["role"], "owner");
    let org_id = created["org"]["id"].as_str().unwrap().to_owned();
    let ev = audit_events("org.created", &org_id);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["chain"], org_id.as_str());
    assert_eq!(ev[0]["actor_type"], "user");
    assert_eq!(ev[0]["actor_id"], s.user_id.as_str());

    let orgs = s.client().get("/v1/orgs").expect(200).json();
    assert_eq!(orgs["orgs"][0]["org"]["slug"], slug.as_str());
    assert_eq!(orgs["orgs"][0]["role"], "owner");
    let me = s.client().get("/v1/me").expect(200).json();
    assert_eq!(me["memberships"][0]["org"]["id"], org_id.as_str());
    // Usable at once through the id or the slug.
    s.client().get(&format!("/v1/orgs/{slug}")).expect(200);
    let access = s
        .client()
        .get(&format!("/v1/orgs/{org_id}/me"))
        .expect(200)
        .json();
    assert_eq!(access["role"], "owner");
    assert!(access["scopes"]
        .as_array()
        .unwrap()
        .contains(&json!("org:owner")));

    // Another person sees nothing of it.
    let other = new_user("outsider");
    other
        .client()
        .get(&format!("/v1/orgs/{org_id}"))
        .expect_error(404, "not_found");
    other
        .client()
        .get(&format!("/v1/orgs/{slug}/me"))
        .expect_error(404, "not_found");
    assert_eq!(
        other.client().get("/v1/orgs").expect(200).json()["orgs"],
        json!([])
    );

    // Bad input.
    let c = s.client();
    c.post("/v1/orgs", &json!({"name": "Dup", "slug": slug}))
        .expect_error(409, "already_exists");
    c.post("/v1/orgs", &json!({"name": "Bad", "slug": "Bad Slug"}))
        .expect_error(422, "validation_failed");
    c.post("/v1/orgs", &json!({"name": "  "}))
        .expect_error(422, "validation_failed");
    c.post("/v1/orgs", &json!({"name": "X", "owner": "someone"}))
        .expect_error(422, "validation_failed");
    c.post_raw("/v1/orgs", "application/json", b"{\"name\":".to_vec())
        .expect_error(400, "invalid_json");
    c.post_raw("/v1/orgs", "text/plain", b"{}".to_vec())
        .expect_error(415, "unsupported_media_type");

    let renamed = c
        .patch("/v1/me", &json!({"display_name": "  Grace Hopper "}))
        .expect(200)
        .json();
    assert_eq!(renamed["user"]["display_name"], "Grace Hopper");
    c.patch("/v1/me", &json!({"display_name": "x", "email": "y@z.w"}))
        .expect_error(422, "validation_failed");
}

#[test]
fn bad_and_misplaced_credentials() {
    let s = new_user("creds");
    let anon = Client::anonymous();
    anon.get("/v1/me").expect_error(401, "unauthenticated");
    anon.get("/v1/sessions")
        .expect_error(401, "unauthenticated");
    // Junk, tampered and non-access tokens as bearers.
    let mut tampered = s.access_token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        "garbage".to_owned(),
        "a.b.c".to_owned(),
        tampered,
        s.refresh_token.clone(),
        format!("{}x", s.access_token),
    ] {
        anon.clone()
            .with_bearer(&bad)
            .get("/v1/me")
            .expect_error(401, "invalid_token");
    }
    let r = anon.send(
        anon.request(reqwest::Method::GET, "/v1/me")
            .header("authorization", format!("Basic {}", s.access_token)),
    );
    r.expect_error(401, "unauthenticated");
    // An access token where a refresh token belongs.
    refresh(&s.access_token).expect_error(400, "invalid_grant");
    refresh("").expect_error(400, "invalid_grant");
    anon.post(
        "/v1/auth/refresh",
        &json!({"refresh_token": s.refresh_token, "x": 1}),
    )
    .expect_error(422, "validation_failed");
    anon.post_raw("/v1/auth/refresh", "text/plain", b"x".to_vec())
        .expect_error(415, "unsupported_media_type");

    // Right credential, wrong kind: API keys and CLI tokens cannot act as a person's session.
    let key = Client::owner_key();
    key.get("/v1/sessions").expect_error(403, "forbidden");
    key.get("/v1/me").expect_error(403, "forbidden");
    key.post("/v1/orgs", &json!({"name": "Nope"}))
        .expect_error(403, "forbidden");
    let owner = owner_session();
    let cli = cli_token(&owner, &stack().org_id, Some("org:read"));
    let cc = cli.client();
    cc.get("/v1/sessions").expect_error(403, "forbidden");
    cc.delete("/v1/sessions").expect_error(403, "forbidden");
    cc.post("/v1/orgs", &json!({"name": "Nope"}))
        .expect_error(403, "forbidden");
    cc.post(
        "/v1/device/approve",
        &json!({"user_code": "BCDF-GHJK", "org": stack().org_id}),
    )
    .expect_error(403, "forbidden");
    // A CLI refresh token is not a session refresh token, and the reverse at /oauth/token.
    refresh(&cli.refresh_token).expect_error(400, "invalid_grant");
    let r = post_form(
        &Client::anonymous(),
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &owner.refresh_token),
            ("client_id", CLI_CLIENT_ID),
        ],
        &unique_ip(),
    );
    expect_oauth_error(&r, 400, "invalid_grant");
    // And the person's session still works after all of that.
    owner.client().get("/v1/me").expect(200);
}
