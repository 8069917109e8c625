//! The device protocol, on the paths and with the fields of the Octomil device agent:
//! offers -> join -> plan -> upload (initiate, PUT parts to signed URLs, complete).

use edgeplane_core::crypto::kdf::KeyPurpose;
use edgeplane_core::fl::upload_url::{self, PART_URL_TTL_SECONDS};
use edgeplane_core::fl::validate::UpdateMeta;
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use serde::Deserialize;

use super::common::{device, query, DeviceCx};
use crate::clients::round::RoundClient;
use crate::cx::Cx;
use crate::http::ctx::{now_ms, now_secs};
use crate::http::respond::{self, HttpResult};
use crate::http::signed_url::{self, signed_query};
use crate::service::federation::corrupt;
use crate::service::federation::ingest::{self, StoredPart};
use crate::service::federation::rounds::{
    self, offered_clause, round_in_org, RoundRow, ELIGIBLE, ROUND_COLUMNS,
};
use crate::storage::R2Blobs;
use edgeplane_core::fl::layout::ModelLayout;
use edgeplane_core::fl::pieces::Piece;
use edgeplane_core::fl::validate::UpdateFormat;
use edgeplane_core::fl::wire::{
    CompleteBegin, CompleteBeginReply, CompleteFinish, InitiateReply, InitiateRequest, JoinReply,
    JoinRequest, Outcome, PartDone, PartRequest, ParticipationId,
};
use edgeplane_core::fl::RejectReason;
use edgeplane_core::ids::{PlanId, RoundId, UploadId};
use edgeplane_core::time::IsoMillis;
use edgeplane_core::views::federation::{
    Clipping, Joined, Offer, PartStored, Plan, UpdateAccepted, UpdateStatus, UploadStarted,
};

/// The plan a round was created with (`fl_rounds.plan`).
#[derive(Deserialize)]
struct StoredPlan {
    hyperparams: serde_json::Map<String, serde_json::Value>,
    max_steps: u32,
    max_duration_sec: f64,
}

pub(super) fn participant_device(cx: &Cx<'_>) -> Result<DeviceCx, ApiError> {
    let dev = device(cx)?;
    dev.require(
        dev.scopes
            .contains(edgeplane_core::fl::device_scope::DeviceScope::DevicesWrite),
        "federated training (devices:write)",
    )?;
    Ok(dev)
}

/// Rounds this device may join now: open or collecting, before their deadline, targeting it.
pub async fn offers(cx: &mut Cx<'_>) -> HttpResult {
    let dev = participant_device(cx)?;
    if let Some(named) = query(cx, "device_id")? {
        if !dev.is_me(&named) {
            return Err(ApiError::forbidden(
                "a device can only ask for its own offers",
            ));
        }
    }
    let rows: Vec<RoundRow> = cx
        .db()
        .all(
            &format!(
                "SELECT {ROUND_COLUMNS} FROM fl_rounds r JOIN fl_model_versions v ON v.id = r.base_version_id \
                 WHERE {} ORDER BY r.deadline_at_ms LIMIT 100",
                offered_clause()
            ),
            args![&dev.org_id, now_ms(), &dev.id],
        )
        .await?;
    let offers = rows
        .iter()
        .map(|r| {
            let v = rounds::view(r)?;
            Ok(Offer {
                round_id: v.id,
                plan_id: v.plan_id,
                model_id: v.model_id,
                base_version: v.base_version,
                base_version_id: v.base_version_id,
                deadline_at: v.deadline_at,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    respond::ok(&offers)
}

async fn eligible(cx: &Cx<'_>, round: &RoundRow, device_id: &str) -> Result<bool, ApiError> {
    let found: Option<serde_json::Value> = cx
        .db()
        .first(
            &format!("SELECT 1 AS ok FROM fl_rounds r WHERE r.id = ? AND {ELIGIBLE}"),
            args![&round.id, device_id],
        )
        .await?;
    Ok(found.is_some())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    #[serde(default)]
    participation_id: Option<String>,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    capabilities: Option<serde_json::Value>,
}

pub async fn join(cx: &mut Cx<'_>) -> HttpResult {
    let dev = participant_device(cx)?;
    let body: JoinBody = cx.json_or_default().await?;
    if let Some(named) = &body.device_id {
        if !dev.is_me(named) {
            return Err(ApiError::forbidden("a device can only join as itself"));
        }
    }
    let pid = match body.participation_id {
        Some(p) => ParticipationId::parse(&p)?,
        None => ParticipationId::generate(now_ms())?,
    };
    let round_id: RoundId = cx.id("round")?;
    let round = round_in_org(cx.db(), &round_id, &dev.org_id).await?;
    if !eligible(cx, &round, &dev.id).await? {
        return Err(ApiError::forbidden(
            "this device is not in the round's device group",
        ));
    }
    let reply: JoinReply = RoundClient::for_round(cx.env, &round_id)?
        .join(&JoinRequest {
            participation_id: pid,
            device_id: dev.device_id()?,
            capabilities: body.capabilities.unwrap_or_else(|| serde_json::json!({})),
        })
        .await?;
    let v = rounds::view(&round)?;
    respond::ok(&Joined {
        participation_id: reply.participation_id,
        round_id: v.id,
        plan_id: v.plan_id,
        model_id: v.model_id,
        base_version: v.base_version,
        state: reply.state,
        joined_at: IsoMillis(reply.joined_at_ms),
        deadline_at: v.deadline_at,
    })
}

pub async fn plan(cx: &mut Cx<'_>) -> HttpResult {
    let dev = participant_device(cx)?;
    let plan_id: PlanId = cx.id("plan")?;
    let round: RoundRow = cx
        .db()
        .first(
            &format!(
                "SELECT {ROUND_COLUMNS} FROM fl_rounds r JOIN fl_model_versions v ON v.id = r.base_version_id \
                 WHERE r.plan_id = ? AND r.org_id = ?"
            ),
            args![plan_id.as_str(), &dev.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("plan"))?;
    let v = rounds::view(&round)?;
    let plan: StoredPlan = serde_json::from_str(&round.plan).map_err(|_| corrupt("round plan"))?;
    let layout = base_layout(cx, &round, &dev.org_id).await?;
    let (clip_norm, clipping) = Clipping::of(v.aggregation.clip_norm);
    respond::ok(&Plan {
        plan_id: v.plan_id,
        round_id: v.id,
        model_id: v.model_id,
        base_version: v.base_version,
        algorithm: v.aggregation.algorithm.clone(),
        hyperparams: plan.hyperparams,
        clip_norm,
        clipping,
        noise_sigma: 0.0,
        secure_agg_config: None,
        max_duration_sec: plan.max_duration_sec,
        max_steps: plan.max_steps,
        update_formats: vec![UpdateFormat::Safetensors, UpdateFormat::PlaintextJson],
        element_layout: layout.element_spans(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InitiateBody {
    participation_id: String,
    meta: UpdateMeta,
    /// How many parts the device wants to send (default: parts of at most 8 MiB).
    #[serde(default)]
    part_count: Option<u32>,
}

fn upload_key(cx: &Cx<'_>) -> [u8; 32] {
    cx.cfg.root.derive(KeyPurpose::UploadUrls)
}

pub async fn initiate(cx: &mut Cx<'_>) -> HttpResult {
    let dev = participant_device(cx)?;
    let body: InitiateBody = cx.json().await?;
    let participation_id = ParticipationId::parse(&body.participation_id)?;
    let round_id: RoundId = cx.id("round")?;
    let round = round_in_org(cx.db(), &round_id, &dev.org_id).await?;
    let reply: InitiateReply = RoundClient::for_round(cx.env, &round_id)?
        .initiate(&InitiateRequest {
            upload_id: UploadId::generate(now_ms())?,
            participation_id,
            device_id: dev.device_id()?,
            meta: body.meta,
            part_count: body.part_count,
        })
        .await?;
    let expires = now_secs() + PART_URL_TTL_SECONDS;
    let key = upload_key(cx);
    let urls: Vec<String> = (0..reply.parts)
        .map(|n| {
            let sig = upload_url::sign(&key, &round.id, reply.upload_id.as_str(), n, expires);
            format!(
                "{}/api/v1/federation/rounds/{}/uploads/{}/parts/{n}?expires={expires}&signature={sig}",
                cx.cfg.issuer, round.id, reply.upload_id
            )
        })
        .collect();
    respond::created(&UploadStarted {
        upload_id: reply.upload_id,
        part_urls: urls,
        expires_at: IsoMillis(expires * 1000),
    })
}

/// `PUT` of one part to its signed URL. The URL is the authority (like a presigned object-store
/// URL), so no bearer is needed; the device is still checked for revocation on every part, and
/// the part may carry only what the upload's declared size leaves for it.
pub async fn put_part(cx: &mut Cx<'_>) -> HttpResult {
    let round_id: RoundId = cx.id("round")?;
    let upload_id: UploadId = cx.id("upload")?;
    let part: u32 = cx
        .param("part")?
        .parse()
        .map_err(|_| ApiError::not_found("upload part"))?;
    let link = signed_query(cx, "part URL")?;
    upload_url::verify(
        &upload_key(cx),
        round_id.as_str(),
        upload_id.as_str(),
        part,
        link.expires,
        &link.signature,
        now_secs(),
    )
    .map_err(|e| signed_url::refused(e, "part URL", "initiate again"))?;
    let round = RoundClient::for_round(cx.env, &round_id)?;
    let req = PartRequest {
        upload_id: upload_id.clone(),
        part,
    };
    let grant = round.part_grant(&req).await?;
    #[derive(Deserialize)]
    struct Revoked {
        revoked_at_ms: Option<i64>,
    }
    let d: Option<Revoked> = cx
        .db()
        .first(
            "SELECT revoked_at_ms FROM fl_devices WHERE id = ?",
            args![grant.device_id.as_str()],
        )
        .await?;
    if d.map(|d| d.revoked_at_ms.is_some()).unwrap_or(true) {
        return Err(ApiError::new(
            ErrorCode::InvalidToken,
            "this device was revoked",
        ));
    }
    // The body streams straight into R2: the isolate never holds the part. Its size is bounded
    // before a byte is stored: by the per-part cap, and by what the declared size leaves.
    let declared = cx
        .req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| ApiError::bad_request("a part needs a Content-Length"))?;
    super::PART_BODY.check_declared(Some(declared))?;
    if declared == 0 {
        return Err(ApiError::validation("a part must not be empty"));
    }
    if declared > grant.max_bytes {
        return Err(RejectReason::TooLarge.to_error(&format!(
            "this part may carry at most {} bytes of the upload's declared size",
            grant.max_bytes
        )));
    }
    let body = cx
        .req
        .inner()
        .body()
        .ok_or_else(|| ApiError::validation("a part must not be empty"))?;
    let nonce = hex::encode(edgeplane_core::crypto::random_bytes::<6>()?);
    let key = format!("staging/{round_id}/{upload_id}/{part:05}-{nonce}");
    let blobs = R2Blobs::from_env(cx.env)?;
    let StoredPart { size, stream_state } =
        ingest::store_part(&blobs, &key, body, grant.stream).await?;
    let stored = Piece {
        key: key.clone(),
        size,
    };
    if size != declared {
        blobs.discard(std::slice::from_ref(&stored)).await;
        return Err(ApiError::bad_request(
            "the part body does not match its Content-Length",
        ));
    }
    let done = PartDone {
        upload_id: upload_id.clone(),
        part,
        key,
        size,
        stream_state,
    };
    match round.part_done(&done).await {
        // A replaced part's earlier bytes were deleted by the coordinator.
        Ok(_) => respond::ok(&PartStored {
            upload_id,
            part,
            size,
        }),
        Err(e) => {
            // Refused after the bytes landed (the upload moved on meanwhile): nothing refers to
            // them.
            blobs.discard(std::slice::from_ref(&stored)).await;
            Err(e)
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    #[serde(default)]
    meta: Option<UpdateMeta>,
    /// Carried for compatibility; verified proofs are not part of plaintext aggregation.
    #[serde(default)]
    #[allow(dead_code)]
    privacy_proof: Option<serde_json::Value>,
}

pub(super) fn answer(outcome: Outcome, round_id: &RoundId, upload_id: &UploadId) -> HttpResult {
    match outcome {
        Outcome::Accepted {
            participation_id,
            seq,
            sample_count,
        } => respond::ok(&UpdateAccepted {
            status: UpdateStatus::Accepted,
            round_id: round_id.clone(),
            upload_id: upload_id.clone(),
            participation_id,
            sequence: seq,
            sample_count,
        }),
        Outcome::Rejected { reason, message } => Err(reason.to_error(&message)),
    }
}

/// Completes an upload: the staged bytes are streamed once through the validator here (stateless
/// work, off the coordinator), and the coordinator records the verdict. Repeating a complete
/// returns the same answer; only the first acceptance counts.
pub async fn complete(cx: &mut Cx<'_>) -> HttpResult {
    let dev = participant_device(cx)?;
    let body: CompleteBody = cx.json_or_default().await?;
    let round_id: RoundId = cx.id("round")?;
    let upload_id: UploadId = cx.id("upload")?;
    round_in_org(cx.db(), &round_id, &dev.org_id).await?;
    let round = RoundClient::for_round(cx.env, &round_id)?;
    let begin = round
        .complete_begin(&CompleteBegin {
            upload_id: upload_id.clone(),
            device_id: dev.device_id()?,
            meta: body.meta,
        })
        .await?;
    if let CompleteBeginReply::Done { outcome } = begin {
        return answer(outcome, &round_id, &upload_id);
    }
    let verdict = ingest::verdict(&R2Blobs::from_env(cx.env)?, begin).await?;
    let outcome = round
        .complete_finish(&CompleteFinish {
            upload_id: upload_id.clone(),
            verdict,
        })
        .await?;
    answer(outcome, &round_id, &upload_id)
}

/// The tensor layout of a round's base version: what a device's update must match.
pub(super) async fn base_layout(
    cx: &Cx<'_>,
    round: &RoundRow,
    org_id: &str,
) -> Result<ModelLayout, ApiError> {
    #[derive(Deserialize)]
    struct BaseLayout {
        layout: String,
    }
    let base: BaseLayout = cx
        .db()
        .first(
            "SELECT layout FROM fl_model_versions WHERE id = ? AND org_id = ?",
            args![&round.base_version_id, org_id],
        )
        .await?
        .ok_or_else(|| corrupt("round base version"))?;
    serde_json::from_str(&base.layout).map_err(|_| corrupt("version layout"))
}
