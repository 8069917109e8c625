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

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use edgeplane_core::review::sealed::Field;
use edgeplane_core::webhook::Secrets;
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use serde::Deserialize;

use super::secrets;
use crate::http::ctx::now_ms;
use crate::routes::Cx;

pub const TTL_MS: i64 = 10_000;
pub const REREAD_MIN_MS: i64 = 1_000;
const MAX_ENTRIES: usize = 2_000;

/// Opened secrets. No `Debug`: they must not be printed.
pub struct HookSecrets {
    pub org_id: String,
    pub platform: String,
    pub enabled: bool,
    current: Option<Vec<u8>>,
    previous: Option<(Vec<u8>, i64)>,
    signing: Option<Vec<u8>>,
}

impl HookSecrets {
    /// The secrets that verify now: `previous` only inside its overlap window.
    pub fn secrets(&self, now_ms: i64) -> Option<Secrets<'_>> {
        Some(Secrets {
            current: self.current.as_deref()?,
            previous: self
                .previous
                .as_ref()
                .filter(|(_, until)| *until > now_ms)
                .map(|(s, _)| s.as_slice()),
            signing_token: self.signing.as_deref(),
        })
    }
}

#[derive(Deserialize)]
struct Row {
    org_id: String,
    platform: String,
    webhook_secret_sealed: Option<String>,
    previous_secret_sealed: Option<String>,
    previous_secret_expires_at_ms: Option<i64>,
    signing_token_sealed: Option<String>,
    enabled: i64,
}

thread_local! {
    static CACHE: RefCell<HashMap<String, (Rc<HookSecrets>, i64)>> = RefCell::new(HashMap::new());
}

pub fn invalidate(id: &str) {
    CACHE.with(|c| c.borrow_mut().remove(id));
}

/// Whether a cached entry that failed to verify is worth reading again from D1.
pub fn worth_rereading(id: &str) -> bool {
    let now = now_ms();
    CACHE.with(|c| {
        c.borrow()
            .get(id)
            .is_none_or(|(_, at)| now - at >= REREAD_MIN_MS)
    })
}

/// The integration's secrets, and whether they came from the cache. `None`: no such
/// (undeleted) integration.
pub async fn load(
    cx: &Cx<'_>,
    id: &str,
    allow_cached: bool,
) -> Result<Option<(Rc<HookSecrets>, bool)>, ApiError> {
    let now = now_ms();
    if allow_cached {
        let hit = CACHE.with(|c| {
            c.borrow()
                .get(id)
                .filter(|(_, at)| now - at < TTL_MS)
                .map(|(s, _)| s.clone())
        });
        if let Some(s) = hit {
            return Ok(Some((s, true)));
        }
    }
    let row: Option<Row> = cx
        .db()
        .first(
            "SELECT org_id, platform, webhook_secret_sealed, previous_secret_sealed, \
             previous_secret_expires_at_ms, signing_token_sealed, enabled \
             FROM integrations WHERE id = ? AND deleted_at_ms IS NULL",
            args![id],
        )
        .await?;
    let Some(row) = row else {
        invalidate(id);
        return Ok(None);
    };
    let key = secrets::integration_key(cx);
    let open = |s: &Option<String>, f: Field| {
        s.as_deref()
            .map(|s| secrets::open(&key, id, f, s))
            .transpose()
    };
    let opened = Rc::new(HookSecrets {
        current: open(&row.webhook_secret_sealed, Field::WebhookSecret)?,
        previous: match (
            open(&row.previous_secret_sealed, Field::WebhookSecret)?,
            row.previous_secret_expires_at_ms,
        ) {
            (Some(s), Some(until)) => Some((s, until)),
            _ => None,
        },
        signing: open(&row.signing_token_sealed, Field::SigningToken)?,
        org_id: row.org_id,
        platform: row.platform,
        enabled: row.enabled != 0,
    });
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= MAX_ENTRIES {
            c.retain(|_, (_, at)| now - *at < TTL_MS);
            if c.len() >= MAX_ENTRIES {
                c.clear();
            }
        }
        c.insert(id.to_owned(), (opened.clone(), now));
    });
    Ok(Some((opened, false)))
}
