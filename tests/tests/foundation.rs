//! The foundation: health, metadata, the error contract, request ids, the queue round trip
//! (with retries and dead-lettering), cron, and first-run setup.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::{org_path, stack, wait_for, Client};
use serde_json::json;

#[test]
fn livez_and_deep_healthz() {
    let c = Client::anonymous();
    c.get("/livez").expect(200);
    let h = c.get("/healthz").expect(200).json();
    assert_eq!(h["status"], "ok");
    for check in ["d1", "durable_object", "r2", "queue"] {
        assert_eq!(h["checks"][check]["ok"], true, "{check}: {h}");
    }
}

#[test]
fn every_response_carries_a_unique_request_id() {
    let c = Client::anonymous();
    let a = c
        .get("/livez")
        .header("x-request-id")
        .expect("x-request-id");
    let b = c.get("/nope").header("x-request-id").expect("x-request-id");
    assert!(a.starts_with("req_") && b.starts_with("req_"));
    assert_ne!(a, b);
}

#[test]
fn version_and_jwks() {
    let c = Client::anonymous();
    let v = c.get("/v1/version").expect(200).json();
    assert_eq!(v["name"], "edgeplane");
    assert_eq!(v["api"], "v1");
    let jwks = c.get("/.well-known/jwks.json").expect(200).json();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()));
}

#[test]
fn openapi_document_parses_and_describes_served_routes() {
    let c = Client::anonymous();
    let doc = c.get("/openapi.json").expect(200).json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/healthz"));
    // Every documented parameter-free GET answers something other than 404/405/5xx.
    for (path, item) in paths {
        if item.get("get").is_some() && !path.contains('{') {
            let r = c.get(path);
            assert!(
                r.status < 500 && r.status != 404 && r.status != 405,
                "GET {path} -> {}",
                r.status
            );
        }
    }
}

#[test]
fn unknown_route_and_wrong_method() {
    let c = Client::anonymous();
    c.get("/v1/definitely-not-a-route")
        .expect_error(404, "route_not_found");
    c.delete("/v1/setup")
        .expect_error(405, "method_not_allowed");
}

#[test]
fn malformed_json_is_400_and_schema_mismatch_is_422() {
    let c = Client::owner_key();
    let path = org_path("/diagnostics/queue-probes");
    c.post_raw(&path, "application/json", b"{\"fail_times\": ".to_vec())
        .expect_error(400, "invalid_json");
    c.post_raw(
        &path,
        "application/json",
        b"{\"fail_times\": \"two\"}".to_vec(),
    )
    .expect_error(422, "validation_failed");
    c.post_raw(
        &path,
        "application/json",
        b"{\"fail_times\": 0, \"extra\": 1}".to_vec(),
    )
    .expect_error(422, "validation_failed");
    c.post(&path, &json!({"fail_times": 21}))
        .expect_error(422, "validation_failed");
}

#[test]
fn wrong_content_type_is_415() {
    let c = Client::owner_key();
    c.post_raw(
        &org_path("/diagnostics/queue-probes"),
        "text/plain",
        b"{\"fail_times\": 0}".to_vec(),
    )
    .expect_error(415, "unsupported_media_type");
}

#[test]
fn oversized_body_is_413() {
    let token = std::env::var("EP_SETUP_TOKEN").expect("EP_SETUP_TOKEN from scripts/test");
    let c = Client::anonymous().with_bearer(&token);
    let big = vec![b' '; 64 * 1024];
    c.post_raw("/v1/setup", "application/json", big)
        .expect_error(413, "payload_too_large");
    let k = Client::owner_key();
    let mut body = b"{\"fail_times\": 0".to_vec();
    body.extend(vec![b' '; 20_000]);
    body.push(b'}');
    k.post_raw(
        &org_path("/diagnostics/queue-probes"),
        "application/json",
        body,
    )
    .expect_error(413, "payload_too_large");
}

#[test]
fn credentials_are_checked() {
    let path = org_path("");
    Client::anonymous()
        .get(&path)
        .expect_error(401, "unauthenticated");
    Client::anonymous()
        .with_bearer("epk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .get(&path)
        .expect_error(401, "invalid_token");
    Client::anonymous()
        .with_bearer("garbage")
        .get(&path)
        .expect_error(401, "invalid_token");
    let c = Client::anonymous();
    c.send(
        c.request(reqwest::Method::GET, &path)
            .header("authorization", "Basic Zm9vOmJhcg=="),
    )
    .expect_error(401, "unauthenticated");
    let org = Client::owner_key().get(&path).expect(200).json();
    assert_eq!(org["org"]["id"], stack().org_id.as_str());
    // The slug names the same org.
    let by_slug = Client::owner_key()
        .get(&format!("/v1/orgs/{}", stack().org_slug))
        .expect(200)
        .json();
    assert_eq!(by_slug["org"]["id"], stack().org_id.as_str());
    // An org that does not exist is 404, like one that belongs to someone else.
    Client::owner_key()
        .get("/v1/orgs/org_0000000000000000000000000000")
        .expect_error(404, "not_found");
}

#[test]
fn setup_runs_once_and_requires_its_token() {
    let body = json!({"org_name": "Second", "owner_email": "second@example.com"});
    Client::anonymous()
        .post("/v1/setup", &body)
        .expect_error(401, "unauthenticated");
    Client::anonymous()
        .with_bearer("wrong-token")
        .post("/v1/setup", &body)
        .expect_error(401, "invalid_token");
    // With the right token, a second setup is refused: the deployment already has an org.
    let token = std::env::var("EP_SETUP_TOKEN").expect("EP_SETUP_TOKEN from scripts/test");
    Client::anonymous()
        .with_bearer(&token)
        .post("/v1/setup", &body)
        .expect_error(409, "conflict");
}

fn probe(fail_times: u32) -> String {
    let c = Client::owner_key();
    let r = c
        .post(
            &org_path("/diagnostics/queue-probes"),
            &json!({"fail_times": fail_times}),
        )
        .expect(202)
        .json();
    assert_eq!(r["probe"]["status"], "queued");
    r["probe"]["id"].as_str().unwrap().to_owned()
}

fn wait_probe(id: &str, status: &str) -> serde_json::Value {
    let c = Client::owner_key();
    wait_for(
        &format!("probe {id} to be {status}"),
        Duration::from_secs(90),
        || {
            let p = c
                .get(&org_path(&format!("/diagnostics/queue-probes/{id}")))
                .expect(200)
                .json();
            (p["probe"]["status"] == status).then_some(p)
        },
    )
}

#[test]
fn queue_round_trip_is_processed_by_the_review_worker() {
    let id = probe(0);
    let p = wait_probe(&id, "processed");
    assert_eq!(p["probe"]["attempts"], 1);
    assert!(p["probe"]["processed_at"].is_string());
}

#[test]
fn queue_failures_are_retried_with_backoff() {
    let id = probe(2);
    let p = wait_probe(&id, "processed");
    assert_eq!(p["probe"]["attempts"], 3);
    assert_eq!(p["probe"]["last_error"], "induced failure on attempt 2");
}

#[test]
fn queue_exhausted_retries_dead_letter() {
    let id = probe(20);
    let p = wait_probe(&id, "dead_lettered");
    // max_retries = 3: the first delivery plus three retries, then the dead-letter queue.
    assert_eq!(p["probe"]["attempts"], 4);
}

#[test]
fn probes_of_another_org_or_junk_ids_are_404() {
    let c = Client::owner_key();
    c.get(&org_path(
        "/diagnostics/queue-probes/qpr_0000000000000000000000000000",
    ))
    .expect_error(404, "not_found");
    c.get(&org_path("/diagnostics/queue-probes/..%2F..%2Fetc"))
        .expect_error(404, "not_found");
}

#[test]
fn cron_runs_locally_and_is_visible_in_health() {
    let c = Client::anonymous();
    let last_run =
        || c.get("/healthz").expect(200).json()["cron"]["last_run_finished_at_ms"].as_i64();
    let before = last_run().unwrap_or(0);
    // This trigger's run, not an earlier one: the recorded finish moves past what it was.
    let after = e2e::run_cron();
    assert!(after > before);
    assert!(last_run().is_some_and(|t| t >= after));
}

/// Issue 13: workers-rs reads a method it does not know (QUERY, PROPFIND, …) as GET, so such a
/// request on a GET route was answered with the GET body. A known path answers 405 to any
/// method it does not serve; an unknown path stays 404.
#[test]
fn unknown_methods_are_405_on_known_paths_never_a_get() {
    let c = Client::owner_key();
    for path in [org_path("/members"), "/v1/version".to_owned()] {
        for method in ["QUERY", "PROPFIND", "MKCOL", "LOCK", "SEARCH"] {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let r = c.send(c.request(m, &path));
            assert_eq!(r.status, 405, "{method} {path}: {}", r.text);
            assert_eq!(
                r.json()["error"]["code"],
                "method_not_allowed",
                "{method} {path}"
            );
            assert!(r.text.contains("GET"), "{}", r.text);
        }
    }
    let m = reqwest::Method::from_bytes(b"PROPFIND").unwrap();
    assert_eq!(c.send(c.request(m, "/v1/no-such-thing")).status, 404);
    // The methods a path does serve are unaffected.
    c.get(&org_path("/members")).expect(200);
}
