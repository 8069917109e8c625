//! Harness for the code review tests: a small HTTP/1.1 server the loopback fakes are built on
//! (`src/bin/fake_platforms.rs`, `src/bin/fake_llm.rs`), spawning those fakes as separate
//! processes, and helpers to sign webhooks and drive the review API.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::{org_path, stack_log, wait_for, Client, Resp};

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 server (keep-alive, Content-Length and chunked request bodies).
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Request {
    /// When the fake read the request (ms since the epoch).
    pub at_ms: u64,
    pub method: String,
    /// Path without the query, still percent-encoded.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// A JSON record of the request, as the fakes' admin endpoints report it.
    pub fn record(&self) -> Value {
        json!({
            "at_ms": self.at_ms, "method": self.method, "path": self.path,
            "query": self.query.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "headers": self.headers.iter().map(|(k, v)| json!([k.to_ascii_lowercase(), v])).collect::<Vec<_>>(),
            "body": String::from_utf8_lossy(&self.body),
        })
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Instead of `body`: this many bytes, generated as they are sent with chunked encoding and
    /// no declared length, counting into `sent` what the client actually took.
    pub stream: Option<(u64, Arc<AtomicU64>)>,
}

impl Response {
    pub fn json(status: u16, v: &Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: v.to_string().into_bytes(),
            stream: None,
        }
    }
    pub fn text(status: u16, t: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: t.as_bytes().to_vec(),
            stream: None,
        }
    }
    /// A 200 whose body is `len` bytes streamed without a declared length.
    pub fn streamed(len: u64, sent: Arc<AtomicU64>) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: Vec::new(),
            stream: Some((len, sent)),
        }
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// One percent-encoded path segment, decoded.
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if n == 0 {
                let mut end = String::new();
                r.read_line(&mut end).ok()?;
                break;
            }
            let mut chunk = vec![0; n];
            r.read_exact(&mut chunk).ok()?;
            body.extend(chunk);
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).ok()?;
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = vec![0; n];
        r.read_exact(&mut body).ok()?;
    }
    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
    let query = form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Some(Request {
        at_ms: now_ms(),
        method,
        path: path.to_owned(),
        query,
        headers,
        body,
    })
}

fn write_response(w: &mut TcpStream, resp: &Response) -> std::io::Result<()> {
    let framing = match &resp.stream {
        Some(_) => "transfer-encoding: chunked".to_owned(),
        None => format!("content-length: {}", resp.body.len()),
    };
    let mut head = format!(
        "HTTP/1.1 {} X\r\n{framing}\r\nconnection: keep-alive\r\n",
        resp.status
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    let Some((len, sent)) = &resp.stream else {
        w.write_all(&resp.body)?;
        return w.flush();
    };
    // Generated as it goes: the fake never holds the body, and stops when the client does.
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = *len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        w.write_all(format!("{n:x}\r\n").as_bytes())?;
        w.write_all(&chunk[..n])?;
        w.write_all(b"\r\n")?;
        sent.fetch_add(n as u64, Ordering::SeqCst);
        left -= n as u64;
    }
    w.write_all(b"0\r\n\r\n")?;
    w.flush()
}

pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// Binds 127.0.0.1 on `port` (0: any free port), prints `listening on http://127.0.0.1:PORT` on
/// stdout (the line the harness waits for) and serves forever, a thread per connection.
pub fn serve(port: u16, handler: Handler) -> ! {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    for stream in listener.incoming().flatten() {
        let h = handler.clone();
        std::thread::spawn(move || {
            let Ok(mut w) = stream.try_clone() else {
                return;
            };
            let mut r = BufReader::new(stream);
            while let Some(req) = read_request(&mut r) {
                let resp = h(req);
                if write_response(&mut w, &resp).is_err() {
                    break;
                }
            }
        });
    }
    std::process::exit(1)
}

pub fn port_arg() -> u16 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Spawning fakes.
// ---------------------------------------------------------------------------------------------

/// A fake running as its own process; killed when dropped.
pub struct Fake {
    child: Child,
    pub base: String,
    http: reqwest::blocking::Client,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fake {
    pub fn spawn(bin: &str) -> Fake {
        let mut child = Command::new(bin)
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .expect("fake prints its address");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_owned();
        Fake {
            child,
            base,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub fn admin(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let r = rb.send().expect("fake admin request");
        assert!(r.status().is_success(), "fake admin {path}: {}", r.status());
        r.json().unwrap_or(Value::Null)
    }

    /// Every request the fake served (admin calls excluded), oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.admin(reqwest::Method::GET, "/__admin/requests", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Makes the next request matching `method` and `path_contains` answer 200 with a body of
    /// `bytes` bytes, streamed without a declared length; [`Fake::streamed`] reports how much of
    /// it the client read.
    pub fn oversize(&self, method: &str, path_contains: &str, bytes: u64) {
        self.admin(
            reqwest::Method::POST,
            "/__admin/faults",
            Some(
                &json!({"method": method, "path_contains": path_contains, "times": 1,
                         "stream_bytes": bytes}),
            ),
        );
    }

    /// For each streamed answer: `{"path", "len", "sent"}`, `sent` being the bytes the client
    /// took before it stopped reading.
    pub fn streamed(&self) -> Vec<Value> {
        self.admin(reqwest::Method::GET, "/__admin/streamed", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Makes the next `times` requests matching `method` and `path_contains` (and, when given,
    /// `body_contains`) answer `status` (with `retry_after` seconds when set).
    pub fn fault(
        &self,
        method: &str,
        path_contains: &str,
        body_contains: Option<&str>,
        status: u16,
        times: u32,
        retry_after: Option<u32>,
    ) {
        self.admin(
            reqwest::Method::POST,
            "/__admin/faults",
            Some(&json!({"method": method, "path_contains": path_contains, "body_contains": body_contains,
                         "status": status, "times": times, "retry_after": retry_after})),
        );
    }
}

/// Spawns `src/bin/fake_platforms.rs` (a macro: the binary's path is known only to test
/// targets, through `CARGO_BIN_EXE_*`).
#[macro_export]
macro_rules! fake_platforms {
    () => {
        $crate::review::Fake::spawn(env!("CARGO_BIN_EXE_fake_platforms"))
    };
}

/// Spawns `src/bin/fake_llm.rs`.
#[macro_export]
macro_rules! fake_llm {
    () => {
        $crate::review::Fake::spawn(env!("CARGO_BIN_EXE_fake_llm"))
    };
}

// ---------------------------------------------------------------------------------------------
// Test data.
// ---------------------------------------------------------------------------------------------

pub fn random_hex(n: usize) -> String {
    let mut out = String::new();
    while out.len() < n {
        out.push_str(&hex::encode(
            edgeplane_core::crypto::random_token("").unwrap(),
        ));
    }
    out.truncate(n);
    out
}

pub fn sha() -> String {
    random_hex(40)
}

/// A file in a fake pull request: its patch (hunks) and its content at the head commit.
pub fn file(path: &str, status: &str, patch: &str, content: &str) -> Value {
    json!({"path": path, "status": status, "patch": patch, "content": content})
}

/// A realistic Rust file and a change to it: `handler.rs` gains an unchecked `unwrap()` at new
/// line 12 and loses a bounds check at old line 14.
pub fn sample_files() -> Vec<Value> {
    let content: String = [
        "use crate::auth::verify_token;",
        "use crate::store::Store;",
        "",
        "pub struct Handler {",
        "    store: Store,",
        "}",
        "",
        "impl Handler {",
        "    pub fn handle(&self, req: &Request) -> Response {",
        "        let token = req.header(\"authorization\");",
        "        let user = verify_token(token);",
        "        let id: u64 = req.param(\"id\").parse().unwrap();",
        "        let item = self.store.get(id);",
        "        Response::ok(item)",
        "    }",
        "}",
    ]
    .join("\n")
        + "\n";
    let patch = "@@ -9,7 +9,7 @@ impl Handler {\n     pub fn handle(&self, req: &Request) -> Response {\n         let token = req.header(\"authorization\");\n         let user = verify_token(token);\n-        let id = match req.param(\"id\").parse() { Ok(v) => v, Err(_) => return Response::bad_request() };\n+        let id: u64 = req.param(\"id\").parse().unwrap();\n         let item = self.store.get(id);\n         Response::ok(item)\n     }";
    let auth = "pub fn verify_token(token: Option<&str>) -> Option<User> {\n    let t = token?;\n    decode_and_check_signature(t)\n}\n";
    let auth_patch = "@@ -1,3 +1,4 @@\n pub fn verify_token(token: Option<&str>) -> Option<User> {\n     let t = token?;\n+    log::debug!(\"token {t}\");\n     decode_and_check_signature(t)\n";
    vec![
        file("src/handler.rs", "modified", patch, &content),
        file("src/auth.rs", "modified", auth_patch, auth),
        file(
            "Cargo.lock",
            "modified",
            "@@ -1,2 +1,2 @@\n [[package]]\n-version = \"1\"\n+version = \"2\"",
            "[[package]]\nversion = \"2\"\n",
        ),
        file(
            "vendor/lib/x.rs",
            "added",
            "@@ -0,0 +1 @@\n+fn vendored() {}",
            "fn vendored() {}\n",
        ),
        json!({"path": "assets/logo.png", "status": "added", "binary": true}),
    ]
}

/// The findings the fake model answers with for [`sample_files`]: four on the diff (an added,
/// a removed and an unchanged line, and one in another file), one off it.
pub fn sample_findings() -> Value {
    json!({
        "summary": "One panic on bad input and one secret written to logs.",
        "findings": [
            {"path": "src/handler.rs", "line": 12, "side": "RIGHT", "severity": "high", "title": "Unchecked unwrap on user input",
             "body": "`parse().unwrap()` panics on a malformed id; return 400 instead."},
            {"path": "src/handler.rs", "line": 12, "side": "LEFT", "severity": "medium", "title": "Bounds check removed",
             "body": "The old code rejected bad ids."},
            {"path": "src/auth.rs", "line": 3, "side": "RIGHT", "severity": "critical", "title": "Token logged",
             "body": "Bearer tokens must never reach logs."},
            {"path": "src/handler.rs", "line": 13, "side": "RIGHT", "severity": "info", "title": "Lookup result unchecked",
             "body": "`store.get` may return nothing."},
            {"path": "src/handler.rs", "line": 40, "side": "RIGHT", "severity": "low", "title": "Not on the diff", "body": "dropped"}
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// Webhook payloads shaped like the platforms' own.
// ---------------------------------------------------------------------------------------------

pub struct Pr {
    pub repo_id: u64,
    pub repo_name: String,
    pub number: u64,
    pub head: String,
    pub base: String,
}

impl Pr {
    pub fn new(repo_name: &str, number: u64) -> Self {
        Self {
            repo_id: 1_000_000 + number,
            repo_name: repo_name.into(),
            number,
            head: sha(),
            base: sha(),
        }
    }
}

pub fn github_pull_request(action: &str, pr: &Pr, draft: bool) -> Value {
    let (owner, name) = pr
        .repo_name
        .split_once('/')
        .unwrap_or(("octo", &pr.repo_name));
    let user = json!({"login": "octocat", "id": 583231, "node_id": "MDQ6VXNlcjU4MzIzMQ==", "type": "User", "site_admin": false,
        "avatar_url": "https://avatars.githubusercontent.com/u/583231?v=4", "html_url": "https://github.com/octocat"});
    let repo = json!({"id": pr.repo_id, "node_id": "R_kgDOxyz", "name": name, "full_name": pr.repo_name, "private": true,
        "owner": {"login": owner, "id": 9919, "type": "Organization"}, "html_url": format!("https://github.com/{}", pr.repo_name),
        "default_branch": "main", "visibility": "private", "fork": false, "language": "Rust",
        "created_at": "2024-01-02T03:04:05Z", "pushed_at": "2026-11-20T10:00:00Z"});
    json!({
        "action": action,
        "number": pr.number,
        "pull_request": {
            "url": format!("https://api.github.com/repos/{}/pulls/{}", pr.repo_name, pr.number),
            "id": 1_800_000_000u64 + pr.number, "node_id": "PR_kwDOabc", "number": pr.number, "state": "open", "locked": false,
            "title": "Parse ids in the handler", "user": user, "body": "This change simplifies id parsing.\n\nCloses #12.",
            "created_at": "2026-11-20T10:00:00Z", "updated_at": "2026-11-20T10:05:00Z", "closed_at": null, "merged_at": null,
            "draft": draft, "merged": false, "mergeable": null, "commits": 3, "additions": 12, "deletions": 4, "changed_files": 5,
            "head": {"label": format!("{owner}:feature"), "ref": "feature", "sha": pr.head, "user": user, "repo": repo},
            "base": {"label": format!("{owner}:main"), "ref": "main", "sha": pr.base, "user": user, "repo": repo},
            "author_association": "MEMBER", "requested_reviewers": [], "labels": []
        },
        "repository": repo,
        "organization": {"login": owner, "id": 9919},
        "sender": user,
        "installation": {"id": 4242, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDI0Mg=="}
    })
}

pub fn gitlab_merge_request(
    action: &str,
    project_id: u64,
    path: &str,
    iid: u64,
    head: &str,
    oldrev: Option<&str>,
) -> Value {
    let mut attrs = json!({"id": 9_000_000 + iid, "iid": iid, "target_branch": "main", "source_branch": "feature",
        "source_project_id": project_id, "target_project_id": project_id, "title": "Parse ids in the handler",
        "state": "opened", "merge_status": "can_be_merged", "draft": false, "work_in_progress": false,
        "description": "Simplifies id parsing.", "url": format!("https://gitlab.com/{path}/-/merge_requests/{iid}"),
        "last_commit": {"id": head, "message": "Parse ids", "timestamp": "2026-11-20T10:00:00+00:00",
                        "author": {"name": "Ada", "email": "ada@example.com"}},
        "action": action, "created_at": "2026-11-20 10:00:00 UTC", "updated_at": "2026-11-20 10:05:00 UTC"});
    if let Some(o) = oldrev {
        attrs["oldrev"] = json!(o);
    }
    json!({
        "object_kind": "merge_request", "event_type": "merge_request",
        "user": {"id": 1, "name": "Ada", "username": "ada", "avatar_url": null, "email": "[REDACTED]"},
        "project": {"id": project_id, "name": path.rsplit('/').next(), "path_with_namespace": path,
            "web_url": format!("https://gitlab.com/{path}"), "default_branch": "main", "visibility_level": 0},
        "object_attributes": attrs,
        "labels": [], "changes": {}, "repository": {"name": path.rsplit('/').next(), "url": format!("git@gitlab.com:{path}.git")}
    })
}

pub fn bitbucket_cloud_pr(pr: &Pr) -> Value {
    json!({
        "repository": {"type": "repository", "full_name": pr.repo_name, "name": pr.repo_name.rsplit('/').next(),
                       "uuid": format!("{{{}}}", pr.repo_id), "is_private": true},
        "actor": {"type": "user", "display_name": "Ada", "uuid": "{a1}", "nickname": "ada"},
        "pullrequest": {"type": "pullrequest", "id": pr.number, "title": "Parse ids in the handler", "state": "OPEN", "draft": false,
            "author": {"display_name": "Ada"}, "created_on": "2026-11-20T10:00:00.000000+00:00",
            "source": {"branch": {"name": "feature"}, "commit": {"hash": &pr.head[..12]}, "repository": {"full_name": pr.repo_name}},
            "destination": {"branch": {"name": "main"}, "commit": {"hash": &pr.base[..12]}, "repository": {"full_name": pr.repo_name}},
            "comment_count": 0, "task_count": 0, "close_source_branch": false}
    })
}

pub fn bitbucket_dc_pr(event: &str, pr: &Pr) -> Value {
    let (project, slug) = pr
        .repo_name
        .split_once('/')
        .unwrap_or(("PRJ", &pr.repo_name));
    let repo = json!({"slug": slug, "id": pr.repo_id, "name": slug, "project": {"key": project, "id": 1, "name": project}});
    json!({
        "eventKey": event, "date": "2026-11-20T10:00:00+0000",
        "actor": {"name": "ada", "emailAddress": "ada@example.com", "id": 1, "displayName": "Ada", "slug": "ada", "type": "NORMAL"},
        "pullRequest": {"id": pr.number, "version": 0, "title": "Parse ids in the handler", "state": "OPEN", "open": true,
            "closed": false, "draft": false, "createdDate": 1795000000000u64,
            "fromRef": {"id": "refs/heads/feature", "displayId": "feature", "latestCommit": pr.head, "repository": repo},
            "toRef": {"id": "refs/heads/main", "displayId": "main", "latestCommit": pr.base, "repository": repo},
            "locked": false, "author": {"user": {"name": "ada"}, "role": "AUTHOR"}}
    })
}

// ---------------------------------------------------------------------------------------------
// Driving the review API.
// ---------------------------------------------------------------------------------------------

pub fn create_integration(body: Value) -> Value {
    let r = Client::owner_key()
        .post(&org_path("/integrations"), &body)
        .expect(201)
        .json();
    r["integration"].clone()
}

pub fn create_provider(body: Value) -> Value {
    let r = Client::owner_key()
        .post(&org_path("/llm-providers"), &body)
        .expect(201)
        .json();
    r["llm_provider"].clone()
}

/// Posts a webhook with raw bytes and headers.
pub fn deliver(url: &str, body: &[u8], headers: &[(&str, String)]) -> Resp {
    deliver_as(url, "application/json", body, headers)
}

/// Posts a webhook with raw bytes, a content type and headers.
pub fn deliver_as(url: &str, content_type: &str, body: &[u8], headers: &[(&str, String)]) -> Resp {
    let c = Client::anonymous();
    let mut rb = c
        .request(reqwest::Method::POST, url)
        .header("content-type", content_type)
        .body(body.to_vec());
    for (k, v) in headers {
        rb = rb.header(*k, v);
    }
    c.send(rb)
}

/// The review, once it exists: a webhook's review is written to D1 by the integration's inbox
/// shortly after the webhook is answered, so a read right after a 202 may briefly find nothing.
pub fn get_review(id: &str) -> Value {
    wait_for(
        &format!("review {id} to be recorded"),
        Duration::from_secs(30),
        || try_review(id),
    )
}

fn try_review(id: &str) -> Option<Value> {
    let r = Client::owner_key().get(&org_path(&format!("/reviews/{id}")));
    match r.status {
        404 => None,
        _ => Some(r.expect(200).json()["review"].clone()),
    }
}

/// Waits until the review reaches one of `statuses`.
pub fn wait_review(id: &str, statuses: &[&str], timeout: Duration) -> Value {
    wait_for(
        &format!("review {id} to reach {statuses:?}"),
        timeout,
        || {
            let r = try_review(id)?;
            statuses
                .contains(&r["status"].as_str().unwrap_or(""))
                .then_some(r)
        },
    )
}

/// The integration's reviews, as the API lists them now.
pub fn integration_reviews(integration: &str) -> Vec<Value> {
    list(&format!("/reviews?integration={integration}"), "reviews")
}

/// The integration's recorded deliveries, as the API lists them now (the inbox writes them
/// shortly after answering the platform).
pub fn integration_deliveries(integration: &str) -> Vec<Value> {
    list(
        &format!("/integrations/{integration}/deliveries"),
        "deliveries",
    )
}

fn list(path: &str, field: &str) -> Vec<Value> {
    Client::owner_key().get(&org_path(path)).expect(200).json()[field]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// How many lines of the stack's log contain every one of `needles`.
pub fn log_lines(needles: &[&str]) -> usize {
    stack_log()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// Waits until at least `n` lines of the stack's log contain every one of `needles`: the
/// observable sign that something the workers do in the background has run.
pub fn wait_log(needles: &[&str], n: usize, timeout: Duration) {
    wait_for(&format!("{n} log lines with {needles:?}"), timeout, || {
        (log_lines(needles) >= n).then_some(())
    })
}

/// The gaps in milliseconds between consecutive recorded requests.
pub fn gaps_ms(recorded: &[Value]) -> Vec<u64> {
    recorded
        .windows(2)
        .map(|w| {
            w[1]["at_ms"]
                .as_u64()
                .unwrap()
                .saturating_sub(w[0]["at_ms"].as_u64().unwrap())
        })
        .collect()
}

/// The requests a fake recorded, filtered by method and path fragment.
pub fn recorded(fake: &Fake, method: &str, path_contains: &str) -> Vec<Value> {
    fake.requests()
        .into_iter()
        .filter(|r| {
            r["method"] == method
                && r["path"]
                    .as_str()
                    .is_some_and(|p| p.contains(path_contains))
        })
        .collect()
}

pub fn header_of(rec: &Value, name: &str) -> Option<String> {
    rec["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0] == name)
        .and_then(|h| h[1].as_str())
        .map(str::to_owned)
}

pub fn body_of(rec: &Value) -> Value {
    serde_json::from_str(rec["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

/// Keeps `HashMap` in the public surface small: a map from finding titles to posted positions.
pub type Positions = HashMap<String, Value>;

// ---------------------------------------------------------------------------------------------
// One platform + one provider, wired to fresh fakes.
// ---------------------------------------------------------------------------------------------

/// `github`, `gitlab`, `bitbucket` (Cloud) or `bbdc` (Bitbucket Data Center).
pub fn platform_base(fake: &Fake, platform: &str) -> String {
    match platform {
        "github" => format!("{}/github", fake.base),
        "gitlab" => format!("{}/gitlab/api/v4", fake.base),
        "bitbucket" => format!("{}/bitbucket/2.0", fake.base),
        "bbdc" => format!("{}/bbdc/rest/api/1.0", fake.base),
        other => panic!("unknown platform {other}"),
    }
}

pub fn provider_base(fake: &Fake, kind: &str) -> String {
    match kind {
        "anthropic" => format!("{}/anthropic/v1", fake.base),
        "openai" => format!("{}/openai/v1", fake.base),
        "gemini" => format!("{}/gemini/v1beta", fake.base),
        "openai_compatible" => format!("{}/openrouter/api/v1", fake.base),
        other => panic!("unknown kind {other}"),
    }
}

pub struct Setup {
    pub platform: String,
    pub platforms: Fake,
    pub llm: Fake,
    pub integration_id: String,
    pub provider_id: String,
    pub webhook_secret: String,
    pub signing_token: Option<String>,
    pub token: String,
    pub api_key: String,
}

impl Setup {
    /// Fresh fakes, a provider of `kind` answering `reply`, and an integration pinned to it.
    /// `provider_extra` and `integration_extra` are merged into the create requests.
    /// `platforms` and `llm` come from the test target's `fake_platforms!()` / `fake_llm!()`.
    pub fn new(
        platforms: Fake,
        llm: Fake,
        platform: &str,
        kind: &str,
        reply: Value,
        provider_extra: Value,
        integration_extra: Value,
    ) -> Setup {
        let api_key = format!("sk-test-{}", random_hex(32));
        llm.admin(
            reqwest::Method::PUT,
            "/__admin/config",
            Some(&json!({"api_key": api_key, "reply": reply})),
        );
        let mut pbody = json!({"name": format!("{kind} for {platform}"), "kind": kind, "base_url": provider_base(&llm, kind),
                               "model": "review-model-1", "api_key": api_key});
        merge(&mut pbody, &provider_extra);
        let provider = create_provider(pbody);
        let token = format!("tok_{}", random_hex(24));
        let webhook_secret = format!("whs_{}", random_hex(32));
        let (plat, deployment) = match platform {
            "bbdc" => ("bitbucket", "datacenter"),
            p => (p, "cloud"),
        };
        let mut ibody = json!({"name": format!("{platform} test"), "platform": plat, "deployment": deployment,
            "api_base_url": platform_base(&platforms, platform), "access_token": token, "webhook_secret": webhook_secret,
            "llm_provider_id": provider["id"]});
        merge(&mut ibody, &integration_extra);
        let signing_token = ibody["signing_token"].as_str().map(str::to_owned);
        let integration = create_integration(ibody);
        Setup {
            platform: platform.into(),
            platforms,
            llm,
            integration_id: integration["id"].as_str().unwrap().to_owned(),
            provider_id: provider["id"].as_str().unwrap().to_owned(),
            webhook_secret,
            signing_token,
            token,
            api_key,
        }
    }

    /// Registers a pull request on the fake platform.
    pub fn register(&self, pr: &Pr, files: &[Value], ignore: Option<&str>, state: &str) {
        let start = if self.platform == "gitlab" {
            sha()
        } else {
            pr.base.clone()
        };
        self.platforms.admin(
            reqwest::Method::PUT,
            "/__admin/pr",
            Some(&json!({"platform": self.platform, "repo_id": pr.repo_id, "repo_name": pr.repo_name, "number": pr.number,
                "head": pr.head, "base": pr.base, "start": start, "title": "Parse ids in the handler", "state": state,
                "files": files, "ignore": ignore, "token": self.token})),
        );
    }

    pub fn hook_url(&self) -> String {
        let p = if self.platform == "bbdc" {
            "bitbucket"
        } else {
            &self.platform
        };
        format!("/hooks/{p}/{}", self.integration_id)
    }

    /// Delivers the platform's "pull request opened" webhook for `pr`, signed correctly.
    pub fn open(&self, pr: &Pr) -> Resp {
        let delivery = format!("d-{}", random_hex(16));
        match self.platform.as_str() {
            "github" => self.github(
                "pull_request",
                &github_pull_request("opened", pr, false),
                &delivery,
            ),
            "gitlab" => self.gitlab(
                &gitlab_merge_request("open", pr.repo_id, &pr.repo_name, pr.number, &pr.head, None),
                &delivery,
                now_secs(),
            ),
            "bitbucket" => {
                self.bitbucket("pullrequest:created", &bitbucket_cloud_pr(pr), &delivery)
            }
            _ => self.bitbucket("pr:opened", &bitbucket_dc_pr("pr:opened", pr), &delivery),
        }
    }

    pub fn github(&self, event: &str, body: &Value, delivery: &str) -> Resp {
        let raw = serde_json::to_vec(body).unwrap();
        let sig = edgeplane_core::webhook::sign_hex_sha256(self.webhook_secret.as_bytes(), &raw);
        deliver(
            &self.hook_url(),
            &raw,
            &[
                ("x-github-event", event.into()),
                ("x-github-delivery", delivery.into()),
                ("x-hub-signature-256", sig),
            ],
        )
    }

    pub fn gitlab(&self, body: &Value, delivery: &str, ts: i64) -> Resp {
        let raw = serde_json::to_vec(body).unwrap();
        let mut h = vec![
            ("x-gitlab-event", "Merge Request Hook".to_owned()),
            ("x-gitlab-token", self.webhook_secret.clone()),
            ("x-gitlab-event-uuid", delivery.to_owned()),
        ];
        if let Some(st) = &self.signing_token {
            h.push(("webhook-id", delivery.to_owned()));
            h.push(("webhook-timestamp", ts.to_string()));
            h.push((
                "webhook-signature",
                edgeplane_core::webhook::gitlab::sign_standard_webhook(
                    st.as_bytes(),
                    delivery,
                    ts,
                    &raw,
                ),
            ));
        }
        deliver(&self.hook_url(), &raw, &h)
    }

    pub fn bitbucket(&self, event: &str, body: &Value, delivery: &str) -> Resp {
        let raw = serde_json::to_vec(body).unwrap();
        let sig = edgeplane_core::webhook::sign_hex_sha256(self.webhook_secret.as_bytes(), &raw);
        let id_header = if self.platform == "bbdc" {
            "x-request-id"
        } else {
            "x-request-uuid"
        };
        deliver(
            &self.hook_url(),
            &raw,
            &[
                ("x-event-key", event.into()),
                (id_header, delivery.into()),
                ("x-hub-signature", sig),
            ],
        )
    }

    /// Opens `pr` and returns the queued review's id.
    pub fn open_and_queue(&self, pr: &Pr) -> String {
        let r = self.open(pr).expect(202).json();
        assert_eq!(r["status"], "queued", "{r}");
        r["review_id"].as_str().unwrap().to_owned()
    }

    /// What the fake platform stored as posted (reviews, discussions, notes, comments).
    pub fn posted(&self) -> Vec<Value> {
        self.platforms
            .admin(reqwest::Method::GET, "/__admin/posted", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Chat (not embeddings) requests the fake provider received.
    pub fn chat_requests(&self) -> Vec<Value> {
        self.llm
            .requests()
            .into_iter()
            .filter(|r| {
                r["path"].as_str().is_some_and(|p| {
                    p.ends_with("/messages")
                        || p.ends_with("/chat/completions")
                        || p.ends_with(":generateContent")
                })
            })
            .collect()
    }
}

fn merge(into: &mut Value, extra: &Value) {
    if let (Some(a), Some(b)) = (into.as_object_mut(), extra.as_object()) {
        for (k, v) in b {
            a.insert(k.clone(), v.clone());
        }
    }
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
