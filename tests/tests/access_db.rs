//! Access tests that change the local database behind the gateway's back — moving an
//! invitation's expiry into the past, and rewriting audit history to prove the chain catches it.
//! They write the SQLite file directly, so `scripts/test` runs them alone after the main suite
//! (`--ignored`, one thread), never next to requests that write.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::identity::{create_org, d1, new_user};
use serde_json::json;

fn org_id(org: &serde_json::Value) -> String {
    org["id"].as_str().unwrap().to_owned()
}

#[test]
#[ignore = "writes the local database directly; run alone by scripts/test's serial phase"]
fn an_expired_invitation_is_refused() {
    let owner = new_user("inv-exp-owner");
    let org = create_org(&owner, "Expiring")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Expiry moved into the past in the local database.
    let late = new_user("inv-late");
    let inv = owner
        .client()
        .post(
            &format!("/v1/orgs/{org}/invitations"),
            &json!({"email": late.email, "role": "member"}),
        )
        .expect(201)
        .json();
    d1(
        "UPDATE invitations SET expires_at_ms = 1 WHERE id = ?",
        &[inv["invitation"]["id"].clone()],
    );
    late.client()
        .post("/v1/invitations/accept", &json!({"token": inv["token"]}))
        .expect_error(409, "conflict");
    late.client()
        .get(&format!("/v1/orgs/{org}/me"))
        .expect_error(404, "not_found");
}

#[test]
#[ignore = "writes the local database directly; run alone by scripts/test's serial phase"]
fn tampering_with_the_audit_chain_is_detected() {
    let owner = new_user("tamper");
    let org = org_id(&create_org(&owner, "Tamper"));
    for n in 0..3 {
        owner
            .client()
            .post(
                &format!("/v1/orgs/{org}/api-keys"),
                &json!({"name": format!("k{n}"), "scopes": ["org:read"]}),
            )
            .expect(201);
    }
    let c = owner.client();
    let ok = c
        .get(&format!("/v1/orgs/{org}/audit-events/verify"))
        .expect(200)
        .json();
    assert_eq!(ok["report"]["valid"], true, "{ok}");
    let checked = ok["report"]["events_checked"].as_u64().unwrap();
    assert!(checked >= 4);
    // Rewrite history directly in the database: the second event's metadata.
    d1(
        "UPDATE audit_events SET metadata = '{\"name\":\"innocent\"}' WHERE chain = ? AND seq = 2",
        &[json!(org)],
    );
    let bad = c
        .get(&format!("/v1/orgs/{org}/audit-events/verify"))
        .expect(200)
        .json();
    assert_eq!(bad["report"]["valid"], false);
    assert_eq!(bad["report"]["first_broken_seq"], 2);
    // Deleting an event is caught too (at the gap).
    let org2 = org_id(&create_org(&owner, "Tamper two"));
    owner
        .client()
        .post(
            &format!("/v1/orgs/{org2}/api-keys"),
            &json!({"name": "k", "scopes": ["org:read"]}),
        )
        .expect(201);
    d1(
        "DELETE FROM audit_events WHERE chain = ? AND seq = 1",
        &[json!(org2)],
    );
    let gap = c
        .get(&format!("/v1/orgs/{org2}/audit-events/verify"))
        .expect(200)
        .json();
    assert_eq!(gap["report"]["valid"], false);
    assert_eq!(gap["report"]["first_broken_seq"], 1);
}
