//! The classifier as it was first written, over a `serde_json::Value` tree: the oracle the
//! typed classifier is checked against (`tests.rs`), so reading only the fields it needs changed
//! no decision.

use serde_json::Value;

use super::{
    json_payload, need, repo_name, sha, ClassifyError, Disposition, PullRequestRef, Trigger,
};
use crate::webhook::{Platform, VerifiedWebhook};

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
