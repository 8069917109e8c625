//! The audit export: an org's placed events in chain order, one per line, exactly as stored, so
//! that whoever holds an export can recompute every link ([`super::ChainVerifier`]) and compare
//! the head with a signed checkpoint without asking the deployment.
//!
//! - `jsonl`: each line is a [`ChainedEvent`] as JSON (the stored fields: `metadata` is the
//!   canonical JSON *text* that was hashed, `created_at_ms` the stored instant). Parse a line
//!   with [`parse_line`].
//! - `csv`: a header row of [`CSV_COLUMNS`], then one row per event (RFC 4180 quoting), for
//!   spreadsheets. It carries the same fields, with one change that keeps a spreadsheet from
//!   running a stored value as a formula (a user agent of `=HYPERLINK(…)`): a field that begins
//!   with `=`, `+`, `-`, `@`, a tab, a carriage return or `'` gets one `'` in front
//!   ([`spreadsheet_safe`]). Removing one leading `'` from such a field gives the stored text
//!   back, so a CSV export verifies too.
//!
//! An export may be narrowed with the audit query's filters (actor, action, resource, time:
//! [`ExportQuery`]). A narrowed export is a selection: each event still carries its `hash` and
//! `prev_hash`, but only a whole export recomputes every link from genesis.
//!
//! The gateway streams the export page by page ([`PAGE`] events per D1 read) up to the size of
//! the chain's newest checkpoint at the start, and sends that signed checkpoint along, so an
//! export and its checkpoint always agree.

use crate::access::audit_query::{AuditQuery, QueryArg};
use crate::error::{ApiError, ErrorCode};
use crate::time::rfc3339_millis;

use super::sql::EVENT_COLUMNS;
use super::ChainedEvent;

/// Events read from D1 per page of an export.
pub const PAGE: i64 = 500;

/// The response header carrying the export's signed checkpoint note, standard base64 (a note
/// has newlines and a non-ASCII dash, which a header cannot carry as they are).
pub const CHECKPOINT_HEADER: &str = "x-edgeplane-checkpoint";
/// The response header carrying the signed anchor of the chain's pruned prefix (standard
/// base64 of the note), when retention pruned it: the export then starts right after the
/// anchor's size, and a holder verifies from the anchor instead of the genesis
/// ([`super::retention`]).
pub const ANCHOR_HEADER: &str = "x-edgeplane-anchor";
/// The response header carrying the chain size the export stops at.
pub const SIZE_HEADER: &str = "x-edgeplane-chain-size";

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
    /// The name the query gives it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// What an export asks for: `format=jsonl|csv` (default jsonl) and the audit query's filters
/// (`actor`, `actor_type`, `action`, `resource_type`, `resource`, `since`, `until`), parsed by
/// the same code as the list's; a cursor or limit makes no sense for a whole export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportQuery {
    pub format: Format,
    pub filter: AuditQuery,
}

impl ExportQuery {
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let refuse = || {
            ApiError::new(
                ErrorCode::InvalidQuery,
                "the query parameters are format (jsonl or csv) and the audit filters (actor, \
                 actor_type, action, resource_type, resource, since, until), each at most once",
            )
        };
        let mut format = None;
        let mut filters = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for (k, v) in pairs {
            if seen.contains(&k) {
                return Err(refuse());
            }
            match (k.as_str(), v.as_str()) {
                ("format", "jsonl") => format = Some(Format::Jsonl),
                ("format", "csv") => format = Some(Format::Csv),
                ("format" | "cursor" | "limit", _) => return Err(refuse()),
                _ => filters.push((k.clone(), v)),
            }
            seen.push(k);
        }
        Ok(Self {
            format: format.unwrap_or(Format::Jsonl),
            filter: AuditQuery::parse(filters)?,
        })
    }

    /// The filters given, as the export's own audit event records them.
    pub fn filters(&self) -> serde_json::Value {
        let f = &self.filter;
        let action = f
            .action
            .clone()
            .or_else(|| f.action_prefix.as_ref().map(|p| format!("{p}*")));
        let given = [
            ("actor", f.actor_id.clone()),
            ("actor_type", f.actor_type.clone()),
            ("action", action),
            ("resource_type", f.resource_type.clone()),
            ("resource", f.resource_id.clone()),
            ("since", f.since_ms.map(rfc3339_millis)),
            ("until", f.until_ms.map(rfc3339_millis)),
        ];
        serde_json::Value::Object(
            given
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_owned(), serde_json::Value::String(v?))))
                .collect(),
        )
    }

    /// One page of the export, in chain order within a snapshot: the SQL and its arguments
    /// after the leading `[chain, after_seq, up_to_seq]`; the page size is the last argument.
    pub fn page_sql(&self) -> (String, Vec<QueryArg>) {
        let (filters, mut args) = self.filter.where_clause();
        args.push(QueryArg::Int(PAGE));
        (
            format!(
                "SELECT {EVENT_COLUMNS} FROM audit_events WHERE chain = ? AND seq > ? \
                 AND seq <= ?{filters} ORDER BY seq LIMIT ?"
            ),
            args,
        )
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
/// Every field is made [`spreadsheet_safe`] first.
fn csv_row(out: &mut String, fields: impl IntoIterator<Item = String>) {
    for (n, f) in fields.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let f = spreadsheet_safe(f);
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

/// A CSV field a spreadsheet shows as text: one that begins with a character a spreadsheet
/// reads as the start of a formula (`=`, `+`, `-`, `@`, tab, carriage return; OWASP's list) gets
/// a leading `'`. So does one that already begins with `'`, which keeps the change reversible:
/// remove one leading `'` and the stored text is back.
pub fn spreadsheet_safe(field: String) -> String {
    if field.starts_with(['=', '+', '-', '@', '\t', '\r', '\'']) {
        format!("'{field}")
    } else {
        field
    }
}

/// One line of a `jsonl` export.
pub fn parse_line(line: &str) -> Result<ChainedEvent, serde_json::Error> {
    serde_json::from_str(line)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audit::testing::{api_key_created, chain_of};
    use crate::audit::{ChainVerifier, NewEvent};

    fn chain(len: i64) -> Vec<ChainedEvent> {
        let event = |n| NewEvent {
            user_agent: Some("a \"quoted\", agent".into()),
            metadata: serde_json::json!({"n": n, "text": "line\nbreak"}),
            ..api_key_created(n)
        };
        chain_of(0..len, event, |n| 1000 + n)
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
    fn csv_never_hands_a_spreadsheet_a_formula() {
        let mut ev = chain(1).remove(0);
        ev.event.user_agent = Some("=HYPERLINK(\"http://evil.test\",\"x\")".into());
        ev.event.resource_id = "+1".into();
        ev.event.actor_id = "@me".into();
        let row = line(Format::Csv, &ev);
        assert!(
            row.contains(",\"'=HYPERLINK(\"\"http://evil.test\"\",\"\"x\"\")\","),
            "{row}"
        );
        assert!(row.contains(",'+1,") && row.contains(",'@me,"), "{row}");
        // The JSON lines carry the stored text unchanged (JSON is no spreadsheet's formula).
        assert!(line(Format::Jsonl, &ev).contains("\"=HYPERLINK("));
        for (stored, shown) in [
            ("-2", "'-2"),
            ("\tx", "'\tx"),
            ("'quoted", "''quoted"),
            ("plain", "plain"),
            ("", ""),
            ("a=b", "a=b"),
        ] {
            assert_eq!(spreadsheet_safe(stored.into()), shown);
            // Reversible: one leading apostrophe off gives the stored text back.
            let back = if shown.len() > stored.len() {
                &shown[1..]
            } else {
                shown
            };
            assert_eq!(back, stored);
        }
    }

    #[test]
    fn the_query_is_strict_and_filters_like_the_list() {
        let q = |p: &[(&str, &str)]| {
            ExportQuery::parse(p.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect())
        };
        assert_eq!(q(&[]).unwrap().format, Format::Jsonl);
        let csv = q(&[("format", "csv"), ("since", "2026-01-01T00:00:00Z")]).unwrap();
        assert_eq!(csv.format, Format::Csv);
        assert_eq!(csv.filter.since_ms, Some(1_767_225_600_000));
        let narrowed = q(&[("actor", "usr_1"), ("action", "api_key.*")]).unwrap();
        let (sql, args) = narrowed.page_sql();
        assert!(
            sql.contains("seq > ? AND seq <= ? AND actor_id = ?"),
            "{sql}"
        );
        assert!(sql.ends_with("ORDER BY seq LIMIT ?"));
        assert_eq!(args.len(), 4);
        assert_eq!(args.last(), Some(&QueryArg::Int(PAGE)));
        assert_eq!(
            narrowed.filters(),
            serde_json::json!({"actor": "usr_1", "action": "api_key.*"})
        );
        assert!(q(&[("format", "xml")]).is_err());
        assert!(q(&[("since", "yesterday")]).is_err());
        assert!(q(&[("format", "csv"), ("format", "jsonl")]).is_err());
        assert!(q(&[("actor", "a"), ("actor", "b")]).is_err());
        assert!(q(&[("limit", "1")]).is_err());
        assert!(q(&[("cursor", "4")]).is_err());
        assert!(q(&[("nope", "1")]).is_err());
    }
}
