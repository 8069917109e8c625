//! A round's coordinator and its aggregator shards, as callers see them.

use edgeplane_core::fl::wire::{
    AggStatus, CancelReply, CancelRequest, CompleteBegin, CompleteBeginReply, CompleteFinish,
    DeviceRequest, FoldReply, FoldRequest, InitiateReply, InitiateRequest, JoinReply, JoinRequest,
    Outcome, PartDone, PartGrant, PartRecorded, PartRequest, Progress, PublishReply,
    PublishRequest, RoundConfig, StatusRequest,
};
use edgeplane_core::ids::RoundId;
use edgeplane_core::ApiError;
use edgeplane_runtime::db::OrInternal;
use worker::{Env, Stub};

use crate::rpc::call;

/// The coordinator's internal paths.
pub mod path {
    pub const INIT: &str = "/init";
    pub const JOIN: &str = "/join";
    pub const INITIATE: &str = "/initiate";
    pub const PART_GRANT: &str = "/part-grant";
    pub const PART_DONE: &str = "/part-done";
    pub const COMPLETE_BEGIN: &str = "/complete-begin";
    pub const COMPLETE_FINISH: &str = "/complete-finish";
    pub const REVOKE_DEVICE: &str = "/revoke-device";
    pub const CANCEL: &str = "/cancel";
    pub const PROGRESS: &str = "/progress";
}

/// An aggregator shard's internal paths.
pub mod shard_path {
    pub const STATUS: &str = "/status";
    pub const FOLD: &str = "/fold";
    pub const PUBLISH: &str = "/publish";
    pub const DROP: &str = "/drop";
}

pub struct RoundClient(Stub);

impl RoundClient {
    pub fn for_round(env: &Env, round: &RoundId) -> Result<Self, ApiError> {
        env.durable_object("ROUND_COORDINATOR")
            .or_internal("coordinator binding")?
            .get_by_name(round.as_str())
            .or_internal("coordinator stub")
            .map(Self)
    }

    pub async fn init(&self, cfg: &RoundConfig) -> Result<(), ApiError> {
        call(&self.0, path::INIT, cfg).await
    }

    pub async fn join(&self, req: &JoinRequest) -> Result<JoinReply, ApiError> {
        call(&self.0, path::JOIN, req).await
    }

    pub async fn initiate(&self, req: &InitiateRequest) -> Result<InitiateReply, ApiError> {
        call(&self.0, path::INITIATE, req).await
    }

    pub async fn part_grant(&self, req: &PartRequest) -> Result<PartGrant, ApiError> {
        call(&self.0, path::PART_GRANT, req).await
    }

    pub async fn part_done(&self, req: &PartDone) -> Result<PartRecorded, ApiError> {
        call(&self.0, path::PART_DONE, req).await
    }

    pub async fn complete_begin(
        &self,
        req: &CompleteBegin,
    ) -> Result<CompleteBeginReply, ApiError> {
        call(&self.0, path::COMPLETE_BEGIN, req).await
    }

    pub async fn complete_finish(&self, req: &CompleteFinish) -> Result<Outcome, ApiError> {
        call(&self.0, path::COMPLETE_FINISH, req).await
    }

    pub async fn revoke_device(&self, req: &DeviceRequest) -> Result<(), ApiError> {
        call(&self.0, path::REVOKE_DEVICE, req).await
    }

    pub async fn cancel(&self, req: &CancelRequest) -> Result<CancelReply, ApiError> {
        call(&self.0, path::CANCEL, req).await
    }

    pub async fn progress(&self) -> Result<Progress, ApiError> {
        call(&self.0, path::PROGRESS, &()).await
    }
}

/// One aggregator shard of a round.
pub struct ShardClient(Stub);

impl ShardClient {
    pub fn for_shard(env: &Env, cfg: &RoundConfig, k: usize) -> Result<Self, ApiError> {
        env.durable_object("ROUND_AGGREGATOR")
            .or_internal("aggregator binding")?
            .get_by_name(&cfg.shard_name(k))
            .or_internal("aggregator stub")
            .map(Self)
    }

    pub async fn status(&self, req: &StatusRequest) -> Result<AggStatus, ApiError> {
        call(&self.0, shard_path::STATUS, req).await
    }

    pub async fn fold(&self, req: &FoldRequest) -> Result<FoldReply, ApiError> {
        call(&self.0, shard_path::FOLD, req).await
    }

    pub async fn publish(&self, req: &PublishRequest) -> Result<PublishReply, ApiError> {
        call(&self.0, shard_path::PUBLISH, req).await
    }

    pub async fn drop_all(&self) -> Result<(), ApiError> {
        call(&self.0, shard_path::DROP, &()).await
    }
}
