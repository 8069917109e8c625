//! `login` (RFC 8628 device grant), `logout` (revokes the CLI token), `whoami`.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::{self, Api, CLIENT_ID, DEVICE_GRANT};
use crate::config::Config;
use crate::error::{CliError, Result};
use crate::output::Out;
use crate::{seg, Ctx};

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Print the verification URL instead of opening a browser.
    #[arg(long)]
    no_browser: bool,
    /// Ask for fewer scopes than your role allows (space-separated, e.g. "org:read audit:read").
    #[arg(long)]
    scope: Option<String>,
}

/// Failures in a row (5xx, 429, network) that polling rides out before giving up.
const MAX_PASSING_FAILURES: u32 = 3;

/// Runs the device grant: asks for codes, shows the user code, opens the verification page,
/// polls the token endpoint honouring `interval` and `slow_down` until approved, denied or
/// expired, then stores the tokens and the org they are bound to in the profile.
pub fn login(url: Option<String>, config: Config, args: &LoginArgs, out: Out) -> Result<()> {
    let api = Api::new(url, config)?;
    let mut form = vec![("client_id", CLIENT_ID)];
    if let Some(s) = &args.scope {
        form.push(("scope", s.as_str()));
    }
    let r = api.post_form("/oauth/device_authorization", &form)?;
    if !r.status().is_success() {
        return Err(api::answer_error(r));
    }
    let codes = api::json_of(r)?;
    let text = |k: &str| codes[k].as_str().unwrap_or_default().to_owned();
    let (device_code, user_code) = (text("device_code"), text("user_code"));
    let complete = text("verification_uri_complete");
    let mut interval = codes["interval"].as_u64().unwrap_or(5).max(1);
    let expires_in = codes["expires_in"].as_u64().unwrap_or(600);

    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "To sign in, open {} and enter the code.\nuser code: {user_code}",
        text("verification_uri")
    );
    if !args.no_browser && webbrowser::open(&complete).is_ok() {
        let _ = writeln!(err, "Opened {complete} in your browser.");
    }
    let _ = writeln!(
        err,
        "Waiting for approval (the code expires in {expires_in} s)..."
    );
    let _ = err.flush();

    let deadline = Instant::now() + Duration::from_secs(expires_in + 5);
    // A passing failure (a 5xx, a rate limit, a dropped connection) does not end a sign-in the
    // person may be approving right now: poll again at the next interval, a few times in a row.
    let mut passing_failures = 0;
    let creds = loop {
        std::thread::sleep(Duration::from_secs(interval));
        if Instant::now() > deadline {
            return Err(CliError::Auth(
                "the code expired before it was approved".into(),
            ));
        }
        let answer = api
            .post_form(
                "/oauth/token",
                &[
                    ("grant_type", DEVICE_GRANT),
                    ("device_code", &device_code),
                    ("client_id", CLIENT_ID),
                ],
            )
            .and_then(|r| {
                if r.status().is_success() {
                    api::token_answer(&api::json_of(r)?)
                } else {
                    Err(api::answer_error(r))
                }
            });
        let refusal = match answer {
            Ok(creds) => break creds,
            Err(e) => e,
        };
        let passing = match &refusal {
            CliError::Network(_) => true,
            CliError::Server { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        };
        if passing && passing_failures < MAX_PASSING_FAILURES {
            passing_failures += 1;
            continue;
        }
        if !passing {
            passing_failures = 0;
        }
        match refusal {
            CliError::Server { code, .. } if code == "authorization_pending" => {}
            // RFC 8628 §3.5: every slow_down adds 5 seconds to the interval, for good.
            CliError::Server { code, .. } if code == "slow_down" => interval += 5,
            CliError::Server { code, .. } if code == "access_denied" => {
                return Err(CliError::Auth("the sign-in was denied".into()))
            }
            CliError::Server { code, .. } if code == "expired_token" => {
                return Err(CliError::Auth(
                    "the code expired before it was approved: run `edgeplane login` again".into(),
                ))
            }
            other => return Err(other),
        }
    };
    api.set_credentials(creds.clone())?;
    // A CLI token is bound to the one org it was approved for: make it the profile's default.
    let me = api.get("/v1/me")?;
    let membership = me["memberships"].get(0).cloned().unwrap_or(Value::Null);
    // Re-read: storing the credentials may have recorded where they went.
    let mut profile = api.config.borrow().profile();
    profile.url = Some(api.base.clone());
    profile.org = membership["org"]["id"].as_str().map(str::to_owned);
    api.config.borrow_mut().set_profile(profile.clone())?;
    let result = json!({
        "user": me["user"],
        "org": membership["org"],
        "role": membership["role"],
        "scope": creds.scope,
        "url": api.base,
    });
    out.done(
        &result,
        &format!(
            "Signed in as {} to {} ({}).",
            me["user"]["email"].as_str().unwrap_or("?"),
            membership["org"]["slug"].as_str().unwrap_or("?"),
            membership["role"].as_str().unwrap_or("?"),
        ),
    );
    Ok(())
}

/// Revokes the stored CLI token at the server (`POST /v1/auth/sign-out` with it), then forgets
/// it. A token the server no longer accepts is forgotten all the same.
pub fn logout(ctx: &Ctx) -> Result<()> {
    if ctx.api.stored_credentials().is_none() {
        ctx.out.done(
            &json!({"signed_out": false}),
            "Not signed in with this profile.",
        );
        return Ok(());
    }
    let revoked = match ctx.api.post("/v1/auth/sign-out", &json!({})) {
        Ok(_) => true,
        Err(CliError::Auth(_)) | Err(CliError::Server { status: 401, .. }) => false,
        Err(e) => return Err(e),
    };
    ctx.api.config.borrow_mut().clear_credentials()?;
    ctx.out.done(
        &json!({"signed_out": true, "revoked": revoked}),
        if revoked {
            "Signed out; the CLI token is revoked."
        } else {
            "Signed out (the token was already invalid)."
        },
    );
    Ok(())
}

/// The person (when the credential is a person's) and the credential's access in the org.
pub fn whoami(ctx: &Ctx) -> Result<()> {
    if !ctx.api.signed_in() {
        return Err(CliError::Auth(
            "not signed in: run `edgeplane login` or set EDGEPLANE_TOKEN".into(),
        ));
    }
    // An API key is no person: /v1/me refuses it, which is not an error here.
    let me = match ctx.api.get("/v1/me") {
        Ok(v) => v,
        Err(CliError::Server { status: 403, .. }) => Value::Null,
        Err(e) => return Err(e),
    };
    let org = ctx.org().ok().or_else(|| {
        me["memberships"]
            .get(0)
            .and_then(|m| m["org"]["id"].as_str())
            .map(str::to_owned)
    });
    let access = match &org {
        Some(o) => ctx.api.get(&format!("/v1/orgs/{}/me", seg(o)))?,
        None => Value::Null,
    };
    let result = json!({
        "user": me["user"],
        "org_id": access["org_id"],
        "principal": access["principal"],
        "role": access["role"],
        "scopes": access["scopes"],
        "url": ctx.api.base,
    });
    ctx.out.object(
        &result,
        &result,
        &[
            ("user", "user.email"),
            ("user id", "user.id"),
            ("org", "org_id"),
            ("credential", "principal.kind"),
            ("credential id", "principal.id"),
            ("role", "role"),
            ("scopes", "scopes"),
            ("url", "url"),
        ],
    );
    Ok(())
}
