//! Deployment configuration from Worker vars and secrets, parsed once per isolate.

use std::cell::RefCell;
use std::rc::Rc;

use edgeplane_core::crypto::jwt::KeySet;
use edgeplane_core::crypto::kdf::RootSecret;
use edgeplane_core::ApiError;
use worker::Env;

use crate::http::log;

/// How many previous JWT signing keys still verify after a rotation (`JWT_KEY_VERSION` bump).
const KEEP_PREVIOUS_JWT_KEYS: u32 = 1;

pub struct Config {
    /// The public origin of this deployment; also the `iss` of every token it signs.
    pub issuer: String,
    pub environment: String,
    pub root: RootSecret,
    pub jwt_keys: KeySet,
    /// One-time first-run token for `POST /v1/setup` (absent: setup disabled).
    pub setup_token: Option<String>,
}

thread_local! {
    static CONFIG: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
}

/// Loads the config, deriving keys only on the first request an isolate serves.
pub fn load(env: &Env) -> Result<Rc<Config>, ApiError> {
    if let Some(cfg) = CONFIG.with(|c| c.borrow().clone()) {
        return Ok(cfg);
    }
    let cfg = Rc::new(parse(env)?);
    CONFIG.with(|c| *c.borrow_mut() = Some(cfg.clone()));
    Ok(cfg)
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.is_empty())
}

pub fn secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.is_empty())
}

/// `ROOT_SECRET` is hex (64+ chars) so operators can generate it with any tool.
pub fn root_secret(env: &Env) -> Result<RootSecret, ApiError> {
    let raw = secret(env, "ROOT_SECRET").ok_or_else(|| {
        log::error("config", "ROOT_SECRET is not set");
        ApiError::internal()
    })?;
    RootSecret::from_hex(&raw).inspect_err(|_| {
        log::error(
            "config",
            "ROOT_SECRET must be at least 64 hex characters (32 bytes)",
        );
    })
}

fn parse(env: &Env) -> Result<Config, ApiError> {
    let root = root_secret(env)?;
    let version = var(env, "JWT_KEY_VERSION")
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|v| *v >= 1)
        .unwrap_or(1);
    Ok(Config {
        issuer: var(env, "PUBLIC_BASE_URL")
            .unwrap_or_else(|| "http://127.0.0.1:8787".into())
            .trim_end_matches('/')
            .to_owned(),
        environment: var(env, "DEPLOYMENT_ENV").unwrap_or_else(|| "production".into()),
        jwt_keys: KeySet::derive(&root, version, KEEP_PREVIOUS_JWT_KEYS),
        root,
        setup_token: secret(env, "SETUP_TOKEN"),
    })
}
