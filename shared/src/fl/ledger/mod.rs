//! A round's ledger: the coordinator's state and every decision about it, over the round's own
//! storage ([`SqlExec`]).
//!
//! Each method is one synchronous stretch of reads and writes, which a Durable Object's SQLite
//! commits atomically: acceptance (next sequence number, weight, totals, and at quorum the state
//! change) can never be half written. What has to happen outside the object afterwards (staged
//! bytes to delete, a state to mirror to D1, the pump to run) comes back as [`Effects`]; the
//! asynchronous driver in [`run`] carries them out, so an eviction between the two loses nothing
//! the next wake-up cannot redo.

mod reading;
pub mod records;
pub mod run;

#[cfg(test)]
mod tests;

use records::{Ended, PartRecord, ParticipantRecord, RoundRecord, StreamProgress, UploadRecord};

use super::participation::{
    decide_initiate, decide_join, decide_part, part_count, JoinDecision, Participation,
    ParticipationState, RoundView, UploadState, MAX_PART_BYTES,
};
use super::pieces::{self, Piece};
use super::round::{closing, Closing, RejectReason, RoundFailure, RoundState};
use super::shard::segments;
use super::validate::{max_upload_size, UpdateSource};
use super::wire::{
    CancelReply, CompleteBegin, CompleteBeginReply, CompleteFinish, DeviceRequest, FoldRequest,
    FoldSource, InitiateReply, InitiateRequest, JoinReply, JoinRequest, Outcome, PartDone,
    PartGrant, PartRecorded, PartRequest, Requester, RoundConfig, StreamResume,
};
use crate::error::ApiError;
use crate::ids::{ModelVersionId, UploadId};
use crate::store::{SqlExec, StoreError};

/// Largest `capabilities` object a device may send with its join.
pub const MAX_CAPABILITIES_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A decision the caller is told about (4xx for devices and operators).
    #[error("{}", .0.message)]
    Refused(ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ApiError> for LedgerError {
    fn from(e: ApiError) -> Self {
        LedgerError::Refused(e)
    }
}

pub type LedgerResult<T> = Result<T, LedgerError>;

/// What must happen outside the object after a decision was stored.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    /// Uploads whose staged bytes are no longer needed.
    pub release: Vec<UploadId>,
    /// Staged objects no upload references any more.
    pub delete: Vec<String>,
    /// The round moved to this (non-terminal) state: mirror it to D1.
    pub mirror: Option<RoundState>,
    /// An update was accepted: fold it.
    pub pump: bool,
    /// The round closed: publish (or record its end) now rather than at the deadline.
    pub close_now: bool,
}

/// What the alarm should do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Tick {
    /// Nothing to do; the round is over and recorded (or was never created).
    Idle,
    /// The round ended in this object but D1 does not have it yet.
    Record,
    /// The round's end is recorded; its staged bytes or shard sums may still be there.
    Cleanup,
    /// Aggregating: publish the new version.
    Publish,
    /// Still collecting: retry a stalled fold, and wake again at the deadline.
    Pump { deadline_at_ms: i64 },
}

/// The fixed facts of a publication, decided once so a retried publish writes the same bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub version_id: ModelVersionId,
    pub noise_seed: String,
    pub accepted: i64,
    pub total_weight: f64,
    pub total_samples: i64,
    pub noise_sigma: Option<f64>,
}

/// The decision functions' view of a stored participation.
fn participation(p: &ParticipantRecord) -> Participation<'_> {
    Participation {
        id: p.id.as_str(),
        device_id: p.device_id.as_str(),
        state: p.state,
    }
}

pub struct RoundLedger<'a, E: SqlExec> {
    sql: &'a E,
}

impl<'a, E: SqlExec> RoundLedger<'a, E> {
    /// Opens the ledger over an object's storage, bringing its schema up to date.
    pub fn open(sql: &'a E) -> Result<Self, StoreError> {
        records::migrate(sql)?;
        Ok(Self { sql })
    }

    /// The ledger over storage this object instance has already opened (and so migrated):
    /// spares the hot paths the schema check.
    pub fn on(sql: &'a E) -> Self {
        Self { sql }
    }

    pub fn round(&self) -> Result<Option<RoundRecord>, StoreError> {
        records::round(self.sql)
    }

    fn loaded(&self) -> LedgerResult<RoundRecord> {
        self.round()?
            .ok_or_else(|| LedgerError::Refused(ApiError::not_found("round")))
    }

    fn view(&self, r: &RoundRecord, now_ms: i64) -> LedgerResult<RoundView> {
        Ok(RoundView {
            state: r.state,
            deadline_ms: r.config.deadline_at_ms,
            now_ms,
            joined: records::count_participants_holding_a_place(self.sql)?,
            max: r.config.max,
        })
    }

    /// Starts the round. Repeating it with the same round is harmless.
    pub fn init(&self, cfg: &RoundConfig) -> LedgerResult<()> {
        if let Some(r) = self.round()? {
            if r.config.round_id == cfg.round_id {
                return Ok(());
            }
            return Err(ApiError::conflict("this coordinator runs another round").into());
        }
        cfg.quorum()?;
        records::insert_round(self.sql, cfg)?;
        Ok(())
    }

    pub fn join(&self, req: &JoinRequest, now_ms: i64) -> LedgerResult<(JoinReply, Effects)> {
        let r = self.loaded()?;
        let view = self.view(&r, now_ms)?;
        if records::is_revoked(self.sql, &req.device_id)? {
            return Err(RejectReason::DeviceRevoked
                .to_error("this device was revoked")
                .into());
        }
        let by_id = records::participant(self.sql, &req.participation_id)?;
        let by_device = records::participant_of_device(self.sql, &req.device_id)?;
        let decision = decide_join(
            &view,
            req.device_id.as_str(),
            by_id.as_ref().map(participation).as_ref(),
            by_device.as_ref().map(participation).as_ref(),
        )?;
        match (decision, by_id) {
            (JoinDecision::Again, Some(p)) => Ok((
                JoinReply {
                    participation_id: p.id,
                    state: p.state,
                    joined_at_ms: p.joined_at_ms,
                },
                Effects::default(),
            )),
            (JoinDecision::Again, None) => Err(ApiError::conflict("join again").into()),
            (JoinDecision::Admit, _) => {
                let caps = req.capabilities.to_string();
                if caps.len() > MAX_CAPABILITIES_BYTES {
                    return Err(
                        ApiError::validation("capabilities must be at most 4 KiB of JSON").into(),
                    );
                }
                let p = ParticipantRecord {
                    id: req.participation_id.clone(),
                    device_id: req.device_id.clone(),
                    state: ParticipationState::Joined,
                    joined_at_ms: now_ms,
                    upload_id: None,
                };
                records::insert_participant(self.sql, &p, &caps)?;
                let mut fx = Effects::default();
                if r.state == RoundState::Open {
                    records::set_state(self.sql, RoundState::Collecting)?;
                    fx.mirror = Some(RoundState::Collecting);
                }
                Ok((
                    JoinReply {
                        participation_id: p.id,
                        state: p.state,
                        joined_at_ms: now_ms,
                    },
                    fx,
                ))
            }
        }
    }

    pub fn initiate(
        &self,
        req: &InitiateRequest,
        now_ms: i64,
    ) -> LedgerResult<(InitiateReply, Effects)> {
        let r = self.loaded()?;
        let view = self.view(&r, now_ms)?;
        let p = records::participant(self.sql, &req.participation_id)?;
        decide_initiate(
            &view,
            req.device_id.as_str(),
            p.as_ref().map(participation).as_ref(),
        )?;
        let max = max_upload_size(&r.config.layout, req.meta.format);
        req.meta
            .check(max)
            .map_err(|(reason, msg)| reason.to_error(&msg))?;
        let parts = part_count(req.meta.size, req.part_count)?;
        // A newer upload replaces one still in flight for the same participation.
        let mut fx = Effects::default();
        for old in records::uploads_in(self.sql, &[UploadState::Uploading])? {
            if old.participation_id == req.participation_id {
                records::set_upload_state(self.sql, &old.id, UploadState::Abandoned)?;
                fx.release.push(old.id);
            }
        }
        records::insert_upload(
            self.sql,
            &UploadRecord {
                id: req.upload_id.clone(),
                participation_id: req.participation_id.clone(),
                device_id: req.device_id.clone(),
                state: UploadState::Uploading,
                meta: req.meta.clone(),
                parts,
                created_at_ms: now_ms,
                completed_at_ms: None,
                seq: None,
                weight: None,
                source: None,
                reject: None,
                released: false,
                stream: StreamProgress::default(),
            },
        )?;
        records::set_participant(
            self.sql,
            &req.participation_id,
            ParticipationState::Uploading,
            Some(&req.upload_id),
        )?;
        Ok((
            InitiateReply {
                upload_id: req.upload_id.clone(),
                parts,
            },
            fx,
        ))
    }

    fn upload_for_part(
        &self,
        upload_id: &UploadId,
        part: u32,
        now_ms: i64,
    ) -> LedgerResult<(RoundRecord, UploadRecord)> {
        let r = self.loaded()?;
        let view = self.view(&r, now_ms)?;
        let u =
            records::upload(self.sql, upload_id)?.ok_or_else(|| ApiError::not_found("upload"))?;
        let revoked = records::is_revoked(self.sql, &u.device_id)?
            || matches!(u.reject, Some((RejectReason::DeviceRevoked, _)));
        decide_part(&view, u.state, revoked, part, u.parts)?;
        Ok((r, u))
    }

    /// Bytes the declared size leaves for part `part`, given the other parts recorded so far.
    fn room_for(u: &UploadRecord, others: &[PartRecord]) -> u64 {
        let held: u64 = others.iter().map(|p| p.size).sum();
        let missing = u64::from(u.parts).saturating_sub(1 + others.len() as u64);
        u.meta
            .size
            .saturating_sub(held)
            .saturating_sub(missing)
            .min(MAX_PART_BYTES)
    }

    /// May part `req.part` be written, and how many bytes may it carry.
    pub fn part_grant(&self, req: &PartRequest, now_ms: i64) -> LedgerResult<PartGrant> {
        let (r, u) = self.upload_for_part(&req.upload_id, req.part, now_ms)?;
        let others: Vec<PartRecord> = records::parts(self.sql, &u.id)?
            .into_iter()
            .filter(|p| p.part != req.part)
            .collect();
        let max_bytes = Self::room_for(&u, &others);
        if max_bytes == 0 {
            return Err(RejectReason::TooLarge
                .to_error("the other parts already hold the upload's declared size")
                .into());
        }
        // The next part in order continues the validation the earlier parts advanced.
        let stream = (!u.stream.broken && req.part == u.stream.parts).then(|| StreamResume {
            meta: u.meta.clone(),
            layout: r.config.layout.clone(),
            shard_starts: r.config.shard_starts(),
            state: u.stream.state.clone(),
        });
        Ok(PartGrant {
            device_id: u.device_id,
            max_bytes,
            stream,
        })
    }

    /// Records a written part. On `Err` nothing references `req.key`: the writer deletes it.
    pub fn part_done(&self, req: &PartDone, now_ms: i64) -> LedgerResult<PartRecorded> {
        // Re-checked after the bytes were written: the upload may have been completed, replaced
        // or revoked meanwhile, and then these bytes must not count.
        let (_, u) = self.upload_for_part(&req.upload_id, req.part, now_ms)?;
        let all = records::parts(self.sql, &u.id)?;
        let (same, others): (Vec<PartRecord>, Vec<PartRecord>) =
            all.into_iter().partition(|p| p.part == req.part);
        // Parts written concurrently each passed their grant; the total is checked here, where
        // records are serialized.
        if req.size > Self::room_for(&u, &others) {
            return Err(RejectReason::TooLarge
                .to_error("the parts exceed the upload's declared size")
                .into());
        }
        records::put_part(
            self.sql,
            &u.id,
            &PartRecord {
                part: req.part,
                key: req.key.clone(),
                size: req.size,
            },
        )?;
        let mut stream = u.stream.clone();
        if req.part < stream.parts {
            // A part the validation already went through was replaced: its bytes are not the
            // ones validated, so `complete` validates from storage instead.
            stream = StreamProgress {
                broken: true,
                ..StreamProgress::default()
            };
        } else if let (Some(state), false, true) =
            (&req.stream_state, stream.broken, req.part == stream.parts)
        {
            stream.parts += 1;
            stream.state = Some(state.clone());
        }
        if stream != u.stream {
            records::set_stream(self.sql, &u.id, &stream)?;
        }
        Ok(PartRecorded {
            delete: same
                .into_iter()
                .filter(|old| old.key != req.key)
                .map(|old| old.key)
                .collect(),
        })
    }

    fn outcome_of(u: &UploadRecord) -> Option<Outcome> {
        match u.state {
            UploadState::Accepted => Some(Outcome::Accepted {
                participation_id: u.participation_id.clone(),
                seq: u.seq.unwrap_or(0),
                sample_count: u.meta.sample_count,
            }),
            UploadState::Rejected => {
                let (reason, message) = u
                    .reject
                    .clone()
                    .unwrap_or((RejectReason::Malformed, String::new()));
                Some(Outcome::Rejected { reason, message })
            }
            _ => None,
        }
    }

    /// Marks an upload rejected (terminal for the upload, not for the participation).
    fn reject(
        &self,
        u: &UploadRecord,
        reason: RejectReason,
        message: &str,
    ) -> LedgerResult<(Outcome, Effects)> {
        records::reject_upload(self.sql, &u.id, reason, message)?;
        if let Some(p) = records::participant(self.sql, &u.participation_id)? {
            if p.state == ParticipationState::Uploading && p.upload_id.as_ref() == Some(&u.id) {
                records::set_participant(self.sql, &p.id, ParticipationState::Joined, None)?;
            }
        }
        Ok((
            Outcome::Rejected {
                reason,
                message: message.to_owned(),
            },
            Effects {
                release: vec![u.id.clone()],
                ..Effects::default()
            },
        ))
    }

    pub fn complete_begin(
        &self,
        req: &CompleteBegin,
        now_ms: i64,
    ) -> LedgerResult<(CompleteBeginReply, Effects)> {
        let r = self.loaded()?;
        let u = records::upload(self.sql, &req.upload_id)?
            .filter(|u| u.device_id == req.device_id)
            .ok_or_else(|| ApiError::not_found("upload"))?;
        if let Some(outcome) = Self::outcome_of(&u) {
            return Ok((CompleteBeginReply::Done { outcome }, Effects::default()));
        }
        let done = |(outcome, fx)| Ok((CompleteBeginReply::Done { outcome }, fx));
        let mut meta = u.meta.clone();
        match u.state {
            UploadState::Abandoned => {
                return Err(ApiError::conflict(
                    "this upload was replaced or the round closed; start a new one",
                )
                .into())
            }
            UploadState::Uploading => {
                if !r.state.is_accepting() || now_ms >= r.config.deadline_at_ms {
                    return done(self.reject(
                        &u,
                        RejectReason::RoundClosed,
                        "the round closed before this upload completed",
                    )?);
                }
                if let Some(m) = &req.meta {
                    if m.sha256 != meta.sha256 || m.size != meta.size || m.format != meta.format {
                        return Err(ApiError::validation(
                            "meta.sha256, meta.size and meta.format must match what the upload was started with",
                        )
                        .into());
                    }
                    meta.sample_count = m.sample_count;
                    if !m.metrics.is_empty() {
                        meta.metrics = m.metrics.clone();
                    }
                }
                if let Err((reason, msg)) =
                    meta.check(max_upload_size(&r.config.layout, meta.format))
                {
                    return done(self.reject(&u, reason, &msg)?);
                }
                let have = records::parts(self.sql, &u.id)?.len() as u32;
                if have < u.parts {
                    return Err(RejectReason::IncompleteUpload
                        .to_error(&format!(
                            "{have} of {} parts were received; PUT the rest, then complete again",
                            u.parts
                        ))
                        .into());
                }
                records::set_upload_meta(self.sql, &u.id, &meta)?;
                records::set_upload_state(self.sql, &u.id, UploadState::Completing)?;
            }
            // A complete repeated while validation runs (or after it was cut short) validates
            // again: the verdict is recorded once, by the first finish.
            UploadState::Completing => {}
            UploadState::Accepted | UploadState::Rejected => {}
        }
        if !u.stream.broken && u.stream.parts == u.parts && u.stream.state.is_some() {
            return Ok((
                CompleteBeginReply::Finish {
                    meta,
                    layout: r.config.layout.clone(),
                    shard_starts: r.config.shard_starts(),
                    state: u.stream.state.clone(),
                    pieces: records::pieces(self.sql, &u.id)?,
                },
                Effects::default(),
            ));
        }
        Ok((
            CompleteBeginReply::Validate {
                meta,
                pieces: records::pieces(self.sql, &u.id)?,
                layout: r.config.layout.clone(),
                shard_starts: r.config.shard_starts(),
            },
            Effects::default(),
        ))
    }

    /// Records a validation verdict. Acceptance assigns the next sequence number and the weight
    /// and updates the totals (and at quorum the state), all in this one synchronous stretch.
    pub fn complete_finish(
        &self,
        req: &CompleteFinish,
        now_ms: i64,
    ) -> LedgerResult<(Outcome, Effects)> {
        let r = self.loaded()?;
        let u = records::upload(self.sql, &req.upload_id)?
            .ok_or_else(|| ApiError::not_found("upload"))?;
        if let Some(outcome) = Self::outcome_of(&u) {
            return Ok((outcome, Effects::default()));
        }
        if u.state != UploadState::Completing {
            return Err(ApiError::conflict("this upload is not being completed").into());
        }
        let validated = match &req.verdict {
            Err((reason, msg)) => return self.reject(&u, *reason, msg),
            Ok(v) => v,
        };
        if !r.state.is_accepting() {
            return self.reject(
                &u,
                RejectReason::RoundClosed,
                "the round closed before this upload completed",
            );
        }
        let p = records::participant(self.sql, &u.participation_id)?;
        if p.as_ref().map(|p| p.state) == Some(ParticipationState::Accepted) {
            return Err(
                ApiError::conflict("this participation already has an accepted update").into(),
            );
        }
        let (weight, capped) = r
            .config
            .aggregation
            .weight(u.meta.sample_count, validated.norm);
        let seq = r.accepted + 1;
        let quorum = r.config.quorum()?;
        let close = closing(quorum, seq as u32, false) == Closing::Publish;
        records::accept_upload(self.sql, &u.id, seq, weight, &validated.source, now_ms)?;
        records::set_participant(
            self.sql,
            &u.participation_id,
            ParticipationState::Accepted,
            Some(&u.id),
        )?;
        self.sql.exec(
            "UPDATE round SET accepted = ?, total_weight = total_weight + ?, \
             total_samples = total_samples + ?, capped = capped + ? WHERE id = 1",
            &crate::vals![seq, weight, u.meta.sample_count, i64::from(capped)],
        )?;
        let mut fx = Effects {
            pump: true,
            ..Effects::default()
        };
        if close {
            records::set_state(self.sql, RoundState::Aggregating)?;
            fx.mirror = Some(RoundState::Aggregating);
            fx.close_now = true;
        }
        Ok((
            Outcome::Accepted {
                participation_id: u.participation_id,
                seq,
                sample_count: u.meta.sample_count,
            },
            fx,
        ))
    }

    /// Refuses a device's work from now on: its in-flight uploads are rejected and a
    /// participation without an accepted update is revoked (an accepted one still counts).
    pub fn revoke_device(&self, req: &DeviceRequest) -> LedgerResult<Effects> {
        if self.round()?.is_none() {
            return Ok(Effects::default());
        }
        records::add_revoked(self.sql, &req.device_id)?;
        let mut fx = Effects::default();
        for u in records::uploads_in(self.sql, &[UploadState::Uploading, UploadState::Completing])?
        {
            if u.device_id == req.device_id {
                records::reject_upload(
                    self.sql,
                    &u.id,
                    RejectReason::DeviceRevoked,
                    "the device was revoked during the upload",
                )?;
                fx.release.push(u.id);
            }
        }
        if let Some(p) = records::participant_of_device(self.sql, &req.device_id)? {
            if p.state != ParticipationState::Accepted {
                records::set_participant(self.sql, &p.id, ParticipationState::Revoked, None)?;
            }
        }
        Ok(fx)
    }

    /// Ends the round here: in-flight uploads are abandoned and every staged byte released.
    fn end(
        &self,
        state: RoundState,
        failure: Option<RoundFailure>,
        ended: &Ended,
        now_ms: i64,
    ) -> LedgerResult<Effects> {
        records::set_ended(self.sql, state, failure, ended, now_ms)?;
        for u in records::uploads_in(self.sql, &[UploadState::Uploading, UploadState::Completing])?
        {
            records::set_upload_state(self.sql, &u.id, UploadState::Abandoned)?;
        }
        Ok(Effects {
            release: records::unreleased(self.sql)?,
            ..Effects::default()
        })
    }

    /// Cancels the round (idempotent: a repeat answers as the first did, and says whether D1
    /// has the cancel yet).
    pub fn cancel(
        &self,
        requester: &Requester,
        now_ms: i64,
    ) -> LedgerResult<(CancelReply, Effects)> {
        let r = self.loaded()?;
        if let (RoundState::Cancelled, Some(Ended::Cancelled { previous, .. })) =
            (r.state, &r.ended)
        {
            return Ok((
                CancelReply {
                    previous: *previous,
                    recorded: r.recorded,
                },
                Effects::default(),
            ));
        }
        if !r.state.can_become(RoundState::Cancelled) {
            return Err(ApiError::conflict(format!(
                "a round that is {} cannot be cancelled",
                r.state.as_str()
            ))
            .into());
        }
        let ended = Ended::Cancelled {
            previous: r.state,
            requester: requester.clone(),
        };
        let fx = self.end(RoundState::Cancelled, None, &ended, now_ms)?;
        Ok((
            CancelReply {
                previous: r.state,
                recorded: false,
            },
            fx,
        ))
    }

    /// The alarm's decision. Past the deadline an open round closes here: to aggregating if it
    /// has its minimum, otherwise it ends `insufficient_updates`.
    pub fn tick(&self, now_ms: i64) -> LedgerResult<(Tick, Effects)> {
        let Some(r) = self.round()? else {
            return Ok((Tick::Idle, Effects::default()));
        };
        if r.state.is_terminal() {
            let t = match (r.recorded, r.cleaned) {
                (false, _) => Tick::Record,
                (true, false) => Tick::Cleanup,
                (true, true) => Tick::Idle,
            };
            return Ok((t, Effects::default()));
        }
        if r.state.is_accepting() && now_ms >= r.config.deadline_at_ms {
            return match closing(r.config.quorum()?, r.accepted as u32, true) {
                Closing::Insufficient => {
                    let fx = self.end(
                        RoundState::InsufficientUpdates,
                        None,
                        &Ended::InsufficientUpdates {
                            accepted: r.accepted,
                        },
                        now_ms,
                    )?;
                    Ok((Tick::Record, fx))
                }
                _ => {
                    records::set_state(self.sql, RoundState::Aggregating)?;
                    let fx = Effects {
                        mirror: Some(RoundState::Aggregating),
                        ..Effects::default()
                    };
                    Ok((Tick::Publish, fx))
                }
            };
        }
        match r.state {
            RoundState::Aggregating => Ok((Tick::Publish, Effects::default())),
            _ => Ok((
                Tick::Pump {
                    deadline_at_ms: r.config.deadline_at_ms,
                },
                Effects::default(),
            )),
        }
    }

    // ---- the pump's plan -----------------------------------------------------------------

    /// The fold of accepted update `seq` into shard `k`.
    pub fn fold_request(&self, cfg: &RoundConfig, seq: i64, k: usize) -> LedgerResult<FoldRequest> {
        let u = records::accepted_upload(self.sql, seq)?
            .ok_or_else(|| StoreError::corrupt(format!("accepted update {seq} missing")))?;
        let (Some(weight), Some(source)) = (u.weight, u.source) else {
            return Err(StoreError::corrupt(format!("accepted update {seq} incomplete")).into());
        };
        let range = cfg
            .shard_ranges()
            .get(k)
            .cloned()
            .ok_or_else(|| StoreError::corrupt(format!("no shard {k}")))?;
        let pieces = records::pieces(self.sql, &u.id)?;
        let source = match source {
            UpdateSource::Safetensors { tensor_starts } => FoldSource::Safetensors {
                segments: segments(&cfg.layout, &tensor_starts, range.clone()),
                pieces,
            },
            UpdateSource::PlaintextJson { shard_offsets } => {
                let start = *shard_offsets
                    .get(k)
                    .ok_or_else(|| StoreError::corrupt("shard offsets"))?;
                let end = shard_offsets
                    .get(k + 1)
                    .copied()
                    .unwrap_or_else(|| pieces::total(&pieces));
                FoldSource::PlaintextJson { pieces, start, end }
            }
        };
        Ok(FoldRequest {
            len: range.end - range.start,
            seq,
            weight,
            source,
        })
    }

    /// Records how far every shard has folded; returns the uploads whose staged bytes every
    /// shard's checkpoint now covers.
    pub fn folded(&self, folded: i64, checkpointed: i64) -> LedgerResult<Vec<UploadId>> {
        self.sql.exec(
            "UPDATE round SET folded = ? WHERE id = 1",
            &crate::vals![folded],
        )?;
        Ok(records::releasable(self.sql, checkpointed)?)
    }

    /// The staged pieces of an upload (to delete when released).
    pub fn staged(&self, upload: &UploadId) -> LedgerResult<Vec<Piece>> {
        Ok(records::pieces(self.sql, upload)?)
    }

    pub fn mark_released(&self, upload: &UploadId) -> LedgerResult<()> {
        Ok(records::set_released(self.sql, upload)?)
    }

    // ---- publication ---------------------------------------------------------------------

    /// Fixes the new version's id and noise seed on first call; later calls return the same, so
    /// a publish retried after a crash writes the same version, once.
    pub fn publication(&self, now_ms: i64) -> LedgerResult<Publication> {
        let r = self.loaded()?;
        let (version_id, noise_seed) = match (&r.version_id, &r.noise_seed) {
            (Some(v), Some(s)) => (v.clone(), s.clone()),
            _ => {
                let v = ModelVersionId::generate(now_ms)?;
                let s = hex::encode(crate::crypto::random_bytes::<32>()?);
                self.sql.exec(
                    "UPDATE round SET version_id = ?, noise_seed = ? WHERE id = 1",
                    &crate::vals![&v, s.as_str()],
                )?;
                (v, s)
            }
        };
        Ok(Publication {
            version_id,
            noise_seed,
            accepted: r.accepted,
            total_weight: r.total_weight,
            total_samples: r.total_samples,
            noise_sigma: r.config.aggregation.noise_sigma(r.accepted as u64),
        })
    }

    /// D1 has the new version: the round is published (and recorded).
    pub fn published(&self, version: &ModelVersionId, now_ms: i64) -> LedgerResult<Effects> {
        let fx = self.end(
            RoundState::Published,
            None,
            &Ended::Published {
                version_id: version.clone(),
            },
            now_ms,
        )?;
        records::set_recorded(self.sql)?;
        Ok(fx)
    }

    /// Aggregation finished but its result cannot be published.
    pub fn fail(&self, failure: RoundFailure, detail: &str, now_ms: i64) -> LedgerResult<Effects> {
        self.end(
            RoundState::Failed,
            Some(failure),
            &Ended::Failed {
                failure,
                detail: detail.to_owned(),
            },
            now_ms,
        )
    }

    /// D1 and the audit log now have the round's end.
    pub fn recorded(&self) -> LedgerResult<()> {
        Ok(records::set_recorded(self.sql)?)
    }

    /// What cleaning up after the end still has to release.
    pub fn unreleased(&self) -> LedgerResult<Vec<UploadId>> {
        Ok(records::unreleased(self.sql)?)
    }

    /// Staged bytes and the shards' sums are gone.
    pub fn cleaned(&self) -> LedgerResult<()> {
        Ok(records::set_cleaned(self.sql)?)
    }
}
