//! Transport-level rules that do not need the runtime: route matching, body limits, strict JSON.

pub mod body;
pub mod route;

pub use body::{parse_json, require_json_content_type, BodyLimit};
pub use route::{match_route, match_tables, Method, Params, RouteMatch, RouteSpec};
