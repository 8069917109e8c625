//! Organization access administration driven by API keys: key scopes and no elevation by
//! minting, rotation with an overlap window, immediate revocation, the audit log's filters,
//! cursor and chain verification, invitations and member listing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::identity::{create_org, new_user};
use e2e::{org_path, stack, wait_for, Client};
use serde_json::{json, Value};

fn create_key(c: &Client, name: &str, scopes: &[&str]) -> (String, String) {
    let r = c
        .post(
            &org_path("/api-keys"),
            &json!({"name": name, "scopes": scopes}),
        )
        .expect(201)
        .json();
    (
        r["api_key"]["id"].as_str().unwrap().to_owned(),
        r["key"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn a_key_can_do_exactly_what_its_scopes_allow() {
    let owner = Client::owner_key();
    let (_, key) = create_key(&owner, "rounds reader", &["rounds:read"]);
    let k = Client::anonymous().with_bearer(&key);
    k.get(&org_path("")).expect_error(403, "insufficient_scope");
    k.get(&org_path("/audit-events"))
        .expect_error(403, "insufficient_scope");
    k.get(&org_path("/api-keys"))
        .expect_error(403, "insufficient_scope");
}

#[test]
fn keys_cannot_grant_more_than_their_creator_holds() {
    let owner = Client::owner_key();
    let (_, key) = create_key(&owner, "key manager", &["api_keys:write", "rounds:read"]);
    let k = Client::anonymous().with_bearer(&key);
    let r = k
        .post(
            &org_path("/api-keys"),
            &json!({"name": "wider", "scopes": ["audit:read"]}),
        )
        .expect_error(403, "forbidden");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("audit:read"));
    let (_, narrower) = create_key(&k, "narrower", &["rounds:read"]);
    assert!(narrower.starts_with("epk_"));
    owner
        .post(
            &org_path("/api-keys"),
            &json!({"name": "none", "scopes": []}),
        )
        .expect_error(422, "validation_failed");
    owner
        .post(
            &org_path("/api-keys"),
            &json!({"name": "typo", "scopes": ["rounds:reed"]}),
        )
        .expect_error(422, "validation_failed");
    owner
        .post(
            &org_path("/api-keys"),
            &json!({"name": "x", "scopes": ["org:read"], "color": "red"}),
        )
        .expect_error(422, "validation_failed");
}

#[test]
fn listing_never_shows_the_key_and_tracks_last_use() {
    let owner = Client::owner_key();
    let (id, key) = create_key(&owner, "listed", &["org:read"]);
    Client::anonymous()
        .with_bearer(&key)
        .get(&org_path(""))
        .expect(200);
    let list = owner.get(&org_path("/api-keys")).expect(200);
    assert!(
        !list.text.contains(&key),
        "the plaintext key leaked into a listing"
    );
    let entry = list.json()["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .cloned()
        .expect("created key is listed");
    assert_eq!(entry["scopes"], json!(["org:read"]));
    assert_eq!(entry["status"], "active");
    assert!(key.starts_with(&entry["hint"].as_str().unwrap().replace('…', "")));
    assert!(entry["last_used_at"].is_string(), "{entry}");
}

#[test]
fn rotation_overlaps_then_the_old_key_stops() {
    let owner = Client::owner_key();
    let (id, old_key) = create_key(&owner, "rotating", &["org:read"]);
    owner
        .post(
            &org_path(&format!("/api-keys/{id}/rotate")),
            &json!({"overlap_seconds": 99999999}),
        )
        .expect_error(422, "validation_failed");
    let r = owner
        .post(
            &org_path(&format!("/api-keys/{id}/rotate")),
            &json!({"overlap_seconds": 3}),
        )
        .expect(201)
        .json();
    let new_key = r["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);
    assert_eq!(r["api_key"]["rotated_from"], id.as_str());
    assert_eq!(r["api_key"]["scopes"], json!(["org:read"]));
    assert_eq!(r["previous_key"]["id"], id.as_str());
    let old = Client::anonymous().with_bearer(&old_key);
    let new = Client::anonymous().with_bearer(&new_key);
    // Both work during the overlap.
    old.get(&org_path("")).expect(200);
    new.get(&org_path("")).expect(200);
    // Then only the new one.
    wait_for(
        "the old key to stop working",
        Duration::from_secs(20),
        || (old.get(&org_path("")).status == 401).then_some(()),
    );
    new.get(&org_path("")).expect(200);
    // A rotated-out (expired) key cannot be rotated again.
    owner
        .post(&org_path(&format!("/api-keys/{id}/rotate")), &json!({}))
        .expect_error(409, "conflict");
}

#[test]
fn a_rotation_without_overlap_ends_the_old_key_at_once_where_it_was_made() {
    let owner = Client::owner_key();
    let (id, old_key) = create_key(&owner, "no overlap", &["org:read"]);
    let old = Client::anonymous().with_bearer(&old_key);
    // Used, so this isolate holds the key in its cache.
    old.get(&org_path("")).expect(200);
    let r = owner
        .post(
            &org_path(&format!("/api-keys/{id}/rotate")),
            &json!({"overlap_seconds": 0}),
        )
        .expect(201)
        .json();
    old.get(&org_path("")).expect_error(401, "invalid_token");
    Client::anonymous()
        .with_bearer(r["key"].as_str().unwrap())
        .get(&org_path(""))
        .expect(200);
}

#[test]
fn revocation_is_immediate_and_audited() {
    let owner = Client::owner_key();
    let (id, key) = create_key(&owner, "to revoke", &["org:read"]);
    let k = Client::anonymous().with_bearer(&key);
    // Used, so this isolate holds the key in its cache: the revoking isolate drops it at once.
    k.get(&org_path("")).expect(200);
    owner
        .delete(&org_path(&format!("/api-keys/{id}")))
        .expect(204);
    k.get(&org_path("")).expect_error(401, "invalid_token");
    let events = owner
        .get(&org_path(&format!(
            "/audit-events?action=api_key.revoked&resource={id}"
        )))
        .expect(200)
        .json();
    let ev = &events["events"][0];
    assert_eq!(ev["resource"]["id"], id.as_str());
    assert_eq!(ev["actor"]["type"], "api_key");
    assert!(ev["request_id"].as_str().unwrap().starts_with("req_"));
    // Revoking again is harmless; an unknown key is 404.
    owner
        .delete(&org_path(&format!("/api-keys/{id}")))
        .expect(204);
    owner
        .delete(&org_path("/api-keys/key_0000000000000000000000000000"))
        .expect_error(404, "not_found");
}

#[test]
fn audit_log_filters_pages_and_verifies() {
    let owner = Client::owner_key();
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(create_key(&owner, &format!("audited {n}"), &["org:read"]).0);
    }
    // Exact filter on one resource.
    let one = owner
        .get(&org_path(&format!(
            "/audit-events?action=api_key.created&resource={}",
            ids[1]
        )))
        .expect(200)
        .json();
    assert_eq!(one["events"].as_array().unwrap().len(), 1);
    let ev = &one["events"][0];
    assert_eq!(ev["metadata"]["name"], "audited 1");
    assert_eq!(ev["prev_hash"].as_str().unwrap().len(), 64);
    // Family filter and cursor pagination, newest first, without overlap.
    let page1 = owner
        .get(&org_path("/audit-events?action=api_key.*&limit=2"))
        .expect(200)
        .json();
    let seqs1: Vec<i64> = page1["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs1.len(), 2);
    assert!(seqs1[0] > seqs1[1]);
    let cursor = page1["next_cursor"].as_str().expect("more pages");
    let page2 = owner
        .get(&org_path(&format!(
            "/audit-events?action=api_key.*&limit=2&cursor={cursor}"
        )))
        .expect(200)
        .json();
    for e in page2["events"].as_array().unwrap() {
        assert!(e["seq"].as_i64().unwrap() < seqs1[1]);
        assert!(e["action"].as_str().unwrap().starts_with("api_key."));
    }
    // Time range: nothing before the epoch's first second.
    let none = owner
        .get(&org_path("/audit-events?until=1970-01-01T00:00:01Z"))
        .expect(200)
        .json();
    assert_eq!(none["events"], json!([]));
    // The chain verifies.
    let report = owner
        .get(&org_path("/audit-events/verify"))
        .expect(200)
        .json();
    assert_eq!(report["report"]["valid"], true, "{report}");
    assert!(report["report"]["events_checked"].as_u64().unwrap() >= 4);
    // Bad queries are 400.
    for q in [
        "limit=0",
        "limit=abc",
        "cursor=-4",
        "since=yesterday",
        "colour=red",
    ] {
        owner
            .get(&org_path(&format!("/audit-events?{q}")))
            .expect_error(400, "invalid_query");
    }
}

#[test]
fn invitations_are_created_listed_replaced_and_revoked() {
    let owner = Client::owner_key();
    let email = format!("invitee-{}@example.com", std::process::id());
    let first = owner
        .post(
            &org_path("/invitations"),
            &json!({"email": email, "role": "admin"}),
        )
        .expect(201)
        .json();
    assert!(first["token"].as_str().unwrap().starts_with("epin_"));
    assert_eq!(first["invitation"]["status"], "pending");
    let second = owner
        .post(
            &org_path("/invitations"),
            &json!({"email": email.to_uppercase(), "role": "member", "ttl_hours": 1}),
        )
        .expect(201)
        .json();
    let pending = owner.get(&org_path("/invitations")).expect(200);
    assert!(!pending.text.contains(first["token"].as_str().unwrap()));
    let list: Vec<Value> = pending.json()["invitations"].as_array().unwrap().clone();
    let for_email: Vec<&Value> = list
        .iter()
        .filter(|i| i["email"] == email.as_str())
        .collect();
    assert_eq!(
        for_email.len(),
        1,
        "a new invitation replaces the pending one"
    );
    assert_eq!(for_email[0]["id"], second["invitation"]["id"]);
    let all = owner
        .get(&org_path("/invitations?status=all"))
        .expect(200)
        .json();
    assert!(all["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["id"] == first["invitation"]["id"] && i["status"] == "revoked"));
    let id = second["invitation"]["id"].as_str().unwrap();
    owner
        .delete(&org_path(&format!("/invitations/{id}")))
        .expect(204);
    let after = owner.get(&org_path("/invitations")).expect(200).json();
    assert!(!after["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["id"] == id));
    // The seeded owner is already a member.
    owner
        .post(
            &org_path("/invitations"),
            &json!({"email": stack().owner_email, "role": "member"}),
        )
        .expect_error(409, "already_exists");
    owner
        .post(
            &org_path("/invitations"),
            &json!({"email": "not-an-email", "role": "member"}),
        )
        .expect_error(422, "validation_failed");
    owner
        .post(
            &org_path("/invitations"),
            &json!({"email": email, "role": "emperor"}),
        )
        .expect_error(422, "validation_failed");
    owner
        .post(
            &org_path("/invitations"),
            &json!({"email": email, "role": "member", "ttl_hours": 10000}),
        )
        .expect_error(422, "validation_failed");
}

#[test]
fn an_admin_equivalent_key_cannot_offer_or_touch_ownership() {
    let owner = Client::owner_key();
    let (_, key) = create_key(&owner, "people manager", &["members:write", "members:read"]);
    let k = Client::anonymous().with_bearer(&key);
    k.post(
        &org_path("/invitations"),
        &json!({"email": "boss@example.com", "role": "owner"}),
    )
    .expect_error(403, "forbidden");
    k.post(
        &org_path("/invitations"),
        &json!({"email": "helper@example.com", "role": "admin"}),
    )
    .expect(201);
    let members = k.get(&org_path("/members")).expect(200).json();
    let owner_member = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == stack().owner_email.as_str())
        .cloned()
        .expect("the owner is listed");
    assert_eq!(owner_member["role"], "owner");
    let uid = owner_member["user_id"].as_str().unwrap();
    k.patch(
        &org_path(&format!("/members/{uid}")),
        &json!({"role": "member"}),
    )
    .expect_error(403, "forbidden");
    k.delete(&org_path(&format!("/members/{uid}")))
        .expect_error(403, "forbidden");
    // The owner-level key may demote the owner, but the last owner is protected.
    Client::owner_key()
        .patch(
            &org_path(&format!("/members/{uid}")),
            &json!({"role": "admin"}),
        )
        .expect_error(409, "conflict");
    Client::owner_key()
        .delete(&org_path(&format!("/members/{uid}")))
        .expect_error(409, "conflict");
}

#[test]
fn people_endpoints_reject_bad_input() {
    let owner = Client::owner_key();
    owner
        .patch(
            &org_path("/members/usr_0000000000000000000000000000"),
            &json!({"role": "admin"}),
        )
        .expect_error(404, "not_found");
    owner
        .patch(&org_path("/members/nobody"), &json!({"role": "admin"}))
        .expect_error(404, "not_found");
    owner
        .post_raw(
            &org_path("/invitations"),
            "application/json",
            b"{\"email\":".to_vec(),
        )
        .expect_error(400, "invalid_json");
    // Accepting needs a signed-in person, not a key.
    owner
        .post("/v1/invitations/accept", &json!({"token": "epin_x"}))
        .expect_error(403, "forbidden");
    // Keys have no membership to leave.
    owner
        .post(&org_path("/leave"), &json!({}))
        .expect_error(403, "forbidden");
}

/// Issue 16: enrolling a fleet is hundreds of audited writes in one org at once, and each one
/// used to extend the org's hash chain inside its own batch: 200 writes 32 at a time got 95
/// `503`s. A change and its audit event still land together, but placing the event in the
/// chain no longer races other writers. API key creations (the gateway's one mutation path)
/// and device bootstrap tokens (the federation routes') in one org, 32 at a time.
#[test]
fn two_hundred_concurrent_audited_writes_in_one_org_all_succeed_and_the_chain_verifies() {
    let owner = new_user("fleet");
    let org = create_org(&owner, "Fleet")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = owner.client();
    let mut statuses = Vec::new();
    for wave in 0..7 {
        let handles: Vec<_> = (0..32)
            .map(|n| wave * 32 + n)
            .filter(|n| *n < 200)
            .map(|n| {
                let c = c.clone();
                let org = org.clone();
                std::thread::spawn(move || {
                    let r = if n % 2 == 0 {
                        c.post(
                            &format!("/v1/orgs/{org}/api-keys"),
                            &json!({"name": format!("fleet-{n}"), "scopes": ["devices:write"]}),
                        )
                    } else {
                        c.post(
                            &format!("/v1/orgs/{org}/devices/bootstrap-tokens"),
                            &json!({"device_identifier": format!("fleet-device-{n}")}),
                        )
                    };
                    (r.status, r.text)
                })
            })
            .collect();
        statuses.extend(handles.into_iter().map(|h| h.join().unwrap()));
    }
    assert_eq!(statuses.len(), 200);
    let failed: Vec<_> = statuses.iter().filter(|(s, _)| *s != 201).collect();
    assert!(
        failed.is_empty(),
        "{} of 200 failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );

    // Every write's event is in the chain, once, and the chain verifies against its checkpoint.
    let v = c
        .get(&format!("/v1/orgs/{org}/audit-events/verify"))
        .expect(200)
        .json();
    assert_eq!(v["report"]["valid"], true, "{v}");
    let checked = v["report"]["events_checked"].as_u64().unwrap();
    assert_eq!(checked, 201, "org.created and 200 writes: {v}");
    assert_eq!(v["checkpoint"]["size"], 201);
    assert_eq!(v["checkpoint"]["head_hash"], v["report"]["head_hash"]);
    let keys = c
        .get(&format!(
            "/v1/orgs/{org}/audit-events?action=api_key.created&limit=200"
        ))
        .expect(200)
        .json();
    assert_eq!(keys["events"].as_array().unwrap().len(), 100);
}

/// A checkpoint served with an audit read is a C2SP signed note that verifies offline with the
/// deployment's published key, and `verify` checks the chain against one handed back later.
#[test]
fn a_kept_checkpoint_verifies_offline_and_against_the_chain() {
    use edgeplane_core::audit::checkpoint::NoteVerifier;
    let owner = new_user("kept");
    let org = create_org(&owner, "Kept")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = owner.client();
    c.post(
        &format!("/v1/orgs/{org}/api-keys"),
        &json!({"name": "k", "scopes": ["org:read"]}),
    )
    .expect(201);
    let page = c
        .get(&format!("/v1/orgs/{org}/audit-events"))
        .expect(200)
        .json();
    let kept = page["checkpoint"].clone();
    assert_eq!(kept["size"], 2, "{page}");
    assert_eq!(kept["head_hash"], page["events"][0]["hash"]);
    let note = kept["note"].as_str().unwrap();

    // Offline: from the published key alone (no call to the chain's routes).
    let key = Client::anonymous()
        .get("/v1/audit/checkpoint-key")
        .expect(200)
        .json();
    assert_eq!(key["algorithm"], "ed25519");
    let origin = format!("{}{org}", key["origin_prefix"].as_str().unwrap());
    assert_eq!(kept["origin"], origin.as_str());
    let v = NoteVerifier::from_published(&origin, key["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(v.to_string(), kept["verifier_key"].as_str().unwrap());
    let cp = v.open(note).unwrap();
    assert_eq!(cp.size, 2);
    assert_eq!(cp.head_hash_hex(), kept["head_hash"].as_str().unwrap());
    assert!(v.open(&note.replacen("\n2\n", "\n3\n", 1)).is_err());

    // Later, after more events: the chain still extends the kept checkpoint.
    c.post(
        &format!("/v1/orgs/{org}/api-keys"),
        &json!({"name": "k2", "scopes": ["org:read"]}),
    )
    .expect(201);
    let later = c
        .send(
            c.request(
                reqwest::Method::GET,
                &format!("/v1/orgs/{org}/audit-events/verify"),
            )
            .query(&[("checkpoint", note)]),
        )
        .expect(200)
        .json();
    assert_eq!(later["report"]["valid"], true, "{later}");
    assert_eq!(later["report"]["events_checked"], 3);
    assert!(later["report"]["checkpoints_checked"].as_u64().unwrap() >= 2);
    // Another chain's checkpoint is refused, not silently ignored.
    let other = create_org(&owner, "Other")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.send(
        c.request(
            reqwest::Method::GET,
            &format!("/v1/orgs/{other}/audit-events/verify"),
        )
        .query(&[("checkpoint", note)]),
    )
    .expect_error(422, "validation_failed");
}
