//! A loopback fake of the GitHub, GitLab, Bitbucket Cloud and Bitbucket Data Center REST APIs,
//! speaking their wire formats for what the review worker uses: pull requests, changed files and
//! diffs, raw file contents, reviews/discussions/comments. It checks the credential and, like
//! the platforms, refuses comments whose position is not on the diff (422/400). Tests configure
//! it through `/__admin/*` and read back every request it served.
//!
//! Base URLs: `{base}/github`, `{base}/gitlab/api/v4`, `{base}/bitbucket/2.0`,
//! `{base}/bbdc/rest/api/1.0`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use e2e::review::{percent_decode, port_arg, serve, Request, Response};
use serde_json::{json, Value};

#[derive(Clone, Default)]
struct Pr {
    platform: String,
    repo_id: String,
    repo_name: String,
    number: u64,
    head: String,
    base: String,
    start: String,
    title: String,
    state: String,
    files: Vec<Value>,
    ignore: Option<String>,
    token: String,
}

#[derive(Default)]
struct State {
    prs: Vec<Pr>,
    faults: Vec<Value>,
    requests: Vec<Value>,
    posted: Vec<Value>,
    next_id: u64,
    /// Streamed answers: path, length, bytes the client took.
    streamed: Vec<(String, u64, Arc<AtomicU64>)>,
}

/// The lines a comment may target, computed from a patch independently of edgeplane's parser:
/// (added new lines, removed old lines, context (new, old) pairs).
struct Lines {
    added: HashSet<u64>,
    removed: HashSet<u64>,
    context: HashSet<(u64, u64)>,
}

fn lines_of(patch: &str) -> Lines {
    let mut l = Lines {
        added: HashSet::new(),
        removed: HashSet::new(),
        context: HashSet::new(),
    };
    let (mut old, mut new) = (0u64, 0u64);
    for line in patch.lines() {
        if let Some(rest) = line.strip_prefix("@@ -") {
            let mut it = rest.split(' ');
            old = it
                .next()
                .unwrap_or("0")
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap_or(0);
            new = it
                .next()
                .unwrap_or("+0")
                .trim_start_matches('+')
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap_or(0);
            continue;
        }
        match line.chars().next() {
            Some('+') => {
                l.added.insert(new);
                new += 1;
            }
            Some('-') => {
                l.removed.insert(old);
                old += 1;
            }
            Some(' ') => {
                l.context.insert((new, old));
                new += 1;
                old += 1;
            }
            _ => {}
        }
    }
    l
}

impl Lines {
    fn right(&self, n: u64) -> bool {
        self.added.contains(&n) || self.context.iter().any(|(a, _)| *a == n)
    }
    fn left(&self, n: u64) -> bool {
        self.removed.contains(&n) || self.context.iter().any(|(_, b)| *b == n)
    }
}

fn file<'a>(pr: &'a Pr, path: &str) -> Option<&'a Value> {
    pr.files.iter().find(|f| f["path"] == path)
}

fn patch_of(pr: &Pr, path: &str) -> Option<String> {
    file(pr, path)
        .and_then(|f| f["patch"].as_str())
        .map(str::to_owned)
}

fn unified(pr: &Pr) -> String {
    let mut out = String::new();
    for f in &pr.files {
        let p = f["path"].as_str().unwrap_or("");
        out.push_str(&format!("diff --git a/{p} b/{p}\n"));
        if f["binary"] == true {
            out.push_str(&format!("Binary files a/{p} and b/{p} differ\n"));
            continue;
        }
        match f["status"].as_str() {
            Some("added") => {
                out.push_str(&format!("new file mode 100644\n--- /dev/null\n+++ b/{p}\n"))
            }
            Some("removed") => out.push_str(&format!(
                "deleted file mode 100644\n--- a/{p}\n+++ /dev/null\n"
            )),
            _ => out.push_str(&format!(
                "index 1111111..2222222 100644\n--- a/{p}\n+++ b/{p}\n"
            )),
        }
        out.push_str(f["patch"].as_str().unwrap_or(""));
        out.push('\n');
    }
    out
}

fn not_found() -> Response {
    Response::json(404, &json!({"message": "Not Found"}))
}

fn same_commit(a: &str, b: &str) -> bool {
    let n = a.len().min(b.len());
    n >= 7 && a[..n] == b[..n]
}

fn authorized(pr: &Pr, req: &Request) -> bool {
    let want = if pr.token.contains(':') {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(&pr.token)
        )
    } else {
        format!("Bearer {}", pr.token)
    };
    req.header("authorization") == Some(want.as_str())
}

fn handle(state: &Mutex<State>, req: Request) -> Response {
    let mut st = state.lock().unwrap();
    let path = req.path.clone();
    if let Some(admin) = path.strip_prefix("/__admin/") {
        return match (req.method.as_str(), admin) {
            ("PUT", "pr") => {
                let v = req.json();
                let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
                let pr = Pr {
                    platform: s("platform"),
                    repo_id: v["repo_id"]
                        .as_u64()
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| s("repo_id")),
                    repo_name: s("repo_name"),
                    number: v["number"].as_u64().unwrap_or(1),
                    head: s("head"),
                    base: s("base"),
                    start: v["start"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| s("base")),
                    title: v["title"].as_str().unwrap_or("A change").to_owned(),
                    state: v["state"].as_str().unwrap_or("open").to_owned(),
                    files: v["files"].as_array().cloned().unwrap_or_default(),
                    ignore: v["ignore"].as_str().map(str::to_owned),
                    token: s("token"),
                };
                st.prs.retain(|p| {
                    !(p.platform == pr.platform
                        && p.repo_name == pr.repo_name
                        && p.number == pr.number)
                });
                st.prs.push(pr);
                Response::json(200, &json!({"ok": true}))
            }
            ("POST", "faults") => {
                st.faults.push(req.json());
                Response::json(200, &json!({"ok": true}))
            }
            ("GET", "requests") => Response::json(200, &Value::Array(st.requests.clone())),
            ("GET", "posted") => Response::json(200, &Value::Array(st.posted.clone())),
            ("GET", "streamed") => Response::json(200, &streamed(&st.streamed)),
            _ => not_found(),
        };
    }
    st.requests.push(req.record());
    let body_text = String::from_utf8_lossy(&req.body).into_owned();
    for f in st.faults.iter_mut() {
        let times = f["times"].as_u64().unwrap_or(0);
        let hit = times > 0
            && f["method"] == req.method.as_str()
            && f["path_contains"]
                .as_str()
                .is_some_and(|p| path.contains(p))
            && f["body_contains"]
                .as_str()
                .is_none_or(|b| body_text.contains(b));
        if hit {
            f["times"] = json!(times - 1);
            if let Some(len) = f["stream_bytes"].as_u64() {
                let sent = Arc::new(AtomicU64::new(0));
                let r = Response::streamed(len, sent.clone());
                st.streamed.push((path.clone(), len, sent));
                return r;
            }
            let mut r = Response::json(
                f["status"].as_u64().unwrap_or(500) as u16,
                &json!({"message": "injected fault"}),
            );
            if let Some(s) = f["retry_after"].as_u64() {
                r = r.with_header("retry-after", &s.to_string());
            }
            if let Some(l) = f["location"].as_str() {
                r = r.with_header("location", l);
            }
            return r;
        }
    }
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect();
    let seg = |i: usize| segs.get(i).map(String::as_str).unwrap_or("");
    // Locate the pull request and the rest of the path per platform.
    let (platform, repo_key, rest): (&str, String, Vec<String>) = match seg(0) {
        "github" if seg(1) == "repos" => (
            "github",
            format!("{}/{}", percent_decode(seg(2)), percent_decode(seg(3))),
            segs[4..].to_vec(),
        ),
        "gitlab" if seg(3) == "projects" => ("gitlab", percent_decode(seg(4)), segs[5..].to_vec()),
        "bitbucket" if seg(2) == "repositories" => (
            "bitbucket",
            format!("{}/{}", percent_decode(seg(3)), percent_decode(seg(4))),
            segs[5..].to_vec(),
        ),
        "bbdc" if seg(4) == "projects" && seg(6) == "repos" => (
            "bbdc",
            format!("{}/{}", percent_decode(seg(5)), percent_decode(seg(7))),
            segs[8..].to_vec(),
        ),
        _ => return not_found(),
    };
    let r = |i: usize| rest.get(i).map(String::as_str).unwrap_or("");
    let by_repo: Vec<Pr> = st
        .prs
        .iter()
        .filter(|p| p.platform == platform && (p.repo_name == repo_key || p.repo_id == repo_key))
        .cloned()
        .collect();
    let Some(any) = by_repo.first().cloned() else {
        return not_found();
    };
    if !authorized(&any, &req) {
        return Response::json(401, &json!({"message": "Bad credentials"}));
    }
    // Raw contents.
    let raw = match platform {
        "github" if r(0) == "contents" => Some((
            rest[1..]
                .iter()
                .map(|s| percent_decode(s))
                .collect::<Vec<_>>()
                .join("/"),
            req.query("ref").unwrap_or("").to_owned(),
        )),
        "gitlab" if r(0) == "repository" && r(1) == "files" && r(3) == "raw" => Some((
            percent_decode(r(2)),
            req.query("ref").unwrap_or("").to_owned(),
        )),
        "bitbucket" if r(0) == "src" => Some((
            rest[2..]
                .iter()
                .map(|s| percent_decode(s))
                .collect::<Vec<_>>()
                .join("/"),
            r(1).to_owned(),
        )),
        "bbdc" if r(0) == "raw" => Some((
            rest[1..]
                .iter()
                .map(|s| percent_decode(s))
                .collect::<Vec<_>>()
                .join("/"),
            req.query("at").unwrap_or("").to_owned(),
        )),
        _ => None,
    };
    if let Some((fpath, at)) = raw {
        for p in &by_repo {
            if fpath == ".edgeplaneignore" && same_commit(&at, &p.base) {
                return match &p.ignore {
                    Some(t) => Response::text(200, t),
                    None => not_found(),
                };
            }
            if same_commit(&at, &p.head) {
                if let Some(c) = file(p, &fpath).and_then(|f| f["content"].as_str()) {
                    return Response::text(200, c);
                }
            }
        }
        return not_found();
    }
    // Pull-request scoped routes.
    let (number_seg, tail): (String, Vec<String>) = match platform {
        "github" if r(0) == "pulls" => (r(1).to_owned(), rest[2..].to_vec()),
        "gitlab" if r(0) == "merge_requests" => (r(1).to_owned(), rest[2..].to_vec()),
        "bitbucket" if r(0) == "pullrequests" => (r(1).to_owned(), rest[2..].to_vec()),
        "bbdc" if r(0) == "pull-requests" => (r(1).to_owned(), rest[2..].to_vec()),
        _ => return not_found(),
    };
    let diff_suffix = number_seg.ends_with(".diff");
    let number: u64 = number_seg.trim_end_matches(".diff").parse().unwrap_or(0);
    let Some(pr) = by_repo.iter().find(|p| p.number == number).cloned() else {
        return not_found();
    };
    let t = |i: usize| tail.get(i).map(String::as_str).unwrap_or("");
    st.next_id += 1;
    let new_id = st.next_id;
    let repo_name = pr.repo_name.clone();
    let mut record = |kind: &str, id: Value, body: Value| {
        st.posted.push(json!({"platform": platform, "repo": repo_name, "number": number, "kind": kind, "id": id, "body": body}));
    };
    let req_body = req.json();
    match (platform, req.method.as_str(), t(0), diff_suffix) {
        ("github", "GET", "", _) => Response::json(
            200,
            &json!({"number": pr.number, "state": pr.state, "title": pr.title, "draft": false,
            "head": {"sha": pr.head, "ref": "feature"}, "base": {"sha": pr.base, "ref": "main"}}),
        ),
        ("github", "GET", "files", _) => {
            let per: usize = req
                .query("per_page")
                .and_then(|v| v.parse().ok())
                .unwrap_or(30);
            let page: usize = req.query("page").and_then(|v| v.parse().ok()).unwrap_or(1);
            let items: Vec<Value> = pr.files.iter().skip((page - 1) * per).take(per).map(|f| {
                let mut o = json!({"sha": "0123456789abcdef0123456789abcdef01234567", "filename": f["path"], "status": f["status"],
                    "additions": 1, "deletions": 1, "changes": 2, "blob_url": "https://github.com/x", "raw_url": "https://github.com/raw/x"});
                match f["patch"].as_str() {
                    Some(p) if f["binary"] != true => o["patch"] = json!(p),
                    _ => { o["changes"] = json!(0); o["additions"] = json!(0); o["deletions"] = json!(0); }
                }
                o
            }).collect();
            Response::json(200, &Value::Array(items))
        }
        ("github", "GET", "reviews", _) => {
            let list: Vec<Value> = st
                .posted
                .iter()
                .filter(|p| {
                    p["platform"] == "github" && p["number"] == number && p["repo"] == pr.repo_name
                })
                .map(|p| json!({"id": p["id"], "body": p["body"]["body"], "state": "COMMENTED"}))
                .collect();
            Response::json(200, &Value::Array(list))
        }
        ("github", "POST", "reviews", _) => {
            if req_body["commit_id"] != pr.head.as_str() {
                return Response::json(
                    422,
                    &json!({"message": "Unprocessable Entity", "errors": ["commit_id is not part of the pull request"]}),
                );
            }
            for c in req_body["comments"].as_array().cloned().unwrap_or_default() {
                let Some(p) = patch_of(&pr, c["path"].as_str().unwrap_or("")) else {
                    return Response::json(
                        422,
                        &json!({"message": "Unprocessable Entity", "errors": ["Path could not be resolved"]}),
                    );
                };
                let l = lines_of(&p);
                let ok_line = |n: Option<u64>, side: &Value| match (n, side.as_str()) {
                    (Some(n), Some("LEFT")) => l.left(n),
                    (Some(n), Some("RIGHT")) | (Some(n), None) => l.right(n),
                    _ => false,
                };
                let start_ok = c.get("start_line").is_none()
                    || ok_line(c["start_line"].as_u64(), &c["start_side"]);
                if !ok_line(c["line"].as_u64(), &c["side"]) || !start_ok {
                    return Response::json(
                        422,
                        &json!({"message": "Unprocessable Entity", "errors": ["Line could not be resolved"], "status": "422"}),
                    );
                }
            }
            record("review", json!(new_id), req_body.clone());
            Response::json(
                200,
                &json!({"id": new_id, "node_id": "PRR_x", "body": req_body["body"], "state": "COMMENTED", "commit_id": pr.head}),
            )
        }
        ("gitlab", "GET", "", _) => Response::json(
            200,
            &json!({"iid": pr.number, "state": if pr.state == "open" { "opened" } else { "closed" },
            "title": pr.title, "sha": pr.head, "diff_refs": {"base_sha": pr.base, "head_sha": pr.head, "start_sha": pr.start}}),
        ),
        ("gitlab", "GET", "diffs", _) => {
            let per: usize = req
                .query("per_page")
                .and_then(|v| v.parse().ok())
                .unwrap_or(20);
            let page: usize = req.query("page").and_then(|v| v.parse().ok()).unwrap_or(1);
            let items: Vec<Value> = pr.files.iter().skip((page - 1) * per).take(per).map(|f| json!({
                "old_path": f["path"], "new_path": f["path"], "a_mode": "100644", "b_mode": "100644",
                "diff": if f["binary"] == true { "Binary files a/x and b/x differ\n".to_owned() } else { format!("{}\n", f["patch"].as_str().unwrap_or("")) },
                "new_file": f["status"] == "added", "renamed_file": false, "deleted_file": f["status"] == "removed", "generated_file": false
            })).collect();
            Response::json(200, &Value::Array(items))
        }
        ("gitlab", "GET", "notes", _) => {
            let list: Vec<Value> = st
                .posted
                .iter()
                .filter(|p| p["platform"] == "gitlab" && p["number"] == number)
                .map(|p| json!({"id": p["id"], "body": p["body"]["body"]}))
                .collect();
            Response::json(200, &Value::Array(list))
        }
        ("gitlab", "POST", "discussions", _) => {
            let pos = &req_body["position"];
            let shas_ok = pos["base_sha"] == pr.base.as_str()
                && pos["start_sha"] == pr.start.as_str()
                && pos["head_sha"] == pr.head.as_str();
            let placed = patch_of(&pr, pos["new_path"].as_str().unwrap_or("")).is_some_and(|p| {
                let l = lines_of(&p);
                match (pos["new_line"].as_u64(), pos["old_line"].as_u64()) {
                    (Some(n), Some(o)) => l.context.contains(&(n, o)),
                    (Some(n), None) => l.added.contains(&n),
                    (None, Some(o)) => l.removed.contains(&o),
                    _ => false,
                }
            });
            if !shas_ok || !placed || pos["position_type"] != "text" {
                return Response::json(
                    400,
                    &json!({"message": "400 Bad request - Note {:line_code=>[\"can't be blank\", \"must be a valid line code\"]}"}),
                );
            }
            let id = format!("{new_id:040x}");
            record("discussion", json!(id), req_body.clone());
            Response::json(
                201,
                &json!({"id": id, "individual_note": false, "notes": [{"id": new_id, "body": req_body["body"], "position": pos}]}),
            )
        }
        ("gitlab", "POST", "notes", _) => {
            record("note", json!(new_id), req_body.clone());
            Response::json(
                201,
                &json!({"id": new_id, "body": req_body["body"], "noteable_type": "MergeRequest"}),
            )
        }
        ("bitbucket", "GET", "", _) => Response::json(
            200,
            &json!({"id": pr.number, "title": pr.title, "state": if pr.state == "open" { "OPEN" } else { "MERGED" },
            "source": {"commit": {"hash": &pr.head[..12]}, "branch": {"name": "feature"}},
            "destination": {"commit": {"hash": &pr.base[..12]}, "branch": {"name": "main"}}}),
        ),
        ("bitbucket", "GET", "diff", _) | ("bbdc", "GET", "", true) => {
            Response::text(200, &unified(&pr))
        }
        ("bitbucket", "GET", "comments", _) => {
            let list: Vec<Value> = st
                .posted
                .iter()
                .filter(|p| p["platform"] == "bitbucket" && p["number"] == number)
                .map(|p| json!({"id": p["id"], "content": p["body"]["content"]}))
                .collect();
            Response::json(200, &json!({"values": list, "pagelen": 100}))
        }
        ("bitbucket", "POST", "comments", _) => {
            if let Some(inline) = req_body.get("inline") {
                let placed =
                    patch_of(&pr, inline["path"].as_str().unwrap_or("")).is_some_and(|p| {
                        let l = lines_of(&p);
                        match (inline["to"].as_u64(), inline["from"].as_u64()) {
                            (Some(to), None) => l.right(to),
                            (None, Some(from)) => l.left(from),
                            _ => false,
                        }
                    });
                if !placed {
                    return Response::json(
                        400,
                        &json!({"type": "error", "error": {"message": "Invalid inline comment position"}}),
                    );
                }
            }
            record(
                if req_body.get("inline").is_some() {
                    "inline"
                } else {
                    "comment"
                },
                json!(new_id),
                req_body.clone(),
            );
            Response::json(
                201,
                &json!({"id": new_id, "type": "pullrequest_comment", "content": req_body["content"], "inline": req_body.get("inline")}),
            )
        }
        ("bbdc", "GET", "", false) => Response::json(
            200,
            &json!({"id": pr.number, "title": pr.title, "state": if pr.state == "open" { "OPEN" } else { "MERGED" },
            "fromRef": {"latestCommit": pr.head}, "toRef": {"latestCommit": pr.base}}),
        ),
        ("bbdc", "GET", "activities", _) => {
            let list: Vec<Value> = st.posted.iter().filter(|p| p["platform"] == "bbdc" && p["number"] == number).map(|p| json!({"action": "COMMENTED", "comment": {"id": p["id"], "text": p["body"]["text"]}})).collect();
            Response::json(200, &json!({"values": list, "isLastPage": true}))
        }
        ("bbdc", "POST", "comments", _) => {
            if let Some(a) = req_body.get("anchor") {
                let hashes = a["fromHash"] == pr.base.as_str() && a["toHash"] == pr.head.as_str();
                let placed = patch_of(&pr, a["path"].as_str().unwrap_or("")).is_some_and(|p| {
                    let l = lines_of(&p);
                    let n = a["line"].as_u64().unwrap_or(0);
                    match (a["lineType"].as_str(), a["fileType"].as_str()) {
                        (Some("ADDED"), Some("TO")) => l.added.contains(&n),
                        (Some("REMOVED"), Some("FROM")) => l.removed.contains(&n),
                        (Some("CONTEXT"), Some("TO")) => l.context.iter().any(|(x, _)| *x == n),
                        (Some("CONTEXT"), Some("FROM")) => l.context.iter().any(|(_, y)| *y == n),
                        _ => false,
                    }
                });
                if !hashes || !placed {
                    return Response::json(
                        400,
                        &json!({"errors": [{"message": "The comment anchor is invalid."}]}),
                    );
                }
            }
            record(
                if req_body.get("anchor").is_some() {
                    "inline"
                } else {
                    "comment"
                },
                json!(new_id),
                req_body.clone(),
            );
            Response::json(
                201,
                &json!({"id": new_id, "version": 0, "text": req_body["text"], "anchor": req_body.get("anchor")}),
            )
        }
        _ => not_found(),
    }
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
