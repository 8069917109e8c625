//! The end-to-end harness. It starts nothing: `scripts/test` starts the real workers in
//! `wrangler dev` and hands over `BASE_URL` and the seeded credentials (`EP_STACK_FILE`); tests
//! drive the stack over HTTP exactly as a client would.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod access;
pub mod federation;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod identity;
pub mod review;

use serde_json::Value;

/// The stack under test, as seeded by `scripts/test` (`scripts/seed.py`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Stack {
    pub base_url: String,
    pub org_id: String,
    pub org_slug: String,
    pub owner_email: String,
    /// An owner-level API key with every scope.
    pub api_key: String,
}

pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let path = std::env::var("EP_STACK_FILE").expect(
            "EP_STACK_FILE is not set: run the end-to-end tests through scripts/test, which starts \
             the local stack and seeds it",
        );
        let text = std::fs::read_to_string(&path).expect("read EP_STACK_FILE");
        let mut s: Stack = serde_json::from_str(&text).expect("parse EP_STACK_FILE");
        if let Ok(b) = std::env::var("BASE_URL") {
            s.base_url = b.trim_end_matches('/').to_owned();
        }
        s
    })
}

/// The stack's combined log (both workers), for asserting what was or was not logged.
pub fn stack_log() -> String {
    std::env::var("EP_STACK_LOG")
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Asserts the status, with the body in the failure message.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts a product error: status, code, and the documented body shape with a request id
    /// that matches the `x-request-id` header.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        let body = self.json();
        let err = body
            .get("error")
            .unwrap_or_else(|| panic!("no error object: {}", self.text));
        assert_eq!(
            err["code"], code,
            "unexpected error code; body: {}",
            self.text
        );
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
        let rid = err["request_id"].as_str().expect("request_id");
        assert_eq!(Some(rid.to_owned()), self.header("x-request-id"));
        self
    }
}

/// An HTTP client bound to the stack, optionally with a bearer credential.
#[derive(Clone)]
pub struct Client {
    http: reqwest::blocking::Client,
    pub base: String,
    bearer: Option<String>,
}

impl Default for Client {
    fn default() -> Self {
        Self::anonymous()
    }
}

impl Client {
    pub fn anonymous() -> Self {
        Self {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: stack().base_url.clone(),
            bearer: None,
        }
    }

    /// The seeded owner API key.
    pub fn owner_key() -> Self {
        Self::anonymous().with_bearer(&stack().api_key)
    }

    pub fn with_bearer(mut self, token: &str) -> Self {
        self.bearer = Some(token.to_owned());
        self
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::blocking::RequestBuilder {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(b) = &self.bearer {
            rb = rb.bearer_auth(b);
        }
        rb
    }

    pub fn send(&self, rb: reqwest::blocking::RequestBuilder) -> Resp {
        let r = rb.send().expect("request failed to send");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().unwrap_or_default();
        Resp {
            status,
            headers,
            text,
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::GET, path))
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::DELETE, path))
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(self.request(reqwest::Method::POST, path).json(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(self.request(reqwest::Method::PATCH, path).json(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(self.request(reqwest::Method::PUT, path).json(body))
    }

    /// A raw body with an explicit content type (for malformed or non-JSON bodies).
    pub fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Resp {
        self.send(
            self.request(reqwest::Method::POST, path)
                .header("content-type", content_type)
                .body(body),
        )
    }
}

/// Triggers the local stack's scheduled handler and waits until this run (not an earlier one)
/// is recorded as finished in `/healthz`: its tasks are done when this returns. Returns the
/// run's recorded finish time.
pub fn run_cron() -> i64 {
    let c = Client::anonymous();
    let last_run =
        || c.get("/healthz").expect(200).json()["cron"]["last_run_finished_at_ms"].as_i64();
    let before = last_run().unwrap_or(0);
    let r = c.get("/__scheduled?cron=*/5+*+*+*+*");
    assert_eq!(r.status, 200, "{}", r.text);
    wait_for("this cron run in healthz", Duration::from_secs(30), || {
        last_run().filter(|t| *t > before)
    })
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn org_path(suffix: &str) -> String {
    format!("/v1/orgs/{}{}", stack().org_id, suffix)
}
