//! Magic-link sign-in: `POST /v1/auth/magic-link` sends a link (the same answer for every
//! address: no account enumeration), `POST /v1/auth/magic-link/verify` spends it for a session.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::auth::credential::{hash_presented, mint, CredentialKind};
use edgeplane_core::identity::magic_link::{self, check_spendable, invalid_link, TTL_MS};
use edgeplane_core::views::identity::{MagicLinkSent, SessionIssued};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;
use serde::Deserialize;
use serde_json::json;

use super::settings::{self, EmailSettings};
use super::{limits, mailer, signin};
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::http::log;

/// Sends a sign-in link to `email` (validated). The answer is the same for every address.
pub async fn request(cx: &Cx<'_>, email: &str) -> Result<MagicLinkSent, ApiError> {
    limits::per_ip(cx, "signin", limits::SIGNIN_PER_IP).await?;
    limits::per_account(cx, "magic-link", email, limits::MAGIC_LINK_PER_EMAIL).await?;
    let settings = settings::load(cx.env, &cx.cfg);

    let now = now_ms();
    let token = mint(CredentialKind::MagicLink)?;
    let stmts = vec![Stmt::new(
        "INSERT INTO magic_links (token_hash, email, created_at_ms, expires_at_ms, ip) \
         VALUES (?, ?, ?, ?, ?)",
        args![&token.hash, email, now, now + TTL_MS, cx.rc.ip.clone()],
    )];
    // The resource id is a digest of the stored hash: it identifies the link in the audit log
    // without being usable to spend it.
    let event = Event::new(
        AuditAction::MagicLinkRequested,
        "magic_link",
        &token.hash[..16],
    )
    .meta(json!({"email": email}));
    if matches!(settings.email, EmailSettings::Unavailable(_)) {
        return Err(mailer::unavailable());
    }
    cx.commit(stmts, [event]).await?;

    let link = magic_link::link(&settings.app_base_url, &token.plaintext);
    mailer::send(cx, &settings, &magic_link::message(email, &link)).await?;
    if settings.development && matches!(settings.email, EmailSettings::Outbox) {
        // Development only: the developer's inbox is this log (and the outbox endpoint).
        log::info(
            "sign-in link (development outbox)",
            json!({"to": email, "link": link, "token": token.plaintext}),
        );
    }
    Ok(MagicLinkSent {
        status: "sent".into(),
        message: "If this address can receive email, a sign-in link is on its way.".into(),
        expires_in: TTL_MS / 1000,
    })
}

#[derive(Deserialize)]
struct LinkRow {
    email: String,
    expires_at_ms: i64,
    consumed_at_ms: Option<i64>,
}

/// Spends the link `token` and signs its address in.
pub async fn verify(cx: &Cx<'_>, token: &str) -> Result<SessionIssued, ApiError> {
    limits::per_ip(cx, "grant", limits::GRANT_PER_IP).await?;
    let hash = hash_presented(CredentialKind::MagicLink, token.trim()).ok_or_else(invalid_link)?;
    let row: LinkRow = cx
        .db()
        .first(
            "SELECT email, expires_at_ms, consumed_at_ms FROM magic_links WHERE token_hash = ?",
            args![&hash],
        )
        .await?
        .ok_or_else(invalid_link)?;
    let now = now_ms();
    check_spendable(row.expires_at_ms, row.consumed_at_ms, now)?;
    // Spending the link is part of the sign-in batch, guarded so two concurrent uses of one
    // link cannot both succeed.
    let pre = vec![
        Stmt::guard(
            "EXISTS (SELECT 1 FROM magic_links WHERE token_hash = ? AND consumed_at_ms IS NULL \
             AND expires_at_ms > ?)",
            args![&hash, now],
            invalid_link(),
        ),
        Stmt::new(
            "UPDATE magic_links SET consumed_at_ms = ? WHERE token_hash = ?",
            args![now, &hash],
        ),
    ];
    signin::by_email(cx, &row.email, pre, "magic_link").await
}
