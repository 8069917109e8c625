//! Sign-in through an identity provider: OAuth 2.0 authorization code with PKCE (S256), `state`
//! and, for OpenID Connect, `nonce` and a validated ID token. GitHub, Google and Microsoft Entra
//! are presets of one implementation; any other OIDC issuer works as `generic`.
//!
//! Configuration (deployment vars, per provider name `N` listed in `SIGNIN_PROVIDERS`):
//! `SIGNIN_<N>_PRESET` (`google` | `microsoft` | `github` | `generic`; defaults to the name when
//! it is a preset), `SIGNIN_<N>_CLIENT_ID`, secret `SIGNIN_<N>_CLIENT_SECRET`, and per preset:
//! generic `SIGNIN_<N>_ISSUER`; microsoft `SIGNIN_<N>_TENANT` (default `organizations`);
//! github `SIGNIN_<N>_WEB_BASE` / `SIGNIN_<N>_API_BASE` (GitHub Enterprise Server). Optional
//! `SIGNIN_<N>_SCOPES`, `SIGNIN_<N>_DISPLAY_NAME`.

pub mod id_token;

use serde::Deserialize;

use self::id_token::IssuerRule;
use super::pkce::FlowSecrets;
use crate::review::egress::validate_base_url;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Google,
    Microsoft,
    GitHub,
    Generic,
}

impl Preset {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "google" => Preset::Google,
            "microsoft" | "entra" => Preset::Microsoft,
            "github" => Preset::GitHub,
            "generic" | "oidc" => Preset::Generic,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Google => "google",
            Preset::Microsoft => "microsoft",
            Preset::GitHub => "github",
            Preset::Generic => "generic",
        }
    }
}

/// How the person's identity is learned after the code exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// OpenID Connect: endpoints from discovery, identity from the validated ID token.
    Oidc {
        issuer: IssuerRule,
        discovery_url: String,
    },
    /// GitHub's OAuth (no ID token): identity from its REST API (`/user`, `/user/emails`).
    GitHub {
        authorization_endpoint: String,
        token_endpoint: String,
        api_base: String,
    },
}

/// One configured provider. Its `Debug` leaves out the client secret.
#[derive(Clone)]
pub struct ProviderConfig {
    /// The path segment: `/v1/auth/providers/{name}/start`.
    pub name: String,
    pub display_name: String,
    pub preset: Preset,
    pub protocol: Protocol,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: String,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ProviderConfig({}, {}, <secret redacted>)",
            self.name,
            self.preset.as_str()
        )
    }
}

/// Parses one provider's configuration. `var` reads deployment vars and secrets by name.
pub fn provider_from_vars(
    name: &str,
    var: impl Fn(&str) -> Option<String>,
    allow_loopback: bool,
) -> Result<ProviderConfig, String> {
    let valid_name = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_name {
        return Err(format!("provider name `{name}` must be a-z, 0-9 and '-'"));
    }
    let key = |suffix: &str| {
        format!(
            "SIGNIN_{}_{suffix}",
            name.to_ascii_uppercase().replace('-', "_")
        )
    };
    let get = |suffix: &str| var(&key(suffix)).filter(|v| !v.trim().is_empty());
    let need = |suffix: &str| get(suffix).ok_or_else(|| format!("{} is not set", key(suffix)));
    let preset = match get("PRESET") {
        Some(p) => {
            Preset::parse(&p).ok_or_else(|| format!("{}: unknown preset `{p}`", key("PRESET")))?
        }
        None => Preset::parse(name).unwrap_or(Preset::Generic),
    };
    let url = |raw: String, what: &str| {
        validate_base_url(&raw, allow_loopback).map_err(|e| format!("{}: {e}", key(what)))
    };
    let oidc = |issuer: String, rule: IssuerRule| Protocol::Oidc {
        discovery_url: format!("{issuer}/.well-known/openid-configuration"),
        issuer: rule,
    };
    let (protocol, default_scopes, default_display) = match preset {
        Preset::Google => {
            let issuer = "https://accounts.google.com".to_owned();
            (
                oidc(issuer.clone(), IssuerRule::Exact(issuer)),
                "openid email profile",
                "Google",
            )
        }
        Preset::Microsoft => {
            let tenant = get("TENANT").unwrap_or_else(|| "organizations".into());
            let tenant_ok = !tenant.is_empty()
                && tenant.len() <= 64
                && tenant
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !tenant_ok {
                return Err(format!("{}: not a tenant id or domain", key("TENANT")));
            }
            let authority = "https://login.microsoftonline.com".to_owned();
            let issuer = format!("{authority}/{tenant}/v2.0");
            let rule = if matches!(tenant.as_str(), "common" | "organizations" | "consumers") {
                IssuerRule::MicrosoftTenantTemplate { authority }
            } else {
                IssuerRule::Exact(issuer.clone())
            };
            (oidc(issuer, rule), "openid email profile", "Microsoft")
        }
        Preset::Generic => {
            let issuer = url(need("ISSUER")?, "ISSUER")?;
            (
                oidc(issuer.clone(), IssuerRule::Exact(issuer)),
                "openid email profile",
                "Single sign-on",
            )
        }
        Preset::GitHub => {
            let web = url(
                get("WEB_BASE").unwrap_or_else(|| "https://github.com".into()),
                "WEB_BASE",
            )?;
            let api = url(
                get("API_BASE").unwrap_or_else(|| "https://api.github.com".into()),
                "API_BASE",
            )?;
            (
                Protocol::GitHub {
                    authorization_endpoint: format!("{web}/login/oauth/authorize"),
                    token_endpoint: format!("{web}/login/oauth/access_token"),
                    api_base: api,
                },
                "read:user user:email",
                "GitHub",
            )
        }
    };
    Ok(ProviderConfig {
        name: name.to_owned(),
        display_name: get("DISPLAY_NAME").unwrap_or_else(|| default_display.into()),
        preset,
        protocol,
        client_id: need("CLIENT_ID")?,
        client_secret: need("CLIENT_SECRET")?,
        scopes: get("SCOPES").unwrap_or_else(|| default_scopes.into()),
    })
}

/// The parts of an OpenID Provider's discovery document this client uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

impl Discovery {
    /// Parses and checks a discovery document: its issuer must be the configured one (OIDC
    /// Discovery §4.3) and every endpoint an acceptable URL.
    pub fn parse(body: &[u8], rule: &IssuerRule, allow_loopback: bool) -> Result<Self, String> {
        let d: Discovery = serde_json::from_slice(body)
            .map_err(|_| "discovery document is not valid".to_owned())?;
        if !rule.matches_discovery(&d.issuer) {
            return Err("discovery document names another issuer".into());
        }
        for u in [&d.authorization_endpoint, &d.token_endpoint, &d.jwks_uri] {
            validate_base_url(u, allow_loopback).map_err(|e| format!("discovery endpoint {e}"))?;
        }
        Ok(d)
    }
}

/// The URL the browser is sent to.
pub fn authorization_url(
    authorization_endpoint: &str,
    p: &ProviderConfig,
    redirect_uri: &str,
    flow: &FlowSecrets,
    login_hint: Option<&str>,
) -> Result<String, String> {
    let mut url = url::Url::parse(authorization_endpoint)
        .map_err(|_| "authorization endpoint is not a URL".to_owned())?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &p.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &p.scopes)
            .append_pair("state", &flow.state)
            .append_pair("code_challenge", &flow.code_challenge)
            .append_pair("code_challenge_method", "S256");
        if matches!(p.protocol, Protocol::Oidc { .. }) {
            q.append_pair("nonce", &flow.nonce);
        }
        if let Some(h) = login_hint {
            q.append_pair(
                if p.preset == Preset::GitHub {
                    "login"
                } else {
                    "login_hint"
                },
                h,
            );
        }
    }
    Ok(url.into())
}

/// The form body of the code exchange (client authentication `client_secret_post`).
pub fn token_request_form(
    p: &ProviderConfig,
    code: &str,
    redirect_uri: &str,
    code_verifier: &str,
) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("client_id", &p.client_id)
        .append_pair("client_secret", &p.client_secret)
        .append_pair("code_verifier", code_verifier)
        .finish()
}

/// A token endpoint's answer: tokens, or an OAuth error (GitHub answers errors with 200).
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The identity a provider vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// Stable per provider: the OIDC `iss` + `sub`, or GitHub's numeric user id.
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

#[derive(Deserialize)]
struct GitHubUser {
    id: u64,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct GitHubEmail {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

/// GitHub's `/user` and `/user/emails` answers: the account id and its primary email, which
/// counts only if GitHub verified it.
pub fn github_identity(user: &[u8], emails: &[u8]) -> Result<ExternalIdentity, String> {
    let u: GitHubUser =
        serde_json::from_slice(user).map_err(|_| "GitHub /user answer is not valid".to_owned())?;
    let emails: Vec<GitHubEmail> = serde_json::from_slice(emails)
        .map_err(|_| "GitHub /user/emails answer is not valid".to_owned())?;
    let primary = emails.into_iter().find(|e| e.primary);
    Ok(ExternalIdentity {
        subject: u.id.to_string(),
        email_verified: primary.as_ref().is_some_and(|e| e.verified),
        email: primary.map(|e| e.email),
        name: u.name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn presets_fill_in_endpoints() {
        let creds = [
            ("SIGNIN_GOOGLE_CLIENT_ID", "cid"),
            ("SIGNIN_GOOGLE_CLIENT_SECRET", "sec"),
        ];
        let g = provider_from_vars("google", vars(&creds), false).unwrap();
        assert_eq!(g.preset, Preset::Google);
        assert!(matches!(&g.protocol, Protocol::Oidc { discovery_url, .. }
            if discovery_url == "https://accounts.google.com/.well-known/openid-configuration"));

        let ms = provider_from_vars(
            "work",
            vars(&[
                ("SIGNIN_WORK_PRESET", "microsoft"),
                ("SIGNIN_WORK_CLIENT_ID", "c"),
                ("SIGNIN_WORK_CLIENT_SECRET", "s"),
            ]),
            false,
        )
        .unwrap();
        assert!(
            matches!(&ms.protocol, Protocol::Oidc { issuer: IssuerRule::MicrosoftTenantTemplate { .. }, discovery_url }
            if discovery_url.contains("/organizations/v2.0/"))
        );
        let single = provider_from_vars(
            "microsoft",
            vars(&[
                ("SIGNIN_MICROSOFT_TENANT", "contoso.onmicrosoft.com"),
                ("SIGNIN_MICROSOFT_CLIENT_ID", "c"),
                ("SIGNIN_MICROSOFT_CLIENT_SECRET", "s"),
            ]),
            false,
        )
        .unwrap();
        assert!(
            matches!(&single.protocol, Protocol::Oidc { issuer: IssuerRule::Exact(i), .. }
            if i == "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0")
        );

        let gh = provider_from_vars(
            "github",
            vars(&[
                ("SIGNIN_GITHUB_CLIENT_ID", "c"),
                ("SIGNIN_GITHUB_CLIENT_SECRET", "s"),
            ]),
            false,
        )
        .unwrap();
        assert!(
            matches!(&gh.protocol, Protocol::GitHub { token_endpoint, api_base, .. }
            if token_endpoint == "https://github.com/login/oauth/access_token" && api_base == "https://api.github.com")
        );
    }

    #[test]
    fn generic_needs_a_safe_issuer_and_credentials() {
        let base = |issuer: &str| {
            vec![
                ("SIGNIN_ACME_ISSUER", issuer.to_owned()),
                ("SIGNIN_ACME_CLIENT_ID", "c".into()),
                ("SIGNIN_ACME_CLIENT_SECRET", "s".into()),
            ]
        };
        let mk = |pairs: Vec<(&str, String)>, loopback| {
            let owned: Vec<(String, String)> =
                pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            provider_from_vars(
                "acme",
                move |k: &str| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
                loopback,
            )
        };
        assert!(mk(base("https://id.acme.test"), false).is_ok());
        assert!(mk(base("http://id.acme.test"), false).is_err());
        assert!(mk(base("http://127.0.0.1:9000"), false).is_err());
        assert!(mk(base("http://127.0.0.1:9000"), true).is_ok());
        let mut missing = base("https://id.acme.test");
        missing.pop();
        assert!(mk(missing, false)
            .unwrap_err()
            .contains("SIGNIN_ACME_CLIENT_SECRET"));
        assert!(provider_from_vars("Bad Name", |_| None, false).is_err());
    }

    #[test]
    fn authorization_url_carries_pkce_state_and_nonce() {
        let p = provider_from_vars(
            "google",
            vars(&[
                ("SIGNIN_GOOGLE_CLIENT_ID", "cid"),
                ("SIGNIN_GOOGLE_CLIENT_SECRET", "sec"),
            ]),
            false,
        )
        .unwrap();
        let flow = FlowSecrets::new(&[1u8; 32]).unwrap();
        let u = authorization_url(
            "https://idp.test/auth?x=1",
            &p,
            "https://ep.test/cb",
            &flow,
            Some("a@b.c"),
        )
        .unwrap();
        let parsed = url::Url::parse(&u).unwrap();
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["x"], "1");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], flow.code_challenge);
        assert_eq!(q["state"], flow.state);
        assert_eq!(q["nonce"], flow.nonce);
        assert_eq!(q["login_hint"], "a@b.c");
        assert!(!u.contains(&flow.code_verifier) && !u.contains("sec"));
        let form = token_request_form(&p, "c0de", "https://ep.test/cb", &flow.code_verifier);
        assert!(form.contains("grant_type=authorization_code") && form.contains("code_verifier="));
    }

    #[test]
    fn discovery_must_name_the_configured_issuer() {
        let rule = IssuerRule::Exact("https://idp.test".into());
        let doc = |iss: &str| {
            serde_json::json!({"issuer": iss, "authorization_endpoint": "https://idp.test/auth",
                "token_endpoint": "https://idp.test/token", "jwks_uri": "https://idp.test/jwks"})
            .to_string()
        };
        assert!(Discovery::parse(doc("https://idp.test").as_bytes(), &rule, false).is_ok());
        assert!(Discovery::parse(doc("https://evil.test").as_bytes(), &rule, false).is_err());
        assert!(Discovery::parse(b"{}", &rule, false).is_err());
    }

    #[test]
    fn github_identity_uses_the_verified_primary_email() {
        let id = github_identity(
            br#"{"id": 42, "login": "ada", "name": "Ada"}"#,
            br#"[{"email": "old@x.test", "primary": false, "verified": true},
                 {"email": "ada@x.test", "primary": true, "verified": true}]"#,
        )
        .unwrap();
        assert_eq!(id.subject, "42");
        assert_eq!(id.email.as_deref(), Some("ada@x.test"));
        assert!(id.email_verified);
        let unverified = github_identity(
            br#"{"id": 42}"#,
            br#"[{"email": "ada@x.test", "primary": true, "verified": false}]"#,
        )
        .unwrap();
        assert!(!unverified.email_verified);
        assert!(github_identity(b"{}", b"[]").is_err());
    }
}
