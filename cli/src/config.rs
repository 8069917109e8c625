//! Profiles and stored credentials.
//!
//! `<config dir>/edgeplane/config.json` (`EDGEPLANE_CONFIG_DIR` overrides the directory) holds
//! named profiles: the deployment's URL and the default org. The credentials of a profile (the
//! refresh token, and the current access token with its expiry) are a secret: they go to the
//! system keyring when one answers, otherwise to `credentials-<profile>.json` next to the
//! config, created with mode 0600. The keyring is the macOS Keychain or the Windows Credential
//! Manager; Linux always uses the file (the kernel keyring forgets at logout, and the Secret
//! Service needs a D-Bus session that servers and CI rarely have). `EDGEPLANE_NO_KEYRING=1`
//! uses the file everywhere.
//! `EDGEPLANE_URL` and `EDGEPLANE_TOKEN` (an API key or access token, for CI) override a profile.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};

#[cfg(any(target_os = "macos", target_os = "windows"))]
const KEYRING_SERVICE: &str = "edgeplane";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Where the credentials are kept: `keyring` or `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// The stored credentials of a profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub access_token: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub refresh_token: String,
    #[serde(default)]
    pub scope: String,
}

/// Stands in for `keyring::Entry` where no platform keyring is built in.
#[cfg(not(any(target_os = "macos", target_os = "windows")))]
struct NoKeyring;

#[cfg(not(any(target_os = "macos", target_os = "windows")))]
impl NoKeyring {
    fn get_password(&self) -> std::result::Result<String, ()> {
        Err(())
    }
    fn set_password(&self, _: &str) -> std::result::Result<(), ()> {
        Err(())
    }
    fn delete_credential(&self) -> std::result::Result<(), ()> {
        Err(())
    }
}

pub struct Config {
    pub dir: PathBuf,
    pub profile_name: String,
    pub file: ConfigFile,
}

fn config_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("EDGEPLANE_CONFIG_DIR") {
        return Ok(PathBuf::from(d));
    }
    dirs::config_dir()
        .map(|d| d.join("edgeplane"))
        .ok_or_else(|| CliError::usage("no user config directory: set EDGEPLANE_CONFIG_DIR"))
}

fn io(what: &str, e: std::io::Error) -> CliError {
    CliError::usage(format!("{what}: {e}"))
}

impl Config {
    pub fn load(profile: &str) -> Result<Self> {
        let dir = config_dir()?;
        let path = dir.join("config.json");
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| CliError::usage(format!("{} is not valid: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
            Err(e) => return Err(io(&format!("reading {}", path.display()), e)),
        };
        Ok(Self {
            dir,
            profile_name: profile.to_owned(),
            file,
        })
    }

    pub fn profile(&self) -> Profile {
        self.file
            .profiles
            .get(&self.profile_name)
            .cloned()
            .unwrap_or_default()
    }

    pub fn set_profile(&mut self, p: Profile) -> Result<()> {
        self.file.profiles.insert(self.profile_name.clone(), p);
        self.save()
    }

    fn save(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io("creating the config dir", e))?;
        let text = serde_json::to_string_pretty(&self.file).unwrap_or_default();
        std::fs::write(self.dir.join("config.json"), text).map_err(|e| io("writing config", e))
    }

    fn credentials_path(&self) -> PathBuf {
        self.dir
            .join(format!("credentials-{}.json", self.profile_name))
    }

    /// The keyring entry of this profile: one per config dir and profile, so two config dirs
    /// never share credentials.
    #[cfg(any(target_os = "macos", target_os = "windows"))]
    fn keyring_entry(&self) -> Option<keyring::Entry> {
        if std::env::var("EDGEPLANE_NO_KEYRING").is_ok_and(|v| v == "1") {
            return None;
        }
        let user = format!("{}@{}", self.profile_name, self.dir.display());
        keyring::Entry::new(KEYRING_SERVICE, &user).ok()
    }

    /// No keyring that survives a logout here: the 0600 file.
    #[cfg(not(any(target_os = "macos", target_os = "windows")))]
    fn keyring_entry(&self) -> Option<NoKeyring> {
        None
    }

    pub fn load_credentials(&self) -> Result<Option<Credentials>> {
        let text = match self.profile().store.as_deref() {
            Some("keyring") => match self.keyring_entry().map(|e| e.get_password()) {
                Some(Ok(t)) => t,
                _ => return Ok(None),
            },
            _ => match std::fs::read_to_string(self.credentials_path()) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io("reading credentials", e)),
            },
        };
        Ok(serde_json::from_str(&text).ok())
    }

    /// Stores `creds` in the keyring if it takes them, else in a 0600 file; records where.
    pub fn store_credentials(&mut self, creds: &Credentials) -> Result<()> {
        let text = serde_json::to_string(creds).unwrap_or_default();
        let in_keyring = self
            .keyring_entry()
            .is_some_and(|e| e.set_password(&text).is_ok() && e.get_password().is_ok());
        let store = if in_keyring {
            let _ = std::fs::remove_file(self.credentials_path());
            "keyring"
        } else {
            write_private(&self.credentials_path(), &text)?;
            "file"
        };
        let mut p = self.profile();
        if p.store.as_deref() != Some(store) {
            p.store = Some(store.into());
            self.set_profile(p)?;
        }
        Ok(())
    }

    pub fn clear_credentials(&mut self) -> Result<()> {
        if let Some(e) = self.keyring_entry() {
            let _ = e.delete_credential();
        }
        match std::fs::remove_file(self.credentials_path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing credentials", e)),
        }
        let mut p = self.profile();
        p.store = None;
        self.set_profile(p)
    }
}

/// Writes `text` to `path`, readable by its owner only (created 0600 before anything is written).
fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| io("creating the config dir", e))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| io("writing credentials", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("writing credentials", e))?;
    }
    f.write_all(text.as_bytes())
        .map_err(|e| io("writing credentials", e))
}
