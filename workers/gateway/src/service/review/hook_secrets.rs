//! The secrets webhook intake verifies with, opened once and kept per isolate for a few seconds.
//!
//! Every delivery needs its integration's secrets; reading and opening them from D1 each time
//! is the largest cost of intake after the write itself. Entries live at most [`TTL_MS`]; an
//! entry that fails to verify a delivery is re-read before the delivery is refused (so a new
//! secret works at once) unless it was read in the last [`REREAD_MIN_MS`] — otherwise a flood
//! of forged deliveries would be a flood of D1 reads — and changes made through this isolate
//! evict it immediately. The remaining lag — another isolate still accepting a secret rotated
//! away without overlap, or a disabled integration — is bounded by the TTL; a secret set
//! elsewhere less than [`REREAD_MIN_MS`] after this isolate's last read is refused until then.
//!
//! **No existence oracle.** A delivery to an id that names no live integration of that platform
//! is verified too, against a random per-isolate decoy secret, and the entry saying "unknown" is
//! cached and re-read exactly like a real one. It is refused the same way (401
//! `invalid_signature`), so neither the answer nor the work done tells an unknown integration
//! from a forged signature.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use edgeplane_core::crypto::random_bytes;
use edgeplane_core::ids::{IntegrationId, OrgId};
use edgeplane_core::review::git_platform::Platform;
use edgeplane_core::review::sealed::Field;
use edgeplane_core::webhook::Secrets;
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use serde::Deserialize;

use super::secrets;
use crate::cx::Cx;
use crate::http::ctx::now_ms;

pub const TTL_MS: i64 = 10_000;
pub const REREAD_MIN_MS: i64 = 1_000;
const MAX_ENTRIES: usize = 2_000;

/// The live integration a delivery is for.
#[derive(Clone)]
pub struct Owner {
    pub org_id: OrgId,
    pub platform: Platform,
    pub enabled: bool,
}

/// Opened secrets. No `Debug`: they must not be printed.
pub struct HookSecrets {
    /// `None` for the stand-in of an unknown integration.
    owner: Option<Owner>,
    current: Option<Vec<u8>>,
    previous: Option<(Vec<u8>, i64)>,
    signing: Option<Vec<u8>>,
    /// This isolate's random decoy secret, verified against whenever there is no owner on the
    /// delivery's platform. Never stored or shown; nothing verifies against it.
    decoy: [u8; 32],
}

impl HookSecrets {
    fn unknown() -> Self {
        Self {
            owner: None,
            current: None,
            previous: None,
            signing: None,
            decoy: DECOY.with(|d| *d),
        }
    }

    /// The integration these secrets belong to, if it is one on `platform`.
    pub fn owner_on(&self, platform: Platform) -> Option<&Owner> {
        self.owner.as_ref().filter(|o| o.platform == platform)
    }

    /// The secrets that verify a delivery to `platform` now: `previous` only inside its overlap
    /// window; the decoy when the id names no integration on this platform.
    pub fn secrets(&self, platform: Platform, now_ms: i64) -> Secrets<'_> {
        if self.owner_on(platform).is_none() {
            return Secrets {
                current: &self.decoy,
                previous: None,
                signing_token: None,
            };
        }
        Secrets {
            current: self.current.as_deref().unwrap_or_default(),
            previous: self
                .previous
                .as_ref()
                .filter(|(_, until)| *until > now_ms)
                .map(|(s, _)| s.as_slice()),
            signing_token: self.signing.as_deref(),
        }
    }
}

thread_local! {
    // A failing random source leaves a fixed decoy: still unknown to any sender in practice,
    // and the answer is the same refusal either way.
    static DECOY: [u8; 32] = random_bytes::<32>().unwrap_or([0x5a; 32]);
    static CACHE: RefCell<HashMap<String, (Rc<HookSecrets>, i64)>> = RefCell::new(HashMap::new());
}

#[derive(Deserialize)]
struct Row {
    org_id: OrgId,
    platform: Platform,
    webhook_secret_sealed: Option<String>,
    previous_secret_sealed: Option<String>,
    previous_secret_expires_at_ms: Option<i64>,
    signing_token_sealed: Option<String>,
    enabled: i64,
}

pub fn invalidate(id: &IntegrationId) {
    CACHE.with(|c| c.borrow_mut().remove(id.as_str()));
}

/// Whether an entry that failed to verify is worth reading again from D1. Junk ids never are:
/// they cannot name an integration.
pub fn worth_rereading(id: Option<&IntegrationId>) -> bool {
    let Some(id) = id else {
        return false;
    };
    let now = now_ms();
    CACHE.with(|c| {
        c.borrow()
            .get(id.as_str())
            .is_none_or(|(_, at)| now - at >= REREAD_MIN_MS)
    })
}

/// The secrets for a delivery to `id` (`None`: a segment that is not an integration id), and
/// whether they came from the cache.
pub async fn load(
    cx: &Cx<'_>,
    id: Option<&IntegrationId>,
    allow_cached: bool,
) -> Result<(Rc<HookSecrets>, bool), ApiError> {
    let Some(id) = id else {
        return Ok((Rc::new(HookSecrets::unknown()), true));
    };
    let now = now_ms();
    if allow_cached {
        let hit = CACHE.with(|c| {
            c.borrow()
                .get(id.as_str())
                .filter(|(_, at)| now - at < TTL_MS)
                .map(|(s, _)| s.clone())
        });
        if let Some(s) = hit {
            return Ok((s, true));
        }
    }
    let row: Option<Row> = cx
        .db()
        .first(
            "SELECT org_id, platform, webhook_secret_sealed, previous_secret_sealed, \
             previous_secret_expires_at_ms, signing_token_sealed, enabled \
             FROM integrations WHERE id = ? AND deleted_at_ms IS NULL",
            args![id.as_str()],
        )
        .await?;
    let opened = match row {
        None => Rc::new(HookSecrets::unknown()),
        Some(row) => {
            let key = secrets::integration_key(cx);
            let open = |s: &Option<String>, f: Field| {
                s.as_deref()
                    .map(|s| secrets::open(&key, id.as_str(), f, s))
                    .transpose()
            };
            Rc::new(HookSecrets {
                current: open(&row.webhook_secret_sealed, Field::WebhookSecret)?,
                previous: match (
                    open(&row.previous_secret_sealed, Field::WebhookSecret)?,
                    row.previous_secret_expires_at_ms,
                ) {
                    (Some(s), Some(until)) => Some((s, until)),
                    _ => None,
                },
                signing: open(&row.signing_token_sealed, Field::SigningToken)?,
                owner: Some(Owner {
                    org_id: row.org_id,
                    platform: row.platform,
                    enabled: row.enabled != 0,
                }),
                decoy: DECOY.with(|d| *d),
            })
        }
    };
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= MAX_ENTRIES {
            c.retain(|_, (_, at)| now - *at < TTL_MS);
            if c.len() >= MAX_ENTRIES {
                c.clear();
            }
        }
        c.insert(id.as_str().to_owned(), (opened.clone(), now));
    });
    Ok((opened, false))
}
