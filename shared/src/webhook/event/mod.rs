//! What a verified delivery asks for: a review of a pull/merge request head, or nothing.
//!
//! Only pull/merge requests that are open, not drafts, and whose head just appeared (opened,
//! reopened, new commits, ready for review) trigger a review. Everything else — pings, pushes,
//! closed or merged requests, edits, labels, comments, other event types — is acknowledged and
//! recorded as ignored with a reason, so a platform's delivery log stays green.

use std::borrow::Cow;

mod payload;

use serde::{Deserialize, Serialize};

use super::{Platform, VerifiedWebhook};
use payload::{read, BitbucketBody, GitHubBody, GitLabBody, Leaf, ReadError};

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
    let json = json_payload(w)?;
    match w.platform() {
        Platform::GitHub => github(w.event(), &read(&json)?),
        Platform::GitLab => gitlab(w.event(), &read(&json)?),
        Platform::Bitbucket => bitbucket(w.event(), &read(&json)?),
    }
}

impl From<ReadError> for ClassifyError {
    fn from(e: ReadError) -> Self {
        ClassifyError(
            match e {
                ReadError::NotJson => "the webhook body is not valid JSON",
                ReadError::NotObject => "the webhook body is not a JSON object",
            }
            .into(),
        )
    }
}

fn missing(what: &str) -> ClassifyError {
    ClassifyError(format!("the payload has no valid `{what}`"))
}

fn need<T>(v: Option<T>, what: &str) -> Result<T, ClassifyError> {
    v.ok_or_else(|| missing(what))
}

/// Commit ids are hex: full (40/64) or abbreviated (Bitbucket Cloud sends 12).
fn sha(v: Option<impl AsRef<str>>, what: &str) -> Result<String, ClassifyError> {
    let v = need(v, what)?;
    let s = v.as_ref();
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

fn number(v: &Leaf, what: &str) -> Result<u64, ClassifyError> {
    need(v.as_u64().filter(|n| *n > 0), what)
}

/// A draft flag that is `true` (anything else is not a draft).
fn is_true(v: &Leaf) -> bool {
    v.as_bool() == Some(true)
}

fn github(event: &str, body: &GitHubBody) -> Result<Disposition, ClassifyError> {
    match event {
        "pull_request" => {}
        "ping" => return Ok(Disposition::Ignore("ping")),
        "push" => return Ok(Disposition::Ignore("push_without_pull_request")),
        _ => return Ok(Disposition::Ignore("event_not_reviewed")),
    }
    let action = need(body.action.as_str(), "action")?;
    let trigger = match action {
        "opened" => Trigger::Opened,
        "reopened" => Trigger::Reopened,
        "synchronize" => Trigger::Updated,
        "ready_for_review" => Trigger::ReadyForReview,
        "closed" => return Ok(Disposition::Ignore("pull_request_closed")),
        _ => return Ok(Disposition::Ignore("action_not_reviewed")),
    };
    if !body.pull_request.present {
        return Err(missing("pull_request"));
    }
    let pr = &body.pull_request.fields;
    if pr.state.as_str() == Some("closed") {
        return Ok(Disposition::Ignore("pull_request_closed"));
    }
    if is_true(&pr.draft) {
        return Ok(Disposition::Ignore("draft"));
    }
    let repo = &body.repository.fields;
    // The pull request's own number, else the event's (only when the former is absent).
    let number_leaf = if pr.number.is_missing() {
        &body.number
    } else {
        &pr.number
    };
    Ok(Disposition::Review(PullRequestRef {
        repo_id: need(repo.id.id(), "repository.id")?,
        repo_name: repo_name(repo.full_name.string())?,
        number: number(number_leaf, "number")?,
        head_sha: sha(pr.head.fields.sha.as_str(), "pull_request.head.sha")?,
        base_sha: Some(sha(pr.base.fields.sha.as_str(), "pull_request.base.sha")?),
        trigger,
    }))
}

fn gitlab(event: &str, body: &GitLabBody) -> Result<Disposition, ClassifyError> {
    let kind = body.object_kind.as_str().unwrap_or_default();
    if event != "Merge Request Hook" && kind != "merge_request" {
        return Ok(Disposition::Ignore(match kind {
            "push" => "push_without_pull_request",
            _ => "event_not_reviewed",
        }));
    }
    if !body.object_attributes.present {
        return Err(missing("object_attributes"));
    }
    let attrs = &body.object_attributes.fields;
    if attrs.state.as_str().is_some_and(|s| s != "opened") {
        return Ok(Disposition::Ignore("pull_request_closed"));
    }
    // `draft` when the key is there (whatever its value), else the older `work_in_progress`.
    let draft = if attrs.draft.is_missing() {
        is_true(&attrs.work_in_progress)
    } else {
        is_true(&attrs.draft)
    };
    let action = attrs.action.as_str().unwrap_or_default();
    let change = &body.changes.fields.draft.fields;
    let became_ready =
        change.previous.as_bool() == Some(true) && change.current.as_bool() == Some(false);
    let trigger = match action {
        "open" => Trigger::Opened,
        "reopen" => Trigger::Reopened,
        "update" if became_ready => Trigger::ReadyForReview,
        // Only an update that moved the source branch carries `oldrev`; title or label edits
        // do not.
        "update" if attrs.oldrev.as_str().is_some() => Trigger::Updated,
        "close" | "merge" => return Ok(Disposition::Ignore("pull_request_closed")),
        _ => return Ok(Disposition::Ignore("action_not_reviewed")),
    };
    if draft {
        return Ok(Disposition::Ignore("draft"));
    }
    let project = &body.project.fields;
    Ok(Disposition::Review(PullRequestRef {
        repo_id: need(
            project.id.id().or_else(|| attrs.target_project_id.id()),
            "project.id",
        )?,
        repo_name: repo_name(project.path_with_namespace.string())?,
        number: number(&attrs.iid, "object_attributes.iid")?,
        head_sha: sha(
            attrs.last_commit.fields.id.as_str(),
            "object_attributes.last_commit.id",
        )?,
        base_sha: None,
        trigger,
    }))
}

fn bitbucket(event: &str, body: &BitbucketBody) -> Result<Disposition, ClassifyError> {
    match event {
        // Cloud.
        "pullrequest:created" | "pullrequest:updated" => {
            if !body.pullrequest.present {
                return Err(missing("pullrequest"));
            }
            let pr = &body.pullrequest.fields;
            if pr.state.as_str().is_some_and(|s| s != "OPEN") {
                return Ok(Disposition::Ignore("pull_request_closed"));
            }
            if is_true(&pr.draft) {
                return Ok(Disposition::Ignore("draft"));
            }
            let repo = &body.repository.fields;
            Ok(Disposition::Review(PullRequestRef {
                repo_id: need(
                    repo.uuid
                        .id()
                        .or_else(|| pr.destination.fields.repository.fields.uuid.id()),
                    "repository.uuid",
                )?,
                repo_name: repo_name(repo.full_name.string())?,
                number: number(&pr.id, "pullrequest.id")?,
                head_sha: sha(
                    pr.source.fields.commit.fields.hash.as_str(),
                    "pullrequest.source.commit.hash",
                )?,
                base_sha: Some(sha(
                    pr.destination.fields.commit.fields.hash.as_str(),
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
            if !body.pull_request.present {
                return Err(missing("pullRequest"));
            }
            let pr = &body.pull_request.fields;
            if pr.state.as_str().is_some_and(|s| s != "OPEN") {
                return Ok(Disposition::Ignore("pull_request_closed"));
            }
            if is_true(&pr.draft) {
                return Ok(Disposition::Ignore("draft"));
            }
            if !pr.to_ref.present {
                return Err(missing("pullRequest.toRef"));
            }
            let to = &pr.to_ref.fields;
            let project = to.repository.fields.project.fields.key.as_str();
            let slug = to.repository.fields.slug.as_str();
            Ok(Disposition::Review(PullRequestRef {
                repo_id: need(to.repository.fields.id.id(), "toRef.repository.id")?,
                repo_name: repo_name(project.zip(slug).map(|(p, s)| format!("{p}/{s}")))?,
                number: number(&pr.id, "pullRequest.id")?,
                head_sha: sha(
                    pr.from_ref.fields.latest_commit.as_str(),
                    "fromRef.latestCommit",
                )?,
                base_sha: Some(sha(to.latest_commit.as_str(), "toRef.latestCommit")?),
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
mod reference;
#[cfg(test)]
mod tests;
