//! A trigger's connection settings: where the data is (a URL, a master
//! behind Sentinel, or a Cluster), its Secrets resolved, and the key that
//! says which triggers may share one connection set.

use ::redis::IntoConnectionInfo;

use crate::api::{parse_address, RedisSentinel, RedisTrigger, SecretKeyRef};
use crate::sources::policy::EndpointPolicy;
use crate::sources::{secret_text, SecretLookup, SourceError};

/// What makes two connection sets different: the topology and its
/// addresses (in `display`), master name, db, users, passwords and TLS
/// settings. Holds the passwords (it must: two passwords are two
/// connections) but never shows them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct EndpointKey {
    /// `redis[s]://host:port/db`, `redis[s]-sentinel://s1:p1,s2:p2/master/db`
    /// or `redis[s]-cluster://n1:p1,n2:p2`, without credentials.
    pub(super) display: String,
    /// The URL's query (e.g. `protocol=resp3`), which changes the connection.
    pub(super) query: String,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) insecure: bool,
    pub(super) ca: Option<Vec<u8>>,
    pub(super) sentinel_username: Option<String>,
    pub(super) sentinel_password: Option<String>,
}

impl std::fmt::Debug for EndpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| o.as_ref().map(|_| "<set>");
        f.debug_struct("EndpointKey")
            .field("display", &self.display)
            .field("username", &set(&self.username))
            .field("password", &set(&self.password))
            .field("insecure", &self.insecure)
            .field("ca", &self.ca.as_ref().map(|_| "<set>"))
            .field("sentinel_username", &set(&self.sentinel_username))
            .field("sentinel_password", &set(&self.sentinel_password))
            .finish()
    }
}

/// A trigger's connection settings with its Secrets resolved.
pub(super) struct ConnectionSettings {
    pub(super) key: EndpointKey,
    pub(super) topology: Topology,
    /// How to talk to a data node (the server, the master, a cluster node).
    pub(super) node: NodeSettings,
}

/// Where the data is.
pub(super) enum Topology {
    /// One server: the URL handed to the redis crate, credentials removed
    /// (they are set separately), `#insecure` added for insecureSkipVerify.
    Url(String),
    Sentinel(SentinelSettings),
    /// Seed nodes of a cluster.
    Cluster(Vec<(String, u16)>),
}

/// The sentinels and what to ask them.
pub(super) struct SentinelSettings {
    pub(super) addresses: Vec<(String, u16)>,
    pub(super) master_name: String,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
}

/// How to connect to a data node found at run time: credentials, db, TLS.
#[derive(Clone)]
pub(super) struct NodeSettings {
    /// Checked before any connection to a node (see [`check_discovered`]).
    pub(super) policy: EndpointPolicy,
    pub(super) db: i64,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) tls: bool,
    pub(super) insecure: bool,
    pub(super) ca: Option<Vec<u8>>,
}

impl NodeSettings {
    /// The URL of a node at `host:port` (credentials are set separately).
    pub(super) fn url(&self, host: &str, port: u16) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let fragment = if self.insecure { "#insecure" } else { "" };
        format!("{scheme}://{host}:{port}/{}{fragment}", self.db)
    }
}

/// Every address a sentinel or a cluster node hands back (a master, a
/// cluster node, a `MOVED`/`ASK` target) passes here before any
/// connection to it. Addresses written in the WorkerPool are checked where
/// the trigger is admitted; these come from servers, so a compromised or
/// misconfigured server could otherwise point the operator anywhere. The
/// endpoint policy's deny list (link-local, cloud metadata names, the
/// `--deny-endpoints` ranges) applies; a name is resolved and checked again
/// when the connection is made.
pub(crate) fn check_discovered(
    policy: &EndpointPolicy,
    host: &str,
    port: u16,
) -> Result<(), SourceError> {
    let what = format!("address {host}:{port} handed back by the server");
    match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(ip) => policy.check_address(&what, host, ip),
        Err(_) => policy.check_name(&what, host),
    }
}

impl ConnectionSettings {
    pub(super) fn resolve(
        r: &RedisTrigger,
        secrets: &dyn SecretLookup,
    ) -> Result<ConnectionSettings, SourceError> {
        match (&r.url, &r.sentinel, &r.cluster) {
            (Some(url), None, None) => resolve_url(r, url, secrets),
            (None, Some(_), None) | (None, None, Some(_)) => resolve_topology(r, secrets),
            _ => Err(SourceError::Config(
                "redis: exactly one of url, sentinel, cluster must be set".into(),
            )),
        }
    }
}

/// A Secret's text, a missing one naming the field that refers to it.
fn field_secret(
    secrets: &dyn SecretLookup,
    r: Option<&SecretKeyRef>,
    field: &str,
) -> Result<Option<String>, SourceError> {
    let Some(r) = r else { return Ok(None) };
    secret_text(secrets, r).map(Some).map_err(|e| match e {
        SourceError::SecretMissing { name, key, reason } => SourceError::SecretMissing {
            name,
            key,
            reason: format!("{field}: {reason}"),
        },
        other => other,
    })
}

/// The trigger's TLS settings for the data nodes: (insecure, CA bundle).
fn tls_settings(
    r: &RedisTrigger,
    tls: bool,
    secrets: &dyn SecretLookup,
) -> Result<(bool, Option<Vec<u8>>), SourceError> {
    let tls_settings = r.tls.clone().unwrap_or_default();
    let ca = match &tls_settings.ca_secret_ref {
        Some(s) => {
            let pem = secrets.get(s)?;
            check_ca_pem(&pem, &s.name, &s.key)?;
            Some(pem)
        }
        None => None,
    };
    Ok((tls && tls_settings.insecure_skip_verify, ca))
}

/// Addresses as written in the spec, a bad one naming `field`.
fn addresses(list: &[String], field: &str) -> Result<Vec<(String, u16)>, SourceError> {
    list.iter()
        .map(|a| parse_address(a).map_err(|m| SourceError::Config(format!("{field}: {m}"))))
        .collect()
}

/// What a `sentinel` adds to the key and settings: (topology, display,
/// db, sentinel user, sentinel password).
type SentinelParts = (Topology, String, i64, Option<String>, Option<String>);

fn sentinel_topology(
    st: &RedisSentinel,
    secrets: &dyn SecretLookup,
    s: &str,
) -> Result<SentinelParts, SourceError> {
    let list = addresses(&st.addresses, "redis.sentinel.addresses")?;
    let username = field_secret(
        secrets,
        st.sentinel_username_secret_ref.as_ref(),
        "redis.sentinel.sentinelUsernameSecretRef",
    )?;
    let password = field_secret(
        secrets,
        st.sentinel_password_secret_ref.as_ref(),
        "redis.sentinel.sentinelPasswordSecretRef",
    )?;
    let display = format!(
        "redis{s}-sentinel://{}/{}/{}",
        st.addresses.join(","),
        crate::sources::truncate(&st.master_name, 64),
        st.db
    );
    let topology = Topology::Sentinel(SentinelSettings {
        addresses: list,
        master_name: st.master_name.clone(),
        username: username.clone(),
        password: password.clone(),
    });
    Ok((topology, display, st.db, username, password))
}

/// `sentinel` or `cluster`: TLS is on when `tls` is set at all.
fn resolve_topology(
    r: &RedisTrigger,
    secrets: &dyn SecretLookup,
) -> Result<ConnectionSettings, SourceError> {
    let tls = r.tls.is_some();
    let (insecure, ca) = tls_settings(r, tls, secrets)?;
    let s = if tls { "s" } else { "" };
    let (topology, display, db, sentinel_username, sentinel_password) =
        match (&r.sentinel, &r.cluster) {
            (Some(st), _) => sentinel_topology(st, secrets, s)?,
            (None, Some(c)) => {
                let list = addresses(&c.addresses, "redis.cluster.addresses")?;
                let display = format!("redis{s}-cluster://{}", c.addresses.join(","));
                (Topology::Cluster(list), display, 0, None, None)
            }
            (None, None) => return Err(SourceError::Config("redis: no topology".into())),
        };
    let node = NodeSettings {
        policy: EndpointPolicy::open(),
        db,
        username: field_secret(
            secrets,
            r.username_secret_ref.as_deref(),
            "redis.usernameSecretRef",
        )?,
        password: field_secret(
            secrets,
            r.password_secret_ref.as_deref(),
            "redis.passwordSecretRef",
        )?,
        tls,
        insecure,
        ca,
    };
    Ok(ConnectionSettings {
        key: EndpointKey {
            display,
            query: String::new(),
            username: node.username.clone(),
            password: node.password.clone(),
            insecure: node.insecure,
            ca: node.ca.clone(),
            sentinel_username,
            sentinel_password,
        },
        topology,
        node,
    })
}

/// A `redis://` or `rediss://` URL taken apart: whether it uses TLS, the
/// host, port and database.
struct UrlParts {
    url: url::Url,
    tls: bool,
    host: String,
    port: u16,
    db: i64,
}

fn url_parts(raw: &str) -> Result<UrlParts, SourceError> {
    let url = url::Url::parse(raw)
        .map_err(|e| SourceError::Config(format!("redis.url is not a valid URL ({e})")))?;
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        s => {
            return Err(SourceError::Config(format!(
                "redis.url scheme must be redis:// or rediss://, got {s}://"
            )))
        }
    };
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => return Err(SourceError::Config("redis.url names no host".into())),
    };
    let port = url.port().unwrap_or(6379);
    let db_text = url.path().trim_start_matches('/');
    let db: i64 = if db_text.is_empty() {
        0
    } else {
        db_text.parse().map_err(|_| {
            SourceError::Config(format!(
                "redis.url database must be a number, got {:?}",
                crate::sources::truncate(db_text, 20)
            ))
        })?
    };
    Ok(UrlParts {
        url,
        tls,
        host,
        port,
        db,
    })
}

/// Username and password: a Secret reference wins over the URL's own,
/// which are decoded as the redis crate decodes them.
fn credentials(
    r: &RedisTrigger,
    raw: &str,
    secrets: &dyn SecretLookup,
) -> Result<(Option<String>, Option<String>), SourceError> {
    let info = raw
        .into_connection_info()
        .map_err(|e| SourceError::Config(format!("redis.url is not usable ({})", e.category())))?;
    let in_url = info.redis_settings();
    let username = match field_secret(
        secrets,
        r.username_secret_ref.as_deref(),
        "redis.usernameSecretRef",
    )? {
        Some(u) => Some(u),
        None => in_url
            .username()
            .filter(|u| !u.is_empty())
            .map(str::to_string),
    };
    let password = match field_secret(
        secrets,
        r.password_secret_ref.as_deref(),
        "redis.passwordSecretRef",
    )? {
        Some(p) => Some(p),
        None => in_url
            .password()
            .filter(|p| !p.is_empty())
            .map(str::to_string),
    };
    Ok((username, password))
}

fn resolve_url(
    r: &RedisTrigger,
    raw: &str,
    secrets: &dyn SecretLookup,
) -> Result<ConnectionSettings, SourceError> {
    let UrlParts {
        mut url,
        tls,
        host,
        port,
        db,
    } = url_parts(raw)?;
    let (username, password) = credentials(r, raw, secrets)?;
    if !tls && r.tls.is_some() {
        return Err(SourceError::Config(
            "redis.tls is set but the URL is redis:// (use rediss:// for TLS)".into(),
        ));
    }
    let (insecure, ca) = tls_settings(r, tls, secrets)?;

    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_fragment(insecure.then_some("insecure"));
    // host_str keeps an IPv6 address in brackets, as a URL needs.
    let display = format!("{}://{}:{}/{}", url.scheme(), host, port, db);
    let node = NodeSettings {
        policy: EndpointPolicy::open(),
        db,
        username,
        password,
        tls,
        insecure,
        ca,
    };
    Ok(ConnectionSettings {
        key: EndpointKey {
            display,
            query: url.query().unwrap_or_default().to_string(),
            username: node.username.clone(),
            password: node.password.clone(),
            insecure,
            ca: node.ca.clone(),
            sentinel_username: None,
            sentinel_password: None,
        },
        topology: Topology::Url(url.to_string()),
        node,
    })
}

/// A CA bundle must hold at least one PEM certificate; anything else would
/// only show up later as "unknown issuer" on every read.
fn check_ca_pem(pem: &[u8], name: &str, key: &str) -> Result<(), SourceError> {
    let mut reader = std::io::BufReader::new(pem);
    let mut count = 0;
    for cert in rustls_pemfile::certs(&mut reader) {
        if cert.is_err() {
            return Err(SourceError::Config(format!(
                "redis.tls.caSecretRef (secret {name:?} key {key:?}) is not a valid PEM certificate bundle"
            )));
        }
        count += 1;
    }
    if count == 0 {
        return Err(SourceError::Config(format!(
            "redis.tls.caSecretRef (secret {name:?} key {key:?}) holds no PEM certificate"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RedisTls, SecretKeyRef};
    use std::collections::BTreeMap;

    fn trigger(url: &str) -> RedisTrigger {
        RedisTrigger {
            url: Some(url.into()),
            sentinel: None,
            cluster: None,
            password_secret_ref: None,
            username_secret_ref: None,
            tls: None,
            list: Some("q".into()),
            lists: None,
            celery: None,
            stream: None,
            sorted_set: None,
            rq: None,
            arq: None,
            huey: None,
            dramatiq: None,
            sidekiq: None,
            bullmq: None,
        }
    }

    fn url_of(s: &ConnectionSettings) -> String {
        match &s.topology {
            Topology::Url(u) => u.clone(),
            _ => panic!("not a URL topology"),
        }
    }

    #[test]
    fn url_credentials_never_reach_the_display_and_secrets_override_them() {
        let mut t = trigger("redis://olduser:oldpass@example.com:7000/3");
        let s = ConnectionSettings::resolve(&t, &BTreeMap::new()).unwrap();
        assert_eq!(s.key.display, "redis://example.com:7000/3");
        assert_eq!(s.key.username.as_deref(), Some("olduser"));
        assert_eq!(s.key.password.as_deref(), Some("oldpass"));
        assert!(!url_of(&s).contains("oldpass"), "{}", url_of(&s));
        assert!(!format!("{:?}", s.key).contains("oldpass"));

        t.password_secret_ref = Some(Box::new(SecretKeyRef {
            name: "auth".into(),
            key: "password".into(),
        }));
        let mut secrets = BTreeMap::new();
        secrets.insert(
            ("auth".to_string(), "password".to_string()),
            b"newpass".to_vec(),
        );
        let s = ConnectionSettings::resolve(&t, &secrets).unwrap();
        assert_eq!(s.key.password.as_deref(), Some("newpass"));
        assert_eq!(s.key.username.as_deref(), Some("olduser"));
    }

    #[test]
    fn defaults_and_tls_settings() {
        let s = ConnectionSettings::resolve(&trigger("redis://h"), &BTreeMap::new()).unwrap();
        assert_eq!(s.key.display, "redis://h:6379/0");
        let mut t = trigger("rediss://h:6380/1");
        t.tls = Some(Box::new(RedisTls {
            insecure_skip_verify: true,
            ca_secret_ref: None,
        }));
        let s = ConnectionSettings::resolve(&t, &BTreeMap::new()).unwrap();
        assert!(s.key.insecure);
        assert!(url_of(&s).ends_with("#insecure"), "{}", url_of(&s));
        let mut t = trigger("redis://h");
        t.tls = Some(Box::default());
        assert!(ConnectionSettings::resolve(&t, &BTreeMap::new()).is_err());
    }

    #[test]
    fn a_ca_that_is_not_pem_is_a_config_error() {
        let mut t = trigger("rediss://h");
        t.tls = Some(Box::new(RedisTls {
            insecure_skip_verify: false,
            ca_secret_ref: Some(SecretKeyRef {
                name: "ca".into(),
                key: "ca.crt".into(),
            }),
        }));
        let mut secrets = BTreeMap::new();
        secrets.insert(
            ("ca".to_string(), "ca.crt".to_string()),
            b"not a cert".to_vec(),
        );
        let e = ConnectionSettings::resolve(&t, &secrets).err().unwrap();
        assert_eq!(e.metric_label(), "config");
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
    }

    fn topology_trigger(redis: serde_json::Value) -> RedisTrigger {
        serde_json::from_value(redis).unwrap()
    }

    #[test]
    fn sentinel_and_cluster_keys_say_what_differs() {
        let secrets = {
            let mut m = BTreeMap::new();
            m.insert(
                ("s".to_string(), "p".to_string()),
                b"sentinel-pass".to_vec(),
            );
            m
        };
        let spec = serde_json::json!({
            "sentinel": {"addresses": ["a:26379", "b:26379"], "masterName": "m", "db": 2,
                "sentinelPasswordSecretRef": {"name": "s", "key": "p"}},
            "list": "q"});
        let s = ConnectionSettings::resolve(&topology_trigger(spec.clone()), &secrets).unwrap();
        assert_eq!(s.key.display, "redis-sentinel://a:26379,b:26379/m/2");
        assert_eq!(s.key.sentinel_password.as_deref(), Some("sentinel-pass"));
        assert!(!format!("{:?}", s.key).contains("sentinel-pass"));
        assert_eq!(s.node.url("10.0.0.1", 6379), "redis://10.0.0.1:6379/2");
        // Another master name is another endpoint.
        let mut other = spec.clone();
        other["sentinel"]["masterName"] = serde_json::json!("n");
        let o = ConnectionSettings::resolve(&topology_trigger(other), &secrets).unwrap();
        assert_ne!(s.key, o.key);
        // A missing sentinel password names its field.
        let e = ConnectionSettings::resolve(&topology_trigger(spec), &BTreeMap::new())
            .err()
            .unwrap();
        assert!(e.to_string().contains("sentinelPasswordSecretRef"), "{e}");

        let spec =
            serde_json::json!({"cluster": {"addresses": ["[::1]:7000"]}, "tls": {}, "list": "q"});
        let c = ConnectionSettings::resolve(&topology_trigger(spec), &BTreeMap::new()).unwrap();
        assert_eq!(c.key.display, "rediss-cluster://[::1]:7000");
        assert_eq!(c.node.url("::1", 7000), "rediss://[::1]:7000/0");
        assert!(
            matches!(c.topology, Topology::Cluster(ref seeds) if seeds == &[("::1".to_string(), 7000)])
        );

        let both =
            serde_json::json!({"url": "redis://h", "cluster": {"addresses": ["h:1"]}, "list": "q"});
        let e = ConnectionSettings::resolve(&topology_trigger(both), &BTreeMap::new())
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("exactly one of url, sentinel, cluster"),
            "{e}"
        );
    }
}
