//! The connection half of every KEDA Redis trigger (lists and streams):
//! addresses, topology, database, credentials and TLS, as the `redis`
//! source of a WorkerPool writes them.

use super::Mapping;
use serde_json::Value;

use super::fields::{comma_list, mapping};
use super::trigger::TriggerCtx;
use super::warnings::ConvertError;

/// What the KEDA trigger type says about the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Standalone,
    Sentinel,
    Cluster,
}

const PLACEHOLDER_ADDRESS: &str = "replace-me.invalid:6379";
const PLACEHOLDER_MASTER: &str = "replace-me";

/// The connection fields of a `redis` source, in the order they are printed.
pub fn connection(t: &mut TriggerCtx<'_>, topology: Topology) -> Result<Mapping, ConvertError> {
    let ours = format!("{}.redis", t.at);
    let addresses = addresses(t, topology, &ours)?;
    let db = database(t, topology)?;
    let tls = tls(t, &ours)?;
    let mut out = Mapping::new();
    match topology {
        Topology::Standalone => {
            let scheme = if tls.is_some() { "rediss" } else { "redis" };
            let url = format!("{scheme}://{}/{db}", addresses[0]);
            out.insert("url".into(), url.into());
        }
        Topology::Sentinel => {
            let sentinel = sentinel(t, addresses, db, &ours)?;
            out.insert("sentinel".into(), sentinel);
        }
        Topology::Cluster => {
            out.insert("cluster".into(), mapping([("addresses", list(addresses))]));
        }
    }
    if topology != Topology::Sentinel {
        warn_sentinel_fields(t)?;
    }
    for (field, names) in [
        ("usernameSecretRef", ["username"]),
        ("passwordSecretRef", ["password"]),
    ] {
        if let Some(r) = t.secret(&names, &format!("{ours}.{field}"))? {
            out.insert(field.into(), r);
        }
    }
    // A standalone URL says TLS by its scheme; the other topologies have no
    // URL, so their `tls` block is what turns TLS on.
    match tls {
        Some(tls) if topology == Topology::Standalone && tls.is_empty() => {}
        Some(mut tls) => {
            if tls.is_empty() {
                tls.insert("insecureSkipVerify".into(), false.into());
            }
            out.insert("tls".into(), Value::Object(tls));
        }
        None => {}
    }
    Ok(out)
}

fn list(items: Vec<String>) -> Value {
    Value::Array(items.into_iter().map(Value::from).collect())
}

/// `address`/`addresses`, else `host`/`hosts` joined with `port`/`ports`.
fn addresses(
    t: &mut TriggerCtx<'_>,
    topology: Topology,
    ours: &str,
) -> Result<Vec<String>, ConvertError> {
    let placeholder = PLACEHOLDER_ADDRESS;
    let field = match topology {
        Topology::Standalone => format!("{ours}.url"),
        Topology::Sentinel => format!("{ours}.sentinel.addresses"),
        Topology::Cluster => format!("{ours}.cluster.addresses"),
    };
    let mut found = match t.text(&["address", "addresses"], placeholder, &field)? {
        Some(text) => comma_list(&text),
        None => hosts_and_ports(t, &field)?,
    };
    if found.is_empty() {
        let at = t.meta.path("address");
        return Err(t.w.invalid(at, "no Redis address: give address (host:port), or host and port, in metadata or the TriggerAuthentication"));
    }
    if topology == Topology::Standalone && found.len() > 1 {
        let msg = format!(
            "{} addresses; a standalone redis trigger uses only the first, {} (as KEDA does)",
            found.len(),
            found[0]
        );
        t.w.add(t.meta.path("address"), msg);
        found.truncate(1);
    }
    if found.len() > 16 {
        let at = t.meta.path("addresses");
        return Err(t.w.invalid(
            at,
            format!("{} addresses; a WorkerPool takes 1 to 16", found.len()),
        ));
    }
    Ok(found)
}

fn hosts_and_ports(t: &mut TriggerCtx<'_>, field: &str) -> Result<Vec<String>, ConvertError> {
    let hosts = t.text(&["host", "hosts"], "replace-me.invalid", field)?;
    let ports = t.text(&["port", "ports"], "6379", field)?;
    let (hosts, ports) = match (hosts, ports) {
        (None, None) => return Ok(Vec::new()),
        (Some(h), Some(p)) => (comma_list(&h), comma_list(&p)),
        (h, _) => {
            let missing = if h.is_some() { "port" } else { "host" };
            let at = t.meta.path(missing);
            return Err(t.w.invalid(
                at,
                "host and port must be given together (KEDA joins them into an address)",
            ));
        }
    };
    if hosts.len() != ports.len() {
        let at = t.meta.path("ports");
        return Err(t.w.invalid(
            at,
            format!("{} hosts but {} ports", hosts.len(), ports.len()),
        ));
    }
    Ok(hosts
        .iter()
        .zip(&ports)
        .map(|(h, p)| join_host_port(h, p))
        .collect())
}

/// As Go's net.JoinHostPort: IPv6 literals in brackets.
fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn database(t: &mut TriggerCtx<'_>, topology: Topology) -> Result<i64, ConvertError> {
    let Some(db) = t.meta.take_i64("databaseIndex", t.w)? else {
        return Ok(0);
    };
    let at = t.meta.path("databaseIndex");
    if topology == Topology::Cluster {
        t.w.add(
            at,
            "Redis Cluster has only database 0; ignored (KEDA ignores it too)",
        );
        return Ok(0);
    }
    if !(0..=65535).contains(&db) {
        return Err(t
            .w
            .invalid(at, format!("must be a database number >= 0, got {db}")));
    }
    Ok(db)
}

/// The `tls` settings when TLS is on (`enableTLS` in metadata or `tls:
/// enable` in the TriggerAuthentication), else None.
fn tls(t: &mut TriggerCtx<'_>, ours: &str) -> Result<Option<Mapping>, ConvertError> {
    let enabled = tls_enabled(t)?;
    let unsafe_ssl = t.meta.take_bool("unsafeSsl", t.w)?.unwrap_or(false);
    let ca = t.secret(&["ca"], &format!("{ours}.tls.caSecretRef"))?;
    for name in ["cert", "Cert", "key", "keyPassword"] {
        if let Some(found) = t.param(&[name])? {
            t.w.add(found.from, "client certificates have no equivalent (a WorkerPool authenticates to Redis with username/password): use an ACL user, or keep KEDA for this trigger");
        }
    }
    if !enabled {
        if unsafe_ssl || ca.is_some() {
            let at = t.meta.path("unsafeSsl");
            t.w.add(
                at,
                "TLS settings without enableTLS have no effect (as in KEDA); not carried over",
            );
        }
        return Ok(None);
    }
    let mut m = Mapping::new();
    if unsafe_ssl {
        m.insert("insecureSkipVerify".into(), true.into());
    }
    if let Some(ca) = ca {
        m.insert("caSecretRef".into(), ca);
    }
    Ok(Some(m))
}

fn tls_enabled(t: &mut TriggerCtx<'_>) -> Result<bool, ConvertError> {
    let in_metadata = t.meta.take_bool("enableTLS", t.w)?;
    let in_auth = t.param(&["tls"])?;
    match (in_metadata, in_auth) {
        (Some(_), Some(found)) => Err(t.w.invalid(found.from, "TLS set both in metadata (enableTLS) and in the TriggerAuthentication (tls); KEDA rejects this too")),
        (Some(on), None) => Ok(on),
        (None, None) => Ok(false),
        (None, Some(found)) => match found.param {
            super::trigger::Param::Plain(v) if v == "enable" => Ok(true),
            super::trigger::Param::Plain(v) if v == "disable" => Ok(false),
            super::trigger::Param::Plain(v) => Err(t.w.invalid(found.from, format!("must be enable or disable, got {v:?}"))),
            _ => {
                t.w.add(found.from, "TLS switch comes from a Secret or env convert cannot read; assumed enabled: use redis:// (or drop tls) if the server speaks plain Redis");
                Ok(true)
            }
        },
    }
}

fn sentinel(
    t: &mut TriggerCtx<'_>,
    addresses: Vec<String>,
    db: i64,
    ours: &str,
) -> Result<Value, ConvertError> {
    let field = format!("{ours}.sentinel.masterName");
    let master = t.text(&["sentinelMaster"], PLACEHOLDER_MASTER, &field)?;
    let Some(master) = master else {
        let at = t.meta.path("sentinelMaster");
        return Err(t.w.invalid(
            at,
            "is required for redis-sentinel (the master's name as the sentinels know it)",
        ));
    };
    let mut m = Mapping::new();
    m.insert("addresses".into(), list(addresses));
    m.insert("masterName".into(), master.into());
    m.insert("db".into(), db.into());
    for (field, name) in [
        ("sentinelPasswordSecretRef", "sentinelPassword"),
        ("sentinelUsernameSecretRef", "sentinelUsername"),
    ] {
        if let Some(r) = t.secret(&[name], &format!("{ours}.sentinel.{field}"))? {
            m.insert(field.into(), r);
        }
    }
    Ok(Value::Object(m))
}

/// Sentinel fields on a non-sentinel trigger: KEDA ignores them, and so do we, aloud.
fn warn_sentinel_fields(t: &mut TriggerCtx<'_>) -> Result<(), ConvertError> {
    for name in ["sentinelMaster", "sentinelUsername", "sentinelPassword"] {
        if let Some(found) = t.param(&[name])? {
            t.w.add(
                found.from,
                "only used by redis-sentinel triggers (KEDA ignores it here too); ignored",
            );
        }
    }
    Ok(())
}
