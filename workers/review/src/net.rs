//! Outbound HTTP for one job: every request passes the egress policy first, redirects are
//! followed by hand (each hop checked again, the credential dropped when the origin changes),
//! every request has a deadline, and no answer is read past its call's `response_limit`: a
//! declared length over it is refused before reading, a streamed body is counted as it arrives
//! and the fetch is aborted when it goes over. Bodies of non-2xx answers are never read (nothing
//! uses them, and they may echo credentials).

use std::time::Duration;

use edgeplane_core::review::egress::{EgressDenied, EgressPolicy};
use edgeplane_core::review::http::{retry_after_seconds, Call};
use edgeplane_runtime::clock::now_secs;
use edgeplane_runtime::log;
use futures_util::future::{select, Either};
use futures_util::{FutureExt, StreamExt};
use worker::{
    AbortController, Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect,
};

const MAX_REDIRECTS: usize = 3;

pub struct Response {
    pub status: u16,
    pub retry_after: Option<u32>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug)]
pub enum NetError {
    /// Refused by the egress policy (logged with the host).
    Egress(EgressDenied),
    /// No answer in time.
    Timeout,
    /// DNS, TLS, connection reset: the runtime's fetch failed.
    Network,
    /// A successful answer's body is longer than the call allows.
    TooLarge { limit: usize },
}

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetError::Egress(e) => write!(f, "egress refused: {e}"),
            NetError::Timeout => f.write_str("the upstream did not answer in time"),
            NetError::Network => f.write_str("the upstream could not be reached"),
            NetError::TooLarge { limit } => {
                write!(f, "the answer is larger than the {limit} bytes allowed")
            }
        }
    }
}

pub struct Net {
    policy: EgressPolicy,
}

fn origin_of(url: &url::Url) -> (String, Option<String>, Option<u16>) {
    (
        url.scheme().to_owned(),
        url.host_str().map(str::to_owned),
        url.port_or_known_default(),
    )
}

impl Net {
    pub fn new(policy: EgressPolicy) -> Self {
        Self { policy }
    }

    /// Sends `call` with the credential header `auth`, within `timeout`.
    pub async fn send(
        &self,
        call: &Call,
        auth: Option<&(&'static str, String)>,
        timeout: Duration,
    ) -> Result<Response, NetError> {
        let mut url = self.check(&call.url)?;
        let first_origin = origin_of(&url);
        let mut method = call.method;
        let mut body = call.body.clone();
        for _ in 0..=MAX_REDIRECTS {
            // The credential only ever goes to the origin the call was built for.
            let same_origin = origin_of(&url) == first_origin;
            let resp = self
                .once(
                    url.as_str(),
                    method,
                    &call.headers,
                    body.as_deref(),
                    auth.filter(|_| same_origin),
                    timeout,
                    call.response_limit,
                )
                .await?;
            if !(300..400).contains(&resp.0.status) || resp.1.is_none() {
                return Ok(resp.0);
            }
            let location = resp.1.unwrap_or_default();
            let next = url
                .join(&location)
                .map_err(|_| NetError::Egress(EgressDenied::InvalidUrl))?;
            url = self.check(next.as_str())?;
            if resp.0.status == 303
                || (resp.0.status != 307 && resp.0.status != 308 && method == "POST")
            {
                method = "GET";
                body = None;
            }
        }
        Err(NetError::Network)
    }

    fn check(&self, raw: &str) -> Result<url::Url, NetError> {
        self.policy.check(raw).map_err(|e| {
            log::warn("egress refused", &e.to_string());
            NetError::Egress(e)
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn once(
        &self,
        url: &str,
        method: &str,
        headers: &[(&'static str, String)],
        body: Option<&str>,
        auth: Option<&(&'static str, String)>,
        timeout: Duration,
        limit: usize,
    ) -> Result<(Response, Option<String>), NetError> {
        let h = Headers::new();
        for (k, v) in headers {
            h.set(k, v).map_err(|_| NetError::Network)?;
        }
        if let Some((k, v)) = auth {
            h.set(k, v).map_err(|_| NetError::Network)?;
        }
        let mut init = RequestInit::new();
        init.with_method(if method == "POST" {
            Method::Post
        } else {
            Method::Get
        })
        .with_headers(h)
        .with_redirect(RequestRedirect::Manual);
        if let Some(b) = body {
            init.with_body(Some(wasm_bindgen::JsValue::from_str(b)));
        }
        let req = Request::new_with_init(url, &init).map_err(|_| NetError::Network)?;
        let controller = AbortController::default();
        let signal = controller.signal();
        let fetch = async move {
            let mut resp = Fetch::Request(req)
                .send_with_signal(&signal)
                .await
                .map_err(|_| NetError::Network)?;
            let status = resp.status_code();
            let header = |name: &str| resp.headers().get(name).ok().flatten();
            let retry_after = header("retry-after");
            let location = header("location");
            let declared = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
            let body = if !(200..300).contains(&status) {
                Vec::new()
            } else if declared.is_some_and(|n| n > limit as u64) {
                return Err(NetError::TooLarge { limit });
            } else {
                read_capped(&mut resp, limit).await?
            };
            Ok((status, retry_after, location, body))
        }
        .boxed_local();
        let result = match select(fetch, Delay::from(timeout)).await {
            Either::Left((Ok((status, retry_after, location, body)), _)) => Ok((
                Response {
                    status,
                    retry_after: retry_after_seconds(retry_after.as_deref(), now_secs()),
                    body,
                },
                location,
            )),
            Either::Left((Err(e), _)) => Err(e),
            Either::Right(_) => Err(NetError::Timeout),
        };
        // Stops whatever is left of the answer (an unread or over-long body, a late one); a
        // no-op when it was read to the end.
        controller.abort();
        result
    }
}

/// A body, read chunk by chunk up to `limit` bytes; one byte more is [`NetError::TooLarge`].
async fn read_capped(resp: &mut worker::Response, limit: usize) -> Result<Vec<u8>, NetError> {
    let Ok(mut stream) = resp.stream() else {
        // No body at all.
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| NetError::Network)?;
        if out.len() + chunk.len() > limit {
            return Err(NetError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
