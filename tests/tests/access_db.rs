//! Access tests that change the local database behind the gateway's back — moving an
//! invitation's expiry into the past, revoking an API key as another isolate would, and
//! rewriting audit history to prove the chain catches it.
//! They write the SQLite file directly, so `scripts/test` runs them alone after the main suite
//! (`--ignored`, one thread), never next to requests that write.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::identity::{create_org, d1, new_user};
use e2e::{wait_for, Client};
use edgeplane_core::audit::{event_hash, ChainedEvent};
use edgeplane_core::identity::cache::STALENESS_BOUND_MS;
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

/// A change the gateway's isolate did not make — another isolate revoking a key, or ending a
/// rotation's overlap — written straight into D1, must be refused within the staleness bound.
/// Polled up to the bound, plus the few seconds one request can take on a loaded machine: a
/// cache that never re-read, or kept entries much longer than the bound, would fail.
fn refused_within_the_bound(key: &Client, what: &str) {
    let bound = Duration::from_millis(STALENESS_BOUND_MS as u64) + Duration::from_secs(2);
    wait_for(what, bound, || {
        let r = key.get(&format!("/v1/orgs/{}", e2e::stack().org_id));
        match r.status {
            401 => Some(()),
            200 => None,
            other => panic!("unexpected status {other}: {}", r.text),
        }
    });
}

#[test]
#[ignore = "writes the local database directly; run alone by scripts/test's serial phase"]
fn a_key_revoked_or_expired_elsewhere_is_refused_within_the_staleness_bound() {
    let owner = Client::owner_key();
    for change in [
        "UPDATE api_keys SET revoked_at_ms = 1 WHERE id = ?",
        "UPDATE api_keys SET expires_at_ms = 1 WHERE id = ?",
    ] {
        let r = owner
            .post(
                &format!("/v1/orgs/{}/api-keys", e2e::stack().org_id),
                &json!({"name": "revoked elsewhere", "scopes": ["org:read"]}),
            )
            .expect(201)
            .json();
        let key = Client::anonymous().with_bearer(r["key"].as_str().unwrap());
        // Used twice, so the key is in the isolate's cache.
        for _ in 0..2 {
            key.get(&format!("/v1/orgs/{}", e2e::stack().org_id))
                .expect(200);
        }
        d1(change, &[r["api_key"]["id"].clone()]);
        refused_within_the_bound(&key, change);
    }
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
    // An audit read places every committed event first: the rows exist before the edit.
    assert_eq!(
        c.get(&format!("/v1/orgs/{org2}/audit-events/verify"))
            .expect(200)
            .json()["report"]["events_checked"],
        2
    );
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

fn verify(c: &Client, org: &str, kept: Option<&str>) -> serde_json::Value {
    let mut rb = c.request(
        reqwest::Method::GET,
        &format!("/v1/orgs/{org}/audit-events/verify"),
    );
    if let Some(note) = kept {
        rb = rb.query(&[("checkpoint", note)]);
    }
    c.send(rb).expect(200).json()
}

/// Issue 6: deleting the newest audit event left a chain whose links all hold, and `verify`
/// answered `valid: true`. The chain's signed checkpoints pin its size and head: the deletion
/// and a re-hashed rewrite of the tail are both caught — by the checkpoints the deployment keeps
/// and, when those are deleted too, by the one the customer kept.
#[test]
#[ignore = "writes the local database directly; run alone by scripts/test's serial phase"]
fn a_cut_or_rewritten_tail_of_the_audit_chain_is_detected() {
    let owner = new_user("truncate");
    let org = org_id(&create_org(&owner, "Truncate"));
    let c = owner.client();
    for n in 0..3 {
        c.post(
            &format!("/v1/orgs/{org}/api-keys"),
            &json!({"name": format!("k{n}"), "scopes": ["org:read"]}),
        )
        .expect(201);
    }
    let ok = verify(&c, &org, None);
    assert_eq!(ok["report"]["valid"], true, "{ok}");
    assert_eq!(ok["report"]["events_checked"], 4);
    let kept = ok["checkpoint"]["note"].as_str().unwrap().to_owned();
    assert_eq!(ok["checkpoint"]["size"], 4);

    // Delete the newest event: every remaining link still holds.
    let newest = d1(
        "SELECT * FROM audit_events WHERE chain = ? AND seq = 4",
        &[json!(org)],
    );
    d1(
        "DELETE FROM audit_events WHERE chain = ? AND seq = 4",
        &[json!(org)],
    );
    let cut = verify(&c, &org, None);
    assert_eq!(cut["report"]["valid"], false, "{cut}");
    assert_eq!(cut["report"]["first_broken_seq"], 4);
    assert!(cut["report"]["reason"]
        .as_str()
        .unwrap()
        .contains("deleted from its end"));

    // Put it back rewritten and consistently re-hashed: still not what was signed.
    let mut forged: ChainedEvent = serde_json::from_value(newest[0].clone()).unwrap();
    forged.event.metadata = r#"{"name":"innocent"}"#.into();
    forged.hash = event_hash(&forged);
    d1(
        "INSERT INTO audit_events (id, chain, seq, org_id, actor_type, actor_id, action, \
         resource_type, resource_id, ip, user_agent, request_id, metadata, created_at_ms, \
         prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            json!(forged.event.id),
            json!(forged.event.chain),
            json!(forged.seq),
            json!(forged.event.org_id),
            json!(forged.event.actor_type),
            json!(forged.event.actor_id),
            json!(forged.event.action),
            json!(forged.event.resource_type),
            json!(forged.event.resource_id),
            json!(forged.event.ip),
            json!(forged.event.user_agent),
            json!(forged.event.request_id),
            json!(forged.event.metadata),
            json!(forged.event.created_at_ms),
            json!(forged.prev_hash),
            json!(forged.hash),
        ],
    );
    let rewritten = verify(&c, &org, None);
    assert_eq!(rewritten["report"]["valid"], false, "{rewritten}");
    assert_eq!(rewritten["report"]["first_broken_seq"], 4);
    assert!(rewritten["report"]["reason"]
        .as_str()
        .unwrap()
        .contains("rewritten"));

    // Whoever can write the database can delete the deployment's checkpoints too: then only a
    // checkpoint kept outside it shows what happened.
    d1(
        "DELETE FROM audit_checkpoints WHERE chain = ? AND size >= 4",
        &[json!(org)],
    );
    d1(
        "DELETE FROM audit_events WHERE chain = ? AND seq = 4",
        &[json!(org)],
    );
    assert_eq!(verify(&c, &org, None)["report"]["valid"], true);
    let caught = verify(&c, &org, Some(&kept));
    assert_eq!(caught["report"]["valid"], false, "{caught}");
    assert_eq!(caught["report"]["first_broken_seq"], 4);
}

/// A commit whose poke to the sequencer was lost (its isolate died) leaves its event waiting;
/// cron places it. Checked in the database itself, so no audit read (which would place it too)
/// is involved.
#[test]
#[ignore = "writes the local database directly; run alone by scripts/test's serial phase"]
fn cron_places_audit_events_a_lost_poke_left_waiting() {
    let owner = new_user("lost-poke");
    let org = org_id(&create_org(&owner, "Lost poke"));
    let c = owner.client();
    assert_eq!(verify(&c, &org, None)["report"]["events_checked"], 1);
    let placed = |chain: &str| {
        d1(
            "SELECT count(*) AS n FROM audit_events WHERE chain = ?",
            &[json!(chain)],
        )[0]["n"]
            .as_i64()
            .unwrap()
    };
    d1(
        "INSERT INTO audit_pending (id, chain, org_id, actor_type, actor_id, action, \
         resource_type, resource_id, metadata, created_at_ms) \
         VALUES ('aud_0190000000000000000000000001', ?, ?, 'system', 'test', 'api_key.revoked', \
         'api_key', 'key_0190000000000000000000000001', '{}', 1)",
        &[json!(org), json!(org)],
    );
    assert_eq!(placed(&org), 1);
    let r = Client::anonymous().get("/__scheduled?cron=*/5+*+*+*+*");
    assert_eq!(r.status, 200, "{}", r.text);
    wait_for(
        "cron to place the waiting event",
        Duration::from_secs(30),
        || (placed(&org) == 2).then_some(()),
    );
    let pending = d1(
        "SELECT count(*) AS n FROM audit_pending WHERE chain = ?",
        &[json!(org)],
    );
    assert_eq!(pending[0]["n"], 0);
    let after = verify(&c, &org, None);
    assert_eq!(after["report"]["valid"], true, "{after}");
    assert_eq!(after["report"]["events_checked"], 2);
}
