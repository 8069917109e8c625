//! `AuditSequencer`: one object per audit chain (named by the chain: an org id or `_platform`).
//! It only serializes: the logic is `edgeplane_core::audit::sequencer::Sequencer` over D1.
//!
//! - `POST /poke?chain=…` — place what is pending. If a run is already going, it is told to go
//!   around once more and the poke returns at once, so a burst of writes costs a few runs, not
//!   one run per write.
//! - `POST /sync?chain=…` — wait for a run that starts after this call, so everything committed
//!   before it is placed when it returns (audit reads, cron).

use std::cell::Cell;

use edgeplane_core::audit::sequencer::Sequencer;
use futures_util::lock::Mutex;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::audit::{signer, valid_chain, D1Chain};
use crate::config;
use crate::http::ctx::now_ms;
use crate::http::log;
use edgeplane_runtime::db::Db;

/// Passes per run (50 events each). What a run leaves is taken by the run after it.
const PASSES_PER_RUN: u32 = 20;
/// Runs one invocation makes while pokes keep arriving, before leaving the rest to the next.
const RUNS_PER_INVOCATION: u32 = 10;

#[durable_object(fetch)]
pub struct AuditSequencer {
    env: Env,
    running: Mutex<()>,
    again: Cell<bool>,
}

impl AuditSequencer {
    async fn run(&self, chain: &str) -> std::result::Result<bool, String> {
        let cfg = config::load(&self.env).map_err(|e| e.message)?;
        let db = Db::from_env(&self.env).map_err(|e| e.message)?;
        let signer = signer(&cfg.root);
        let progress = Sequencer::new(chain, &cfg.issuer, &signer)
            .run(&D1Chain(&db), now_ms(), PASSES_PER_RUN)
            .await
            .map_err(|e| e.to_string())?;
        Ok(progress.more)
    }

    /// Runs while there is reason to: more pending than one run takes, or pokes that arrived
    /// during the run. The caller holds `running`.
    async fn drain(&self, chain: &str) -> bool {
        for _ in 0..RUNS_PER_INVOCATION {
            self.again.set(false);
            let more = match self.run(chain).await {
                Ok(more) => more,
                Err(e) => {
                    // Nothing was half-applied; the next poke or cron retries.
                    log::error("audit sequencer", &e);
                    return false;
                }
            };
            if !more && !self.again.get() {
                return true;
            }
        }
        true
    }
}

impl DurableObject for AuditSequencer {
    fn new(_state: State, env: Env) -> Self {
        Self {
            env,
            running: Mutex::new(()),
            again: Cell::new(false),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let url = req.url()?;
        let chain = url
            .query_pairs()
            .find(|(k, _)| k == "chain")
            .map(|(_, v)| v.into_owned())
            .filter(|c| valid_chain(c));
        let Some(chain) = chain else {
            return Response::error("no such chain", 404);
        };
        match url.path() {
            "/poke" => {
                let Some(_running) = self.running.try_lock() else {
                    self.again.set(true);
                    return Response::empty().map(|r| r.with_status(202));
                };
                self.drain(&chain).await;
                Response::empty().map(|r| r.with_status(204))
            }
            "/sync" => {
                let _running = self.running.lock().await;
                if self.drain(&chain).await {
                    Response::empty().map(|r| r.with_status(200))
                } else {
                    Response::error("sequencing failed", 503)
                }
            }
            _ => Response::error("not found", 404),
        }
    }
}
