//! The stack a benchmark drives: `scripts/bench` starts it and passes the seeded credentials file
//! (the same fields as `.edgeplane/dev.json`).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Stack {
    pub base_url: String,
    pub org_id: String,
    pub org_slug: String,
    pub owner_email: String,
    pub api_key: String,
    /// Which runtime serves the stack (printed with every table).
    #[serde(default)]
    pub runtime: String,
}

/// Reads `EP_STACK_FILE` (written by scripts/bench).
pub fn from_env() -> Result<Stack, String> {
    let path = std::env::var("EP_STACK_FILE")
        .map_err(|_| "EP_STACK_FILE is not set: run benchmarks through scripts/bench".to_owned())?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let mut s: Stack = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    if s.runtime.is_empty() {
        s.runtime = std::env::var("EP_BENCH_RUNTIME").unwrap_or_else(|_| "unknown".into());
    }
    Ok(s)
}
