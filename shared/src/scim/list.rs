//! Listing (RFC 7644 §3.4.2): `filter`, `startIndex` (1-based) and `count`, answered as a
//! ListResponse. Pages are bounded by [`MAX_COUNT`], so a listing's memory is too.

use serde_json::{json, Value};

use super::error::{ScimError, ScimType};

pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// Most resources one page holds (advertised as `filter.maxResults`).
pub const MAX_COUNT: u32 = 200;
pub const DEFAULT_COUNT: u32 = 100;

/// A listing's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub filter: Option<String>,
    /// 1-based, as SCIM counts.
    pub start_index: u32,
    pub count: u32,
}

impl ListQuery {
    /// Reads the query string. Per RFC 7644 §3.4.2.4 a `startIndex` below 1 means 1 and a
    /// negative `count` means 0; a `count` above the maximum is cut to it. Parameters this
    /// service does not act on (`sortBy`, `attributes`, …) are ignored, as the RFC allows for a
    /// provider that does not support them (ServiceProviderConfig says so).
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ScimError> {
        let mut q = ListQuery {
            filter: None,
            start_index: 1,
            count: DEFAULT_COUNT,
        };
        let number = |v: &str, what: &str| {
            v.trim().parse::<i64>().map_err(|_| {
                ScimError::bad(ScimType::InvalidValue, format!("{what} must be an integer"))
            })
        };
        for (k, v) in pairs {
            if k.eq_ignore_ascii_case("filter") {
                q.filter = Some(v.clone()).filter(|f| !f.trim().is_empty());
            } else if k.eq_ignore_ascii_case("startIndex") {
                q.start_index = number(v, "startIndex")?.clamp(1, i64::from(u32::MAX)) as u32;
            } else if k.eq_ignore_ascii_case("count") {
                q.count = number(v, "count")?.clamp(0, i64::from(MAX_COUNT)) as u32;
            }
        }
        Ok(q)
    }

    /// The SQL `OFFSET` of the page.
    pub fn offset(&self) -> i64 {
        i64::from(self.start_index) - 1
    }
}

/// The ListResponse for one page of `total` matches.
pub fn response(total: u64, start_index: u32, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<ListQuery, ScimError> {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| ((*a).into(), (*b).into()))
            .collect();
        ListQuery::parse(&v)
    }

    #[test]
    fn pagination_follows_the_rfc() {
        assert_eq!(
            q(&[]).unwrap(),
            ListQuery {
                filter: None,
                start_index: 1,
                count: 100
            }
        );
        let p = q(&[
            ("startIndex", "0"),
            ("count", "-5"),
            ("filter", "userName pr"),
        ])
        .unwrap();
        assert_eq!((p.start_index, p.count, p.offset()), (1, 0, 0));
        assert_eq!(p.filter.as_deref(), Some("userName pr"));
        let p = q(&[
            ("startindex", "11"),
            ("COUNT", "100000"),
            ("sortBy", "userName"),
        ])
        .unwrap();
        assert_eq!((p.start_index, p.count, p.offset()), (11, MAX_COUNT, 10));
        assert_eq!(
            q(&[("count", "ten")]).unwrap_err().scim_type,
            Some(ScimType::InvalidValue)
        );
        let r = response(7, 3, vec![json!({"id": "a"})]);
        assert_eq!(r["totalResults"], 7);
        assert_eq!(r["itemsPerPage"], 1);
        assert_eq!(r["startIndex"], 3);
    }
}
