//! What the ledger tells without deciding anything: the round's progress (counts, the funnel,
//! the metrics' summaries, the live page's stragglers and refusals) and, once the round ends,
//! how it went for each device.

use std::collections::BTreeMap;

use super::records::{self, Ended};
use super::{LedgerResult, RoundLedger};
use crate::fl::participation::{ParticipationState, UploadState};
use crate::fl::round::{MetricMeans, RejectReason, RoundState};
use crate::fl::wire::{ParticipationId, Progress};
use crate::fl::{history, live, metrics};
use crate::store::SqlExec;

impl<E: SqlExec> RoundLedger<'_, E> {
    /// How the round went for each device that joined (see `fl::history`): what the round's end
    /// writes to D1 for the devices' pages.
    pub fn participations(&self) -> LedgerResult<Vec<history::ParticipationSummary>> {
        let participants = records::participants(self.sql)?;
        let uploads = records::upload_outcomes(self.sql)?;
        Ok(history::summarize(&participants, &uploads))
    }

    pub fn progress(&self) -> LedgerResult<Progress> {
        let r = self.loaded()?;
        let participants = records::participants(self.sql)?;
        let uploading = participants
            .iter()
            .filter(|p| p.state == ParticipationState::Uploading)
            .count() as u64;
        let rejected_uploads = records::uploads_in(self.sql, &[UploadState::Rejected])?;
        let mut rejected: BTreeMap<RejectReason, u64> = BTreeMap::new();
        let refused: Vec<live::Refused<'_>> = rejected_uploads
            .iter()
            .filter_map(|u| {
                let (reason, message) = u.reject.as_ref()?;
                *rejected.entry(*reason).or_default() += 1;
                Some(live::Refused {
                    device_id: &u.device_id,
                    reason: *reason,
                    message,
                    at_ms: u.created_at_ms,
                })
            })
            .collect();
        let mut means = MetricMeans::default();
        let accepted_uploads = records::uploads_in(self.sql, &[UploadState::Accepted])?;
        for u in &accepted_uploads {
            means.add(u.meta.sample_count as f64, &u.meta.metrics);
        }
        let reported: Vec<metrics::Reported<'_>> = accepted_uploads
            .iter()
            .map(|u| metrics::Reported {
                seq: u.seq.unwrap_or(0),
                at_ms: u.created_at_ms,
                weight: u.meta.sample_count as f64,
                metrics: &u.meta.metrics,
            })
            .collect();
        let joined: Vec<live::Joined<'_>> = participants
            .iter()
            .map(|p| live::Joined {
                device_id: &p.device_id,
                state: p.state,
                joined_at_ms: p.joined_at_ms,
            })
            .collect();
        let joins: Vec<i64> = participants.iter().map(|p| p.joined_at_ms).collect();
        // A participation's upload finished when its first update was accepted or refused
        // (a refusal is dated by its upload's start: the only time a refused upload keeps).
        let accepts: Vec<i64> = accepted_uploads
            .iter()
            .map(|u| u.completed_at_ms.unwrap_or(u.created_at_ms))
            .collect();
        let mut finished: BTreeMap<&ParticipationId, i64> = BTreeMap::new();
        let ends = accepted_uploads
            .iter()
            .zip(accepts.iter().copied())
            .chain(rejected_uploads.iter().map(|u| (u, u.created_at_ms)));
        for (u, at) in ends {
            let first = finished.entry(&u.participation_id).or_insert(at);
            *first = (*first).min(at);
        }
        // Joined but never completed an upload, once no more uploads can come.
        let dropped = (!matches!(r.state, RoundState::Open | RoundState::Collecting))
            .then(|| (participants.len() as u64).saturating_sub(finished.len() as u64));
        let uploads: Vec<i64> = finished.into_values().collect();
        let published_version_id = match (&r.ended, r.recorded) {
            (Some(Ended::Published { version_id }), true) => Some(version_id.clone()),
            _ => None,
        };
        Ok(Progress {
            state: r.state,
            failure: r.failure,
            target: r.config.target,
            min: r.config.min,
            max: r.config.max,
            deadline_at_ms: r.config.deadline_at_ms,
            joined: participants.len() as u64,
            uploading,
            accepted: r.accepted as u64,
            rejected,
            total_samples: r.total_samples,
            capped_weights: r.capped.max(0) as u64,
            metrics: means.means(),
            metric_spread: metrics::summarize(&reported),
            series: metrics::series(&reported),
            uploaded: uploads.len() as u64,
            dropped,
            folded: r.folded,
            shards: r.config.shards.len(),
            published_version_id,
            closed_at_ms: r.closed_at_ms,
            stragglers: live::stragglers(&joined, &refused),
            rejections: live::rejections(&refused),
            participation: live::participation(&joins, &uploads, &accepts),
            device_ids: participants.iter().map(|p| p.device_id.clone()).collect(),
        })
    }
}
