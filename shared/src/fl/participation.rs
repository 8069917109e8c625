//! The rules a round coordinator applies to devices: who may join, start an upload, send a part,
//! and in which states. Pure decisions over small views of the coordinator's rows, so every rule
//! is tested natively and the Durable Object only loads, asks and stores.

use serde::{Deserialize, Serialize};

use super::round::{RejectReason, RoundState};
use crate::error::ApiError;

/// Parts are at most this large (a device may ask for more, smaller ones).
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// What one part PUT may carry: a device splitting `n` ways puts the remainder in its last part.
pub const MAX_PART_BYTES: u64 = 2 * PART_SIZE;
pub const MAX_PARTS: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipationState {
    Joined,
    Uploading,
    Accepted,
    Revoked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadState {
    /// Parts arriving.
    Uploading,
    /// Being validated; parts are frozen.
    Completing,
    Accepted,
    Rejected,
    /// Replaced by a newer upload of the same participation, or cut off by the round closing.
    Abandoned,
}

/// What the coordinator knows about the round when deciding.
#[derive(Debug, Clone, Copy)]
pub struct RoundView {
    pub state: RoundState,
    pub deadline_ms: i64,
    pub now_ms: i64,
    /// Participations holding a place: joined, uploading or accepted (not revoked).
    pub joined: u32,
    pub max: u32,
}

impl RoundView {
    pub fn check_accepting(&self) -> Result<(), ApiError> {
        if self.state.is_accepting() && self.now_ms < self.deadline_ms {
            Ok(())
        } else {
            Err(RejectReason::RoundClosed.to_error("the round is no longer accepting updates"))
        }
    }
}

/// A participation as the coordinator stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participation<'a> {
    pub id: &'a str,
    pub device_id: &'a str,
    pub state: ParticipationState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinDecision {
    /// Record a new participation.
    Admit,
    /// The same device retried the same join: answer as before.
    Again,
}

/// `by_id`: the participation with the requested id, if any; `by_device`: this device's
/// participation, if any.
pub fn decide_join(
    round: &RoundView,
    device_id: &str,
    by_id: Option<&Participation<'_>>,
    by_device: Option<&Participation<'_>>,
) -> Result<JoinDecision, ApiError> {
    if let Some(p) = by_id {
        if p.device_id != device_id {
            return Err(ApiError::conflict("participation_id is already in use"));
        }
        if p.state == ParticipationState::Revoked {
            return Err(RejectReason::DeviceRevoked.to_error("this device was revoked"));
        }
        return Ok(JoinDecision::Again);
    }
    if let Some(p) = by_device {
        return Err(ApiError::conflict(format!(
            "this device already joined the round as participation {}",
            p.id
        )));
    }
    round.check_accepting()?;
    if round.joined >= round.max {
        return Err(ApiError::conflict("the round is full"));
    }
    Ok(JoinDecision::Admit)
}

/// May this device start an upload for this participation?
pub fn decide_initiate(
    round: &RoundView,
    device_id: &str,
    p: Option<&Participation<'_>>,
) -> Result<(), ApiError> {
    let p = match p {
        Some(p) if p.device_id == device_id => p,
        _ => {
            return Err(RejectReason::NotParticipant
                .to_error("this device has not joined the round under that participation_id"))
        }
    };
    match p.state {
        ParticipationState::Revoked => {
            Err(RejectReason::DeviceRevoked.to_error("this device was revoked"))
        }
        ParticipationState::Accepted => Err(ApiError::conflict(
            "this participation already has an accepted update",
        )),
        ParticipationState::Joined | ParticipationState::Uploading => round.check_accepting(),
    }
}

/// How many parts an upload of `size` bytes gets: `requested` if it keeps every part within
/// [`MAX_PART_BYTES`], otherwise enough parts of at most [`PART_SIZE`].
pub fn part_count(size: u64, requested: Option<u32>) -> Result<u32, ApiError> {
    let min = size.div_ceil(PART_SIZE).max(1);
    let n = match requested {
        Some(r) if r as u64 >= size.div_ceil(MAX_PART_BYTES).max(1) && r as u64 <= size.max(1) => {
            r as u64
        }
        Some(_) => {
            return Err(ApiError::validation(
                "part_count must leave every part between 1 byte and 16 MiB",
            ))
        }
        None => min,
    };
    if n > MAX_PARTS {
        return Err(ApiError::validation(format!(
            "an upload has at most {MAX_PARTS} parts"
        )));
    }
    Ok(n as u32)
}

/// May a part be written to this upload now?
pub fn decide_part(
    round: &RoundView,
    upload: UploadState,
    device_revoked: bool,
    part: u32,
    parts: u32,
) -> Result<(), ApiError> {
    if device_revoked {
        return Err(RejectReason::DeviceRevoked.to_error("this device was revoked"));
    }
    if part >= parts {
        return Err(ApiError::not_found("upload part"));
    }
    match upload {
        UploadState::Uploading => round.check_accepting(),
        UploadState::Completing | UploadState::Accepted => {
            Err(ApiError::conflict("this upload was already completed"))
        }
        UploadState::Rejected | UploadState::Abandoned => {
            Err(ApiError::conflict("this upload is closed; start a new one"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: RoundState, joined: u32) -> RoundView {
        RoundView {
            state,
            deadline_ms: 1000,
            now_ms: 10,
            joined,
            max: 3,
        }
    }

    #[test]
    fn joining() {
        let r = view(RoundState::Open, 0);
        assert_eq!(
            decide_join(&r, "d1", None, None).unwrap(),
            JoinDecision::Admit
        );
        let mine = Participation {
            id: "p1",
            device_id: "d1",
            state: ParticipationState::Joined,
        };
        assert_eq!(
            decide_join(&r, "d1", Some(&mine), Some(&mine)).unwrap(),
            JoinDecision::Again
        );
        assert_eq!(
            decide_join(&r, "d2", Some(&mine), None)
                .unwrap_err()
                .status(),
            409
        );
        assert_eq!(
            decide_join(&r, "d1", None, Some(&mine))
                .unwrap_err()
                .status(),
            409
        );
        assert_eq!(
            decide_join(&view(RoundState::Collecting, 3), "d9", None, None)
                .unwrap_err()
                .status(),
            409
        );
        assert_eq!(
            decide_join(&view(RoundState::Published, 0), "d9", None, None)
                .unwrap_err()
                .status(),
            409
        );
        let late = RoundView { now_ms: 2000, ..r };
        assert_eq!(
            decide_join(&late, "d9", None, None).unwrap_err().status(),
            409
        );
    }

    #[test]
    fn initiating_and_parts() {
        let r = view(RoundState::Collecting, 1);
        let p = Participation {
            id: "p1",
            device_id: "d1",
            state: ParticipationState::Joined,
        };
        assert!(decide_initiate(&r, "d1", Some(&p)).is_ok());
        assert_eq!(
            decide_initiate(&r, "d2", Some(&p)).unwrap_err().status(),
            403
        );
        assert_eq!(decide_initiate(&r, "d1", None).unwrap_err().status(), 403);
        let done = Participation {
            state: ParticipationState::Accepted,
            ..p.clone()
        };
        assert_eq!(
            decide_initiate(&r, "d1", Some(&done)).unwrap_err().status(),
            409
        );
        let revoked = Participation {
            state: ParticipationState::Revoked,
            ..p
        };
        assert_eq!(
            decide_initiate(&r, "d1", Some(&revoked))
                .unwrap_err()
                .status(),
            401
        );

        assert!(decide_part(&r, UploadState::Uploading, false, 0, 2).is_ok());
        assert_eq!(
            decide_part(&r, UploadState::Uploading, false, 2, 2)
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            decide_part(&r, UploadState::Uploading, true, 0, 2)
                .unwrap_err()
                .status(),
            401
        );
        assert_eq!(
            decide_part(&r, UploadState::Accepted, false, 0, 2)
                .unwrap_err()
                .status(),
            409
        );
        assert_eq!(
            decide_part(
                &view(RoundState::Aggregating, 1),
                UploadState::Uploading,
                false,
                0,
                2
            )
            .unwrap_err()
            .status(),
            409
        );
    }

    #[test]
    fn part_counts() {
        assert_eq!(part_count(10, None).unwrap(), 1);
        assert_eq!(part_count(PART_SIZE + 1, None).unwrap(), 2);
        assert_eq!(part_count(10, Some(3)).unwrap(), 3);
        assert!(part_count(10, Some(11)).is_err());
        assert!(part_count(10, Some(0)).is_err());
        assert!(part_count(3 * MAX_PART_BYTES, Some(2)).is_err());
    }
}
