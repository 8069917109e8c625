//! Which deployments select a device, decided in memory from an org's rollouts as one isolate
//! holds them.
//!
//! A device's desired state used to be one D1 query per request joining every deployment of the
//! org with its groups, the group members and the device's tags. The deployments change only on
//! an operator's transition, while devices ask every few minutes each, so the gateway keeps each
//! org's deliverable deployments and their groups' rules in a per-isolate [`TtlCache`] (built by
//! [`rollout_cache`], read through `identity::cache::read_through`: single flight, nothing used
//! more than [`STALENESS_BOUND_MS`] after it was read) and evaluates the groups here against
//! the calling device's own tags and explicit memberships, which it reads fresh with the device's
//! revocation check on every request. So a membership or tag change applies at once everywhere;
//! only a deployment's transition made through another isolate can lag, by at most the bound.
//! The isolate that makes a transition drops the org's entry before it answers.
//!
//! The selection is the one the SQL it replaces made (`TARGETS_DEVICE` in the gateway): an
//! explicit group selects its members; a tag group selects a device carrying every one of its
//! tags (a tag group with no tags selects every device). Stage membership is still
//! [`rollout::bucket`], a pure function of the deployment and device ids, so the cache cannot
//! make a device flip between versions.
//!
//! [`STALENESS_BOUND_MS`]: crate::identity::cache::STALENESS_BOUND_MS

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::Deserialize;

use super::rollout::Candidate;

use crate::identity::cache::{TtlCache, REVOCABLE_TTL_MS};

/// At most this many orgs' rollouts are held per isolate (a full cache drops expired entries,
/// then everything: see [`TtlCache`]).
pub const MAX_CACHED_ORGS: usize = 256;
/// At most this many deliverable deployments are held for one org. An org with more is served
/// by the per-device query instead ([`OrgRollouts::Uncached`]); so is one whose rollouts take
/// more than [`MAX_CACHED_BYTES_PER_ORG`].
pub const MAX_CACHED_DEPLOYMENTS: usize = 128;
/// At most about this many bytes of one org's rollouts are held (its deployments, the groups
/// they name and those groups' tag rules, counted as stored): a count of deployments alone
/// does not bound memory, since each can name many tag groups of many long tags. An org past
/// it is served by the per-device query instead, so the cache holds at most about
/// `MAX_CACHED_ORGS × MAX_CACHED_BYTES_PER_ORG` (32 MB) whatever the orgs store.
pub const MAX_CACHED_BYTES_PER_ORG: usize = 128 * 1024;
/// What one deliverable deployment's candidate costs in memory, besides its groups (ids,
/// version, stages and state: a generous estimate).
pub const CANDIDATE_BYTES: usize = 256;

/// The per-isolate cache of orgs' rollouts, keyed by org id, with the same time-to-live as the
/// other revocation-bearing caches so one staleness bound covers them all.
pub fn rollout_cache() -> TtlCache<Rc<OrgRollouts>> {
    TtlCache::new(REVOCABLE_TTL_MS, MAX_CACHED_ORGS)
}

/// How a device group selects devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRule {
    /// Its explicit members (`fl_device_group_members`).
    Members,
    /// Devices carrying every one of these tags.
    Tags(Vec<String>),
}

impl GroupRule {
    /// From the stored `fl_device_groups.tags` column: NULL is an explicit group, a JSON list of
    /// strings a tag group. Anything else is an error, never a guess.
    pub fn from_stored(tags: Option<&str>) -> Result<Self, serde_json::Error> {
        match tags {
            None => Ok(GroupRule::Members),
            Some(t) => Ok(GroupRule::Tags(serde_json::from_str(t)?)),
        }
    }
}

/// What the calling device brings to the selection: its tags and its explicit group
/// memberships, read with its revocation check on the same request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceTargets {
    pub tags: Vec<String>,
    pub groups: Vec<String>,
}

impl DeviceTargets {
    /// From the stored JSON lists (`fl_devices.tags`, and the device's member groups as one
    /// `json_group_array`).
    pub fn from_stored(tags: &str, groups: &str) -> Result<Self, serde_json::Error> {
        Ok(DeviceTargets {
            tags: serde_json::from_str(tags)?,
            groups: serde_json::from_str(groups)?,
        })
    }

    fn selected_by(&self, group_id: &str, rule: &GroupRule) -> bool {
        match rule {
            GroupRule::Members => self.groups.iter().any(|g| g == group_id),
            GroupRule::Tags(tags) => tags.iter().all(|t| self.tags.contains(t)),
        }
    }
}

/// One deliverable deployment and the groups it targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Targeted {
    pub candidate: Candidate,
    pub groups: Vec<String>,
}

/// An org's rollouts as an isolate holds them.
#[derive(Debug, Clone, PartialEq)]
pub enum OrgRollouts {
    /// Every deployment of the org that still delivers (not rolled back), with the rules of the
    /// groups they target.
    Held {
        deployments: Vec<Targeted>,
        rules: BTreeMap<String, GroupRule>,
    },
    /// More deliverable deployments than [`MAX_CACHED_DEPLOYMENTS`]: ask D1 per device.
    Uncached,
}

impl OrgRollouts {
    /// Builds what to cache from an org's deployments (any number; rolled-back ones are dropped,
    /// as they deliver nothing) and the rules of the groups they name. A deployment naming a group
    /// without a rule selects nobody through it (the group is gone).
    pub fn new(deployments: Vec<Targeted>, rules: BTreeMap<String, GroupRule>) -> Self {
        let deployments: Vec<Targeted> = deployments
            .into_iter()
            .filter(|d| d.candidate.state.delivers())
            .collect();
        if deployments.len() > MAX_CACHED_DEPLOYMENTS {
            return OrgRollouts::Uncached;
        }
        OrgRollouts::Held { deployments, rules }
    }

    /// The deployments that select `device` (the input of `rollout::desired_for_device`), or
    /// `None` when this org is not held and the caller must ask D1.
    pub fn candidates_for(&self, device: &DeviceTargets) -> Option<Vec<Candidate>> {
        let OrgRollouts::Held { deployments, rules } = self else {
            return None;
        };
        Some(
            deployments
                .iter()
                .filter(|d| {
                    d.groups
                        .iter()
                        .any(|g| rules.get(g).is_some_and(|rule| device.selected_by(g, rule)))
                })
                .map(|d| d.candidate.clone())
                .collect(),
        )
    }
}

/// The shape of one group's row for [`GroupRule::from_stored`].
#[derive(Debug, Clone, Deserialize)]
pub struct GroupRow {
    pub id: String,
    pub tags: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fl::rollout::{desired_for_device, RolloutState, Stages};
    use crate::identity::cache::{read_through, STALENESS_BOUND_MS};
    use futures_executor::block_on;
    use std::cell::{Cell, RefCell};

    fn candidate(id: &str, model: &str, at: i64, state: RolloutState, stage: usize) -> Candidate {
        Candidate {
            deployment_id: id.into(),
            model_id: model.into(),
            version_id: format!("mv_{id}"),
            version: at,
            sha256: "00".repeat(32),
            size_bytes: 10,
            state,
            stage,
            stages: Stages::new(vec![10, 50, 100]).unwrap(),
            created_at_ms: at,
        }
    }

    fn loaded(c: Candidate, groups: &[&str]) -> Targeted {
        Targeted {
            candidate: c,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn rules() -> BTreeMap<String, GroupRule> {
        BTreeMap::from([
            ("grp_explicit".to_string(), GroupRule::Members),
            (
                "grp_eu_beta".to_string(),
                GroupRule::from_stored(Some(r#"["eu","beta"]"#)).unwrap(),
            ),
            (
                "grp_everyone".to_string(),
                GroupRule::from_stored(Some("[]")).unwrap(),
            ),
        ])
    }

    fn ids(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.deployment_id.as_str()).collect()
    }

    #[test]
    fn groups_select_as_the_sql_did() {
        let org = OrgRollouts::new(
            vec![
                loaded(
                    candidate("dep_a", "m1", 1, RolloutState::Active, 0),
                    &["grp_explicit"],
                ),
                loaded(
                    candidate("dep_b", "m2", 2, RolloutState::Paused, 0),
                    &["grp_eu_beta"],
                ),
                loaded(
                    candidate("dep_c", "m3", 3, RolloutState::Completed, 2),
                    &["grp_everyone"],
                ),
                loaded(
                    candidate("dep_d", "m4", 4, RolloutState::Active, 0),
                    &["grp_deleted", "grp_explicit"],
                ),
                loaded(
                    candidate("dep_e", "m5", 5, RolloutState::RolledBack, 0),
                    &["grp_everyone"],
                ),
            ],
            rules(),
        );
        // A member of the explicit group with both tags: every deliverable deployment.
        let member =
            DeviceTargets::from_stored(r#"["beta","eu","x"]"#, r#"["grp_explicit"]"#).unwrap();
        assert_eq!(
            ids(&org.candidates_for(&member).unwrap()),
            ["dep_a", "dep_b", "dep_c", "dep_d"]
        );
        // One tag short of the tag group, in no explicit group: only the tag-less group.
        let outsider = DeviceTargets::from_stored(r#"["eu"]"#, "[]").unwrap();
        assert_eq!(ids(&org.candidates_for(&outsider).unwrap()), ["dep_c"]);
        // Membership of another group does not count.
        let other = DeviceTargets::from_stored("[]", r#"["grp_other"]"#).unwrap();
        assert_eq!(ids(&org.candidates_for(&other).unwrap()), ["dep_c"]);
    }

    #[test]
    fn stage_membership_is_the_same_on_every_read() {
        let org = OrgRollouts::new(
            vec![loaded(
                candidate("dep_a", "m1", 1, RolloutState::Active, 1),
                &["grp_everyone"],
            )],
            rules(),
        );
        let device = DeviceTargets::default();
        let covered: Vec<bool> = (0..200)
            .map(|i| {
                let c = org.candidates_for(&device).unwrap();
                !desired_for_device(&format!("dev_{i}"), &c).is_empty()
            })
            .collect();
        let again: Vec<bool> = (0..200)
            .map(|i| {
                let c = org.candidates_for(&device).unwrap();
                !desired_for_device(&format!("dev_{i}"), &c).is_empty()
            })
            .collect();
        assert_eq!(covered, again);
        // At 50% roughly half the devices are in (the bucket hash spreads them).
        let n = covered.iter().filter(|c| **c).count();
        assert!((60..140).contains(&n), "{n} of 200 covered at 50%");
    }

    #[test]
    fn too_many_deployments_are_not_held() {
        let many = (0..=MAX_CACHED_DEPLOYMENTS)
            .map(|i| {
                loaded(
                    candidate(
                        &format!("dep_{i}"),
                        "m1",
                        i as i64,
                        RolloutState::Completed,
                        2,
                    ),
                    &["grp_everyone"],
                )
            })
            .collect();
        let org = OrgRollouts::new(many, rules());
        assert_eq!(org, OrgRollouts::Uncached);
        assert_eq!(org.candidates_for(&DeviceTargets::default()), None);
        // Rolled-back deployments do not count against the cap: they deliver nothing.
        let mostly_rolled_back = (0..=MAX_CACHED_DEPLOYMENTS)
            .map(|i| {
                let state = if i == 0 {
                    RolloutState::Active
                } else {
                    RolloutState::RolledBack
                };
                loaded(
                    candidate(&format!("dep_{i}"), "m1", i as i64, state, 0),
                    &["grp_everyone"],
                )
            })
            .collect();
        let org = OrgRollouts::new(mostly_rolled_back, rules());
        assert_eq!(
            ids(&org.candidates_for(&DeviceTargets::default()).unwrap()),
            ["dep_0"]
        );
    }

    #[test]
    fn stored_rules_are_parsed_strictly() {
        assert_eq!(GroupRule::from_stored(None).unwrap(), GroupRule::Members);
        assert!(GroupRule::from_stored(Some("{\"a\":1}")).is_err());
        assert!(DeviceTargets::from_stored("not json", "[]").is_err());
    }

    thread_local! {
        static ROLLOUTS: RefCell<TtlCache<Rc<OrgRollouts>>> = RefCell::new(rollout_cache());
    }

    /// The gateway's read path and its invalidation, against a stand-in for D1: the isolate
    /// that promotes drops the org's entry and its next read sees the promotion; an isolate
    /// that did not (its entry left alone) sees it once the bound has passed, never later.
    #[test]
    fn a_transition_is_seen_at_once_here_and_within_the_bound_elsewhere() {
        let stage = Cell::new(0usize);
        let loads = Cell::new(0u32);
        let device = DeviceTargets::default();
        let read = |now: i64| -> usize {
            let org = block_on(read_through(&ROLLOUTS, "org_1", now, || {
                loads.set(loads.get() + 1);
                let s = stage.get();
                async move {
                    Ok::<_, ()>(Some(Rc::new(OrgRollouts::new(
                        vec![loaded(
                            candidate("dep_a", "m1", 1, RolloutState::Active, s),
                            &["grp_everyone"],
                        )],
                        rules(),
                    ))))
                }
            }))
            .unwrap()
            .unwrap();
            org.candidates_for(&device).unwrap()[0].stage
        };
        assert_eq!(read(0), 0);
        assert_eq!(read(1), 0);
        assert_eq!(loads.get(), 1, "a fresh entry is served from memory");

        // Promoted through this isolate: it forgets the org, the next read is the new stage.
        stage.set(1);
        ROLLOUTS.with(|c| c.borrow_mut().remove("org_1"));
        assert_eq!(read(2), 1);
        assert_eq!(loads.get(), 2);

        // Promoted through another isolate: this one's entry is left alone, so it may serve
        // the old stage for a while, but not at or past the bound.
        stage.set(2);
        let mut now = 3;
        while read(now) == 1 {
            assert!(now - 2 < STALENESS_BOUND_MS, "stale at {now}");
            now += 100;
        }
        assert_eq!(read(now), 2);
        assert!(now - 2 <= STALENESS_BOUND_MS);
    }

    #[test]
    fn the_cache_holds_a_bounded_number_of_orgs() {
        let mut cache = rollout_cache();
        for i in 0..(MAX_CACHED_ORGS * 3) {
            cache.put(&format!("org_{i}"), Rc::new(OrgRollouts::Uncached), 0);
            assert!(cache.len() <= MAX_CACHED_ORGS);
        }
    }
}
