//! Resource identifiers: `<prefix>_<12 hex of ms time><16 hex random>`.
//!
//! The time part makes ids sort by creation, which keeps cursor pagination a plain `id < ?`; the
//! random part (64 bits) keeps them unguessable enough that enumeration is not a useful attack
//! (authorization never relies on it anyway).

use crate::crypto::random_bytes;
use crate::error::ApiError;

pub fn new_id(prefix: &str, now_millis: i64) -> Result<String, ApiError> {
    let rand = random_bytes::<8>()?;
    Ok(format!(
        "{prefix}_{:012x}{}",
        now_millis.max(0) as u64 & 0xffff_ffff_ffff,
        hex::encode(rand)
    ))
}

/// Whether `s` is shaped like an id with `prefix`. Used to answer 404 early for junk path
/// segments without touching the database.
pub fn looks_like_id(s: &str, prefix: &str) -> bool {
    s.len() == prefix.len() + 1 + 28
        && s.starts_with(prefix)
        && s.as_bytes()[prefix.len()] == b'_'
        && s[prefix.len() + 1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a {kind} id")]
pub struct IdError {
    pub kind: &'static str,
}

/// A typed resource id. Each kind is its own type, so a round id can never be passed where a
/// model id is expected, and a value of the type is always well formed: parsing is the only way
/// in (path segments, JSON, stored rows), and junk never reaches a query.
pub trait TypedId: Sized + AsRef<str> {
    /// The prefix before the `_`.
    const PREFIX: &'static str;
    /// What the resource is called in error messages (`"round"`).
    const KIND: &'static str;
    fn parse(s: &str) -> Result<Self, IdError>;
}

macro_rules! typed_ids {
    ($($(#[$doc:meta])* $name:ident => $prefix:literal, $kind:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh id created at `now_millis`.
            pub fn generate(now_millis: i64) -> Result<Self, ApiError> {
                new_id($prefix, now_millis).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TypedId for $name {
            const PREFIX: &'static str = $prefix;
            const KIND: &'static str = $kind;
            fn parse(s: &str) -> Result<Self, IdError> {
                if looks_like_id(s, $prefix) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdError { kind: $kind })
                }
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                <Self as TypedId>::parse(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <Self as TypedId>::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl From<$name> for crate::store::Value {
            fn from(v: $name) -> Self {
                crate::store::Value::Text(v.0)
            }
        }

        impl From<&$name> for crate::store::Value {
            fn from(v: &$name) -> Self {
                crate::store::Value::Text(v.0.clone())
            }
        }

        impl crate::store::FromValue for $name {
            fn from_value(v: &crate::store::Value) -> Option<Self> {
                match v {
                    crate::store::Value::Text(s) => <Self as TypedId>::parse(s).ok(),
                    _ => None,
                }
            }
        }
    )*};
}

typed_ids! {
    OrgId => "org", "organization";
    UserId => "usr", "user";
    SessionId => "ses", "session";
    ApiKeyId => "key", "API key";
    InvitationId => "inv", "invitation";
    ProbeId => "qpr", "queue probe";
    DeviceId => "dev", "device";
    DeviceGroupId => "dgr", "device group";
    ModelId => "mdl", "model";
    ModelVersionId => "mv", "model version";
    RoundId => "rnd", "round";
    DeploymentId => "dep", "deployment";
    PlanId => "pln", "plan";
    UploadId => "upl", "upload";
    IntegrationId => "int", "integration";
    ProviderId => "llm", "LLM provider";
    ReviewId => "rev", "review";
    DeliveryRowId => "whd", "webhook delivery";
    AuditEventId => "aud", "audit event";
    AuditExportJobId => "aex", "audit export job";
    ScimGroupId => "scg", "group";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_validate() {
        let a = new_id("org", 1_000).unwrap();
        let b = new_id("org", 2_000).unwrap();
        assert!(a < b);
        assert!(looks_like_id(&a, "org"));
        assert!(!looks_like_id(&a, "usr"));
        assert!(!looks_like_id("org_../../etc", "org"));
    }

    #[test]
    fn typed_ids_parse_only_their_own_kind() {
        let raw = new_id("rnd", 5).unwrap();
        let id: RoundId = raw.parse().unwrap();
        assert_eq!(id.as_str(), raw);
        assert_eq!(raw.parse::<ModelId>(), Err(IdError { kind: "model" }));
        assert!("rnd_zz".parse::<RoundId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<RoundId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ModelId>(&json).is_err());
        assert!(RoundId::generate(9).unwrap().as_str().starts_with("rnd_"));
    }
}
