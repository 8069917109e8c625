//! `RoundCoordinator`: one object per training round. It only binds: every decision is
//! `edgeplane_core::fl::ledger::RoundLedger` over this object's SQLite, and every step that
//! leaves the object (folding into the shards, publishing, writing the round's end to D1) is the
//! ledger's `Driver` over the shards' stubs, R2 and D1. See ARCHITECTURE.md, "Federated
//! learning", for an update's path.

use edgeplane_core::fl::ledger::run::{Next, RETRY_MS};
use edgeplane_core::fl::ledger::{Effects, LedgerResult, RoundLedger};
use edgeplane_core::fl::wire::{
    CancelReply, CancelRequest, CompleteBegin, CompleteFinish, DeviceRequest, InitiateRequest,
    JoinRequest, PartDone, PartRequest, RoundConfig,
};
use edgeplane_core::ApiError;
use edgeplane_runtime::clock::now_ms;
use edgeplane_runtime::log;
use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use super::round_core::{refusal, Core};
use super::sql::DoSql;
use crate::clients::round::path;
use crate::rpc::reply;

#[durable_object(alarm)]
pub struct RoundCoordinator {
    state: State,
    core: Core,
}

impl RoundCoordinator {
    /// One synchronous ledger decision, then its effects.
    async fn decide<T>(
        &self,
        decision: impl FnOnce(&RoundLedger<'_, DoSql>) -> LedgerResult<(T, Effects)>,
    ) -> std::result::Result<T, ApiError> {
        let sql = self.core.sql();
        let (out, fx) = decision(&self.core.ledger(&sql)?).map_err(refusal)?;
        if fx != Effects::default() {
            // Staged bytes a decision released are swept again at the end if this fails.
            if let Err(e) = self.core.run(async |d| d.apply(&fx).await).await {
                log::warn("round effects", &e.message);
            }
            if fx.close_now {
                self.core.arm(now_ms()).await;
            } else if fx.pump {
                self.core.pump_later(&self.state);
            }
        }
        Ok(out)
    }

    async fn init(&self, cfg: RoundConfig) -> std::result::Result<(), ApiError> {
        let deadline = cfg.deadline_at_ms;
        self.decide(|l| l.init(&cfg).map(|()| ((), Effects::default())))
            .await?;
        self.core.arm(deadline).await;
        Ok(())
    }

    /// Cancels, then writes the cancel to D1 and the audit log; if that fails the alarm retries
    /// it, and so does a repeated cancel.
    async fn cancel(&self, req: CancelRequest) -> std::result::Result<CancelReply, ApiError> {
        let now = now_ms();
        let mut reply = self.decide(|l| l.cancel(&req.requester, now)).await?;
        if !reply.recorded {
            match self.core.run(async |d| d.record().await).await {
                Ok(_) => reply.recorded = true,
                Err(e) => {
                    log::warn("round cancel record", &e.message);
                    self.core.arm(now + RETRY_MS).await;
                }
            }
        }
        Ok(reply)
    }
}

/// Parses an internal request's body, runs `handle`, and answers in the RPC envelope.
async fn serve<T: DeserializeOwned, R: Serialize>(
    req: &mut Request,
    handle: impl AsyncFnOnce(T) -> std::result::Result<R, ApiError>,
) -> Result<Response> {
    match req.json::<T>().await {
        Ok(body) => reply(handle(body).await),
        Err(e) => {
            log::error("round coordinator request", &e.to_string());
            reply::<()>(Err(ApiError::internal()))
        }
    }
}

impl DurableObject for RoundCoordinator {
    fn new(state: State, env: Env) -> Self {
        let core = Core::new(&state, env);
        Self { state, core }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let now = now_ms();
        let path = req.path();
        match path.as_str() {
            path::INIT => serve(&mut req, async |cfg| self.init(cfg).await).await,
            path::JOIN => {
                serve(&mut req, async |r: JoinRequest| {
                    self.decide(|l| l.join(&r, now)).await
                })
                .await
            }
            path::INITIATE => {
                serve(&mut req, async |r: InitiateRequest| {
                    self.decide(|l| l.initiate(&r, now)).await
                })
                .await
            }
            path::PART_GRANT => {
                serve(&mut req, async |r: PartRequest| {
                    self.decide(|l| Ok((l.part_grant(&r, now)?, Effects::default())))
                        .await
                })
                .await
            }
            path::PART_DONE => {
                serve(&mut req, async |r: PartDone| {
                    self.decide(|l| {
                        let rec = l.part_done(&r, now)?;
                        let delete = rec.delete.clone();
                        Ok((
                            rec,
                            Effects {
                                delete,
                                ..Effects::default()
                            },
                        ))
                    })
                    .await
                })
                .await
            }
            path::COMPLETE_BEGIN => {
                serve(&mut req, async |r: CompleteBegin| {
                    self.decide(|l| l.complete_begin(&r, now)).await
                })
                .await
            }
            path::COMPLETE_FINISH => {
                serve(&mut req, async |r: CompleteFinish| {
                    self.decide(|l| l.complete_finish(&r, now)).await
                })
                .await
            }
            path::REVOKE_DEVICE => {
                serve(&mut req, async |r: DeviceRequest| {
                    self.decide(|l| Ok(((), l.revoke_device(&r)?))).await
                })
                .await
            }
            path::CANCEL => serve(&mut req, async |r| self.cancel(r).await).await,
            path::PROGRESS => {
                let sql = self.core.sql();
                reply(
                    self.core
                        .ledger(&sql)
                        .and_then(|l| l.progress().map_err(refusal)),
                )
            }
            _ => Response::error("not found", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let now = now_ms();
        let next = match self.core.run(async |d| d.tick(now).await).await {
            Ok(next) => next.unwrap_or(Next::Never),
            Err(e) => {
                log::warn("round alarm", &e.message);
                Next::At(now + RETRY_MS)
            }
        };
        if let Next::At(at) = next {
            self.core.arm(at).await;
        }
        Response::ok("ok")
    }
}
