//! The audit log's query surface: filters and a cursor over an org's chain (newest first).

use crate::error::{ApiError, ErrorCode};
use crate::time::parse_rfc3339;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub actor_id: Option<String>,
    pub actor_type: Option<String>,
    pub action: Option<String>,
    /// A trailing `.*` matches an action family, e.g. `api_key.*`.
    pub action_prefix: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Events with `seq` below this (the previous page's last `seq`).
    pub before_seq: Option<i64>,
    pub limit: i64,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, msg)
}

fn bounded(name: &str, v: String) -> Result<String, ApiError> {
    if v.is_empty() || v.len() > 200 {
        return Err(bad(format!("{name} must be 1-200 characters")));
    }
    Ok(v)
}

fn instant(name: &str, v: &str) -> Result<i64, ApiError> {
    parse_rfc3339(v)
        .map(|s| s * 1000)
        .ok_or_else(|| bad(format!("{name} must be an RFC 3339 timestamp")))
}

impl AuditQuery {
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut q = AuditQuery {
            limit: DEFAULT_LIMIT,
            ..Default::default()
        };
        for (k, v) in pairs {
            match k.as_str() {
                "actor" => q.actor_id = Some(bounded("actor", v)?),
                "actor_type" => q.actor_type = Some(bounded("actor_type", v)?),
                "action" => match v.strip_suffix(".*") {
                    Some(prefix) => {
                        q.action_prefix = Some(bounded("action", format!("{prefix}."))?)
                    }
                    None => q.action = Some(bounded("action", v)?),
                },
                "resource_type" => q.resource_type = Some(bounded("resource_type", v)?),
                "resource" | "resource_id" => q.resource_id = Some(bounded("resource", v)?),
                "since" => q.since_ms = Some(instant("since", &v)?),
                "until" => q.until_ms = Some(instant("until", &v)?),
                "cursor" => {
                    q.before_seq = Some(
                        v.parse::<i64>()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| bad("cursor is not valid"))?,
                    )
                }
                "limit" => {
                    q.limit = v
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| bad(format!("limit must be 1-{MAX_LIMIT}")))?
                }
                other => return Err(bad(format!("unknown query parameter `{other}`"))),
            }
        }
        if let (Some(a), Some(b)) = (q.since_ms, q.until_ms) {
            if a > b {
                return Err(bad("since must not be after until"));
            }
        }
        Ok(q)
    }

    /// The `WHERE` clause (after `chain = ?`) and its arguments, in order. Only fixed SQL text
    /// is produced; every value is a bound parameter.
    pub fn where_clause(&self) -> (String, Vec<QueryArg>) {
        let mut sql = String::new();
        let mut args = Vec::new();
        let text = [
            (" AND actor_id = ?", &self.actor_id),
            (" AND actor_type = ?", &self.actor_type),
            (" AND action = ?", &self.action),
            (" AND resource_type = ?", &self.resource_type),
            (" AND resource_id = ?", &self.resource_id),
        ];
        for (clause, value) in text {
            if let Some(v) = value {
                sql.push_str(clause);
                args.push(QueryArg::Text(v.clone()));
            }
        }
        if let Some(prefix) = &self.action_prefix {
            // A prefix comparison rather than LIKE: no wildcard characters to escape.
            sql.push_str(" AND substr(action, 1, ?) = ?");
            args.push(QueryArg::Int(prefix.len() as i64));
            args.push(QueryArg::Text(prefix.clone()));
        }
        let ints = [
            (" AND created_at_ms >= ?", self.since_ms),
            (" AND created_at_ms <= ?", self.until_ms),
            (" AND seq < ?", self.before_seq),
        ];
        for (clause, value) in ints {
            if let Some(v) = value {
                sql.push_str(clause);
                args.push(QueryArg::Int(v));
            }
        }
        (sql, args)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryArg {
    Text(String),
    Int(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_filters() {
        let q = AuditQuery::parse(pairs(&[
            ("actor", "usr_1"),
            ("action", "api_key.*"),
            ("since", "2026-01-01T00:00:00Z"),
            ("cursor", "40"),
            ("limit", "10"),
        ]))
        .unwrap();
        assert_eq!(q.actor_id.as_deref(), Some("usr_1"));
        assert_eq!(q.action_prefix.as_deref(), Some("api_key."));
        assert_eq!(q.before_seq, Some(40));
        assert_eq!(q.limit, 10);
        let (sql, args) = q.where_clause();
        assert_eq!(args.len(), 5);
        assert!(sql.contains("substr(action, 1, ?) = ?"));
        assert!(sql.contains("seq < ?"));
    }

    #[test]
    fn rejects_bad_input() {
        for p in [
            vec![("limit", "0")],
            vec![("limit", "1000")],
            vec![("cursor", "-1")],
            vec![("since", "yesterday")],
            vec![("nope", "1")],
            vec![
                ("since", "2026-02-01T00:00:00Z"),
                ("until", "2026-01-01T00:00:00Z"),
            ],
        ] {
            assert_eq!(
                AuditQuery::parse(pairs(&p)).unwrap_err().code,
                ErrorCode::InvalidQuery,
                "{p:?}"
            );
        }
    }
}
