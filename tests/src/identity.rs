//! Harness for the identity tests, and for every test that needs a signed-in person: sign-in
//! through the real flows (magic link via the email fake, OIDC via the loopback OpenID Provider,
//! CLI tokens via the device-code grant), org creation, and clients carrying those tokens.
//!
//! Every helper sends its own `cf-connecting-ip` (a fresh documentation-range address unless
//! told otherwise), so per-IP rate limits of one test never throttle another.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::{wait_for, Client, Resp};

static COUNTER: AtomicU64 = AtomicU64::new(1);

fn unique() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos / 1000) * 1000 + COUNTER.fetch_add(1, Ordering::Relaxed) % 1000
}

/// An address no other test uses: `<tag>-<unique>@example.com`.
pub fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@example.com", unique())
}

/// A client IP no other test uses (for per-IP rate-limit buckets).
pub fn unique_ip() -> String {
    let n = unique();
    format!("10.{}.{}.{}", (n >> 16) % 256, (n >> 8) % 256, n % 256)
}

/// An IPv6 /64 no other test uses, as `prefix:` (append the interface identifier).
pub fn unique_ipv6_prefix() -> String {
    let n = unique();
    format!("2001:db8:{:x}:{:x}:", (n >> 16) & 0xffff, n & 0xffff)
}

/// A signed-in person's session.
#[derive(Debug, Clone)]
pub struct Session {
    pub email: String,
    pub user_id: String,
    pub session_id: String,
    pub access_token: String,
    pub refresh_token: String,
}

impl Session {
    fn from_body(email: &str, body: &Value) -> Session {
        Session {
            email: email.to_owned(),
            user_id: body["user"]["id"].as_str().expect("user.id").to_owned(),
            session_id: body["session"]["id"]
                .as_str()
                .expect("session.id")
                .to_owned(),
            access_token: body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            refresh_token: body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
        }
    }

    /// A client sending this session's access token.
    pub fn client(&self) -> Client {
        Client::anonymous().with_bearer(&self.access_token)
    }
}

/// The user agent the helpers send (sessions record it).
pub const USER_AGENT: &str = "edgeplane-e2e/1";

/// POSTs JSON from `ip`.
pub fn post_from(c: &Client, path: &str, body: &Value, ip: &str) -> Resp {
    c.send(
        c.request(reqwest::Method::POST, path)
            .header("cf-connecting-ip", ip)
            .header("user-agent", USER_AGENT)
            .json(body),
    )
}

/// POSTs a form body (`application/x-www-form-urlencoded`) from `ip`.
pub fn post_form(c: &Client, path: &str, pairs: &[(&str, &str)], ip: &str) -> Resp {
    let body = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    c.send(
        c.request(reqwest::Method::POST, path)
            .header("cf-connecting-ip", ip)
            .header("user-agent", USER_AGENT)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    )
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The email fake (Resend API) and magic links.
// ---------------------------------------------------------------------------------------------

/// The email fake `scripts/test` started (its inspection endpoint).
pub struct EmailFake {
    pub base: String,
    http: reqwest::blocking::Client,
}

pub fn email_fake() -> EmailFake {
    EmailFake {
        base: std::env::var("EP_EMAIL_FAKE")
            .expect("EP_EMAIL_FAKE is not set: run the end-to-end tests through scripts/test"),
        http: reqwest::blocking::Client::new(),
    }
}

impl EmailFake {
    /// Messages delivered to `to`, oldest first.
    pub fn messages_to(&self, to: &str) -> Vec<Value> {
        self.http
            .get(format!("{}/__admin/messages", self.base))
            .query(&[("to", to)])
            .send()
            .expect("email fake")
            .json::<Vec<Value>>()
            .expect("email fake answer")
    }

    /// Makes the next `times` sends to `to` answer `status`.
    pub fn fail_next(&self, to: &str, status: u16, times: u32) {
        let r = self
            .http
            .post(format!("{}/__admin/faults", self.base))
            .json(&json!({"status": status, "times": times, "to": to}))
            .send()
            .expect("email fake");
        assert!(r.status().is_success());
    }
}

/// The magic-link token in a delivered message.
pub fn token_in(message: &Value) -> String {
    let text = message["text"].as_str().expect("text body");
    let at = text.find("#token=").expect("a sign-in link") + "#token=".len();
    text[at..at + "epml_".len() + 43].to_owned()
}

/// Asks for a magic link for `email` from `ip`.
pub fn request_magic_link(email: &str, ip: &str) -> Resp {
    post_from(
        &Client::anonymous(),
        "/v1/auth/magic-link",
        &json!({ "email": email }),
        ip,
    )
}

/// Requests a link and returns the token from the newly delivered message.
pub fn magic_link_token(email: &str) -> String {
    let fake = email_fake();
    let before = fake.messages_to(&email.to_lowercase()).len();
    request_magic_link(email, &unique_ip()).expect(202);
    let msg = wait_for("the magic-link email", Duration::from_secs(20), || {
        fake.messages_to(&email.to_lowercase()).get(before).cloned()
    });
    token_in(&msg)
}

/// Spends a magic-link token.
pub fn verify_magic_link(token: &str, ip: &str) -> Resp {
    post_from(
        &Client::anonymous(),
        "/v1/auth/magic-link/verify",
        &json!({ "token": token }),
        ip,
    )
}

/// Signs `email` in through a magic link (creating the user on first sign-in).
pub fn sign_in(email: &str) -> Session {
    let token = magic_link_token(email);
    let body = verify_magic_link(&token, &unique_ip()).expect(200).json();
    Session::from_body(&email.to_lowercase(), &body)
}

/// The seeded org's owner, signed in once per test run: the session is shared by every test
/// (and kept next to `EP_STACK_FILE` for the next test binary), so sign-in rate limits on the
/// owner's address are never the reason a test fails. Tests must not revoke it.
pub fn owner_session() -> Session {
    static OWNER: std::sync::OnceLock<Session> = std::sync::OnceLock::new();
    OWNER
        .get_or_init(|| {
            let file = std::env::var("EP_STACK_FILE")
                .map(|f| format!("{f}.owner-session.json"))
                .unwrap_or_default();
            if let Ok(text) = std::fs::read_to_string(&file) {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    let s = Session {
                        email: v["email"].as_str().unwrap_or_default().to_owned(),
                        user_id: v["user_id"].as_str().unwrap_or_default().to_owned(),
                        session_id: v["session_id"].as_str().unwrap_or_default().to_owned(),
                        access_token: v["access_token"].as_str().unwrap_or_default().to_owned(),
                        refresh_token: v["refresh_token"].as_str().unwrap_or_default().to_owned(),
                    };
                    // Still usable for the rest of this binary (access tokens live 15 minutes)?
                    let fresh = v["at"].as_u64().is_some_and(|at| now_secs() < at + 600);
                    if fresh && s.client().get("/v1/me").status == 200 {
                        return s;
                    }
                }
            }
            let s = sign_in(&crate::stack().owner_email);
            let _ = std::fs::write(
                &file,
                json!({"email": s.email, "user_id": s.user_id, "session_id": s.session_id,
                       "access_token": s.access_token, "refresh_token": s.refresh_token,
                       "at": now_secs()})
                .to_string(),
            );
            s
        })
        .clone()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A new person with a fresh address, signed in.
pub fn new_user(tag: &str) -> Session {
    sign_in(&unique_email(tag))
}

/// Creates an org as `session` (who becomes its owner); returns the `org` object.
pub fn create_org(session: &Session, name: &str) -> Value {
    let slug = format!("o-{}", unique());
    session
        .client()
        .post("/v1/orgs", &json!({ "name": name, "slug": slug }))
        .expect(201)
        .json()["org"]
        .clone()
}

/// Rotates a session's refresh token.
pub fn refresh(refresh_token: &str) -> Resp {
    post_from(
        &Client::anonymous(),
        "/v1/auth/refresh",
        &json!({ "refresh_token": refresh_token }),
        &unique_ip(),
    )
}

// ---------------------------------------------------------------------------------------------
// OIDC against the loopback OpenID Provider (provider name `test`).
// ---------------------------------------------------------------------------------------------

/// The first step of a provider sign-in: where the browser goes, and its binding cookie.
#[derive(Debug, Clone)]
pub struct OidcStart {
    pub authorization_url: String,
    /// `ep_signin=<value>`, as the browser would send it back.
    pub cookie: String,
}

pub fn oidc_start(login_hint: &str) -> OidcStart {
    let c = Client::anonymous();
    let r = c.send(
        c.request(reqwest::Method::GET, "/v1/auth/providers/test/start")
            .query(&[("login_hint", login_hint)])
            .header("cf-connecting-ip", unique_ip()),
    );
    assert_eq!(r.status, 302, "start: {}", r.text);
    let location = r.header("location").expect("location");
    let set = r.header("set-cookie").expect("binding cookie");
    let cookie = set.split(';').next().expect("cookie pair").to_owned();
    assert!(cookie.starts_with("ep_signin="));
    assert_eq!(r.json()["authorization_url"], location.as_str());
    OidcStart {
        authorization_url: location,
        cookie,
    }
}

/// Drives the OpenID Provider like a browser (cookies, redirects; it logs in the `login_hint`
/// account and consents on its own) until it redirects back to the gateway; returns that
/// callback URL. A provider that answers an error page panics with its body.
pub fn oidc_authorize(authorization_url: &str) -> String {
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let gateway = crate::stack().base_url.clone();
    let mut jar: Vec<(String, String)> = Vec::new();
    let mut url = authorization_url.to_owned();
    for _ in 0..12 {
        if url.starts_with(&gateway) {
            return url;
        }
        let cookie = jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let r = http
            .get(&url)
            .header("cookie", cookie)
            .send()
            .expect("OpenID Provider");
        for v in r.headers().get_all("set-cookie") {
            let pair = v.to_str().unwrap().split(';').next().unwrap().to_owned();
            if let Some((k, val)) = pair.split_once('=') {
                jar.retain(|(n, _)| n != k);
                if !val.is_empty() {
                    jar.push((k.to_owned(), val.to_owned()));
                }
            }
        }
        let Some(loc) = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
        else {
            panic!(
                "the OpenID Provider answered {} without a redirect: {}",
                r.status(),
                r.text().unwrap_or_default()
            );
        };
        url = if loc.starts_with("http") {
            loc
        } else {
            let base = reqwest::Url::parse(&url).unwrap();
            base.join(&loc).unwrap().to_string()
        };
    }
    panic!("too many redirects at the OpenID Provider");
}

/// Calls the gateway's callback with the binding cookie.
pub fn oidc_callback(callback_url: &str, cookie: &str) -> Resp {
    let c = Client::anonymous();
    c.send(
        c.request(reqwest::Method::GET, callback_url)
            .header("cookie", cookie)
            .header("cf-connecting-ip", unique_ip()),
    )
}

/// Signs `email` in through the OpenID Provider.
pub fn oidc_sign_in(email: &str) -> Session {
    let start = oidc_start(email);
    let cb = oidc_authorize(&start.authorization_url);
    let body = oidc_callback(&cb, &start.cookie).expect(200).json();
    Session::from_body(email, &body)
}

// ---------------------------------------------------------------------------------------------
// CLI tokens (RFC 8628 device authorization grant).
// ---------------------------------------------------------------------------------------------

pub const CLI_CLIENT_ID: &str = "edgeplane-cli";
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Starts a device authorization; `scope` optional. Returns the JSON answer.
pub fn device_authorize(scope: Option<&str>) -> Value {
    let mut pairs = vec![("client_id", CLI_CLIENT_ID)];
    if let Some(s) = scope {
        pairs.push(("scope", s));
    }
    post_form(
        &Client::anonymous(),
        "/oauth/device_authorization",
        &pairs,
        &unique_ip(),
    )
    .expect(200)
    .json()
}

/// One poll of the token endpoint.
pub fn poll_token(device_code: &str) -> Resp {
    post_form(
        &Client::anonymous(),
        "/oauth/token",
        &[
            ("grant_type", DEVICE_GRANT),
            ("device_code", device_code),
            ("client_id", CLI_CLIENT_ID),
        ],
        &unique_ip(),
    )
}

/// Approves `user_code` for `org` as `session`.
pub fn approve_device(session: &Session, user_code: &str, org: &str) -> Resp {
    post_from(
        &session.client(),
        "/v1/device/approve",
        &json!({ "user_code": user_code, "org": org }),
        &unique_ip(),
    )
}

/// A CLI token's credentials.
#[derive(Debug, Clone)]
pub struct CliToken {
    pub access_token: String,
    pub refresh_token: String,
    pub scope: String,
}

impl CliToken {
    pub fn client(&self) -> Client {
        Client::anonymous().with_bearer(&self.access_token)
    }
}

/// The whole device flow: start (with `scope`), approve as `session` for `org`, exchange.
pub fn cli_token(session: &Session, org: &str, scope: Option<&str>) -> CliToken {
    let d = device_authorize(scope);
    approve_device(session, d["user_code"].as_str().unwrap(), org).expect(200);
    let t = poll_token(d["device_code"].as_str().unwrap())
        .expect(200)
        .json();
    CliToken {
        access_token: t["access_token"].as_str().unwrap().to_owned(),
        refresh_token: t["refresh_token"].as_str().unwrap().to_owned(),
        scope: t["scope"].as_str().unwrap_or_default().to_owned(),
    }
}

/// Asserts an RFC 6749 error answer: status and `error`, with an `error_description`.
#[track_caller]
pub fn expect_oauth_error(r: &Resp, status: u16, error: &str) {
    assert_eq!(r.status, status, "unexpected status; body: {}", r.text);
    let body = r.json();
    assert_eq!(body["error"], error, "unexpected error; body: {}", r.text);
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{}",
        r.text
    );
    assert!(body.get("request_id").is_none() && body["error"].is_string());
}

// ---------------------------------------------------------------------------------------------
// Looking into the stack's local D1 (audit records; memberships the access area will manage).
// ---------------------------------------------------------------------------------------------

/// Runs one SQL statement against the stack's local D1 database file (SQLite, through Python's
/// sqlite3) and returns the rows as JSON objects. For asserting what was recorded (audit events)
/// and for arranging memberships in tests until the access area's member API exists.
pub fn d1(sql: &str, params: &[Value]) -> Vec<Value> {
    let state = std::env::var("EP_STACK_STATE")
        .expect("EP_STACK_STATE is not set: run the end-to-end tests through scripts/test");
    let script = r#"
import glob, json, sqlite3, sys
state, sql, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
files = [f for f in glob.glob(state + "/v3/d1/**/*.sqlite", recursive=True)
         if not f.endswith("/metadata.sqlite")]
db = sqlite3.connect(files[0], timeout=30)
db.row_factory = sqlite3.Row
rows = [dict(r) for r in db.execute(sql, params).fetchall()]
db.commit()
print(json.dumps(rows))
"#;
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &state,
            sql,
            &Value::Array(params.to_vec()).to_string(),
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "d1 query failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("d1 rows")
}

/// Audit events with `action` about `resource_id`, placed in their chain or still waiting for
/// the chain's sequencer (which places them right after their change commits), in order.
pub fn audit_events(action: &str, resource_id: &str) -> Vec<Value> {
    d1(
        "SELECT chain, org_id, actor_type, actor_id, action, resource_type, resource_id, metadata, \
         request_id FROM (SELECT *, seq AS position FROM audit_events UNION ALL \
         SELECT id, chain, NULL, org_id, actor_type, actor_id, action, resource_type, resource_id, \
         ip, user_agent, request_id, metadata, created_at_ms, NULL, NULL, \
         1000000000000 + pending_id AS position FROM audit_pending) \
         WHERE action = ? AND resource_id = ? ORDER BY position",
        &[json!(action), json!(resource_id)],
    )
}
