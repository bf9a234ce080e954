//! Where a `redis` trigger's data lives when it is not one server named by
//! `url`: behind Redis Sentinel, or in a Redis Cluster.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::spec::SecretKeyRef;

/// A master found through Redis Sentinel. The trigger's `usernameSecretRef`,
/// `passwordSecretRef` and `tls` apply to the master (and `tls` to the
/// sentinels too); the sentinels' own credentials are set here.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisSentinel {
    /// Sentinels as `host:port`, asked in order until one names the master.
    #[schemars(length(min = 1, max = 16), inner(length(min = 3, max = 260)))]
    pub addresses: Vec<String>,
    /// The master's name in the sentinels' configuration (`sentinel monitor <name> ...`).
    #[schemars(length(min = 1, max = 256))]
    pub master_name: String,
    /// Database number on the master.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub db: i64,
    /// Password the sentinels require (`requirepass` in sentinel.conf), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel_password_secret_ref: Option<SecretKeyRef>,
    /// ACL user name on the sentinels, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel_username_secret_ref: Option<SecretKeyRef>,
}

/// A Redis Cluster, found from seed nodes; keys are read on the master of
/// their hash slot. The trigger's `usernameSecretRef`, `passwordSecretRef`
/// and `tls` apply to every node.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisCluster {
    /// Seed nodes as `host:port`; any one that answers gives the whole slot map.
    #[schemars(length(min = 1, max = 16), inner(length(min = 3, max = 260)))]
    pub addresses: Vec<String>,
}

/// Splits a `host:port` address (`[v6]:port` for IPv6) as written in
/// `sentinel.addresses` or `cluster.addresses`; the error says what is wrong.
pub fn parse_address(address: &str) -> Result<(String, u16), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} is not host:port"))?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .ok_or_else(|| format!("{address:?} has an unclosed '['"))?,
        None if host.contains(':') => {
            return Err(format!("{address:?}: write an IPv6 address as [addr]:port"))
        }
        None => host,
    };
    let ok_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c));
    if !ok_host {
        return Err(format!("{address:?} does not name a host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host.to_string(), p)),
        _ => Err(format!("{address:?}: port must be 1-65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_address;

    #[test]
    fn addresses_parse_or_say_why_not() {
        assert_eq!(
            parse_address("s.ns.svc:26379").unwrap(),
            ("s.ns.svc".into(), 26379)
        );
        assert_eq!(parse_address("[::1]:7000").unwrap(), ("::1".into(), 7000));
        assert!(parse_address("host").unwrap_err().contains("host:port"));
        assert!(parse_address("host:0").unwrap_err().contains("port"));
        assert!(parse_address("::1:7000").unwrap_err().contains("IPv6"));
        assert!(parse_address(":7000").unwrap_err().contains("host"));
        assert!(parse_address("a/b:1").unwrap_err().contains("host"));
    }
}
