//! KEDA `prometheus` triggers: `query` at `serverAddress`, `threshold` per
//! replica. KEDA's `ignoreNullValues` defaults to true (an empty result is
//! 0); a WorkerPool's default is to treat it as an error, so the default is
//! carried over explicitly and flagged.

use std::collections::BTreeMap;

use super::Mapping;
use serde_json::Value;

use super::fields::comma_list;
use super::source::Source;
use super::trigger::{Param, TriggerCtx};
use super::warnings::ConvertError;

pub fn convert(t: &mut TriggerCtx<'_>) -> Result<Source, ConvertError> {
    let ours = format!("{}.prometheus", t.at);
    let mut body = Mapping::new();
    let url = t.text(
        &["serverAddress"],
        "http://replace-me.invalid:9090",
        &format!("{ours}.url"),
    )?;
    let Some(url) = url else {
        let at = t.meta.path("serverAddress");
        return Err(t.w.invalid(at, "is required (the Prometheus base URL)"));
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        let at = t.meta.path("serverAddress");
        return Err(t.w.invalid(
            at,
            format!("must start with http:// or https://, got {url:?}"),
        ));
    }
    body.insert("url".into(), url.into());
    let Some(query) = t.meta.take_str("query", t.w)? else {
        let at = t.meta.path("query");
        return Err(t.w.invalid(at, "is required"));
    };
    body.insert("query".into(), query.into());
    auth(t, &mut body, &ours)?;
    headers(t, &mut body)?;
    on_empty(t, &mut body)?;
    warn_unsupported(t)?;
    let Some(target) = t.meta.take_f64("threshold", t.w)? else {
        let at = t.meta.path("threshold");
        return Err(t
            .w
            .invalid(at, "is required (the value one replica should handle)"));
    };
    if target <= 0.0 {
        let at = t.meta.path("threshold");
        return Err(t.w.invalid(at, format!("must be > 0, got {target}")));
    }
    let activation = t.meta.take_f64("activationThreshold", t.w)?.unwrap_or(0.0);
    Ok(Source {
        key: "prometheus",
        body,
        target,
        activation,
    })
}

/// `customHeaders: "X-Scope-OrgID=shop,X-Other=v"` -> `headers`.
fn headers(t: &mut TriggerCtx<'_>, body: &mut Mapping) -> Result<(), ConvertError> {
    let Some(text) = t.meta.take_str("customHeaders", t.w)? else {
        return Ok(());
    };
    let mut headers = BTreeMap::new();
    for item in comma_list(&text) {
        let Some((k, v)) = item.split_once('=') else {
            let at = t.meta.path("customHeaders");
            return Err(t
                .w
                .invalid(at, format!("expected name=value, got {item:?}")));
        };
        headers.insert(k.trim().to_string(), v.trim().to_string());
    }
    if !headers.is_empty() {
        let m: Mapping = headers.into_iter().map(|(k, v)| (k, v.into())).collect();
        body.insert("headers".into(), Value::Object(m));
    }
    Ok(())
}

fn on_empty(t: &mut TriggerCtx<'_>, body: &mut Mapping) -> Result<(), ConvertError> {
    let given = t.meta.take_bool("ignoreNullValues", t.w)?;
    if given == Some(false) {
        body.insert("onEmpty".into(), "Error".into());
        return Ok(());
    }
    body.insert("onEmpty".into(), "Zero".into());
    let how = if given.is_some() {
        "true"
    } else {
        "absent (KEDA's default: true)"
    };
    let msg = format!("{how}: carried over as onEmpty: Zero, which hides outages: a broken query or a lost scrape target reads as 0 and can scale a busy pool down to minReplicas; set onEmpty: Error once the query always returns a sample");
    t.w.add(t.meta.path("ignoreNullValues"), msg);
    Ok(())
}

/// `authModes` bearer / basic map to Secret references; the rest cannot.
fn auth(t: &mut TriggerCtx<'_>, body: &mut Mapping, ours: &str) -> Result<(), ConvertError> {
    let modes = match t.param(&["authModes", "authMode"])? {
        None => Vec::new(),
        Some(found) => match found.param {
            Param::Plain(text) => comma_list(&text),
            _ => {
                t.w.add(found.from, "authModes comes from a Secret or env convert cannot read; no authentication carried over: set bearerTokenSecretRef or basicAuthSecretRef by hand");
                Vec::new()
            }
        },
    };
    for mode in modes {
        match mode.as_str() {
            "bearer" => {
                if let Some(r) = t.secret(
                    &["bearerToken", "token"],
                    &format!("{ours}.bearerTokenSecretRef"),
                )? {
                    body.insert("bearerTokenSecretRef".into(), r);
                }
            }
            "basic" => basic_auth(t, body, ours)?,
            other => {
                let msg = format!("auth mode {other:?} has no equivalent (a WorkerPool supports bearer and basic only); not carried over");
                let at = t.meta.path("authModes");
                t.w.add(at, msg);
            }
        }
    }
    for name in [
        "ca",
        "cert",
        "key",
        "customAuthHeader",
        "customAuthValue",
        "apiKey",
        "oauthTokenURI",
        "clientID",
        "clientSecret",
        "scopes",
        "endpointParams",
    ] {
        if let Some(found) = t.param(&[name])? {
            t.w.add(found.from, "no equivalent for a Prometheus trigger (TLS client certificates, a custom CA, custom auth headers, API keys and OAuth are not supported); not carried over");
        }
    }
    Ok(())
}

/// KEDA takes `username` and `password` as two references; a WorkerPool
/// reads keys `username` and `password` of one Secret.
fn basic_auth(t: &mut TriggerCtx<'_>, body: &mut Mapping, ours: &str) -> Result<(), ConvertError> {
    let field = format!("{ours}.basicAuthSecretRef");
    let user = t.secret(&["username"], &field)?;
    let pass = t.secret(&["password"], &field)?;
    let secret_of = |v: &Option<Value>, key: &str| {
        v.as_ref().and_then(|m| {
            let name = m.get("name")?.as_str()?.to_string();
            Some((name, m.get("key")?.as_str()? == key))
        })
    };
    let (u, p) = (secret_of(&user, "username"), secret_of(&pass, "password"));
    let Some((name, _)) = p.clone().or(u.clone()) else {
        return Ok(());
    };
    let exact =
        matches!((&u, &p), (Some((un, true)), Some((pn, true))) if un == &name && pn == &name);
    if !exact {
        let msg = format!("a WorkerPool reads basic auth from one Secret with keys `username` and `password`; KEDA's references differ: make Secret {name} hold both keys (set in {field})");
        t.w.add(format!("{} authModes basic", t.at), msg);
    }
    body.insert(
        "basicAuthSecretRef".into(),
        super::fields::mapping([("name", name.into())]),
    );
    Ok(())
}

fn warn_unsupported(t: &mut TriggerCtx<'_>) -> Result<(), ConvertError> {
    let notes: [(&str, &str); 6] = [
        ("namespace", "no equivalent: a WorkerPool sends no namespace= query parameter; point url at an endpoint that needs none, or filter by namespace in the query"),
        ("queryParameters", "no equivalent: a WorkerPool sends only the query; move what these parameters select into the query or the url's endpoint"),
        ("unsafeSsl", "no equivalent: a WorkerPool always verifies the Prometheus server's certificate; serve one the system roots trust, or use http:// inside the cluster"),
        ("timeout", "no per-trigger timeout: the operator's read timeout (2 s, never longer than the polling interval) applies"),
        ("awsRegion", "no equivalent: AWS SigV4 signing (Amazon Managed Prometheus) is not supported"),
        ("identityOwner", "no equivalent: cloud workload identity is not supported"),
    ];
    for (key, note) in notes {
        if let Some(v) = t.meta.take_str(key, t.w)? {
            if key == "unsafeSsl" && super::fields::parse_go_bool(&v) == Some(false) {
                continue;
            }
            t.w.add(t.meta.path(key), note);
        }
    }
    Ok(())
}
