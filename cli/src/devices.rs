//! `devices list|show|revoke|bootstrap-token`, `groups list|show|create|add-members`.
//!
//! A bootstrap token is how a device enrols: single use, bound to one device identifier, at
//! most 600 s. The CLI mints it with the signed-in credential (`devices:write`) and prints it
//! once on stdout, for the device (or `edgeplane simulate`) to exchange at
//! `POST /api/v1/device-auth/bootstrap`.

use edgeplane_core::views::federation::BootstrapTokenMinted;
use serde_json::{json, Value};

use crate::api::decode;
use crate::error::Result;
use crate::{seg, Ctx};

#[derive(Debug, clap::Subcommand)]
pub enum DevicesCmd {
    /// The org's devices, by id.
    List {
        /// Start after this device id (the previous page's `next_after`).
        #[arg(long)]
        after: Option<String>,
        /// 1 to 500 (default 100).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// One device, with its last heartbeat.
    Show { device: String },
    /// Revoke a device: its tokens stop working at once and its in-flight uploads are dropped.
    Revoke {
        device: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Mint a one-time bootstrap token for a device identifier; the token is printed once.
    BootstrapToken {
        /// The identifier the device will present (1-128 of A-Z a-z 0-9 . _ : -).
        #[arg(long)]
        identifier: String,
        /// Seconds the token stays valid (1-600, default 600).
        #[arg(long)]
        ttl_seconds: Option<u32>,
        /// A device scope (repeat for several; default devices:write).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
}

const DEVICE_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("IDENTIFIER", "device_identifier"),
    ("TAGS", "tags"),
    ("CREATED", "created_at"),
    ("LAST SEEN", "last_seen_at"),
    ("REVOKED", "revoked_at"),
];

const DEVICE_FIELDS: &[(&str, &str)] = &[
    ("id", "id"),
    ("identifier", "device_identifier"),
    ("tags", "tags"),
    ("created", "created_at"),
    ("last seen", "last_seen_at"),
    ("revoked", "revoked_at"),
    ("revoked reason", "revoked_reason"),
    ("battery %", "heartbeat.battery_pct"),
    ("charging", "heartbeat.charging"),
    ("network", "heartbeat.network_type"),
    ("heartbeat at", "heartbeat_at"),
];

pub fn devices(ctx: &Ctx, cmd: DevicesCmd) -> Result<()> {
    match cmd {
        DevicesCmd::List { after, limit } => {
            let path = ctx.org_query(
                "/devices",
                [("after", after), ("limit", limit.map(|l| l.to_string()))],
            )?;
            let v = ctx.api.get(&path)?;
            ctx.out.table(&v, "devices", DEVICE_COLUMNS);
            ctx.out.next_page(&v, "next_after", "after");
        }
        DevicesCmd::Show { device } => {
            let v = ctx.api.get(&device_path(ctx, &device, "")?)?;
            ctx.out.object(&v, &v["device"], DEVICE_FIELDS);
        }
        DevicesCmd::Revoke { device, reason } => {
            let v = revoke_device(ctx, &device, reason.as_deref())?;
            ctx.out.object(&v, &v["device"], DEVICE_FIELDS);
        }
        DevicesCmd::BootstrapToken {
            identifier,
            ttl_seconds,
            scopes,
        } => {
            let (v, minted) = mint_bootstrap_token(ctx, &identifier, ttl_seconds, &scopes)?;
            if ctx.out.json {
                ctx.out.raw(&v);
                return Ok(());
            }
            crate::secret::show_once(
                &[format!(
                    "Bootstrap token {} for device identifier {}, valid until {} (single use). \
                     The token below is shown only once.",
                    minted.id,
                    minted.device_identifier,
                    crate::output::cell(&v["expires_at"]),
                )],
                &minted.token,
            );
        }
    }
    Ok(())
}

fn device_path(ctx: &Ctx, device: &str, rest: &str) -> Result<String> {
    ctx.org_path(&format!("/devices/{}{rest}", seg(device)))
}

/// Revokes a device (its tokens stop working, live rounds drop its in-flight uploads).
pub fn revoke_device(ctx: &Ctx, device: &str, reason: Option<&str>) -> Result<Value> {
    let body = match reason {
        Some(r) => json!({ "reason": r }),
        None => json!({}),
    };
    ctx.api.post(&device_path(ctx, device, "/revoke")?, &body)
}

/// Mints a bootstrap token: the answer as sent, and read.
pub fn mint_bootstrap_token(
    ctx: &Ctx,
    identifier: &str,
    ttl_seconds: Option<u32>,
    scopes: &[String],
) -> Result<(Value, BootstrapTokenMinted)> {
    let mut body = json!({ "device_identifier": identifier });
    if let Some(t) = ttl_seconds {
        body["ttl_seconds"] = json!(t);
    }
    if !scopes.is_empty() {
        body["scopes"] = json!(scopes);
    }
    let v = ctx
        .api
        .post(&ctx.org_path("/devices/bootstrap-tokens")?, &body)?;
    let minted = decode(v.clone(), "bootstrap token")?;
    Ok((v, minted))
}

#[derive(Debug, clap::Subcommand)]
pub enum GroupsCmd {
    /// The org's device groups.
    List,
    /// One group.
    Show { group: String },
    /// Create a group that selects devices by tags (every tag) or lists them explicitly.
    Create {
        name: String,
        /// A tag every member carries (repeat for several).
        #[arg(long = "tag", conflicts_with = "devices")]
        tags: Vec<String>,
        /// A device id to list as a member (repeat for several).
        #[arg(long = "device")]
        devices: Vec<String>,
    },
    /// Add devices to an explicit group.
    AddMembers {
        group: String,
        /// A device id (repeat for several).
        #[arg(long = "device", required = true)]
        devices: Vec<String>,
    },
}

const GROUP_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("SELECTOR", "selector"),
    ("TAGS", "tags"),
    ("MEMBERS", "members"),
    ("CREATED", "created_at"),
];

const GROUP_FIELDS: &[(&str, &str)] = &[
    ("id", "id"),
    ("name", "name"),
    ("selector", "selector"),
    ("tags", "tags"),
    ("members", "members"),
    ("created", "created_at"),
];

pub fn groups(ctx: &Ctx, cmd: GroupsCmd) -> Result<()> {
    let v = match cmd {
        GroupsCmd::List => {
            let v = ctx.api.get(&ctx.org_path("/device-groups")?)?;
            ctx.out.table(&v, "device_groups", GROUP_COLUMNS);
            return Ok(());
        }
        GroupsCmd::Show { group } => ctx.api.get(&group_path(ctx, &group, "")?)?,
        GroupsCmd::Create {
            name,
            tags,
            devices,
        } => {
            let body = if !tags.is_empty() {
                json!({"name": name, "tags": tags})
            } else {
                json!({"name": name, "device_ids": devices})
            };
            ctx.api.post(&ctx.org_path("/device-groups")?, &body)?
        }
        GroupsCmd::AddMembers { group, devices } => add_members(ctx, &group, &devices)?,
    };
    ctx.out.object(&v, &v["device_group"], GROUP_FIELDS);
    Ok(())
}

fn group_path(ctx: &Ctx, group: &str, rest: &str) -> Result<String> {
    ctx.org_path(&format!("/device-groups/{}{rest}", seg(group)))
}

/// Adds devices to an explicit group; the answer is the group.
pub fn add_members(ctx: &Ctx, group: &str, devices: &[String]) -> Result<Value> {
    ctx.api.post(
        &group_path(ctx, group, "/members")?,
        &json!({ "device_ids": devices }),
    )
}

/// Sets a device's tags; the answer is the device.
pub fn set_tags(ctx: &Ctx, device: &str, tags: &[String]) -> Result<Value> {
    ctx.api
        .patch(&device_path(ctx, device, "")?, &json!({ "tags": tags }))
}
