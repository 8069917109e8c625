//! `deployments list|create|show|promote|pause|resume|rollback`: staged rollouts of an approved
//! version to device groups (`/v1/orgs/{org}/deployments`). The server decides every transition
//! (a paused rollout is not promoted, a rolled-back one is final: 409).

use serde_json::{json, Value};

use crate::error::Result;
use crate::models::version_ref;
use crate::output::items;
use crate::{seg, Ctx};

#[derive(Debug, clap::Subcommand)]
pub enum DeploymentsCmd {
    /// Deployments, newest first.
    List {
        /// Only this model's.
        #[arg(long)]
        model: Option<String>,
    },
    /// Ship an approved version to device groups, stage by stage.
    Create {
        /// The model id.
        #[arg(long)]
        model: String,
        /// The version (number or id); it must be approved.
        #[arg(long)]
        version: String,
        /// A device group (repeat for several, up to 16).
        #[arg(long = "group", required = true)]
        groups: Vec<String>,
        /// The stages in percent of the targeted devices, ending at 100 (default: the
        /// server's, 1,10,50,100).
        #[arg(long, value_delimiter = ',')]
        stages: Option<Vec<u8>>,
    },
    /// A deployment, with each stage's devices and how many installed, run or failed the version.
    Show { deployment: String },
    /// Move to the next stage.
    Promote { deployment: String },
    /// Freeze at the current stage: nobody new gets the version.
    Pause { deployment: String },
    /// Continue a paused rollout.
    Resume { deployment: String },
    /// Withdraw: every device goes back to what the model's previous deployment gave it.
    Rollback { deployment: String },
}

const COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("MODEL", "model_id"),
    ("VERSION", "version"),
    ("STATE", "state"),
    ("PERCENT", "percent"),
    ("STAGES", "stages"),
    ("GROUPS", "device_group_ids"),
    ("UPDATED", "updated_at"),
];

const FIELDS: &[(&str, &str)] = &[
    ("id", "id"),
    ("model", "model_id"),
    ("version", "version"),
    ("version id", "version_id"),
    ("previous version", "previous_version_id"),
    ("state", "state"),
    ("stage", "stage"),
    ("percent", "percent"),
    ("stages", "stages"),
    ("groups", "device_group_ids"),
    ("created", "created_at"),
    ("updated", "updated_at"),
];

pub fn run(ctx: &Ctx, cmd: DeploymentsCmd) -> Result<()> {
    let (action, deployment) = match cmd {
        DeploymentsCmd::List { model } => {
            let v = ctx
                .api
                .get(&ctx.org_query("/deployments", [("model_id", model)])?)?;
            ctx.out.table(&v, "deployments", COLUMNS);
            return Ok(());
        }
        DeploymentsCmd::Create {
            model,
            version,
            groups,
            stages,
        } => {
            let mut body = json!({"model_id": model, "version": version_ref(&version),
                "device_group_ids": groups});
            if let Some(s) = stages {
                body["stages"] = json!(s);
            }
            let v = ctx.api.post(&ctx.org_path("/deployments")?, &body)?;
            return show(ctx, &v);
        }
        DeploymentsCmd::Show { deployment } => {
            let v = ctx
                .api
                .get(&ctx.org_path(&format!("/deployments/{}", seg(&deployment)))?)?;
            return show(ctx, &v);
        }
        DeploymentsCmd::Promote { deployment } => ("promote", deployment),
        DeploymentsCmd::Pause { deployment } => ("pause", deployment),
        DeploymentsCmd::Resume { deployment } => ("resume", deployment),
        DeploymentsCmd::Rollback { deployment } => ("rollback", deployment),
    };
    let v = ctx.api.post(
        &ctx.org_path(&format!("/deployments/{}/{action}", seg(&deployment)))?,
        &json!({}),
    )?;
    show(ctx, &v)
}

/// A deployment's fields, then its stages' progress when the answer has it.
fn show(ctx: &Ctx, v: &Value) -> Result<()> {
    let d = &v["deployment"];
    ctx.out.object(v, d, FIELDS);
    if !ctx.out.json && d["progress"].is_array() {
        println!();
        ctx.out.list(
            v,
            &items(d, "progress"),
            &[
                ("STAGE %", "percent"),
                ("DEVICES", "devices"),
                ("INSTALLED", "installed"),
                ("ACTIVE", "active"),
                ("FAILED", "failed"),
            ],
        );
    }
    Ok(())
}
