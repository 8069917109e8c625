//! Outbound HTTP for sign-in (identity providers, the email provider): a deadline, no redirects
//! followed, and only status + body handed back. URLs were validated when configured.

use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::FutureExt;
use worker::{
    AbortController, Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect,
};

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a call produced no answer (network failure or deadline). Never carries URLs or bodies.
#[derive(Debug)]
pub struct Unreachable;

pub async fn call(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Result<Answer, Unreachable> {
    let h = Headers::new();
    for (k, v) in headers {
        h.set(k, v).map_err(|_| Unreachable)?;
    }
    let mut init = RequestInit::new();
    init.with_method(method)
        .with_headers(h)
        .with_redirect(RequestRedirect::Manual);
    if let Some(b) = body {
        init.with_body(Some(wasm_bindgen::JsValue::from_str(&b)));
    }
    let req = Request::new_with_init(url, &init).map_err(|_| Unreachable)?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = async move {
        let mut resp = Fetch::Request(req).send_with_signal(&signal).await?;
        let status = resp.status_code();
        let body = resp.bytes().await?;
        Ok::<_, worker::Error>(Answer { status, body })
    }
    .boxed_local();
    match select(fetch, Delay::from(TIMEOUT)).await {
        Either::Left((Ok(answer), _)) => Ok(answer),
        Either::Left((Err(_), _)) => Err(Unreachable),
        Either::Right(_) => {
            controller.abort();
            Err(Unreachable)
        }
    }
}
