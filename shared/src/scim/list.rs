//! Listing (RFC 7644 §3.4.2): `filter`, `startIndex` (1-based) and `count`, answered as a
//! ListResponse. Pages are bounded by [`MAX_COUNT`], so a listing's memory is too.

use serde_json::{json, Map, Value};

use super::error::{ScimError, ScimType};
use super::filter::attribute_name;
use super::resource::field;

pub const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

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

/// A POST `…/.search` body (RFC 7644 §3.4.3): the listing's parameters and the projection,
/// read as the query string's are.
pub fn search_request(body: &Value) -> Result<(ListQuery, Projection), ScimError> {
    let syntax = |m: &str| ScimError::bad(ScimType::InvalidSyntax, m);
    let obj = body
        .as_object()
        .ok_or_else(|| syntax("a SearchRequest must be an object"))?;
    let schemas_ok = field(obj, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(SEARCH_SCHEMA)));
    if !schemas_ok {
        return Err(syntax("schemas must list the SearchRequest schema"));
    }
    let mut pairs = Vec::new();
    for name in ["filter", "startIndex", "count"] {
        match field(obj, name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => pairs.push((name.to_owned(), s.clone())),
            Some(Value::Number(n)) => pairs.push((name.to_owned(), n.to_string())),
            Some(_) => return Err(syntax("filter, startIndex and count must be scalars")),
        }
    }
    let names = |name: &str| -> Result<Vec<String>, ScimError> {
        match field(obj, name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(attribute_name)
                        .ok_or_else(|| syntax("attribute lists hold strings"))
                })
                .collect(),
            Some(_) => Err(syntax("attributes and excludedAttributes must be arrays")),
        }
    };
    let projection = Projection {
        only: names("attributes")?,
        excluded: names("excludedAttributes")?,
    };
    Ok((ListQuery::parse(&pairs)?, projection))
}

/// Which attributes an answer carries (RFC 7644 §3.4.2.5): with `attributes`, only those (and
/// `id` and `schemas`, which are always returned); with `excludedAttributes`, all but those.
/// Names are compared as RFC 7643 asks (any case, with or without the schema URN); a
/// sub-attribute (`name.givenName`) selects or drops part of a complex attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    only: Vec<String>,
    excluded: Vec<String>,
}

const ALWAYS: &[&str] = &["id", "schemas"];

fn comma_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(attribute_name)
        .collect()
}

/// The sub-attributes of `top` that `names` mention (`name.givenname` → `givenname`).
fn subs<'a>(names: &'a [String], top: &str) -> Vec<&'a str> {
    names
        .iter()
        .filter_map(|n| n.strip_prefix(top).and_then(|r| r.strip_prefix('.')))
        .collect()
}

/// Keeps (`keep = true`) or drops the named members of an object, or of each object of an array.
fn filter_members(v: &mut Value, names: &[&str], keep: bool) {
    let apply = |o: &mut Map<String, Value>| {
        o.retain(|k, _| names.iter().any(|n| k.eq_ignore_ascii_case(n)) == keep)
    };
    match v {
        Value::Object(o) => apply(o),
        Value::Array(items) => {
            for item in items {
                if let Value::Object(o) = item {
                    apply(o);
                }
            }
        }
        _ => {}
    }
}

impl Projection {
    /// Reads `attributes` and `excludedAttributes` from a query string.
    pub fn parse(pairs: &[(String, String)]) -> Self {
        let mut p = Projection::default();
        for (k, v) in pairs {
            if k.eq_ignore_ascii_case("attributes") {
                p.only.extend(comma_list(v));
            } else if k.eq_ignore_ascii_case("excludedAttributes") {
                p.excluded.extend(comma_list(v));
            }
        }
        p
    }

    /// Whether the answer leaves the attribute `name` out entirely (so it need not be read).
    pub fn drops(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        if ALWAYS.contains(&name.as_str()) {
            return false;
        }
        self.excluded.contains(&name)
            || (!self.only.is_empty()
                && !self.only.contains(&name)
                && subs(&self.only, &name).is_empty())
    }

    /// [`Projection::apply`] to each resource of a ListResponse.
    pub fn apply_list(&self, mut list: Value) -> Value {
        if let Some(Value::Array(items)) = list.get_mut("Resources") {
            for item in items.iter_mut() {
                *item = self.apply(item.take());
            }
        }
        list
    }

    pub fn apply(&self, mut resource: Value) -> Value {
        let Value::Object(obj) = &mut resource else {
            return resource;
        };
        let keys: Vec<String> = obj.keys().cloned().collect();
        for key in keys {
            let lower = key.to_ascii_lowercase();
            if ALWAYS.contains(&lower.as_str()) {
                continue;
            }
            if !self.only.is_empty() && !self.only.contains(&lower) {
                let wanted = subs(&self.only, &lower);
                match obj.get_mut(&key) {
                    Some(v) if !wanted.is_empty() => filter_members(v, &wanted, true),
                    _ => {
                        obj.remove(&key);
                        continue;
                    }
                }
            }
            if self.excluded.contains(&lower) {
                obj.remove(&key);
                continue;
            }
            let dropped = subs(&self.excluded, &lower);
            if let (false, Some(v)) = (dropped.is_empty(), obj.get_mut(&key)) {
                filter_members(v, &dropped, false);
            }
        }
        resource
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
    fn projections_keep_or_drop_what_they_name() {
        let user = json!({"schemas": ["s"], "id": "u", "userName": "a", "displayName": "A",
            "name": {"givenName": "G", "familyName": "F"}, "emails": [{"value": "a@b.co", "primary": true}],
            "meta": {"resourceType": "User"}});
        let pairs = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        let only = Projection::parse(&pairs(
            "attributes",
            "userName,name.givenName,urn:ietf:params:scim:schemas:core:2.0:User:emails.value",
        ));
        assert_eq!(
            only.apply(user.clone()),
            json!({"schemas": ["s"], "id": "u", "userName": "a", "name": {"givenName": "G"},
                "emails": [{"value": "a@b.co"}]})
        );
        let without = Projection::parse(&pairs(
            "excludedAttributes",
            "displayName, name.familyName,meta,id",
        ));
        assert_eq!(
            without.apply(user.clone()),
            json!({"schemas": ["s"], "id": "u", "userName": "a", "name": {"givenName": "G"},
                "emails": [{"value": "a@b.co", "primary": true}]})
        );
        assert_eq!(Projection::default().apply(user.clone()), user);
        assert!(Projection::parse(&pairs("excludedAttributes", "Members")).drops("members"));
        assert!(Projection::parse(&pairs("attributes", "displayName")).drops("members"));
        assert!(!Projection::parse(&pairs("attributes", "members.value")).drops("members"));
        assert!(
            !Projection::parse(&pairs("excludedAttributes", "members.display")).drops("members")
        );
        assert!(!Projection::default().drops("members"));
        let (q, p) = search_request(&json!({"schemas": [SEARCH_SCHEMA], "filter": "userName pr",
            "startIndex": 2, "count": 5, "excludedAttributes": ["displayName"]}))
        .unwrap();
        assert_eq!(
            (q.filter.as_deref(), q.start_index, q.count),
            (Some("userName pr"), 2, 5)
        );
        assert!(p.apply(user.clone()).get("displayName").is_none());
        assert!(search_request(&json!({"filter": "x"})).is_err());
        assert!(search_request(&json!({"schemas": [SEARCH_SCHEMA], "attributes": "x"})).is_err());
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
