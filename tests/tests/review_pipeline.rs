//! The review pipeline end to end: a verified webhook, the queue, the review worker fetching
//! through the platform API with the integration's token, asking the org's provider with its
//! own key, and posting one review with correct positions — on every platform and provider
//! wire format — plus retries and their backoff, dead-lettering, fallbacks, ignore files, token
//! budgets, files the platform will not serve, upstream answers over their size limit, egress
//! refusal, and secrets that never show up where they must not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::review::*;
use e2e::{fake_llm, fake_platforms, org_path, stack_log, Client};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(120);

fn setup(
    platform: &str,
    kind: &str,
    reply: Value,
    provider_extra: Value,
    integration_extra: Value,
) -> Setup {
    Setup::new(
        fake_platforms!(),
        fake_llm!(),
        platform,
        kind,
        reply,
        provider_extra,
        integration_extra,
    )
}

/// The most common pair: a GitHub integration and an Anthropic provider answering the sample
/// findings.
fn github_anthropic() -> Setup {
    setup(
        "github",
        "anthropic",
        sample_findings(),
        json!({}),
        json!({}),
    )
}

/// Registers `pr` with the sample files, opens it and waits until its review ends.
fn review_of(s: &Setup, pr: &Pr) -> Value {
    s.register(pr, &sample_files(), None, "open");
    let id = s.open_and_queue(pr);
    wait_review(&id, &["done", "failed"], WAIT)
}

/// Whether the review names `path` as skipped for `reason`.
fn skipped(r: &Value, path: &str, reason: &str) -> bool {
    r["skipped_files"]
        .as_array()
        .unwrap()
        .contains(&json!({"path": path, "reason": reason}))
}

fn by_title<'a>(items: &'a [Value], title: &str, text: impl Fn(&Value) -> String) -> &'a Value {
    items
        .iter()
        .find(|c| text(c).contains(title))
        .unwrap_or_else(|| panic!("no comment titled {title}: {items:?}"))
}

fn assert_common_counts(r: &Value) {
    let c = &r["counts"];
    assert_eq!(c["files_changed"], 5, "{r}");
    assert_eq!(c["files_reviewed"], 2, "{r}");
    assert_eq!(c["files_skipped"], 3, "{r}");
    assert_eq!(c["findings"], 4, "{r}");
    assert_eq!(c["findings_dropped"], 1, "{r}");
    let skipped: Vec<(String, String)> = r["skipped_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_owned(),
                s["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for want in [
        ("Cargo.lock", "lockfile"),
        ("vendor/lib/x.rs", "vendored"),
        ("assets/logo.png", "binary"),
    ] {
        assert!(
            skipped.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} in {skipped:?}"
        );
    }
    let t = &r["timings"];
    for k in [
        "fetching_at",
        "indexing_at",
        "reviewing_at",
        "commenting_at",
        "finished_at",
    ] {
        assert!(t[k].is_string(), "{k}: {t}");
    }
    assert!(t["total_ms"].as_i64().is_some());
}

fn assert_prompt(s: &Setup) {
    let chats = s.chat_requests();
    assert_eq!(chats.len(), 1);
    let body = body_of(&chats[0]).to_string();
    assert!(body.contains("src/handler.rs") && body.contains("src/auth.rs"));
    assert!(
        !body.contains("fn vendored()"),
        "vendored code must not reach the provider"
    );
    assert!(body.contains("\"stream\":false") || body.contains("generationConfig"));
}

#[test]
fn github_review_is_posted_with_line_and_side_positions() {
    let s = github_anthropic();
    let pr = Pr::new("octo/widgets", 7);
    s.register(&pr, &sample_files(), None, "open");
    let id = s.open_and_queue(&pr);
    let r = wait_review(&id, &["done", "failed", "skipped"], WAIT);
    assert_eq!(r["status"], "done", "{r}");
    assert_common_counts(&r);
    assert_eq!(r["counts"]["comments_posted"], 4);
    assert_eq!(r["model"], "review-model-1");
    // The findings it placed, as the API lists them: file, line, side, and posted inline.
    let listed = Client::owner_key()
        .get(&org_path(&format!("/reviews/{id}/findings")))
        .expect(200)
        .json();
    let mut placed: Vec<(String, u64, String, String)> = listed["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let text = |k: &str| f[k].as_str().unwrap().to_owned();
            (
                text("path"),
                f["line"].as_u64().unwrap(),
                text("side"),
                text("state"),
            )
        })
        .collect();
    placed.sort();
    let want =
        |p: &str, l: u64, side: &str| (p.to_owned(), l, side.to_owned(), "posted".to_owned());
    assert_eq!(
        placed,
        vec![
            want("src/auth.rs", 3, "RIGHT"),
            want("src/handler.rs", 12, "LEFT"),
            want("src/handler.rs", 12, "RIGHT"),
            want("src/handler.rs", 13, "RIGHT"),
        ]
    );
    let posted = s.posted();
    assert_eq!(posted.len(), 1, "exactly one review: {posted:?}");
    let review = &posted[0]["body"];
    assert_eq!(review["commit_id"], pr.head.as_str());
    assert_eq!(review["event"], "COMMENT");
    let body = review["body"].as_str().unwrap();
    assert!(body.contains(&format!("<!-- edgeplane:review:{id} -->")));
    assert!(
        body.contains("`Cargo.lock` — lockfile")
            && body.contains("`assets/logo.png` — binary file"),
        "{body}"
    );
    let comments = review["comments"].as_array().unwrap().clone();
    assert_eq!(comments.len(), 4);
    let title = |c: &Value| c["body"].as_str().unwrap().to_owned();
    let unwrap = by_title(&comments, "Unchecked unwrap", title);
    assert_eq!(
        (
            unwrap["path"].as_str(),
            unwrap["line"].as_u64(),
            unwrap["side"].as_str()
        ),
        (Some("src/handler.rs"), Some(12), Some("RIGHT"))
    );
    let removed = by_title(&comments, "Bounds check removed", title);
    assert_eq!(
        (removed["line"].as_u64(), removed["side"].as_str()),
        (Some(12), Some("LEFT"))
    );
    let logged = by_title(&comments, "Token logged", title);
    assert_eq!(
        (logged["path"].as_str(), logged["line"].as_u64()),
        (Some("src/auth.rs"), Some(3))
    );
    assert!(!comments
        .iter()
        .any(|c| title(c).contains("Not on the diff")));
    // The platform was called with the integration's token, the provider with the org's key.
    let calls = s.platforms.requests();
    assert!(calls
        .iter()
        .all(|c| header_of(c, "authorization") == Some(format!("Bearer {}", s.token))));
    let chat = &s.chat_requests()[0];
    assert_eq!(header_of(chat, "x-api-key"), Some(s.api_key.clone()));
    assert_eq!(
        header_of(chat, "anthropic-version").as_deref(),
        Some("2023-06-01")
    );
    assert!(header_of(chat, "authorization").is_none());
    assert_prompt(&s);
}

#[test]
fn gitlab_review_uses_discussions_with_full_positions() {
    let signing = "whsec_c2lnbmluZy1rZXktZm9yLWdpdGxhYi1yZXZpZXdz";
    let s = setup(
        "gitlab",
        "openai",
        sample_findings(),
        json!({}),
        json!({"signing_token": signing}),
    );
    let pr = Pr::new("group/sub/project", 3);
    s.register(&pr, &sample_files(), None, "open");
    let id = s.open_and_queue(&pr);
    let r = wait_review(&id, &["done", "failed", "skipped"], WAIT);
    assert_eq!(r["status"], "done", "{r}");
    assert_common_counts(&r);
    let posted = s.posted();
    let discussions: Vec<Value> = posted
        .iter()
        .filter(|p| p["kind"] == "discussion")
        .map(|p| p["body"].clone())
        .collect();
    let notes: Vec<Value> = posted
        .iter()
        .filter(|p| p["kind"] == "note")
        .map(|p| p["body"].clone())
        .collect();
    assert_eq!((discussions.len(), notes.len()), (4, 1), "{posted:?}");
    let title = |c: &Value| c["body"].as_str().unwrap().to_owned();
    let added = &by_title(&discussions, "Unchecked unwrap", title)["position"];
    assert_eq!(
        (added["new_line"].as_u64(), added.get("old_line")),
        (Some(12), None)
    );
    assert_eq!(
        (added["head_sha"].as_str(), added["base_sha"].as_str()),
        (Some(pr.head.as_str()), Some(pr.base.as_str()))
    );
    assert!(
        added["start_sha"]
            .as_str()
            .is_some_and(|s| s != pr.base && s.len() == 40),
        "GitLab's own start_sha: {added}"
    );
    let removed = &by_title(&discussions, "Bounds check removed", title)["position"];
    assert_eq!(
        (removed.get("new_line"), removed["old_line"].as_u64()),
        (None, Some(12))
    );
    let context = &by_title(&discussions, "Lookup result unchecked", title)["position"];
    assert_eq!(
        (context["new_line"].as_u64(), context["old_line"].as_u64()),
        (Some(13), Some(13))
    );
    assert!(notes[0]["body"]
        .as_str()
        .unwrap()
        .contains(&format!("edgeplane:review:{id}")));
    let chat = &s.chat_requests()[0];
    assert_eq!(
        header_of(chat, "authorization"),
        Some(format!("Bearer {}", s.api_key))
    );
    assert!(chat["path"]
        .as_str()
        .unwrap()
        .ends_with("/openai/v1/chat/completions"));
    assert_prompt(&s);
}

#[test]
fn bitbucket_cloud_review_uses_inline_comments() {
    let s = setup(
        "bitbucket",
        "gemini",
        sample_findings(),
        json!({}),
        json!({}),
    );
    let pr = Pr::new("workspace/app", 9);
    s.register(&pr, &sample_files(), None, "open");
    let id = s.open_and_queue(&pr);
    let r = wait_review(&id, &["done", "failed", "skipped"], WAIT);
    assert_eq!(r["status"], "done", "{r}");
    assert_common_counts(&r);
    let posted = s.posted();
    let inline: Vec<Value> = posted
        .iter()
        .filter(|p| p["kind"] == "inline")
        .map(|p| p["body"].clone())
        .collect();
    let general: Vec<Value> = posted
        .iter()
        .filter(|p| p["kind"] == "comment")
        .map(|p| p["body"].clone())
        .collect();
    assert_eq!((inline.len(), general.len()), (4, 1), "{posted:?}");
    let title = |c: &Value| c["content"]["raw"].as_str().unwrap().to_owned();
    assert_eq!(
        by_title(&inline, "Unchecked unwrap", title)["inline"],
        json!({"path": "src/handler.rs", "to": 12})
    );
    assert_eq!(
        by_title(&inline, "Bounds check removed", title)["inline"],
        json!({"path": "src/handler.rs", "from": 12})
    );
    let chat = &s.chat_requests()[0];
    assert_eq!(header_of(chat, "x-goog-api-key"), Some(s.api_key.clone()));
    assert!(chat["path"]
        .as_str()
        .unwrap()
        .ends_with("/models/review-model-1:generateContent"));
    assert!(!chat["query"].to_string().contains(&s.api_key));
}

#[test]
fn bitbucket_data_center_review_uses_anchors() {
    let s = setup(
        "bbdc",
        "openai_compatible",
        sample_findings(),
        json!({}),
        json!({}),
    );
    let pr = Pr::new("PRJ/service", 12);
    s.register(&pr, &sample_files(), None, "open");
    let id = s.open_and_queue(&pr);
    let r = wait_review(&id, &["done", "failed", "skipped"], WAIT);
    assert_eq!(r["status"], "done", "{r}");
    assert_common_counts(&r);
    let inline: Vec<Value> = s
        .posted()
        .iter()
        .filter(|p| p["kind"] == "inline")
        .map(|p| p["body"].clone())
        .collect();
    assert_eq!(inline.len(), 4);
    let title = |c: &Value| c["text"].as_str().unwrap().to_owned();
    let a = &by_title(&inline, "Bounds check removed", title)["anchor"];
    assert_eq!(
        (
            a["line"].as_u64(),
            a["lineType"].as_str(),
            a["fileType"].as_str()
        ),
        (Some(12), Some("REMOVED"), Some("FROM"))
    );
    let a = &by_title(&inline, "Lookup result unchecked", title)["anchor"];
    assert_eq!(
        (
            a["line"].as_u64(),
            a["lineType"].as_str(),
            a["fileType"].as_str()
        ),
        (Some(13), Some("CONTEXT"), Some("TO"))
    );
    assert!(s.chat_requests()[0]["path"]
        .as_str()
        .unwrap()
        .ends_with("/openrouter/api/v1/chat/completions"));
}

#[test]
fn a_redelivered_queue_message_never_posts_a_second_review() {
    let s = github_anthropic();
    let pr = Pr::new("octo/redeliver", 5);
    s.register(&pr, &sample_files(), None, "open");
    let id = s.open_and_queue(&pr);
    let c = Client::owner_key();
    // The inbox records the review just after answering the platform: requeue it once it is.
    get_review(&id);
    // The same job message again while the first is queued or running, and after it is done.
    c.post(&org_path(&format!("/reviews/{id}/requeue")), &json!({}))
        .expect(202);
    let done = wait_review(&id, &["done", "failed"], WAIT);
    assert_eq!(done["status"], "done");
    let handled = ["review already finished; message acknowledged", id.as_str()];
    let before = log_lines(&handled);
    c.post(&org_path(&format!("/reviews/{id}/requeue")), &json!({}))
        .expect(202);
    c.post(&org_path(&format!("/reviews/{id}/requeue")), &json!({}))
        .expect(202);
    // Both messages reached the worker, which found the review finished.
    wait_log(&handled, before + 2, WAIT);
    let after = get_review(&id);
    assert_eq!(after["status"], "done");
    assert_eq!(
        after["timings"]["finished_at"],
        done["timings"]["finished_at"]
    );
    assert_eq!(s.posted().len(), 1);
    assert_eq!(s.chat_requests().len(), 1, "the provider was asked once");
    c.post(
        &org_path("/reviews/rev_00000000000000000000000000000000/requeue"),
        &json!({}),
    )
    .expect_error(404, "not_found");
}

/// The test stack's `QUEUE_RETRY_BASE_SECONDS`: the n-th failed attempt waits `base * 2^(n-1)`.
const RETRY_BASE_MS: u64 = 1000;

#[test]
fn a_provider_error_is_retried_with_backoff_then_succeeds() {
    let s = setup("github", "openai", sample_findings(), json!({}), json!({}));
    s.llm.fault("POST", "/chat/completions", None, 500, 2, None);
    let pr = Pr::new("octo/retry", 8);
    s.register(&pr, &sample_files(), None, "open");
    let id = s.open_and_queue(&pr);
    let r = wait_review(&id, &["done", "failed"], WAIT);
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["attempts"], 3);
    let chats = s.chat_requests();
    assert_eq!(chats.len(), 3);
    assert_eq!(s.posted().len(), 1);
    // Each retry waited at least its backoff: 1 s after the first failure, 2 s after the second
    // (the gap also holds the fetching and indexing of the next attempt, so only the lower
    // bound is a property of the pipeline).
    let gaps = gaps_ms(&chats);
    assert!(gaps[0] >= RETRY_BASE_MS, "{gaps:?}");
    assert!(gaps[1] >= 2 * RETRY_BASE_MS, "{gaps:?}");
}

#[test]
fn a_provider_that_always_fails_ends_in_the_dead_letter_queue_as_failed() {
    let s = github_anthropic();
    s.llm.fault("POST", "/messages", None, 503, 1000, None);
    let pr = Pr::new("octo/dlq", 9);
    s.register(&pr, &sample_files(), None, "open");
    let id = s.open_and_queue(&pr);
    let r = wait_review(&id, &["done", "failed"], Duration::from_secs(180));
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["reason"], "retries_exhausted");
    assert!(r["error"].as_str().unwrap().contains("answered 503"), "{r}");
    // max_retries = 3: the first delivery plus three retries.
    assert_eq!(r["attempts"], 4);
    assert_eq!(s.chat_requests().len(), 4);
    assert!(s.posted().is_empty());
    // Once the provider recovers, an operator starts it over.
    s.llm
        .admin(reqwest::Method::POST, "/__admin/faults/clear", None);
    let again = Client::owner_key()
        .post(&org_path(&format!("/reviews/{id}/requeue")), &json!({}))
        .expect(202)
        .json();
    assert_eq!(again["review"]["status"], "queued");
    let r = wait_review(&id, &["done", "failed"], WAIT);
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(s.posted().len(), 1);
}

#[test]
fn platform_rate_limits_are_honoured_and_commenting_resumes_without_asking_again() {
    let s = github_anthropic();
    s.platforms.fault("POST", "/reviews", None, 429, 1, Some(2));
    let pr = Pr::new("octo/ratelimit", 10);
    s.register(&pr, &sample_files(), None, "open");
    let id = s.open_and_queue(&pr);
    let r = wait_review(&id, &["done", "failed"], WAIT);
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["attempts"], 2);
    assert_eq!(
        s.chat_requests().len(),
        1,
        "the sealed findings were reused"
    );
    assert_eq!(s.posted().len(), 1);
    let posts = recorded(&s.platforms, "POST", "/reviews");
    assert_eq!(posts.len(), 2);
    // The platform's Retry-After (2 s, more than the 1 s backoff of a first failure) was waited.
    let gaps = gaps_ms(&posts);
    assert!(gaps[0] >= 2000, "{gaps:?}");
}

#[test]
fn rejected_inline_comments_fall_back_to_the_summary() {
    // GitHub refuses the whole review: the findings move into the summary.
    let s = github_anthropic();
    s.platforms
        .fault("POST", "/reviews", Some("\"comments\":[{"), 422, 1, None);
    let pr = Pr::new("octo/fallback", 14);
    s.register(&pr, &sample_files(), None, "open");
    let id = s.open_and_queue(&pr);
    let r = wait_review(&id, &["done", "failed"], WAIT);
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(
        (
            r["counts"]["comments_posted"].as_u64(),
            r["counts"]["comments_in_summary"].as_u64()
        ),
        (Some(0), Some(4))
    );
    let posted = s.posted();
    assert_eq!(posted.len(), 1);
    let body = posted[0]["body"]["body"].as_str().unwrap();
    assert!(
        body.contains("could not be placed inline")
            && body.contains("`src/handler.rs:12` **[high] Unchecked unwrap"),
        "{body}"
    );
    assert!(posted[0]["body"]["comments"].as_array().unwrap().is_empty());

    // GitLab refuses one discussion: only that finding moves to the summary note.
    let g = setup(
        "gitlab",
        "anthropic",
        sample_findings(),
        json!({}),
        json!({}),
    );
    g.platforms
        .fault("POST", "/discussions", Some("Token logged"), 422, 1, None);
    let pr = Pr::new("grp/fallback", 15);
    g.register(&pr, &sample_files(), None, "open");
    let id = g.open_and_queue(&pr);
    let r = wait_review(&id, &["done", "failed"], WAIT);
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(
        (
            r["counts"]["comments_posted"].as_u64(),
            r["counts"]["comments_in_summary"].as_u64()
        ),
        (Some(3), Some(1))
    );
    let posted = g.posted();
    let note = posted.iter().find(|p| p["kind"] == "note").unwrap()["body"]["body"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        note.contains("`src/auth.rs:3` **[critical] Token logged"),
        "{note}"
    );
    assert_eq!(
        posted.iter().filter(|p| p["kind"] == "discussion").count(),
        3
    );
}

#[test]
fn the_ignore_file_excludes_paths_from_the_review() {
    let s = github_anthropic();
    let pr = Pr::new("octo/ignore", 16);
    s.register(
        &pr,
        &sample_files(),
        Some("# not ours to review\nsrc/auth.rs\n*.png\n"),
        "open",
    );
    let id = s.open_and_queue(&pr);
    let r = wait_review(&id, &["done", "failed"], WAIT);
    assert_eq!(r["status"], "done", "{r}");
    let skipped = r["skipped_files"].as_array().unwrap();
    assert!(
        skipped.contains(&json!({"path": "src/auth.rs", "reason": "edgeplaneignore"})),
        "{skipped:?}"
    );
    assert!(skipped.contains(&json!({"path": "assets/logo.png", "reason": "edgeplaneignore"})));
    assert_eq!(r["counts"]["files_reviewed"], 1);
    let prompt = body_of(&s.chat_requests()[0]).to_string();
    assert!(!prompt.contains("src/auth.rs") && prompt.contains("src/handler.rs"));
    // The model's finding on the ignored file is not posted.
    let review = &s.posted()[0]["body"];
    assert!(!review["comments"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["path"] == "src/auth.rs"));
    assert!(review["body"]
        .as_str()
        .unwrap()
        .contains("`src/auth.rs` — matched .edgeplaneignore"));
    // The ignore file was read at the base commit (a pull request cannot exempt itself).
    let reads = recorded(&s.platforms, "GET", "/contents/.edgeplaneignore");
    assert_eq!(reads.len(), 1);
    assert!(reads[0]["query"].to_string().contains(&pr.base));
}

#[test]
fn a_diff_larger_than_the_token_budget_names_what_did_not_fit() {
    let s = setup(
        "github",
        "anthropic",
        sample_findings(),
        json!({"max_input_tokens": 2000}),
        json!({}),
    );
    let mut files = sample_files();
    let mut big_patch = String::from("@@ -0,0 +1,1200 @@\n");
    let mut big_content = String::new();
    for i in 0..1200 {
        big_patch.push_str(&format!(
            "+pub const LIMIT_{i}: u64 = {i} * 1024; // generated table entry {i}\n"
        ));
        big_content.push_str(&format!(
            "pub const LIMIT_{i}: u64 = {i} * 1024; // generated table entry {i}\n"
        ));
    }
    files.insert(
        1,
        file("src/limits.rs", "added", big_patch.trim_end(), &big_content),
    );
    let pr = Pr::new("octo/budget", 17);
    s.register(&pr, &files, None, "open");
    let id = s.open_and_queue(&pr);
    let r = wait_review(&id, &["done", "failed"], WAIT);
    assert_eq!(r["status"], "done", "{r}");
    assert!(
        r["skipped_files"]
            .as_array()
            .unwrap()
            .contains(&json!({"path": "src/limits.rs", "reason": "token_budget"})),
        "{r}"
    );
    let prompt = body_of(&s.chat_requests()[0]).to_string();
    assert!(!prompt.contains("LIMIT_1199") && prompt.contains("src/handler.rs"));
    assert!(
        prompt.len() < 2000 * 3 + 4000,
        "prompt within budget: {} bytes",
        prompt.len()
    );
    let body = s.posted()[0]["body"]["body"].as_str().unwrap().to_owned();
    assert!(
        body.contains("`src/limits.rs` — did not fit the model's token budget"),
        "{body}"
    );
}

#[test]
fn egress_outside_the_allowlist_is_refused_and_logged() {
    let s = github_anthropic();
    let pr = Pr::new("octo/egress", 18);
    s.register(&pr, &sample_files(), None, "open");
    s.platforms.admin(
        reqwest::Method::POST,
        "/__admin/faults",
        Some(&json!({"method": "GET", "path_contains": "/pulls/18", "status": 302, "times": 1, "location": "https://exfil.example.net/steal"})),
    );
    let id = s.open_and_queue(&pr);
    let r = wait_review(&id, &["done", "failed"], WAIT);
    assert_eq!(r["status"], "failed", "{r}");
    let err = r["error"].as_str().unwrap();
    assert!(
        err.contains("egress refused") && err.contains("exfil.example.net"),
        "{err}"
    );
    let log = stack_log();
    assert!(log.contains("egress refused") && log.contains("exfil.example.net"));
    assert!(s.chat_requests().is_empty());
}

#[test]
fn embeddings_join_lexical_retrieval_when_the_provider_offers_them() {
    let s = setup(
        "github",
        "openai",
        sample_findings(),
        json!({"embedding_model": "text-embedding-3-small"}),
        json!({}),
    );
    let pr = Pr::new("octo/embed", 19);
    s.register(&pr, &sample_files(), None, "open");
    let id = s.open_and_queue(&pr);
    let r = wait_review(&id, &["done", "failed"], WAIT);
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["counts"]["embeddings_used"], true);
    let emb = recorded(&s.llm, "POST", "/embeddings");
    assert!(!emb.is_empty());
    assert!(emb
        .iter()
        .all(|e| header_of(e, "authorization") == Some(format!("Bearer {}", s.api_key))));
    // Anthropic has no embeddings endpoint: configuring one is refused.
    Client::owner_key()
        .post(&org_path("/llm-providers"), &json!({"name": "a", "kind": "anthropic", "model": "m", "api_key": "sk-ant-xxxxxxxx", "embedding_model": "e"}))
        .expect_error(422, "validation_failed");
}

#[test]
fn byok_keys_and_source_never_appear_in_responses_logs_or_storage() {
    let s = setup(
        "gitlab",
        "anthropic",
        sample_findings(),
        json!({}),
        json!({}),
    );
    let c = Client::owner_key();
    let ppath = org_path(&format!("/llm-providers/{}", s.provider_id));
    let mut seen = Vec::new();
    seen.push(c.get(&ppath).expect(200).text);
    seen.push(c.get(&org_path("/llm-providers")).expect(200).text);
    let mut files = sample_files();
    let canary = format!("canary_{}", random_hex(20));
    files.push(file(
        "src/secret_sauce.rs",
        "added",
        &format!("@@ -0,0 +1 @@\n+const RECIPE: &str = \"{canary}\";"),
        &format!("const RECIPE: &str = \"{canary}\";\n"),
    ));
    let pr = Pr::new("grp/byok", 20);
    s.register(&pr, &files, None, "open");
    let id = s.open_and_queue(&pr);
    let r = wait_review(&id, &["done", "failed"], WAIT);
    assert_eq!(r["status"], "done", "{r}");
    seen.push(c.get(&org_path(&format!("/reviews/{id}"))).expect(200).text);
    seen.push(c.get(&org_path("/reviews")).expect(200).text);
    // Rotate the key (audited), then delete the provider.
    let rotated = format!("sk-rotated-{}", random_hex(32));
    let p = c.patch(&ppath, &json!({"api_key": rotated})).expect(200);
    assert!(p.json()["llm_provider"]["api_key_set_at"].is_string());
    seen.push(p.text);
    // Moving the key to another URL requires re-entering it.
    c.patch(
        &ppath,
        &json!({"base_url": "https://api.example-llm.com/v1"}),
    )
    .expect_error(422, "validation_failed");
    for text in &seen {
        assert!(
            !text.contains(&s.api_key) && !text.contains(&rotated) && !text.contains(&s.token),
            "secret in a response: {text}"
        );
    }
    c.delete(&ppath).expect(204);
    c.get(&ppath).expect_error(404, "not_found");
    // The provider did receive the key, as its auth header only.
    let chat = &s.chat_requests()[0];
    assert_eq!(header_of(chat, "x-api-key"), Some(s.api_key.clone()));
    assert!(!chat["body"].as_str().unwrap().contains(&s.api_key));
    // Never in the stack's logs.
    let log = stack_log();
    assert!(
        !log.is_empty(),
        "EP_STACK_LOG must point at the stack's log"
    );
    for secret in [&s.api_key, &rotated, &s.token, &s.webhook_secret, &canary] {
        assert!(
            !log.contains(secret.as_str()),
            "a secret or source line reached the log"
        );
    }
    // Nor in the stack's storage (D1, queues), where keys are sealed and source is never kept.
    let state = std::path::Path::new(&std::env::var("EP_STACK_LOG").unwrap())
        .parent()
        .unwrap()
        .join("state");
    assert!(
        state.is_dir(),
        "expected the stack state next to its log: {state:?}"
    );
    let mut stack = vec![state];
    let mut scanned = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                scanned += 1;
                for secret in [&s.api_key, &rotated, &s.token, &canary] {
                    assert!(
                        !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                        "found in {p:?}"
                    );
                }
            }
        }
    }
    assert!(scanned > 0);
}

#[test]
fn a_file_the_platform_refuses_to_serve_is_skipped_and_named() {
    // GitHub answers 403 for the contents of a file over 100 MB.
    let s = github_anthropic();
    s.platforms
        .fault("GET", "/contents/src/auth.rs", None, 403, 1, None);
    let r = review_of(&s, &Pr::new("octo/forbidden", 22));
    assert_eq!(r["status"], "done", "{r}");
    assert!(skipped(&r, "src/auth.rs", "unreadable"), "{r}");
    assert_eq!(r["counts"]["files_reviewed"], 1);
    let prompt = body_of(&s.chat_requests()[0]).to_string();
    assert!(prompt.contains("src/handler.rs") && !prompt.contains("src/auth.rs"));
    let body = s.posted()[0]["body"]["body"].as_str().unwrap().to_owned();
    assert!(
        body.contains("`src/auth.rs` — the platform refused to serve its contents"),
        "{body}"
    );
}

/// 64 MiB: far over every limit, and far more than the socket buffers between the fake and the
/// worker hold, so what the fake managed to send shows whether the worker kept reading.
const HUGE: u64 = 64 * 1024 * 1024;

#[test]
fn an_oversized_file_is_skipped_without_being_read_in_full() {
    let s = github_anthropic();
    s.platforms.oversize("GET", "/contents/src/auth.rs", HUGE);
    let r = review_of(&s, &Pr::new("octo/huge-file", 23));
    assert_eq!(r["status"], "done", "{r}");
    assert!(skipped(&r, "src/auth.rs", "too_large"), "{r}");
    let streamed = s.platforms.streamed();
    assert_eq!(streamed.len(), 1, "{streamed:?}");
    let sent = streamed[0]["sent"].as_u64().unwrap();
    assert!(
        sent < HUGE / 4,
        "the worker read {sent} of {HUGE} bytes instead of stopping at its limit"
    );
}

#[test]
fn oversized_platform_and_provider_answers_fail_the_review_with_a_clear_reason() {
    // The pull request itself.
    let s = github_anthropic();
    s.platforms.oversize("GET", "/pulls/24", HUGE);
    let r = review_of(&s, &Pr::new("octo/huge-pr", 24));
    assert_eq!(r["status"], "failed", "{r}");
    let err = r["error"].as_str().unwrap();
    assert!(
        err.contains("the pull request") && err.contains("larger than the 1048576 bytes allowed"),
        "{err}"
    );
    assert!(s.platforms.streamed()[0]["sent"].as_u64().unwrap() < HUGE / 4);
    assert!(s.chat_requests().is_empty());

    // The provider's answer.
    let s = setup("github", "openai", sample_findings(), json!({}), json!({}));
    s.llm.oversize("POST", "/chat/completions", HUGE);
    let r = review_of(&s, &Pr::new("octo/huge-answer", 25));
    assert_eq!(r["status"], "failed", "{r}");
    let err = r["error"].as_str().unwrap();
    assert!(
        err.contains("the LLM provider") && err.contains("larger than the 4194304 bytes allowed"),
        "{err}"
    );
    assert!(s.llm.streamed()[0]["sent"].as_u64().unwrap() < HUGE / 4);
    assert!(s.posted().is_empty());
}

#[test]
fn base_urls_on_special_purpose_addresses_are_refused_when_saved() {
    let c = Client::owner_key();
    for host in [
        "0.1.2.3",
        "198.18.0.1",
        "240.0.0.1",
        "224.0.0.251",
        "[64:ff9b::a00:1]",
        "[::10.0.0.1]",
        "[2002:a00:1::]",
        "[ff02::1]",
    ] {
        let url = format!("https://{host}/v1");
        c.post(
            &org_path("/llm-providers"),
            &json!({"name": "p", "kind": "openai_compatible", "base_url": url,
                    "model": "m", "api_key": "sk-test-xxxxxxxx"}),
        )
        .expect_error(422, "validation_failed");
        c.post(
            &org_path("/integrations"),
            &json!({"name": "i", "platform": "github", "api_base_url": url,
                    "access_token": "ghp_x", "webhook_secret": "0123456789abcdef"}),
        )
        .expect_error(422, "validation_failed");
    }
}
