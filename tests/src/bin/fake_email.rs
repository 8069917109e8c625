//! A loopback fake of the Resend email API: `POST /emails` with `Authorization: Bearer <key>` and
//! JSON `{from, to, subject, text, html}`, answering `{"id"}` like Resend (and Resend's error
//! shapes for a missing or wrong key and missing fields). Delivered messages are kept for the
//! tests, which read them at `GET /__admin/messages?to=<address>`; `POST /__admin/faults`
//! `{"status", "times", "to"?}` makes the next sends (to that recipient) fail.
//!
//! usage: fake_email --port N --api-key KEY   (prints `listening on http://127.0.0.1:PORT`)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use e2e::review::{port_arg, serve, Request, Response};
use serde_json::{json, Value};

#[derive(Default)]
struct State {
    api_key: String,
    messages: Vec<Value>,
    /// (status, times left, only for this recipient)
    faults: Vec<(u16, u32, Option<String>)>,
    next_id: u64,
}

fn resend_error(status: u16, name: &str, message: &str) -> Response {
    Response::json(
        status,
        &json!({"statusCode": status, "name": name, "message": message}),
    )
}

fn recipients(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) if !a.is_empty() && a.len() <= 50 => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>(),
        _ => None,
    }
}

fn send(st: &mut State, req: &Request) -> Response {
    let auth = req.header("authorization").unwrap_or("");
    let Some(key) = auth.strip_prefix("Bearer ") else {
        return resend_error(
            401,
            "missing_api_key",
            "Missing API key in the authorization header.",
        );
    };
    if key != st.api_key {
        return resend_error(403, "invalid_api_key", "API key is invalid.");
    }
    if !req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return resend_error(
            422,
            "validation_error",
            "Content-Type must be application/json.",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return resend_error(422, "validation_error", "Body is not valid JSON.");
    };
    for field in ["from", "to", "subject"] {
        if body.get(field).is_none() {
            return resend_error(
                422,
                "missing_required_field",
                &format!("The `{field}` field is missing."),
            );
        }
    }
    let Some(to) = recipients(&body["to"]) else {
        return resend_error(422, "validation_error", "Invalid `to` field.");
    };
    if body.get("text").is_none() && body.get("html").is_none() {
        return resend_error(
            422,
            "validation_error",
            "Either `text` or `html` is required.",
        );
    }
    if let Some(f) = st
        .faults
        .iter_mut()
        .find(|f| f.1 > 0 && f.2.as_ref().is_none_or(|r| to.contains(r)))
    {
        f.1 -= 1;
        let status = f.0;
        return resend_error(status, "application_error", "Injected failure.");
    }
    st.next_id += 1;
    let id = format!("4ef9a417-02e9-4d39-ad75-{:012x}", st.next_id);
    st.messages.push(json!({
        "id": id, "from": body["from"], "to": to, "subject": body["subject"],
        "text": body["text"], "html": body["html"],
    }));
    Response::json(200, &json!({"id": id}))
}

fn handle(state: &Mutex<State>, req: Request) -> Response {
    let mut st = state.lock().unwrap();
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/emails") => send(&mut st, &req),
        ("GET", "/__admin/messages") => {
            let to = req.query("to").map(str::to_ascii_lowercase);
            let list: Vec<Value> = st
                .messages
                .iter()
                .filter(|m| {
                    to.as_ref().is_none_or(|t| {
                        m["to"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(t.as_str())))
                    })
                })
                .cloned()
                .collect();
            Response::json(200, &Value::Array(list))
        }
        ("POST", "/__admin/faults") => {
            let v = req.json();
            let status = v["status"].as_u64().unwrap_or(500) as u16;
            let times = v["times"].as_u64().unwrap_or(1) as u32;
            let to = v["to"].as_str().map(str::to_ascii_lowercase);
            st.faults.push((status, times, to));
            Response::json(200, &json!({"ok": true}))
        }
        _ => resend_error(404, "not_found", "The requested endpoint does not exist."),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let api_key = args
        .iter()
        .position(|a| a == "--api-key")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .expect("--api-key KEY");
    let state = Arc::new(Mutex::new(State {
        api_key,
        ..State::default()
    }));
    serve(port_arg(), Arc::new(move |req| handle(&state, req)))
}
