//! User sessions and CLI tokens as bearers, with the per-isolate state that keeps them cheap.
//!
//! An access token is a 15-minute EdDSA JWT naming its session (`sid`). Its signature and expiry
//! are checked offline; revocation is checked against the session's state, read through the
//! per-isolate cache of `identity::cache::read_through` (nothing used more than
//! `STALENESS_BOUND_MS`, 3 s, after it was read). The isolate that revokes a session updates its
//! own cache at once, so there the very next request is refused; another isolate notices within
//! the bound. Memberships — needed on every org-scoped request — are cached the same way; a
//! membership the cache does not know is always re-read from D1, so additions apply at once and
//! only removals and demotions made through another isolate can lag, by at most the bound.

use std::cell::RefCell;
use std::rc::Rc;

use edgeplane_core::auth::{OrgAccess, Principal, PrincipalKind, Role, Scopes};
use edgeplane_core::crypto::jwt::Claims;
use edgeplane_core::identity::cache::{read_through, TtlCache, REFRESH_GRACE_MS, REVOCABLE_TTL_MS};
use edgeplane_core::identity::session::{SessionClaims, SessionKind};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Db;
use serde::Deserialize;

use super::{invalid_token, Followups};
use crate::http::ctx::now_ms;

/// `last_used_at` is written at most this often per session.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;
const MAX_ENTRIES: usize = 10_000;

/// What a request needs to know about its session.
#[derive(Debug, Clone)]
pub struct SessionState {
    pub user_id: String,
    /// The person's email (addresses never change once an account exists), for the console's
    /// header.
    pub email: String,
    pub kind: SessionKind,
    pub org_id: Option<String>,
    pub scopes: Option<Scopes>,
    pub created_at_ms: i64,
    pub revoked: bool,
    pub user_disabled: bool,
    pub last_used_at_ms: i64,
}

/// One membership of a user, with the org's slug so `{org}` resolves either way, and its name
/// and the joining time so a console page's header needs no read of its own.
#[derive(Debug, Clone, Deserialize)]
pub struct Membership {
    pub org_id: String,
    pub slug: String,
    pub name: String,
    pub role: String,
    pub joined_at_ms: i64,
}

thread_local! {
    static SESSIONS: RefCell<TtlCache<Rc<SessionState>>> =
        RefCell::new(TtlCache::new(REVOCABLE_TTL_MS, MAX_ENTRIES));
    static MEMBERSHIPS: RefCell<TtlCache<Rc<Vec<Membership>>>> =
        RefCell::new(TtlCache::new(REVOCABLE_TTL_MS, MAX_ENTRIES));
}

/// Marks sessions revoked in this isolate's cache (called by every revoking path right after
/// its batch commits), so this isolate refuses their access tokens from the next request on.
pub fn forget_sessions(ids: &[String]) {
    SESSIONS.with(|c| {
        let mut c = c.borrow_mut();
        for id in ids {
            c.remove(id);
        }
    });
}

/// Drops every cached session of a user (sign-out everywhere, account changes).
pub fn forget_user_sessions(user_id: &str) {
    SESSIONS.with(|c| c.borrow_mut().retain(|_, s| s.user_id != user_id));
}

/// Drops a user's cached memberships. Whatever adds, removes or changes a membership calls this
/// after its batch commits, so this isolate sees the change on the next request.
pub fn forget_memberships(user_id: &str) {
    MEMBERSHIPS.with(|c| c.borrow_mut().remove(user_id));
}

/// Drops every cached membership list that includes `org_id`: for changes that may move many
/// of one org's roles at once (SCIM group and mapping changes), without reading who they moved.
pub fn forget_org_memberships(org_id: &str) {
    MEMBERSHIPS.with(|c| {
        c.borrow_mut()
            .retain(|_, ms| !ms.iter().any(|m| m.org_id == org_id))
    });
}

#[derive(Deserialize)]
struct SessionRow {
    user_id: String,
    email: String,
    kind: String,
    org_id: Option<String>,
    scopes: Option<String>,
    created_at_ms: i64,
    last_used_at_ms: i64,
    revoked_at_ms: Option<i64>,
    disabled_at_ms: Option<i64>,
}

async fn load_session(db: &Db, sid: &str) -> Result<Option<Rc<SessionState>>, ApiError> {
    read_through(&SESSIONS, sid, now_ms(), || read_session(db, sid)).await
}

async fn read_session(db: &Db, sid: &str) -> Result<Option<Rc<SessionState>>, ApiError> {
    let row: Option<SessionRow> = db
        .first(
            "SELECT s.user_id, u.email, s.kind, s.org_id, s.scopes, s.created_at_ms, \
             s.last_used_at_ms, s.revoked_at_ms, u.disabled_at_ms \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?",
            args![sid],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let kind = SessionKind::parse(&row.kind).ok_or_else(ApiError::internal)?;
    let scopes = match &row.scopes {
        Some(s) => {
            Some(Scopes::parse_list(s.split_whitespace()).map_err(|_| ApiError::internal())?)
        }
        None => None,
    };
    Ok(Some(Rc::new(SessionState {
        user_id: row.user_id,
        email: row.email,
        kind,
        org_id: row.org_id,
        scopes,
        created_at_ms: row.created_at_ms,
        revoked: row.revoked_at_ms.is_some(),
        user_disabled: row.disabled_at_ms.is_some(),
        last_used_at_ms: row.last_used_at_ms,
    })))
}

/// The session behind an access token, if it is still usable by `kind`'s audience.
async fn live_session(
    db: &Db,
    claims: &Claims<serde_json::Value>,
    kind: SessionKind,
) -> Result<(String, Rc<SessionState>, Followups), ApiError> {
    let extra: SessionClaims =
        serde_json::from_value(claims.extra.clone()).map_err(|_| invalid_token())?;
    let state = load_session(db, &extra.sid)
        .await?
        .ok_or_else(invalid_token)?;
    let now = now_ms();
    let usable = state.kind == kind
        && state.user_id == claims.sub
        && !state.revoked
        && !state.user_disabled
        && now < state.created_at_ms + kind.absolute_ttl_ms();
    if !usable {
        return Err(invalid_token());
    }
    let mut followups = Followups::default();
    if now - state.last_used_at_ms > LAST_USED_GRANULARITY_MS {
        followups.touch_session = Some(extra.sid.clone());
        // Do not ask again from this isolate until the row (and so the cache) is re-read.
        SESSIONS.with(|c| {
            c.borrow_mut().update(&extra.sid, |s| {
                let mut fresh = (**s).clone();
                fresh.last_used_at_ms = now;
                *s = Rc::new(fresh);
            })
        });
    }
    Ok((extra.sid, state, followups))
}

pub async fn resolve_user(
    db: &Db,
    claims: &Claims<serde_json::Value>,
) -> Result<(Principal, Followups), ApiError> {
    let (sid, state, followups) = live_session(db, claims, SessionKind::Web).await?;
    Ok((
        Principal {
            kind: PrincipalKind::User,
            id: state.user_id.clone(),
            user_id: Some(state.user_id.clone()),
            session_id: Some(sid),
            bound: None,
        },
        followups,
    ))
}

pub async fn resolve_cli(
    db: &Db,
    claims: &Claims<serde_json::Value>,
) -> Result<(Principal, Followups), ApiError> {
    let (sid, state, followups) = live_session(db, claims, SessionKind::Cli).await?;
    let (Some(org_id), Some(scopes)) = (state.org_id.clone(), state.scopes) else {
        return Err(invalid_token());
    };
    Ok((
        Principal {
            kind: PrincipalKind::CliToken,
            id: sid.clone(),
            user_id: Some(state.user_id.clone()),
            session_id: Some(sid),
            // The role cap is applied per request in `org_access` (the user's current role).
            bound: Some(OrgAccess::for_credential(org_id, scopes, None)),
        },
        followups,
    ))
}

/// Every membership of `user_id`, read from D1 (always fresh), and kept in this isolate's cache.
pub async fn read_memberships(db: &Db, user_id: &str) -> Result<Rc<Vec<Membership>>, ApiError> {
    let rows: Vec<Membership> = db
        .all(
            "SELECT m.org_id, o.slug, o.name, m.role, m.created_at_ms AS joined_at_ms \
             FROM memberships m JOIN orgs o ON o.id = m.org_id \
             WHERE m.user_id = ? AND o.deleted_at_ms IS NULL ORDER BY o.name",
            args![user_id],
        )
        .await
        .inspect_err(|_| MEMBERSHIPS.with(|c| c.borrow_mut().abandon(user_id)))?;
    let rows = Rc::new(rows);
    MEMBERSHIPS.with(|c| c.borrow_mut().put(user_id, rows.clone(), now_ms()));
    Ok(rows)
}

/// The user's membership in the org named by `org_ref` (id or slug), or `None` if not a member:
/// from this isolate's cache when it holds that org, else from D1.
pub async fn find_membership(
    db: &Db,
    user_id: &str,
    org_ref: &str,
) -> Result<Option<Membership>, ApiError> {
    let find = |list: &[Membership]| {
        list.iter()
            .find(|m| m.org_id == org_ref || m.slug == org_ref)
            .cloned()
    };
    let cached = MEMBERSHIPS.with(|c| {
        c.borrow_mut()
            .get_or_refresh(user_id, now_ms(), REFRESH_GRACE_MS)
    });
    Ok(match cached.as_deref().and_then(|l| find(l)) {
        Some(hit) => Some(hit),
        // Not in the cache (or no cache): the truth is one read away, so a new membership is
        // never refused for being too new.
        None => find(&read_memberships(db, user_id).await?),
    })
}

/// The user's role in the org named by `org_ref` (id or slug), or `None` if not a member.
pub async fn membership(
    db: &Db,
    user_id: &str,
    org_ref: &str,
) -> Result<Option<(String, Role)>, ApiError> {
    match find_membership(db, user_id, org_ref).await? {
        Some(m) => {
            let role = Role::parse(&m.role).ok_or_else(ApiError::internal)?;
            Ok(Some((m.org_id, role)))
        }
        None => Ok(None),
    }
}

/// The email of the person signed in with session `sid`, from the session state this request's
/// authentication already read (so a console page's header costs no read of its own).
pub async fn email(db: &Db, sid: &str) -> Result<String, ApiError> {
    let state = load_session(db, sid).await?.ok_or_else(invalid_token)?;
    Ok(state.email.clone())
}
