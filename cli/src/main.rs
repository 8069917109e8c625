//! `edgeplane`: the command-line client of an edgeplane deployment.
//!
//! Sign in with the device grant (`edgeplane login`), then administer one organization from
//! the terminal: keys, members, invitations, sessions, the audit log (exported, and verified
//! locally against its signed checkpoint), models, rounds, deployments, devices and groups,
//! code review integrations, providers and reviews; and simulate a round with synthetic
//! devices. Every command takes `--json`. Exit codes are in [`error`].
#![forbid(unsafe_code)]

mod api;
mod audit;
mod auth;
mod config;
mod deployments;
mod devices;
mod error;
mod interrupt;
mod models;
mod org;
mod output;
mod review;
mod rounds;
mod secret;
mod simulate;

use clap::{CommandFactory, Parser, Subcommand};

use crate::api::Api;
use crate::config::Config;
use crate::error::{CliError, Result};
use crate::output::Out;

#[derive(Debug, Parser)]
#[command(
    name = "edgeplane",
    version,
    about = "The edgeplane command-line client",
    after_help = "Exit codes: 0 ok, 1 the server refused, 2 usage, 3 network, 4 authentication, \
                  5 verification failed, 130 interrupted."
)]
pub struct Cli {
    /// The deployment's base URL (overrides the profile's).
    #[arg(long, global = true, env = "EDGEPLANE_URL")]
    url: Option<String>,
    /// The organization (id or slug; overrides the profile's default).
    #[arg(long, global = true, env = "EDGEPLANE_ORG")]
    org: Option<String>,
    /// The configuration profile.
    #[arg(
        long,
        global = true,
        env = "EDGEPLANE_PROFILE",
        default_value = "default"
    )]
    profile: String,
    /// Machine output: one JSON document on stdout (errors too, on stderr).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign in with the device authorization grant (RFC 8628).
    Login(auth::LoginArgs),
    /// Revoke this profile's CLI token and forget it.
    Logout,
    /// Who and what the current credential is: user, org, role, scopes.
    Whoami,
    /// Organizations the credential reaches.
    Orgs,
    /// Members of the organization.
    Members,
    /// Invitations to the organization.
    #[command(subcommand)]
    Invitations(org::InvitationsCmd),
    /// API keys of the organization.
    #[command(subcommand)]
    Keys(org::KeysCmd),
    /// Your sessions and CLI tokens.
    #[command(subcommand)]
    Sessions(org::SessionsCmd),
    /// The audit log: list, export, verify.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Models and their versions.
    #[command(subcommand)]
    Models(models::ModelsCmd),
    /// Federated-learning rounds.
    #[command(subcommand)]
    Rounds(rounds::RoundsCmd),
    /// Deployments: staged rollouts of an approved version to device groups.
    #[command(subcommand)]
    Deployments(deployments::DeploymentsCmd),
    /// Devices: list, show, revoke, and bootstrap tokens to enrol one.
    #[command(subcommand)]
    Devices(devices::DevicesCmd),
    /// Device groups: the targets of rounds and deployments.
    #[command(subcommand)]
    Groups(devices::GroupsCmd),
    /// Simulated devices that take part in a round through the real device protocol.
    #[command(subcommand)]
    Simulate(simulate::SimulateCmd),
    /// Git platform integrations (code review).
    #[command(subcommand)]
    Integrations(review::IntegrationsCmd),
    /// LLM providers (code review), each with the org's own API key.
    #[command(subcommand)]
    Providers(review::ProvidersCmd),
    /// Code reviews.
    #[command(subcommand)]
    Reviews(review::ReviewsCmd),
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

/// What a command works with: the client, the org, the output mode.
pub struct Ctx {
    pub api: Api,
    org: Option<String>,
    pub out: Out,
}

impl Ctx {
    /// The org the command acts in: `--org`, else the profile's default.
    pub fn org(&self) -> Result<String> {
        self.org.clone().ok_or_else(|| {
            CliError::usage("no organization: pass --org, set EDGEPLANE_ORG, or log in first")
        })
    }

    /// `/v1/orgs/{org}` followed by `rest`.
    pub fn org_path(&self, rest: &str) -> Result<String> {
        Ok(format!("/v1/orgs/{}{rest}", seg(&self.org()?)))
    }

    /// [`Ctx::org_path`] with a query of the parameters that are set (form-encoded).
    pub fn org_query<const N: usize>(
        &self,
        rest: &str,
        params: [(&str, Option<String>); N],
    ) -> Result<String> {
        let path = self.org_path(rest)?;
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            if let Some(v) = v {
                q.append_pair(k, &v);
            }
        }
        let q = q.finish();
        Ok(if q.is_empty() {
            path
        } else {
            format!("{path}?{q}")
        })
    }
}

/// A path segment, percent-encoded.
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn run(cli: Cli) -> Result<()> {
    let out = Out { json: cli.json };
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "edgeplane",
            &mut std::io::stdout(),
        );
        return Ok(());
    }
    let config = Config::load(&cli.profile)?;
    if let Command::Login(args) = &cli.command {
        return auth::login(cli.url.clone(), config, args, out);
    }
    let org = cli.org.clone().or_else(|| config.profile().org);
    let api = Api::new(cli.url.clone(), config)?;
    let ctx = Ctx { api, org, out };
    match cli.command {
        Command::Login(_) | Command::Completions { .. } => Ok(()),
        Command::Logout => auth::logout(&ctx),
        Command::Whoami => auth::whoami(&ctx),
        Command::Orgs => org::orgs(&ctx),
        Command::Members => org::members(&ctx),
        Command::Invitations(c) => org::invitations(&ctx, c),
        Command::Keys(c) => org::keys(&ctx, c),
        Command::Sessions(c) => org::sessions(&ctx, c),
        Command::Audit(c) => audit::run(&ctx, c),
        Command::Models(c) => models::run(&ctx, c),
        Command::Rounds(c) => rounds::run(&ctx, c),
        Command::Deployments(c) => deployments::run(&ctx, c),
        Command::Devices(c) => devices::devices(&ctx, c),
        Command::Groups(c) => devices::groups(&ctx, c),
        Command::Simulate(c) => simulate::run(&ctx, c),
        Command::Integrations(c) => review::integrations(&ctx, c),
        Command::Providers(c) => review::providers(&ctx, c),
        Command::Reviews(c) => review::reviews(&ctx, c),
    }
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Help and version are not errors; anything else is usage (2).
            std::process::exit(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let json = cli.json;
    let ran = interrupt::install(json).and_then(|()| run(cli));
    if let Err(e) = ran {
        e.exit(json);
    }
}
