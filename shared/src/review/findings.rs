//! The model's answer: parsed leniently (it may wrap the JSON in prose or a code fence), then
//! validated strictly against the diff. A finding survives only if its path was reviewed and its
//! line (and range start) lies on the diff on the stated side; the rest are dropped and counted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::review::diff::{FileDiff, Side};

pub const MAX_FINDINGS: usize = 50;
const MAX_TITLE: usize = 200;
const MAX_BODY: usize = 4_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "critical" | "blocker" => Severity::Critical,
            "high" | "major" | "error" => Severity::High,
            "medium" | "moderate" | "warning" => Severity::Medium,
            "low" | "minor" => Severity::Low,
            "info" | "nit" | "note" | "suggestion" => Severity::Info,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }
}

/// A validated finding, ready to post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub path: String,
    pub line: u32,
    #[serde(with = "side_serde")]
    pub side: Side,
    pub start_line: Option<u32>,
    pub severity: Severity,
    pub title: String,
    pub body: String,
}

/// `Side` as its wire name (`LEFT`, `RIGHT`), for fields of type `Side`.
pub mod side_serde {
    use super::Side;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(s: &Side, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Side, D::Error> {
        let s = String::deserialize(d)?;
        Side::parse(&s).ok_or_else(|| serde::de::Error::custom("side"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelOutput {
    pub summary: String,
    pub findings: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError;

/// Finds the JSON object in the model's text: the whole text, a fenced block, or the outermost
/// braces.
pub fn parse_output(text: &str) -> Result<ModelOutput, ParseError> {
    let candidates = [
        Some(text.trim()),
        text.split("```")
            .nth(1)
            .map(|b| b.trim_start_matches("json").trim()),
        text.find('{')
            .zip(text.rfind('}'))
            .filter(|(a, b)| a < b)
            .map(|(a, b)| &text[a..=b]),
    ];
    for c in candidates.into_iter().flatten() {
        if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(c) {
            let summary = o
                .get("summary")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(MAX_BODY)
                .collect();
            let findings = o
                .get("findings")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            return Ok(ModelOutput { summary, findings });
        }
    }
    Err(ParseError)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Malformed,
    UnknownFile,
    NotOnDiff,
    BadRange,
    Duplicate,
    OverLimit,
}

fn truncate(s: &str, max: usize) -> String {
    let t = s.trim();
    if t.chars().count() <= max {
        t.to_owned()
    } else {
        let mut out: String = t.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

fn as_u32(v: Option<&Value>) -> Option<u32> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Validates raw findings against the reviewed files' diffs. Returns the accepted findings
/// (most severe first) and the reasons the others were dropped.
pub fn validate(raw: &[Value], reviewed: &[&FileDiff]) -> (Vec<Finding>, Vec<DropReason>) {
    let mut ok: Vec<Finding> = Vec::new();
    let mut dropped = Vec::new();
    for v in raw {
        let parsed = (|| {
            let path = v
                .get("path")?
                .as_str()?
                .trim()
                .trim_start_matches("./")
                .to_owned();
            let line = as_u32(v.get("line"))?;
            let side = match v.get("side") {
                None | Some(Value::Null) => Side::Right,
                Some(s) => Side::parse(s.as_str()?)?,
            };
            let start_line = match v.get("start_line") {
                None | Some(Value::Null) => None,
                s => Some(as_u32(s)?),
            };
            let severity = Severity::parse(
                v.get("severity")
                    .and_then(Value::as_str)
                    .unwrap_or("medium"),
            )?;
            let title = truncate(v.get("title")?.as_str()?, MAX_TITLE);
            let body = truncate(
                v.get("body").and_then(Value::as_str).unwrap_or(""),
                MAX_BODY,
            );
            (!title.is_empty()).then_some(Finding {
                path,
                line,
                side,
                start_line,
                severity,
                title,
                body,
            })
        })();
        let Some(mut f) = parsed else {
            dropped.push(DropReason::Malformed);
            continue;
        };
        let Some(file) = reviewed.iter().find(|d| d.path == f.path) else {
            dropped.push(DropReason::UnknownFile);
            continue;
        };
        let Some((hunk, _)) = file.locate(f.side, f.line) else {
            dropped.push(DropReason::NotOnDiff);
            continue;
        };
        if f.start_line == Some(f.line) {
            f.start_line = None;
        }
        if let Some(start) = f.start_line {
            let same_hunk = file.locate(f.side, start).map(|(h, _)| h) == Some(hunk);
            if start > f.line || !same_hunk {
                dropped.push(DropReason::BadRange);
                continue;
            }
        }
        if ok
            .iter()
            .any(|o| o.path == f.path && o.line == f.line && o.side == f.side && o.title == f.title)
        {
            dropped.push(DropReason::Duplicate);
            continue;
        }
        ok.push(f);
    }
    ok.sort_by(|a, b| {
        a.severity
            .cmp(&b.severity)
            .then(a.path.cmp(&b.path))
            .then(a.line.cmp(&b.line))
    });
    if ok.len() > MAX_FINDINGS {
        dropped.extend(std::iter::repeat_n(
            DropReason::OverLimit,
            ok.len() - MAX_FINDINGS,
        ));
        ok.truncate(MAX_FINDINGS);
    }
    (ok, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::diff::{parse_hunks, FileStatus};
    use serde_json::json;

    fn diff() -> FileDiff {
        FileDiff {
            path: "src/auth.rs".into(),
            old_path: None,
            status: FileStatus::Modified,
            binary: false,
            hunks: parse_hunks(
                "@@ -10,4 +10,5 @@\n a\n-b\n+c\n+d\n e\n f\n@@ -40,2 +41,2 @@\n x\n-y\n+z",
            )
            .unwrap(),
        }
    }

    #[test]
    fn parses_fenced_and_wrapped_output() {
        let t = "Here you go:\n```json\n{\"summary\": \"ok\", \"findings\": []}\n```";
        assert_eq!(parse_output(t).unwrap().summary, "ok");
        let t = "Sure! {\"summary\": \"s\", \"findings\": [{\"path\": \"a\"}]} Hope it helps";
        assert_eq!(parse_output(t).unwrap().findings.len(), 1);
        assert!(parse_output("no json here").is_err());
    }

    #[test]
    fn keeps_only_findings_on_the_diff() {
        let d = diff();
        let raw = vec![
            json!({"path": "src/auth.rs", "line": 11, "side": "RIGHT", "severity": "high", "title": "Bug", "body": "b"}),
            json!({"path": "src/auth.rs", "line": 11, "side": "LEFT", "severity": "low", "title": "Removed", "body": "b"}),
            json!({"path": "src/auth.rs", "line": 12, "start_line": 11, "severity": "medium", "title": "Range", "body": "b"}),
            json!({"path": "src/auth.rs", "line": 30, "severity": "high", "title": "Off diff", "body": "b"}),
            json!({"path": "src/other.rs", "line": 11, "severity": "high", "title": "Other file", "body": "b"}),
            json!({"path": "src/auth.rs", "line": 42, "start_line": 11, "severity": "high", "title": "Across hunks", "body": "b"}),
            json!({"path": "src/auth.rs", "line": "x", "title": "Malformed"}),
            json!({"path": "src/auth.rs", "line": 11, "side": "RIGHT", "severity": "high", "title": "Bug", "body": "b"}),
            json!({"path": "./src/auth.rs", "line": 42, "severity": "nit", "title": "Fine", "body": "b"}),
        ];
        let (ok, dropped) = validate(&raw, &[&d]);
        let titles: Vec<&str> = ok.iter().map(|f| f.title.as_str()).collect();
        assert_eq!(titles, vec!["Bug", "Range", "Removed", "Fine"]);
        assert_eq!(ok[2].side, Side::Left);
        assert_eq!(ok[1].start_line, Some(11));
        assert_eq!(
            dropped,
            vec![
                DropReason::NotOnDiff,
                DropReason::UnknownFile,
                DropReason::BadRange,
                DropReason::Malformed,
                DropReason::Duplicate
            ]
        );
        // The removed line 11 on the left is "b" (old line 11).
        assert!(d.locate(Side::Left, 11).is_some());
    }

    #[test]
    fn findings_round_trip_for_sealed_storage() {
        let f = Finding {
            path: "a".into(),
            line: 1,
            side: Side::Left,
            start_line: None,
            severity: Severity::Low,
            title: "t".into(),
            body: "b".into(),
        };
        let s = serde_json::to_string(&f).unwrap();
        assert!(s.contains("\"LEFT\""));
        assert_eq!(serde_json::from_str::<Finding>(&s).unwrap(), f);
    }
}
