//! Sending email: the Resend HTTP API (`POST {base}/emails`) or, outside production, the local
//! outbox in D1.

use edgeplane_core::identity::email::{resend_request, Message};
use edgeplane_core::ids::new_id;
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use worker::Method;

use super::outbound;
use super::settings::{EmailSettings, IdentitySettings};
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::http::log;

pub fn unavailable() -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        "email delivery is unavailable; try again later",
    )
    .with_retry_after(30)
}

pub async fn send(cx: &Cx<'_>, settings: &IdentitySettings, m: &Message) -> Result<(), ApiError> {
    match &settings.email {
        EmailSettings::Resend {
            api_base,
            api_key,
            from,
        } => {
            let auth = format!("Bearer {api_key}");
            let body = resend_request(from, m).to_string();
            let answer = outbound::call(
                Method::Post,
                &format!("{api_base}/emails"),
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                    ("user-agent", "edgeplane"),
                ],
                Some(body),
            )
            .await
            .map_err(|_| {
                log::error("email provider", "unreachable or timed out");
                unavailable()
            })?;
            if answer.ok() {
                Ok(())
            } else {
                // The status only: provider error bodies may echo the message.
                log::error(
                    "email provider",
                    &format!("answered HTTP {}", answer.status),
                );
                Err(unavailable())
            }
        }
        EmailSettings::Outbox => {
            let now = now_ms();
            cx.db()
                .run_unaudited(
                    "INSERT INTO email_outbox (id, recipient, subject, text_body, html_body, \
                     created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                    args![
                        new_id("eml", now)?,
                        &m.to,
                        &m.subject,
                        &m.text,
                        &m.html,
                        now
                    ],
                )
                .await?;
            Ok(())
        }
        EmailSettings::Unavailable(_) => Err(unavailable()),
    }
}
