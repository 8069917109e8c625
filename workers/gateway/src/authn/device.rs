//! Federated-learning devices as bearers.
//!
//! A device access token is an EdDSA JWT (audience `AUD_DEVICE`) whose signature, issuer and
//! expiry the caller already checked. What remains is revocation, and the facts the device
//! control routes decide with: the device's tags, its explicit group memberships and what it
//! last reported per model.
//!
//! Both come from one D1 read, kept per isolate in an [`EpochCache`] keyed by the token's family
//! and device. Every write that could change them (a device's revocation or tags, a family's
//! revocation, a group's members) moves the org's device epoch in its own transaction (triggers,
//! migration 0012), and the read stamps its row with the epoch of the same snapshot. An entry is
//! served while the org's epoch, read through the 3 s cache sessions and API keys use, is no
//! newer. So a revocation or a targeting change made through another isolate takes effect within
//! `STALENESS_BOUND_MS` (3 s), the bound sessions and API keys already have; on the isolate that
//! made it, at once ([`forget_device_facts`]). A fleet polling an unchanged org reads D1 only for
//! the epoch, once per org every few seconds, instead of once per request.
//!
//! The token's claims and device scopes travel with the facts, so no handler verifies the token
//! again.

use std::cell::RefCell;
use std::rc::Rc;

use edgeplane_core::auth::access_token::AUD_DEVICE;
use edgeplane_core::auth::{OrgAccess, Principal, PrincipalKind, Scopes};
use edgeplane_core::crypto::jwt::{Claims, JwtKey};
use edgeplane_core::fl::device_scope::DeviceScopes;
use edgeplane_core::identity::cache::{read_through, TtlCache, REVOCABLE_TTL_MS};
use edgeplane_core::identity::epoch_cache::EpochCache;
use edgeplane_core::ids::new_id;
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Db;
use serde::{Deserialize, Serialize};

use super::invalid_token;
use crate::http::ctx::now_ms;

/// How long a device's facts are kept between changes of its org: past a fleet's usual polling
/// interval, and short enough that its reports (hints for skipping writes) stay recent.
const FACTS_TTL_MS: i64 = 15 * 60_000;
/// Devices whose facts one isolate keeps (a full cache resets).
const MAX_DEVICES: usize = 16_384;
/// A device whose stored facts weigh more than this (many tags, groups or models) is read on
/// every request instead: the cache stays within `MAX_DEVICES` × this, 16 MiB.
const MAX_FACTS_BYTES: usize = 1_024;
const MAX_ORGS: usize = 10_000;

/// The device-specific claims of a device access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceClaims {
    pub org_id: String,
    /// The token family (one per bootstrap), revoked as a whole.
    pub sid: String,
    /// Space-separated device scopes.
    pub scope: String,
    /// The customer's identifier for the device.
    pub did: String,
}

/// What the control routes decide with, as stored (kept as the stored JSON, parsed only by the
/// routes that use it, so other device routes pay nothing for it).
#[derive(Debug, Clone)]
pub struct DeviceFacts {
    /// `fl_devices.tags` (a JSON list).
    pub tags: String,
    /// The groups listing the device as a member (a JSON list of ids).
    pub group_ids: String,
    /// Its `fl_device_models` rows (a JSON list of `fl::control::StoredReport`), as last read or
    /// written by this isolate.
    pub reports: String,
    pub last_seen_at_ms: Option<i64>,
}

impl DeviceFacts {
    fn bytes(&self) -> usize {
        self.tags.len() + self.group_ids.len() + self.reports.len()
    }
}

#[derive(Deserialize)]
struct LiveRow {
    device_revoked: Option<i64>,
    family_revoked: Option<i64>,
    epoch: i64,
    tags: String,
    group_ids: String,
    reports: String,
    last_seen_at_ms: Option<i64>,
}

/// The device behind a request: its token's claims and scopes, and its facts.
#[derive(Debug, Clone)]
pub struct DeviceSession {
    pub claims: DeviceClaims,
    pub scopes: DeviceScopes,
    pub facts: Rc<DeviceFacts>,
    /// Where its facts are kept in this isolate.
    key: String,
}

impl DeviceSession {
    /// Records in this isolate's cache what the caller just wrote for this device (its reports,
    /// its last-seen time), so the next request compares against it.
    pub fn remember_written(&self, reports: String, last_seen_at_ms: i64) {
        FACTS.with(|c| {
            c.borrow_mut().update(&self.key, |f| {
                *f = Rc::new(DeviceFacts {
                    reports,
                    last_seen_at_ms: Some(last_seen_at_ms),
                    ..(**f).clone()
                });
            })
        });
    }
}

thread_local! {
    static EPOCHS: RefCell<TtlCache<i64>> = RefCell::new(TtlCache::new(REVOCABLE_TTL_MS, MAX_ORGS));
    static FACTS: RefCell<EpochCache<Rc<DeviceFacts>>> =
        RefCell::new(EpochCache::new(FACTS_TTL_MS, MAX_DEVICES, MAX_FACTS_BYTES));
}

/// Drops an org's device epoch from this isolate's cache, so its next device request reads the
/// epoch a change just moved and refuses every fact read before it. Whatever revokes a device
/// or a token family, or changes a device's tags or groups, calls this once its batch is done
/// (whatever the outcome: a conflict means someone else changed it).
pub fn forget_device_facts(org_id: &str) {
    EPOCHS.with(|c| c.borrow_mut().remove(org_id));
}

/// A family id is unique, but the key names the org and device too: an entry answers only the
/// exact triple its read matched.
fn facts_key(device_id: &str, claims: &DeviceClaims) -> String {
    format!("{}/{device_id}/{}", claims.org_id, claims.sid)
}

#[derive(Deserialize)]
struct EpochRow {
    epoch: i64,
}

/// The org's device epoch, at most `STALENESS_BOUND_MS` old (an org nothing has changed in yet
/// is at 0).
async fn org_epoch(db: &Db, org_id: &str) -> Result<i64, ApiError> {
    let epoch = read_through(&EPOCHS, org_id, now_ms(), || async {
        let row: Option<EpochRow> = db
            .first(
                "SELECT coalesce((SELECT epoch FROM fl_device_epochs WHERE org_id = ?), 0) AS epoch",
                args![org_id],
            )
            .await?;
        Ok::<_, ApiError>(Some(row.map_or(0, |r| r.epoch)))
    })
    .await?;
    Ok(epoch.unwrap_or(0))
}

/// The device's revocation state and facts, with the org's epoch of the same snapshot.
async fn read_facts(
    db: &Db,
    device_id: &str,
    claims: &DeviceClaims,
) -> Result<(i64, Rc<DeviceFacts>), ApiError> {
    let row: LiveRow = db
        .first(
            "SELECT d.revoked_at_ms AS device_revoked, f.revoked_at_ms AS family_revoked, \
             coalesce((SELECT e.epoch FROM fl_device_epochs e WHERE e.org_id = d.org_id), 0) AS epoch, \
             d.tags, d.last_seen_at_ms, \
             (SELECT json_group_array(m.group_id) FROM fl_device_group_members m \
               WHERE m.device_id = d.id) AS group_ids, \
             (SELECT json_group_array(json_object('model_id', s.model_id, \
               'installed_version', s.installed_version, 'active_version', s.active_version, \
               'status', s.status, 'last_error', s.last_error, 'reported_at_ms', s.reported_at_ms)) \
               FROM fl_device_models s WHERE s.device_id = d.id) AS reports \
             FROM fl_device_families f JOIN fl_devices d ON d.id = f.device_id \
             WHERE f.id = ? AND d.id = ? AND d.org_id = ?",
            args![&claims.sid, device_id, &claims.org_id],
        )
        .await?
        .ok_or_else(invalid_token)?;
    if row.device_revoked.is_some() || row.family_revoked.is_some() {
        return Err(invalid_token());
    }
    Ok((
        row.epoch,
        Rc::new(DeviceFacts {
            tags: row.tags,
            group_ids: row.group_ids,
            reports: row.reports,
            last_seen_at_ms: row.last_seen_at_ms,
        }),
    ))
}

/// A device's facts through the cache: kept ones while the org's epoch stands, else one read.
/// A revoked device or family is never kept (its read fails), so it is refused on every request.
async fn live_facts(
    db: &Db,
    key: &str,
    device_id: &str,
    claims: &DeviceClaims,
) -> Result<Rc<DeviceFacts>, ApiError> {
    let current = org_epoch(db, &claims.org_id).await?;
    if let Some(hit) = FACTS.with(|c| c.borrow_mut().get(key, current, now_ms())) {
        return Ok(hit);
    }
    let (epoch, facts) = read_facts(db, device_id, claims).await?;
    FACTS.with(|c| {
        c.borrow_mut()
            .put(key, epoch, facts.clone(), facts.bytes(), now_ms())
    });
    Ok(facts)
}

pub async fn resolve(
    db: &Db,
    claims: &Claims<serde_json::Value>,
) -> Result<(Principal, DeviceSession), ApiError> {
    let extra: DeviceClaims =
        serde_json::from_value(claims.extra.clone()).map_err(|_| invalid_token())?;
    let scopes =
        DeviceScopes::parse_list(extra.scope.split_whitespace()).map_err(|_| invalid_token())?;
    let key = facts_key(&claims.sub, &extra);
    let facts = live_facts(db, &key, &claims.sub, &extra).await?;
    let principal = Principal {
        kind: PrincipalKind::Device,
        id: claims.sub.clone(),
        user_id: None,
        session_id: Some(extra.sid.clone()),
        // Devices hold no org scopes: the control plane is closed to them whatever they claim.
        bound: Some(OrgAccess::for_credential(
            extra.org_id.clone(),
            Scopes::empty(),
            None,
        )),
    };
    Ok((
        principal,
        DeviceSession {
            claims: extra,
            scopes,
            facts,
            key,
        },
    ))
}

/// Signs a device access token.
pub fn mint_access_token(
    key: &JwtKey,
    issuer: &str,
    device_id: &str,
    claims: DeviceClaims,
    now_s: i64,
    ttl_s: i64,
) -> Result<String, ApiError> {
    key.sign(&Claims {
        iss: issuer.to_owned(),
        aud: AUD_DEVICE.to_owned(),
        sub: device_id.to_owned(),
        iat: now_s,
        nbf: now_s,
        exp: now_s + ttl_s,
        jti: new_id("jti", now_s * 1000)?,
        extra: claims,
    })
    .map_err(|_| ApiError::internal())
}

#[cfg(test)]
mod tests {
    use crate::service::access::sqlite;

    const ORG: &str = "org_0190000000000123456789abcdef";
    const OTHER: &str = "org_0190000000000123456789abcdee";

    fn epoch(conn: &rusqlite::Connection, org: &str) -> i64 {
        sqlite::text(
            conn,
            &format!(
                "SELECT CAST(coalesce((SELECT epoch FROM fl_device_epochs WHERE org_id = '{org}'), 0) AS TEXT)"
            ),
        )
        .unwrap()
        .parse()
        .unwrap()
    }

    /// The org's device epoch (migration 0012's triggers) moves with every write that changes
    /// what a device request decides with, and with nothing else: a fleet's heartbeats and
    /// last-seen writes must not empty the cache of device facts, and one org's changes must not
    /// move another's.
    #[test]
    fn the_device_epoch_moves_with_exactly_the_facts_a_device_request_uses() {
        let conn = sqlite::schema();
        sqlite::exec(
            &conn,
            &format!(
                "INSERT INTO orgs (id, slug, name, created_at_ms) VALUES
                   ('{ORG}', 'one', 'One', 1), ('{OTHER}', 'two', 'Two', 1);
                 INSERT INTO fl_devices (id, org_id, device_identifier, created_at_ms) VALUES
                   ('dev_a', '{ORG}', 'a', 1), ('dev_b', '{ORG}', 'b', 1), ('dev_o', '{OTHER}', 'o', 1);
                 INSERT INTO fl_device_families (id, org_id, device_id, scopes, access_ttl_s, created_at_ms)
                   VALUES ('fam_a', '{ORG}', 'dev_a', 'models:read', 900, 1);
                 INSERT INTO fl_device_groups (id, org_id, name, created_by, created_at_ms)
                   VALUES ('dgr_1', '{ORG}', 'g', 'usr_x', 1);"
            ),
        );
        assert_eq!(epoch(&conn, ORG), 0);
        let mut expected = 0;
        for (sql, moves) in [
            // Bookkeeping: never.
            ("UPDATE fl_devices SET last_seen_at_ms = 5, heartbeat = '{}', heartbeat_at_ms = 5 WHERE id = 'dev_a'", false),
            // Tags set to what they were: nothing changed.
            ("UPDATE fl_devices SET tags = '[]' WHERE id = 'dev_a'", false),
            ("UPDATE fl_devices SET tags = '[\"eu\"]' WHERE id = 'dev_a'", true),
            ("INSERT INTO fl_device_group_members (group_id, device_id) VALUES ('dgr_1', 'dev_b')", true),
            ("DELETE FROM fl_device_group_members WHERE device_id = 'dev_b'", true),
            ("UPDATE fl_device_families SET revoked_at_ms = 9, revoked_reason = 'logout' WHERE id = 'fam_a'", true),
            ("UPDATE fl_devices SET revoked_at_ms = 9 WHERE id = 'dev_b'", true),
            // A guarded revocation that finds the device already revoked changes nothing.
            ("UPDATE fl_devices SET revoked_at_ms = 10 WHERE id = 'dev_b' AND revoked_at_ms IS NULL", false),
            ("DELETE FROM fl_devices WHERE id = 'dev_b'", true),
        ] {
            sqlite::exec(&conn, sql);
            expected += i64::from(moves);
            assert_eq!(epoch(&conn, ORG), expected, "{sql}");
        }
        assert_eq!(epoch(&conn, OTHER), 0, "another org's epoch stands");
    }
}
