//! A declarative route table. Each route states its method, path pattern, body limit and who may
//! call it, so those facts are checkable in one place (and against the OpenAPI document).

use super::body::BodyLimit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
}

impl Method {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
        }
    }
}

/// One route. `pattern` segments starting with `{` capture, e.g. `/v1/orgs/{org}/audit-events`.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec<R: 'static, A: 'static> {
    pub id: R,
    pub method: Method,
    pub pattern: &'static str,
    pub body_limit: BodyLimit,
    pub auth: A,
}

/// Captured path parameters, in pattern order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
pub enum RouteMatch<'a, R: 'static, A: 'static> {
    Found(&'a RouteSpec<R, A>, Params),
    /// The path exists but not for this method; carries the methods it does answer.
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

fn match_pattern(pattern: &'static str, path: &str) -> Option<Params> {
    let mut params = Vec::new();
    let mut pat = pattern.trim_matches('/').split('/');
    let mut segs = path.trim_matches('/').split('/');
    loop {
        match (pat.next(), segs.next()) {
            (None, None) => return Some(Params(params)),
            (Some(p), Some(s)) => {
                if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    if s.is_empty() {
                        return None;
                    }
                    params.push((name, percent_decode(s)?));
                } else if p != s {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// Decodes `%XX` escapes in a path segment. Every `%` must start an escape of exactly two hex
/// digits (`percent-encoding` alone passes a malformed one through as text, and `u8`'s radix
/// parser takes a sign, so `%+1` once decoded to 0x01); the result must be UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let well_formed = s.split('%').skip(1).all(|after| {
        after
            .as_bytes()
            .get(..2)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

pub fn match_route<'a, R, A>(
    table: &'a [RouteSpec<R, A>],
    method: Method,
    path: &str,
) -> RouteMatch<'a, R, A> {
    let mut allowed = Vec::new();
    for route in table {
        if let Some(params) = match_pattern(route.pattern, path) {
            if route.method == method || (method == Method::Head && route.method == Method::Get) {
                return RouteMatch::Found(route, params);
            }
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        RouteMatch::NotFound
    } else {
        RouteMatch::MethodNotAllowed(allowed)
    }
}

/// [`match_route`] over several tables (each area's), in order: the first table with a route
/// for `method` at `path` wins; otherwise every method the tables answer there, or not found.
pub fn match_tables<'a, R, A>(
    tables: &[&'a [RouteSpec<R, A>]],
    method: Method,
    path: &str,
) -> RouteMatch<'a, R, A> {
    let mut allowed = Vec::new();
    for table in tables {
        match match_route(table, method, path) {
            found @ RouteMatch::Found(..) => return found,
            RouteMatch::MethodNotAllowed(m) => allowed.extend(m),
            RouteMatch::NotFound => {}
        }
    }
    if allowed.is_empty() {
        RouteMatch::NotFound
    } else {
        RouteMatch::MethodNotAllowed(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[RouteSpec<u8, ()>] = &[
        RouteSpec {
            id: 1,
            method: Method::Get,
            pattern: "/v1/orgs/{org}",
            body_limit: BodyLimit::NONE,
            auth: (),
        },
        RouteSpec {
            id: 2,
            method: Method::Delete,
            pattern: "/v1/orgs/{org}",
            body_limit: BodyLimit::NONE,
            auth: (),
        },
        RouteSpec {
            id: 3,
            method: Method::Get,
            pattern: "/v1/orgs/{org}/keys/{key}",
            body_limit: BodyLimit::NONE,
            auth: (),
        },
    ];

    #[test]
    fn tables_are_searched_in_order_and_their_methods_pooled() {
        const OTHER: &[RouteSpec<u8, ()>] = &[RouteSpec {
            id: 9,
            method: Method::Post,
            pattern: "/v1/orgs/{org}",
            body_limit: BodyLimit::NONE,
            auth: (),
        }];
        match match_tables(&[TABLE, OTHER], Method::Post, "/v1/orgs/acme") {
            RouteMatch::Found(r, _) => assert_eq!(r.id, 9),
            other => panic!("{other:?}"),
        }
        match match_tables(&[TABLE, OTHER], Method::Put, "/v1/orgs/acme") {
            RouteMatch::MethodNotAllowed(m) => {
                assert_eq!(m, vec![Method::Get, Method::Delete, Method::Post])
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            match_tables(&[TABLE, OTHER], Method::Get, "/v1/nothing"),
            RouteMatch::NotFound
        ));
    }

    #[test]
    fn captures_params_and_distinguishes_405_from_404() {
        match match_route(TABLE, Method::Get, "/v1/orgs/acme/keys/k%201") {
            RouteMatch::Found(r, p) => {
                assert_eq!(r.id, 3);
                assert_eq!(p.get("org"), Some("acme"));
                assert_eq!(p.get("key"), Some("k 1"));
            }
            other => panic!("{other:?}"),
        }
        match match_route(TABLE, Method::Post, "/v1/orgs/acme") {
            RouteMatch::MethodNotAllowed(m) => assert_eq!(m, vec![Method::Get, Method::Delete]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            match_route(TABLE, Method::Get, "/v1/orgs"),
            RouteMatch::NotFound
        ));
        assert!(matches!(
            match_route(TABLE, Method::Get, "/v1/orgs//keys/x"),
            RouteMatch::NotFound
        ));
        assert!(matches!(
            match_route(TABLE, Method::Get, "/v1/orgs/a/keys/%zz"),
            RouteMatch::NotFound
        ));
        for bad in [
            "%+1", "%-1", "%1", "%", "%%41", "a%2", "%e9", "%C3%28", "%ZZ",
        ] {
            assert!(
                matches!(
                    match_route(TABLE, Method::Get, &format!("/v1/orgs/a/keys/{bad}")),
                    RouteMatch::NotFound
                ),
                "{bad}"
            );
        }
        match match_route(TABLE, Method::Get, "/v1/orgs/%41%c3%a9%2F/keys/%25") {
            RouteMatch::Found(_, p) => {
                assert_eq!(p.get("org"), Some("Aé/"));
                assert_eq!(p.get("key"), Some("%"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            match_route(TABLE, Method::Head, "/v1/orgs/a"),
            RouteMatch::Found(..)
        ));
    }
}

#[cfg(test)]
mod properties {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    use proptest::prelude::*;

    use super::*;

    const TABLE: &[RouteSpec<u8, ()>] = &[RouteSpec {
        id: 1,
        method: Method::Get,
        pattern: "/v1/orgs/{org}/keys/{key}",
        body_limit: BodyLimit::NONE,
        auth: (),
    }];

    proptest! {
        /// Any text, percent-encoded as one segment, is captured and decoded back to itself.
        #[test]
        fn encoded_segments_decode_to_themselves(s in "\\PC{1,24}") {
            let enc = utf8_percent_encode(&s, NON_ALPHANUMERIC).to_string();
            match match_route(TABLE, Method::Get, &format!("/v1/orgs/{enc}/keys/k")) {
                RouteMatch::Found(_, p) => prop_assert_eq!(p.get("org"), Some(s.as_str())),
                other => prop_assert!(false, "{other:?}"),
            }
        }

        /// A `%` not followed by two hex digits never matches.
        #[test]
        fn malformed_escapes_never_match(pre in "[a-z]{0,4}", bad in "[^0-9a-fA-F/?#]{1}[0-9a-zA-Z+-]?") {
            let path = format!("/v1/orgs/{pre}%{bad}/keys/k");
            prop_assert!(matches!(match_route(TABLE, Method::Get, &path), RouteMatch::NotFound), "{path}");
        }
    }
}
