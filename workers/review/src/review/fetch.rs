//! Fetching: the pull request's commits, its changed files with their diffs, the repository's
//! `.edgeplaneignore` (read at the base commit, so a pull request cannot exempt itself), and
//! the full text of each file worth reviewing (for retrieval). All of it stays in memory, each
//! answer capped by its call's limit. A file whose contents the platform will not serve (404:
//! gone at the head; 403: GitHub's answer for files over 100 MB) or that is over the size a
//! review reads is skipped and named; it does not fail the review.

use edgeplane_core::review::diff::FileDiff;
use edgeplane_core::review::http::{classify_status, Failure};
use edgeplane_core::review::ignore::IgnoreFile;
use edgeplane_core::review::platform::{
    parse_diff_page, parse_pull_request, PullRequestInfo, MAX_PAGES,
};
use edgeplane_core::review::select::{self, SkipReason, MAX_FILES};

use super::job::{upstream, Job, Stop};
use crate::net::NetError;

/// At most this many files are fetched in full for retrieval (each is one subrequest).
const MAX_CONTENT_FILES: usize = 60;

pub struct Selected {
    pub diff: FileDiff,
    /// The file at the head commit, when fetched.
    pub content: Option<String>,
}

pub struct Fetched {
    pub info: PullRequestInfo,
    pub selected: Vec<Selected>,
    pub skipped: Vec<(String, SkipReason)>,
}

/// Bitbucket Cloud abbreviates commit ids: compare on the common prefix.
fn same_commit(a: &str, b: &str) -> bool {
    let n = a.len().min(b.len());
    n >= 7 && a[..n].eq_ignore_ascii_case(&b[..n])
}

pub async fn fetch(job: &Job) -> Result<Fetched, Stop> {
    let t = job.target();
    let who = job.platform_name();
    let resp = upstream(
        who,
        "the pull request",
        job.platform(&t.pull_request()).await,
    )?;
    let info = parse_pull_request(job.api, &resp.body).map_err(Stop::Permanent)?;
    if !info.open {
        return Err(Stop::Skip("pull_request_closed"));
    }
    if !same_commit(&info.head_sha, &job.row.head_sha) {
        // The pull request moved on; the newer head has (or will get) its own review.
        return Err(Stop::Skip("stale_head"));
    }

    let mut files = Vec::new();
    for page in 1..=MAX_PAGES {
        let resp = upstream(
            who,
            "the changed files",
            job.platform(&t.diff_page(page)).await,
        )?;
        let p = parse_diff_page(job.api, &resp.body)
            .map_err(|e| Stop::Permanent(format!("{who} diff: {e}")))?;
        files.extend(p.files);
        if !p.more {
            break;
        }
    }

    let ignore = match job
        .platform(&t.raw_file(".edgeplaneignore", &info.base_sha))
        .await
    {
        Ok(r) if r.ok() => IgnoreFile::parse(&String::from_utf8_lossy(&r.body)),
        Ok(r) if r.status == 404 => IgnoreFile::default(),
        other => {
            upstream(who, "the ignore file", other)?;
            IgnoreFile::default()
        }
    };

    let mut selected = Vec::new();
    let mut skipped = Vec::new();
    for (diff, platform_skip) in files {
        // The ignore file first: it is the org's explicit say, and names the reason it gives.
        let reason = select::by_path(&diff.path, &ignore)
            .or(platform_skip)
            .or_else(|| select::by_diff(&diff))
            .or_else(|| (selected.len() >= MAX_FILES).then_some(SkipReason::TooManyFiles));
        match reason {
            Some(r) => skipped.push((diff.path.clone(), r)),
            None => selected.push(Selected {
                diff,
                content: None,
            }),
        }
    }

    // Full contents, for retrieval and for the content-based checks.
    let mut keep = Vec::with_capacity(selected.len());
    for (i, mut s) in selected.into_iter().enumerate() {
        if i < MAX_CONTENT_FILES {
            match job
                .platform(&t.raw_file(&s.diff.path, &info.head_sha))
                .await
            {
                Ok(r) if r.ok() => {
                    if let Some(reason) = select::by_content(&r.body) {
                        skipped.push((s.diff.path.clone(), reason));
                        continue;
                    }
                    s.content = Some(String::from_utf8_lossy(&r.body).into_owned());
                }
                Ok(r) if r.status == 404 => {}
                // Refused for this file alone (a 403 with Retry-After is a rate limit: retried).
                Ok(r)
                    if r.status == 403
                        && classify_status(r.status, r.retry_after) == Failure::Permanent =>
                {
                    skipped.push((s.diff.path.clone(), SkipReason::Unreadable));
                    continue;
                }
                Err(NetError::TooLarge { .. }) => {
                    skipped.push((s.diff.path.clone(), SkipReason::TooLarge));
                    continue;
                }
                other => {
                    upstream(who, "a file's content", other)?;
                }
            }
        }
        keep.push(s);
    }
    Ok(Fetched {
        info,
        selected: keep,
        skipped,
    })
}
