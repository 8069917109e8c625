//! The `edgeplane` CLI, run as a process against the local stack: device-code login approved
//! through the JSON API, whoami, refresh with rotation, logout revoking the token, API keys,
//! the audit export verified locally (and refused when tampered with or cut short), server
//! errors with their code and exit status, `--json` output, models push and pull; devices
//! enrolled with a minted bootstrap token, grouped and revoked; invitations; code review set up
//! with secrets on stdin and followed to a finished review; `simulate round` then `rounds watch`
//! printing the published version.
//!
//! `scripts/e2e` builds the binary and passes its path in `EDGEPLANE_BIN`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use e2e::access::add_member;
use e2e::federation::{safetensors_f32, sha256_hex, tensors, unique};
use e2e::identity::{approve_device, cli_token, create_org, new_user, Session};
use e2e::{stack, Client};
use serde_json::Value;

fn binary() -> PathBuf {
    let p = std::env::var_os("EDGEPLANE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/edgeplane"));
    assert!(
        p.exists(),
        "the edgeplane binary is not at {}: run through scripts/e2e, which builds it",
        p.display()
    );
    p
}

/// One CLI user: a config dir of their own, and optionally a fixed token and org.
struct Cli {
    dir: PathBuf,
    token: Option<String>,
    org: Option<String>,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Cli {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("edgeplane-cli"));
        std::fs::create_dir_all(&dir).unwrap();
        Cli {
            dir,
            token: None,
            org: None,
        }
    }

    /// Acting with `token` (EDGEPLANE_TOKEN) in `org`.
    fn with_token(token: &str, org: &str) -> Self {
        let mut c = Cli::new();
        c.token = Some(token.to_owned());
        c.org = Some(org.to_owned());
        c
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        c.args(args)
            .env("EDGEPLANE_CONFIG_DIR", &self.dir)
            .env("EDGEPLANE_URL", &stack().base_url)
            .env_remove("EDGEPLANE_TOKEN")
            .env_remove("EDGEPLANE_ORG")
            .env_remove("EDGEPLANE_PROFILE")
            .stdin(Stdio::null());
        if let Some(t) = &self.token {
            c.env("EDGEPLANE_TOKEN", t);
        }
        if let Some(o) = &self.org {
            c.env("EDGEPLANE_ORG", o);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        self.command(args).output().unwrap().into()
    }

    /// Runs with `input` piped on stdin (how a secret is handed over, never in argv).
    fn run_with_stdin(&self, args: &[&str], input: &str) -> Run {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap().into()
    }

    fn credentials(&self) -> Value {
        let text = std::fs::read_to_string(self.dir.join("credentials-default.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

/// A new person owning a new org, and a CLI token of theirs for it.
fn owner_with_org(tag: &str) -> (Session, String, Cli) {
    let s = new_user(tag);
    let org = create_org(&s, "CLI Org");
    let org_id = org["id"].as_str().unwrap().to_owned();
    let t = cli_token(&s, &org_id, None);
    (s, org_id.clone(), Cli::with_token(&t.access_token, &org_id))
}

#[test]
fn login_with_the_device_code_approved_through_the_api_then_whoami_refresh_and_logout() {
    let owner = new_user("cli-login");
    let org = create_org(&owner, "Login Org");
    let org_id = org["id"].as_str().unwrap().to_owned();
    let cli = Cli::new();

    let mut child = cli
        .command(&["login", "--no-browser"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut printed = String::new();
    let user_code = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "login printed no user code: {printed}"
        );
        printed.push_str(&line);
        if let Some(code) = line.trim().strip_prefix("user code: ") {
            break code.to_owned();
        }
    };
    assert!(printed.contains("/device"), "{printed}");
    // The signed-in owner approves the code for the org (what the console's /device page does).
    approve_device(&owner, &user_code, &org_id).expect(200);
    let out = child.wait_with_output().unwrap();
    let mut run: Run = out.into();
    // The rest of what login said after the user code (the stream was taken above).
    std::io::Read::read_to_string(&mut stderr, &mut run.stderr).unwrap();
    assert_eq!(run.code, 0, "stdout {} stderr {}", run.stdout, run.stderr);
    assert!(run.stdout.contains("Signed in as"), "{}", run.stdout);

    // The refresh token is kept in a file only its owner can read (no keyring on Linux).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cli.dir.join("credentials-default.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let first = cli.credentials();
    assert!(first["refresh_token"]
        .as_str()
        .unwrap()
        .starts_with("epcr_"));

    let who = cli.run(&["whoami", "--json"]).ok().json();
    assert_eq!(who["user"]["email"], owner.email.as_str());
    assert_eq!(who["org_id"], org_id.as_str());
    assert_eq!(who["role"], "owner");
    assert_eq!(who["principal"]["kind"], "cli_token");
    assert!(who["scopes"]
        .as_array()
        .unwrap()
        .contains(&Value::from("org:owner")));

    // An access token about to expire is refreshed transparently, and the refresh token rotates.
    let mut stale = first.clone();
    stale["expires_at"] = Value::from(0);
    std::fs::write(cli.dir.join("credentials-default.json"), stale.to_string()).unwrap();
    cli.run(&["whoami", "--json"]).ok();
    let second = cli.credentials();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);

    // logout revokes the token at the server.
    let access = second["access_token"].as_str().unwrap().to_owned();
    Client::anonymous()
        .with_bearer(&access)
        .get("/v1/me")
        .expect(200);
    let out = cli.run(&["logout", "--json"]).ok().json();
    assert_eq!(out["revoked"], true);
    Client::anonymous()
        .with_bearer(&access)
        .get("/v1/me")
        .expect_error(401, "invalid_token");
    // Signed out: whoami is an authentication failure (exit 4).
    let r = cli.run(&["whoami"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
}

#[test]
fn api_keys_are_created_rotated_and_revoked() {
    let (_s, org_id, cli) = owner_with_org("cli-keys");
    let created = cli
        .run(&[
            "keys",
            "create",
            "--name",
            "ci",
            "--scope",
            "audit:read",
            "--scope",
            "org:read",
            "--json",
        ])
        .ok()
        .json();
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["api_key"]["id"].as_str().unwrap().to_owned();
    let audit = format!("/v1/orgs/{org_id}/audit-events");
    Client::anonymous()
        .with_bearer(&key)
        .get(&audit)
        .expect(200);

    // Without --json the secret alone goes to stdout, so a script can capture it.
    let plain = cli
        .run(&["keys", "create", "--name", "plain", "--scope", "org:read"])
        .ok();
    assert_eq!(plain.stdout.trim().lines().count(), 1);
    assert!(plain.stderr.contains("shown only once"), "{}", plain.stderr);

    let rotated = cli
        .run(&[
            "keys",
            "rotate",
            &key_id,
            "--overlap-seconds",
            "0",
            "--json",
        ])
        .ok()
        .json();
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    let new_id = rotated["api_key"]["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, key_id);
    assert_eq!(rotated["api_key"]["rotated_from"], key_id.as_str());
    Client::anonymous()
        .with_bearer(&new_key)
        .get(&audit)
        .expect(200);

    let revoked = cli.run(&["keys", "revoke", &new_id, "--json"]).ok().json();
    assert_eq!(revoked["revoked"], new_id.as_str());
    Client::anonymous()
        .with_bearer(&new_key)
        .get(&audit)
        .expect_error(401, "invalid_token");

    // The listing no longer shows the revoked key; the first one's replacement is gone with it.
    let list = cli.run(&["keys", "list", "--json"]).ok().json();
    let listed = |id: &str| {
        list["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id && k["status"] == "active")
    };
    assert!(!listed(&new_id), "{list}");
    // A table for people.
    let table = cli.run(&["keys", "list"]).ok();
    assert!(table.stdout.contains("NAME"), "{}", table.stdout);
}

#[test]
fn the_audit_export_verifies_locally_and_a_tampered_one_does_not() {
    let (_s, org_id, cli) = owner_with_org("cli-audit");
    for n in 0..3 {
        cli.run(&[
            "keys",
            "create",
            "--name",
            &format!("k{n}"),
            "--scope",
            "org:read",
        ])
        .ok();
    }
    let file = cli.dir.join("audit.jsonl");
    let f = file.to_str().unwrap();
    let summary = cli.run(&["audit", "export", "-o", f, "--json"]).ok().json();
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(summary["events"], lines.len());
    // The org's creation, the CLI token, three keys: at least five events, in chain order.
    assert!(lines.len() >= 5, "{text}");
    for (n, line) in lines.iter().enumerate() {
        let ev: Value = serde_json::from_str(line).unwrap();
        assert_eq!(ev["seq"], n as i64 + 1);
        assert_eq!(ev["chain"], org_id.as_str());
        assert!(ev["metadata"].is_string() && ev["hash"].as_str().unwrap().len() == 64);
    }
    assert!(lines
        .iter()
        .any(|l| l.contains("\"action\":\"api_key.created\"")));
    let note = std::fs::read_to_string(format!("{f}.checkpoint")).unwrap();
    assert!(note.contains(&format!("/audit/{org_id}\n")), "{note}");

    let ok = cli.run(&["audit", "verify", f, "--json"]).ok().json();
    assert_eq!(ok["valid"], true);
    assert_eq!(ok["events_checked"], lines.len());
    assert_eq!(ok["checkpoint"]["size"], lines.len());
    assert_eq!(ok["checkpoints_checked"], 1);

    // One edited event: the chain breaks there (exit 5, verification failed).
    let tampered = cli.dir.join("tampered.jsonl");
    let t = tampered.to_str().unwrap();
    let edited: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(n, l)| {
            if n == 2 {
                l.replacen("\"actor_id\":\"", "\"actor_id\":\"x", 1)
            } else {
                (*l).to_owned()
            }
        })
        .collect();
    std::fs::write(&tampered, edited.join("\n") + "\n").unwrap();
    std::fs::write(format!("{t}.checkpoint"), &note).unwrap();
    let bad = cli.run(&["audit", "verify", t, "--json"]);
    assert_eq!(bad.code, 5, "{} {}", bad.stdout, bad.stderr);
    let report = bad.json();
    assert_eq!(report["valid"], false);
    assert_eq!(report["first_broken_seq"], 3);
    let plain = cli.run(&["audit", "verify", t]);
    assert_eq!(plain.code, 5);
    assert!(
        plain.stderr.contains("does not verify at seq 3"),
        "{}",
        plain.stderr
    );

    // The newest event cut off: the links still hold, but the signed checkpoint does not.
    let cut = cli.dir.join("cut.jsonl");
    let c = cut.to_str().unwrap();
    std::fs::write(&cut, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    std::fs::write(format!("{c}.checkpoint"), &note).unwrap();
    let r = cli.run(&["audit", "verify", c, "--json"]);
    assert_eq!(r.code, 5, "{}", r.stdout);
    assert!(r.json()["reason"]
        .as_str()
        .unwrap()
        .contains("deleted from its end"));

    // A forged checkpoint (its size changed) does not verify under the deployment's key.
    let forged = note.replacen(&format!("\n{}\n", lines.len()), "\n1\n", 1);
    std::fs::write(format!("{c}.checkpoint"), &forged).unwrap();
    let r = cli.run(&["audit", "verify", c]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("signature"), "{}", r.stderr);

    // Without a file: a fresh export streamed from the server and checked as it arrives.
    let live = cli.run(&["audit", "verify", "--json"]).ok().json();
    assert_eq!(live["valid"], true);

    // CSV for spreadsheets: a header, then one row per event.
    let csv = cli.run(&["audit", "export", "--format", "csv"]).ok();
    assert!(
        csv.stdout.starts_with("seq,id,chain,org_id,"),
        "{}",
        csv.stdout
    );
    assert!(csv.stdout.lines().count() > lines.len());

    // `audit list` as JSON.
    let listed = cli
        .run(&["audit", "list", "--action", "api_key.created", "--json"])
        .ok()
        .json();
    assert_eq!(listed["events"].as_array().unwrap().len(), 3);
}

#[test]
fn server_refusals_print_the_code_and_request_id_and_exit_1() {
    let (s, org_id, cli) = owner_with_org("cli-errors");
    // 404: a key that does not exist.
    let r = cli.run(&["keys", "revoke", "key_doesnotexist"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = r.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("not_found") && line.contains("HTTP 404"),
        "{line}"
    );
    assert!(line.contains("request_id req_"), "{line}");
    // The same as JSON on stderr.
    let r = cli.run(&["keys", "revoke", "key_doesnotexist", "--json"]);
    assert_eq!(r.code, 1);
    let e: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(e["error"]["code"], "not_found");
    assert_eq!(e["error"]["status"], 404);
    assert!(e["error"]["request_id"]
        .as_str()
        .unwrap()
        .starts_with("req_"));

    // 403: a member may not read the audit log.
    let member = new_user("cli-member");
    add_member(&s, &org_id, &member, "member");
    let t = cli_token(&member, &org_id, None);
    let as_member = Cli::with_token(&t.access_token, &org_id);
    let r = as_member.run(&["audit", "export"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("insufficient_scope") && r.stderr.contains("HTTP 403"),
        "{}",
        r.stderr
    );
    let r = as_member.run(&[
        "keys", "create", "--name", "x", "--scope", "org:read", "--json",
    ]);
    assert_eq!(r.code, 1);
    let e: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(e["error"]["code"], "insufficient_scope");

    // Usage (2), network (3), authentication (4).
    assert_eq!(cli.run(&["keys", "frobnicate"]).code, 2);
    let mut no_org = Cli::new();
    no_org.token = cli.token.clone();
    assert_eq!(no_org.run(&["keys", "list"]).code, 2);
    let r = cli.run(&["--url", "http://127.0.0.1:9", "keys", "list"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let bad = Cli::with_token("ep_notavalidtoken", &org_id);
    assert_eq!(bad.run(&["keys", "list"]).code, 4);
}

#[test]
fn json_output_parses_for_the_read_commands() {
    let (s, org_id, cli) = owner_with_org("cli-json");
    let orgs = cli.run(&["orgs", "--json"]).ok().json();
    assert_eq!(orgs["orgs"][0]["org"]["id"], org_id.as_str());
    let members = cli.run(&["members", "--json"]).ok().json();
    assert_eq!(members["members"][0]["email"], s.email.as_str());
    // Sessions are managed with a person's own session token, not a CLI token (403)...
    let r = cli.run(&["sessions", "list"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("HTTP 403"), "{}", r.stderr);
    // ...which lists the CLI token among them.
    let person = Cli::with_token(&s.access_token, &org_id);
    let sessions = person.run(&["sessions", "list", "--json"]).ok().json();
    assert!(sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["kind"] == "cli"));
    cli.run(&["models", "list", "--json"]).ok().json();
    cli.run(&["rounds", "list", "--json"]).ok().json();
    let who = cli.run(&["whoami", "--json"]).ok().json();
    assert_eq!(who["role"], "owner");
    // Completions are generated offline.
    let bash = cli.run(&["completions", "bash"]).ok();
    assert!(bash.stdout.contains("edgeplane"));
}

#[test]
fn models_push_then_pull_byte_identical() {
    let (_s, _org_id, cli) = owner_with_org("cli-models");
    let created = cli
        .run(&["models", "create", &unique("cli-model"), "--json"])
        .ok()
        .json();
    let model = created["model"]["id"].as_str().unwrap().to_owned();
    let spec = tensors(&[("dense.weight", vec![8, 16]), ("dense.bias", vec![16])]);
    let values: Vec<f64> = (0..(8 * 16 + 16)).map(|i| (i as f64) / 7.0 - 3.0).collect();
    let bytes = safetensors_f32(&spec, &values, &[1, 0]);
    let file = cli.dir.join("model.safetensors");
    std::fs::write(&file, &bytes).unwrap();

    let pushed = cli
        .run(&["models", "push", &model, file.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(pushed["version"]["version"], 1);
    assert_eq!(pushed["version"]["sha256"], sha256_hex(&bytes).as_str());

    let pulled = cli.dir.join("pulled.safetensors");
    let out = cli
        .run(&[
            "models",
            "pull",
            &model,
            "1",
            "-o",
            pulled.to_str().unwrap(),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(out["sha256"], sha256_hex(&bytes).as_str());
    assert_eq!(std::fs::read(&pulled).unwrap(), bytes);
    // Not on a terminal: no progress bar and no colour, only the result on stdout.
    let again = cli.dir.join("again.safetensors");
    let plain = cli
        .run(&["models", "pull", &model, "1", "-o", again.to_str().unwrap()])
        .ok();
    assert!(plain.stderr.is_empty(), "{}", plain.stderr);
    assert!(!plain.stdout.contains('\u{1b}'), "{:?}", plain.stdout);
    assert!(plain.stdout.starts_with("Downloaded"), "{}", plain.stdout);
    assert_eq!(std::fs::read(&again).unwrap(), bytes);

    let versions = cli
        .run(&["models", "versions", &model, "--json"])
        .ok()
        .json();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);
    let approved = cli
        .run(&["models", "approve", &model, "1", "--json"])
        .ok()
        .json();
    assert_eq!(approved["version"]["status"], "approved");
}

/// Exchanges a bootstrap token as a device would; the device's credentials.
fn enrol(token: &str, org_id: &str, identifier: &str) -> Value {
    Client::anonymous()
        .with_bearer(token)
        .post(
            "/api/v1/device-auth/bootstrap",
            &serde_json::json!({"org_id": org_id, "device_identifier": identifier}),
        )
        .expect(201)
        .json()
}

/// The ids of the objects in the array at `key` of a listing.
fn ids_in(listing: &Value, key: &str) -> Vec<String> {
    listing[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_owned())
        .collect()
}

#[track_caller]
fn assert_refused(r: &Run, status: u16, code: &str) {
    assert_eq!(r.code, 1, "stdout {} stderr {}", r.stdout, r.stderr);
    let line = r.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains(code) && line.contains(&format!("HTTP {status}")),
        "{line}"
    );
    assert!(line.contains("request_id req_"), "{line}");
}

#[test]
fn devices_enrol_with_a_bootstrap_token_then_are_grouped_listed_and_revoked() {
    let (s, org_id, cli) = owner_with_org("cli-devices");
    // Without --json the token alone goes to stdout, once.
    let minted = cli
        .run(&["devices", "bootstrap-token", "--identifier", "phone-1"])
        .ok();
    assert_eq!(minted.stdout.trim().lines().count(), 1, "{}", minted.stdout);
    assert!(
        minted.stderr.contains("shown only once"),
        "{}",
        minted.stderr
    );
    let one = enrol(minted.stdout.trim(), &org_id, "phone-1");
    let one_id = one["device_id"].as_str().unwrap().to_owned();
    // Single use: the same token does not enrol twice.
    Client::anonymous()
        .with_bearer(minted.stdout.trim())
        .post(
            "/api/v1/device-auth/bootstrap",
            &serde_json::json!({"org_id": org_id, "device_identifier": "phone-1"}),
        )
        .expect_error(401, "invalid_token");

    let minted = cli
        .run(&[
            "devices",
            "bootstrap-token",
            "--identifier",
            "phone-2",
            "--ttl-seconds",
            "60",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(minted["device_identifier"], "phone-2");
    let two = enrol(minted["token"].as_str().unwrap(), &org_id, "phone-2");
    let two_id = two["device_id"].as_str().unwrap().to_owned();

    let listed = cli.run(&["devices", "list", "--json"]).ok().json();
    let ids = ids_in(&listed, "devices");
    assert!(ids.contains(&one_id) && ids.contains(&two_id), "{listed}");
    let table = cli.run(&["devices", "list"]).ok();
    assert!(
        table.stdout.contains("IDENTIFIER") && table.stdout.contains("phone-2"),
        "{}",
        table.stdout
    );
    let shown = cli.run(&["devices", "show", &one_id, "--json"]).ok().json();
    assert_eq!(shown["device"]["device_identifier"], "phone-1");

    // An explicit group, then one more member; a tag group selects by tags.
    let group = cli
        .run(&["groups", "create", "pilots", "--device", &one_id, "--json"])
        .ok()
        .json();
    assert_eq!(group["device_group"]["selector"], "explicit");
    assert_eq!(group["device_group"]["members"], 1);
    let group_id = group["device_group"]["id"].as_str().unwrap().to_owned();
    let grown = cli
        .run(&[
            "groups",
            "add-members",
            &group_id,
            "--device",
            &two_id,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(grown["device_group"]["members"], 2);
    let tagged = cli
        .run(&["groups", "create", "canary", "--tag", "beta", "--json"])
        .ok()
        .json();
    assert_eq!(tagged["device_group"]["selector"], "tags");
    let groups = cli.run(&["groups", "list", "--json"]).ok().json();
    assert_eq!(groups["device_groups"].as_array().unwrap().len(), 2);

    // Revoked: the device's token is refused on its next request, and it leaves the group.
    let device = Client::anonymous().with_bearer(one["access_token"].as_str().unwrap());
    device.get("/api/v1/federation/offers").expect(200);
    let revoked = cli
        .run(&["devices", "revoke", &one_id, "--reason", "lost", "--json"])
        .ok()
        .json();
    assert!(revoked["device"]["revoked_at"].is_string(), "{revoked}");
    assert_eq!(revoked["device"]["revoked_reason"], "lost");
    device
        .get("/api/v1/federation/offers")
        .expect_error(401, "invalid_token");
    let shown = cli
        .run(&["groups", "show", &group_id, "--json"])
        .ok()
        .json();
    assert_eq!(shown["device_group"]["members"], 1);

    // Refusals: a second revoke (409), a device that does not exist (404), and a member, who
    // may read devices but not mint tokens (403, and no token on stdout).
    assert_refused(&cli.run(&["devices", "revoke", &one_id]), 409, "conflict");
    assert_refused(
        &cli.run(&["devices", "show", "dev_doesnotexist"]),
        404,
        "not_found",
    );
    let member = new_user("cli-devices-member");
    add_member(&s, &org_id, &member, "member");
    let t = cli_token(&member, &org_id, None);
    let as_member = Cli::with_token(&t.access_token, &org_id);
    as_member.run(&["devices", "list", "--json"]).ok();
    let r = as_member.run(&["devices", "bootstrap-token", "--identifier", "x"]);
    assert_refused(&r, 403, "insufficient_scope");
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

#[test]
fn invitations_are_created_accepted_listed_and_revoked() {
    let (_s, _org_id, cli) = owner_with_org("cli-invite");
    let invitee = new_user("cli-invitee");
    // The link goes to stdout alone, once.
    let created = cli
        .run(&["invitations", "create", &invitee.email, "--role", "admin"])
        .ok();
    assert_eq!(
        created.stdout.trim().lines().count(),
        1,
        "{}",
        created.stdout
    );
    assert!(created.stderr.contains("only once"), "{}", created.stderr);
    let link = created.stdout.trim();
    let token = link.rsplit("token=").next().unwrap();
    // The printed link works: the invitee accepts it and becomes an admin.
    invitee
        .client()
        .post(
            "/v1/invitations/accept",
            &serde_json::json!({ "token": token }),
        )
        .expect(200);
    let members = cli.run(&["members", "--json"]).ok().json();
    assert!(members["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["email"] == invitee.email.as_str() && m["role"] == "admin"));

    let pending = cli
        .run(&[
            "invitations",
            "create",
            "someone-else@example.com",
            "--role",
            "member",
            "--json",
        ])
        .ok()
        .json();
    let id = pending["invitation"]["id"].as_str().unwrap().to_owned();
    assert_eq!(pending["invitation"]["status"], "pending");
    let listed = cli.run(&["invitations", "list", "--json"]).ok().json();
    assert_eq!(ids_in(&listed, "invitations"), vec![id.clone()], "{listed}");
    let table = cli.run(&["invitations", "list"]).ok();
    assert!(table.stdout.contains("someone-else@example.com"));

    let revoked = cli
        .run(&["invitations", "revoke", &id, "--json"])
        .ok()
        .json();
    assert_eq!(revoked["revoked"], id.as_str());
    let listed = cli.run(&["invitations", "list", "--json"]).ok().json();
    assert!(
        listed["invitations"].as_array().unwrap().is_empty(),
        "{listed}"
    );
    let all = cli
        .run(&["invitations", "list", "--all", "--json"])
        .ok()
        .json();
    assert!(all["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["id"] == id.as_str() && i["status"] == "revoked"));
    assert_refused(
        &cli.run(&["invitations", "revoke", "inv_doesnotexist"]),
        404,
        "not_found",
    );
}

#[test]
fn code_review_is_configured_and_followed_from_the_cli() {
    use e2e::review::{platform_base, provider_base, random_hex, sample_files, sample_findings};
    use e2e::review::{Pr, Setup};
    use e2e::{fake_llm, fake_platforms, wait_for};

    let (_s, _org_id, cli) = owner_with_org("cli-review");
    let platforms = fake_platforms!();
    let llm = fake_llm!();
    let api_key = format!("sk-test-{}", random_hex(32));
    llm.admin(
        reqwest::Method::PUT,
        "/__admin/config",
        Some(&serde_json::json!({"api_key": api_key, "reply": sample_findings()})),
    );

    // The provider is created with a wrong key, then given the right one: the review below
    // only succeeds if `set-key` took effect. Keys go in on stdin and are never printed.
    let base_url = provider_base(&llm, "anthropic");
    let created = cli.run_with_stdin(
        &[
            "providers",
            "create",
            "--name",
            "claude",
            "--kind",
            "anthropic",
            "--model",
            "review-model-1",
            "--base-url",
            &base_url,
            "--json",
        ],
        "sk-test-wrong\n",
    );
    let created = created.ok();
    assert!(
        !created.stdout.contains("sk-test-wrong"),
        "{}",
        created.stdout
    );
    let provider = created.json()["llm_provider"].clone();
    assert_eq!(provider["has_api_key"], true);
    let provider_id = provider["id"].as_str().unwrap().to_owned();
    let set = cli
        .run_with_stdin(&["providers", "set-key", &provider_id, "--json"], &api_key)
        .ok();
    assert!(!set.stdout.contains(&api_key) && !set.stderr.contains(&api_key));
    // No key on stdin: a usage error, and nothing is sent.
    assert_eq!(
        cli.run_with_stdin(&["providers", "set-key", &provider_id], "\n")
            .code,
        2
    );
    let providers = cli.run(&["providers", "list", "--json"]).ok().json();
    assert_eq!(providers["llm_providers"][0]["id"], provider_id.as_str());

    let token = format!("tok_{}", random_hex(24));
    let api_base = platform_base(&platforms, "github");
    let integration = cli
        .run_with_stdin(
            &[
                "integrations",
                "create",
                "--name",
                "acme",
                "--platform",
                "github",
                "--api-base-url",
                &api_base,
                "--provider",
                &provider_id,
                "--json",
            ],
            &format!("{token}\n"),
        )
        .ok()
        .json();
    assert_eq!(integration["integration"]["has_access_token"], true);
    let integration_id = integration["integration"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let webhook_secret = integration["webhook_secret"].as_str().unwrap().to_owned();
    assert!(webhook_secret.len() >= 64, "{webhook_secret}");
    let mut setup = Setup {
        platform: "github".into(),
        platforms,
        llm,
        integration_id: integration_id.clone(),
        provider_id: provider_id.clone(),
        webhook_secret,
        signing_token: None,
        token,
        api_key,
    };

    // A pull request opened on the platform, signed with the secret the CLI generated.
    let pr = Pr::new("acme/app", 7);
    setup.register(&pr, &sample_files(), None, "open");
    let review_id = setup.open_and_queue(&pr);
    let review = wait_for(
        "the review to finish",
        std::time::Duration::from_secs(120),
        || {
            let r = cli.run(&["reviews", "show", &review_id, "--json"]);
            if r.code != 0 {
                return None; // recorded by the inbox just after the webhook's answer
            }
            let v = r.json()["review"].clone();
            matches!(v["status"].as_str(), Some("done" | "failed")).then_some(v)
        },
    );
    assert_eq!(review["status"], "done", "{review}");
    assert!(
        review["counts"]["findings"].as_i64().unwrap() > 0,
        "{review}"
    );

    let listed = cli
        .run(&[
            "reviews",
            "list",
            "--integration",
            &integration_id,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(listed["reviews"][0]["id"], review_id.as_str());
    let table = cli.run(&["reviews", "list"]).ok();
    assert!(table.stdout.contains("acme/app"), "{}", table.stdout);
    let deliveries = cli
        .run(&["integrations", "deliveries", &integration_id, "--json"])
        .ok()
        .json();
    assert!(deliveries["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["review_id"] == review_id.as_str() && d["outcome"] == "queued"));

    // Requeue is accepted for a finished review and audited.
    let requeued = cli
        .run(&["reviews", "requeue", &review_id, "--json"])
        .ok()
        .json();
    assert_eq!(requeued["review"]["id"], review_id.as_str());
    let events = cli
        .run(&["audit", "list", "--action", "review.requeued", "--json"])
        .ok()
        .json();
    assert_eq!(events["events"][0]["resource"]["id"], review_id.as_str());

    // A rotated secret: the new one (printed alone on stdout) verifies, the old one no longer
    // does without an overlap.
    let rotated = cli
        .run(&[
            "integrations",
            "rotate-secret",
            &integration_id,
            "--overlap-seconds",
            "0",
        ])
        .ok();
    assert_eq!(
        rotated.stdout.trim().lines().count(),
        1,
        "{}",
        rotated.stdout
    );
    let old = std::mem::replace(&mut setup.webhook_secret, rotated.stdout.trim().to_owned());
    assert_ne!(old, setup.webhook_secret);
    let pr2 = Pr::new("acme/app", 8);
    setup.register(&pr2, &sample_files(), None, "open");
    setup.open_and_queue(&pr2);
    setup.webhook_secret = old;
    setup.open(&Pr::new("acme/app", 9)).expect(401);

    let shown = cli
        .run(&["integrations", "show", &integration_id, "--json"])
        .ok()
        .json();
    assert!(
        shown["integration"]["secret_rotated_at"].is_string(),
        "{shown}"
    );
    let table = cli.run(&["integrations", "list"]).ok();
    assert!(table.stdout.contains("acme"), "{}", table.stdout);
    assert_refused(
        &cli.run(&["reviews", "show", "rev_doesnotexist"]),
        404,
        "not_found",
    );
}

/// A model with a two-tensor base version, and a round on it wanting `devices` updates.
fn model_and_round(cli: &Cli, devices: u32) -> (String, String) {
    let model = model_with_version(cli);
    let round = new_round(cli, &model, devices, None);
    (model, round)
}

/// A model whose version 1 is a two-tensor base pushed with the CLI.
fn model_with_version(cli: &Cli) -> String {
    let model = cli
        .run(&["models", "create", &unique("sim-model"), "--json"])
        .ok()
        .json()["model"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let spec = tensors(&[("dense.weight", vec![4, 8]), ("dense.bias", vec![8])]);
    let values: Vec<f64> = (0..40).map(|i| (i as f64) / 10.0 - 2.0).collect();
    let file = cli.dir.join(format!("{model}.safetensors"));
    std::fs::write(&file, safetensors_f32(&spec, &values, &[0, 1])).unwrap();
    cli.run(&["models", "push", &model, file.to_str().unwrap()])
        .ok();
    model
}

/// A round on version 1 of `model` wanting `devices` updates, aimed at `group` if given.
fn new_round(cli: &Cli, model: &str, devices: u32, group: Option<&str>) -> String {
    let n = devices.to_string();
    let mut args = vec![
        "rounds",
        "create",
        "--model",
        model,
        "--base-version",
        "1",
        "--target",
        n.as_str(),
        "--min",
        n.as_str(),
        "--max",
        n.as_str(),
        "--json",
    ];
    if let Some(g) = group {
        args.extend(["--device-group", g]);
    }
    cli.run(&args).ok().json()["round"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn simulate_round_then_watch_prints_the_published_version() {
    let (_s, _org_id, cli) = owner_with_org("cli-simulate");
    let (model, round) = model_and_round(&cli, 3);

    let sim = cli
        .run(&[
            "simulate",
            "round",
            &round,
            "--devices",
            "3",
            "--seed",
            "7",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(sim["accepted"], 3, "{sim}");
    let devices = sim["devices"].as_array().unwrap();
    let shas: Vec<&str> = devices
        .iter()
        .map(|d| d["sha256"].as_str().unwrap())
        .collect();
    assert_eq!(shas.len(), 3);
    assert!(shas[0] != shas[1] && shas[1] != shas[2] && shas[0] != shas[2]);
    let samples: i64 = devices
        .iter()
        .map(|d| d["sample_count"].as_i64().unwrap())
        .sum();
    // Every simulated device is a real enrolled device of the org.
    let enrolled = ids_in(
        &cli.run(&["devices", "list", "--json"]).ok().json(),
        "devices",
    );
    for d in devices {
        assert!(enrolled.iter().any(|id| d["device_id"] == id.as_str()));
    }

    let watched = cli
        .run(&["rounds", "watch", &round, "--interval", "1"])
        .ok();
    let version_id = watched.stdout.trim().to_owned();
    assert!(version_id.starts_with("mv"), "{version_id}");
    let shown = cli.run(&["rounds", "show", &round, "--json"]).ok().json();
    assert_eq!(shown["round"]["state"], "published");
    assert_eq!(shown["round"]["published_version_id"], version_id.as_str());
    assert_eq!(shown["round"]["progress"]["accepted"], 3);
    assert_eq!(shown["round"]["progress"]["total_samples"], samples);
    // The round's metrics: three accepted updates, each with the loss simulate reported.
    let metrics = cli
        .run(&["rounds", "metrics", &round, "--json"])
        .ok()
        .json();
    assert_eq!(metrics["funnel"]["accepted"], 3, "{metrics}");
    assert_eq!(metrics["metrics"]["loss"]["updates"], 3, "{metrics}");
    let losses: Vec<f64> = devices
        .iter()
        .map(|d| d["loss"].as_f64().unwrap())
        .collect();
    let lowest = losses.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!((metrics["metrics"]["loss"]["min"].as_f64().unwrap() - lowest).abs() < 1e-9);
    let table = cli.run(&["rounds", "metrics", &round]).ok();
    assert!(
        table.stdout.contains("METRIC") && table.stdout.contains("loss"),
        "{}",
        table.stdout
    );
    let versions = cli
        .run(&["models", "versions", &model, "--json"])
        .ok()
        .json();
    assert!(versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["id"] == version_id.as_str() && v["round_id"] == round.as_str()));

    // The same seed gives byte-identical updates (other devices, another round). This round
    // is aimed at an empty explicit group: simulate puts its devices in it, or they could not join.
    let group = cli
        .run(&["groups", "create", "simulated", "--json"])
        .ok()
        .json()["device_group"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = new_round(&cli, &model, 2, Some(&group));
    let sim2 = cli
        .run(&[
            "simulate",
            "round",
            &again,
            "--devices",
            "2",
            "--seed",
            "7",
            "--json",
        ])
        .ok()
        .json();
    let shas2: Vec<&str> = sim2["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["sha256"].as_str().unwrap())
        .collect();
    assert_eq!(shas2, shas[..2].to_vec());
    let members = cli.run(&["groups", "show", &group, "--json"]).ok().json();
    assert_eq!(members["device_group"]["members"], 2);

    // More devices than the round admits: the extra one is refused by the server (409), the
    // others' updates count, and the run exits 1 with that refusal.
    let small = new_round(&cli, &model, 2, None);
    let r = cli.run(&["simulate", "round", &small, "--devices", "3", "--json"]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    let out = r.json();
    assert_eq!(
        (out["accepted"].as_u64(), out["refused"].as_u64()),
        (Some(2), Some(1)),
        "{out}"
    );
    let refused = out["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["status"] == "refused")
        .unwrap();
    assert_eq!(refused["error"]["status"], 409, "{refused}");
    let e: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(e["error"]["code"], refused["error"]["code"]);
    assert!(e["error"]["request_id"]
        .as_str()
        .unwrap()
        .starts_with("req_"));

    // A published round takes no more updates: refused before any device is enrolled (exit 1).
    let before = ids_in(
        &cli.run(&["devices", "list", "--json"]).ok().json(),
        "devices",
    );
    let r = cli.run(&["simulate", "round", &round, "--devices", "1"]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("round_published"), "{}", r.stderr);
    let after = ids_in(
        &cli.run(&["devices", "list", "--json"]).ok().json(),
        "devices",
    );
    assert_eq!(before, after);
    // A round of another org, or none: the server's 404.
    let r = cli.run(&["simulate", "round", "rnd_doesnotexist"]);
    assert_refused(&r, 404, "not_found");
}

/// A TCP relay in front of the stack for one connection: it passes the client's first
/// `hold_after` bytes on to the server, says so on `held`, and then stops reading from the
/// client (an upload stalled half-way, the server holding part of it) until `close` is sent,
/// when it drops both sides. The server's answers pass through.
struct Relay {
    url: String,
    held: std::sync::mpsc::Receiver<u64>,
    close: std::sync::mpsc::Sender<()>,
}

impl Relay {
    fn start(hold_after: u64) -> Self {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        // A small receive buffer, so the client cannot park much of its body in the relay's
        // socket once the relay stops reading.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        socket
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        socket.listen(1).unwrap();
        let listener: TcpListener = socket.into();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream_addr = stack()
            .base_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let (held_tx, held) = std::sync::mpsc::channel();
        let (close, close_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let (mut client, _) = listener.accept().unwrap();
            let mut server = TcpStream::connect(&upstream_addr).unwrap();
            let (mut client_w, mut server_r) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server_r, &mut client_w);
            });
            let mut buf = vec![0u8; 64 * 1024];
            let mut passed = 0u64;
            while passed < hold_after {
                let n = client.read(&mut buf).unwrap();
                assert!(n > 0, "the client closed after {passed} bytes");
                server.write_all(&buf[..n]).unwrap();
                passed += n as u64;
            }
            held_tx.send(passed).unwrap();
            let _ = close_rx.recv();
            let _ = server.shutdown(std::net::Shutdown::Both);
            let _ = client.shutdown(std::net::Shutdown::Both);
        });
        Relay { url, held, close }
    }
}

#[test]
fn ctrl_c_during_a_push_exits_130_and_registers_nothing_and_a_retry_succeeds() {
    let (_s, _org_id, cli) = owner_with_org("cli-interrupt");
    let model = cli
        .run(&["models", "create", &unique("big-model"), "--json"])
        .ok()
        .json()["model"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A 12 MiB base version: one tensor of 3 Mi float32 values. It outsizes what the relay
    // passes (1 MiB) plus what the sockets between can hold (the client's send buffer, 4 MiB
    // at most here, and the relay's 64 KiB), so the CLI is still sending when Ctrl-C comes.
    let elements = 3 * 1024 * 1024;
    let spec = tensors(&[("big.weight", vec![elements])]);
    let values: Vec<f64> = (0..elements).map(|i| (i % 97) as f64 / 97.0).collect();
    let bytes = safetensors_f32(&spec, &values, &[0]);
    let file = cli.dir.join("big.safetensors");
    std::fs::write(&file, &bytes).unwrap();

    // The push goes through a relay that stalls it once 1 MiB reached the server.
    let relay = Relay::start(1024 * 1024);
    let child = cli
        .command(&["models", "push", &model, file.to_str().unwrap()])
        .env("EDGEPLANE_URL", &relay.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let passed = relay
        .held
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the upload never reached 1 MiB");
    assert!(passed < bytes.len() as u64);
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let run: Run = child.wait_with_output().unwrap().into();
    assert_eq!(run.code, 130, "stdout {} stderr {}", run.stdout, run.stderr);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("interrupted") && run.stderr.contains("nothing was registered"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    // The server sees the connection drop mid-body.
    relay.close.send(()).unwrap();

    // Nothing half-registered: no version, and the retried push is version 1, byte-identical.
    let versions = cli
        .run(&["models", "versions", &model, "--json"])
        .ok()
        .json();
    assert_eq!(versions["versions"], serde_json::json!([]), "{versions}");
    let pushed = cli
        .run(&["models", "push", &model, file.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(pushed["version"]["version"], 1, "{pushed}");
    assert_eq!(pushed["version"]["sha256"], sha256_hex(&bytes).as_str());
    let versions = cli
        .run(&["models", "versions", &model, "--json"])
        .ok()
        .json();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);
}

/// What to press on a terminal, and when.
struct Keys<'a> {
    /// A Python regex over everything the terminal showed so far.
    when: &'a str,
    /// Wait, too, until the terminal no longer echoes (a hidden prompt is reading).
    hidden: bool,
    keys: &'a str,
}

/// Runs `args` under a pseudo-terminal (python3's `pty`), presses `keys` once they are due, as
/// a person would, and returns the exit code and everything the terminal showed (the typed
/// text too, had the program let it echo). At most three minutes.
fn on_a_terminal(cli: &Cli, args: &[&str], keys: Keys<'_>) -> (i32, String) {
    const DRIVER: &str = r#"
import os, pty, re, select, sys, termios, time
when, hidden, keys, argv = sys.argv[1].encode(), sys.argv[2] == "1", sys.argv[3].encode(), sys.argv[4:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
seen, sent, deadline = b"", False, time.monotonic() + 180
while time.monotonic() < deadline:
    # A hidden prompt is typed at once the terminal stopped echoing (the pty's termios, as the
    # program set it): typed earlier, the program's own switch to no-echo may flush it.
    if not sent and re.search(when, seen) and not (hidden and termios.tcgetattr(fd)[3] & termios.ECHO):
        os.write(fd, keys)
        sent = True
    if not select.select([fd], [], [], 0.05)[0]:
        continue
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
else:
    os.kill(pid, 9)
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode("utf-8", "replace"))
sys.exit(os.waitstatus_to_exitcode(status) if sent else 99)
"#;
    let mut py = Command::new("python3");
    py.args([
        "-c",
        DRIVER,
        keys.when,
        if keys.hidden { "1" } else { "0" },
        keys.keys,
    ])
    .arg(binary())
    .args(args);
    // The CLI's environment, as `Cli::command` sets it.
    for (k, v) in cli.command(&[]).get_envs() {
        match v {
            Some(v) => py.env(k, v),
            None => py.env_remove(k),
        };
    }
    let out = py.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn providers_set_key_reads_a_hidden_prompt_on_a_terminal() {
    use e2e::review::random_hex;
    let (_s, _org_id, cli) = owner_with_org("cli-tty");
    let created = cli
        .run_with_stdin(
            &[
                "providers",
                "create",
                "--name",
                "claude",
                "--kind",
                "anthropic",
                "--model",
                "review-model-1",
                "--json",
            ],
            "sk-test-first\n",
        )
        .ok()
        .json();
    let provider = created["llm_provider"].clone();
    let id = provider["id"].as_str().unwrap().to_owned();

    let key = format!("sk-test-{}", random_hex(24));
    let typed = format!("{key}\r");
    let (code, screen) = on_a_terminal(
        &cli,
        &["providers", "set-key", &id],
        Keys {
            when: r"\(input is hidden\): ",
            hidden: true,
            keys: &typed,
        },
    );
    assert_eq!(code, 0, "{screen}");
    // The terminal showed the prompt and the result, never the key (nor any part of it).
    assert!(screen.contains("Enter the provider's API key"), "{screen}");
    assert!(!screen.contains(&key[8..]), "the key was echoed: {screen}");
    assert!(screen.contains("key sealed to"), "{screen}");
    let shown = cli.run(&["providers", "list", "--json"]).ok().json()["llm_providers"][0].clone();
    assert_eq!(shown["has_api_key"], true);
    assert!(!shown["api_key_sealed_to"].as_str().unwrap().is_empty());
    assert_ne!(
        shown["api_key_set_at"], provider["api_key_set_at"],
        "the key typed at the prompt was not set"
    );
    assert!(screen.contains(shown["api_key_sealed_to"].as_str().unwrap()));
}

#[test]
fn deployments_roll_an_approved_version_out_stage_by_stage() {
    let (_s, _org_id, cli) = owner_with_org("cli-deploy");
    let model = model_with_version(&cli);
    let group = cli
        .run(&["groups", "create", "fleet", "--json"])
        .ok()
        .json()["device_group"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let create: [&str; 11] = [
        "deployments",
        "create",
        "--model",
        &model,
        "--version",
        "1",
        "--group",
        &group,
        "--stages",
        "10,100",
        "--json",
    ];
    // Only an approved version ships.
    let r = cli.run(&create[..create.len() - 1]);
    assert_refused(&r, 409, "conflict");
    cli.run(&["models", "approve", &model, "1"]).ok();
    let created = cli.run(&create).ok().json()["deployment"].clone();
    assert_eq!(created["state"], "active", "{created}");
    assert_eq!(created["stages"], serde_json::json!([10, 100]));
    assert_eq!(created["percent"], 10);
    assert_eq!(created["device_group_ids"], serde_json::json!([group]));
    let id = created["id"].as_str().unwrap().to_owned();

    let shown = cli.run(&["deployments", "show", &id, "--json"]).ok().json();
    assert_eq!(shown["deployment"]["progress"].as_array().unwrap().len(), 2);
    let table = cli.run(&["deployments", "show", &id]).ok();
    assert!(
        table.stdout.contains("STAGE %") && table.stdout.contains(&id),
        "{}",
        table.stdout
    );

    let step = |action: &str| -> Value {
        cli.run(&["deployments", action, &id, "--json"]).ok().json()["deployment"].clone()
    };
    assert_eq!(step("pause")["state"], "paused");
    // A paused rollout is not promoted: the server's 409, exit 1.
    assert_refused(&cli.run(&["deployments", "promote", &id]), 409, "conflict");
    assert_eq!(step("resume")["state"], "active");
    let done = step("promote");
    assert_eq!(
        (done["state"].as_str(), done["percent"].as_u64()),
        (Some("completed"), Some(100))
    );
    assert_eq!(step("rollback")["state"], "rolled_back");
    assert_refused(&cli.run(&["deployments", "resume", &id]), 409, "conflict");

    let listed = cli
        .run(&["deployments", "list", "--model", &model, "--json"])
        .ok()
        .json();
    assert_eq!(ids_in(&listed, "deployments"), vec![id.clone()]);
    let table = cli.run(&["deployments", "list"]).ok();
    assert!(
        table.stdout.contains(&id) && table.stdout.contains("rolled_back"),
        "{}",
        table.stdout
    );
    assert_refused(
        &cli.run(&["deployments", "show", "dep_doesnotexist"]),
        404,
        "not_found",
    );
}

#[test]
fn ctrl_c_during_simulate_revokes_the_unfinished_devices_and_a_rerun_completes_the_round() {
    let (_s, _org_id, cli) = owner_with_org("cli-sim-interrupt");
    let (_model, round) = model_and_round(&cli, 6);
    // Ctrl-C on the terminal once the training bar shows a first device done.
    let (code, screen) = on_a_terminal(
        &cli,
        &[
            "simulate",
            "round",
            &round,
            "--devices",
            "6",
            "--concurrency",
            "1",
        ],
        Keys {
            when: r"training \[[^\]]*\] [1-5]/6 devices",
            hidden: false,
            keys: "\u{3}",
        },
    );
    assert_eq!(code, 130, "{screen}");
    // The error line, after whatever the bar left on the same terminal line.
    let summary = screen
        .lines()
        .find_map(|l| l.split("error: interrupted: ").nth(1))
        .filter(|l| l.contains("unfinished simulated devices revoked"))
        .unwrap_or_else(|| panic!("{screen}"));
    // "error: interrupted: R of U unfinished simulated devices revoked; A accepted updates stand"
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (revoked, unfinished, accepted) = (numbers[0], numbers[1], numbers[2]);
    assert_eq!(revoked, unfinished, "{summary}");
    assert!(accepted >= 1 && unfinished >= 1, "{summary}");
    assert_eq!(accepted + unfinished, 6, "{summary}");

    // The server agrees: the accepted updates count, the rest's devices are revoked.
    let shown = cli.run(&["rounds", "show", &round, "--json"]).ok().json();
    assert_eq!(shown["round"]["progress"]["accepted"], accepted, "{shown}");
    assert!(
        matches!(
            shown["round"]["state"].as_str(),
            Some("open" | "collecting")
        ),
        "{shown}"
    );
    let devices = cli.run(&["devices", "list", "--json"]).ok().json();
    let revoked_devices = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["revoked_reason"] == "simulation interrupted")
        .count() as u64;
    assert_eq!(revoked_devices, unfinished, "{devices}");

    // Nothing left half-way blocks the round: the missing updates come from a second run, and
    // the round publishes.
    let rest = unfinished.to_string();
    cli.run(&["simulate", "round", &round, "--devices", &rest])
        .ok();
    let watched = cli
        .run(&["rounds", "watch", &round, "--interval", "1"])
        .ok();
    assert!(
        watched.stdout.trim().starts_with("mv"),
        "{}",
        watched.stdout
    );
}

/// `audit export --job`: the CLI creates a job, follows it while the cron writes the file,
/// downloads it through the job's link and verifies it with `audit verify`'s code.
#[test]
fn an_export_job_is_followed_downloaded_and_verified() {
    let (_s, org_id, cli) = owner_with_org("cli-audit-job");
    let file = cli.dir.join("job.jsonl");
    let f = file.to_str().unwrap();
    let mut child = cli
        .command(&[
            "audit",
            "export",
            "--job",
            "--interval",
            "1",
            "-o",
            f,
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The job runs at the next cron run: run the cron until the CLI is done.
    e2e::wait_for(
        "the CLI to finish",
        std::time::Duration::from_secs(300),
        || {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            e2e::run_cron();
            None
        },
    );
    let run: Run = child.wait_with_output().unwrap().into();
    let verdict = run.ok().json();
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["source"], f);
    let size = verdict["checkpoint"]["size"].as_i64().unwrap();
    assert_eq!(verdict["events_checked"], size);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count() as i64, size);
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["chain"], org_id.as_str());
    assert!(cli.dir.join("job.jsonl.checkpoint").exists());
    // --job needs a file to write.
    let r = cli.run(&["audit", "export", "--job"]);
    assert_ne!(r.code, 0);
}

/// A csv (or time-narrowed) job's file does not verify offline: `--job` downloads it and says
/// so plainly, instead of failing after the download.
#[test]
fn a_csv_export_job_is_downloaded_and_reported_unverified() {
    let (_s, _org_id, cli) = owner_with_org("cli-audit-job-csv");
    let file = cli.dir.join("job.csv");
    let f = file.to_str().unwrap();
    let mut child = cli
        .command(&[
            "audit",
            "export",
            "--job",
            "--format",
            "csv",
            "--interval",
            "1",
            "-o",
            f,
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    e2e::wait_for(
        "the CLI to finish",
        std::time::Duration::from_secs(300),
        || {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            e2e::run_cron();
            None
        },
    );
    let run: Run = child.wait_with_output().unwrap().into();
    let done = run.ok().json();
    assert_eq!(done["verified"], false, "{done}");
    assert_eq!(done["format"], "csv", "{done}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("seq,id,chain,org_id,"), "{text}");
    assert_eq!(done["bytes"].as_u64().unwrap(), text.len() as u64);
}
