//! What an org configures: git platform integrations and LLM providers, validated once when
//! saved so the review worker can trust the stored shape.

use crate::error::ApiError;
use crate::review::egress::validate_base_url;
use crate::review::git_platform::Platform;

/// Where the platform runs: the vendor's cloud or the customer's own server (GitHub Enterprise
/// Server, GitLab self-managed, Bitbucket Data Center). Bitbucket's two speak different APIs;
/// GitHub's and GitLab's differ only in base URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Deployment {
    Cloud,
    DataCenter,
}

impl Deployment {
    pub fn as_str(self) -> &'static str {
        match self {
            Deployment::Cloud => "cloud",
            Deployment::DataCenter => "datacenter",
        }
    }
}

/// The REST API flavour a review talks to, decided by platform and deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformApi {
    GitHub,
    GitLab,
    BitbucketCloud,
    BitbucketDataCenter,
}

impl PlatformApi {
    pub fn of(platform: Platform, deployment: Deployment) -> Self {
        match (platform, deployment) {
            (Platform::GitHub, _) => PlatformApi::GitHub,
            (Platform::GitLab, _) => PlatformApi::GitLab,
            (Platform::Bitbucket, Deployment::Cloud) => PlatformApi::BitbucketCloud,
            (Platform::Bitbucket, Deployment::DataCenter) => PlatformApi::BitbucketDataCenter,
        }
    }

    /// The web page of pull request `number` of `repo_name` (`owner/name`; Bitbucket Data
    /// Center: `PROJECT/slug`), for people: the web host is the API's, without the API's path
    /// (`api.github.com` and `api.bitbucket.org` are the cloud's web hosts without `api.`).
    /// `None` for a base URL that is not http(s).
    pub fn pull_request_url(
        self,
        api_base_url: &str,
        repo_name: &str,
        number: u64,
    ) -> Option<String> {
        let base = api_base_url.trim_end_matches('/');
        let (scheme, rest) = base.split_once("://")?;
        if scheme != "https" && scheme != "http" {
            return None;
        }
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = match (self, host) {
            (PlatformApi::GitHub, "api.github.com") => "github.com",
            (PlatformApi::BitbucketCloud, "api.bitbucket.org") => "bitbucket.org",
            (_, h) => h,
        };
        // Self-hosted servers serve the API under a path of the web host.
        let api_path = match self {
            PlatformApi::GitHub => "api/v3",
            PlatformApi::GitLab => "api/v4",
            PlatformApi::BitbucketCloud => "2.0",
            PlatformApi::BitbucketDataCenter => "rest/api/1.0",
        };
        let prefix = path
            .strip_suffix(api_path)
            .unwrap_or(path)
            .trim_end_matches('/');
        let web = if prefix.is_empty() {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}/{prefix}")
        };
        Some(match self {
            PlatformApi::GitHub => format!("{web}/{repo_name}/pull/{number}"),
            PlatformApi::GitLab => format!("{web}/{repo_name}/-/merge_requests/{number}"),
            PlatformApi::BitbucketCloud => format!("{web}/{repo_name}/pull-requests/{number}"),
            PlatformApi::BitbucketDataCenter => {
                let (project, slug) = repo_name.split_once('/')?;
                format!("{web}/projects/{project}/repos/{slug}/pull-requests/{number}")
            }
        })
    }

    /// The API root of the vendor's cloud; self-hosted deployments must name theirs.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            PlatformApi::GitHub => Some("https://api.github.com"),
            PlatformApi::GitLab => Some("https://gitlab.com/api/v4"),
            PlatformApi::BitbucketCloud => Some("https://api.bitbucket.org/2.0"),
            PlatformApi::BitbucketDataCenter => None,
        }
    }
}

/// LLM provider wire formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Anthropic Messages API.
    Anthropic,
    /// OpenAI Chat Completions.
    #[serde(rename = "openai")]
    OpenAi,
    /// Google Gemini `generateContent`.
    Gemini,
    /// Any Chat Completions-compatible endpoint (OpenRouter, vLLM, Azure-style gateways).
    #[serde(rename = "openai_compatible")]
    OpenAiCompatible,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Anthropic,
        ProviderKind::OpenAi,
        ProviderKind::Gemini,
        ProviderKind::OpenAiCompatible,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenAi => "openai",
            ProviderKind::Gemini => "gemini",
            ProviderKind::OpenAiCompatible => "openai_compatible",
        }
    }

    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Anthropic => Some("https://api.anthropic.com/v1"),
            ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com/v1beta"),
            ProviderKind::OpenAiCompatible => None,
        }
    }

    /// Whether the wire format has an embeddings endpoint edgeplane can use.
    pub fn offers_embeddings(self) -> bool {
        !matches!(self, ProviderKind::Anthropic)
    }
}

/// The configured base URL, or the vendor default, validated for egress.
pub fn base_url(
    given: Option<&str>,
    default: Option<&str>,
    allow_loopback: bool,
    what: &str,
) -> Result<String, ApiError> {
    let raw = given
        .or(default)
        .ok_or_else(|| ApiError::validation(format!("{what} is required for this kind")))?;
    validate_base_url(raw, allow_loopback).map_err(|e| ApiError::validation(format!("{what} {e}")))
}

/// Model names go into URL paths (Gemini) and request bodies: a conservative alphabet.
pub fn model_name(s: &str, what: &str) -> Result<String, ApiError> {
    let t = s.trim();
    let ok = (1..=200).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/@-".contains(&b))
        && !t.split('/').any(|seg| seg.is_empty() || seg == "..");
    if ok {
        Ok(t.to_owned())
    } else {
        Err(ApiError::validation(format!(
            "{what} must be 1-200 characters of letters, digits and . _ : / @ -"
        )))
    }
}

/// Secrets (tokens, webhook secrets, API keys): non-empty, bounded, printable ASCII without
/// spaces. The message never echoes the value.
pub fn secret(s: &str, what: &str, min_len: usize) -> Result<String, ApiError> {
    let ok = (min_len..=4096).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(ApiError::validation(format!(
            "{what} must be {min_len}-4096 printable characters without spaces"
        )))
    }
}

/// Bounds for a provider's token budget: large enough to be useful, small enough for a Worker.
pub const INPUT_TOKENS_RANGE: (u32, u32) = (2_000, 1_000_000);
pub const OUTPUT_TOKENS_RANGE: (u32, u32) = (256, 64_000);
pub const DEFAULT_MAX_INPUT_TOKENS: u32 = 48_000;
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 4_096;

pub fn in_range(v: u32, (lo, hi): (u32, u32), what: &str) -> Result<u32, ApiError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::validation(format!(
            "{what} must be between {lo} and {hi}"
        )))
    }
}

/// How long the previous webhook secret keeps verifying after a rotation.
pub const DEFAULT_OVERLAP_SECONDS: u32 = 24 * 3600;
pub const MAX_OVERLAP_SECONDS: u32 = 7 * 24 * 3600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_request_pages_for_people() {
        let url = |api: PlatformApi, base: &str, repo: &str| api.pull_request_url(base, repo, 7);
        assert_eq!(
            url(PlatformApi::GitHub, "https://api.github.com", "acme/app").as_deref(),
            Some("https://github.com/acme/app/pull/7")
        );
        assert_eq!(
            url(
                PlatformApi::GitHub,
                "https://ghe.example.com/api/v3/",
                "acme/app"
            )
            .as_deref(),
            Some("https://ghe.example.com/acme/app/pull/7")
        );
        assert_eq!(
            url(
                PlatformApi::GitLab,
                "https://gitlab.com/api/v4",
                "grp/sub/app"
            )
            .as_deref(),
            Some("https://gitlab.com/grp/sub/app/-/merge_requests/7")
        );
        assert_eq!(
            url(
                PlatformApi::BitbucketCloud,
                "https://api.bitbucket.org/2.0",
                "ws/app"
            )
            .as_deref(),
            Some("https://bitbucket.org/ws/app/pull-requests/7")
        );
        assert_eq!(
            url(
                PlatformApi::BitbucketDataCenter,
                "https://bb.example.com/rest/api/1.0",
                "PRJ/app"
            )
            .as_deref(),
            Some("https://bb.example.com/projects/PRJ/repos/app/pull-requests/7")
        );
        assert_eq!(url(PlatformApi::GitHub, "javascript:alert(1)", "a/b"), None);
    }

    #[test]
    fn serde_names_are_the_stored_names() {
        for k in ProviderKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
            assert_eq!(
                serde_json::from_value::<ProviderKind>(k.as_str().into()).unwrap(),
                k
            );
        }
        for d in [Deployment::Cloud, Deployment::DataCenter] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
        assert!(serde_json::from_str::<ProviderKind>("\"open_ai\"").is_err());
        assert!(serde_json::from_str::<Deployment>("\"moon\"").is_err());
    }

    #[test]
    fn defaults_and_validation() {
        assert_eq!(
            base_url(
                None,
                PlatformApi::GitHub.default_base_url(),
                false,
                "api_base_url"
            )
            .unwrap(),
            "https://api.github.com"
        );
        assert!(base_url(
            None,
            PlatformApi::BitbucketDataCenter.default_base_url(),
            false,
            "api_base_url"
        )
        .is_err());
        assert!(base_url(Some("http://127.0.0.1:1"), None, false, "x").is_err());
        assert!(model_name("claude-sonnet-4-5", "model").is_ok());
        assert!(model_name("openai/gpt-4o-mini", "model").is_ok());
        assert!(model_name("../../x", "model").is_err());
        assert!(model_name("a?b", "model").is_err());
        assert!(secret("short", "webhook_secret", 16).is_err());
        assert!(secret(&"x".repeat(16), "webhook_secret", 16).is_ok());
        let e = secret("has space inside it", "access_token", 1).unwrap_err();
        assert!(!e.message.contains("inside"));
        assert_eq!(
            serde_json::from_str::<ProviderKind>("\"openai_compatible\"").unwrap(),
            ProviderKind::OpenAiCompatible
        );
        assert!(!ProviderKind::Anthropic.offers_embeddings());
    }
}
