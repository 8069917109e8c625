//! A loopback fake LLM provider speaking the Anthropic Messages, OpenAI Chat Completions (and
//! embeddings) and Google Gemini `generateContent` (and `batchEmbedContents`) wire formats with
//! streaming off. It checks the API key in each provider's own header, refuses streaming
//! requests, answers with the review the test configured, and records every request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use e2e::review::{port_arg, serve, Request, Response};
use serde_json::{json, Value};

#[derive(Default)]
struct State {
    api_key: String,
    reply: Value,
    faults: Vec<Value>,
    requests: Vec<Value>,
    /// Streamed answers: path, length, bytes the client took.
    streamed: Vec<(String, u64, Arc<AtomicU64>)>,
}

/// A deterministic bag-of-words embedding: texts sharing identifiers get close vectors.
fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; 64];
    for tok in text
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|t| t.len() > 1)
    {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in tok.to_ascii_lowercase().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        v[(h % 64) as usize] += 1.0;
    }
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter().map(|x| x / n).collect()
}

fn handle(state: &Mutex<State>, req: Request) -> Response {
    let mut st = state.lock().unwrap();
    if let Some(admin) = req.path.strip_prefix("/__admin/") {
        return match (req.method.as_str(), admin) {
            ("PUT", "config") => {
                let v = req.json();
                st.api_key = v["api_key"].as_str().unwrap_or("").to_owned();
                st.reply = v["reply"].clone();
                Response::json(200, &json!({"ok": true}))
            }
            ("POST", "faults") => {
                st.faults.push(req.json());
                Response::json(200, &json!({"ok": true}))
            }
            ("POST", "faults/clear") => {
                st.faults.clear();
                Response::json(200, &json!({"ok": true}))
            }
            ("GET", "requests") => Response::json(200, &Value::Array(st.requests.clone())),
            ("GET", "streamed") => Response::json(200, &streamed(&st.streamed)),
            _ => Response::json(404, &json!({"error": "not found"})),
        };
    }
    st.requests.push(req.record());
    let path = req.path.clone();
    for f in st.faults.iter_mut() {
        let times = f["times"].as_u64().unwrap_or(0);
        if times > 0
            && f["path_contains"]
                .as_str()
                .is_some_and(|p| path.contains(p))
        {
            f["times"] = json!(times - 1);
            if let Some(len) = f["stream_bytes"].as_u64() {
                let sent = Arc::new(AtomicU64::new(0));
                let r = Response::streamed(len, sent.clone());
                st.streamed.push((path.clone(), len, sent));
                return r;
            }
            let mut r = Response::json(
                f["status"].as_u64().unwrap_or(500) as u16,
                &json!({"error": {"message": "injected fault", "type": "api_error"}}),
            );
            if let Some(s) = f["retry_after"].as_u64() {
                r = r.with_header("retry-after", &s.to_string());
            }
            return r;
        }
    }
    let body = req.json();
    let key = st.api_key.clone();
    let reply_text = match &st.reply {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let prompt_tokens = (req.body.len() / 4) as u64;
    if body["stream"] == true {
        return Response::json(
            400,
            &json!({"error": {"message": "this fake serves streaming off only"}}),
        );
    }
    if path.ends_with("/messages") {
        if req.header("x-api-key") != Some(key.as_str())
            || req.header("anthropic-version").is_none()
        {
            return Response::json(
                401,
                &json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
            );
        }
        if body["model"].as_str().is_none() || body["max_tokens"].as_u64().is_none() {
            return Response::json(
                400,
                &json!({"type": "error", "error": {"type": "invalid_request_error", "message": "model and max_tokens are required"}}),
            );
        }
        return Response::json(
            200,
            &json!({"id": "msg_01fake", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": reply_text}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": 120}}),
        );
    }
    let bearer_ok = req.header("authorization") == Some(format!("Bearer {key}").as_str());
    if path.ends_with("/chat/completions") {
        if !bearer_ok {
            return Response::json(
                401,
                &json!({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "code": "invalid_api_key"}}),
            );
        }
        return Response::json(
            200,
            &json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1795000000, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply_text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 120, "total_tokens": prompt_tokens + 120}}),
        );
    }
    if path.ends_with("/embeddings") {
        if !bearer_ok {
            return Response::json(
                401,
                &json!({"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}}),
            );
        }
        let inputs: Vec<String> = match &body["input"] {
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().unwrap_or("").to_owned())
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => vec![],
        };
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embed(t)}))
            .collect();
        return Response::json(
            200,
            &json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}}),
        );
    }
    let gemini_ok =
        req.header("x-goog-api-key") == Some(key.as_str()) && req.query("key").is_none();
    if path.ends_with(":generateContent") {
        if !gemini_ok {
            return Response::json(
                400,
                &json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}}),
            );
        }
        return Response::json(
            200,
            &json!({"candidates": [{"content": {"parts": [{"text": reply_text}], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": 120, "totalTokenCount": prompt_tokens + 120}, "modelVersion": "fake"}),
        );
    }
    if path.ends_with(":batchEmbedContents") {
        if !gemini_ok {
            return Response::json(
                400,
                &json!({"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}),
            );
        }
        let embs: Vec<Value> = body["requests"].as_array().cloned().unwrap_or_default().iter()
            .map(|r| json!({"values": embed(r["content"]["parts"][0]["text"].as_str().unwrap_or(""))})).collect();
        return Response::json(200, &json!({"embeddings": embs}));
    }
    Response::json(404, &json!({"error": {"message": "unknown endpoint"}}))
}

fn streamed(all: &[(String, u64, Arc<AtomicU64>)]) -> Value {
    all.iter()
        .map(|(path, len, sent)| json!({"path": path, "len": len, "sent": sent.load(Ordering::SeqCst)}))
        .collect()
}

fn main() {
    let state = Arc::new(Mutex::new(State::default()));
    serve(port_arg(), Arc::new(move |req| handle(&state, req)))
}
