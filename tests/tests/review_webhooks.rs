//! Webhook intake: signatures verified on the raw body for every platform (tampered, missing,
//! another integration's secret, stale Standard Webhooks timestamps), GitHub's form-encoded
//! deliveries, one indistinguishable refusal whether or not the integration exists,
//! de-duplication of redeliveries and of replayed bodies, ignored events recorded, secret
//! rotation with an overlap window, and the integration API's write-only secrets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::review::*;
use e2e::{fake_llm, fake_platforms, org_path, wait_for, Client};
use serde_json::{json, Value};

fn setup(platform: &str, integration_extra: Value) -> Setup {
    Setup::new(
        fake_platforms!(),
        fake_llm!(),
        platform,
        "anthropic",
        sample_findings(),
        json!({}),
        integration_extra,
    )
}

/// The integration's recorded deliveries once `last` (the newest accepted delivery) is among
/// them. The inbox writes deliveries to D1 in the order it accepted them, shortly after answering
/// the platform, so once `last` shows every earlier accepted delivery shows too.
fn deliveries(s: &Setup, last: &str) -> Vec<Value> {
    wait_for(
        &format!("delivery {last} to be recorded"),
        Duration::from_secs(30),
        || {
            let d = integration_deliveries(&s.integration_id);
            d.iter().any(|x| x["delivery_id"] == last).then_some(d)
        },
    )
}

/// A refusal as a platform (or a prober) sees it: status, code and message. Only the request id
/// differs between two refusals.
fn refusal(r: e2e::Resp) -> (u16, String, String) {
    let r = r.expect_error(401, "invalid_signature");
    let e = r.json()["error"].clone();
    (
        r.status,
        e["code"].as_str().unwrap().to_owned(),
        e["message"].as_str().unwrap().to_owned(),
    )
}

fn delivery_ids(s: &Setup, last: &str) -> Vec<String> {
    deliveries(s, last)
        .iter()
        .map(|d| d["delivery_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn github_signatures_are_verified_on_the_raw_body() {
    let s = setup("github", json!({}));
    let other = setup("github", json!({}));
    let body = serde_json::to_vec(
        &json!({"zen": "Keep it logically awesome.", "hook_id": 1, "hook": {"type": "Repository"}}),
    )
    .unwrap();
    let sig = edgeplane_core::webhook::sign_hex_sha256(s.webhook_secret.as_bytes(), &body);
    let hdr = |sig: &str, id: &str| {
        vec![
            ("x-github-event", "ping".to_owned()),
            ("x-github-delivery", id.to_owned()),
            ("x-hub-signature-256", sig.to_owned()),
        ]
    };
    // Valid.
    let r = deliver(&s.hook_url(), &body, &hdr(&sig, "gh-ok"))
        .expect(200)
        .json();
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("ignored"), Some("ping"))
    );
    // One byte changed after signing.
    let mut tampered = body.clone();
    tampered[5] ^= 0x01;
    deliver(&s.hook_url(), &tampered, &hdr(&sig, "gh-tampered"))
        .expect_error(401, "invalid_signature");
    // Missing, malformed, the legacy SHA-1 header only.
    deliver(
        &s.hook_url(),
        &body,
        &[
            ("x-github-event", "ping".into()),
            ("x-github-delivery", "gh-missing".into()),
        ],
    )
    .expect_error(401, "invalid_signature");
    deliver(&s.hook_url(), &body, &hdr("sha256=nothex", "gh-malformed"))
        .expect_error(401, "invalid_signature");
    deliver(
        &s.hook_url(),
        &body,
        &[
            ("x-github-event", "ping".into()),
            ("x-github-delivery", "gh-sha1".into()),
            ("x-hub-signature", "sha1=0000".into()),
        ],
    )
    .expect_error(401, "invalid_signature");
    // Signed with another integration's (another tenant's) secret.
    let foreign = edgeplane_core::webhook::sign_hex_sha256(other.webhook_secret.as_bytes(), &body);
    deliver(&s.hook_url(), &body, &hdr(&foreign, "gh-foreign"))
        .expect_error(401, "invalid_signature");
    // A malformed JSON body with a valid signature is verified, then refused as invalid (422),
    // while a malformed body without one is refused before parsing (401).
    let junk = b"{not json".to_vec();
    let junk_sig = edgeplane_core::webhook::sign_hex_sha256(s.webhook_secret.as_bytes(), &junk);
    deliver(&s.hook_url(), &junk, &hdr(&junk_sig, "gh-junk"))
        .expect_error(422, "validation_failed");
    deliver(&s.hook_url(), &junk, &hdr(&sig, "gh-junk-unsigned"))
        .expect_error(401, "invalid_signature");
    // Nothing refused was recorded.
    assert_eq!(delivery_ids(&s, "gh-ok"), vec!["gh-ok"]);
}

#[test]
fn an_unknown_integration_is_refused_exactly_like_a_bad_signature() {
    let s = setup("github", json!({}));
    let body =
        serde_json::to_vec(&json!({"zen": "Anything added dilutes everything else."})).unwrap();
    let sig = edgeplane_core::webhook::sign_hex_sha256(b"a guess at the secret", &body);
    let hdr = vec![
        ("x-github-event", "ping".to_owned()),
        ("x-github-delivery", "probe".to_owned()),
        ("x-hub-signature-256", sig),
    ];
    // The reference: an integration that exists, a signature that does not verify.
    let forged = refusal(deliver(&s.hook_url(), &body, &hdr));
    // An id nobody has, the existing id on another platform's path, a segment that is no id:
    // the prober learns nothing from status, code or message.
    for url in [
        "/hooks/github/int_00000000000000000000000000000000".to_owned(),
        format!("/hooks/gitlab/{}", s.integration_id),
        format!("/hooks/bitbucket/{}", s.integration_id),
        "/hooks/github/..%2F..".to_owned(),
        "/hooks/github/nope".to_owned(),
    ] {
        assert_eq!(refusal(deliver(&url, &body, &hdr)), forged, "{url}");
    }
    // The same holds for GitLab's token header.
    let gl = vec![
        ("x-gitlab-event", "Merge Request Hook".to_owned()),
        ("x-gitlab-token", "a guess at the token".to_owned()),
    ];
    assert_eq!(
        refusal(deliver(
            "/hooks/gitlab/int_00000000000000000000000000000000",
            &body,
            &gl
        )),
        forged
    );
    // A deleted integration is unknown from then on.
    Client::owner_key()
        .delete(&org_path(&format!("/integrations/{}", s.integration_id)))
        .expect(204);
    let valid = edgeplane_core::webhook::sign_hex_sha256(s.webhook_secret.as_bytes(), &body);
    let hdr = vec![
        ("x-github-event", "ping".to_owned()),
        ("x-github-delivery", "after-delete".to_owned()),
        ("x-hub-signature-256", valid),
    ];
    assert_eq!(refusal(deliver(&s.hook_url(), &body, &hdr)), forged);
}

#[test]
fn a_signed_body_replayed_under_fresh_delivery_ids_is_a_duplicate() {
    // GitHub and Bitbucket sign the body only; GitLab's bare token signs nothing. Whoever holds
    // one captured delivery must not be able to have it recorded again and again.
    for platform in ["github", "bitbucket", "gitlab"] {
        let s = setup(platform, json!({}));
        let pr = Pr::new("octo/replay", 31);
        let send = |body: &Value, id: &str| match platform {
            "github" => s.github("pull_request", body, id),
            "bitbucket" => s.bitbucket("pullrequest:created", body, id),
            _ => s.gitlab(body, id, now_secs()),
        };
        let body = match platform {
            "github" => github_pull_request("opened", &pr, false),
            "bitbucket" => bitbucket_cloud_pr(&pr),
            _ => gitlab_merge_request("open", pr.repo_id, &pr.repo_name, pr.number, &pr.head, None),
        };
        s.register(&pr, &sample_files(), None, "closed");
        let first = send(&body, "replay-0").expect(202).json();
        for i in 1..=3 {
            let again = send(&body, &format!("replay-{i}")).expect(200).json();
            assert_eq!(again["status"], "duplicate", "{platform}: {again}");
        }
        // A different body (another event for the same head) is a new delivery.
        let other = match platform {
            "github" => github_pull_request("reopened", &pr, false),
            "bitbucket" => {
                let mut b = bitbucket_cloud_pr(&pr);
                b["pullrequest"]["title"] = json!("Retitled");
                b
            }
            _ => gitlab_merge_request(
                "reopen",
                pr.repo_id,
                &pr.repo_name,
                pr.number,
                &pr.head,
                None,
            ),
        };
        let second = send(&other, "other-1").expect(200).json();
        assert_eq!(second["status"], "duplicate_head", "{platform}: {second}");
        let mut ids = delivery_ids(&s, "other-1");
        ids.sort();
        assert_eq!(ids, vec!["other-1", "replay-0"], "{platform}");
        assert_eq!(integration_reviews(&s.integration_id).len(), 1);
        wait_review(
            first["review_id"].as_str().unwrap(),
            &["skipped"],
            Duration::from_secs(60),
        );
    }
    // With a Standard Webhooks signing token GitLab signs the delivery id and a timestamp: a
    // replay under a fresh id does not verify at all.
    let signing = format!(
        "whsec_{}",
        "cmVwbGF5LXByb29mLXNpZ25pbmcta2V5LWZvci10ZXN0cw=="
    );
    let g = setup("gitlab", json!({"signing_token": signing}));
    let closed = gitlab_merge_request("close", 77, "grp/replay", 5, &sha(), None);
    let raw = serde_json::to_vec(&closed).unwrap();
    let now = now_secs();
    let sig = edgeplane_core::webhook::gitlab::sign_standard_webhook(
        signing.as_bytes(),
        "msg-1",
        now,
        &raw,
    );
    let hdr = |id: &str| {
        vec![
            ("x-gitlab-event", "Merge Request Hook".to_owned()),
            ("x-gitlab-token", g.webhook_secret.clone()),
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", sig.clone()),
        ]
    };
    deliver(&g.hook_url(), &raw, &hdr("msg-1")).expect(200);
    deliver(&g.hook_url(), &raw, &hdr("msg-2")).expect_error(401, "invalid_signature");
    let again = deliver(&g.hook_url(), &raw, &hdr("msg-1"))
        .expect(200)
        .json();
    assert_eq!(again["status"], "duplicate");
}

#[test]
fn github_form_encoded_deliveries_are_verified_raw_then_decoded() {
    // GitHub's default `content_type` for a new hook is `form`: `payload=<url-encoded JSON>`.
    let s = setup("github", json!({}));
    let pr = Pr::new("octo/form", 41);
    s.register(&pr, &sample_files(), None, "open");
    let json = serde_json::to_string(&github_pull_request("opened", &pr, false)).unwrap();
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &json)
        .finish()
        .into_bytes();
    const FORM: &str = "application/x-www-form-urlencoded";
    let hdr = |id: &str, signed: &[u8]| {
        vec![
            ("x-github-event", "pull_request".to_owned()),
            ("x-github-delivery", id.to_owned()),
            (
                "x-hub-signature-256",
                edgeplane_core::webhook::sign_hex_sha256(s.webhook_secret.as_bytes(), signed),
            ),
        ]
    };
    // The signature is over the bytes sent; one over the decoded JSON does not verify.
    deliver_as(&s.hook_url(), FORM, &form, &hdr("form-0", json.as_bytes()))
        .expect_error(401, "invalid_signature");
    let r = deliver_as(&s.hook_url(), FORM, &form, &hdr("form-1", &form))
        .expect(202)
        .json();
    assert_eq!(r["status"], "queued");
    let review = wait_review(
        r["review_id"].as_str().unwrap(),
        &["done", "failed", "skipped"],
        Duration::from_secs(120),
    );
    assert_eq!(review["status"], "done", "{review}");
    assert_eq!(review["pull_request"], 41);
    // A verified form without a payload field is the sender's mistake, said so.
    let empty = b"other=1".to_vec();
    deliver_as(&s.hook_url(), FORM, &empty, &hdr("form-2", &empty))
        .expect_error(422, "validation_failed");
}

#[test]
fn gitlab_token_and_standard_webhooks_signature() {
    let signing = format!("whsec_{}", "c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cw==");
    let s = setup("gitlab", json!({"signing_token": signing}));
    let closed = gitlab_merge_request("close", 77, "grp/proj", 5, &sha(), None);
    let now = now_secs();
    let r = s.gitlab(&closed, "gl-ok", now).expect(200).json();
    assert_eq!(r["reason"], "pull_request_closed");
    // Stale and future timestamps (outside 5 minutes), correctly signed. The margins are a
    // minute wide: the stack reads its clock a few seconds after `now` on a loaded machine, so a
    // timestamp one second past the tolerance from here can be inside it there.
    let beyond = edgeplane_core::webhook::gitlab::TOLERANCE_SECONDS + 60;
    s.gitlab(&closed, "gl-stale", now - beyond)
        .expect_error(401, "invalid_signature");
    s.gitlab(&closed, "gl-future", now + beyond)
        .expect_error(401, "invalid_signature");
    // Within the tolerance.
    s.gitlab(&closed, "gl-recent", now - 200).expect(200);
    let raw = serde_json::to_vec(&closed).unwrap();
    let good_sig = edgeplane_core::webhook::gitlab::sign_standard_webhook(
        signing.as_bytes(),
        "gl-t",
        now,
        &raw,
    );
    let base = |token: &str, sig: &str| {
        vec![
            ("x-gitlab-event", "Merge Request Hook".to_owned()),
            ("x-gitlab-token", token.to_owned()),
            ("webhook-id", "gl-t".to_owned()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", sig.to_owned()),
        ]
    };
    // Wrong token, right signature; right token, no or wrong signature; tampered body.
    deliver(
        &s.hook_url(),
        &raw,
        &base("not-the-token-at-all", &good_sig),
    )
    .expect_error(401, "invalid_signature");
    deliver(&s.hook_url(), &raw, &base(&s.webhook_secret, "v1,AAAA"))
        .expect_error(401, "invalid_signature");
    deliver(
        &s.hook_url(),
        &raw,
        &[
            ("x-gitlab-event", "Merge Request Hook".into()),
            ("x-gitlab-token", s.webhook_secret.clone()),
        ],
    )
    .expect_error(401, "invalid_signature");
    let mut tampered = raw.clone();
    tampered[10] ^= 1;
    deliver(
        &s.hook_url(),
        &tampered,
        &base(&s.webhook_secret, &good_sig),
    )
    .expect_error(401, "invalid_signature");
    deliver(&s.hook_url(), &raw, &base(&s.webhook_secret, &good_sig)).expect(200);
    let mut ids = delivery_ids(&s, "gl-t");
    ids.sort();
    assert_eq!(ids, vec!["gl-ok", "gl-recent", "gl-t"]);

    // Token-only integrations: the token alone verifies, compared exactly.
    let t = setup("gitlab", json!({}));
    t.gitlab(&closed, "plain-1", now).expect(200);
    let raw = serde_json::to_vec(&closed).unwrap();
    let mut wrong = t.webhook_secret.clone();
    wrong.pop();
    wrong.push('!');
    deliver(
        &t.hook_url(),
        &raw,
        &[
            ("x-gitlab-event", "Merge Request Hook".into()),
            ("x-gitlab-token", wrong),
        ],
    )
    .expect_error(401, "invalid_signature");
    deliver(
        &t.hook_url(),
        &raw,
        &[
            ("x-gitlab-event", "Merge Request Hook".into()),
            ("x-gitlab-token", s.webhook_secret.clone()),
        ],
    )
    .expect_error(401, "invalid_signature");
}

#[test]
fn bitbucket_cloud_and_data_center_signatures() {
    for platform in ["bitbucket", "bbdc"] {
        let s = setup(platform, json!({}));
        let pr = Pr::new(
            if platform == "bbdc" {
                "PRJ/app"
            } else {
                "ws/app"
            },
            3,
        );
        s.register(&pr, &sample_files(), None, "closed");
        let (event, body) = if platform == "bbdc" {
            ("pr:declined", bitbucket_dc_pr("pr:declined", &pr))
        } else {
            ("pullrequest:rejected", bitbucket_cloud_pr(&pr))
        };
        let r = s.bitbucket(event, &body, "bb-ok").expect(200).json();
        assert_eq!(r["reason"], "pull_request_closed");
        let raw = serde_json::to_vec(&body).unwrap();
        let sig = edgeplane_core::webhook::sign_hex_sha256(s.webhook_secret.as_bytes(), &raw);
        let mut tampered = raw.clone();
        tampered[3] ^= 1;
        let hdr = |sig: &str| {
            vec![
                ("x-event-key", event.to_owned()),
                ("x-request-uuid", "bb-bad".to_owned()),
                ("x-hub-signature", sig.to_owned()),
            ]
        };
        deliver(&s.hook_url(), &tampered, &hdr(&sig)).expect_error(401, "invalid_signature");
        deliver(&s.hook_url(), &raw, &hdr("sha256=")).expect_error(401, "invalid_signature");
        deliver(&s.hook_url(), &raw, &[("x-event-key", event.into())])
            .expect_error(401, "invalid_signature");
        // GitHub's header name does not count on Bitbucket.
        deliver(
            &s.hook_url(),
            &raw,
            &[
                ("x-event-key", event.into()),
                ("x-hub-signature-256", sig.clone()),
            ],
        )
        .expect_error(401, "invalid_signature");
        assert_eq!(delivery_ids(&s, "bb-ok"), vec!["bb-ok"]);
    }
}

#[test]
fn redeliveries_and_second_triggers_for_the_same_head_are_deduplicated() {
    let s = setup("github", json!({}));
    let pr = Pr::new("octo/dedupe", 11);
    // The pull request is closed on the platform by the time the worker looks: it is skipped
    // without asking the provider.
    s.register(&pr, &sample_files(), None, "closed");
    let body = github_pull_request("opened", &pr, false);
    let first = s.github("pull_request", &body, "dup-1").expect(202).json();
    let review_id = first["review_id"].as_str().unwrap().to_owned();
    // The platform redelivers the same delivery: 200, nothing new.
    let again = s.github("pull_request", &body, "dup-1").expect(200).json();
    assert_eq!(again["status"], "duplicate");
    // A different delivery for the same head (e.g. reopened): no second review.
    let same_head = s
        .github(
            "pull_request",
            &github_pull_request("reopened", &pr, false),
            "dup-2",
        )
        .expect(200)
        .json();
    assert_eq!(same_head["status"], "duplicate_head");
    assert_eq!(same_head["review_id"], review_id.as_str());
    let d = deliveries(&s, "dup-2");
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d.iter().any(|x| x["delivery_id"] == "dup-1"
        && x["outcome"] == "queued"
        && x["review_id"] == review_id.as_str()));
    assert!(d
        .iter()
        .any(|x| x["delivery_id"] == "dup-2" && x["outcome"] == "duplicate_head"));
    let reviews = integration_reviews(&s.integration_id);
    assert_eq!(reviews.len(), 1);
    let r = wait_review(&review_id, &["skipped"], Duration::from_secs(60));
    assert_eq!(r["reason"], "pull_request_closed");
    assert!(s.chat_requests().is_empty());
}

#[test]
fn events_that_do_not_trigger_reviews_are_recorded_as_ignored() {
    let s = setup("github", json!({}));
    let pr = Pr::new("octo/ignored", 4);
    let cases = [
        (
            "ping",
            json!({"zen": "Design for failure.", "hook_id": 9}),
            "ping",
        ),
        (
            "push",
            json!({"ref": "refs/heads/feature", "before": sha(), "after": sha(), "commits": []}),
            "push_without_pull_request",
        ),
        (
            "pull_request",
            github_pull_request("closed", &pr, false),
            "pull_request_closed",
        ),
        (
            "pull_request",
            github_pull_request("opened", &pr, true),
            "draft",
        ),
        (
            "pull_request",
            github_pull_request("labeled", &pr, false),
            "action_not_reviewed",
        ),
        (
            "issues",
            json!({"action": "opened", "issue": {"number": 1}}),
            "event_not_reviewed",
        ),
    ];
    for (i, (event, body, reason)) in cases.iter().enumerate() {
        let r = s
            .github(event, body, &format!("ign-{i}"))
            .expect(200)
            .json();
        assert_eq!(r["status"], "ignored");
        assert_eq!(r["reason"], *reason);
    }
    let d = deliveries(&s, &format!("ign-{}", cases.len() - 1));
    assert_eq!(d.len(), cases.len());
    assert!(d
        .iter()
        .all(|x| x["outcome"] == "ignored" && x["review_id"].is_null()));
    let reviews = integration_reviews(&s.integration_id);
    assert!(reviews.is_empty());
}

#[test]
fn webhook_secret_rotation_keeps_the_old_secret_valid_during_the_overlap() {
    let mut s = setup("github", json!({}));
    // Every delivery has its own body, as a platform's do (a repeated body is a replay).
    let body = |n: u32| json!({"zen": "Practicality beats purity.", "hook_id": 2, "n": n});
    let old = s.webhook_secret.clone();
    let new = format!("rotated_{}", random_hex(24));
    let c = Client::owner_key();
    let rot = c
        .post(
            &org_path(&format!(
                "/integrations/{}/webhook-secret/rotate",
                s.integration_id
            )),
            &json!({"webhook_secret": new, "overlap_seconds": 3600}),
        )
        .expect(200)
        .json();
    assert!(rot["integration"]["previous_webhook_secret_expires_at"].is_string());
    assert!(!rot.to_string().contains(&new) && !rot.to_string().contains(&old));
    s.github("ping", &body(1), "rot-old").expect(200);
    s.webhook_secret = new.clone();
    s.github("ping", &body(2), "rot-new").expect(200);
    let d = deliveries(&s, "rot-new");
    let slot = |id: &str| d.iter().find(|x| x["delivery_id"] == id).unwrap()["secret"].clone();
    assert_eq!(
        (slot("rot-old"), slot("rot-new")),
        (json!("previous"), json!("current"))
    );
    // A rotation without overlap ends the old secret at once.
    let newer = format!("rotated_{}", random_hex(24));
    c.post(
        &org_path(&format!(
            "/integrations/{}/webhook-secret/rotate",
            s.integration_id
        )),
        &json!({"webhook_secret": newer, "overlap_seconds": 0}),
    )
    .expect(200);
    s.github("ping", &body(3), "rot-stale")
        .expect_error(401, "invalid_signature");
    s.webhook_secret = newer;
    s.github("ping", &body(4), "rot-newest").expect(200);
    c.post(
        &org_path(&format!(
            "/integrations/{}/webhook-secret/rotate",
            s.integration_id
        )),
        &json!({"webhook_secret": "short"}),
    )
    .expect_error(422, "validation_failed");
    c.post(
        &org_path(&format!(
            "/integrations/{}/webhook-secret/rotate",
            s.integration_id
        )),
        &json!({"webhook_secret": new, "overlap_seconds": 99999999}),
    )
    .expect_error(422, "validation_failed");
}

#[test]
fn integrations_are_validated_and_never_return_their_secrets() {
    let c = Client::owner_key();
    let token = format!("ghp_{}", random_hex(30));
    let secret = format!("whsec-{}", random_hex(30));
    let base = json!({"name": "gh", "platform": "github", "access_token": token, "webhook_secret": secret});
    let bad = |patch: Value| {
        let mut b = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        c.post(&org_path("/integrations"), &b)
            .expect_error(422, "validation_failed");
    };
    bad(json!({"platform": "svn"}));
    bad(json!({"deployment": "moon"}));
    bad(json!({"api_base_url": "http://api.github.com"}));
    bad(json!({"api_base_url": "https://10.0.0.1/api"}));
    bad(json!({"api_base_url": "https://user:pw@api.github.com"}));
    bad(json!({"webhook_secret": "too-short"}));
    bad(json!({"signing_token": "only-for-gitlab-integrations"}));
    bad(json!({"llm_provider_id": "llm_00000000000000000000000000000000"}));
    bad(json!({"platform": "bitbucket", "deployment": "datacenter"}));
    c.post(&org_path("/integrations"), &json!({"name": "x"}))
        .expect_error(422, "validation_failed");
    c.post_raw(
        &org_path("/integrations"),
        "application/json",
        b"{".to_vec(),
    )
    .expect_error(400, "invalid_json");
    c.post_raw(&org_path("/integrations"), "text/plain", b"{}".to_vec())
        .expect_error(415, "unsupported_media_type");

    let created = c.post(&org_path("/integrations"), &base).expect(201);
    assert!(!created.text.contains(&token) && !created.text.contains(&secret));
    let i = created.json()["integration"].clone();
    assert_eq!(
        (
            i["has_access_token"].as_bool(),
            i["has_webhook_secret"].as_bool(),
            i["has_signing_token"].as_bool()
        ),
        (Some(true), Some(true), Some(false))
    );
    assert_eq!(i["api_base_url"], "https://api.github.com");
    let id = i["id"].as_str().unwrap();
    let path = org_path(&format!("/integrations/{id}"));
    for r in [c.get(&path), c.get(&org_path("/integrations"))] {
        let r = r.expect(200);
        assert!(!r.text.contains(&token) && !r.text.contains(&secret));
    }
    // Moving the token to another host needs the token again.
    c.patch(
        &path,
        &json!({"api_base_url": "https://ghe.example.com/api/v3"}),
    )
    .expect_error(422, "validation_failed");
    let newtoken = format!("ghp_{}", random_hex(30));
    let p = c
        .patch(
            &path,
            &json!({"api_base_url": "https://ghe.example.com/api/v3", "access_token": newtoken}),
        )
        .expect(200);
    assert!(!p.text.contains(&newtoken));
    c.patch(&path, &json!({}))
        .expect_error(422, "validation_failed");
    c.patch(&path, &json!({"unknown": 1}))
        .expect_error(422, "validation_failed");
    // Other tenants' and junk ids are 404.
    c.get("/v1/orgs/org_00000000000000000000000000000000/integrations")
        .expect_error(404, "not_found");
    c.get(&org_path(
        "/integrations/int_00000000000000000000000000000000",
    ))
    .expect_error(404, "not_found");
    c.get(&org_path("/integrations/nope"))
        .expect_error(404, "not_found");
    Client::anonymous()
        .get(&org_path("/integrations"))
        .expect_error(401, "unauthenticated");
    // Deleted: its webhook endpoint refuses everything (as for any unknown integration).
    c.delete(&path).expect(204);
    c.get(&path).expect_error(404, "not_found");
    deliver(
        &format!("/hooks/github/{id}"),
        b"{}",
        &[("x-hub-signature-256", "sha256=00".into())],
    )
    .expect_error(401, "invalid_signature");
}

#[test]
fn a_newer_head_supersedes_the_older_review() {
    let s = setup("github", json!({}));
    let mut pr = Pr::new("octo/supersede", 21);
    let first_head = pr.head.clone();
    let second_head = sha();
    // The platform already shows the newer head: whatever the first review gets to, it must
    // not post.
    pr.head = second_head.clone();
    s.register(&pr, &sample_files(), None, "open");
    pr.head = first_head.clone();
    let first = s.open_and_queue(&pr);
    pr.head = second_head.clone();
    let r = s
        .github(
            "pull_request",
            &github_pull_request("synchronize", &pr, false),
            "sup-2",
        )
        .expect(202)
        .json();
    let second = r["review_id"].as_str().unwrap().to_owned();
    let a = wait_review(
        &first,
        &["skipped", "done", "failed"],
        Duration::from_secs(90),
    );
    assert_eq!(a["status"], "skipped", "{a}");
    assert!(
        a["reason"] == "superseded" || a["reason"] == "stale_head",
        "{a}"
    );
    let b = wait_review(
        &second,
        &["done", "failed", "skipped"],
        Duration::from_secs(90),
    );
    assert_eq!(b["status"], "done", "{b}");
    let reviews: Vec<Value> = s
        .posted()
        .into_iter()
        .filter(|p| p["kind"] == "review")
        .collect();
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0]["body"]["commit_id"], second_head.as_str());
}
