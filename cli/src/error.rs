//! What can go wrong, and the exit code each answer maps to.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | done |
//! | 1 | the server refused (any 4xx/5xx other than an authentication failure) |
//! | 2 | usage: bad arguments, missing configuration (no org, no URL) |
//! | 3 | network: the server could not be reached, or its answer could not be read |
//! | 4 | authentication: not signed in, the token expired and could not be refreshed, login denied |
//! | 5 | verification failed: an audit chain or checkpoint, or a download's checksum, does not check out |
//! | 130 | interrupted (Ctrl-C), after undoing what the command had started (see [`crate::interrupt`]) |

use std::fmt;

#[derive(Debug)]
pub enum CliError {
    /// The server answered with an error: `{"error": {"code", "message", "request_id"}}` (or an
    /// RFC 6749 `{"error", "error_description"}` from `/oauth/*`).
    Server {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    Usage(String),
    Network(String),
    Auth(String),
    Verify(String),
    /// Ctrl-C: what was left behind, or undone.
    Interrupted(String),
}

pub type Result<T> = std::result::Result<T, CliError>;

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Server { status: 401, .. } | CliError::Auth(_) => 4,
            CliError::Server { .. } => 1,
            CliError::Usage(_) => 2,
            CliError::Network(_) => 3,
            CliError::Verify(_) => 5,
            CliError::Interrupted(_) => 130,
        }
    }

    pub fn usage(msg: impl Into<String>) -> Self {
        CliError::Usage(msg.into())
    }

    pub fn network(msg: impl fmt::Display) -> Self {
        CliError::Network(msg.to_string())
    }

    /// The answer of a failed request: the error body's fields when it has them.
    pub fn from_answer(status: u16, body: &[u8], request_id: Option<String>) -> Self {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let (code, message, rid) = if let Some(e) = v.get("error").filter(|e| e.is_object()) {
            (
                e["code"].as_str().unwrap_or("unknown").to_owned(),
                e["message"].as_str().unwrap_or_default().to_owned(),
                e["request_id"].as_str().map(str::to_owned),
            )
        } else if let Some(code) = v.get("error").and_then(|e| e.as_str()) {
            (
                code.to_owned(),
                v["error_description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                None,
            )
        } else {
            (
                format!("http_{status}"),
                String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                None,
            )
        };
        CliError::Server {
            status,
            code,
            // One line, whatever the body held (a proxy's HTML page has many).
            message: message.split_whitespace().collect::<Vec<_>>().join(" "),
            request_id: rid.or(request_id),
        }
    }

    /// The machine form printed with `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            CliError::Server {
                status,
                code,
                message,
                request_id,
            } => serde_json::json!({"error": {"status": status, "code": code,
                "message": message, "request_id": request_id}}),
            other => {
                serde_json::json!({"error": {"code": other.kind(), "message": other.detail()}})
            }
        }
    }

    /// Prints the error on stderr (one line, or the JSON form) and exits with its code.
    pub fn exit(&self, json: bool) -> ! {
        if json {
            eprintln!("{}", self.to_json());
        } else {
            eprintln!("{self}");
        }
        std::process::exit(self.exit_code())
    }

    fn kind(&self) -> &'static str {
        match self {
            CliError::Server { .. } => "server",
            CliError::Usage(_) => "usage",
            CliError::Network(_) => "network",
            CliError::Auth(_) => "auth",
            CliError::Verify(_) => "verification_failed",
            CliError::Interrupted(_) => "interrupted",
        }
    }

    fn detail(&self) -> String {
        match self {
            CliError::Server { message, .. } => message.clone(),
            CliError::Usage(m)
            | CliError::Network(m)
            | CliError::Auth(m)
            | CliError::Verify(m)
            | CliError::Interrupted(m) => m.clone(),
        }
    }
}

impl fmt::Display for CliError {
    /// One line: `error: <code> (HTTP <status>): <message> [request_id <id>]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Server {
                status,
                code,
                message,
                request_id,
            } => {
                write!(f, "error: {code} (HTTP {status}): {message}")?;
                if let Some(id) = request_id {
                    write!(f, " [request_id {id}]")?;
                }
                Ok(())
            }
            other => write!(f, "error: {}: {}", other.kind(), other.detail()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn each_kind_of_failure_has_its_documented_exit_code() {
        let server = |status| CliError::from_answer(status, b"{}", None);
        assert_eq!(server(404).exit_code(), 1);
        assert_eq!(server(500).exit_code(), 1);
        assert_eq!(server(401).exit_code(), 4);
        assert_eq!(CliError::usage("x").exit_code(), 2);
        assert_eq!(CliError::network("x").exit_code(), 3);
        assert_eq!(CliError::Auth("x".into()).exit_code(), 4);
        assert_eq!(CliError::Verify("x".into()).exit_code(), 5);
        assert_eq!(CliError::Interrupted("x".into()).exit_code(), 130);
    }

    #[test]
    fn a_refusal_is_one_line_with_code_message_and_request_id() {
        let body = br#"{"error": {"code": "not_found", "message": "no such key",
            "request_id": "req_body"}}"#;
        let e = CliError::from_answer(404, body, Some("req_header".into()));
        // The body's request id wins over the header's.
        assert_eq!(
            e.to_string(),
            "error: not_found (HTTP 404): no such key [request_id req_body]"
        );
        let j = e.to_json();
        assert_eq!(j["error"]["code"], "not_found");
        assert_eq!(j["error"]["request_id"], "req_body");
        // An OAuth answer (`/oauth/*`): its error and description; the header's request id.
        let e = CliError::from_answer(
            400,
            br#"{"error": "invalid_grant", "error_description": "used"}"#,
            Some("req_h".into()),
        );
        assert_eq!(
            e.to_string(),
            "error: invalid_grant (HTTP 400): used [request_id req_h]"
        );
        // Not JSON: the status as the code, the start of the body as the message.
        let e = CliError::from_answer(502, b"Bad Gateway\nupstream", None);
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
        assert_eq!(
            e.to_string(),
            "error: http_502 (HTTP 502): Bad Gateway upstream"
        );
    }

    #[test]
    fn an_interrupt_says_what_was_left() {
        let e = CliError::Interrupted("nothing was registered".into());
        assert_eq!(e.to_string(), "error: interrupted: nothing was registered");
        assert_eq!(e.to_json()["error"]["code"], "interrupted");
    }
}
