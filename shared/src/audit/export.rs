//! The audit export: an org's placed events in chain order, one per line, exactly as stored, so
//! that whoever holds an export can recompute every link ([`super::ChainVerifier`]) and compare
//! the head with a signed checkpoint without asking the deployment.
//!
//! - `jsonl`: each line is a [`ChainedEvent`] as JSON (the stored fields: `metadata` is the
//!   canonical JSON *text* that was hashed, `created_at_ms` the stored instant). Parse a line
//!   with [`parse_line`].
//! - `csv`: a header row of [`CSV_COLUMNS`], then one row per event (RFC 4180 quoting), for
//!   spreadsheets; it carries the same fields, so it verifies too.
//!
//! The gateway streams the export page by page ([`PAGE`] events per D1 read) up to the size of
//! the chain's newest checkpoint at the start, and sends that signed checkpoint along, so an
//! export and its checkpoint always agree.

use crate::access::audit_query::AuditQuery;
use crate::error::{ApiError, ErrorCode};

use super::ChainedEvent;

/// Events read from D1 per page of an export.
pub const PAGE: i64 = 500;

/// The response header carrying the export's signed checkpoint note, standard base64 (a note
/// has newlines and a non-ASCII dash, which a header cannot carry as they are).
pub const CHECKPOINT_HEADER: &str = "x-edgeplane-checkpoint";
/// The response header carrying the chain size the export stops at.
pub const SIZE_HEADER: &str = "x-edgeplane-chain-size";

/// A page of a chain in order, within a snapshot: `[chain, after_seq, up_to_seq, since_ms,
/// limit]`.
pub const EXPORT_PAGE: &str = "SELECT id, chain, org_id, actor_type, actor_id, action, \
     resource_type, resource_id, ip, user_agent, request_id, metadata, created_at_ms, seq, \
     prev_hash, hash FROM audit_events WHERE chain = ? AND seq > ? AND seq <= ? \
     AND created_at_ms >= ? ORDER BY seq LIMIT ?";

pub const CSV_COLUMNS: [&str; 16] = [
    "seq",
    "id",
    "chain",
    "org_id",
    "actor_type",
    "actor_id",
    "action",
    "resource_type",
    "resource_id",
    "ip",
    "user_agent",
    "request_id",
    "metadata",
    "created_at_ms",
    "prev_hash",
    "hash",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// What an export asks for: `format=jsonl|csv` (default jsonl) and `since` (RFC 3339).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportQuery {
    pub format: Format,
    pub since_ms: i64,
}

impl ExportQuery {
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut format = None;
        let mut since = None;
        for (k, v) in pairs {
            match (k.as_str(), v.as_str()) {
                ("format", "jsonl") if format.is_none() => format = Some(Format::Jsonl),
                ("format", "csv") if format.is_none() => format = Some(Format::Csv),
                ("since", _) if since.is_none() => {
                    // The same RFC 3339 parsing as the audit query's `since`.
                    let q = AuditQuery::parse(vec![("since".into(), v)])?;
                    since = q.since_ms;
                }
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidQuery,
                        "the query parameters are format (jsonl or csv) and since (RFC 3339), \
                         each at most once",
                    ))
                }
            }
        }
        Ok(Self {
            format: format.unwrap_or(Format::Jsonl),
            since_ms: since.unwrap_or(0),
        })
    }
}

/// The first bytes of an export in `format` (the CSV header row).
pub fn preamble(format: Format) -> Vec<u8> {
    match format {
        Format::Jsonl => Vec::new(),
        Format::Csv => {
            let mut out = String::new();
            csv_row(&mut out, CSV_COLUMNS.iter().map(|c| (*c).to_owned()));
            out.into_bytes()
        }
    }
}

/// One event as a line of an export in `format`, with its line end.
pub fn line(format: Format, ev: &ChainedEvent) -> String {
    match format {
        Format::Jsonl => {
            let mut s = serde_json::to_string(ev).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Csv => {
            let e = &ev.event;
            let opt = |o: &Option<String>| o.clone().unwrap_or_default();
            let mut out = String::new();
            csv_row(
                &mut out,
                [
                    ev.seq.to_string(),
                    e.id.clone(),
                    e.chain.clone(),
                    opt(&e.org_id),
                    e.actor_type.clone(),
                    e.actor_id.clone(),
                    e.action.clone(),
                    e.resource_type.clone(),
                    e.resource_id.clone(),
                    opt(&e.ip),
                    opt(&e.user_agent),
                    opt(&e.request_id),
                    e.metadata.clone(),
                    e.created_at_ms.to_string(),
                    ev.prev_hash.clone(),
                    ev.hash.clone(),
                ],
            );
            out
        }
    }
}

/// RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled; CRLF ends a row.
fn csv_row(out: &mut String, fields: impl IntoIterator<Item = String>) {
    for (n, f) in fields.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        if f.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&f);
        }
    }
    out.push_str("\r\n");
}

/// One line of a `jsonl` export.
pub fn parse_line(line: &str) -> Result<ChainedEvent, serde_json::Error> {
    serde_json::from_str(line)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audit::{Actor, ChainHead, ChainVerifier, NewEvent};

    fn chain(len: i64) -> Vec<ChainedEvent> {
        let mut head = ChainHead::genesis();
        (0..len)
            .map(|n| {
                let ev = NewEvent {
                    chain: "org_1".into(),
                    org_id: Some("org_1".into()),
                    actor: Actor::user("usr_1"),
                    action: "api_key.created".into(),
                    resource_type: "api_key".into(),
                    resource_id: format!("key_{n}"),
                    ip: None,
                    user_agent: Some("a \"quoted\", agent".into()),
                    request_id: None,
                    metadata: serde_json::json!({"n": n, "text": "line\nbreak"}),
                }
                .chain_after(&head, format!("aud_{n}"), 1000 + n);
                head = ev.head();
                ev
            })
            .collect()
    }

    #[test]
    fn a_jsonl_export_reads_back_and_verifies() {
        let evs = chain(3);
        let text: String = evs.iter().map(|e| line(Format::Jsonl, e)).collect();
        assert_eq!(text.lines().count(), 3);
        let mut v = ChainVerifier::new();
        v.expect(evs[2].head());
        for l in text.lines() {
            v.feed(&parse_line(l).unwrap());
        }
        assert!(v.finish().valid);
        // One changed byte in one line breaks the chain there.
        let tampered = text.replacen("key_1", "key_9", 1);
        let mut v = ChainVerifier::new();
        for l in tampered.lines() {
            v.feed(&parse_line(l).unwrap());
        }
        assert_eq!(v.finish().first_broken_seq, Some(2));
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let evs = chain(1);
        let row = line(Format::Csv, &evs[0]);
        assert!(row.ends_with("\r\n"));
        assert!(row.contains("\"a \"\"quoted\"\", agent\""));
        assert!(row.contains("\"{\"\"n\"\":0,\"\"text\"\":\"\"line\\nbreak\"\"}\""));
        let header = String::from_utf8(preamble(Format::Csv)).unwrap();
        assert!(header.starts_with("seq,id,chain,"));
    }

    #[test]
    fn the_query_is_strict() {
        let q = |p: &[(&str, &str)]| {
            ExportQuery::parse(p.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect())
        };
        assert_eq!(q(&[]).unwrap().format, Format::Jsonl);
        let csv = q(&[("format", "csv"), ("since", "2026-01-01T00:00:00Z")]).unwrap();
        assert_eq!(csv.format, Format::Csv);
        assert_eq!(csv.since_ms, 1_767_225_600_000);
        assert!(q(&[("format", "xml")]).is_err());
        assert!(q(&[("since", "yesterday")]).is_err());
        assert!(q(&[("format", "csv"), ("format", "jsonl")]).is_err());
        assert!(q(&[("limit", "1")]).is_err());
    }
}
