//! The access log: one JSON line per request with fixed fields only — never headers, bodies,
//! query strings or tokens, so a secret cannot reach the logs by accident.

use serde::Serialize;

pub use edgeplane_runtime::log::{error, info, warn};

#[derive(Serialize)]
pub struct AccessLine<'a> {
    pub level: &'static str,
    pub msg: &'static str,
    pub request_id: &'a str,
    pub method: &'a str,
    /// The matched route pattern (`/v1/orgs/{org}`), not the raw path.
    pub route: &'a str,
    pub status: u16,
    pub duration_ms: i64,
    pub principal: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'a str>,
}

pub fn access(line: &AccessLine<'_>) {
    if let Ok(s) = serde_json::to_string(line) {
        worker::console_log!("{s}");
    }
}
