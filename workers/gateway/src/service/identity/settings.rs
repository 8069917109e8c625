//! Identity's deployment configuration (vars and secrets), parsed once per isolate.
//!
//! - `APP_BASE_URL`: where people land from emails and the device-code prompt (the web app);
//!   defaults to `PUBLIC_BASE_URL`.
//! - `EMAIL_PROVIDER`: `resend` (default outside development) or `outbox` (development, tests,
//!   benchmarks; refused in production). `EMAIL_API_BASE` (default `https://api.resend.com`),
//!   `EMAIL_FROM`, secret `EMAIL_API_KEY`.
//! - `SIGNIN_PROVIDERS`: comma-separated provider names, each configured as described in
//!   `edgeplane_core::identity::oidc`.
//! - `DEVICE_CODE_TTL_SECONDS` (default 600), `CLI_CLIENT_IDS` (default `edgeplane-cli`).

use std::cell::RefCell;
use std::rc::Rc;

use edgeplane_core::identity::device_code::DEFAULT_TTL_SECS;
use edgeplane_core::identity::oidc::{provider_from_vars, ProviderConfig};
use edgeplane_core::review::egress::validate_base_url;
use worker::Env;

use crate::config::Config;
use crate::http::log;

pub enum EmailSettings {
    Resend {
        api_base: String,
        api_key: String,
        from: String,
    },
    /// Kept in D1 (`email_outbox`); in development also printed to the log.
    Outbox,
    /// Misconfigured: sign-in by email answers 503 and the reason is logged.
    Unavailable(String),
}

pub struct IdentitySettings {
    pub app_base_url: String,
    pub email: EmailSettings,
    pub providers: Vec<ProviderConfig>,
    /// Provider names whose configuration is invalid (logged; they answer 404).
    pub device_code_ttl_secs: i64,
    pub cli_client_ids: Vec<String>,
    pub allow_loopback: bool,
    /// `DEPLOYMENT_ENV=development`: the outbox endpoint exists and sign-in links are logged.
    pub development: bool,
}

impl IdentitySettings {
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }
}

thread_local! {
    static SETTINGS: RefCell<Option<Rc<IdentitySettings>>> = const { RefCell::new(None) };
}

fn read(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| env.secret(name).ok().map(|v| v.to_string()))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

pub fn load(env: &Env, cfg: &Config) -> Rc<IdentitySettings> {
    if let Some(s) = SETTINGS.with(|s| s.borrow().clone()) {
        return s;
    }
    let s = Rc::new(parse(env, cfg));
    SETTINGS.with(|slot| *slot.borrow_mut() = Some(s.clone()));
    s
}

fn parse(env: &Env, cfg: &Config) -> IdentitySettings {
    let allow_loopback = read(env, "ALLOW_LOOPBACK_EGRESS").as_deref() == Some("true");
    let environment = cfg.environment.as_str();
    let production = environment == "production";
    let app_base_url = read(env, "APP_BASE_URL")
        .map(|v| v.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| cfg.issuer.clone());

    let provider_kind = read(env, "EMAIL_PROVIDER").unwrap_or_else(|| {
        if production {
            "resend".into()
        } else {
            "outbox".into()
        }
    });
    let email = match provider_kind.as_str() {
        "outbox" if production => EmailSettings::Unavailable(
            "EMAIL_PROVIDER=outbox is refused in production (it keeps sign-in links in D1)".into(),
        ),
        "outbox" => EmailSettings::Outbox,
        "resend" => {
            let base =
                read(env, "EMAIL_API_BASE").unwrap_or_else(|| "https://api.resend.com".into());
            match (
                validate_base_url(&base, allow_loopback),
                read(env, "EMAIL_API_KEY"),
                read(env, "EMAIL_FROM"),
            ) {
                (Ok(api_base), Some(api_key), Some(from)) => EmailSettings::Resend {
                    api_base,
                    api_key,
                    from,
                },
                (Err(e), _, _) => EmailSettings::Unavailable(format!("EMAIL_API_BASE {e}")),
                (_, None, _) => EmailSettings::Unavailable("EMAIL_API_KEY is not set".into()),
                (_, _, None) => EmailSettings::Unavailable("EMAIL_FROM is not set".into()),
            }
        }
        other => EmailSettings::Unavailable(format!("unknown EMAIL_PROVIDER `{other}`")),
    };
    if let EmailSettings::Unavailable(reason) = &email {
        log::error("email configuration", reason);
    }

    let mut providers = Vec::new();
    for name in read(env, "SIGNIN_PROVIDERS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        match provider_from_vars(name, |k| read(env, k), allow_loopback) {
            Ok(p) => providers.push(p),
            Err(e) => log::error("sign-in provider configuration", &e),
        }
    }

    IdentitySettings {
        app_base_url,
        email,
        providers,
        device_code_ttl_secs: read(env, "DEVICE_CODE_TTL_SECONDS")
            .and_then(|v| v.parse::<i64>().ok())
            .map(|v| v.clamp(10, 1800))
            .unwrap_or(DEFAULT_TTL_SECS),
        cli_client_ids: read(env, "CLI_CLIENT_IDS")
            .unwrap_or_else(|| "edgeplane-cli".into())
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        allow_loopback,
        development: environment == "development",
    }
}
