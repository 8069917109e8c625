//! `orgs`, `members`, `invitations list|create|revoke`, `keys create|list|rotate|revoke`,
//! `sessions list|revoke`.

use serde_json::{json, Value};

use crate::error::Result;
use crate::output::items;
use crate::{seg, Ctx};

pub fn orgs(ctx: &Ctx) -> Result<()> {
    let v = ctx.api.get("/v1/orgs")?;
    ctx.out.list(
        &v,
        &items(&v, "orgs"),
        &[
            ("ID", "org.id"),
            ("SLUG", "org.slug"),
            ("NAME", "org.name"),
            ("ROLE", "role"),
        ],
    );
    Ok(())
}

pub fn members(ctx: &Ctx) -> Result<()> {
    let v = ctx.api.get(&ctx.org_path("/members")?)?;
    ctx.out.list(
        &v,
        &items(&v, "members"),
        &[
            ("USER", "user_id"),
            ("EMAIL", "email"),
            ("ROLE", "role"),
            ("JOINED", "joined_at"),
        ],
    );
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCmd {
    /// List the org's API keys.
    List,
    /// Create a key; the secret is printed once.
    Create {
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// A scope (repeat for several), e.g. --scope rounds:read --scope audit:read.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// Replace a key; the old one keeps working for the overlap.
    Rotate {
        key: String,
        /// Seconds the old key keeps working (default: the server's, 1 day).
        #[arg(long)]
        overlap_seconds: Option<u64>,
    },
    /// Revoke a key at once.
    Revoke { key: String },
}

const KEY_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("HINT", "hint"),
    ("STATUS", "status"),
    ("SCOPES", "scopes"),
    ("EXPIRES", "expires_at"),
    ("LAST USED", "last_used_at"),
];

pub fn keys(ctx: &Ctx, cmd: KeysCmd) -> Result<()> {
    match cmd {
        KeysCmd::List => {
            let v = ctx.api.get(&ctx.org_path("/api-keys")?)?;
            ctx.out.list(&v, &items(&v, "api_keys"), KEY_COLUMNS);
        }
        KeysCmd::Create { name, scopes } => {
            let v = ctx.api.post(
                &ctx.org_path("/api-keys")?,
                &json!({"name": name, "scopes": scopes}),
            )?;
            shown_once(ctx, &v)?;
        }
        KeysCmd::Rotate {
            key,
            overlap_seconds,
        } => {
            let body = match overlap_seconds {
                Some(s) => json!({ "overlap_seconds": s }),
                None => json!({}),
            };
            let v = ctx.api.post(
                &ctx.org_path(&format!("/api-keys/{}/rotate", seg(&key)))?,
                &body,
            )?;
            shown_once(ctx, &v)?;
        }
        KeysCmd::Revoke { key } => {
            ctx.api
                .delete(&ctx.org_path(&format!("/api-keys/{}", seg(&key)))?)?;
            ctx.out
                .done(&json!({"revoked": key}), &format!("Revoked {key}."));
        }
    }
    Ok(())
}

/// A created or rotated key: the secret goes to stdout alone (so `$(edgeplane keys create ...)`
/// captures just it), the description to stderr.
fn shown_once(ctx: &Ctx, v: &Value) -> Result<()> {
    if ctx.out.json {
        ctx.out.raw(v);
        return Ok(());
    }
    let k = &v["api_key"];
    let mut about = vec![format!(
        "API key {} ({}), scopes: {}. The secret below is shown only once.",
        k["id"].as_str().unwrap_or("?"),
        k["name"].as_str().unwrap_or("?"),
        crate::output::cell(&k["scopes"]),
    )];
    if let Some(until) = v["previous_key"]["expires_at"].as_str() {
        about.push(format!("The old key works until {until}."));
    }
    crate::secret::show_once(&about, v["key"].as_str().unwrap_or_default());
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
/// The server lets only a person's own session token manage sessions (a CLI token or API key
/// gets 403): use `EDGEPLANE_TOKEN=<session access token>`.
pub enum SessionsCmd {
    /// Your live sessions and CLI tokens.
    List,
    /// Revoke one session or CLI token.
    Revoke { session: String },
}

pub fn sessions(ctx: &Ctx, cmd: SessionsCmd) -> Result<()> {
    match cmd {
        SessionsCmd::List => {
            let v = ctx.api.get("/v1/sessions")?;
            ctx.out.list(
                &v,
                &items(&v, "sessions"),
                &[
                    ("ID", "id"),
                    ("KIND", "kind"),
                    ("ORG", "org_id"),
                    ("CREATED", "created_at"),
                    ("LAST USED", "last_used_at"),
                    ("CURRENT", "current"),
                ],
            );
        }
        SessionsCmd::Revoke { session } => {
            ctx.api.delete(&format!("/v1/sessions/{}", seg(&session)))?;
            ctx.out
                .done(&json!({"revoked": session}), &format!("Revoked {session}."));
        }
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum InvitationsCmd {
    /// Pending invitations (with --all, accepted, revoked and expired ones too).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Invite someone by email. They are emailed a link; the link is also printed, once.
    Create {
        email: String,
        /// owner, admin or member.
        #[arg(long, value_parser = ["owner", "admin", "member"])]
        role: String,
        /// Hours the invitation stays valid (default: the server's).
        #[arg(long)]
        ttl_hours: Option<u32>,
    },
    /// Revoke a pending invitation.
    Revoke { invitation: String },
}

const INVITATION_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("EMAIL", "email"),
    ("ROLE", "role"),
    ("STATUS", "status"),
    ("INVITED BY", "invited_by"),
    ("EXPIRES", "expires_at"),
];

pub fn invitations(ctx: &Ctx, cmd: InvitationsCmd) -> Result<()> {
    match cmd {
        InvitationsCmd::List { all } => {
            let status = if all { "all" } else { "pending" };
            let v = ctx
                .api
                .get(&ctx.org_path(&format!("/invitations?status={status}"))?)?;
            ctx.out.table(&v, "invitations", INVITATION_COLUMNS);
        }
        InvitationsCmd::Create {
            email,
            role,
            ttl_hours,
        } => {
            let mut body = json!({"email": email, "role": role});
            if let Some(h) = ttl_hours {
                body["ttl_hours"] = json!(h);
            }
            let v = ctx.api.post(&ctx.org_path("/invitations")?, &body)?;
            if ctx.out.json {
                ctx.out.raw(&v);
                return Ok(());
            }
            let inv = &v["invitation"];
            let mut about = vec![format!(
                "Invitation {} for {} as {}, valid until {}.",
                inv["id"].as_str().unwrap_or("?"),
                inv["email"].as_str().unwrap_or("?"),
                inv["role"].as_str().unwrap_or("?"),
                inv["expires_at"].as_str().unwrap_or("?"),
            )];
            about.push(if v["email_sent"].as_bool() == Some(true) {
                "The link was emailed; it is shown below only once.".into()
            } else {
                "The email could not be sent: pass on the link below (shown only once).".into()
            });
            crate::secret::show_once(&about, v["accept_url"].as_str().unwrap_or_default());
        }
        InvitationsCmd::Revoke { invitation } => {
            ctx.api
                .delete(&ctx.org_path(&format!("/invitations/{}", seg(&invitation)))?)?;
            ctx.out.done(
                &json!({"revoked": invitation}),
                &format!("Revoked {invitation}."),
            );
        }
    }
    Ok(())
}
