//! Commenting: one review per head commit. GitHub takes the summary and every inline comment in
//! a single "create review" call (the positions are recorded once it succeeded); GitLab and
//! Bitbucket take one call per comment, each recorded as it lands so a retry resumes where it
//! stopped. A comment the platform refuses (400/422:
//! the line moved, the position is invalid) is folded into the summary instead of being lost.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::review::config::PlatformApi;
use edgeplane_core::review::findings::Finding;
use edgeplane_core::review::platform::{parse_created_id, parse_existing_bodies};
use edgeplane_core::review::render::{self, NotReviewed, Summary};
use edgeplane_core::review::status::{CommentState, ReviewStatus};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::audit::commit_with_facts;
use edgeplane_runtime::clock::now_ms;
use edgeplane_runtime::db::{DbError, OrgBatch};
use serde::Deserialize;

use super::job::{facts, upstream, Job, Stop, Work};
use super::store;

const REJECTED: &[u16] = &[400, 404, 409, 422];

fn summary_text(job: &Job, work: &Work, fallback: &[&Finding]) -> String {
    let nr: Vec<NotReviewed<'_>> = work
        .not_reviewed
        .iter()
        .map(|(p, r)| NotReviewed {
            path: p,
            reason: r.describe(),
        })
        .collect();
    render::summary(&Summary {
        review_id: &job.row.id,
        model_summary: &work.summary,
        findings: &work.findings,
        fallback,
        not_reviewed: &nr,
        dropped: work.dropped,
    })
}

/// Whether this review's summary is already on the pull request (a previous attempt posted it
/// but did not live to record it).
async fn already_posted(job: &Job) -> Result<bool, Stop> {
    let resp = upstream(
        job.platform_name(),
        "existing comments",
        job.platform(&job.target().existing_comments()).await,
    )?;
    let marker = render::marker(&job.row.id);
    Ok(parse_existing_bodies(job.api, &resp.body)
        .iter()
        .any(|b| b.contains(&marker)))
}

#[derive(Deserialize)]
struct Done {
    idx: i64,
    state: CommentState,
}

/// Inline comments earlier attempts already placed (or folded into the summary).
async fn recorded_comments(job: &Job) -> Result<Vec<Done>, Stop> {
    Ok(job
        .db
        .all(
            "SELECT idx, state FROM review_comments WHERE review_id = ?",
            args![&job.row.id],
        )
        .await?)
}

/// Records where every finding of a GitHub review went: GitHub takes them all in one call, so
/// nothing was recorded comment by comment. Positions only, like the other platforms' rows;
/// they are what the review's findings listing shows.
async fn record_all(job: &Job, work: &Work, state: CommentState) -> Result<(), Stop> {
    for (i, f) in work.findings.iter().enumerate() {
        job.db
            .run_unaudited(
                "INSERT OR IGNORE INTO review_comments (review_id, idx, path, line, side, state, platform_comment_id, created_at_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                args![&job.row.id, i as i64, &f.path, i64::from(f.line), f.side.as_str(), state.as_str(), now_ms()],
            )
            .await?;
    }
    Ok(())
}

pub async fn post(job: &Job, work: &Work, resuming: bool) -> Result<(), Stop> {
    if !store::is_active(&job.db, &job.row.id).await? {
        return Err(Stop::Gone);
    }
    let t = job.target();
    let who = job.platform_name();
    let (posted, fallback_count, platform_id) = if resuming && already_posted(job).await? {
        let rows = recorded_comments(job).await?;
        let posted = rows
            .iter()
            .filter(|d| d.state == CommentState::Posted)
            .count();
        (posted, work.findings.len().saturating_sub(posted), None)
    } else if job.api == PlatformApi::GitHub {
        let bodies: Vec<String> = work.findings.iter().map(render::comment_body).collect();
        let comments: Vec<(&Finding, String)> = work.findings.iter().zip(bodies).collect();
        let call = t.github_review(
            &work.info.head_sha,
            &summary_text(job, work, &[]),
            &comments,
        );
        match job.platform(&call).await {
            Ok(r) if REJECTED.contains(&r.status) && !work.findings.is_empty() => {
                // GitHub refuses the whole review when one comment cannot be placed: post the
                // findings in the summary rather than lose them.
                let all: Vec<&Finding> = work.findings.iter().collect();
                let call =
                    t.github_review(&work.info.head_sha, &summary_text(job, work, &all), &[]);
                let r = upstream(
                    who,
                    "the review (summary fallback)",
                    job.platform(&call).await,
                )?;
                record_all(job, work, CommentState::Fallback).await?;
                (0, all.len(), parse_created_id(&r.body))
            }
            other => {
                let r = upstream(who, "the review", other)?;
                record_all(job, work, CommentState::Posted).await?;
                (work.findings.len(), 0, parse_created_id(&r.body))
            }
        }
    } else {
        let rows = recorded_comments(job).await?;
        let mut fallback_idx: Vec<usize> = rows
            .iter()
            .filter(|d| d.state == CommentState::Fallback)
            .map(|d| d.idx as usize)
            .collect();
        let mut posted = rows
            .iter()
            .filter(|d| d.state == CommentState::Posted)
            .count();
        for (i, (f, at)) in work.findings.iter().zip(&work.anchors).enumerate() {
            if rows.iter().any(|d| d.idx as usize == i) {
                continue;
            }
            let Some(call) = t.inline_comment(&work.info, at, f, &render::comment_body(f)) else {
                continue;
            };
            let (state, id) = match job.platform(&call).await {
                Ok(r) if r.ok() => (CommentState::Posted, parse_created_id(&r.body)),
                Ok(r) if REJECTED.contains(&r.status) => (CommentState::Fallback, None),
                other => {
                    upstream(who, "an inline comment", other)?;
                    continue;
                }
            };
            job.db
                .run_unaudited(
                    "INSERT OR IGNORE INTO review_comments (review_id, idx, path, line, side, state, platform_comment_id, created_at_ms) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    args![&job.row.id, i as i64, &f.path, i64::from(f.line), f.side.as_str(), state.as_str(), id, now_ms()],
                )
                .await?;
            if state == CommentState::Posted {
                posted += 1;
            } else {
                fallback_idx.push(i);
            }
        }
        let fallback: Vec<&Finding> = fallback_idx
            .iter()
            .filter_map(|i| work.findings.get(*i))
            .collect();
        if !store::is_active(&job.db, &job.row.id).await? {
            return Err(Stop::Gone);
        }
        let r = upstream(
            who,
            "the summary comment",
            job.platform(&t.summary_comment(&summary_text(job, work, &fallback)))
                .await,
        )?;
        (posted, fallback.len(), parse_created_id(&r.body))
    };
    finish(job, work, posted, fallback_count, platform_id).await
}

async fn finish(
    job: &Job,
    work: &Work,
    posted: usize,
    fallback: usize,
    platform_id: Option<String>,
) -> Result<(), Stop> {
    let batch = OrgBatch::new(&job.row.org_id)
        .guard(
            "EXISTS (SELECT 1 FROM reviews WHERE id = ? AND status = ?)",
            args![&job.row.id, ReviewStatus::Commenting.as_str()],
            edgeplane_core::ApiError::conflict("the review is no longer being posted"),
        )
        .update(
            "reviews",
            "status = 'done', finished_at_ms = ?, comments_posted = ?, comments_fallback = ?, \
             platform_review_id = coalesce(?, platform_review_id), work_sealed = NULL, \
             lease_until_ms = NULL, error = NULL",
            args![
                now_ms(),
                posted as i64,
                fallback as i64,
                platform_id.clone()
            ],
            "id = ? AND status = 'commenting'",
            args![&job.row.id],
        );
    let event =
        Event::new(AuditAction::ReviewPosted, "review", &job.row.id).meta(serde_json::json!({
            "platform": job.platform_name(),
            "repository": job.row.repo_name,
            "pull_request": job.row.pr_number,
            "head_sha": job.row.head_sha,
            "findings": work.findings.len(),
            "comments_posted": posted,
            "comments_in_summary": fallback,
            "not_reviewed": work.not_reviewed.len(),
            "platform_review_id": platform_id,
            "llm_provider_id": job.provider.id,
        }));
    match commit_with_facts(&job.env, &job.db, batch, [event], facts(&job.row.org_id)).await {
        Ok(_) => Ok(()),
        // The batch's one guard: the review left the commenting state (superseded).
        Err(DbError::Guard(_)) => Err(Stop::Gone),
        Err(e) => Err(ApiError::from(e).into()),
    }
}
