//! Audit export jobs against the real gateway: a log long enough to need several R2 multipart
//! parts (written straight into the local D1 as pending events, which the sequencer then places
//! and hashes like any other: thousands of audited requests would take minutes), exported by
//! the cron, downloaded through the job's signed link, compared byte for byte with the
//! streaming export and verified offline with the CLI's own code. Expired, tampered and
//! foreign links are refused, another org's job is 404, a job cut off mid-run ends `failed`,
//! and the link shows up in no log and no audit metadata.
//!
//! They write the SQLite file directly, so `scripts/e2e` runs them alone (`--ignored`, one
//! thread) after the main suite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use e2e::identity::{create_org, d1, new_user, Session};
use e2e::{stack_log, wait_for, Client};
use edgeplane_core::audit::checkpoint::NoteVerifier;
use edgeplane_core::audit::export::{parse_line, CHECKPOINT_HEADER};
use edgeplane_core::audit::export_job::{self, PART_BYTES};
use edgeplane_core::audit::{ChainHead, ChainVerifier};
use edgeplane_core::crypto::kdf::{KeyPurpose, RootSecret};
use edgeplane_core::ids::AuditExportJobId;
use edgeplane_core::time::rfc3339_millis;
use serde_json::{json, Value};

use base64::Engine;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A client for big bodies and for the cron trigger, which answers when the run is done.
fn patient() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
}

fn org_of(owner: &Session, name: &str) -> String {
    create_org(owner, name)["id"].as_str().unwrap().to_owned()
}

/// `n` events of about `pad` bytes each in `org`'s chain, committed as pending (as a batch
/// would commit them), then placed by the sequencer: every audit read syncs it.
fn long_log(c: &Client, org: &str, n: i64, pad: usize) {
    let start = now_ms() - 60_000;
    d1(
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?) \
         INSERT INTO audit_pending (id, chain, org_id, actor_type, actor_id, action, \
         resource_type, resource_id, ip, user_agent, request_id, metadata, created_at_ms) \
         SELECT 'aud_' || printf('%012x', ? + i) || lower(hex(randomblob(8))), ?, ?, 'user', \
         'usr_bulk', 'api_key.created', 'api_key', 'key_' || i, '192.0.2.1', 'bulk', NULL, \
         '{\"pad\":\"' || lower(hex(randomblob(?))) || '\"}', ? + i FROM k",
        &[
            json!(n),
            json!(start),
            json!(org),
            json!(org),
            json!(pad / 2),
            json!(start),
        ],
    );
    wait_for("the bulk events placed", Duration::from_secs(300), || {
        c.get(&format!("/v1/orgs/{org}/audit-events?limit=1"))
            .expect(200);
        let left = d1(
            "SELECT COUNT(*) AS n FROM audit_pending WHERE chain = ?",
            &[json!(org)],
        );
        (left[0]["n"] == 0).then_some(())
    });
}

/// Runs the cron until the job leaves `queued`/`running`; answers its final read.
fn run_until_done(c: &Client, org: &str, job: &str) -> Value {
    let trigger = patient();
    let path = format!("/v1/orgs/{org}/audit-events/export-jobs/{job}");
    let started = Instant::now();
    loop {
        let j = c.get(&path).expect(200).json();
        match j["state"].as_str().unwrap() {
            "queued" | "running" => {}
            _ => return j,
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "job {job} still {} after 10 minutes",
            j["state"]
        );
        let r = trigger
            .get(c.url("/__scheduled?cron=*/5+*+*+*+*"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

struct Download {
    bytes: Vec<u8>,
    checkpoint: Option<String>,
}

/// Fetches a ready job's file through its link, with no credential.
fn download(job: &Value) -> Download {
    let url = job["download"]["url"].as_str().expect("a ready job's link");
    let r = patient().get(url).send().unwrap();
    assert_eq!(r.status(), 200);
    let checkpoint = r
        .headers()
        .get(CHECKPOINT_HEADER)
        .map(|v| v.to_str().unwrap().to_owned());
    Download {
        bytes: r.bytes().unwrap().to_vec(),
        checkpoint,
    }
}

/// The streaming export's body for `query`.
fn stream(owner: &Session, org: &str, query: &str) -> Vec<u8> {
    let r = patient()
        .get(Client::anonymous().url(&format!("/v1/orgs/{org}/audit-events/export?{query}")))
        .bearer_auth(&owner.access_token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().unwrap().to_vec()
}

/// Verifies a jsonl export offline, as `edgeplane audit verify` does: every link recomputed
/// from the genesis, the checkpoint's signature checked with the published key, the head held
/// to it.
fn verify_offline(file: &[u8], checkpoint_b64: &str) -> i64 {
    let note = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(checkpoint_b64)
            .unwrap(),
    )
    .unwrap();
    let key = Client::anonymous()
        .get("/v1/audit/checkpoint-key")
        .expect(200)
        .json()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let origin = note.split('\n').next().unwrap();
    let cp = NoteVerifier::from_published(origin, &key)
        .unwrap()
        .open(&note)
        .unwrap();
    let mut v = ChainVerifier::new();
    v.expect(ChainHead {
        seq: cp.size as i64,
        hash: cp.head_hash_hex(),
    });
    for line in std::str::from_utf8(file).unwrap().lines() {
        v.feed(&parse_line(line).unwrap());
    }
    let report = v.finish();
    assert!(report.valid, "{report:?}");
    report.events_checked as i64
}

/// Whether the local R2 holds `key` (the stack's bucket store, read like [`d1`] reads D1).
fn r2_has(key: &str) -> bool {
    let state = std::env::var("EP_STACK_STATE").expect("EP_STACK_STATE from scripts/e2e");
    let script = r#"
import glob, sqlite3, sys
state, key = sys.argv[1], sys.argv[2]
found = 0
for f in glob.glob(state + "/v3/r2/**/*.sqlite", recursive=True):
    if f.endswith("/metadata.sqlite"):
        continue
    db = sqlite3.connect(f, timeout=30)
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = '_mf_objects'").fetchone():
        found += db.execute("SELECT COUNT(*) FROM _mf_objects WHERE key = ?", (key,)).fetchone()[0]
print(found)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &state, key])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim() != "0"
}

fn link_key() -> [u8; 32] {
    let hex = std::env::var("EP_ROOT_SECRET").expect("EP_ROOT_SECRET from scripts/e2e");
    RootSecret::from_hex(&hex)
        .unwrap()
        .derive(KeyPurpose::DownloadUrls)
}

#[test]
#[ignore = "writes the local database directly; run alone by scripts/e2e's serial phase"]
fn a_long_log_is_exported_in_parts_with_the_streams_bytes_and_verifies_offline() {
    let owner = new_user("aej-owner");
    let org = org_of(&owner, "Export jobs");
    let c = owner.client();
    // About 11.5 MiB of jsonl: two full 5 MiB parts and a shorter last one.
    long_log(&c, &org, 900, 12_800);
    // The audit filters take whole seconds: the next one, once it has passed, is after every
    // bulk event and before the jobs' own events.
    let until_ms = (now_ms() / 1000 + 1) * 1000;
    let until = rfc3339_millis(until_ms);
    while now_ms() <= until_ms + 1 {
        std::thread::sleep(Duration::from_millis(20));
    }

    let jobs = format!("/v1/orgs/{org}/audit-events/export-jobs");
    let whole = c
        .post(&jobs, &json!({"format": "jsonl"}))
        .expect(202)
        .json();
    assert_eq!(whole["state"], "queued", "{whole}");
    assert!(whole["download"].is_null());
    let narrowed = c
        .post(&jobs, &json!({"format": "csv", "until": until}))
        .expect(202)
        .json();

    let whole = run_until_done(&c, &org, whole["id"].as_str().unwrap());
    assert_eq!(whole["state"], "ready", "{whole}");
    let parts = whole["parts"].as_i64().unwrap();
    assert!(parts >= 3, "{whole}");
    let file = download(&whole);
    assert_eq!(file.bytes.len() as i64, whole["bytes"].as_i64().unwrap());
    assert!(file.bytes.len() > 2 * PART_BYTES);
    // The whole chain from the genesis up to the job's checkpoint, verified offline.
    let size = whole["chain_size"].as_i64().unwrap();
    let checked = verify_offline(&file.bytes, file.checkpoint.as_deref().unwrap());
    assert_eq!(checked, size);
    assert_eq!(whole["events"].as_i64().unwrap(), size);
    // The stream, taken later, has grown past the job's snapshot (the jobs' own events):
    // up to the job's size its bytes are the file's.
    let streamed = stream(&owner, &org, "format=jsonl");
    assert!(streamed.len() > file.bytes.len());
    assert!(
        streamed[..file.bytes.len()] == file.bytes[..],
        "the file differs from the stream"
    );
    let next = std::str::from_utf8(&streamed[file.bytes.len()..])
        .unwrap()
        .lines()
        .next()
        .unwrap();
    assert_eq!(parse_line(next).unwrap().seq, size + 1);

    // Narrowed by time: exactly the stream's bytes for the same filters.
    let narrowed = run_until_done(&c, &org, narrowed["id"].as_str().unwrap());
    assert_eq!(narrowed["state"], "ready", "{narrowed}");
    assert!(narrowed["parts"].as_i64().unwrap() >= 3, "{narrowed}");
    assert_eq!(narrowed["filters"], json!({"until": until}));
    let file = download(&narrowed);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("format", "csv")
        .append_pair("until", &until)
        .finish();
    assert!(stream(&owner, &org, &query) == file.bytes, "csv differs");

    // The link is a secret: in no log line and no audit event.
    let url = whole["download"]["url"].as_str().unwrap();
    let signature = url.rsplit("signature=").next().unwrap();
    assert!(!stack_log().contains(signature));
    let leaked = d1(
        "SELECT COUNT(*) AS n FROM audit_events WHERE chain = ? AND metadata LIKE ?",
        &[json!(org), json!(format!("%{signature}%"))],
    );
    assert_eq!(leaked[0]["n"], 0);
    let created = d1(
        "SELECT metadata FROM audit_events WHERE chain = ? AND action = ?",
        &[json!(org), json!("audit.export_job_created")],
    );
    assert_eq!(created.len(), 2);
    let finished = d1(
        "SELECT metadata FROM audit_events WHERE chain = ? AND action = ?",
        &[json!(org), json!("audit.export_job_finished")],
    );
    assert_eq!(finished.len(), 2);
}

#[test]
#[ignore = "writes the local database directly; run alone by scripts/e2e's serial phase"]
fn links_expire_bind_their_job_and_other_orgs_see_nothing() {
    let owner = new_user("aej-links");
    let org = org_of(&owner, "Export links");
    let c = owner.client();
    let jobs = format!("/v1/orgs/{org}/audit-events/export-jobs");
    let job = c
        .post(&jobs, &json!({"format": "jsonl"}))
        .expect(202)
        .json();
    let id = job["id"].as_str().unwrap().to_owned();
    let job = run_until_done(&c, &org, &id);
    assert_eq!(job["state"], "ready", "{job}");
    assert_eq!(job["parts"], 1);
    let file = download(&job);
    verify_offline(&file.bytes, file.checkpoint.as_deref().unwrap());

    let url = job["download"]["url"].as_str().unwrap().to_owned();
    let anon = Client::anonymous();
    // A changed signature, a moved expiry, none at all: refused before anything is read.
    let last = url.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &url[..url.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    anon.get(&flipped).expect_error(401, "invalid_signature");
    let expires: i64 = url
        .split("expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let moved = url.replace(
        &format!("expires={expires}"),
        &format!("expires={}", expires + 3600),
    );
    anon.get(&moved).expect_error(401, "invalid_signature");
    let bare = url.split('?').next().unwrap();
    anon.get(bare).expect_error(401, "invalid_signature");
    // A genuine signature past its expiry.
    let job_id: AuditExportJobId = id.parse().unwrap();
    let base = url.split("/v1/").next().unwrap();
    let old = export_job::sign_link(&link_key(), base, &job_id, now_ms() / 1000 - 3600);
    anon.get(&old.url).expect_error(401, "token_expired");
    // A genuine link to a job that does not exist.
    let ghost = AuditExportJobId::generate(now_ms()).unwrap();
    let ghost = export_job::sign_link(&link_key(), base, &ghost, now_ms() / 1000);
    anon.get(&ghost.url).expect_error(404, "not_found");

    // Another org's member: the job is the same 404 as a missing one, by either path.
    let other = new_user("aej-other");
    let other_org = org_of(&other, "Other");
    other
        .client()
        .get(&format!(
            "/v1/orgs/{other_org}/audit-events/export-jobs/{id}"
        ))
        .expect_error(404, "not_found");
    other
        .client()
        .get(&format!("/v1/orgs/{org}/audit-events/export-jobs/{id}"))
        .expect_error(404, "not_found");
    c.get(&format!("{jobs}/aex_nonsense"))
        .expect_error(404, "not_found");

    // Bad input is a 4xx with the error body, never a 500.
    c.post(&jobs, &json!({"format": "xml"}))
        .expect_error(400, "invalid_query");
    c.post(&jobs, &json!({"since": "yesterday"}))
        .expect_error(400, "invalid_query");
    c.post(&jobs, &json!({"limit": 5}))
        .expect_error(422, "validation_failed");
    // At most three jobs wait or run per org.
    for _ in 0..3 {
        c.post(&jobs, &json!({"format": "csv"})).expect(202);
    }
    c.post(&jobs, &json!({"format": "csv"}))
        .expect_error(409, "conflict");
}

#[test]
#[ignore = "writes the local database directly; run alone by scripts/e2e's serial phase"]
fn a_job_cut_off_mid_run_ends_failed_with_its_reason() {
    let owner = new_user("aej-cut");
    let org = org_of(&owner, "Cut off");
    let c = owner.client();
    let job = c
        .post(
            &format!("/v1/orgs/{org}/audit-events/export-jobs"),
            &json!({"format": "jsonl"}),
        )
        .expect(202)
        .json();
    let id = job["id"].as_str().unwrap();
    // As if a cron run claimed it an hour ago, started its upload and died.
    d1(
        "UPDATE audit_export_jobs SET state = 'running', started_at_ms = ?, upload_id = 'gone' \
         WHERE id = ?",
        &[json!(now_ms() - 3_600_000), json!(id)],
    );
    let done = run_until_done(&c, &org, id);
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"].as_str().unwrap().contains("cut off"),
        "{done}"
    );
    assert!(done["download"].is_null());
}

#[test]
#[ignore = "writes the local database directly; run alone by scripts/e2e's serial phase"]
fn a_file_whose_end_was_never_recorded_is_deleted_when_its_job_fails() {
    let owner = new_user("aej-orphan");
    let org = org_of(&owner, "Orphan file");
    let c = owner.client();
    let job = c
        .post(
            &format!("/v1/orgs/{org}/audit-events/export-jobs"),
            &json!({"format": "jsonl"}),
        )
        .expect(202)
        .json();
    let id = job["id"].as_str().unwrap();
    let ready = run_until_done(&c, &org, id);
    assert_eq!(ready["state"], "ready", "{ready}");
    let key = format!("audit-exports/{org}/{id}.jsonl");
    assert!(r2_has(&key), "the file {key} is in R2");
    // As if the upload completed but the run died before its `ready` row was written.
    d1(
        "UPDATE audit_export_jobs SET state = 'running', started_at_ms = ?, finished_at_ms = NULL, \
         object_key = NULL, file_expires_at_ms = NULL WHERE id = ?",
        &[json!(now_ms() - 3_600_000), json!(id)],
    );
    let done = run_until_done(&c, &org, id);
    assert_eq!(done["state"], "failed", "{done}");
    assert!(!r2_has(&key), "the orphaned file {key} was deleted");
}

/// `action`'s events in `org`'s chain, once the sequencer has placed at least one (an audit
/// read syncs the chain).
fn audited(c: &Client, org: &str, action: &str) -> Vec<Value> {
    wait_for(action, Duration::from_secs(60), || {
        c.get(&format!("/v1/orgs/{org}/audit-events?limit=1"))
            .expect(200);
        let rows = d1(
            "SELECT actor_type, actor_id, resource_id, metadata FROM audit_events \
             WHERE chain = ? AND action = ?",
            &[json!(org), json!(action)],
        );
        (!rows.is_empty()).then_some(rows)
    })
}

#[test]
#[ignore = "writes the local database directly; run alone by scripts/e2e's serial phase"]
fn downloads_are_audited_and_a_file_past_its_time_is_refused_deleted_and_expired() {
    let owner = new_user("aej-expiry");
    let org = org_of(&owner, "Export expiry");
    let c = owner.client();
    let job = c
        .post(
            &format!("/v1/orgs/{org}/audit-events/export-jobs"),
            &json!({"format": "jsonl"}),
        )
        .expect(202)
        .json();
    let id = job["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/orgs/{org}/audit-events/export-jobs/{id}");
    let ready = run_until_done(&c, &org, &id);
    assert_eq!(ready["state"], "ready", "{ready}");
    let url = ready["download"]["url"].as_str().unwrap().to_owned();
    let signature = url.rsplit("signature=").next().unwrap().to_owned();
    download(&ready);

    // The download is audited by the link's holder (the anonymous actor), naming the job and
    // never the link.
    let downloaded = audited(&c, &org, "audit.export_downloaded");
    assert_eq!(downloaded.len(), 1, "{downloaded:?}");
    let d = &downloaded[0];
    assert_eq!(d["resource_id"], id.as_str());
    assert_eq!(
        (d["actor_type"].as_str(), d["actor_id"].as_str()),
        (Some("system"), Some("anonymous"))
    );
    let meta = d["metadata"].as_str().unwrap();
    assert!(meta.contains(&id), "{meta}");
    assert!(
        !meta.contains(&signature) && !meta.contains("signature"),
        "{meta}"
    );

    // Past the file's time, before any cron run: the link is refused and no new one is signed.
    let key = format!("audit-exports/{org}/{id}.jsonl");
    assert!(r2_has(&key));
    d1(
        "UPDATE audit_export_jobs SET file_expires_at_ms = ? WHERE id = ?",
        &[json!(now_ms() - 1_000), json!(id)],
    );
    Client::anonymous().get(&url).expect_error(404, "not_found");
    let past = c.get(&path).expect(200).json();
    assert_eq!(past["state"], "ready", "{past}");
    assert!(past["download"].is_null(), "{past}");

    // The cron deletes the file and records the move with its event.
    let expired = wait_for("the job expired", Duration::from_secs(120), || {
        e2e::run_cron();
        let j = c.get(&path).expect(200).json();
        (j["state"] == "expired").then_some(j)
    });
    assert!(expired["download"].is_null(), "{expired}");
    assert!(!r2_has(&key), "the file {key} was deleted");
    let events = audited(&c, &org, "audit.export_job_expired");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["resource_id"], id.as_str());
    assert_eq!(events[0]["actor_type"], "system");
}

#[test]
#[ignore = "writes the local database directly; run alone by scripts/e2e's serial phase"]
fn a_queued_job_whose_row_cannot_be_read_is_failed_not_skipped_forever() {
    let owner = new_user("aej-corrupt");
    let org = org_of(&owner, "Corrupt row");
    let c = owner.client();
    let job = c
        .post(
            &format!("/v1/orgs/{org}/audit-events/export-jobs"),
            &json!({"format": "jsonl"}),
        )
        .expect(202)
        .json();
    let id = job["id"].as_str().unwrap().to_owned();
    // Filters that no longer parse: the cron can never run this job.
    d1(
        "UPDATE audit_export_jobs SET filters = 'not json' WHERE id = ?",
        &[json!(id)],
    );
    let failed = wait_for(
        "the unreadable job failed",
        Duration::from_secs(120),
        || {
            e2e::run_cron();
            let rows = d1(
                "SELECT state, error FROM audit_export_jobs WHERE id = ?",
                &[json!(id)],
            );
            (rows[0]["state"] == "failed").then(|| rows[0].clone())
        },
    );
    assert!(
        failed["error"].as_str().unwrap().contains("cannot be read"),
        "{failed}"
    );
    let finished = audited(&c, &org, "audit.export_job_finished");
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0]["resource_id"], id.as_str());
    // The cron recorded its run before the jobs, then added their outcome to that record.
    let recorded = d1(
        "SELECT COUNT(*) AS n FROM cron_runs WHERE json_extract(tasks, ?) = 'failed'",
        &[json!(format!("$.audit_export_jobs.jobs.{id}"))],
    );
    assert_eq!(recorded[0]["n"], 1, "{recorded:?}");
}
