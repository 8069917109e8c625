//! Where the review worker may send requests.
//!
//! Outbound calls carry an integration token or a BYOK key, so every URL is checked before the
//! request is built: it must be on an origin the org configured (its platform API or its LLM
//! provider), over HTTPS, with no credentials in the URL. Redirects are not followed blindly —
//! each hop is checked again. Loopback is reachable only when a deployment explicitly enables
//! it for local development (`ALLOW_LOOPBACK_EGRESS=true`); private, link-local, reserved,
//! multicast and every other special-purpose address never is — in IPv6 too, including the IPv6
//! forms that carry an IPv4 address (NAT64, 6to4, Teredo, mapped, compatible), which are judged
//! by the IPv4 address they lead to. Hostnames are not resolved here (Workers have no DNS API).

use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Why a URL may not be called. Logged with the host (never the path or query, which may carry
/// identifiers), and turned into a permanent failure of the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressDenied {
    InvalidUrl,
    /// `http:` outside loopback development, or a non-HTTP scheme.
    Scheme(String),
    /// `user:password@` in the URL.
    Credentials,
    /// A special-purpose address (private, link-local, reserved, multicast, …) or, when not
    /// enabled, loopback.
    Address(String),
    /// Not an origin the org configured.
    NotAllowed(String),
}

impl std::fmt::Display for EgressDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EgressDenied::InvalidUrl => f.write_str("the URL is not valid"),
            EgressDenied::Scheme(s) => write!(f, "scheme `{s}` is not allowed (https only)"),
            EgressDenied::Credentials => f.write_str("URLs must not carry credentials"),
            EgressDenied::Address(h) => write!(f, "address `{h}` is not reachable from edgeplane"),
            EgressDenied::NotAllowed(h) => write!(f, "host `{h}` is not on the egress allowlist"),
        }
    }
}

fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// IPv4 addresses that reach something other than the public internet (the special-purpose
/// registry, RFC 6890): loopback and private networks, and every block no public API lives in.
fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_documentation()
        || ip.is_multicast()
        // 0.0.0.0/8: "this network"; connecting to it reaches the local host on many stacks.
        || a == 0
        // 100.64.0.0/10: carrier-grade NAT.
        || (a == 100 && (b & 0xc0) == 64)
        // 192.0.0.0/24: IETF protocol assignments; 192.88.99.0/24: 6to4 relay anycast.
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 88 && c == 99)
        // 198.18.0.0/15: benchmarking.
        || (a == 198 && (b & 0xfe) == 18)
        // 240.0.0.0/4: reserved, including the broadcast address.
        || a >= 240
}

/// The IPv4 addresses an IPv6 address leads to: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`, deprecated), NAT64 (`64:ff9b::/96`), 6to4 (`2002::/16`) and
/// Teredo (`2001::/32`: its server, and its client stored inverted). Each must pass the IPv4
/// rules, or a private address could be spelled as a public-looking IPv6 one.
fn embedded_v4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let mut out = Vec::new();
    if let Some(v4) = ip.to_ipv4_mapped() {
        out.push(v4);
    }
    if s[..6] == [0; 6] {
        out.push(v4(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        out.push(v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        out.push(v4(s[1], s[2]));
    }
    if s[0] == 0x2001 && s[1] == 0 {
        out.push(v4(s[2], s[3]));
        out.push(v4(!s[6], !s[7]));
    }
    out
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link local
        || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[..4] == [0x100, 0, 0, 0] // discard-only
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 (RFC 8215)
        || embedded_v4(ip).into_iter().any(is_internal_v4)
}

fn is_internal_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(_) => false,
        Host::Ipv4(ip) => is_internal_v4(*ip),
        Host::Ipv6(ip) => is_internal_v6(*ip),
    }
}

/// Checks a URL's shape: scheme, credentials, address class. Shared by configuration
/// (`validate_base_url`) and every request ([`EgressPolicy::check`]).
fn check_shape(url: &Url, allow_loopback: bool) -> Result<(), EgressDenied> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EgressDenied::Credentials);
    }
    let host = url.host().ok_or(EgressDenied::InvalidUrl)?;
    let loopback = is_loopback_host(&host);
    if loopback && !allow_loopback {
        return Err(EgressDenied::Address(host.to_string()));
    }
    if !loopback && is_internal_host(&host) {
        return Err(EgressDenied::Address(host.to_string()));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        other => Err(EgressDenied::Scheme(other.to_owned())),
    }
}

/// Validates a configured API base URL and normalises it (no trailing slash, no query or
/// fragment). Used when an org saves an integration or a provider, so a bad URL is a 422 then
/// rather than a failed review later.
pub fn validate_base_url(raw: &str, allow_loopback: bool) -> Result<String, String> {
    let url = Url::parse(raw.trim()).map_err(|_| "must be an absolute URL".to_owned())?;
    check_shape(&url, allow_loopback).map_err(|e| e.to_string())?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query string or fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `scheme://host:port` of a URL, the unit the allowlist is made of.
fn origin(url: &Url) -> Option<(String, String, u16)> {
    Some((
        url.scheme().to_owned(),
        url.host_str()?.to_ascii_lowercase(),
        url.port_or_known_default()?,
    ))
}

/// The origins one job may call: the integration's API and the provider's.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allowed: Vec<(String, String, u16)>,
    allow_loopback: bool,
}

impl EgressPolicy {
    pub fn new(allow_loopback: bool) -> Self {
        Self {
            allowed: Vec::new(),
            allow_loopback,
        }
    }

    /// Adds a configured base URL's origin. Invalid or disallowed bases add nothing, so calls
    /// to them are refused later.
    pub fn allow_base(&mut self, base_url: &str) {
        if let Ok(url) = Url::parse(base_url) {
            if check_shape(&url, self.allow_loopback).is_ok() {
                if let Some(o) = origin(&url) {
                    if !self.allowed.contains(&o) {
                        self.allowed.push(o);
                    }
                }
            }
        }
    }

    /// The URL to call, or why not. Loopback origins, when enabled, are allowed as a class
    /// (local fakes listen on arbitrary ports); everything else must be configured.
    pub fn check(&self, raw: &str) -> Result<Url, EgressDenied> {
        let url = Url::parse(raw).map_err(|_| EgressDenied::InvalidUrl)?;
        check_shape(&url, self.allow_loopback)?;
        let host = url.host().ok_or(EgressDenied::InvalidUrl)?;
        if self.allow_loopback && is_loopback_host(&host) {
            return Ok(url);
        }
        let o = origin(&url).ok_or(EgressDenied::InvalidUrl)?;
        if self.allowed.contains(&o) {
            Ok(url)
        } else {
            Err(EgressDenied::NotAllowed(o.1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_https_public_and_clean() {
        assert_eq!(
            validate_base_url("https://api.github.com/", false).unwrap(),
            "https://api.github.com"
        );
        assert_eq!(
            validate_base_url("https://ghe.example.com/api/v3", false).unwrap(),
            "https://ghe.example.com/api/v3"
        );
        for bad in [
            "http://api.github.com",
            "ftp://x.example.com",
            "https://user:pw@api.github.com",
            "https://10.0.0.5/api",
            "https://169.254.169.254/latest",
            "https://[fd00::1]/",
            "https://127.0.0.1:8080",
            "http://localhost:9000",
            "https://api.github.com/?token=x",
            "not a url",
        ] {
            assert!(validate_base_url(bad, false).is_err(), "{bad}");
        }
        assert!(validate_base_url("http://127.0.0.1:9000", true).is_ok());
        assert!(validate_base_url("http://localhost:9000/api", true).is_ok());
        assert!(validate_base_url("http://10.0.0.5:9000", true).is_err());
    }

    /// Addresses that reach something other than the public internet, in every spelling the
    /// URL parser accepts, including IPv4 embedded in IPv6 (mapped, compatible, NAT64, 6to4,
    /// Teredo).
    #[test]
    fn special_purpose_addresses_are_refused_at_write_and_request_time() {
        let refused = [
            "https://0.1.2.3/", // 0.0.0.0/8 "this network"
            "https://0.0.0.0/",
            "https://198.18.0.1/", // benchmarking
            "https://198.19.255.254/",
            "https://240.0.0.1/",       // reserved
            "https://255.255.255.255/", // broadcast
            "https://224.0.0.251/",     // multicast
            "https://239.255.255.250/",
            "https://192.0.0.170/",          // IETF protocol assignments
            "https://100.64.0.1/",           // carrier-grade NAT
            "https://[64:ff9b::a00:1]/",     // NAT64 of 10.0.0.1
            "https://[64:ff9b::7f00:1]/",    // NAT64 of 127.0.0.1
            "https://[64:ff9b::a9fe:a9fe]/", // NAT64 of 169.254.169.254
            "https://[64:ff9b:1::808:808]/", // local-use NAT64 (RFC 8215)
            "https://[::10.0.0.1]/",         // IPv4-compatible
            "https://[::127.0.0.1]/",
            "https://[::169.254.169.254]/",
            "https://[::ffff:10.0.0.1]/", // IPv4-mapped
            "https://[::ffff:127.0.0.1]/",
            "https://[2002:a00:1::]/",     // 6to4 of 10.0.0.1
            "https://[2002:7f00:1::1]/",   // 6to4 of 127.0.0.1
            "https://[2002:a9fe:a9fe::]/", // 6to4 of 169.254.169.254
            "https://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/", // Teredo, client 10.0.0.1
            "https://[ff02::1]/",          // multicast
            "https://[ff0e::1]/",
            "https://[2001:db8::1]/", // documentation
            "https://[100::1]/",      // discard-only
            "https://[fec0::1]/",     // site-local
            "https://[fe80::1]/",
            "https://[fd00::1]/",
            "https://[::]/",
            "https://[::1]/",
            "https://0x7f.1/",       // 127.0.0.1 spelled in hex
            "https://017700000001/", // 127.0.0.1 spelled in octal
        ];
        for url in refused {
            assert!(validate_base_url(url, false).is_err(), "write time: {url}");
            let mut p = EgressPolicy::new(false);
            p.allow_base(url);
            assert!(
                matches!(p.check(url), Err(EgressDenied::Address(_))),
                "request time: {url}: {:?}",
                p.check(url)
            );
        }
        // Public addresses stay reachable in each form that embeds them.
        for url in [
            "https://8.8.8.8/",
            "https://[2606:4700:4700::1111]/",
            "https://[64:ff9b::808:808]/",
            "https://[2002:808:808::1]/",
            "https://198.20.0.1/",
            "https://223.255.255.1/",
        ] {
            assert!(validate_base_url(url, false).is_ok(), "{url}");
        }
        // Local development reaches loopback, and still nothing else that is internal.
        assert!(validate_base_url("http://127.0.0.1:9000", true).is_ok());
        for url in [
            "https://[64:ff9b::a00:1]/",
            "https://[2002:a00:1::]/",
            "https://0.1.2.3/",
        ] {
            assert!(validate_base_url(url, true).is_err(), "{url}");
        }
    }

    #[test]
    fn only_configured_origins_are_reachable() {
        let mut p = EgressPolicy::new(false);
        p.allow_base("https://api.github.com");
        p.allow_base("https://api.anthropic.com/v1");
        assert!(p.check("https://api.github.com/repos/o/r/pulls/1").is_ok());
        assert!(p.check("https://api.anthropic.com/v1/messages").is_ok());
        assert_eq!(
            p.check("https://evil.example.com/x").unwrap_err(),
            EgressDenied::NotAllowed("evil.example.com".into())
        );
        // Same host, other port or scheme: another origin.
        assert!(p.check("https://api.github.com:8443/x").is_err());
        assert!(p.check("http://api.github.com/x").is_err());
        // Userinfo tricks do not smuggle a host.
        assert_eq!(
            p.check("https://api.github.com@evil.example.com/")
                .unwrap_err(),
            EgressDenied::Credentials
        );
        assert!(p.check("http://127.0.0.1:9000/").is_err());
    }

    #[test]
    fn loopback_only_when_enabled() {
        let mut p = EgressPolicy::new(true);
        p.allow_base("http://127.0.0.1:4000");
        assert!(p.check("http://127.0.0.1:4000/repos").is_ok());
        assert!(p.check("http://127.0.0.1:5000/other-fake").is_ok());
        assert!(p.check("http://192.168.1.1/").is_err());
        assert!(p.check("https://api.github.com/").is_err());
    }
}
