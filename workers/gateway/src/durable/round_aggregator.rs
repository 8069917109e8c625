//! `RoundAggregator`: one shard (a contiguous element range) of one round's running sum. The
//! logic — the sum, its checkpoints, folding and publishing — is
//! `edgeplane_core::fl::accumulator::Aggregator`; this class gives it the object's SQLite and R2.

use edgeplane_core::fl::accumulator::{AggError, Aggregator};
use edgeplane_core::fl::wire::{FoldRequest, PublishRequest, StatusRequest};
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::log;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use super::sql::DoSql;
use crate::clients::round::shard_path;
use crate::rpc::reply;
use crate::storage::R2Blobs;

#[durable_object(fetch)]
pub struct RoundAggregator {
    state: State,
    env: Env,
    agg: Aggregator,
}

/// A shard's failure as the coordinator sees it: busy is worth retrying, a publish asked too
/// early is a conflict, anything else is logged here with its cause and is internal.
fn api(e: AggError) -> ApiError {
    match e {
        AggError::Busy => ApiError::new(ErrorCode::Unavailable, "aggregator busy"),
        AggError::NotFolded { .. } => ApiError::conflict(e.to_string()),
        other => {
            log::error("round aggregator", &other.to_string());
            ApiError::internal()
        }
    }
}

impl RoundAggregator {
    fn sql(&self) -> DoSql {
        DoSql(self.state.storage().sql())
    }
}

impl DurableObject for RoundAggregator {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            agg: Aggregator::new(),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let sql = self.sql();
        match req.path().as_str() {
            shard_path::STATUS => {
                let r: StatusRequest = req.json().await?;
                reply(self.agg.status(&sql, r.len).map_err(api))
            }
            shard_path::FOLD => {
                let r: FoldRequest = req.json().await?;
                reply(match R2Blobs::from_env(&self.env) {
                    Ok(blobs) => {
                        let folded = self.agg.fold(&sql, &blobs, &r).await.map_err(api);
                        // What the fold read: with validation done while parts streamed in,
                        // this is the only read of an update's bytes (the bench sums these).
                        log::info(
                            "r2 read",
                            serde_json::json!({"purpose": "fold", "bytes": blobs.bytes_read()}),
                        );
                        folded
                    }
                    Err(e) => Err(e),
                })
            }
            shard_path::PUBLISH => {
                let r: PublishRequest = req.json().await?;
                reply(match R2Blobs::from_env(&self.env) {
                    Ok(blobs) => self.agg.publish(&sql, &blobs, &r).await.map_err(api),
                    Err(e) => Err(e),
                })
            }
            shard_path::DROP => reply(self.agg.drop_all(&sql).map_err(api)),
            _ => Response::error("not found", 404),
        }
    }
}
