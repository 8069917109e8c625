//! The classifier against payloads shaped like each platform's.

use super::super::{
    bitbucket as bb, github as gh, gitlab as gl, sign_hex_sha256, Headers, Secrets,
};
use super::*;
use proptest::prelude::*;
use serde_json::{json, Value};

const SECRETS: Secrets<'static> = Secrets {
    current: b"k",
    previous: None,
    signing_token: None,
};

fn gh_hook(event: &str, body: &Value) -> Result<Disposition, ClassifyError> {
    let raw = serde_json::to_vec(body).unwrap();
    let h = Headers::new()
        .with("x-hub-signature-256", &sign_hex_sha256(b"k", &raw))
        .with("x-github-event", event);
    classify(&gh::verify(&h, raw, &SECRETS).unwrap())
}

fn gh_pr(action: &str, draft: bool) -> Value {
    json!({
        "action": action, "number": 7,
        "pull_request": {"number": 7, "state": "open", "draft": draft,
            "head": {"sha": "a".repeat(40), "ref": "feature"},
            "base": {"sha": "b".repeat(40), "ref": "main"}},
        "repository": {"id": 1296269, "full_name": "octo/hello", "name": "hello"},
        "sender": {"login": "octocat"}
    })
}

#[test]
fn github_triggers_and_ignores() {
    let Disposition::Review(r) = gh_hook("pull_request", &gh_pr("opened", false)).unwrap() else {
        panic!()
    };
    assert_eq!(
        (r.repo_id.as_str(), r.repo_name.as_str(), r.number),
        ("1296269", "octo/hello", 7)
    );
    assert_eq!(r.head_sha, "a".repeat(40));
    for (action, trigger) in [
        ("synchronize", Trigger::Updated),
        ("reopened", Trigger::Reopened),
        ("ready_for_review", Trigger::ReadyForReview),
    ] {
        match gh_hook("pull_request", &gh_pr(action, false)).unwrap() {
            Disposition::Review(r) => assert_eq!(r.trigger, trigger),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        gh_hook("pull_request", &gh_pr("opened", true)).unwrap(),
        Disposition::Ignore("draft")
    );
    assert_eq!(
        gh_hook("pull_request", &gh_pr("closed", false)).unwrap(),
        Disposition::Ignore("pull_request_closed")
    );
    assert_eq!(
        gh_hook("pull_request", &gh_pr("labeled", false)).unwrap(),
        Disposition::Ignore("action_not_reviewed")
    );
    assert_eq!(
        gh_hook("ping", &json!({"zen": "x"})).unwrap(),
        Disposition::Ignore("ping")
    );
    assert_eq!(
        gh_hook("push", &json!({"ref": "refs/heads/x"})).unwrap(),
        Disposition::Ignore("push_without_pull_request")
    );
    assert_eq!(
        gh_hook("issues", &json!({})).unwrap(),
        Disposition::Ignore("event_not_reviewed")
    );
    let mut bad = gh_pr("opened", false);
    bad["pull_request"]["head"]["sha"] = json!("not-a-sha; rm -rf");
    assert!(gh_hook("pull_request", &bad).is_err());
    let mut bad = gh_pr("opened", false);
    bad["repository"]["full_name"] = json!("../../etc");
    assert!(gh_hook("pull_request", &bad).is_err());
}

#[test]
fn github_form_payloads_are_decoded_after_verification() {
    let json = serde_json::to_string(&gh_pr("opened", false)).unwrap();
    let raw: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &json)
        .finish();
    let form = |raw: &[u8]| {
        let h = Headers::new()
            .with("x-hub-signature-256", &sign_hex_sha256(b"k", raw))
            .with("x-github-event", "pull_request")
            .with("content-type", "application/x-www-form-urlencoded");
        classify(&gh::verify(&h, raw.to_vec(), &SECRETS).unwrap())
    };
    match form(raw.as_bytes()).unwrap() {
        Disposition::Review(r) => {
            assert_eq!((r.repo_name.as_str(), r.number), ("octo/hello", 7))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        form(b"other=1").unwrap_err().0,
        "the form-encoded webhook body has no `payload` field"
    );
    assert!(form(b"payload=%7Bnot+json").is_err());
}

#[test]
fn gitlab_merge_request_hooks() {
    let hook = |body: Value| {
        let raw = serde_json::to_vec(&body).unwrap();
        let h = Headers::new()
            .with("x-gitlab-token", "k")
            .with("x-gitlab-event", "Merge Request Hook");
        classify(&gl::verify(&h, raw, &SECRETS, 0).unwrap())
    };
    let mr = |action: &str, extra: Value| {
        let mut attrs = json!({"iid": 3, "action": action, "state": "opened", "draft": false,
            "last_commit": {"id": "c".repeat(40)}, "target_project_id": 15});
        for (k, v) in extra.as_object().unwrap() {
            attrs[k] = v.clone();
        }
        json!({"object_kind": "merge_request", "event_type": "merge_request",
            "project": {"id": 15, "path_with_namespace": "group/proj"},
            "object_attributes": attrs})
    };
    match hook(mr("open", json!({}))).unwrap() {
        Disposition::Review(r) => {
            assert_eq!(
                (r.repo_id.as_str(), r.repo_name.as_str(), r.number),
                ("15", "group/proj", 3)
            );
            assert_eq!(r.base_sha, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        hook(mr("update", json!({"oldrev": "d".repeat(40)}))).unwrap(),
        Disposition::Review(_)
    ));
    assert_eq!(
        hook(mr("update", json!({}))).unwrap(),
        Disposition::Ignore("action_not_reviewed")
    );
    assert_eq!(
        hook(mr("open", json!({"draft": true}))).unwrap(),
        Disposition::Ignore("draft")
    );
    let mut ready = mr("update", json!({}));
    ready["changes"] = json!({"draft": {"previous": true, "current": false}});
    match hook(ready).unwrap() {
        Disposition::Review(r) => assert_eq!(r.trigger, Trigger::ReadyForReview),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        hook(mr("merge", json!({"state": "merged"}))).unwrap(),
        Disposition::Ignore("pull_request_closed")
    );
}

#[test]
fn bitbucket_cloud_and_data_center() {
    let hook = |event: &str, body: Value| {
        let raw = serde_json::to_vec(&body).unwrap();
        let h = Headers::new()
            .with("x-hub-signature", &sign_hex_sha256(b"k", &raw))
            .with("x-event-key", event);
        classify(&bb::verify(&h, raw, &SECRETS).unwrap())
    };
    let cloud = json!({
        "repository": {"uuid": "{abc}", "full_name": "ws/repo"},
        "pullrequest": {"id": 9, "state": "OPEN", "draft": false,
            "source": {"commit": {"hash": "abcdef012345"}},
            "destination": {"commit": {"hash": "0123456789ab"}}}
    });
    match hook("pullrequest:created", cloud.clone()).unwrap() {
        Disposition::Review(r) => {
            assert_eq!(
                (r.repo_name.as_str(), r.number, r.head_sha.as_str()),
                ("ws/repo", 9, "abcdef012345")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        hook("pullrequest:fulfilled", cloud).unwrap(),
        Disposition::Ignore("pull_request_closed")
    );
    let dc = json!({"eventKey": "pr:opened", "pullRequest": {"id": 4, "state": "OPEN", "draft": false,
        "fromRef": {"latestCommit": "e".repeat(40)},
        "toRef": {"latestCommit": "f".repeat(40), "repository": {"id": 84, "slug": "app", "project": {"key": "PRJ"}}}}});
    match hook("pr:opened", dc).unwrap() {
        Disposition::Review(r) => assert_eq!(
            (r.repo_name.as_str(), r.repo_id.as_str()),
            ("PRJ/app", "84")
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        hook("diagnostics:ping", json!({})).unwrap(),
        Disposition::Ignore("ping")
    );
}

/// A body delivered to `platform` as `event`, verified the way the platform signs it.
fn verified(platform: Platform, event: &str, raw: Vec<u8>) -> VerifiedWebhook {
    match platform {
        Platform::GitHub => {
            let h = Headers::new()
                .with("x-hub-signature-256", &sign_hex_sha256(b"k", &raw))
                .with("x-github-event", event);
            gh::verify(&h, raw, &SECRETS).unwrap()
        }
        Platform::GitLab => {
            let h = Headers::new()
                .with("x-gitlab-token", "k")
                .with("x-gitlab-event", event);
            gl::verify(&h, raw, &SECRETS, 0).unwrap()
        }
        Platform::Bitbucket => {
            let h = Headers::new()
                .with("x-hub-signature", &sign_hex_sha256(b"k", &raw))
                .with("x-event-key", event);
            bb::verify(&h, raw, &SECRETS).unwrap()
        }
    }
}

/// A valid payload of each platform, with every field the classifier reads.
fn full_payload(platform: Platform) -> Value {
    match platform {
        Platform::GitHub => gh_pr("opened", false),
        Platform::GitLab => json!({"object_kind": "merge_request",
            "project": {"id": 15, "path_with_namespace": "group/proj"},
            "changes": {"draft": {"previous": true, "current": false}},
            "object_attributes": {"iid": 3, "action": "update", "state": "opened", "draft": false,
                "work_in_progress": true, "oldrev": "d".repeat(40),
                "last_commit": {"id": "c".repeat(40)}, "target_project_id": 15}}),
        Platform::Bitbucket => json!({
            "repository": {"uuid": "{abc}", "full_name": "ws/repo"},
            "pullrequest": {"id": 9, "state": "OPEN", "draft": false,
                "source": {"commit": {"hash": "abcdef012345"}},
                "destination": {"commit": {"hash": "0123456789ab"}, "repository": {"uuid": "{d}"}}},
            "pullRequest": {"id": 4, "state": "OPEN", "draft": false,
                "fromRef": {"latestCommit": "e".repeat(40)},
                "toRef": {"latestCommit": "f".repeat(40),
                    "repository": {"id": 84, "slug": "app", "project": {"key": "PRJ"}}}}}),
    }
}

/// Every path to a value in `v`, objects only (arrays are leaves here).
fn paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            prefix.push(k.clone());
            out.push(prefix.clone());
            paths(child, prefix, out);
            prefix.pop();
        }
    }
}

fn set_path(v: &mut Value, path: &[String], new: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for k in parents {
        match cur.get_mut(k) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Value::Object(m) = cur {
        match new {
            Some(new) => {
                m.insert(last.clone(), new);
            }
            None => {
                m.remove(last);
            }
        }
    }
}

fn replacement() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        Just(Some(json!(true))),
        Just(Some(json!(false))),
        Just(Some(json!(0))),
        Just(Some(json!(7))),
        Just(Some(json!(-3))),
        Just(Some(json!(1.5))),
        Just(Some(json!(1e20))),
        Just(Some(json!(""))),
        Just(Some(json!("a".repeat(40)))),
        Just(Some(json!("OPEN"))),
        Just(Some(json!("opened"))),
        Just(Some(json!("closed"))),
        Just(Some(json!("merge_request"))),
        Just(Some(json!("update"))),
        Just(Some(json!("a/../b"))),
        Just(Some(json!([1, "x", {"sha": "a"}]))),
        Just(Some(json!({}))),
        Just(Some(json!({"sha": "b".repeat(40), "id": 5}))),
        "[ -~]{0,12}".prop_map(|s| Some(Value::String(s))),
    ]
}

/// The event names each platform sends, the reviewed ones first; one other platform's name too.
fn events(platform: Platform) -> &'static [&'static str] {
    match platform {
        Platform::GitHub => &["pull_request", "pull_request", "ping", "push", "Push Hook"],
        Platform::GitLab => &[
            "Merge Request Hook",
            "Merge Request Hook",
            "Push Hook",
            "pull_request",
        ],
        Platform::Bitbucket => &[
            "pullrequest:created",
            "pullrequest:updated",
            "pr:opened",
            "pr:from_ref_updated",
            "pr:reopened",
            "pullrequest:fulfilled",
            "diagnostics:ping",
            "repo:push",
            "pull_request",
        ],
    }
}

fn platform_and_event() -> impl Strategy<Value = (Platform, &'static str)> {
    prop_oneof![
        Just(Platform::GitHub),
        Just(Platform::GitLab),
        Just(Platform::Bitbucket)
    ]
    .prop_flat_map(|p| (Just(p), proptest::sample::select(events(p))))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Reading only the fields classification needs decides every payload exactly as the
    /// `Value` tree did: each platform's full payload with up to five fields removed, nulled,
    /// retyped or replaced, under every event name.
    #[test]
    fn typed_reading_decides_as_the_value_tree_did(
        (platform, event) in platform_and_event(),
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), replacement()), 0..5),
    ) {
        let mut body = full_payload(platform);
        let mut all = Vec::new();
        paths(&body, &mut Vec::new(), &mut all);
        for (at, new) in edits {
            set_path(&mut body, at.get::<Vec<String>>(&all), new);
        }
        let w = verified(platform, event, serde_json::to_vec(&body).unwrap());
        prop_assert_eq!(classify(&w), reference::classify(&w));
    }

    /// Bodies that are not objects, or not JSON, fail the same way.
    #[test]
    fn non_object_bodies_fail_as_before(raw in prop_oneof![
        Just(b"[]".to_vec()),
        Just(b"null".to_vec()),
        Just(b" \"x\" ".to_vec()),
        Just(b"7".to_vec()),
        Just(b"{".to_vec()),
        Just(b"{}x".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]) {
        for platform in [Platform::GitHub, Platform::GitLab, Platform::Bitbucket] {
            let w = verified(platform, "pull_request", raw.clone());
            prop_assert_eq!(classify(&w), reference::classify(&w));
        }
    }
}

#[test]
fn a_key_given_twice_is_refused_as_not_json() {
    let raw = br#"{"action":"opened","action":"closed"}"#.to_vec();
    assert_eq!(
        classify(&verified(Platform::GitHub, "pull_request", raw)).unwrap_err(),
        ClassifyError("the webhook body is not valid JSON".into())
    );
}
