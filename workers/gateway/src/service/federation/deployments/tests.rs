use super::*;
use crate::service::access::sqlite;

const ORG: &str = "org_0190000000000123456789abcdef";
const TAGS: [&str; 4] = ["eu", "gpu", "beta", "x:1"];

/// xorshift64: the cases must be the same on every run.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
    fn tags(&mut self) -> Vec<String> {
        TAGS.iter()
            .filter(|_| self.below(3) == 0)
            .map(|t| t.to_string())
            .collect()
    }
}

fn candidate(id: &str, state: RolloutState) -> Candidate {
    Candidate {
        deployment_id: id.into(),
        model_id: "mdl_x".into(),
        version_id: "mv_x".into(),
        version: 1,
        sha256: String::new(),
        size_bytes: 0,
        state,
        stage: 0,
        stages: Stages::new(vec![100]).unwrap(),
        created_at_ms: 1,
    }
}

/// The per-isolate path (`fl::targeting` over the cached rollouts and a device's facts as
/// `authn::device` reads them) selects exactly the deployments `TARGETS_DEVICE` selects in
/// SQL, on random fleets: tag groups (including tags the device lacks, duplicated tags, and
/// member rows a tag group ignores), explicit groups, deployments naming several groups or
/// none, every rollout state.
#[test]
fn the_cached_targeting_selects_exactly_what_the_sql_selects() {
    let states = [
        RolloutState::Active,
        RolloutState::Paused,
        RolloutState::Completed,
        RolloutState::RolledBack,
    ];
    let mut compared = 0;
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let conn = sqlite::schema();
        sqlite::exec(
            &conn,
            &format!(
                "INSERT INTO orgs (id, slug, name, created_at_ms) VALUES ('{ORG}', 'o', 'O', 1);
                 INSERT INTO fl_models (id, org_id, name, created_by, created_at_ms)
                   VALUES ('mdl_x', '{ORG}', 'm', 'usr_x', 1);
                 INSERT INTO fl_model_versions (id, org_id, model_id, version, status, sha256,
                   size_bytes, parameters, layout, pieces, created_by, created_at_ms)
                   VALUES ('mv_x', '{ORG}', 'mdl_x', 1, 'approved', '', 0, 0, '[]', '[]', 'usr_x', 1);"
            ),
        );
        let devices: Vec<String> = (0..12).map(|i| format!("dev_{seed}_{i}")).collect();
        for d in &devices {
            let tags = serde_json::to_string(&rng.tags()).unwrap();
            conn.execute(
                "INSERT INTO fl_devices (id, org_id, device_identifier, tags, created_at_ms) \
                 VALUES (?1, ?2, ?1, ?3, 1)",
                rusqlite::params![d, ORG, tags],
            )
            .unwrap();
        }
        let mut rules = BTreeMap::new();
        let groups: Vec<String> = (0..6).map(|i| format!("dgr_{i}")).collect();
        for g in &groups {
            let rule = (rng.below(2) == 0).then(|| {
                let mut tags = rng.tags();
                if tags.is_empty() {
                    tags.push(TAGS[0].into());
                }
                if rng.below(4) == 0 {
                    tags.push(tags[0].clone());
                }
                serde_json::to_string(&tags).unwrap()
            });
            conn.execute(
                "INSERT INTO fl_device_groups (id, org_id, name, tags, created_by, created_at_ms) \
                 VALUES (?1, ?2, ?1, ?3, 'usr_x', 1)",
                rusqlite::params![g, ORG, rule],
            )
            .unwrap();
            // Explicit members; a tag group gets some too (stale rows from no route, but the
            // SQL and the cache must both ignore them).
            for d in &devices {
                if rng.below(3) == 0 && (rule.is_none() || rng.below(4) == 0) {
                    conn.execute(
                        "INSERT INTO fl_device_group_members (group_id, device_id) VALUES (?, ?)",
                        rusqlite::params![g, d],
                    )
                    .unwrap();
                }
            }
            rules.insert(g.clone(), GroupRule::from_stored(rule.as_deref()).unwrap());
        }
        let mut deployments = Vec::new();
        for i in 0..8 {
            let id = format!("dep_{i}");
            let state = states[rng.below(4) as usize];
            conn.execute(
                "INSERT INTO fl_deployments (id, org_id, model_id, version_id, stages, stage_index, \
                 state, created_by, created_at_ms, updated_at_ms) \
                 VALUES (?, ?, 'mdl_x', 'mv_x', '[100]', 0, ?, 'usr_x', 1, 1)",
                rusqlite::params![id, ORG, state.as_str()],
            )
            .unwrap();
            let named: Vec<String> = groups
                .iter()
                .filter(|_| rng.below(4) == 0)
                .cloned()
                .collect();
            for g in &named {
                conn.execute(
                    "INSERT INTO fl_deployment_groups (deployment_id, group_id) VALUES (?, ?)",
                    rusqlite::params![id, g],
                )
                .unwrap();
            }
            deployments.push(Targeted {
                candidate: candidate(&id, state),
                groups: named,
            });
        }
        let held = OrgRollouts::new(deployments, rules);
        for d in &devices {
            let (tags, member_of): (String, String) = conn
                .query_row(
                    "SELECT d.tags, (SELECT json_group_array(m.group_id) FROM fl_device_group_members m \
                     WHERE m.device_id = d.id) FROM fl_devices d WHERE d.id = ?",
                    [d],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            let targets = DeviceTargets::from_stored(&tags, &member_of).unwrap();
            let mut cached: Vec<String> = held
                .candidates_for(&targets)
                .unwrap()
                .into_iter()
                .map(|c| c.deployment_id)
                .collect();
            cached.sort();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT dp.id FROM fl_deployments dp WHERE dp.org_id = ? \
                     AND dp.state != 'rolled_back' AND {TARGETS_DEVICE} ORDER BY dp.id"
                ))
                .unwrap();
            let by_sql: Vec<String> = stmt
                .query_map(rusqlite::params![ORG, d], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(
                cached, by_sql,
                "seed {seed}, device {d} ({tags}, {member_of})"
            );
            compared += usize::from(!by_sql.is_empty());
        }
    }
    assert!(
        compared > 100,
        "the cases must select something: {compared}"
    );
}
