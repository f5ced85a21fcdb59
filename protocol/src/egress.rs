//! Where recorded browsers may go: the URL policy of the coordinator,
//! checked on the URL a request names and, by the worker's egress proxy, on
//! every host the page then asks for and every address those names resolve
//! to. Pure: names and addresses in, a verdict with its reason out.
//!
//! A job sends a browser to a URL a client chose, and whatever the page
//! shows ends up in the video, so by default nothing inside the fleet's own
//! networks is reachable: loopback, private ranges (RFC 1918, ULA, CGNAT),
//! link-local (cloud metadata), this machine's own addresses, cluster
//! names. An operator admits an internal class server on purpose with
//! `allow_internal`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Checks that `url` is an absolute http or https URL with a host. This is
/// the part of URL policy that needs no configuration; see [`UrlPolicy`].
pub fn check_url_syntax(url: &str) -> Result<url::Url, String> {
    if url.len() > 2048 {
        return Err(format!(
            "is {} bytes long, at most 2048 are allowed",
            url.len()
        ));
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("\"{url}\" is not a URL: {e}"))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "scheme \"{other}\" is not allowed: only http and https pages can be recorded"
            ))
        }
    }
    if parsed.host_str().unwrap_or("").is_empty() {
        return Err(format!("\"{url}\" has no host"));
    }
    Ok(parsed)
}

/// Where the coordinator lets browsers go. The coordinator checks a
/// request's URL with [`UrlPolicy::check`]; workers get the policy in their
/// welcome and check every request of the page with
/// [`UrlPolicy::check_host`] and [`UrlPolicy::check_addr`].
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlPolicy {
    /// If not empty, the only hosts (exact, or `*.example.com` suffix) a
    /// recording's URL may name. Only the URL a request names is held to
    /// it: the page's own subresources (a CDN) are not.
    pub allowed_hosts: Vec<String>,
    /// Allow link-local addresses (169.254.0.0/16, fe80::/10), off by default.
    pub allow_link_local: bool,
    /// Destinations refused by default but admitted on purpose: a host name
    /// (exact, or `*.suffix`; every address it resolves to is admitted), an
    /// address, or a range (`10.1.0.0/16`, `fd00::/8`). The local dev fleet
    /// admits loopback this way.
    pub allow_internal: Vec<String>,
}

/// Why a destination is refused, in words an operator can act on.
pub type Refusal = String;

impl UrlPolicy {
    /// The policy of the local dev fleet: loopback pages are what it
    /// records.
    pub fn loopback_allowed() -> UrlPolicy {
        UrlPolicy {
            allow_internal: vec!["127.0.0.0/8".into(), "::1".into(), "localhost".into()],
            ..UrlPolicy::default()
        }
    }

    /// Checks the URL a recording request names: syntax, the allow-list,
    /// and its host as far as it can be judged without resolving it (a
    /// literal address, or a name that is internal by its form). The
    /// worker's proxy checks what names resolve to.
    pub fn check(&self, url: &str) -> Result<(), Refusal> {
        let parsed = check_url_syntax(url)?;
        let host = host_of(&parsed);
        if !self.allowed_hosts.is_empty()
            && !self.allowed_hosts.iter().any(|a| host_matches(a, &host))
        {
            return Err(format!("host {host} is not in the allow-list"));
        }
        self.check_host(&host)
    }

    /// Checks a URL set by the operator (a webhook receiver), which may be
    /// internal on purpose: syntax, the allow-list, and never a link-local
    /// or metadata address.
    pub fn check_operator_url(&self, url: &str) -> Result<(), Refusal> {
        let parsed = check_url_syntax(url)?;
        let host = host_of(&parsed);
        if let Ok(ip) = host.parse::<IpAddr>() {
            if !self.allow_link_local && is_link_local_or_metadata(ip) {
                return Err(format!(
                    "host {host} is a link-local or metadata address, refused by policy"
                ));
            }
        }
        if METADATA_NAMES.contains(&host.as_str()) {
            return Err(format!(
                "host {host} is a metadata service, refused by policy"
            ));
        }
        if !self.allowed_hosts.is_empty()
            && !self.allowed_hosts.iter().any(|a| host_matches(a, &host))
        {
            return Err(format!("host {host} is not in the allow-list"));
        }
        Ok(())
    }

    /// Checks a host a page asks for (a name, or an address literal,
    /// IPv6 with or without brackets), before it is resolved.
    pub fn check_host(&self, host: &str) -> Result<(), Refusal> {
        let host = normalize_host(host);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.check_addr(&host, ip);
        }
        if self.admits_name(&host) {
            return Ok(());
        }
        match internal_name(&host) {
            Some(what) => Err(format!("host {host} is {what}, refused by policy")),
            None => Ok(()),
        }
    }

    /// Checks an address `host` resolved to (or the literal itself).
    pub fn check_addr(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        let host = normalize_host(host);
        let Some(class) = classify(ip) else {
            return Ok(());
        };
        if self.admits_name(&host) || self.admits_addr(ip) {
            return Ok(());
        }
        if class == AddrClass::LinkLocal && self.allow_link_local {
            return Ok(());
        }
        if host == ip.to_string() {
            Err(format!("{ip} is {}, refused by policy", class.words()))
        } else {
            Err(format!(
                "host {host} resolves to {ip}, {}, refused by policy",
                class.words()
            ))
        }
    }

    /// Whether `host` or `ip` is admitted on purpose by `allow_internal`.
    pub fn admits(&self, host: &str, ip: IpAddr) -> bool {
        self.admits_name(&normalize_host(host)) || self.admits_addr(ip)
    }

    fn admits_name(&self, host: &str) -> bool {
        self.allow_internal
            .iter()
            .filter(|a| parse_range(a).is_none())
            .any(|a| host_matches(a, host))
    }

    fn admits_addr(&self, ip: IpAddr) -> bool {
        self.allow_internal
            .iter()
            .filter_map(|a| parse_range(a))
            .any(|(net, len)| in_range(ip, net, len))
    }

    /// Checks the policy's own entries: every `allow_internal` entry is a
    /// host pattern or a valid range.
    pub fn validate(&self) -> Result<(), Refusal> {
        for a in &self.allow_internal {
            if a.contains('/') && parse_range(a).is_none() {
                return Err(format!(
                    "allow_internal entry \"{a}\" is not a valid address range (like 10.1.0.0/16)"
                ));
            }
            if a.is_empty() || a.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "allow_internal entry \"{a}\" is empty or has spaces"
                ));
            }
        }
        Ok(())
    }
}

/// Names of cloud metadata services that are not single labels.
const METADATA_NAMES: [&str; 2] = ["metadata.google.internal", "metadata.azure.com"];

fn host_of(parsed: &url::Url) -> String {
    normalize_host(parsed.host_str().unwrap_or(""))
}

/// Lower case, no brackets, no trailing dot: `Metadata.Google.Internal.`
/// and `[::1]` are the same hosts as `metadata.google.internal` and `::1`.
fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = normalize_host(pattern);
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    }
}

/// Why a name is internal by its form alone, if it is: it resolves inside
/// the machine, the cluster or the cloud, whatever DNS says from outside.
fn internal_name(host: &str) -> Option<&'static str> {
    if METADATA_NAMES.contains(&host) {
        return Some("a metadata service");
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return Some("this machine");
    }
    // A single label goes through the resolver's search list: `metadata`,
    // `instance-data`, `kubernetes`, a service of the worker's namespace.
    if !host.contains('.') {
        return Some(
            "a name without a domain (resolved by the search list: cluster or cloud internal)",
        );
    }
    const INTERNAL_SUFFIXES: [&str; 7] = [
        ".internal",
        ".local",
        ".localdomain",
        ".svc",
        ".cluster.local",
        ".home.arpa",
        ".in-addr.arpa",
    ];
    if INTERNAL_SUFFIXES.iter().any(|s| host.ends_with(s)) || host.contains(".svc.") {
        return Some("a cluster or site internal name");
    }
    None
}

/// The kinds of address refused by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddrClass {
    Loopback,
    Unspecified,
    LinkLocal,
    Private,
    SharedCgnat,
    Multicast,
    Reserved,
}

impl AddrClass {
    fn words(self) -> &'static str {
        match self {
            AddrClass::Loopback => "a loopback address",
            AddrClass::Unspecified => "the unspecified address (this machine)",
            AddrClass::LinkLocal => "a link-local address (cloud metadata lives there)",
            AddrClass::Private => "a private address",
            AddrClass::SharedCgnat => "a shared (CGNAT) address",
            AddrClass::Multicast => "a multicast or broadcast address",
            AddrClass::Reserved => "a reserved address",
        }
    }
}

/// Which refused kind an address is, looking through the IPv6 forms that
/// carry an IPv4 address (mapped, compatible, NAT64, 6to4).
fn classify(ip: IpAddr) -> Option<AddrClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return classify_v4(v4);
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some(AddrClass::Loopback)
            } else if v6.is_unspecified() {
                Some(AddrClass::Unspecified)
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some(AddrClass::LinkLocal)
            } else if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfec0 {
                // ULA, and the deprecated site-local range.
                Some(AddrClass::Private)
            } else if (s[0] & 0xff00) == 0xff00 {
                Some(AddrClass::Multicast)
            } else if s[0] == 0x2001 && s[1] == 0 {
                // Teredo hides its IPv4 address: refused whole.
                Some(AddrClass::Reserved)
            } else {
                None
            }
        }
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible (::a.b.c.d, deprecated), but not :: and ::1.
    if s[..6].iter().all(|x| *x == 0) && (s[6] != 0 || s[7] > 1) {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // NAT64, well-known and local-use prefixes (64:ff9b::/96, 64:ff9b:1::/48).
    if s[0] == 0x64 && s[1] == 0xff9b {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

fn classify_v4(v4: Ipv4Addr) -> Option<AddrClass> {
    let o = v4.octets();
    if v4.is_loopback() {
        Some(AddrClass::Loopback)
    } else if o[0] == 0 {
        Some(AddrClass::Unspecified)
    } else if v4.is_link_local() {
        Some(AddrClass::LinkLocal)
    } else if v4.is_private() {
        Some(AddrClass::Private)
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        // 100.64.0.0/10, where Alibaba's metadata (100.100.100.200) is.
        Some(AddrClass::SharedCgnat)
    } else if v4.is_multicast() || v4.is_broadcast() {
        Some(AddrClass::Multicast)
    } else if o[0] >= 240
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
    {
        // 240/4, IETF protocol assignments (192.0.0/24), benchmarking
        // (198.18/15).
        Some(AddrClass::Reserved)
    } else {
        None
    }
}

/// `10.1.0.0/16`, `fd00::/8`, or one address: (network, prefix length).
fn parse_range(s: &str) -> Option<(IpAddr, u8)> {
    let s = normalize_host(s);
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let a = s.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

fn in_range(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    let bits = |ip: IpAddr| -> (u128, u32) {
        match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    };
    // An IPv4 address in IPv6 dress is matched as IPv4.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let ((a, wa), (n, wn)) = (bits(ip), bits(net));
    if wa != wn {
        return false;
    }
    let len = u32::from(len);
    if len == 0 {
        return true;
    }
    let shift = wa - len;
    (a >> shift) == (n >> shift)
}

fn is_link_local_or_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.octets() == [100, 100, 100, 200],
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
                // AWS's IPv6 instance metadata endpoint.
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_schemes_are_refused() {
        for url in [
            "file:///x",
            "chrome://settings",
            "javascript:alert(1)",
            "data:text/html,x",
            "ftp://h/x",
            "not a url",
        ] {
            assert!(check_url_syntax(url).is_err(), "{url}");
        }
        assert!(check_url_syntax("https://class.example.com/room/1?x=2").is_ok());
    }

    /// Every form the attacker tried on the first version.
    #[test]
    fn internal_destinations_in_every_spelling_are_refused_by_default() {
        let p = UrlPolicy::default();
        for url in [
            "http://localhost:9000/",
            "http://LOCALHOST./",
            "http://app.localhost/",
            "http://127.1/",
            "http://0x7f.1/",
            "http://2130706433/",
            "http://0.0.0.0:8080/",
            "http://[::1]:9100/metrics",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://100.100.100.200/latest/meta-data",
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/",
            "http://[fd00:ec2::254]/",
            "http://[fc00::1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::1]/",
            "http://[::a9fe:a9fe]/",
            "http://kubernetes.default.svc/",
            "http://kubernetes.default.svc.cluster.local./",
            "http://kubernetes/",
            "http://metadata/",
            "http://instance-data/",
            "http://metadata.google.internal./computeMetadata/v1/",
            "http://printer.local/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            let e = p.check(url).expect_err(url);
            assert!(e.contains("refused by policy"), "{url}: {e}");
        }
        for url in [
            "https://class.example.com/room/1",
            "http://93.184.215.14/",
            "http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/",
            "http://169.254.169.254.nip.io/",
        ] {
            assert_eq!(p.check(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn names_are_judged_again_by_what_they_resolve_to() {
        let p = UrlPolicy::default();
        let meta: IpAddr = "169.254.169.254".parse().unwrap();
        let e = p.check_addr("169.254.169.254.nip.io", meta).unwrap_err();
        assert!(
            e.contains("resolves to 169.254.169.254") && e.contains("link-local"),
            "{e}"
        );
        assert!(p
            .check_addr("class.example.com", "93.184.215.14".parse().unwrap())
            .is_ok());
        assert!(p
            .check_addr("class.example.com", "10.0.0.7".parse().unwrap())
            .is_err());
        assert!(p
            .check_addr("x.example", "::ffff:192.168.0.1".parse().unwrap())
            .is_err());
    }

    #[test]
    fn the_allow_list_admits_internal_hosts_on_purpose() {
        let p = UrlPolicy {
            allow_internal: vec![
                "class.corp.example".into(),
                "*.lab.example".into(),
                "10.20.0.0/16".into(),
                "fd12::/16".into(),
                "192.168.7.7".into(),
            ],
            ..UrlPolicy::default()
        };
        assert_eq!(p.validate(), Ok(()));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // A name admitted: every address it resolves to.
        assert!(p.check_addr("class.corp.example", ip("10.9.9.9")).is_ok());
        assert!(p.check_addr("a.lab.example", ip("127.0.0.1")).is_ok());
        assert!(p.check_addr("other.example", ip("10.9.9.9")).is_err());
        // A range admitted: whatever name led there.
        assert!(p.check_addr("any.example", ip("10.20.3.4")).is_ok());
        assert!(p.check_addr("any.example", ip("10.21.3.4")).is_err());
        assert!(p.check("http://[fd12::5]/").is_ok());
        assert!(p.check("http://[fd13::5]/").is_err());
        assert!(p.check("http://192.168.7.7/").is_ok());
        assert!(p.check("http://192.168.7.8/").is_err());
        let dev = UrlPolicy::loopback_allowed();
        assert!(dev.check("http://127.0.0.1:8123/class.html").is_ok());
        assert!(dev.check("http://localhost:8123/").is_ok());
        assert!(dev.check("http://[::1]:8123/").is_ok());
        assert!(dev.check("http://10.0.0.1/").is_err());
        assert!(dev.check("http://169.254.169.254/").is_err());
        let bad = UrlPolicy {
            allow_internal: vec!["10.0.0.0/99".into()],
            ..UrlPolicy::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn link_local_can_be_allowed_and_the_allow_list_limits_hosts() {
        let p = UrlPolicy {
            allow_link_local: true,
            ..UrlPolicy::default()
        };
        assert!(p.check("http://169.254.169.254/").is_ok());
        assert!(p.check("http://10.0.0.1/").is_err());
        let allow = UrlPolicy {
            allowed_hosts: vec!["*.school.example".into(), "localhost".into()],
            ..Default::default()
        };
        assert!(allow.check("https://a.school.example/x").is_ok());
        assert!(allow.check("https://school.example.evil/x").is_err());
        // In the allow-list, yet still loopback: refused.
        assert!(allow.check("http://localhost:1/x").is_err());
    }

    #[test]
    fn operator_urls_may_be_internal_but_never_metadata() {
        let p = UrlPolicy::default();
        assert!(p.check_operator_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(p.check_operator_url("http://hooks.platform.svc/x").is_ok());
        assert!(p
            .check_operator_url("http://169.254.169.254/latest")
            .is_err());
        assert!(p
            .check_operator_url("http://metadata.google.internal/")
            .is_err());
    }
}
