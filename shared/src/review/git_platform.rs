//! Which git platform: the one type the webhook intake, the review pipeline and the API share.

use serde::{Deserialize, Serialize};

/// The git platforms edgeplane serves: webhooks come from them, reviews are posted to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    GitHub,
    GitLab,
    Bitbucket,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::GitHub => "github",
            Platform::GitLab => "gitlab",
            Platform::Bitbucket => "bitbucket",
        }
    }
}
