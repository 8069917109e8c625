//! What the review posts: one summary (with a hidden marker that identifies the review, so a
//! retry can tell whether it was already posted) and one comment per finding.

use crate::review::findings::{Finding, Severity};

pub fn marker(review_id: &str) -> String {
    format!("<!-- edgeplane:review:{review_id} -->")
}

pub fn comment_body(f: &Finding) -> String {
    let range = match f.start_line {
        Some(s) => format!(" (lines {s}-{})", f.line),
        None => String::new(),
    };
    let mut body = format!("**[{}] {}**{range}", f.severity.as_str(), f.title);
    if !f.body.is_empty() {
        body.push_str("\n\n");
        body.push_str(&f.body);
    }
    body
}

/// A file the review did not look at, and why.
pub struct NotReviewed<'a> {
    pub path: &'a str,
    pub reason: &'a str,
}

pub struct Summary<'a> {
    pub review_id: &'a str,
    pub model_summary: &'a str,
    pub findings: &'a [Finding],
    /// Findings the platform refused inline; shown in full here instead.
    pub fallback: &'a [&'a Finding],
    pub not_reviewed: &'a [NotReviewed<'a>],
    pub dropped: usize,
}

fn counts(findings: &[Finding]) -> String {
    let order = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];
    let parts: Vec<String> = order
        .iter()
        .filter_map(|s| {
            let n = findings.iter().filter(|f| f.severity == *s).count();
            (n > 0).then(|| format!("{n} {}", s.as_str()))
        })
        .collect();
    if parts.is_empty() {
        "no findings".into()
    } else {
        parts.join(", ")
    }
}

/// Markdown for the summary. Long lists are capped, with the remainder counted.
pub fn summary(s: &Summary<'_>) -> String {
    let mut out = format!("{}\n### edgeplane review\n\n", marker(s.review_id));
    if !s.model_summary.trim().is_empty() {
        out.push_str(s.model_summary.trim());
        out.push_str("\n\n");
    }
    out.push_str(&format!("**Findings:** {}", counts(s.findings)));
    if s.dropped > 0 {
        out.push_str(&format!(
            " ({} discarded: not on the diff or malformed)",
            s.dropped
        ));
    }
    out.push('\n');
    if !s.fallback.is_empty() {
        out.push_str("\n**Findings that could not be placed inline:**\n");
        for f in s.fallback {
            out.push_str(&format!(
                "- `{}:{}` {}\n",
                f.path,
                f.line,
                comment_body(f).replace('\n', " ")
            ));
        }
    }
    if !s.not_reviewed.is_empty() {
        out.push_str(&format!(
            "\n**Not reviewed ({} files):**\n",
            s.not_reviewed.len()
        ));
        for n in s.not_reviewed.iter().take(100) {
            out.push_str(&format!("- `{}` — {}\n", n.path, n.reason));
        }
        if s.not_reviewed.len() > 100 {
            out.push_str(&format!("- … and {} more\n", s.not_reviewed.len() - 100));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::diff::Side;

    #[test]
    fn summary_names_everything() {
        let f = Finding {
            path: "a.rs".into(),
            line: 3,
            side: Side::Right,
            start_line: None,
            severity: Severity::High,
            title: "Leak".into(),
            body: "Closes nothing.".into(),
        };
        let nr = [NotReviewed {
            path: "big.rs",
            reason: "did not fit the model's token budget",
        }];
        let s = summary(&Summary {
            review_id: "rev_1",
            model_summary: "Looks mostly fine.",
            findings: std::slice::from_ref(&f),
            fallback: &[&f],
            not_reviewed: &nr,
            dropped: 2,
        });
        assert!(s.starts_with("<!-- edgeplane:review:rev_1 -->"));
        assert!(s.contains("1 high"));
        assert!(s.contains("2 discarded"));
        assert!(s.contains("`a.rs:3` **[high] Leak**"));
        assert!(s.contains("`big.rs` — did not fit"));
        assert_eq!(comment_body(&f), "**[high] Leak**\n\nCloses nothing.");
    }
}
