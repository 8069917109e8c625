//! The development outbox: `GET /v1/dev/outbox/{recipient}` lists the messages the local
//! outbox mode kept for one address. It exists only in development (`DEPLOYMENT_ENV=development`
//! with `EMAIL_PROVIDER=outbox`); everywhere else the route answers 404 as if it did not exist.

use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::views::identity::{OutboxMessage, OutboxView};
use edgeplane_core::{validate, ApiError, ErrorCode};
use edgeplane_runtime::args;
use serde::Deserialize;

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::identity::settings::{self, EmailSettings};

#[derive(Deserialize)]
struct Mail {
    id: String,
    subject: String,
    text_body: String,
    html_body: String,
    created_at_ms: i64,
}

pub async fn outbox(cx: &mut Cx<'_>) -> HttpResult {
    let s = settings::load(cx.env, &cx.cfg);
    if !(s.development && matches!(s.email, EmailSettings::Outbox)) {
        return Err(ApiError::new(
            ErrorCode::RouteNotFound,
            "no route matches this path",
        ));
    }
    let to = validate::email(cx.param("recipient")?)?;
    let rows: Vec<Mail> = cx
        .db()
        .all(
            "SELECT id, subject, text_body, html_body, created_at_ms FROM email_outbox \
             WHERE recipient = ? ORDER BY created_at_ms DESC LIMIT 20",
            args![&to],
        )
        .await?;
    let messages = rows
        .into_iter()
        .map(|m| OutboxMessage {
            id: m.id,
            to: to.clone(),
            subject: m.subject,
            text: m.text_body,
            html: m.html_body,
            created_at: rfc3339_millis(m.created_at_ms),
        })
        .collect();
    respond::ok(&OutboxView { messages })
}
