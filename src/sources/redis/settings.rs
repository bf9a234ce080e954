//! A trigger's connection settings: the URL parsed, its Secrets resolved,
//! and the key that says which triggers may share one connection.

use ::redis::IntoConnectionInfo;

use crate::api::RedisTrigger;
use crate::sources::{secret_text, SecretLookup, SourceError};

/// What makes two connections different. Holds the password (it must: two
/// passwords are two connections) but never shows it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct EndpointKey {
    /// `redis[s]://host:port/db`, without credentials.
    pub(super) display: String,
    /// The URL's query (e.g. `protocol=resp3`), which changes the connection.
    pub(super) query: String,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) insecure: bool,
    pub(super) ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for EndpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointKey")
            .field("display", &self.display)
            .field("username", &self.username.as_ref().map(|_| "<set>"))
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("insecure", &self.insecure)
            .field("ca", &self.ca.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// A trigger's connection settings with its Secrets resolved.
pub(super) struct ConnectionSettings {
    pub(super) key: EndpointKey,
    /// The URL handed to the redis crate: credentials removed (they are set
    /// separately), `#insecure` added for insecureSkipVerify.
    pub(super) url: String,
    /// Where it connects, for the endpoint policy's check of resolved addresses.
    pub(super) host: String,
    pub(super) port: u16,
}

impl ConnectionSettings {
    pub(super) fn resolve(
        r: &RedisTrigger,
        secrets: &dyn SecretLookup,
    ) -> Result<ConnectionSettings, SourceError> {
        let mut url = url::Url::parse(&r.url)
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
        // Credentials in the URL itself, decoded as the redis crate decodes them.
        let (url_user, url_password) = {
            let info = r.url.as_str().into_connection_info().map_err(|e| {
                SourceError::Config(format!("redis.url is not usable ({})", e.category()))
            })?;
            let s = info.redis_settings();
            (
                s.username().map(str::to_string),
                s.password().map(str::to_string),
            )
        };
        let username = match &r.username_secret_ref {
            Some(s) => Some(secret_text(secrets, s)?),
            None => url_user.filter(|u| !u.is_empty()),
        };
        let password = match &r.password_secret_ref {
            Some(s) => Some(secret_text(secrets, s)?),
            None => url_password.filter(|p| !p.is_empty()),
        };
        let tls_settings = r.tls.clone().unwrap_or_default();
        if !tls && r.tls.is_some() {
            return Err(SourceError::Config(
                "redis.tls is set but the URL is redis:// (use rediss:// for TLS)".into(),
            ));
        }
        let ca = match &tls_settings.ca_secret_ref {
            Some(s) => {
                let pem = secrets.get(s)?;
                check_ca_pem(&pem, &s.name, &s.key)?;
                Some(pem)
            }
            None => None,
        };
        let insecure = tls && tls_settings.insecure_skip_verify;

        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_fragment(insecure.then_some("insecure"));
        // host_str keeps an IPv6 address in brackets, as a URL needs.
        let display = format!("{}://{}:{}/{}", url.scheme(), host, port, db);
        Ok(ConnectionSettings {
            key: EndpointKey {
                display,
                query: url.query().unwrap_or_default().to_string(),
                username,
                password,
                insecure,
                ca,
            },
            url: url.to_string(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        })
    }
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
            url: url.into(),
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
        }
    }

    #[test]
    fn url_credentials_never_reach_the_display_and_secrets_override_them() {
        let mut t = trigger("redis://olduser:oldpass@example.com:7000/3");
        let s = ConnectionSettings::resolve(&t, &BTreeMap::new()).unwrap();
        assert_eq!(s.key.display, "redis://example.com:7000/3");
        assert_eq!(s.key.username.as_deref(), Some("olduser"));
        assert_eq!(s.key.password.as_deref(), Some("oldpass"));
        assert!(!s.url.contains("oldpass"), "{}", s.url);
        assert!(!format!("{:?}", s.key).contains("oldpass"));

        t.password_secret_ref = Some(SecretKeyRef {
            name: "auth".into(),
            key: "password".into(),
        });
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
        t.tls = Some(RedisTls {
            insecure_skip_verify: true,
            ca_secret_ref: None,
        });
        let s = ConnectionSettings::resolve(&t, &BTreeMap::new()).unwrap();
        assert!(s.key.insecure);
        assert!(s.url.ends_with("#insecure"), "{}", s.url);
        let mut t = trigger("redis://h");
        t.tls = Some(RedisTls::default());
        assert!(ConnectionSettings::resolve(&t, &BTreeMap::new()).is_err());
    }

    #[test]
    fn a_ca_that_is_not_pem_is_a_config_error() {
        let mut t = trigger("rediss://h");
        t.tls = Some(RedisTls {
            insecure_skip_verify: false,
            ca_secret_ref: Some(SecretKeyRef {
                name: "ca".into(),
                key: "ca.crt".into(),
            }),
        });
        let mut secrets = BTreeMap::new();
        secrets.insert(
            ("ca".to_string(), "ca.crt".to_string()),
            b"not a cert".to_vec(),
        );
        let e = ConnectionSettings::resolve(&t, &secrets).err().unwrap();
        assert_eq!(e.metric_label(), "config");
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
    }
}
