//! Operator self-tests. A queue probe travels the same path as review jobs — gateway → Queue →
//! review worker → D1 — so "are reviews stuck?" can be answered without a git platform. A probe
//! can be told to fail its first N deliveries, exercising retries, backoff and dead-lettering.

use edgeplane_core::ids::ProbeId;
use edgeplane_core::views::core::{ProbeEnvelope, ProbeQueuedEnvelope};
use serde::Deserialize;

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::core;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateProbe {
    #[serde(default)]
    fail_times: u32,
}

pub async fn create_queue_probe(cx: &mut Cx<'_>) -> HttpResult {
    let body: CreateProbe = cx.json_or_default().await?;
    let probe = core::create_probe(cx, body.fail_times).await?;
    respond::json(202, &ProbeQueuedEnvelope { probe })
}

pub async fn get_queue_probe(cx: &mut Cx<'_>) -> HttpResult {
    let id: ProbeId = cx.id("probe")?;
    respond::ok(&ProbeEnvelope {
        probe: core::get_probe(cx, &id).await?,
    })
}
