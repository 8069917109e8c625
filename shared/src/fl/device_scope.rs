//! What a device token may do. Devices have their own small vocabulary (the names the Octomil
//! SDKs send), deliberately separate from org API scopes: a device never calls the control plane.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceScope {
    /// Take part in federated rounds and report heartbeats (the SDK default).
    DevicesWrite,
    /// Report heartbeats only.
    HeartbeatWrite,
    /// Download model versions.
    ModelsRead,
}

const ALL: [DeviceScope; 3] = [
    DeviceScope::DevicesWrite,
    DeviceScope::HeartbeatWrite,
    DeviceScope::ModelsRead,
];

impl DeviceScope {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceScope::DevicesWrite => "devices:write",
            DeviceScope::HeartbeatWrite => "heartbeat:write",
            DeviceScope::ModelsRead => "models:read",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceScopes(u8);

impl DeviceScopes {
    pub fn default_grant() -> Self {
        Self(DeviceScope::DevicesWrite.bit())
    }

    pub fn parse_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut s = 0;
        for n in names {
            let scope = ALL
                .into_iter()
                .find(|d| d.as_str() == n)
                .ok_or_else(|| format!("unknown device scope `{n}`"))?;
            s |= scope.bit();
        }
        Ok(Self(s))
    }

    pub fn contains(self, s: DeviceScope) -> bool {
        self.0 & s.bit() != 0
    }

    pub fn contains_all(self, other: DeviceScopes) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Heartbeats are allowed by either scope.
    pub fn may_heartbeat(self) -> bool {
        self.contains(DeviceScope::DevicesWrite) || self.contains(DeviceScope::HeartbeatWrite)
    }

    pub fn may_download_models(self) -> bool {
        self.contains(DeviceScope::DevicesWrite) || self.contains(DeviceScope::ModelsRead)
    }

    pub fn names(self) -> Vec<&'static str> {
        ALL.into_iter()
            .filter(|d| self.contains(*d))
            .map(DeviceScope::as_str)
            .collect()
    }

    pub fn to_space_separated(self) -> String {
        self.names().join(" ")
    }
}

impl Serialize for DeviceScopes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for DeviceScopes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        DeviceScopes::parse_list(names.iter().map(String::as_str)).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_narrow_and_serialize() {
        let all =
            DeviceScopes::parse_list(["devices:write", "heartbeat:write", "models:read"]).unwrap();
        let hb = DeviceScopes::parse_list(["heartbeat:write"]).unwrap();
        assert!(all.contains_all(hb) && !hb.contains_all(all));
        assert!(hb.may_heartbeat() && !hb.contains(DeviceScope::DevicesWrite));
        assert!(DeviceScopes::default_grant().may_download_models());
        assert!(DeviceScopes::parse_list(["rounds:write"]).is_err());
        assert_eq!(
            serde_json::to_string(&hb).unwrap(),
            r#"["heartbeat:write"]"#
        );
        assert_eq!(
            all.to_space_separated(),
            "devices:write heartbeat:write models:read"
        );
    }
}
