//! The HTTP client: the deployment's URL, a bearer credential kept fresh, and one mapping of
//! answers to [`CliError`].
//!
//! Credentials, in order: `EDGEPLANE_TOKEN` (used as given, never refreshed: an API key or an
//! access token for CI), else the profile's stored CLI token, refreshed through
//! `POST /oauth/token` (`grant_type=refresh_token`) shortly before it expires or when the server
//! answers 401. The refresh token rotates on every refresh and the new pair is stored at once:
//! presenting an old refresh token revokes the CLI token (reuse detection).

use std::cell::RefCell;
use std::io::Read;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{Config, Credentials};
use crate::error::{CliError, Result};

pub const CLIENT_ID: &str = "edgeplane-cli";
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Refresh this many seconds before the access token's expiry.
const REFRESH_MARGIN_SECS: i64 = 60;

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

enum Auth {
    None,
    Fixed(String),
    Stored(Credentials),
}

pub struct Api {
    pub base: String,
    http: Client,
    auth: RefCell<Auth>,
    pub config: RefCell<Config>,
}

fn user_agent() -> String {
    format!("edgeplane-cli/{}", env!("CARGO_PKG_VERSION"))
}

impl Api {
    /// The URL: `--url`/`EDGEPLANE_URL`, else the profile's.
    pub fn new(url: Option<String>, config: Config) -> Result<Self> {
        let base = url
            .or_else(|| config.profile().url)
            .ok_or_else(|| {
                CliError::usage(
                    "no deployment URL: pass --url, set EDGEPLANE_URL, or log in with --url",
                )
            })?
            .trim_end_matches('/')
            .to_owned();
        let http = Client::builder()
            .user_agent(user_agent())
            .connect_timeout(Duration::from_secs(10))
            .timeout(None)
            .build()
            .map_err(CliError::network)?;
        let auth = match std::env::var("EDGEPLANE_TOKEN") {
            Ok(t) if !t.is_empty() => Auth::Fixed(t),
            _ => match config.load_credentials()? {
                Some(c) => Auth::Stored(c),
                None => Auth::None,
            },
        };
        Ok(Self {
            base,
            http,
            auth: RefCell::new(auth),
            config: RefCell::new(config),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn signed_in(&self) -> bool {
        !matches!(*self.auth.borrow(), Auth::None)
    }

    /// Whether the credential is this profile's CLI token (which `logout` revokes).
    pub fn stored_credentials(&self) -> Option<Credentials> {
        match &*self.auth.borrow() {
            Auth::Stored(c) => Some(c.clone()),
            _ => None,
        }
    }

    pub fn set_credentials(&self, c: Credentials) -> Result<()> {
        self.config.borrow_mut().store_credentials(&c)?;
        *self.auth.borrow_mut() = Auth::Stored(c);
        Ok(())
    }

    fn bearer(&self, force_refresh: bool) -> Result<Option<String>> {
        let stored = match &*self.auth.borrow() {
            Auth::None => return Ok(None),
            Auth::Fixed(t) => return Ok(Some(t.clone())),
            Auth::Stored(c) => c.clone(),
        };
        if !force_refresh && stored.expires_at - REFRESH_MARGIN_SECS > now_secs() {
            return Ok(Some(stored.access_token));
        }
        let fresh = self.refresh(&stored.refresh_token)?;
        let token = fresh.access_token.clone();
        self.set_credentials(fresh)?;
        Ok(Some(token))
    }

    /// Exchanges a refresh token (it rotates: the answer carries its successor).
    fn refresh(&self, refresh_token: &str) -> Result<Credentials> {
        let r = self
            .http
            .post(self.url("/oauth/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", CLIENT_ID),
            ])
            .send()
            .map_err(CliError::network)?;
        if !r.status().is_success() {
            let e = answer_error(r);
            return Err(match e {
                CliError::Server { code, message, .. } if code == "invalid_grant" => {
                    CliError::Auth(format!(
                        "the stored sign-in is no longer valid ({message}): run `edgeplane login`"
                    ))
                }
                other => other,
            });
        }
        let v: Value = r.json().map_err(CliError::network)?;
        token_answer(&v)
    }

    /// Sends a request built by `build` with the bearer credential; on a 401 from a stored CLI
    /// token, refreshes once and sends again.
    pub fn send(&self, build: impl Fn(&Client) -> RequestBuilder) -> Result<Response> {
        let mut refreshed = false;
        loop {
            let mut req = build(&self.http);
            if let Some(t) = self.bearer(refreshed)? {
                req = req.bearer_auth(t);
            }
            let r = req.send().map_err(CliError::network)?;
            let stored = matches!(*self.auth.borrow(), Auth::Stored(_));
            if r.status().as_u16() == 401 && stored && !refreshed {
                refreshed = true;
                continue;
            }
            if r.status().is_success() {
                return Ok(r);
            }
            return Err(answer_error(r));
        }
    }

    pub fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = self.url(path);
        let r = self.send(|c| {
            let req = c.request(method.clone(), &url);
            match body {
                Some(b) => req.json(b),
                None => req,
            }
        })?;
        json_of(r)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.request(Method::GET, path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.request(Method::POST, path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Result<Value> {
        self.request(Method::DELETE, path, None)
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        self.request(Method::PATCH, path, Some(body))
    }

    /// The HTTP client without the profile's credential, for requests that carry their own
    /// (a simulated device's token, a signed part URL). Cheap to clone, and `Send`.
    pub fn client(&self) -> Client {
        self.http.clone()
    }

    /// A form POST without a bearer (the OAuth endpoints authenticate themselves).
    pub fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Result<Response> {
        self.http
            .post(self.url(path))
            .form(form)
            .send()
            .map_err(CliError::network)
    }
}

/// Sends a request that carries its own credential (or none): the answer when it succeeded,
/// else the server's refusal as a [`CliError`]. Such a request's URL may be its credential (a
/// signed link: `…&signature=…`), so a transport error is reported without it.
pub fn send_plain(req: RequestBuilder) -> Result<Response> {
    let r = req.send().map_err(|e| CliError::network(e.without_url()))?;
    if r.status().is_success() {
        Ok(r)
    } else {
        Err(answer_error(r))
    }
}

/// A response body whose read errors never name the request's URL: reqwest's errors print it,
/// query string and all, and a signed link's query string is its credential.
pub struct WithoutUrl<R>(pub R);

impl<R: Read> Read for WithoutUrl<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(io_without_url)
    }
}

/// `e` with the URL of any reqwest error inside it dropped.
pub fn io_without_url(e: std::io::Error) -> std::io::Error {
    let kind = e.kind();
    if !e.get_ref().is_some_and(|r| r.is::<reqwest::Error>()) {
        return e;
    }
    match e
        .into_inner()
        .map(|inner| inner.downcast::<reqwest::Error>())
    {
        Some(Ok(re)) => std::io::Error::new(kind, re.without_url()),
        Some(Err(other)) => std::io::Error::new(kind, other),
        None => std::io::Error::from(kind),
    }
}

/// An answer read into the shared view type `T` (`edgeplane_core::views`); an answer of
/// another shape is an unreadable answer (exit 3), never a panic.
pub fn decode<T: DeserializeOwned>(v: Value, what: &str) -> Result<T> {
    serde_json::from_value(v)
        .map_err(|e| CliError::network(format!("the {what} answer is not what was expected: {e}")))
}

/// The JSON body of a successful answer (`null` for 204).
pub fn json_of(r: Response) -> Result<Value> {
    if r.status().as_u16() == 204 {
        return Ok(Value::Null);
    }
    let bytes = r.bytes().map_err(CliError::network)?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| CliError::network(format!("the answer is not JSON: {e}")))
}

/// A failed answer as a [`CliError::Server`].
pub fn answer_error(mut r: Response) -> CliError {
    let status = r.status().as_u16();
    let rid = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    let _ = r.by_ref().take(64 * 1024).read_to_end(&mut body);
    CliError::from_answer(status, &body, rid)
}

/// Credentials from a token endpoint answer.
pub fn token_answer(v: &Value) -> Result<Credentials> {
    let field = |k: &str| {
        v[k].as_str()
            .map(str::to_owned)
            .ok_or_else(|| CliError::network(format!("the token answer has no {k}")))
    };
    Ok(Credentials {
        access_token: field("access_token")?,
        refresh_token: field("refresh_token")?,
        expires_at: now_secs() + v["expires_in"].as_i64().unwrap_or(900),
        scope: v["scope"].as_str().unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A request to a closed local port fails in transport; reqwest's own error text names the
    /// URL, so this is what a signed link's failure would print.
    fn failed_link() -> reqwest::Error {
        Client::new()
            .get("http://127.0.0.1:1/v1/audit-export-jobs/aex_x/download?expires=1&signature=c2VjcmV0")
            .timeout(Duration::from_secs(5))
            .send()
            .unwrap_err()
    }

    #[test]
    fn a_failed_signed_request_does_not_print_its_link() {
        // The premise: reqwest's error does carry the link.
        assert!(failed_link().to_string().contains("signature="));
        let req = Client::new().get(
            "http://127.0.0.1:1/v1/audit-export-jobs/aex_x/download?expires=1&signature=c2VjcmV0",
        );
        let err = send_plain(req).map(|_| ()).unwrap_err().to_string();
        assert!(!err.contains("signature="), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn a_broken_body_read_does_not_print_its_link() {
        let io = std::io::Error::other(failed_link());
        assert!(io.to_string().contains("signature="));
        let stripped = io_without_url(io);
        assert!(!stripped.to_string().contains("signature="), "{stripped}");
        let mut r = WithoutUrl(FailingRead);
        let mut buf = [0u8; 4];
        let e = r.read(&mut buf).unwrap_err();
        assert!(!e.to_string().contains("signature="), "{e}");
        // Other errors pass through unchanged.
        let plain = io_without_url(std::io::Error::other("disk full"));
        assert_eq!(plain.to_string(), "disk full");
    }

    struct FailingRead;

    impl Read for FailingRead {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other(failed_link()))
        }
    }
}
