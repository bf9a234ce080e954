//! Which hosts a trigger may make the operator connect to.
//!
//! Whoever may create a WorkerPool chooses the URLs the operator connects
//! to, from the operator's network position. Left open, that makes the
//! operator a proxy into the cluster's network: the cloud metadata service,
//! another team's admin endpoint. So every host is checked before any
//! connection:
//!
//! 1. The host as written in the WorkerPool: with `SameNamespace`, it must
//!    be a Service of the pool's own namespace (`svc`, `svc.ns`,
//!    `svc.ns.svc`, `svc.ns.svc.cluster.local`) or match `--allow-endpoints`.
//! 2. The written host, every address it resolves to, and every address a
//!    server hands back (a sentinel's master, a cluster's nodes): refused
//!    when `--deny-endpoints` matches, or when the built-in deny list
//!    (link-local ranges, cloud metadata names) matches and
//!    `--allow-endpoints` does not name it explicitly.
//!
//! `--deny-endpoints` always wins over `--allow-endpoints`. Patterns are
//! CIDRs (`10.0.0.0/8`, `fd00::/8`, a bare address) or host globs (`*`
//! matches any run of characters: `*.prod.svc.cluster.local`).

use std::net::IpAddr;

use super::SourceError;
use crate::api::Trigger;

/// The rule for hosts written in WorkerPools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EndpointRule {
    /// Any host (the built-in and configured deny lists still apply).
    #[default]
    Any,
    /// Only Services of the pool's own namespace (and what the allow list names).
    SameNamespace,
}

/// One allow or deny pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Cidr { net: IpAddr, bits: u8 },
    Host(String),
}

/// Link-local ranges: where cloud metadata services answer.
const BUILTIN_DENY_CIDRS: &[&str] = &["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"];
/// Metadata service names of the major clouds.
const BUILTIN_DENY_HOSTS: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.com",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
    "metadata.platformequinix.com",
];

/// The endpoint policy of one operator (`run` and `check` alike).
#[derive(Clone, Debug, Default)]
pub struct EndpointPolicy {
    rule: EndpointRule,
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
    builtin: Vec<Pattern>,
}

impl EndpointPolicy {
    /// The policy from the flags' values (comma-separated pattern lists).
    pub fn new(rule: EndpointRule, allow: &str, deny: &str) -> Result<Self, String> {
        let builtin = BUILTIN_DENY_CIDRS
            .iter()
            .chain(BUILTIN_DENY_HOSTS)
            .map(|p| parse_pattern(p))
            .collect::<Result<_, _>>()?;
        Ok(EndpointPolicy {
            rule,
            allow: parse_list(allow).map_err(|e| format!("--allow-endpoints: {e}"))?,
            deny: parse_list(deny).map_err(|e| format!("--deny-endpoints: {e}"))?,
            builtin,
        })
    }

    /// `Any` with only the built-in deny list.
    pub fn open() -> Self {
        // The built-in patterns are constants that parse.
        Self::new(EndpointRule::Any, "", "").unwrap_or_default()
    }

    /// Checks a host as written in a pool of `namespace` (`field` names
    /// where, for the error).
    pub fn check_written(
        &self,
        namespace: &str,
        field: &str,
        host: &str,
    ) -> Result<(), SourceError> {
        let host = normalize(host);
        self.check_host(field, &host)?;
        if self.rule == EndpointRule::SameNamespace
            && !self.allowed(&host, None)
            && !is_service_of(&host, namespace)
        {
            return Err(SourceError::NotAllowed(format!(
                "{field}: host {host:?} is not a Service of namespace {namespace:?} \
                 (endpoint policy SameNamespace; --allow-endpoints can name it)"
            )));
        }
        Ok(())
    }

    /// Checks an address the operator is about to connect to: one a name
    /// resolved to, or one a server handed back.
    pub fn check_address(&self, what: &str, host: &str, ip: IpAddr) -> Result<(), SourceError> {
        let host = normalize(host);
        if matches_any(&self.deny, &host, Some(ip)) {
            return Err(refused(what, &host, Some(ip), "--deny-endpoints"));
        }
        if matches_any(&self.builtin, &host, Some(ip)) && !self.allowed(&host, Some(ip)) {
            return Err(refused(
                what,
                &host,
                Some(ip),
                "the built-in deny list (link-local and cloud metadata)",
            ));
        }
        Ok(())
    }

    /// Checks a name a server handed back, before it is resolved.
    pub fn check_name(&self, what: &str, host: &str) -> Result<(), SourceError> {
        self.check_host(what, &normalize(host))
    }

    fn check_host(&self, what: &str, host: &str) -> Result<(), SourceError> {
        let ip = host.parse::<IpAddr>().ok();
        if matches_any(&self.deny, host, ip) {
            return Err(refused(what, host, None, "--deny-endpoints"));
        }
        if matches_any(&self.builtin, host, ip) && !self.allowed(host, ip) {
            return Err(refused(
                what,
                host,
                None,
                "the built-in deny list (link-local and cloud metadata)",
            ));
        }
        Ok(())
    }

    fn allowed(&self, host: &str, ip: Option<IpAddr>) -> bool {
        let ip = ip.or_else(|| host.parse().ok());
        matches_any(&self.allow, host, ip)
    }
}

fn refused(what: &str, host: &str, ip: Option<IpAddr>, rule: &str) -> SourceError {
    let addr = ip.map(|ip| format!(" ({ip})")).unwrap_or_default();
    SourceError::NotAllowed(format!("{what}: host {host:?}{addr} is refused by {rule}"))
}

/// Lower case, without brackets or a trailing dot.
fn normalize(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// `svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`.
fn is_service_of(host: &str, namespace: &str) -> bool {
    let parts: Vec<&str> = host.split('.').collect();
    let ns_ok = |i: usize| parts.get(i) == Some(&namespace);
    match parts.len() {
        1 => host.parse::<IpAddr>().is_err() && !parts[0].is_empty(),
        2 => ns_ok(1),
        3 => ns_ok(1) && parts[2] == "svc",
        5 => ns_ok(1) && parts[2..] == ["svc", "cluster", "local"],
        _ => false,
    }
}

fn parse_list(list: &str) -> Result<Vec<Pattern>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_pattern)
        .collect()
}

fn parse_pattern(p: &str) -> Result<Pattern, String> {
    let (addr, bits) = match p.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (p, None),
    };
    let Ok(net) = normalize(addr).parse::<IpAddr>() else {
        if bits.is_some() {
            return Err(format!("{p:?} is neither a CIDR nor a host pattern"));
        }
        return Ok(Pattern::Host(normalize(p)));
    };
    let max = if net.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max,
        Some(b) => b
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| format!("{p:?} has a prefix length that is not 0..={max}"))?,
    };
    Ok(Pattern::Cidr { net, bits })
}

fn matches_any(patterns: &[Pattern], host: &str, ip: Option<IpAddr>) -> bool {
    patterns.iter().any(|p| match p {
        Pattern::Host(glob) => glob_match(glob, host),
        Pattern::Cidr { net, bits } => ip.is_some_and(|ip| in_cidr(ip, *net, *bits)),
    })
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    // An IPv4 address may arrive as IPv4-mapped IPv6 (::ffff:169.254.169.254).
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => prefix_eq(&a.octets(), &n.octets(), bits),
        (IpAddr::V6(a), IpAddr::V6(n)) => prefix_eq(&a.octets(), &n.octets(), bits),
        _ => false,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (full, rest) = (usize::from(bits / 8), bits % 8);
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

/// `*` matches any run of characters (dots included).
fn glob_match(glob: &str, text: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The hosts a trigger names, with the field that names each.
pub fn written_hosts(trigger: &Trigger) -> Result<Vec<(&'static str, String)>, SourceError> {
    let mut hosts = Vec::new();
    if let Some(r) = &trigger.redis {
        if let Some(url) = &r.url {
            hosts.push(("redis.url", url_host("redis.url", url)?));
        }
        let sentinels = r.sentinel.iter().flat_map(|s| &s.addresses);
        hosts.extend(address_hosts("redis.sentinel.addresses", sentinels)?);
        let seeds = r.cluster.iter().flat_map(|c| &c.addresses);
        hosts.extend(address_hosts("redis.cluster.addresses", seeds)?);
    }
    if let Some(p) = &trigger.prometheus {
        hosts.push(("prometheus.url", url_host("prometheus.url", &p.url)?));
    }
    Ok(hosts)
}

fn address_hosts<'a>(
    field: &'static str,
    addresses: impl Iterator<Item = &'a String>,
) -> Result<Vec<(&'static str, String)>, SourceError> {
    addresses
        .map(|a| {
            crate::api::parse_address(a)
                .map(|(host, _)| (field, host))
                .map_err(|e| SourceError::Config(format!("{field}: {e}")))
        })
        .collect()
}

fn url_host(field: &str, url: &str) -> Result<String, SourceError> {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .filter(|h| !h.is_empty())
        .ok_or_else(|| SourceError::Config(format!("{field} names no host")))
}

#[cfg(test)]
mod tests;
