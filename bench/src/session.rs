//! A real sign-in for benchmarks that measure a signed-in person: a magic link requested from
//! the gateway, read back from the Resend-API email fake `scripts/bench` starts, and verified.

use std::time::Duration;

use serde_json::{json, Value};

/// Signs `email` in through the JSON API; returns the access token.
pub async fn sign_in(base: &str, fake: &str, email: &str) -> Result<String, String> {
    let http = reqwest::Client::new();
    let err = |e: reqwest::Error| e.to_string();
    let before = messages(&http, fake, email).await?.len();
    let r = http
        .post(format!("{base}/v1/auth/magic-link"))
        .header("cf-connecting-ip", "192.0.2.10")
        .json(&json!({ "email": email }))
        .send()
        .await
        .map_err(err)?;
    if r.status().as_u16() != 202 {
        return Err(format!("magic-link request answered {}", r.status()));
    }
    let mut token = None;
    for _ in 0..100 {
        if let Some(m) = messages(&http, fake, email).await?.get(before) {
            let text = m["text"].as_str().unwrap_or_default();
            if let Some(at) = text.find("#token=") {
                token = text.get(at + 7..at + 7 + 48).map(str::to_owned);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = token.ok_or("no sign-in email arrived")?;
    let v: Value = http
        .post(format!("{base}/v1/auth/magic-link/verify"))
        .header("cf-connecting-ip", "192.0.2.10")
        .json(&json!({ "token": token }))
        .send()
        .await
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    v["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("sign-in failed: {v}"))
}

async fn messages(http: &reqwest::Client, fake: &str, to: &str) -> Result<Vec<Value>, String> {
    http.get(format!("{fake}/__admin/messages"))
        .query(&[("to", to)])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())
}
