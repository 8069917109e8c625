//! What a verified delivery asks for: a review of a pull/merge request head, or nothing.
//!
//! Only pull/merge requests that are open, not drafts, and whose head just appeared (opened,
//! reopened, new commits, ready for review) trigger a review. Everything else — pings, pushes,
//! closed or merged requests, edits, labels, comments, other event types — is acknowledged and
//! recorded as ignored with a reason, so a platform's delivery log stays green.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Platform, VerifiedWebhook};

/// Why a review starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Opened,
    Reopened,
    /// New commits on the source branch (GitHub `synchronize`, GitLab `update` with `oldrev`,
    /// Bitbucket `pullrequest:updated` / `pr:from_ref_updated`).
    Updated,
    ReadyForReview,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Opened => "opened",
            Trigger::Reopened => "reopened",
            Trigger::Updated => "updated",
            Trigger::ReadyForReview => "ready_for_review",
        }
    }
}

/// The ids a review job needs: never code, never the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestRef {
    /// The platform's stable repository id (GitHub/GitLab numeric id, Bitbucket UUID or id).
    pub repo_id: String,
    /// The path the platform's API addresses the repository by (`owner/repo`, `group/project`,
    /// `workspace/repo`, `PROJECT/repo`).
    pub repo_name: String,
    pub number: u64,
    pub head_sha: String,
    /// When the payload carries it (GitLab does not: its diff refs come from the API).
    pub base_sha: Option<String>,
    pub trigger: Trigger,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Review(PullRequestRef),
    /// Acknowledged, recorded, nothing queued. The reason is a short fixed string.
    Ignore(&'static str),
}

/// A verified body that is not the JSON its event name promises. Answered with 422 (the sender
/// is authenticated, so this is a platform or configuration problem worth surfacing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifyError(pub String);

/// The JSON document a verified delivery carries: the body itself, or the `payload` field of a
/// form-encoded one (decoded only now, after the raw bytes verified).
fn json_payload(w: &VerifiedWebhook) -> Result<Cow<'_, [u8]>, ClassifyError> {
    if !w.is_form_encoded() {
        return Ok(Cow::Borrowed(w.body()));
    }
    form_urlencoded::parse(w.body())
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| Cow::Owned(v.into_owned().into_bytes()))
        .ok_or_else(|| ClassifyError("the form-encoded webhook body has no `payload` field".into()))
}

pub fn classify(w: &VerifiedWebhook) -> Result<Disposition, ClassifyError> {
    let body: Value = serde_json::from_slice(&json_payload(w)?)
        .map_err(|_| ClassifyError("the webhook body is not valid JSON".into()))?;
    if !body.is_object() {
        return Err(ClassifyError(
            "the webhook body is not a JSON object".into(),
        ));
    }
    match w.platform() {
        Platform::GitHub => github(w.event(), &body),
        Platform::GitLab => gitlab(w.event(), &body),
        Platform::Bitbucket => bitbucket(w.event(), &body),
    }
}

fn field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    field(v, path).and_then(Value::as_str).map(str::to_owned)
}

fn id_at(v: &Value, path: &[&str]) -> Option<String> {
    match field(v, path)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn need<T>(v: Option<T>, what: &str) -> Result<T, ClassifyError> {
    v.ok_or_else(|| ClassifyError(format!("the payload has no valid `{what}`")))
}

/// Commit ids are hex: full (40/64) or abbreviated (Bitbucket Cloud sends 12).
fn sha(v: Option<String>, what: &str) -> Result<String, ClassifyError> {
    let s = need(v, what)?;
    if (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(ClassifyError(format!("`{what}` is not a commit id")))
    }
}

fn repo_name(v: Option<String>) -> Result<String, ClassifyError> {
    let s = need(v, "repository name")?;
    let ok = !s.is_empty()
        && s.len() <= 300
        && !s.chars().any(|c| c.is_control() || c.is_whitespace())
        && !s
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if ok {
        Ok(s)
    } else {
        Err(ClassifyError(
            "the repository name is not a valid path".into(),
        ))
    }
}

fn number(v: Option<&Value>, what: &str) -> Result<u64, ClassifyError> {
    need(v.and_then(Value::as_u64).filter(|n| *n > 0), what)
}

fn github(event: &str, body: &Value) -> Result<Disposition, ClassifyError> {
    match event {
        "pull_request" => {}
        "ping" => return Ok(Disposition::Ignore("ping")),
        "push" => return Ok(Disposition::Ignore("push_without_pull_request")),
        _ => return Ok(Disposition::Ignore("event_not_reviewed")),
    }
    let action = need(str_at(body, &["action"]), "action")?;
    let trigger = match action.as_str() {
        "opened" => Trigger::Opened,
        "reopened" => Trigger::Reopened,
        "synchronize" => Trigger::Updated,
        "ready_for_review" => Trigger::ReadyForReview,
        "closed" => return Ok(Disposition::Ignore("pull_request_closed")),
        _ => return Ok(Disposition::Ignore("action_not_reviewed")),
    };
    let pr = need(body.get("pull_request"), "pull_request")?;
    if str_at(pr, &["state"]).as_deref() == Some("closed") {
        return Ok(Disposition::Ignore("pull_request_closed"));
    }
    if pr.get("draft").and_then(Value::as_bool) == Some(true) {
        return Ok(Disposition::Ignore("draft"));
    }
    Ok(Disposition::Review(PullRequestRef {
        repo_id: need(id_at(body, &["repository", "id"]), "repository.id")?,
        repo_name: repo_name(str_at(body, &["repository", "full_name"]))?,
        number: number(pr.get("number").or(body.get("number")), "number")?,
        head_sha: sha(str_at(pr, &["head", "sha"]), "pull_request.head.sha")?,
        base_sha: Some(sha(str_at(pr, &["base", "sha"]), "pull_request.base.sha")?),
        trigger,
    }))
}

fn gitlab(event: &str, body: &Value) -> Result<Disposition, ClassifyError> {
    let kind = str_at(body, &["object_kind"]).unwrap_or_default();
    if event != "Merge Request Hook" && kind != "merge_request" {
        return Ok(Disposition::Ignore(match kind.as_str() {
            "push" => "push_without_pull_request",
            _ => "event_not_reviewed",
        }));
    }
    let attrs = need(body.get("object_attributes"), "object_attributes")?;
    if str_at(attrs, &["state"]).is_some_and(|s| s != "opened") {
        return Ok(Disposition::Ignore("pull_request_closed"));
    }
    let draft = attrs
        .get("draft")
        .or_else(|| attrs.get("work_in_progress"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let action = str_at(attrs, &["action"]).unwrap_or_default();
    let became_ready = field(body, &["changes", "draft", "previous"]).and_then(Value::as_bool)
        == Some(true)
        && field(body, &["changes", "draft", "current"]).and_then(Value::as_bool) == Some(false);
    let trigger = match action.as_str() {
        "open" => Trigger::Opened,
        "reopen" => Trigger::Reopened,
        "update" if became_ready => Trigger::ReadyForReview,
        // Only an update that moved the source branch carries `oldrev`; title or label edits
        // do not.
        "update" if attrs.get("oldrev").is_some_and(|v| v.is_string()) => Trigger::Updated,
        "close" | "merge" => return Ok(Disposition::Ignore("pull_request_closed")),
        _ => return Ok(Disposition::Ignore("action_not_reviewed")),
    };
    if draft {
        return Ok(Disposition::Ignore("draft"));
    }
    let project = body.get("project");
    Ok(Disposition::Review(PullRequestRef {
        repo_id: need(
            project
                .and_then(|p| id_at(p, &["id"]))
                .or_else(|| id_at(attrs, &["target_project_id"])),
            "project.id",
        )?,
        repo_name: repo_name(project.and_then(|p| str_at(p, &["path_with_namespace"])))?,
        number: number(attrs.get("iid"), "object_attributes.iid")?,
        head_sha: sha(
            str_at(attrs, &["last_commit", "id"]),
            "object_attributes.last_commit.id",
        )?,
        base_sha: None,
        trigger,
    }))
}

fn bitbucket(event: &str, body: &Value) -> Result<Disposition, ClassifyError> {
    match event {
        // Cloud.
        "pullrequest:created" | "pullrequest:updated" => {
            let pr = need(body.get("pullrequest"), "pullrequest")?;
            if str_at(pr, &["state"]).is_some_and(|s| s != "OPEN") {
                return Ok(Disposition::Ignore("pull_request_closed"));
            }
            if pr.get("draft").and_then(Value::as_bool) == Some(true) {
                return Ok(Disposition::Ignore("draft"));
            }
            Ok(Disposition::Review(PullRequestRef {
                repo_id: need(
                    id_at(body, &["repository", "uuid"])
                        .or_else(|| id_at(pr, &["destination", "repository", "uuid"])),
                    "repository.uuid",
                )?,
                repo_name: repo_name(str_at(body, &["repository", "full_name"]))?,
                number: number(pr.get("id"), "pullrequest.id")?,
                head_sha: sha(
                    str_at(pr, &["source", "commit", "hash"]),
                    "pullrequest.source.commit.hash",
                )?,
                base_sha: Some(sha(
                    str_at(pr, &["destination", "commit", "hash"]),
                    "pullrequest.destination.commit.hash",
                )?),
                trigger: if event == "pullrequest:created" {
                    Trigger::Opened
                } else {
                    Trigger::Updated
                },
            }))
        }
        // Data Center.
        "pr:opened" | "pr:from_ref_updated" | "pr:reopened" => {
            let pr = need(body.get("pullRequest"), "pullRequest")?;
            if str_at(pr, &["state"]).is_some_and(|s| s != "OPEN") {
                return Ok(Disposition::Ignore("pull_request_closed"));
            }
            if pr.get("draft").and_then(Value::as_bool) == Some(true) {
                return Ok(Disposition::Ignore("draft"));
            }
            let to = need(pr.get("toRef"), "pullRequest.toRef")?;
            let project = str_at(to, &["repository", "project", "key"]);
            let slug = str_at(to, &["repository", "slug"]);
            Ok(Disposition::Review(PullRequestRef {
                repo_id: need(id_at(to, &["repository", "id"]), "toRef.repository.id")?,
                repo_name: repo_name(project.zip(slug).map(|(p, s)| format!("{p}/{s}")))?,
                number: number(pr.get("id"), "pullRequest.id")?,
                head_sha: sha(
                    str_at(pr, &["fromRef", "latestCommit"]),
                    "fromRef.latestCommit",
                )?,
                base_sha: Some(sha(str_at(to, &["latestCommit"]), "toRef.latestCommit")?),
                trigger: match event {
                    "pr:opened" => Trigger::Opened,
                    "pr:reopened" => Trigger::Reopened,
                    _ => Trigger::Updated,
                },
            }))
        }
        "diagnostics:ping" => Ok(Disposition::Ignore("ping")),
        "repo:push" | "repo:refs_changed" => Ok(Disposition::Ignore("push_without_pull_request")),
        "pullrequest:fulfilled"
        | "pullrequest:rejected"
        | "pr:merged"
        | "pr:declined"
        | "pr:deleted" => Ok(Disposition::Ignore("pull_request_closed")),
        _ => Ok(Disposition::Ignore("event_not_reviewed")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        bitbucket as bb, github as gh, gitlab as gl, sign_hex_sha256, Headers, Secrets,
    };
    use super::*;
    use serde_json::json;

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
        let Disposition::Review(r) = gh_hook("pull_request", &gh_pr("opened", false)).unwrap()
        else {
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
}
