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
            message,
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

    fn kind(&self) -> &'static str {
        match self {
            CliError::Server { .. } => "server",
            CliError::Usage(_) => "usage",
            CliError::Network(_) => "network",
            CliError::Auth(_) => "auth",
            CliError::Verify(_) => "verification_failed",
        }
    }

    fn detail(&self) -> String {
        match self {
            CliError::Server { message, .. } => message.clone(),
            CliError::Usage(m) | CliError::Network(m) | CliError::Auth(m) | CliError::Verify(m) => {
                m.clone()
            }
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
