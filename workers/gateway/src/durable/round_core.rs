//! The coordinator's handles between requests (`Core`), the I/O one step borrows, and how its
//! failures reach callers. Split from the class so the class stays a thin dispatcher.

use std::cell::Cell;
use std::rc::Rc;

use edgeplane_core::fl::ledger::run::{DriveError, Driver, Memory, RETRY_MS};
use edgeplane_core::fl::ledger::{LedgerError, RoundLedger};
use edgeplane_core::fl::wire::RoundConfig;
use edgeplane_core::store::StoreError;
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::clock::now_ms;
use edgeplane_runtime::db::Db;
use edgeplane_runtime::log;
use worker::{Env, State, Storage};

use super::round_io::{D1Registry, StubShards};
use super::sql::{alarm_at, DoSql};
use crate::storage::R2Blobs;

/// A ledger failure as the caller sees it: a refusal as itself, a storage fault logged here with
/// its cause and answered as internal.
pub fn refusal(e: LedgerError) -> ApiError {
    match e {
        LedgerError::Refused(e) => e,
        LedgerError::Store(e) => store(e),
    }
}

fn store(e: StoreError) -> ApiError {
    log::error("round coordinator storage", &e.to_string());
    ApiError::internal()
}

fn drive(e: DriveError) -> ApiError {
    match e {
        DriveError::Ledger(e) => refusal(e),
        DriveError::NotReady(m) => ApiError::new(ErrorCode::Unavailable, m).with_retry_after(1),
        other => {
            log::warn("round coordinator", &other.to_string());
            ApiError::new(ErrorCode::Unavailable, "the round is busy; retry").with_retry_after(1)
        }
    }
}

/// What survives between requests while the object stays in memory. Cheap to clone, so the
/// pump can run after the response (`wait_until`) with its own handle.
#[derive(Clone)]
pub struct Core {
    storage: Rc<Storage>,
    env: Env,
    memory: Rc<Memory>,
    migrated: Rc<Cell<bool>>,
}

/// Everything one step needs, borrowed by the driver.
struct Io {
    sql: DoSql,
    blobs: R2Blobs,
    registry: D1Registry,
    shards: Option<StubShards>,
}

impl Core {
    pub fn new(state: &State, env: Env) -> Self {
        Self {
            storage: Rc::new(state.storage()),
            env,
            memory: Rc::new(Memory::default()),
            migrated: Rc::new(Cell::new(false)),
        }
    }

    pub fn sql(&self) -> DoSql {
        DoSql(self.storage.sql())
    }

    pub fn ledger<'a>(
        &self,
        sql: &'a DoSql,
    ) -> std::result::Result<RoundLedger<'a, DoSql>, ApiError> {
        if self.migrated.get() {
            return Ok(RoundLedger::on(sql));
        }
        let l = RoundLedger::open(sql).map_err(store)?;
        self.migrated.set(true);
        Ok(l)
    }

    fn io(&self) -> std::result::Result<Io, ApiError> {
        let sql = self.sql();
        let cfg: Option<RoundConfig> = self.ledger(&sql)?.round().map_err(store)?.map(|r| r.config);
        Ok(Io {
            shards: cfg.map(|cfg| StubShards {
                env: self.env.clone(),
                cfg,
            }),
            sql,
            blobs: R2Blobs::from_env(&self.env)?,
            registry: D1Registry {
                db: Db::from_env(&self.env)?,
                env: self.env.clone(),
            },
        })
    }

    /// Runs `step` with a driver over this object's I/O.
    pub async fn run<T>(
        &self,
        step: impl AsyncFnOnce(
            &Driver<'_, DoSql, StubShards, R2Blobs, D1Registry>,
        ) -> std::result::Result<T, DriveError>,
    ) -> std::result::Result<Option<T>, ApiError> {
        let io = self.io()?;
        let Some(shards) = &io.shards else {
            return Ok(None);
        };
        let d = Driver {
            ledger: RoundLedger::on(&io.sql),
            shards,
            blobs: &io.blobs,
            registry: &io.registry,
            memory: &self.memory,
        };
        step(&d).await.map(Some).map_err(drive)
    }

    pub async fn arm(&self, at_ms: i64) {
        if let Err(e) = self.storage.set_alarm(alarm_at(at_ms)).await {
            log::error("round alarm", &e.to_string());
        }
    }

    /// Folds after the response; a failure leaves it to the alarm, soon.
    pub fn pump_later(&self, state: &State) {
        let core = self.clone();
        state.wait_until(async move {
            if let Err(e) = core.run(async |d| d.pump().await).await {
                log::warn("round pump", &e.message);
                core.arm(now_ms() + RETRY_MS / 2).await;
            }
        });
    }
}
