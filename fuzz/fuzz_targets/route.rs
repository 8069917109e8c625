//! Route matching and path-segment decoding: never panics; a captured parameter is never
//! empty; and any segment text, percent-encoded, is matched and decoded back to itself.
#![no_main]

use edgeplane_core::http::{match_route, BodyLimit, Method, RouteMatch, RouteSpec};
use libfuzzer_sys::fuzz_target;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

#[path = "common.rs"]
mod common;

const fn route(id: u8, method: Method, pattern: &'static str) -> RouteSpec<u8, ()> {
    RouteSpec {
        id,
        method,
        pattern,
        body_limit: BodyLimit::NONE,
        auth: (),
    }
}

/// A sample of the gateway's patterns: literals, one and several captures, shared prefixes.
const TABLE: &[RouteSpec<u8, ()>] = &[
    route(1, Method::Get, "/livez"),
    route(2, Method::Get, "/v1/orgs/{org}"),
    route(3, Method::Patch, "/v1/orgs/{org}"),
    route(4, Method::Get, "/v1/orgs/{org}/members"),
    route(5, Method::Delete, "/v1/orgs/{org}/members/{user}"),
    route(
        6,
        Method::Get,
        "/v1/orgs/{org}/models/{model}/versions/{version}/download",
    ),
    route(
        7,
        Method::Get,
        "/api/v1/models/{model}/versions/{version}/download",
    ),
    route(8, Method::Post, "/hooks/{platform}/{integration}"),
    route(
        9,
        Method::Put,
        "/api/v1/federation/rounds/{round}/uploads/{upload}/parts/{part}",
    ),
];

fuzz_target!(|data: &[u8]| {
    let (ctl, rest) = common::split_first(data);
    let methods = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
        Method::Head,
        Method::Options,
    ];
    let method = methods[ctl as usize % methods.len()];
    let Ok(path) = std::str::from_utf8(rest) else {
        return;
    };
    let _ = Method::parse(path);
    if let RouteMatch::Found(r, params) = match_route(TABLE, method, path) {
        for name in r
            .pattern
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            assert!(
                params.get(name).is_some_and(|v| !v.is_empty()),
                "{name} in {path:?}"
            );
        }
    }
    // Round trip: the text as one encoded segment decodes to itself.
    if !path.is_empty() {
        let enc = utf8_percent_encode(path, NON_ALPHANUMERIC).to_string();
        match match_route(TABLE, Method::Delete, &format!("/v1/orgs/{enc}/members/x")) {
            RouteMatch::Found(r, params) => {
                assert_eq!(r.id, 5);
                assert_eq!(params.get("org"), Some(path));
            }
            other => panic!("{path:?} did not round-trip: {other:?}"),
        }
    }
});
