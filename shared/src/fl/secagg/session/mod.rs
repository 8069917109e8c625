//! The stage machine of one secure round: the server's side of SecAgg+'s four stages, over the
//! round's own storage ([`SqlExec`], the coordinator's SQLite).
//!
//! Like the round ledger, each method is one synchronous stretch of reads and writes (a Durable
//! Object commits it atomically) and the session keeps nothing in memory: an eviction between
//! two calls loses nothing. The coordinator calls one method per device request, and
//! [`SecAggSession::on_alarm`] at each stage's deadline:
//!
//! 1. **advertise keys**: a device sends `pk1`, `pk2` and gets its index (1..=n in order of
//!    arrival; nobody can leave during this stage, so the indices have no gaps, as the SDK's
//!    Shamir x-coordinates require).
//! 2. **share keys**: each device gets the whole roster and uploads one share ciphertext per
//!    peer; the server checks only their shape ([`relay::ShareCiphertext`]), it cannot open them.
//! 3. **masked input**: each device that shared its keys gets the surviving roster again (the
//!    devices that missed stage 2 are gone: no peer holds their `sk1`, so nobody may mask
//!    against them) and the ciphertexts addressed to it, then uploads its masked vector, which
//!    the aggregator shards fold ([`super::masked`]). The session records only that it did.
//! 4. **unmask**: the survivors (they uploaded a masked vector) are asked for their shares of
//!    every survivor's `rd_seed` and of every dropped device's `sk1` (it shared keys but sent no
//!    vector); one list for everyone, fixed when stage 3 closed, so no device is ever named both.
//!
//! A stage closes when every device still in the round has answered, or at its deadline; whoever
//! did not answer is dropped for the rest of the round. Fewer than `t` devices completing any
//! stage (or fewer than `t` shares of any secret) fails the session `insufficient_participants`,
//! and then nothing can be unmasked: [`SecAggSession::unmask_inputs`] answers only a complete
//! session. Device calls never close a stage by its deadline: they refuse a late answer and
//! leave the closing (and its audit events) to the alarm, so every transition reaches the
//! caller that caused it.

pub mod records;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use records::{Member, SessionRecord, ShareKind};

use super::keys::{self, KEY_LEN};
use super::relay::{RelayError, ShareCiphertext};
use super::reveal::{parse_reveal, RevealError};
use super::shamir::{
    reconstruct_self_mask_seed, reconstruct_sk1, ReconstructError, Share, ShareFormatError,
    Sk1Share,
};
use super::unmask::{Dropped, Survivor, UnmaskError, Unmasker, MAX_SURVIVORS};
use crate::fl::round::RoundFailure;
use crate::ids::DeviceId;
use crate::store::{SqlExec, StoreError};

/// The most devices one secure round's roster takes. All-to-all masking costs the server n²
/// ciphertexts in stage 2 (204 bytes each: about 204 MB at this cap) and, when unmasking,
/// |survivors| · (1 + |dropped|) mask streams over every element; beyond a thousand devices
/// SecAgg+'s sparse neighbour graph is the answer, not a larger square.
pub const MAX_ROSTER: u32 = 1000;

/// The round option, fixed at creation and shown in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecureAggregation {
    pub protocol: Protocol,
    /// Shares needed to rebuild a secret, and devices needed to complete every stage.
    pub threshold: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// The Octomil SDK's `SecAggPlusClient`, all-to-all.
    SecaggPlus,
}

/// The four stages, in order (so "completed stage k" compares).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    AdvertiseKeys,
    ShareKeys,
    MaskedInput,
    Unmask,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::AdvertiseKeys,
        Stage::ShareKeys,
        Stage::MaskedInput,
        Stage::Unmask,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::AdvertiseKeys => "advertise_keys",
            Stage::ShareKeys => "share_keys",
            Stage::MaskedInput => "masked_input",
            Stage::Unmask => "unmask",
        }
    }

    pub fn next(self) -> Option<Stage> {
        match self {
            Stage::AdvertiseKeys => Some(Stage::ShareKeys),
            Stage::ShareKeys => Some(Stage::MaskedInput),
            Stage::MaskedInput => Some(Stage::Unmask),
            Stage::Unmask => None,
        }
    }

    pub fn previous(self) -> Option<Stage> {
        match self {
            Stage::AdvertiseKeys => None,
            Stage::ShareKeys => Some(Stage::AdvertiseKeys),
            Stage::MaskedInput => Some(Stage::ShareKeys),
            Stage::Unmask => Some(Stage::MaskedInput),
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// A stage is open for answers.
    Stage(Stage),
    /// Every stage closed with enough devices and shares: the masks can be removed.
    Complete,
    /// The session fell below its threshold; nothing may be unmasked.
    Failed(SessionFailure),
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Stage(stage) => write!(f, "in stage {stage}"),
            State::Complete => f.write_str("complete"),
            State::Failed(failure) => write!(f, "failed ({})", failure.detail()),
        }
    }
}

/// Why a session failed. Both are the round's `insufficient_participants`: too few devices
/// answered for the threshold to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SessionFailure {
    /// Fewer than `threshold` devices completed `stage`.
    InsufficientParticipants {
        stage: Stage,
        completed: u32,
        threshold: u32,
    },
    /// Fewer than `threshold` holders revealed their share of device `index`'s secret.
    TooFewShares {
        index: u32,
        shares: u32,
        threshold: u32,
    },
}

impl SessionFailure {
    pub fn round_failure(&self) -> RoundFailure {
        RoundFailure::InsufficientParticipants
    }

    /// The failure's detail as the round's record states it.
    pub fn detail(&self) -> String {
        match self {
            SessionFailure::InsufficientParticipants {
                stage,
                completed,
                threshold,
            } => format!("{completed} devices completed {stage}; the threshold is {threshold}"),
            SessionFailure::TooFewShares {
                index,
                shares,
                threshold,
            } => format!(
                "{shares} shares of device {index}'s secret were revealed; the threshold is {threshold}"
            ),
        }
    }
}

/// How long each stage may stay open, counted from the moment it opens (so a stage that closes
/// early gives the next one its whole time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageDurations {
    pub advertise_keys_ms: i64,
    pub share_keys_ms: i64,
    pub masked_input_ms: i64,
    pub unmask_ms: i64,
}

impl StageDurations {
    pub fn of(&self, stage: Stage) -> i64 {
        match stage {
            Stage::AdvertiseKeys => self.advertise_keys_ms,
            Stage::ShareKeys => self.share_keys_ms,
            Stage::MaskedInput => self.masked_input_ms,
            Stage::Unmask => self.unmask_ms,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionConfig {
    pub threshold: u32,
    /// Stage 1 closes as soon as this many devices advertised (the round's `max`).
    pub max_devices: u32,
    pub stages: StageDurations,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// With t = 1 a single revealed share is the secret itself.
    #[error("the threshold must be at least 2, got {0}")]
    ThresholdTooLow(u32),
    #[error("the threshold {threshold} exceeds the {max_devices} devices the round admits")]
    ThresholdAboveRoster { threshold: u32, max_devices: u32 },
    #[error("a secure round takes at most {MAX_ROSTER} devices, got {0}")]
    RosterTooLarge(u32),
    #[error("stage {0} must last longer than 0 ms")]
    NoTime(Stage),
}

impl SessionConfig {
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.threshold < 2 {
            return Err(ConfigError::ThresholdTooLow(self.threshold));
        }
        if self.max_devices > MAX_ROSTER || self.max_devices as usize > MAX_SURVIVORS {
            return Err(ConfigError::RosterTooLarge(self.max_devices));
        }
        if self.threshold > self.max_devices {
            return Err(ConfigError::ThresholdAboveRoster {
                threshold: self.threshold,
                max_devices: self.max_devices,
            });
        }
        if let Some(stage) = Stage::ALL
            .into_iter()
            .find(|stage| self.stages.of(*stage) <= 0)
        {
            return Err(ConfigError::NoTime(stage));
        }
        Ok(())
    }
}

/// Why a stage-2 upload is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CiphertextsError {
    #[error("one ciphertext per peer: expected {expected}, got {got}")]
    Count { expected: usize, got: usize },
    #[error("no device {0} in the roster")]
    UnknownPeer(u32),
    #[error("a device does not send itself a ciphertext")]
    ToSelf,
    #[error("two ciphertexts for device {0}")]
    DuplicatePeer(u32),
    #[error("the ciphertext for device {to} is malformed: {error}")]
    Malformed { to: u32, error: RelayError },
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("this round has no secure-aggregation session")]
    NoSession,
    #[error("the session was started with another configuration")]
    ConfigMismatch,
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The call belongs to a stage that is not the open one (too early, too late, or the
    /// session is over).
    #[error("{call} is not open: the session is {state}")]
    OutOfStage { call: Stage, state: State },
    /// The stage's deadline passed; the alarm closes it.
    #[error("stage {0} is past its deadline")]
    DeadlinePassed(Stage),
    #[error("this device already answered {0}")]
    Duplicate(Stage),
    #[error("this device is not in the session's roster")]
    NotInRoster,
    #[error("this device missed {missed} and is out of the round")]
    Dropped { missed: Stage },
    /// A small-order key would make every agreement with this device fail when unmasking.
    #[error("the advertised {0} has small order")]
    WeakKey(&'static str),
    #[error(transparent)]
    Ciphertexts(#[from] CiphertextsError),
    #[error(transparent)]
    Reveal(#[from] RevealError),
    #[error("nothing can be unmasked: the session is {0}")]
    NotComplete(State),
    #[error("device {index}'s secret cannot be rebuilt: {error}")]
    Reconstruct { index: u32, error: ReconstructError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type SessionResult<T> = Result<T, SessionError>;

/// One device's public keys as every peer receives them (devices know each other only by index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RosterEntry {
    pub index: u32,
    pub pk1: [u8; KEY_LEN],
    pub pk2: [u8; KEY_LEN],
}

/// A ciphertext relayed to its receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub from: u32,
    pub ciphertext: Vec<u8>,
}

/// What one device must do now, with everything it must receive for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceTask {
    /// Stage 1 is open and the device has not advertised.
    AdvertiseKeys,
    /// The device answered the open stage; the others have not yet.
    Wait { index: u32, answered: Stage },
    /// Stage 2: share keys with every device of the roster (n entries, this one included).
    ShareKeys {
        index: u32,
        roster: Vec<RosterEntry>,
    },
    /// Stage 3: mask against exactly `roster` (the devices that shared keys, this one included)
    /// and upload. `dropped` lists who missed stage 2: when it is not empty the roster differs
    /// from stage 2's and the device must take the new one.
    MaskInput {
        index: u32,
        roster: Vec<RosterEntry>,
        dropped: Vec<u32>,
        ciphertexts: Vec<Relayed>,
    },
    /// Stage 4: reveal the shares of `survivors`' `rd_seed` and `dropped`'s `sk1`, in that order.
    Reveal {
        index: u32,
        survivors: Vec<u32>,
        dropped: Vec<u32>,
    },
    /// The session completed and this device's vector is in the sum.
    Finished { index: u32 },
    /// The device missed a stage and takes no further part.
    Dropped { missed: Stage },
    /// The session failed; nothing will be unmasked.
    Failed(SessionFailure),
}

/// A device the closing of a stage dropped (for the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropOut {
    pub device_id: DeviceId,
    pub index: u32,
    pub missed: Stage,
}

/// A stage closed: from where to where, when, and who it dropped (for the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub closed: Stage,
    pub to: State,
    pub at_ms: i64,
    pub dropped: Vec<DropOut>,
}

/// A call's answer and the stage transitions it caused.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    pub reply: T,
    pub transitions: Vec<Transition>,
}

/// What the alarm did, and when it must run next (`None`: the session is over).
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmReply {
    pub transitions: Vec<Transition>,
    pub wake_at_ms: Option<i64>,
}

/// Devices that completed each stage so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StageCounts {
    pub advertise_keys: u32,
    pub share_keys: u32,
    pub masked_input: u32,
    pub unmask: u32,
}

/// The console's view of a session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionProgress {
    pub state: State,
    pub threshold: u32,
    /// When the open stage closes (`None` once the session is over).
    pub deadline_at_ms: Option<i64>,
    /// n: the devices that advertised keys.
    pub roster: u32,
    pub completed: StageCounts,
    /// Devices still in the round that the open stage waits for.
    pub awaited: u32,
    /// Devices that missed a stage.
    pub dropped: u32,
}

/// What [`Unmasker::new`] takes, rebuilt from the revealed shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmaskInputs {
    pub survivors: Vec<Survivor>,
    pub dropped: Vec<Dropped>,
}

impl UnmaskInputs {
    /// The unmasker: also checks every rebuilt `sk1` against its advertised `pk1`.
    pub fn unmasker(&self) -> Result<Unmasker, UnmaskError> {
        Unmasker::new(&self.survivors, &self.dropped)
    }
}

/// Devices that completed `stage` (and every stage before it), from the per-stage counts.
fn completed_through(counts: &BTreeMap<Stage, u32>, stage: Stage) -> u32 {
    counts.range(stage..).map(|(_, n)| n).sum()
}

fn entry(m: &Member) -> RosterEntry {
    RosterEntry {
        index: m.index,
        pk1: m.pk1,
        pk2: m.pk2,
    }
}

/// A fixed scalar to test advertised keys with: agreement with a small-order point is all
/// zeros, which `keys` reports as [`keys::KeyError::WeakPublicKey`].
const PROBE_SCALAR: [u8; KEY_LEN] = [0x5a; KEY_LEN];

fn check_public_key(key: &[u8; KEY_LEN], name: &'static str) -> SessionResult<()> {
    keys::pairwise_seed(&PROBE_SCALAR, key)
        .map(|_| ())
        .map_err(|_| SessionError::WeakKey(name))
}

pub struct SecAggSession<'a, E: SqlExec> {
    sql: &'a E,
}

impl<'a, E: SqlExec> SecAggSession<'a, E> {
    /// Opens the session's storage, creating its tables if needed.
    pub fn open(sql: &'a E) -> Result<Self, StoreError> {
        records::migrate(sql)?;
        Ok(Self { sql })
    }

    fn loaded(&self) -> SessionResult<SessionRecord> {
        records::session(self.sql)?.ok_or(SessionError::NoSession)
    }

    /// Starts the session with stage 1 open. Repeating it with the same configuration is
    /// harmless; another configuration is refused.
    pub fn init(&self, config: &SessionConfig, now_ms: i64) -> SessionResult<()> {
        if let Some(existing) = records::session(self.sql)? {
            if existing.config == *config {
                return Ok(());
            }
            return Err(SessionError::ConfigMismatch);
        }
        config.check()?;
        records::insert_session(
            self.sql,
            &SessionRecord {
                config: *config,
                state: State::Stage(Stage::AdvertiseKeys),
                deadline_at_ms: now_ms.saturating_add(config.stages.advertise_keys_ms),
            },
        )?;
        Ok(())
    }

    /// The checks every device answer passes: `call` is the open stage, its deadline has not
    /// passed, and (beyond stage 1) the device completed the stage before and not this one.
    fn admit(&self, call: Stage, device: &DeviceId, now_ms: i64) -> SessionResult<Option<Member>> {
        let s = self.loaded()?;
        if s.state != State::Stage(call) {
            return Err(SessionError::OutOfStage {
                call,
                state: s.state,
            });
        }
        if now_ms >= s.deadline_at_ms {
            return Err(SessionError::DeadlinePassed(call));
        }
        let member = records::member(self.sql, device)?;
        match (call.previous(), &member) {
            (None, Some(_)) => return Err(SessionError::Duplicate(call)),
            (None, None) => {}
            (Some(_), None) => return Err(SessionError::NotInRoster),
            (Some(before), Some(m)) => {
                if m.reached >= call {
                    return Err(SessionError::Duplicate(call));
                }
                if m.reached < before {
                    return Err(SessionError::Dropped {
                        missed: m.reached.next().unwrap_or(call),
                    });
                }
            }
        }
        Ok(member)
    }

    /// Stage 1: a device advertises its keys and learns its index.
    pub fn advertise(
        &self,
        device: &DeviceId,
        pk1: &[u8; KEY_LEN],
        pk2: &[u8; KEY_LEN],
        now_ms: i64,
    ) -> SessionResult<Answer<u32>> {
        self.admit(Stage::AdvertiseKeys, device, now_ms)?;
        check_public_key(pk1, "pk1")?;
        check_public_key(pk2, "pk2")?;
        let index = records::add_member(self.sql, device, pk1, pk2)?;
        Ok(Answer {
            reply: index,
            transitions: self.advance(now_ms, false)?,
        })
    }

    /// Stage 2: a device's share ciphertexts, one per peer of the roster as (receiver index,
    /// bytes). All are checked before any is stored, so an upload is taken whole or not at all.
    pub fn share_keys(
        &self,
        device: &DeviceId,
        ciphertexts: &[(u32, &[u8])],
        now_ms: i64,
    ) -> SessionResult<Answer<()>> {
        let member = self.admit(Stage::ShareKeys, device, now_ms)?;
        let me = member.ok_or(SessionError::NotInRoster)?;
        let roster: BTreeSet<u32> = records::members_through(self.sql, Stage::AdvertiseKeys)?
            .iter()
            .map(|m| m.index)
            .collect();
        let expected = roster.len().saturating_sub(1);
        if ciphertexts.len() != expected {
            return Err(CiphertextsError::Count {
                expected,
                got: ciphertexts.len(),
            }
            .into());
        }
        let mut seen = BTreeSet::new();
        for (to, bytes) in ciphertexts {
            if *to == me.index {
                return Err(CiphertextsError::ToSelf.into());
            }
            if !roster.contains(to) {
                return Err(CiphertextsError::UnknownPeer(*to).into());
            }
            if !seen.insert(*to) {
                return Err(CiphertextsError::DuplicatePeer(*to).into());
            }
            ShareCiphertext::parse(bytes)
                .map_err(|error| CiphertextsError::Malformed { to: *to, error })?;
        }
        for (to, bytes) in ciphertexts {
            records::insert_ciphertext(self.sql, me.index, *to, bytes)?;
        }
        records::set_reached(self.sql, me.index, Stage::ShareKeys)?;
        Ok(Answer {
            reply: (),
            transitions: self.advance(now_ms, false)?,
        })
    }

    /// Stage 3, before the bytes: may this device upload a masked vector now? Answers its index.
    /// (The upload's first request asks, so a dropped device stores nothing.)
    pub fn check_masked_input(&self, device: &DeviceId, now_ms: i64) -> SessionResult<u32> {
        let member = self.admit(Stage::MaskedInput, device, now_ms)?;
        Ok(member.ok_or(SessionError::NotInRoster)?.index)
    }

    /// Stage 3: the device's masked vector was accepted. The coordinator calls this in the same
    /// synchronous stretch that accepts the upload for folding, so a vector is in the sum
    /// exactly when its device is a survivor.
    pub fn masked_input(&self, device: &DeviceId, now_ms: i64) -> SessionResult<Answer<u32>> {
        let index = self.check_masked_input(device, now_ms)?;
        records::set_reached(self.sql, index, Stage::MaskedInput)?;
        Ok(Answer {
            reply: index,
            transitions: self.advance(now_ms, false)?,
        })
    }

    /// Stage 4: a survivor's shares, as the SDK's `unmask` returns them: the device indices it
    /// was asked for and one share per index (empty for a share it never received).
    pub fn reveal(
        &self,
        device: &DeviceId,
        devices: &[u32],
        shares: &[&[u8]],
        now_ms: i64,
    ) -> SessionResult<Answer<()>> {
        let member = self.admit(Stage::Unmask, device, now_ms)?;
        let me = member.ok_or(SessionError::NotInRoster)?;
        let (survivors, dropped) = self.partition()?;
        let parsed = parse_reveal(me.index, &survivors, &dropped, devices, shares)?;
        for (of, share) in &parsed.self_mask_seed_shares {
            records::insert_reveal(
                self.sql,
                *of,
                me.index,
                ShareKind::RdSeed,
                &share.to_bytes(),
            )?;
        }
        for (of, share) in &parsed.sk1_shares {
            records::insert_reveal(self.sql, *of, me.index, ShareKind::Sk1, &share.to_bytes())?;
        }
        records::set_reached(self.sql, me.index, Stage::Unmask)?;
        Ok(Answer {
            reply: (),
            transitions: self.advance(now_ms, false)?,
        })
    }

    /// The survivors (they uploaded a masked vector) and the dropped (they shared keys and
    /// uploaded none), by index. Fixed once stage 3 closed.
    fn partition(&self) -> SessionResult<(Vec<u32>, Vec<u32>)> {
        let survivors = records::members_through(self.sql, Stage::MaskedInput)?
            .iter()
            .map(|m| m.index)
            .collect();
        let dropped = records::members_at(self.sql, Stage::ShareKeys)?
            .iter()
            .map(|m| m.index)
            .collect();
        Ok((survivors, dropped))
    }

    /// What `device` must do now, with what it must receive. Reading it changes nothing, so a
    /// device that lost an answer asks again.
    pub fn task(&self, device: &DeviceId) -> SessionResult<DeviceTask> {
        let s = self.loaded()?;
        let member = records::member(self.sql, device)?;
        let stage = match (s.state, &member) {
            (State::Failed(failure), _) => return Ok(DeviceTask::Failed(failure)),
            (State::Stage(Stage::AdvertiseKeys), None) => return Ok(DeviceTask::AdvertiseKeys),
            (_, None) => return Err(SessionError::NotInRoster),
            (State::Complete, Some(m)) => {
                return Ok(if m.reached >= Stage::MaskedInput {
                    DeviceTask::Finished { index: m.index }
                } else {
                    DeviceTask::Dropped {
                        missed: m.reached.next().unwrap_or(Stage::Unmask),
                    }
                });
            }
            (State::Stage(stage), Some(_)) => stage,
        };
        let Some(m) = member else {
            return Err(SessionError::NotInRoster);
        };
        if m.reached >= stage {
            return Ok(DeviceTask::Wait {
                index: m.index,
                answered: m.reached,
            });
        }
        if Some(m.reached) != stage.previous() {
            return Ok(DeviceTask::Dropped {
                missed: m.reached.next().unwrap_or(stage),
            });
        }
        Ok(match stage {
            Stage::AdvertiseKeys => DeviceTask::AdvertiseKeys,
            Stage::ShareKeys => DeviceTask::ShareKeys {
                index: m.index,
                roster: records::members_through(self.sql, Stage::AdvertiseKeys)?
                    .iter()
                    .map(entry)
                    .collect(),
            },
            Stage::MaskedInput => DeviceTask::MaskInput {
                index: m.index,
                roster: records::members_through(self.sql, Stage::ShareKeys)?
                    .iter()
                    .map(entry)
                    .collect(),
                dropped: records::members_at(self.sql, Stage::AdvertiseKeys)?
                    .iter()
                    .map(|d| d.index)
                    .collect(),
                ciphertexts: records::ciphertexts_to(self.sql, m.index)?
                    .into_iter()
                    .map(|(from, ciphertext)| Relayed { from, ciphertext })
                    .collect(),
            },
            Stage::Unmask => {
                let (survivors, dropped) = self.partition()?;
                DeviceTask::Reveal {
                    index: m.index,
                    survivors,
                    dropped,
                }
            }
        })
    }

    /// The alarm: closes the open stage if its deadline passed (dropping whoever did not
    /// answer), and says when to wake next.
    pub fn on_alarm(&self, now_ms: i64) -> SessionResult<AlarmReply> {
        let transitions = self.advance(now_ms, true)?;
        let s = self.loaded()?;
        let wake_at_ms = matches!(s.state, State::Stage(_)).then_some(s.deadline_at_ms);
        Ok(AlarmReply {
            transitions,
            wake_at_ms,
        })
    }

    /// Closes stages while the open one is complete (everyone still in the round answered) or,
    /// when `by_deadline`, past its deadline.
    fn advance(&self, now_ms: i64, by_deadline: bool) -> SessionResult<Vec<Transition>> {
        let mut out = Vec::new();
        loop {
            let s = self.loaded()?;
            let State::Stage(stage) = s.state else {
                return Ok(out);
            };
            let (awaited, answered) = self.stage_counts(&s, stage)?;
            let everyone = match stage {
                // Stage 1 has no list of whom to wait for: it closes full, or at its deadline.
                Stage::AdvertiseKeys => answered >= s.config.max_devices,
                _ => awaited == 0,
            };
            if !(everyone || (by_deadline && now_ms >= s.deadline_at_ms)) {
                return Ok(out);
            }
            out.push(self.close(&s, stage, answered, now_ms)?);
        }
    }

    /// (devices the open stage still waits for, devices that completed it).
    fn stage_counts(&self, s: &SessionRecord, stage: Stage) -> SessionResult<(u32, u32)> {
        let counts = records::reached_counts(self.sql)?;
        let completed = completed_through(&counts, stage);
        let awaited = match stage.previous() {
            Some(before) => counts.get(&before).copied().unwrap_or(0),
            None => s.config.max_devices.saturating_sub(completed),
        };
        Ok((awaited, completed))
    }

    fn close(
        &self,
        s: &SessionRecord,
        stage: Stage,
        completed: u32,
        now_ms: i64,
    ) -> SessionResult<Transition> {
        let threshold = s.config.threshold;
        let dropped: Vec<DropOut> = match stage.previous() {
            Some(before) => records::members_at(self.sql, before)?
                .into_iter()
                .map(|m| DropOut {
                    device_id: m.device_id,
                    index: m.index,
                    missed: stage,
                })
                .collect(),
            None => Vec::new(),
        };
        let to = if completed < threshold {
            State::Failed(SessionFailure::InsufficientParticipants {
                stage,
                completed,
                threshold,
            })
        } else {
            match stage.next() {
                Some(next) => State::Stage(next),
                None => self.shares_suffice(threshold)?,
            }
        };
        match (stage, &to) {
            (_, State::Failed(_)) => {
                // Nothing will be relayed or rebuilt any more.
                records::delete_ciphertexts(self.sql)?;
                records::delete_reveals(self.sql)?;
            }
            // Ciphertexts for devices that missed stage 2 will never be fetched.
            (Stage::ShareKeys, _) => {
                records::delete_ciphertexts_to_stopped_at(self.sql, Stage::AdvertiseKeys)?
            }
            // The survivors fetched theirs before masking; stage 4 needs none.
            (Stage::MaskedInput, _) => records::delete_ciphertexts(self.sql)?,
            _ => {}
        }
        let deadline = match to {
            State::Stage(next) => now_ms.saturating_add(s.config.stages.of(next)),
            _ => now_ms,
        };
        records::set_state(self.sql, &to, deadline)?;
        Ok(Transition {
            closed: stage,
            to,
            at_ms: now_ms,
            dropped,
        })
    }

    /// After stage 4: every survivor's `rd_seed` and every dropped device's `sk1` has at least
    /// `threshold` revealed shares, or the session fails naming the first that has not.
    fn shares_suffice(&self, threshold: u32) -> SessionResult<State> {
        let counts = records::reveal_counts(self.sql)?;
        let (survivors, dropped) = self.partition()?;
        for index in survivors.into_iter().chain(dropped) {
            let shares = counts.get(&index).copied().unwrap_or(0);
            if shares < threshold {
                return Ok(State::Failed(SessionFailure::TooFewShares {
                    index,
                    shares,
                    threshold,
                }));
            }
        }
        Ok(State::Complete)
    }

    /// Rebuilds, from the revealed shares, what the unmasker needs: every survivor's self-mask
    /// seed and every dropped device's `sk1`, with their advertised `pk1`. Only a complete
    /// session answers; a failed one unmasks nothing.
    ///
    /// Each secret is interpolated from its first `t` shares by holder: `t` points fix the
    /// polynomial, more would not catch a wrong one (a bad `sk1` fails its `pk1` check, a bad
    /// seed the canary), and Lagrange costs O(k²) field operations in k shares, so this keeps
    /// the whole rebuild at O(n·t²) rather than O(n³).
    pub fn unmask_inputs(&self) -> SessionResult<UnmaskInputs> {
        let s = self.loaded()?;
        if s.state != State::Complete {
            return Err(SessionError::NotComplete(s.state));
        }
        let threshold = s.config.threshold as usize;
        let corrupt = |e: ShareFormatError| StoreError::corrupt(format!("stored share: {e}"));
        let mut survivors = Vec::new();
        for m in records::members_through(self.sql, Stage::MaskedInput)? {
            let shares =
                records::reveals_of(self.sql, m.index, ShareKind::RdSeed, s.config.threshold)?
                    .iter()
                    .map(|bytes| Share::parse(bytes).map_err(corrupt))
                    .collect::<Result<Vec<_>, _>>()?;
            let self_mask_seed =
                reconstruct_self_mask_seed(&shares, threshold).map_err(|error| {
                    SessionError::Reconstruct {
                        index: m.index,
                        error,
                    }
                })?;
            survivors.push(Survivor {
                index: m.index,
                pk1: m.pk1,
                self_mask_seed,
            });
        }
        let mut dropped = Vec::new();
        for m in records::members_at(self.sql, Stage::ShareKeys)? {
            let shares =
                records::reveals_of(self.sql, m.index, ShareKind::Sk1, s.config.threshold)?
                    .iter()
                    .map(|bytes| Sk1Share::parse(bytes).map_err(corrupt))
                    .collect::<Result<Vec<_>, _>>()?;
            let sk1 =
                reconstruct_sk1(&shares, threshold).map_err(|error| SessionError::Reconstruct {
                    index: m.index,
                    error,
                })?;
            dropped.push(Dropped {
                index: m.index,
                pk1: m.pk1,
                sk1,
            });
        }
        Ok(UnmaskInputs { survivors, dropped })
    }

    /// The console's counts.
    pub fn progress(&self) -> SessionResult<SessionProgress> {
        let s = self.loaded()?;
        let counts = records::reached_counts(self.sql)?;
        let through = |stage: Stage| completed_through(&counts, stage);
        let completed = StageCounts {
            advertise_keys: through(Stage::AdvertiseKeys),
            share_keys: through(Stage::ShareKeys),
            masked_input: through(Stage::MaskedInput),
            unmask: through(Stage::Unmask),
        };
        // Dropped: devices that missed a stage that has closed. (A survivor that did not reveal
        // is counted too; its vector is still in the sum.)
        let (awaited, last_closed) = match s.state {
            State::Stage(stage) => (self.stage_counts(&s, stage)?.0, stage.previous()),
            State::Complete => (0, Some(Stage::Unmask)),
            State::Failed(SessionFailure::InsufficientParticipants { stage, .. }) => {
                (0, Some(stage))
            }
            State::Failed(SessionFailure::TooFewShares { .. }) => (0, Some(Stage::Unmask)),
        };
        let dropped = last_closed.map_or(0, |stage| completed.advertise_keys - through(stage));
        Ok(SessionProgress {
            state: s.state,
            threshold: s.config.threshold,
            deadline_at_ms: matches!(s.state, State::Stage(_)).then_some(s.deadline_at_ms),
            roster: completed.advertise_keys,
            completed,
            awaited,
            dropped,
        })
    }

    /// How many relayed ciphertexts are stored (for the console and the storage bound).
    pub fn ciphertexts_held(&self) -> SessionResult<u64> {
        Ok(records::count_ciphertexts(self.sql)?)
    }

    /// Deletes the session whole: roster, ciphertexts, reveals and state. Called when the round
    /// ends, however it ends; repeating it is harmless.
    pub fn cleanup(&self) -> SessionResult<()> {
        Ok(records::drop_all(self.sql)?)
    }
}
