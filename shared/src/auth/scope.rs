//! Scopes: the unit of permission for API keys, CLI tokens and devices, and what roles expand to.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! scopes {
    ($($variant:ident = $name:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Scope { $($variant,)* }

        impl Scope {
            pub const ALL: &'static [Scope] = &[$(Scope::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Scope::$variant => $name,)* }
            }

            pub fn parse(s: &str) -> Option<Scope> {
                match s { $($name => Some(Scope::$variant),)* _ => None }
            }
        }
    };
}

scopes! {
    OrgRead = "org:read",
    OrgAdmin = "org:admin",
    OrgOwner = "org:owner",
    MembersRead = "members:read",
    MembersWrite = "members:write",
    ApiKeysRead = "api_keys:read",
    ApiKeysWrite = "api_keys:write",
    AuditRead = "audit:read",
    DevicesRead = "devices:read",
    DevicesWrite = "devices:write",
    ModelsRead = "models:read",
    ModelsWrite = "models:write",
    RoundsRead = "rounds:read",
    RoundsWrite = "rounds:write",
    IntegrationsRead = "integrations:read",
    IntegrationsWrite = "integrations:write",
    ReviewsRead = "reviews:read",
    ReviewsWrite = "reviews:write",
    // Provisioning through `/scim/v2`, and nothing else: a key holding it serves only SCIM
    // (see `Scopes::validate_scim_only`), and SCIM takes no other credential.
    Scim = "scim",
}

/// A set of scopes as a bit set: cheap to copy, intersect and compare on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u32);

impl Scopes {
    pub const fn empty() -> Self {
        Scopes(0)
    }

    pub fn all() -> Self {
        Self::from_iter(Scope::ALL.iter().copied())
    }

    pub fn contains(self, s: Scope) -> bool {
        self.0 & (1 << s as u8) != 0
    }

    pub fn contains_all(self, other: Scopes) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Scopes) -> Scopes {
        Scopes(self.0 | other.0)
    }

    pub fn intersect(self, other: Scopes) -> Scopes {
        Scopes(self.0 & other.0)
    }

    pub fn without(self, s: Scope) -> Scopes {
        Scopes(self.0 & !(1 << s as u8))
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .iter()
            .copied()
            .filter(move |s| self.contains(*s))
    }

    /// Parses a list of scope names; unknown names are an error (never silently dropped, so a
    /// typo cannot produce a key with less access than its creator believes, or more).
    pub fn parse_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Scopes, String> {
        let mut out = Scopes::empty();
        for n in names {
            match Scope::parse(n) {
                Some(s) => out = out.union(Scopes::from_iter([s])),
                None => return Err(format!("unknown scope `{n}`")),
            }
        }
        Ok(out)
    }

    /// Space-separated, the form stored in D1 and used in OAuth `scope` fields.
    pub fn to_space_separated(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }

    /// A key with `scim` holds nothing else: an IdP's credential is kept in another system
    /// (the IdP's provisioning settings) and should open exactly one door.
    pub fn validate_scim_only(self) -> Result<(), String> {
        if self.contains(Scope::Scim) && self != Scopes::from_iter([Scope::Scim]) {
            Err("the `scim` scope cannot be combined with other scopes".into())
        } else {
            Ok(())
        }
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |acc, s| acc | (1 << s as u8)))
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Scope::as_str))
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        Scopes::parse_list(names.iter().map(String::as_str)).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trip_and_reject_unknown() {
        let s = Scopes::parse_list(["rounds:read", "devices:write"]).unwrap();
        assert!(s.contains(Scope::RoundsRead));
        assert!(!s.contains(Scope::RoundsWrite));
        assert_eq!(s.to_space_separated(), "devices:write rounds:read");
        assert!(Scopes::parse_list(["rounds:admin"]).is_err());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"["devices:write","rounds:read"]"#);
        assert_eq!(serde_json::from_str::<Scopes>(&json).unwrap(), s);
        assert!(serde_json::from_str::<Scopes>(r#"["nope"]"#).is_err());
    }

    #[test]
    fn scim_stands_alone() {
        assert!(Scopes::from_iter([Scope::Scim])
            .validate_scim_only()
            .is_ok());
        assert!(Scopes::from_iter([Scope::RoundsRead])
            .validate_scim_only()
            .is_ok());
        assert!(Scopes::from_iter([Scope::Scim, Scope::MembersRead])
            .validate_scim_only()
            .is_err());
    }

    #[test]
    fn all_scopes_fit_in_the_bitset() {
        assert!(Scope::ALL.len() <= 32);
        assert_eq!(Scopes::all().iter().count(), Scope::ALL.len());
    }
}
