//! `models create|list|versions|approve|push|pull`.
//!
//! `push` uploads a safetensors file as the model's next base version and checks that the
//! server computed the same SHA-256 as the file; `pull` downloads a version into FILE.partial,
//! checks its SHA-256 against the server's `x-edgeplane-sha256`, and only then renames it, so an
//! interrupted or corrupted download never takes the name.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{CliError, Result};
use crate::interrupt::{self, OnInterrupt};
use crate::output::is_tty;
use crate::{seg, Ctx};

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCmd {
    List,
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// A model's versions.
    Versions {
        model: String,
    },
    /// Approve a version for deployment.
    Approve {
        model: String,
        version: String,
    },
    /// Upload a safetensors file as the model's next base version.
    Push {
        model: String,
        file: PathBuf,
    },
    /// Download a version (number, id, or `latest`).
    Pull {
        model: String,
        version: String,
        /// Where to write (default: <model>-v<version>.safetensors).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
}

const VERSION_COLUMNS: &[(&str, &str)] = &[
    ("VERSION", "version"),
    ("ID", "id"),
    ("STATUS", "status"),
    ("SHA256", "sha256"),
    ("BYTES", "size_bytes"),
    ("ROUND", "round_id"),
    ("CREATED", "created_at"),
];

/// A version as the API takes it in a body: its number (a JSON number) or its id.
pub fn version_ref(version: &str) -> Value {
    match version.parse::<u64>() {
        Ok(n) => json!(n),
        Err(_) => json!(version),
    }
}

fn bytes_bar(len: u64, msg: &str) -> ProgressBar {
    if !is_tty() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(msg.to_owned());
    pb
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path)
        .map_err(|e| CliError::usage(format!("reading {}: {e}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| CliError::usage(format!("reading {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

pub fn run(ctx: &Ctx, cmd: ModelsCmd) -> Result<()> {
    match cmd {
        ModelsCmd::List => {
            let v = ctx.api.get(&ctx.org_path("/models")?)?;
            ctx.out.list(
                &v,
                &v["models"].as_array().cloned().unwrap_or_default(),
                &[
                    ("ID", "id"),
                    ("NAME", "name"),
                    ("LATEST", "latest_version"),
                    ("CREATED", "created_at"),
                ],
            );
        }
        ModelsCmd::Create { name, description } => {
            let mut body = json!({ "name": name });
            if let Some(d) = description {
                body["description"] = Value::String(d);
            }
            let v = ctx.api.post(&ctx.org_path("/models")?, &body)?;
            ctx.out.object(
                &v,
                &v["model"],
                &[("id", "id"), ("name", "name"), ("created", "created_at")],
            );
        }
        ModelsCmd::Versions { model } => {
            let v = ctx
                .api
                .get(&ctx.org_path(&format!("/models/{}/versions", seg(&model)))?)?;
            ctx.out.list(
                &v,
                &v["versions"].as_array().cloned().unwrap_or_default(),
                VERSION_COLUMNS,
            );
        }
        ModelsCmd::Approve { model, version } => {
            let v = ctx.api.post(
                &ctx.org_path(&format!(
                    "/models/{}/versions/{}/approve",
                    seg(&model),
                    seg(&version)
                ))?,
                &json!({}),
            )?;
            ctx.out.object(&v, &v["version"], VERSION_COLUMNS);
        }
        ModelsCmd::Push { model, file } => push(ctx, &model, &file)?,
        ModelsCmd::Pull {
            model,
            version,
            output,
        } => pull(ctx, &model, &version, output)?,
    }
    Ok(())
}

/// What an interrupt leaves while the file is on its way: nothing (the server inserts the
/// version row, with its audit event, only after the last byte and the format checks).
const PUSH_ABANDONED: &str = "the upload was abandoned before its last byte; the server \
     registers a version only once it holds the whole file, so nothing was registered";

/// The file as the request body: counts what the server was sent, and once the last byte is
/// out an interrupt no longer drops the request but waits for the server's answer (it may have
/// registered the version).
struct Upload<R> {
    inner: R,
    sent: u64,
    len: u64,
}

impl<R: Read> Read for Upload<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent += n as u64;
        if n == 0 || self.sent >= self.len {
            interrupt::set(OnInterrupt::Record);
        }
        Ok(n)
    }
}

fn push(ctx: &Ctx, model: &str, file: &Path) -> Result<()> {
    let local = sha256_file(file)?;
    let len = std::fs::metadata(file)
        .map_err(|e| CliError::usage(format!("reading {}: {e}", file.display())))?
        .len();
    let url = ctx
        .api
        .url(&ctx.org_path(&format!("/models/{}/versions", seg(model)))?);
    let pb = bytes_bar(len, "uploading");
    let _scope = interrupt::on_interrupt(OnInterrupt::exit(PUSH_ABANDONED));
    let r = ctx.api.send(|c| {
        pb.set_position(0);
        interrupt::set(OnInterrupt::exit(PUSH_ABANDONED));
        let body = match File::open(file) {
            Ok(f) => reqwest::blocking::Body::sized(
                Upload {
                    inner: pb.wrap_read(f),
                    sent: 0,
                    len,
                },
                len,
            ),
            Err(_) => reqwest::blocking::Body::from(Vec::new()),
        };
        c.post(&url)
            .header("content-type", "application/octet-stream")
            .body(body)
    })?;
    pb.finish_and_clear();
    let v = crate::api::json_of(r)?;
    let remote = v["version"]["sha256"].as_str().unwrap_or_default();
    if remote != local {
        return Err(CliError::Verify(format!(
            "the server stored SHA-256 {remote}, the file has {local}"
        )));
    }
    ctx.out.object(&v, &v["version"], VERSION_COLUMNS);
    interrupt::check(&format!(
        "after the last byte was sent: the server registered it as version {}",
        v["version"]["version"]
    ))
}

fn pull(ctx: &Ctx, model: &str, version: &str, output: Option<PathBuf>) -> Result<()> {
    let url = ctx.api.url(&ctx.org_path(&format!(
        "/models/{}/versions/{}/download",
        seg(model),
        seg(version)
    ))?);
    let r = ctx.api.send(|c| c.get(&url))?;
    let expected = r
        .headers()
        .get("x-edgeplane-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| CliError::network("the download carries no x-edgeplane-sha256"))?;
    let path = output.unwrap_or_else(|| PathBuf::from(format!("{model}-v{version}.safetensors")));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let io = |e: std::io::Error| CliError::usage(format!("writing {}: {e}", path.display()));
    let pb = bytes_bar(r.content_length().unwrap_or(0), "downloading");
    let mut reader = pb.wrap_read(r);
    let mut f = File::create(&tmp).map_err(io)?;
    let partial = tmp.clone();
    let scope = interrupt::on_interrupt(OnInterrupt::Exit {
        note: format!(
            "the download was abandoned; {} was removed and {} not written",
            partial.display(),
            path.display()
        ),
        cleanup: Some(Box::new(move || {
            let _ = std::fs::remove_file(partial);
        })),
    });
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(CliError::network(format!("the download broke off: {e}")));
            }
        };
        h.update(&buf[..n]);
        f.write_all(&buf[..n]).map_err(io)?;
        bytes += n as u64;
    }
    f.flush().map_err(io)?;
    drop(f);
    pb.finish_and_clear();
    let got = hex::encode(h.finalize());
    if got != expected {
        let _ = std::fs::remove_file(&tmp);
        return Err(CliError::Verify(format!(
            "checksum mismatch: the server announced {expected}, the bytes hash to {got}"
        )));
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    drop(scope);
    let v = json!({"file": path, "sha256": got, "bytes": bytes});
    ctx.out.done(
        &v,
        &format!(
            "Downloaded {bytes} bytes to {} (sha256 {got}, checked).",
            path.display()
        ),
    );
    Ok(())
}
