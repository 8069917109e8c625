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
use serde_json::{json, Value};

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

/// The instant `days` days before now, in the stored milliseconds.
fn days_ago(days: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now - days * 86_400_000
}

/// Moves the first `old` events of `org`'s chain `age_days` into the past, re-hashing the whole
/// chain so that it still links up, and drops its checkpoints (which pinned the old hashes): as
/// if those events had been written that long ago. The next placed event signs a fresh
/// checkpoint over the rewritten chain.
fn backdate_chain(org: &str, old: i64, age_days: i64) {
    let rows = d1(
        "SELECT * FROM audit_events WHERE chain = ? ORDER BY seq",
        &[json!(org)],
    );
    let mut prev = edgeplane_core::audit::GENESIS_HASH.to_owned();
    for row in rows {
        let mut ev: ChainedEvent = serde_json::from_value(row).unwrap();
        if ev.seq <= old {
            ev.event.created_at_ms = days_ago(age_days) + ev.seq;
        }
        ev.prev_hash = prev;
        ev.hash = event_hash(&ev);
        d1(
            "UPDATE audit_events SET created_at_ms = ?, prev_hash = ?, hash = ? \
             WHERE chain = ? AND seq = ?",
            &[
                json!(ev.event.created_at_ms),
                json!(ev.prev_hash),
                json!(ev.hash),
                json!(org),
                json!(ev.seq),
            ],
        );
        prev = ev.hash;
    }
    d1(
        "DELETE FROM audit_checkpoints WHERE chain = ?",
        &[json!(org)],
    );
}

/// Runs the `edgeplane` CLI (`EDGEPLANE_BIN`, built by `scripts/e2e`) with `token` in `org`.
fn edgeplane(dir: &std::path::Path, token: &str, org: &str, args: &[&str]) -> (i32, String) {
    let bin = std::env::var_os("EDGEPLANE_BIN").expect("EDGEPLANE_BIN: run through scripts/e2e");
    let out = std::process::Command::new(bin)
        .args(args)
        .env("EDGEPLANE_CONFIG_DIR", dir)
        .env("EDGEPLANE_URL", &e2e::stack().base_url)
        .env("EDGEPLANE_TOKEN", token)
        .env("EDGEPLANE_ORG", org)
        .env_remove("EDGEPLANE_PROFILE")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Issue 14, part 4: an org's audit retention. Only an owner sets it, within 30..=3650 days;
/// the cron then deletes the events older than it, oldest first, after storing a signed anchor
/// of the pruned prefix; the server's verification, an export and the CLI's offline check all
/// start from the anchor, and a forged or missing anchor fails.
#[test]
#[ignore = "writes the local database directly; run alone by scripts/test's serial phase"]
fn retention_prunes_old_audit_events_and_the_rest_still_verifies() {
    let owner = new_user("retention");
    let org = org_id(&create_org(&owner, "Retention"));
    let c = owner.client();
    let member = new_user("retention-member");
    e2e::access::add_member(&owner, &org, &member, "member");
    let setting = format!("/v1/orgs/{org}/audit-retention");

    // The setting: default 365, owners only, within its bounds.
    assert_eq!(
        c.get(&format!("/v1/orgs/{org}")).expect(200).json()["org"]["audit_retention_days"],
        365
    );
    member
        .client()
        .put(&setting, &json!({"audit_retention_days": 30}))
        .expect_error(403, "insufficient_scope");
    for days in [29, 3651, -1] {
        c.put(&setting, &json!({"audit_retention_days": days}))
            .expect_error(422, "validation_failed");
    }
    let set = c
        .put(&setting, &json!({"audit_retention_days": 30}))
        .expect(200)
        .json();
    assert_eq!(set["audit_retention_days"], 30);
    assert_eq!(
        c.get(&format!("/v1/orgs/{org}")).expect(200).json()["org"]["audit_retention_days"],
        30
    );
    for n in 0..3 {
        c.post(
            &format!("/v1/orgs/{org}/api-keys"),
            &json!({"name": format!("k{n}"), "scopes": ["org:read"]}),
        )
        .expect(201);
    }
    let before = verify(&c, &org, None);
    assert_eq!(before["report"]["valid"], true, "{before}");
    let size = before["report"]["events_checked"].as_i64().unwrap();
    let changed = c
        .get(&format!(
            "/v1/orgs/{org}/audit-events?action=audit.retention_changed"
        ))
        .expect(200)
        .json();
    assert_eq!(
        changed["events"][0]["metadata"],
        json!({"old_days": 365, "new_days": 30})
    );

    // The first four events written 40 days ago; the rest are recent.
    backdate_chain(&org, 4, 40);
    c.post(
        &format!("/v1/orgs/{org}/api-keys"),
        &json!({"name": "after backdating", "scopes": ["org:read"]}),
    )
    .expect(201);
    let rewritten = verify(&c, &org, None);
    assert_eq!(rewritten["report"]["valid"], true, "{rewritten}");
    assert_eq!(rewritten["report"]["anchored_at"], Value::Null);

    e2e::run_cron();
    let seqs = d1(
        "SELECT min(seq) AS first, count(*) AS n FROM audit_events WHERE chain = ?",
        &[json!(org)],
    );
    assert_eq!(seqs[0]["first"], 5, "{seqs:?}");
    let anchor = d1(
        "SELECT size, note FROM audit_anchors WHERE chain = ?",
        &[json!(org)],
    );
    assert_eq!(anchor[0]["size"], 4);
    let old_checkpoints = d1(
        "SELECT count(*) AS n FROM audit_checkpoints WHERE chain = ? AND size <= 4",
        &[json!(org)],
    );
    assert_eq!(old_checkpoints[0]["n"], 0);

    // The pruned chain verifies from its anchor; the prune itself is in it.
    let after = verify(&c, &org, None);
    assert_eq!(after["report"]["valid"], true, "{after}");
    assert_eq!(after["report"]["anchored_at"], 4);
    // Events 5..=size, the key created after backdating, and audit.pruned.
    assert_eq!(after["report"]["events_checked"], size - 4 + 2);
    let pruned = c
        .get(&format!("/v1/orgs/{org}/audit-events?action=audit.pruned"))
        .expect(200)
        .json();
    let meta = &pruned["events"][0]["metadata"];
    assert_eq!(meta["count"], 4, "{pruned}");
    assert_eq!(meta["anchor"]["size"], 4);
    assert_eq!(meta["anchor"]["note"], anchor[0]["note"]);
    assert_eq!(pruned["events"][0]["actor"]["id"], "cron");

    // The export carries the anchor; the CLI checks its signature and verifies from it.
    let token = e2e::identity::cli_token(&owner, &org, None).access_token;
    let dir = std::env::temp_dir().join(e2e::federation::unique("retention-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("audit.jsonl");
    let f = file.to_str().unwrap();
    let (code, out) = edgeplane(&dir, &token, &org, &["audit", "export", "-o", f, "--json"]);
    assert_eq!(code, 0, "{out}");
    let first: ChainedEvent = serde_json::from_str(
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first.seq, 5);
    let anchor_file = dir.join("audit.jsonl.anchor");
    let note = std::fs::read_to_string(&anchor_file).unwrap();
    assert_eq!(json!(note), anchor[0]["note"]);
    let (code, out) = edgeplane(&dir, &token, &org, &["audit", "verify", f, "--json"]);
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["anchored_at"], 4);
    // A forged anchor (its size edited under the real signature) fails, and so does none.
    std::fs::write(&anchor_file, note.replacen("\n4\n", "\n3\n", 1)).unwrap();
    let (code, out) = edgeplane(&dir, &token, &org, &["audit", "verify", f]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("anchor") && out.contains("not authentic"),
        "{out}"
    );
    std::fs::remove_file(&anchor_file).unwrap();
    let (code, out) = edgeplane(&dir, &token, &org, &["audit", "verify", f]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("no signed anchor covers the pruned events 1..=4"),
        "{out}"
    );

    // On the server too: a forged anchor, then none, fail verification with the reason.
    d1(
        "UPDATE audit_anchors SET note = replace(note, char(10) || '4' || char(10), \
         char(10) || '3' || char(10)) WHERE chain = ?",
        &[json!(org)],
    );
    let forged = verify(&c, &org, None);
    assert_eq!(forged["report"]["valid"], false, "{forged}");
    assert!(forged["report"]["reason"]
        .as_str()
        .unwrap()
        .contains("not authentic"));
    d1("DELETE FROM audit_anchors WHERE chain = ?", &[json!(org)]);
    let missing = verify(&c, &org, None);
    assert_eq!(missing["report"]["valid"], false, "{missing}");
    assert!(missing["report"]["reason"]
        .as_str()
        .unwrap()
        .contains("no signed anchor"));
}
