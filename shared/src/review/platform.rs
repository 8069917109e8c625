//! Git platform REST wire formats: GitHub (cloud and Enterprise Server), GitLab (cloud and
//! self-managed), Bitbucket Cloud (2.0 API) and Bitbucket Data Center (1.0 API). Requests are
//! built as [`Call`]s relative to the integration's API base URL; the token is added by the
//! worker with [`auth_header`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::review::config::PlatformApi;
use crate::review::diff::{parse_hunks, parse_unified, FileDiff, FileStatus, LineKind, Side};
use crate::review::findings::Finding;
use crate::review::http::{encode_path, encode_segment, Call};
use crate::review::select::{SkipReason, MAX_FILE_BYTES};

pub const PAGE_SIZE: usize = 100;
/// Most pages of changed files fetched (GitHub itself lists at most 3000 files).
pub const MAX_PAGES: u32 = 30;
/// The most one page of changed files (or Bitbucket's whole diff) may hold: a hundred files
/// with patches of up to `select::MAX_PATCH_LINES` lines.
pub const DIFF_RESPONSE_LIMIT: usize = 16 * 1024 * 1024;
/// The most the list of existing comments (searched for this review's marker) may hold.
pub const COMMENTS_RESPONSE_LIMIT: usize = 8 * 1024 * 1024;

/// GitHub, GitLab and Bitbucket access tokens are bearer tokens; Bitbucket app passwords are
/// configured as `username:app_password` and sent with Basic authentication.
pub fn auth_header(api: PlatformApi, token: &str) -> (&'static str, String) {
    match api {
        PlatformApi::BitbucketCloud | PlatformApi::BitbucketDataCenter if token.contains(':') => {
            ("authorization", format!("Basic {}", STANDARD.encode(token)))
        }
        _ => ("authorization", format!("Bearer {token}")),
    }
}

/// One pull/merge request on one platform.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub api: PlatformApi,
    pub base_url: &'a str,
    pub repo_id: &'a str,
    pub repo_name: &'a str,
    pub number: u64,
}

/// The commits a review is pinned to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PullRequestInfo {
    pub head_sha: String,
    pub base_sha: String,
    /// GitLab's `start_sha` (where the source branch forked), needed for positions.
    pub start_sha: Option<String>,
    pub title: String,
    pub open: bool,
}

/// Where on the diff a finding attaches: enough to place a comment without keeping the diff.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Anchor {
    pub path: String,
    pub old_path: String,
    pub kind: LineKind,
    pub old: Option<u32>,
    pub new: Option<u32>,
}

impl Anchor {
    pub fn of(file: &FileDiff, f: &Finding) -> Option<Self> {
        let (_, line) = file.locate(f.side, f.line)?;
        Some(Self {
            path: file.path.clone(),
            old_path: file.old_path().to_owned(),
            kind: line.kind,
            old: line.old,
            new: line.new,
        })
    }
}

fn with_headers(api: PlatformApi, c: Call) -> Call {
    let c = c.header("user-agent", "edgeplane-review");
    match api {
        PlatformApi::GitHub => c
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28"),
        _ => c.header("accept", "application/json"),
    }
}

impl Target<'_> {
    fn repo(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        match self.api {
            PlatformApi::GitHub => format!("{base}/repos/{}", encode_path(self.repo_name)),
            PlatformApi::GitLab => format!("{base}/projects/{}", encode_segment(self.repo_id)),
            PlatformApi::BitbucketCloud => {
                format!("{base}/repositories/{}", encode_path(self.repo_name))
            }
            PlatformApi::BitbucketDataCenter => {
                let (project, slug) = self
                    .repo_name
                    .split_once('/')
                    .unwrap_or((self.repo_name, ""));
                format!(
                    "{base}/projects/{}/repos/{}",
                    encode_segment(project),
                    encode_segment(slug)
                )
            }
        }
    }

    fn pr(&self) -> String {
        let n = self.number;
        match self.api {
            PlatformApi::GitHub => format!("{}/pulls/{n}", self.repo()),
            PlatformApi::GitLab => format!("{}/merge_requests/{n}", self.repo()),
            PlatformApi::BitbucketCloud => format!("{}/pullrequests/{n}", self.repo()),
            PlatformApi::BitbucketDataCenter => format!("{}/pull-requests/{n}", self.repo()),
        }
    }

    pub fn pull_request(&self) -> Call {
        with_headers(self.api, Call::get(self.pr()))
    }

    /// One page of changed files (GitHub, GitLab) or the whole diff (Bitbucket, `page` 1 only).
    pub fn diff_page(&self, page: u32) -> Call {
        let url = match self.api {
            PlatformApi::GitHub => format!("{}/files?per_page={PAGE_SIZE}&page={page}", self.pr()),
            PlatformApi::GitLab => format!("{}/diffs?per_page={PAGE_SIZE}&page={page}", self.pr()),
            PlatformApi::BitbucketCloud => format!("{}/diff", self.pr()),
            PlatformApi::BitbucketDataCenter => format!("{}.diff", self.pr()),
        };
        let c = with_headers(self.api, Call::get(url)).response_limit(DIFF_RESPONSE_LIMIT);
        match self.api {
            PlatformApi::BitbucketCloud | PlatformApi::BitbucketDataCenter => {
                c.header("accept", "text/plain")
            }
            _ => c,
        }
    }

    /// A file's raw bytes at a commit. A file longer than [`MAX_FILE_BYTES`] is not reviewed,
    /// so no more than that is read.
    pub fn raw_file(&self, path: &str, sha: &str) -> Call {
        let url = match self.api {
            PlatformApi::GitHub => format!(
                "{}/contents/{}?ref={}",
                self.repo(),
                encode_path(path),
                encode_segment(sha)
            ),
            PlatformApi::GitLab => format!(
                "{}/repository/files/{}/raw?ref={}",
                self.repo(),
                encode_segment(path),
                encode_segment(sha)
            ),
            PlatformApi::BitbucketCloud => format!(
                "{}/src/{}/{}",
                self.repo(),
                encode_segment(sha),
                encode_path(path)
            ),
            PlatformApi::BitbucketDataCenter => format!(
                "{}/raw/{}?at={}",
                self.repo(),
                encode_path(path),
                encode_segment(sha)
            ),
        };
        let c = Call::get(url)
            .header("user-agent", "edgeplane-review")
            .response_limit(MAX_FILE_BYTES);
        match self.api {
            PlatformApi::GitHub => c
                .header("accept", "application/vnd.github.raw+json")
                .header("x-github-api-version", "2022-11-28"),
            _ => c,
        }
    }

    /// What was already posted on the pull request (to find this review's marker on a retry).
    pub fn existing_comments(&self) -> Call {
        let url = match self.api {
            PlatformApi::GitHub => format!("{}/reviews?per_page=100", self.pr()),
            PlatformApi::GitLab => format!("{}/notes?per_page=100&sort=desc", self.pr()),
            PlatformApi::BitbucketCloud => format!("{}/comments?pagelen=100", self.pr()),
            PlatformApi::BitbucketDataCenter => format!("{}/activities?limit=100", self.pr()),
        };
        with_headers(self.api, Call::get(url)).response_limit(COMMENTS_RESPONSE_LIMIT)
    }

    /// GitHub: one review holding the summary and every inline comment.
    pub fn github_review(
        &self,
        head_sha: &str,
        summary: &str,
        comments: &[(&Finding, String)],
    ) -> Call {
        let comments: Vec<Value> = comments
            .iter()
            .map(|(f, body)| {
                let mut c =
                    json!({"path": f.path, "line": f.line, "side": f.side.as_str(), "body": body});
                if let Some(s) = f.start_line {
                    c["start_line"] = json!(s);
                    c["start_side"] = json!(f.side.as_str());
                }
                c
            })
            .collect();
        with_headers(
            self.api,
            Call::post_json(
                format!("{}/reviews", self.pr()),
                &json!({"commit_id": head_sha, "body": summary, "event": "COMMENT", "comments": comments}),
            ),
        )
    }

    /// GitLab, Bitbucket: one inline comment anchored at the finding's line.
    pub fn inline_comment(
        &self,
        info: &PullRequestInfo,
        at: &Anchor,
        f: &Finding,
        body: &str,
    ) -> Option<Call> {
        let call = match self.api {
            PlatformApi::GitHub => return None,
            PlatformApi::GitLab => {
                let mut position = json!({
                    "position_type": "text",
                    "base_sha": info.base_sha,
                    "start_sha": info.start_sha.as_deref().unwrap_or(&info.base_sha),
                    "head_sha": info.head_sha,
                    "old_path": at.old_path,
                    "new_path": at.path,
                });
                // Unchanged lines need both numbers; added lines only the new, removed the old.
                if let Some(n) = at.new {
                    position["new_line"] = json!(n);
                }
                if let Some(o) = at.old {
                    position["old_line"] = json!(o);
                }
                Call::post_json(
                    format!("{}/discussions", self.pr()),
                    &json!({"body": body, "position": position}),
                )
            }
            PlatformApi::BitbucketCloud => {
                let inline = match f.side {
                    Side::Right => json!({"path": at.path, "to": f.line}),
                    Side::Left => json!({"path": at.old_path, "from": f.line}),
                };
                Call::post_json(
                    format!("{}/comments", self.pr()),
                    &json!({"content": {"raw": body}, "inline": inline}),
                )
            }
            PlatformApi::BitbucketDataCenter => {
                let line_type = match at.kind {
                    LineKind::Added => "ADDED",
                    LineKind::Removed => "REMOVED",
                    LineKind::Context => "CONTEXT",
                };
                let file_type = match f.side {
                    Side::Right => "TO",
                    Side::Left => "FROM",
                };
                let mut anchor = json!({
                    "path": at.path, "line": f.line, "lineType": line_type, "fileType": file_type,
                    "diffType": "EFFECTIVE", "fromHash": info.base_sha, "toHash": info.head_sha,
                });
                if at.old_path != at.path {
                    anchor["srcPath"] = json!(at.old_path);
                }
                Call::post_json(
                    format!("{}/comments", self.pr()),
                    &json!({"text": body, "anchor": anchor}),
                )
            }
        };
        Some(with_headers(self.api, call))
    }

    /// GitLab, Bitbucket: the summary as a general (not inline) comment.
    pub fn summary_comment(&self, body: &str) -> Call {
        let (url, payload) = match self.api {
            PlatformApi::GitHub => (
                format!("{}/reviews", self.pr()),
                json!({"body": body, "event": "COMMENT"}),
            ),
            PlatformApi::GitLab => (format!("{}/notes", self.pr()), json!({"body": body})),
            PlatformApi::BitbucketCloud => (
                format!("{}/comments", self.pr()),
                json!({"content": {"raw": body}}),
            ),
            PlatformApi::BitbucketDataCenter => {
                (format!("{}/comments", self.pr()), json!({"text": body}))
            }
        };
        with_headers(self.api, Call::post_json(url, &payload))
    }
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))?
        .as_str()
        .map(str::to_owned)
}

pub fn parse_pull_request(api: PlatformApi, body: &[u8]) -> Result<PullRequestInfo, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| "the pull request response is not JSON".to_owned())?;
    let need =
        |s: Option<String>, what: &str| s.ok_or_else(|| format!("the pull request has no {what}"));
    let title = str_at(&v, &["title"]).unwrap_or_default();
    Ok(match api {
        PlatformApi::GitHub => PullRequestInfo {
            head_sha: need(str_at(&v, &["head", "sha"]), "head.sha")?,
            base_sha: need(str_at(&v, &["base", "sha"]), "base.sha")?,
            start_sha: None,
            open: str_at(&v, &["state"]).as_deref() == Some("open"),
            title,
        },
        PlatformApi::GitLab => PullRequestInfo {
            head_sha: need(
                str_at(&v, &["diff_refs", "head_sha"]).or_else(|| str_at(&v, &["sha"])),
                "diff_refs.head_sha",
            )?,
            base_sha: need(str_at(&v, &["diff_refs", "base_sha"]), "diff_refs.base_sha")?,
            start_sha: str_at(&v, &["diff_refs", "start_sha"]),
            open: str_at(&v, &["state"]).as_deref() == Some("opened"),
            title,
        },
        PlatformApi::BitbucketCloud => PullRequestInfo {
            head_sha: need(
                str_at(&v, &["source", "commit", "hash"]),
                "source.commit.hash",
            )?,
            base_sha: need(
                str_at(&v, &["destination", "commit", "hash"]),
                "destination.commit.hash",
            )?,
            start_sha: None,
            open: str_at(&v, &["state"]).as_deref() == Some("OPEN"),
            title,
        },
        PlatformApi::BitbucketDataCenter => PullRequestInfo {
            head_sha: need(
                str_at(&v, &["fromRef", "latestCommit"]),
                "fromRef.latestCommit",
            )?,
            base_sha: need(str_at(&v, &["toRef", "latestCommit"]), "toRef.latestCommit")?,
            start_sha: None,
            open: str_at(&v, &["state"]).as_deref() == Some("OPEN"),
            title,
        },
    })
}

/// Changed files of one page, each with a skip the platform already decided (binary, too
/// large, generated), and whether another page may follow.
pub struct DiffPage {
    pub files: Vec<(FileDiff, Option<SkipReason>)>,
    pub more: bool,
}

pub fn parse_diff_page(api: PlatformApi, body: &[u8]) -> Result<DiffPage, String> {
    match api {
        PlatformApi::GitHub => {
            let v: Value = serde_json::from_slice(body)
                .map_err(|_| "the files response is not JSON".to_owned())?;
            let items = v.as_array().ok_or("the files response is not a list")?;
            let mut files = Vec::new();
            for it in items {
                let path = str_at(it, &["filename"]).ok_or("a file has no filename")?;
                let status = match str_at(it, &["status"]).as_deref() {
                    Some("added") => FileStatus::Added,
                    Some("removed") => FileStatus::Removed,
                    Some("renamed") => FileStatus::Renamed,
                    _ => FileStatus::Modified,
                };
                let patch = str_at(it, &["patch"]);
                let changes = it.get("changes").and_then(Value::as_u64).unwrap_or(0);
                // GitHub omits `patch` for binary files and for diffs too large to show.
                let skip = match (&patch, changes) {
                    (None, 0) => Some(SkipReason::Binary),
                    (None, _) => Some(SkipReason::TooLarge),
                    _ => None,
                };
                let hunks = patch
                    .as_deref()
                    .map(parse_hunks)
                    .transpose()
                    .map_err(|e| e.0)?
                    .unwrap_or_default();
                files.push((
                    FileDiff {
                        old_path: str_at(it, &["previous_filename"]),
                        path,
                        status,
                        binary: false,
                        hunks,
                    },
                    skip,
                ));
            }
            Ok(DiffPage {
                more: items.len() >= PAGE_SIZE,
                files,
            })
        }
        PlatformApi::GitLab => {
            let v: Value = serde_json::from_slice(body)
                .map_err(|_| "the diffs response is not JSON".to_owned())?;
            let items = v.as_array().ok_or("the diffs response is not a list")?;
            let mut files = Vec::new();
            for it in items {
                let flag = |k: &str| it.get(k).and_then(Value::as_bool).unwrap_or(false);
                let new_path = str_at(it, &["new_path"]).ok_or("a diff has no new_path")?;
                let old_path = str_at(it, &["old_path"]).filter(|o| *o != new_path);
                let status = if flag("new_file") {
                    FileStatus::Added
                } else if flag("deleted_file") {
                    FileStatus::Removed
                } else if flag("renamed_file") {
                    FileStatus::Renamed
                } else {
                    FileStatus::Modified
                };
                let diff = str_at(it, &["diff"]).unwrap_or_default();
                let binary = diff.starts_with("Binary files");
                let skip = if flag("too_large") || flag("collapsed") {
                    Some(SkipReason::TooLarge)
                } else if flag("generated_file") {
                    Some(SkipReason::Generated)
                } else {
                    None
                };
                let path = if status == FileStatus::Removed {
                    old_path.clone().unwrap_or(new_path)
                } else {
                    new_path
                };
                files.push((
                    FileDiff {
                        path,
                        old_path,
                        status,
                        binary,
                        hunks: parse_hunks(&diff).map_err(|e| e.0)?,
                    },
                    skip,
                ));
            }
            Ok(DiffPage {
                more: items.len() >= PAGE_SIZE,
                files,
            })
        }
        PlatformApi::BitbucketCloud | PlatformApi::BitbucketDataCenter => {
            let text = String::from_utf8_lossy(body);
            let files = parse_unified(&text).map_err(|e| e.0)?;
            Ok(DiffPage {
                files: files.into_iter().map(|f| (f, None)).collect(),
                more: false,
            })
        }
    }
}

/// The id of what a POST created (review, discussion, note or comment).
pub fn parse_created_id(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    match v.get("id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The text bodies of existing reviews or comments.
pub fn parse_existing_bodies(api: PlatformApi, body: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let items: Vec<Value> = match api {
        PlatformApi::GitHub | PlatformApi::GitLab => v.as_array().cloned().unwrap_or_default(),
        PlatformApi::BitbucketCloud | PlatformApi::BitbucketDataCenter => v
            .get("values")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    };
    items
        .iter()
        .filter_map(|it| match api {
            PlatformApi::GitHub | PlatformApi::GitLab => str_at(it, &["body"]),
            PlatformApi::BitbucketCloud => str_at(it, &["content", "raw"]),
            PlatformApi::BitbucketDataCenter => str_at(it, &["comment", "text"]),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::findings::Severity;

    fn t(api: PlatformApi, base: &'static str) -> Target<'static> {
        Target {
            api,
            base_url: base,
            repo_id: "15",
            repo_name: "grp/my repo",
            number: 7,
        }
    }

    #[test]
    fn every_call_caps_what_it_reads() {
        use crate::review::config::ProviderKind;
        use crate::review::http::DEFAULT_RESPONSE_LIMIT;
        use crate::review::provider;
        for api in [
            PlatformApi::GitHub,
            PlatformApi::GitLab,
            PlatformApi::BitbucketCloud,
            PlatformApi::BitbucketDataCenter,
        ] {
            let t = t(api, "https://x.example");
            assert_eq!(t.raw_file("a.rs", "abc").response_limit, MAX_FILE_BYTES);
            assert_eq!(t.diff_page(1).response_limit, DIFF_RESPONSE_LIMIT);
            assert_eq!(
                t.existing_comments().response_limit,
                COMMENTS_RESPONSE_LIMIT
            );
            assert_eq!(t.pull_request().response_limit, DEFAULT_RESPONSE_LIMIT);
            assert_eq!(
                t.summary_comment("s").response_limit,
                DEFAULT_RESPONSE_LIMIT
            );
        }
        for kind in ProviderKind::ALL {
            let chat = provider::chat(kind, "https://p.example", "m", "s", "u", 100);
            assert_eq!(chat.response_limit, provider::CHAT_RESPONSE_LIMIT);
            if let Some(e) = provider::embeddings(kind, "https://p.example", "m", &["x"]) {
                assert_eq!(e.response_limit, provider::EMBEDDINGS_RESPONSE_LIMIT);
            }
        }
    }

    #[test]
    fn urls_per_platform() {
        assert_eq!(
            t(PlatformApi::GitHub, "https://api.github.com")
                .diff_page(2)
                .url,
            "https://api.github.com/repos/grp/my%20repo/pulls/7/files?per_page=100&page=2"
        );
        assert_eq!(
            t(PlatformApi::GitLab, "https://gitlab.com/api/v4")
                .pull_request()
                .url,
            "https://gitlab.com/api/v4/projects/15/merge_requests/7"
        );
        assert_eq!(
            t(PlatformApi::GitLab, "https://gitlab.com/api/v4")
                .raw_file("src/a b.rs", "abc")
                .url,
            "https://gitlab.com/api/v4/projects/15/repository/files/src%2Fa%20b.rs/raw?ref=abc"
        );
        assert_eq!(
            t(PlatformApi::BitbucketCloud, "https://api.bitbucket.org/2.0")
                .raw_file("src/x.rs", "abc")
                .url,
            "https://api.bitbucket.org/2.0/repositories/grp/my%20repo/src/abc/src/x.rs"
        );
        assert_eq!(
            t(
                PlatformApi::BitbucketDataCenter,
                "https://bb.example.com/rest/api/1.0"
            )
            .diff_page(1)
            .url,
            "https://bb.example.com/rest/api/1.0/projects/grp/repos/my%20repo/pull-requests/7.diff"
        );
        assert_eq!(
            auth_header(PlatformApi::BitbucketCloud, "me:app-pass").1,
            format!("Basic {}", STANDARD.encode("me:app-pass"))
        );
        assert_eq!(auth_header(PlatformApi::GitHub, "ghs_x").1, "Bearer ghs_x");
    }

    #[test]
    fn github_files_and_review() {
        let body = serde_json::to_vec(&json!([
            {"filename": "src/a.rs", "status": "modified", "changes": 2, "patch": "@@ -1,2 +1,2 @@\n-a\n+b\n c"},
            {"filename": "logo.png", "status": "added", "changes": 0},
            {"filename": "big.sql", "status": "modified", "changes": 90000},
            {"filename": "new.rs", "previous_filename": "old.rs", "status": "renamed", "changes": 0, "patch": ""}
        ])).unwrap();
        let page = parse_diff_page(PlatformApi::GitHub, &body).unwrap();
        assert!(!page.more);
        assert_eq!(page.files[0].0.hunks[0].lines.len(), 3);
        assert_eq!(page.files[1].1, Some(SkipReason::Binary));
        assert_eq!(page.files[2].1, Some(SkipReason::TooLarge));
        assert_eq!(page.files[3].0.old_path.as_deref(), Some("old.rs"));
        let f = Finding {
            path: "src/a.rs".into(),
            line: 2,
            side: Side::Right,
            start_line: Some(1),
            severity: Severity::High,
            title: "t".into(),
            body: "b".into(),
        };
        let c = t(PlatformApi::GitHub, "https://api.github.com").github_review(
            "abc",
            "sum",
            &[(&f, "body".into())],
        );
        let v: Value = serde_json::from_str(c.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            v["comments"][0],
            json!({"path": "src/a.rs", "line": 2, "side": "RIGHT", "start_line": 1, "start_side": "RIGHT", "body": "body"})
        );
        assert_eq!(v["event"], "COMMENT");
        assert_eq!(v["commit_id"], "abc");
    }

    #[test]
    fn gitlab_positions_carry_both_lines_for_context() {
        let file = FileDiff {
            path: "a.rs".into(),
            old_path: None,
            status: FileStatus::Modified,
            binary: false,
            hunks: parse_hunks("@@ -10,3 +10,3 @@\n ctx\n-old\n+new\n").unwrap(),
        };
        let info = PullRequestInfo {
            head_sha: "h".into(),
            base_sha: "b".into(),
            start_sha: Some("s".into()),
            title: String::new(),
            open: true,
        };
        let tg = t(PlatformApi::GitLab, "https://gitlab.com/api/v4");
        let mk = |line, side| Finding {
            path: "a.rs".into(),
            line,
            side,
            start_line: None,
            severity: Severity::Low,
            title: "t".into(),
            body: "b".into(),
        };
        let at = |f: &Finding| Anchor::of(&file, f).unwrap();
        let pos = |c: Call| {
            serde_json::from_str::<Value>(c.body.as_deref().unwrap()).unwrap()["position"].clone()
        };
        let p = pos(tg
            .inline_comment(&info, &at(&mk(10, Side::Right)), &mk(10, Side::Right), "x")
            .unwrap());
        assert_eq!(
            (p["new_line"].as_u64(), p["old_line"].as_u64()),
            (Some(10), Some(10))
        );
        let p = pos(tg
            .inline_comment(&info, &at(&mk(11, Side::Right)), &mk(11, Side::Right), "x")
            .unwrap());
        assert_eq!(
            (p["new_line"].as_u64(), p.get("old_line")),
            (Some(11), None)
        );
        let p = pos(tg
            .inline_comment(&info, &at(&mk(11, Side::Left)), &mk(11, Side::Left), "x")
            .unwrap());
        assert_eq!(
            (p.get("new_line"), p["old_line"].as_u64()),
            (None, Some(11))
        );
        assert_eq!(
            (
                p["base_sha"].as_str(),
                p["start_sha"].as_str(),
                p["head_sha"].as_str()
            ),
            (Some("b"), Some("s"), Some("h"))
        );
        let dc = t(PlatformApi::BitbucketDataCenter, "https://bb/rest/api/1.0")
            .inline_comment(&info, &at(&mk(11, Side::Left)), &mk(11, Side::Left), "x")
            .unwrap();
        let v: Value = serde_json::from_str(dc.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            (
                v["anchor"]["lineType"].as_str(),
                v["anchor"]["fileType"].as_str()
            ),
            (Some("REMOVED"), Some("FROM"))
        );
        let bb = t(PlatformApi::BitbucketCloud, "https://api.bitbucket.org/2.0")
            .inline_comment(&info, &at(&mk(11, Side::Right)), &mk(11, Side::Right), "x")
            .unwrap();
        assert!(bb.body.as_deref().unwrap().contains("\"to\":11"));
        assert!(Anchor::of(&file, &mk(30, Side::Right)).is_none());
    }

    #[test]
    fn pull_request_and_existing_parsing() {
        let gl = br#"{"iid":7,"state":"opened","title":"T","sha":"h","diff_refs":{"base_sha":"b","head_sha":"h","start_sha":"s"}}"#;
        let i = parse_pull_request(PlatformApi::GitLab, gl).unwrap();
        assert_eq!(
            (i.base_sha.as_str(), i.start_sha.as_deref(), i.open),
            ("b", Some("s"), true)
        );
        let bb = br#"{"values":[{"content":{"raw":"hello <!-- m -->"}}]}"#;
        assert_eq!(
            parse_existing_bodies(PlatformApi::BitbucketCloud, bb),
            vec!["hello <!-- m -->"]
        );
        assert_eq!(parse_created_id(br#"{"id": 42}"#).as_deref(), Some("42"));
        assert_eq!(
            parse_created_id(br#"{"id": "abc"}"#).as_deref(),
            Some("abc")
        );
    }
}
