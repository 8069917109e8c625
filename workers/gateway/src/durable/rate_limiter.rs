//! `RateLimiter`: one object per limited key (e.g. `signin:ip:203.0.113.9`), holding a token
//! bucket. A Durable Object serializes its requests, so the count is exact under concurrency.

use std::cell::RefCell;

use edgeplane_core::ratelimit::{Bucket, Decision, Limit};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use edgeplane_runtime::clock::now_ms;

#[derive(Debug, Serialize, Deserialize)]
pub struct CheckRequest {
    pub limit: Limit,
    pub cost: u32,
}

#[durable_object(fetch)]
pub struct RateLimiter {
    state: State,
    bucket: RefCell<Option<Bucket>>,
}

const KEY: &str = "bucket";

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            bucket: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match req.path().as_str() {
            "/ping" => Response::ok("pong"),
            "/check" => {
                let check: CheckRequest = req.json().await?;
                let now = now_ms();
                let cached = *self.bucket.borrow();
                let mut bucket = match cached {
                    Some(b) => b,
                    None => self
                        .state
                        .storage()
                        .get::<Bucket>(KEY)
                        .await?
                        .unwrap_or_else(|| Bucket::full(check.limit, now)),
                };
                let decision: Decision = bucket.take(check.limit, check.cost, now);
                *self.bucket.borrow_mut() = Some(bucket);
                self.state.storage().put(KEY, bucket).await?;
                Response::from_json(&decision)
            }
            _ => Response::error("not found", 404),
        }
    }
}
