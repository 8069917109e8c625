//! `audit list`, `audit export` (streamed, or `--job`: written by the server in the
//! background and downloaded through a short-lived link), `audit verify`.
//!
//! `verify` decides locally: it recomputes every link of an exported chain with
//! `edgeplane_core::audit::ChainVerifier` (the code the server's own sequencer and verifier
//! use) and checks the signed checkpoint's Ed25519 signature with
//! `edgeplane_core::audit::checkpoint::NoteVerifier`, then holds the chain to the checkpoint's
//! size and head hash. The server's `…/audit-events/verify` verdict is never asked. The public
//! key comes from `GET /v1/audit/checkpoint-key` unless pinned with `--key`.
//!
//! A chain whose oldest events retention pruned starts after a signed *anchor* (a checkpoint
//! at the pruned prefix's size, `edgeplane_core::audit::retention`). The export carries it
//! (`x-edgeplane-anchor`; saved as FILE.anchor), and `verify` checks its signature and starts
//! there; a pruned export without a valid anchor fails.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use edgeplane_core::audit::checkpoint::NoteVerifier;
use edgeplane_core::audit::export::{self, ANCHOR_HEADER, CHECKPOINT_HEADER};
use edgeplane_core::audit::{retention, ChainHead, ChainVerifier};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::error::{CliError, Result};
use crate::output::is_tty;
use crate::Ctx;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Events, newest first, filtered.
    List {
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        actor_type: Option<String>,
        #[arg(long)]
        resource: Option<String>,
        #[arg(long)]
        resource_type: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// The whole chain, streamed, as JSON lines or CSV. With -o, the signed checkpoint it
    /// stops at is saved next to it as FILE.checkpoint, and the signed anchor it starts after
    /// (when retention pruned the chain's oldest events) as FILE.anchor.
    Export {
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
        format: String,
        /// Only events at or after this instant (RFC 3339). A partial export does not verify.
        #[arg(long)]
        since: Option<String>,
        /// Only events at or before this instant (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Write to FILE instead of stdout.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// For long logs: the server writes the export to storage in the background (an export
        /// job), this command waits for it, downloads the file through the job's short-lived
        /// link to FILE (with FILE.checkpoint and FILE.anchor) and, for a whole-chain jsonl
        /// export, verifies it as `audit verify FILE` does, printing that verdict. A csv or
        /// time-narrowed (--since/--until) file is downloaded and reported as not verified
        /// (`"verified": false`). Needs -o.
        #[arg(long, requires = "output")]
        job: bool,
        /// Seconds between polls of the job.
        #[arg(long, default_value_t = 5, requires = "job")]
        interval: u64,
    },
    /// Verify a chain and its signed checkpoint locally: a jsonl export FILE (with
    /// FILE.checkpoint, or --checkpoint, or else the server's newest checkpoint), or, without
    /// FILE, a fresh export streamed from the server.
    Verify {
        file: Option<PathBuf>,
        /// A signed checkpoint note you kept (a file).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The checkpoint public key (standard base64), instead of asking the deployment.
        #[arg(long)]
        key: Option<String>,
        /// The signed anchor of a pruned chain (a file), instead of FILE.anchor.
        #[arg(long)]
        anchor: Option<PathBuf>,
    },
}

pub fn run(ctx: &Ctx, cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::List {
            action,
            actor,
            actor_type,
            resource,
            resource_type,
            since,
            until,
            limit,
            cursor,
        } => {
            let v = ctx.api.get(&ctx.org_query(
                "/audit-events",
                [
                    ("action", action),
                    ("actor", actor),
                    ("actor_type", actor_type),
                    ("resource", resource),
                    ("resource_type", resource_type),
                    ("since", since),
                    ("until", until),
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor),
                ],
            )?)?;
            ctx.out.table(
                &v,
                "events",
                &[
                    ("SEQ", "seq"),
                    ("TIME", "created_at"),
                    ("ACTION", "action"),
                    ("ACTOR", "actor.id"),
                    ("RESOURCE", "resource.id"),
                    ("REQUEST", "request_id"),
                ],
            );
            ctx.out.next_page(&v, "next_cursor", "cursor");
            Ok(())
        }
        AuditCmd::Export {
            format,
            since,
            until,
            output,
            job,
            interval,
        } => match (job, output) {
            (true, Some(path)) => export_job_cmd(ctx, &format, since, until, &path, interval),
            (_, output) => export_cmd(ctx, &format, since, until, output),
        },
        AuditCmd::Verify {
            file,
            checkpoint,
            key,
            anchor,
        } => verify(ctx, file, checkpoint, key, anchor),
    }
}

/// The signed notes an export carries: the checkpoint it stops at, and the anchor of the
/// pruned prefix it starts after (if any).
struct ExportNotes {
    checkpoint: Option<String>,
    anchor: Option<String>,
}

/// Starts the export download; answers the response and the signed notes it carries.
fn start_export(
    ctx: &Ctx,
    format: &str,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(reqwest::blocking::Response, ExportNotes)> {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("format", format);
    if let Some(s) = since {
        q.append_pair("since", s);
    }
    if let Some(u) = until {
        q.append_pair("until", u);
    }
    let url = ctx.api.url(&format!(
        "{}?{}",
        ctx.org_path("/audit-events/export")?,
        q.finish()
    ));
    let r = ctx.api.send(|c| c.get(&url))?;
    let notes = notes_of(&r);
    Ok((r, notes))
}

/// The signed notes an export answer carries in its headers (the stream's and a job's
/// download alike).
fn notes_of(r: &reqwest::blocking::Response) -> ExportNotes {
    let note = |header: &str| {
        r.headers()
            .get(header)
            .and_then(|v| v.to_str().ok())
            .and_then(|b| STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
    };
    ExportNotes {
        checkpoint: note(CHECKPOINT_HEADER),
        anchor: note(ANCHOR_HEADER),
    }
}

fn bar() -> ProgressBar {
    if !is_tty() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec}) {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message("exporting");
    pb
}

/// Writes an export answer's body to `path` (through `path.partial`, so only a complete export
/// takes the name) and its signed notes beside it; answers the bytes and line ends copied.
fn save_export(reader: &mut impl Read, path: &Path, notes: &ExportNotes) -> Result<(u64, u64)> {
    let io = |e: std::io::Error| CliError::usage(format!("writing the export: {e}"));
    let tmp = path.with_extension("partial");
    let mut w = BufWriter::new(File::create(&tmp).map_err(io)?);
    let counted = copy_counting(reader, &mut w)?;
    w.flush().map_err(io)?;
    drop(w);
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(n) = &notes.checkpoint {
        std::fs::write(checkpoint_path(path), n).map_err(io)?;
    }
    if let Some(a) = &notes.anchor {
        std::fs::write(anchor_path(path), a).map_err(io)?;
    }
    Ok(counted)
}

/// `audit export --job`: creates an export job, follows it until the cron has written its
/// file, downloads the file through the job's signed link (no bearer: the link is the
/// authority), then verifies it with the code `audit verify` runs.
fn export_job_cmd(
    ctx: &Ctx,
    format: &str,
    since: Option<String>,
    until: Option<String>,
    path: &Path,
    interval: u64,
) -> Result<()> {
    // Only a whole-chain jsonl export verifies offline: from the genesis (or the anchor) up to
    // the checkpoint. A csv file, or one narrowed by time, is downloaded and not verified, and
    // the CLI says so (exit 0, `"verified": false`).
    let verifiable = format == "jsonl" && since.is_none() && until.is_none();
    let mut body = json!({ "format": format });
    if let Some(s) = since {
        body["since"] = s.into();
    }
    if let Some(u) = until {
        body["until"] = u.into();
    }
    let created = ctx
        .api
        .post(&ctx.org_path("/audit-events/export-jobs")?, &body)?;
    let id = created["id"]
        .as_str()
        .ok_or_else(|| CliError::network("the export job answer has no id"))?
        .to_owned();
    let pb = bar();
    let job = loop {
        crate::interrupt::check(&format!(
            "the export job {id} goes on on the server; the file is kept for a day"
        ))?;
        let v = ctx
            .api
            .get(&ctx.org_path(&format!("/audit-events/export-jobs/{id}"))?)?;
        let state = v["state"].as_str().unwrap_or_default();
        if !known_job_state(state) {
            pb.finish_and_clear();
            // A state this CLI does not know would otherwise be polled forever.
            return Err(CliError::network(format!(
                "the export job {id} is in a state this CLI does not know: {state:?}"
            )));
        }
        match state {
            "ready" => break v,
            state @ ("failed" | "expired") => {
                pb.finish_and_clear();
                if ctx.out.json {
                    ctx.out.raw(&v);
                }
                return Err(CliError::Server {
                    status: 200,
                    code: format!("export_job_{state}"),
                    message: v["error"]
                        .as_str()
                        .unwrap_or("the export job's file is no longer kept")
                        .to_owned(),
                    request_id: None,
                });
            }
            state => {
                pb.set_message(format!("export job {id} {state}"));
                std::thread::sleep(std::time::Duration::from_secs(interval.max(1)));
            }
        }
    };
    let url = job["download"]["url"]
        .as_str()
        .ok_or_else(|| CliError::network("a ready export job came without its download link"))?;
    let r = crate::api::send_plain(ctx.api.client().get(url))?;
    let notes = notes_of(&r);
    pb.set_message("downloading");
    let (bytes, _) = save_export(&mut pb.wrap_read(crate::api::WithoutUrl(r)), path, &notes)?;
    pb.finish_and_clear();
    if verifiable {
        return verify(ctx, Some(path.to_owned()), None, None, None);
    }
    let why = if format == "jsonl" {
        "it is narrowed by time (--since/--until), not the whole chain"
    } else {
        "only a jsonl export verifies"
    };
    let v = json!({
        "file": path,
        "format": format,
        "job": id,
        "events": job["events"],
        "bytes": bytes,
        "verified": false,
        "not_verified_because": why,
    });
    ctx.out.done(
        &v,
        &format!(
            "Downloaded the export job's file ({bytes} bytes) to {}. It was NOT verified: {why}.",
            path.display()
        ),
    );
    Ok(())
}

/// Whether `state` is one an export job can be in (`edgeplane_core`'s `JobState` names).
fn known_job_state(state: &str) -> bool {
    serde_json::from_value::<edgeplane_core::audit::export_job::JobState>(json!(state)).is_ok()
}

fn export_cmd(
    ctx: &Ctx,
    format: &str,
    since: Option<String>,
    until: Option<String>,
    output: Option<PathBuf>,
) -> Result<()> {
    let (r, notes) = start_export(ctx, format, since.as_deref(), until.as_deref())?;
    let pb = bar();
    let mut reader = pb.wrap_read(r);
    let (bytes, lines) = match &output {
        Some(path) => save_export(&mut reader, path, &notes)?,
        None => {
            let stdout = std::io::stdout();
            let mut w = stdout.lock();
            copy_counting(&mut reader, &mut w)?
        }
    };
    pb.finish_and_clear();
    if let Some(path) = output {
        let events = if format == "csv" {
            lines.saturating_sub(1)
        } else {
            lines
        };
        let v = json!({
            "file": path,
            "format": format,
            "events": events,
            "bytes": bytes,
            "checkpoint": notes.checkpoint.as_ref().map(|_| checkpoint_path(&path)),
            "anchor": notes.anchor.as_ref().map(|_| anchor_path(&path)),
        });
        ctx.out.done(
            &v,
            &format!(
                "Exported {events} events ({bytes} bytes) to {}.",
                path.display()
            ),
        );
    }
    Ok(())
}

fn checkpoint_path(path: &Path) -> PathBuf {
    beside(path, ".checkpoint")
}

fn anchor_path(path: &Path) -> PathBuf {
    beside(path, ".anchor")
}

fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Copies and counts bytes and line ends; a read failure mid-stream is a network error.
fn copy_counting(r: &mut impl Read, w: &mut impl Write) -> Result<(u64, u64)> {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut bytes, mut lines) = (0u64, 0u64);
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CliError::network(format!("the export broke off: {e}"))),
        };
        let chunk = &buf[..n];
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        bytes += n as u64;
        w.write_all(chunk)
            .map_err(|e| CliError::usage(format!("writing the export: {e}")))?;
    }
    Ok((bytes, lines))
}

/// The deployment's published checkpoint key (or the pinned one).
fn published_key(ctx: &Ctx, key: Option<&str>) -> Result<String> {
    Ok(match key {
        Some(k) => k.to_owned(),
        None => ctx.api.get("/v1/audit/checkpoint-key")?["public_key"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    })
}

/// The key that signs `note`'s chain: its origin (the note's first line) with `key`.
fn note_key(note: &str, key: &str) -> Result<NoteVerifier> {
    let origin = note.split('\n').next().unwrap_or_default();
    NoteVerifier::from_published(origin, key)
        .map_err(|e| CliError::Verify(format!("the checkpoint key: {e}")))
}

/// The checkpoint's signed head, its signature checked with `verifier`.
fn open_checkpoint(verifier: &NoteVerifier, note: &str) -> Result<(String, ChainHead)> {
    let cp = verifier
        .open(note)
        .map_err(|e| CliError::Verify(format!("the checkpoint: {e}")))?;
    Ok((
        cp.origin.clone(),
        ChainHead {
            seq: cp.size as i64,
            hash: cp.head_hash_hex(),
        },
    ))
}

fn verify(
    ctx: &Ctx,
    file: Option<PathBuf>,
    checkpoint: Option<PathBuf>,
    key: Option<String>,
    anchor: Option<PathBuf>,
) -> Result<()> {
    let read_note = |p: &Path| {
        std::fs::read_to_string(p)
            .map_err(|e| CliError::usage(format!("reading {}: {e}", p.display())))
    };
    let pb = bar();
    pb.set_message("verifying");
    let given_anchor = anchor.as_deref().map(read_note).transpose()?;
    let (reader, note, anchor, source): (Box<dyn BufRead>, Option<String>, Option<String>, String) =
        match &file {
            Some(path) => {
                let f = File::open(path)
                    .map_err(|e| CliError::usage(format!("reading {}: {e}", path.display())))?;
                let note = match &checkpoint {
                    Some(p) => Some(read_note(p)?),
                    None if checkpoint_path(path).exists() => {
                        Some(read_note(&checkpoint_path(path))?)
                    }
                    // No checkpoint kept with the export: the deployment's newest one.
                    None => ctx.api.get(&ctx.org_path("/audit-events?limit=1")?)?["checkpoint"]
                        ["note"]
                        .as_str()
                        .map(str::to_owned),
                };
                let anchor = match given_anchor {
                    Some(a) => Some(a),
                    None if anchor_path(path).exists() => Some(read_note(&anchor_path(path))?),
                    None => None,
                };
                let r = pb.wrap_read(f);
                (
                    Box::new(BufReader::new(r)),
                    note,
                    anchor,
                    path.display().to_string(),
                )
            }
            None => {
                let (r, notes) = start_export(ctx, "jsonl", None, None)?;
                let note = match &checkpoint {
                    Some(p) => Some(read_note(p)?),
                    None => notes.checkpoint,
                };
                (
                    Box::new(BufReader::new(pb.wrap_read(r))),
                    note,
                    given_anchor.or(notes.anchor),
                    "export".into(),
                )
            }
        };
    // One key for both notes: the chain's, named by the checkpoint (or, without one, the anchor).
    let note_key = match note.as_deref().or(anchor.as_deref()) {
        Some(n) => Some(note_key(n, &published_key(ctx, key.as_deref())?)?),
        None => None,
    };
    let signed = match (&note, &note_key) {
        (Some(n), Some(k)) => Some(open_checkpoint(k, n)?),
        _ => None,
    };
    // From the signed anchor when retention pruned the chain (its signature checked, and failing
    // with the reason when it does not verify); from the genesis otherwise.
    let mut verifier = match &note_key {
        Some(k) => retention::verifier_from(k, anchor.as_deref()),
        None => ChainVerifier::new(),
    };
    if let Some((_, head)) = &signed {
        verifier.expect(head.clone());
    }
    let mut chain: Option<String> = None;
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| CliError::network(format!("reading {source}: {e}")))?;
        if line.is_empty() {
            continue;
        }
        let ev = export::parse_line(&line).map_err(|e| {
            CliError::Verify(format!(
                "{source} line {}: not an audit event of a jsonl export: {e}",
                n + 1
            ))
        })?;
        match &chain {
            None => chain = Some(ev.event.chain.clone()),
            Some(c) if *c != ev.event.chain => {
                verifier.fail(ev.seq, format!("line {} belongs to another chain", n + 1));
            }
            Some(_) => {}
        }
        verifier.feed(&ev);
        if verifier.is_broken() {
            break;
        }
    }
    pb.finish_and_clear();
    // The checkpoint (or anchor) must be this chain's: its origin ends in `/audit/<chain>`.
    if let (Some(k), Some(c)) = (&note_key, &chain) {
        let origin = k.name();
        if !origin.ends_with(&format!("/audit/{c}")) {
            verifier.fail(1, format!("the checkpoint is for {origin}, not chain {c}"));
        }
    }
    let report = verifier.finish();
    let v = json!({
        "source": source,
        "chain": chain,
        "valid": report.valid,
        "events_checked": report.events_checked,
        "first_broken_seq": report.first_broken_seq,
        "reason": report.reason,
        "head_hash": report.head_hash,
        "checkpoint": signed.as_ref().map(|(origin, head)|
            json!({"origin": origin, "size": head.seq, "head_hash": head.hash})),
        "checkpoints_checked": report.checkpoints_checked,
        "anchored_at": report.anchored_at,
    });
    if report.valid {
        ctx.out.done(
            &v,
            &format!(
                "OK: {} events verified{}, head {}; {}",
                report.events_checked,
                match report.anchored_at {
                    Some(size) => format!(" from the signed anchor at size {size}"),
                    None => String::new(),
                },
                report.head_hash,
                match &signed {
                    Some((_, h)) => format!("matches the signed checkpoint at size {}", h.seq),
                    None => "no signed checkpoint to compare with".into(),
                }
            ),
        );
        Ok(())
    } else {
        if ctx.out.json {
            ctx.out.raw(&v);
        }
        Err(CliError::Verify(format!(
            "the chain does not verify at seq {}: {}",
            report.first_broken_seq.unwrap_or(0),
            report.reason.unwrap_or_default()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_job_states_are_polled() {
        for s in ["queued", "running", "ready", "failed", "expired"] {
            assert!(known_job_state(s), "{s}");
        }
        // Anything else ends the poll with an error instead of waiting forever.
        for s in ["", "paused", "READY", "done"] {
            assert!(!known_job_state(s), "{s}");
        }
    }
}
