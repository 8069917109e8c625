//! `rounds create|list|show|cancel|watch|metrics`.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::error::{CliError, Result};
use crate::models::version_ref;
use crate::output::is_tty;
use crate::{seg, Ctx};

#[derive(Debug, clap::Subcommand)]
pub enum RoundsCmd {
    List,
    Show {
        round: String,
    },
    Create {
        /// The model id.
        #[arg(long)]
        model: String,
        /// The base version (number or id).
        #[arg(long)]
        base_version: String,
        /// Accepted updates wanted.
        #[arg(long)]
        target: u32,
        /// Fewest accepted updates that still publish at the deadline.
        #[arg(long)]
        min: u32,
        /// Most devices selected.
        #[arg(long)]
        max: u32,
        #[arg(long, default_value_t = 600)]
        deadline_seconds: u32,
        #[arg(long)]
        device_group: Option<String>,
        #[arg(long)]
        clip_norm: Option<f64>,
        #[arg(long)]
        noise_multiplier: Option<f64>,
    },
    Cancel {
        round: String,
    },
    /// Training metrics and fleet health: the participation funnel, each metric's
    /// sample-weighted mean and spread over the accepted updates, the participants' health.
    Metrics {
        round: String,
    },
    /// Follow a round until it ends: exit 0 and print the published version id, or exit 1 when
    /// it fails, is cancelled or ends with too few updates.
    Watch {
        round: String,
        /// Seconds between polls.
        #[arg(long, default_value_t = 2)]
        interval: u64,
    },
}

const ROUND_FIELDS: &[(&str, &str)] = &[
    ("id", "id"),
    ("state", "state"),
    ("model", "model_id"),
    ("base version", "base_version"),
    ("target", "target"),
    ("min", "min"),
    ("max", "max"),
    ("accepted", "progress.accepted"),
    ("folded", "progress.folded"),
    ("deadline", "deadline_at"),
    ("published version", "published_version_id"),
];

pub fn run(ctx: &Ctx, cmd: RoundsCmd) -> Result<()> {
    match cmd {
        RoundsCmd::List => {
            let v = ctx.api.get(&ctx.org_path("/rounds")?)?;
            ctx.out.list(
                &v,
                &v["rounds"].as_array().cloned().unwrap_or_default(),
                &[
                    ("ID", "id"),
                    ("STATE", "state"),
                    ("MODEL", "model_id"),
                    ("BASE", "base_version"),
                    ("ACCEPTED", "progress.accepted"),
                    ("TARGET", "target"),
                    ("DEADLINE", "deadline_at"),
                ],
            );
        }
        RoundsCmd::Show { round } => {
            let v = get(ctx, &round)?;
            ctx.out.object(&v, &v["round"], ROUND_FIELDS);
        }
        RoundsCmd::Create {
            model,
            base_version,
            target,
            min,
            max,
            deadline_seconds,
            device_group,
            clip_norm,
            noise_multiplier,
        } => {
            let base = version_ref(&base_version);
            let mut aggregation = json!({"algorithm": "fedavg"});
            if let Some(c) = clip_norm {
                aggregation["clip_norm"] = json!(c);
            }
            if let Some(n) = noise_multiplier {
                aggregation["noise_multiplier"] = json!(n);
            }
            let mut body = json!({
                "model_id": model, "base_version": base, "target": target, "min": min,
                "max": max, "deadline_seconds": deadline_seconds, "aggregation": aggregation,
            });
            if let Some(g) = device_group {
                body["device_group"] = json!(g);
            }
            let v = ctx.api.post(&ctx.org_path("/rounds")?, &body)?;
            ctx.out.object(&v, &v["round"], ROUND_FIELDS);
        }
        RoundsCmd::Cancel { round } => {
            let v = ctx.api.post(
                &ctx.org_path(&format!("/rounds/{}/cancel", seg(&round)))?,
                &json!({}),
            )?;
            ctx.out.object(&v, &v["round"], ROUND_FIELDS);
        }
        RoundsCmd::Metrics { round } => {
            let v = ctx
                .api
                .get(&ctx.org_path(&format!("/rounds/{}/metrics", seg(&round)))?)?;
            metrics(ctx, &v);
        }
        RoundsCmd::Watch { round, interval } => watch(ctx, &round, interval)?,
    }
    Ok(())
}

/// The funnel and health as `name: value` lines, the metrics as a table (one row a metric).
fn metrics(ctx: &Ctx, v: &Value) {
    if ctx.out.json {
        return ctx.out.raw(v);
    }
    ctx.out.object(
        v,
        v,
        &[
            ("round", "round_id"),
            ("state", "state"),
            ("offered", "funnel.offered"),
            ("joined", "funnel.joined"),
            ("uploaded", "funnel.uploaded"),
            ("accepted", "funnel.accepted"),
            ("rejected", "funnel.rejected"),
            ("dropped", "funnel.dropped"),
            ("participants", "device_health.participants"),
            ("reporting health", "device_health.reporting"),
            ("battery % (mean)", "device_health.battery_pct_avg"),
            ("charging", "device_health.charging"),
        ],
    );
    let rows: Vec<Value> = v["metrics"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, spread)| {
                    let mut row = spread.clone();
                    row["name"] = json!(name);
                    row
                })
                .collect()
        })
        .unwrap_or_default();
    println!();
    ctx.out.list(
        v,
        &rows,
        &[
            ("METRIC", "name"),
            ("UPDATES", "updates"),
            ("MEAN", "mean"),
            ("STD DEV", "std_dev"),
            ("MIN", "min"),
            ("P10", "p10"),
            ("P50", "p50"),
            ("P90", "p90"),
            ("MAX", "max"),
        ],
    );
}

fn get(ctx: &Ctx, round: &str) -> Result<Value> {
    ctx.api
        .get(&ctx.org_path(&format!("/rounds/{}", seg(round)))?)
}

fn watch(ctx: &Ctx, round: &str, interval: u64) -> Result<()> {
    let pb = if is_tty() {
        let pb = ProgressBar::new(1);
        pb.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} accepted")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    loop {
        let v = get(ctx, round)?;
        let r = &v["round"];
        let state = r["state"].as_str().unwrap_or_default();
        pb.set_length(r["target"].as_u64().unwrap_or(1));
        pb.set_position(r["progress"]["accepted"].as_u64().unwrap_or(0));
        pb.set_message(format!(
            "{state}, folded {}, deadline {}",
            r["progress"]["folded"].as_u64().unwrap_or(0),
            r["deadline_at"].as_str().unwrap_or("?")
        ));
        match state {
            "published" => {
                pb.finish_and_clear();
                let version = r["published_version_id"].as_str().unwrap_or_default();
                ctx.out.done(&v, version);
                return Ok(());
            }
            "failed" | "cancelled" | "insufficient_updates" => {
                pb.finish_and_clear();
                if ctx.out.json {
                    ctx.out.raw(&v);
                }
                return Err(CliError::Server {
                    status: 200,
                    code: format!("round_{state}"),
                    message: r["failure"]["message"]
                        .as_str()
                        .unwrap_or("the round ended without publishing")
                        .to_owned(),
                    request_id: None,
                });
            }
            _ => std::thread::sleep(Duration::from_secs(interval.max(1))),
        }
    }
}
