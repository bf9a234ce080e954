//! A Prometheus instant query: `GET {url}/api/v1/query`.
//!
//! The result must be one number: a scalar, or a vector of exactly one
//! sample. Everything else is an error whose text says how to fix the
//! query — an empty vector (unless `onEmpty: Zero`: KEDA's default of
//! reading it as 0 scaled workloads down at peak, kedacore/keda#3065),
//! several series (aggregate them), NaN/±Inf, a range vector or a string.
//! Prometheus's own `error` text is passed on for a failed query.
//!
//! One HTTP client (with its keep-alive pool) serves every trigger, so
//! polling many pools against one Prometheus reuses a few connections.
//! Responses are read up to [`MAX_BODY`]: a query returning a huge vector
//! must not make the operator buffer it all.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use serde::Deserialize;

use super::policy::EndpointPolicy;
use super::{
    secret_text, truncate, with_timeout, MetricSource, ReadFuture, Redactor, SecretLookup,
    SourceError, Sources,
};
use crate::api::{OnEmpty, PrometheusTrigger, SecretKeyRef, Trigger};

/// Largest response body read (a one-sample answer is well under 1 KiB).
pub const MAX_BODY: usize = 1024 * 1024;

/// The shared HTTP client, made on first use: building one can fail (TLS
/// setup), and `Sources::new` must not. It follows no redirect (a redirect
/// could lead anywhere the policy refuses) and resolves names through the
/// endpoint policy, so an address it refuses is never connected to.
pub(super) struct HttpClient {
    client: OnceLock<Result<reqwest::Client, String>>,
    policy: EndpointPolicy,
}

impl HttpClient {
    pub(super) fn new(policy: EndpointPolicy) -> Self {
        HttpClient {
            client: OnceLock::new(),
            policy,
        }
    }

    fn get(&self) -> Result<reqwest::Client, SourceError> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .user_agent(concat!("workerpool-operator/", env!("CARGO_PKG_VERSION")))
                    .pool_idle_timeout(Duration::from_secs(90))
                    .connect_timeout(Duration::from_secs(5))
                    .redirect(reqwest::redirect::Policy::none())
                    .dns_resolver(Arc::new(PolicyResolver(self.policy.clone())))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| SourceError::Config(format!("cannot set up the HTTP client: {e}")))
    }
}

/// Resolves a name, then refuses it when any of its addresses is refused
/// by the endpoint policy.
struct PolicyResolver(EndpointPolicy);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for a in &addrs {
                policy.check_address("prometheus.url", &host, a.ip())?;
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The registry's entry point: builds a Prometheus source when `trigger.prometheus` is set.
pub(super) fn build(
    sources: &Sources,
    trigger: &Trigger,
    secrets: &dyn SecretLookup,
    timeout: Duration,
) -> Option<Result<Arc<dyn MetricSource>, SourceError>> {
    let p = trigger.prometheus.as_ref()?;
    Some(
        PrometheusSource::new(sources, p, secrets, timeout)
            .map(|s| Arc::new(s) as Arc<dyn MetricSource>),
    )
}

/// A Prometheus query that is not a trigger's own (a drain trigger's `throughputFrom`).
pub(super) fn build_query(
    sources: &Sources,
    p: &PrometheusTrigger,
    secrets: &dyn SecretLookup,
    timeout: Duration,
) -> Result<Arc<dyn MetricSource>, SourceError> {
    PrometheusSource::new(sources, p, secrets, timeout)
        .map(|s| Arc::new(s) as Arc<dyn MetricSource>)
}

/// How requests authenticate. Never printed.
enum Auth {
    None,
    Bearer(HeaderValue),
    Basic { username: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Bearer(_) => "Bearer(<redacted>)",
            Auth::Basic { .. } => "Basic(<redacted>)",
        })
    }
}

/// A `prometheus` trigger (and the query of a Prometheus busy signal).
#[derive(Debug)]
pub(super) struct PrometheusSource {
    client: reqwest::Client,
    /// `{url}/api/v1/query`, without credentials.
    endpoint: String,
    /// The base URL, without credentials, for messages.
    display: String,
    query: String,
    auth: Auth,
    headers: HeaderMap,
    pub(super) on_empty: OnEmpty,
    pub(super) timeout: Duration,
    redact: Redactor,
}

impl PrometheusSource {
    pub(super) fn new(
        sources: &Sources,
        p: &PrometheusTrigger,
        secrets: &dyn SecretLookup,
        timeout: Duration,
    ) -> Result<Self, SourceError> {
        let mut url = url::Url::parse(&p.url)
            .map_err(|e| SourceError::Config(format!("prometheus.url is not a valid URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SourceError::Config(format!(
                "prometheus.url scheme must be http:// or https://, got {}://",
                url.scheme()
            )));
        }
        if url.query().is_some() {
            return Err(SourceError::Config(
                "prometheus.url must not have a query string (the query goes in prometheus.query)"
                    .into(),
            ));
        }
        let url_user = percent_decode(url.username());
        let url_password = url.password().map(percent_decode);
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_fragment(None);
        let display = url.as_str().trim_end_matches('/').to_string();
        let endpoint = format!("{display}/api/v1/query");

        let mut redact = Redactor::default();
        let auth = if let Some(r) = &p.bearer_token_secret_ref {
            let token = secret_text(secrets, r)?;
            let token = token.trim();
            redact.add(token);
            let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                SourceError::Config(format!(
                    "bearer token in secret {:?} key {:?} is not a valid header value",
                    r.name, r.key
                ))
            })?;
            v.set_sensitive(true);
            Auth::Bearer(v)
        } else if let Some(r) = &p.basic_auth_secret_ref {
            let key = |k: &str| SecretKeyRef {
                name: r.name.clone(),
                key: k.into(),
            };
            let username = secret_text(secrets, &key("username"))?;
            let password = secret_text(secrets, &key("password"))?;
            redact.add_basic_auth(&username, &password);
            Auth::Basic { username, password }
        } else if !url_user.is_empty() || url_password.is_some() {
            let password = url_password.unwrap_or_default();
            redact.add_basic_auth(&url_user, &password);
            Auth::Basic {
                username: url_user,
                password,
            }
        } else {
            Auth::None
        };

        let headers = headers(p.headers.as_ref())?;
        Ok(PrometheusSource {
            client: sources.inner.http.get()?,
            endpoint,
            display,
            query: p.query.clone(),
            auth,
            headers,
            on_empty: p.on_empty,
            timeout,
            redact,
        })
    }

    async fn read_once(&self, what: &str) -> Result<f64, SourceError> {
        let data = self.query_data(what).await?;
        one_number(&data, self.on_empty).map_err(|m| SourceError::BadResult(format!("{what}: {m}")))
    }

    /// The query's result, whatever its shape; `what` names it in errors.
    pub(super) async fn query_data(&self, what: &str) -> Result<QueryData, SourceError> {
        let mut req = self
            .client
            .get(&self.endpoint)
            .query(&[("query", self.query.as_str())])
            .headers(self.headers.clone());
        req = match &self.auth {
            Auth::None => req,
            Auth::Bearer(v) => req.header(AUTHORIZATION, v.clone()),
            Auth::Basic { username, password } => req.basic_auth(username, Some(password)),
        };
        let mut resp = req.send().await.map_err(|e| self.http_error(what, e))?;
        let status = resp.status();
        let resp_meta = (status, content_type(resp.headers()));
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large(what));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.http_error(what, e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(too_large(what));
            }
            body.extend_from_slice(&chunk);
        }
        let parsed: Option<ApiResponse> = serde_json::from_slice(&body).ok();
        let prom_error = parsed
            .as_ref()
            .and_then(|r| (r.status != "success").then(|| prometheus_error(r)));
        let answer = Answer::of(&resp_meta, body.len());
        if !status.is_success() {
            let detail = prom_error.unwrap_or_else(|| answer.to_string());
            let msg = format!("{what}: HTTP {}: {detail}", status.as_u16());
            return Err(match status.as_u16() {
                401 | 403 => SourceError::Auth(msg),
                // Prometheus answers a bad query with 400/422 and JSON;
                // anything else in 5xx is the server or a proxy failing.
                500..=599 if parsed.is_none() => SourceError::Connection(msg),
                _ => SourceError::BadResult(msg),
            });
        }
        if let Some(e) = prom_error {
            return Err(SourceError::BadResult(format!("{what}: {e}")));
        }
        let Some(resp) = parsed else {
            return Err(SourceError::BadResult(format!(
                "{what}: the answer is not Prometheus API JSON ({answer})"
            )));
        };
        resp.data
            .ok_or_else(|| SourceError::BadResult(format!("{what}: the answer has no data")))
    }

    fn http_error(&self, what: &str, e: reqwest::Error) -> SourceError {
        if let Some(refused) = policy_refusal(&e) {
            return refused;
        }
        let timeout = e.is_timeout();
        let text = self.redact.clean(&error_chain(&e.without_url()));
        if timeout {
            SourceError::Timeout {
                target: what.to_string(),
                after: self.timeout,
            }
        } else {
            SourceError::Connection(format!("{what}: {text}"))
        }
    }
}

impl MetricSource for PrometheusSource {
    fn read(&self) -> ReadFuture<'_> {
        Box::pin(async move {
            let what = self.describe();
            with_timeout(&what, self.timeout, self.read_once(&what)).await
        })
    }

    fn describe(&self) -> String {
        format!(
            "query {} on {}",
            truncate(&super::one_line(&self.query), 120),
            self.display
        )
    }
}

/// What kind of answer came back, for an error: never its bytes, which
/// could be anything the URL's owner serves (credentials included).
struct Answer {
    status: u16,
    content_type: String,
    size: usize,
}

impl Answer {
    fn of(meta: &(reqwest::StatusCode, String), size: usize) -> Self {
        Answer {
            status: meta.0.as_u16(),
            content_type: meta.1.clone(),
            size,
        }
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP {}, content type {}, {} bytes; expected Prometheus API JSON",
            self.status, self.content_type, self.size
        )
    }
}

/// The media type of a response, only if it is a plain token (`text/html`):
/// a header is the server's bytes too.
fn content_type(headers: &reqwest::header::HeaderMap) -> String {
    let value = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = value.split(';').next().unwrap_or("").trim();
    let plain = !media.is_empty()
        && media.len() <= 64
        && media
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/.+-_".contains(&b));
    if plain {
        media.to_ascii_lowercase()
    } else {
        "(none or not shown)".into()
    }
}

/// Prometheus's own error kinds (`errorType`); its error text is the
/// server's bytes and is not shown: run the query in Prometheus's UI to
/// see it.
const ERROR_TYPES: &[&str] = &[
    "bad_data",
    "execution",
    "timeout",
    "canceled",
    "internal",
    "unavailable",
    "not_found",
    "not_acceptable",
];

fn prometheus_error(r: &ApiResponse) -> String {
    let kind = r
        .error_type
        .as_deref()
        .filter(|k| ERROR_TYPES.contains(k))
        .unwrap_or("unknown");
    let hint = if kind == "bad_data" {
        "the query is not valid PromQL (run it in Prometheus's UI to see where)"
    } else {
        "run the query in Prometheus's UI to see the message"
    };
    format!("Prometheus refused the query (errorType {kind}): {hint}")
}

fn too_large(what: &str) -> SourceError {
    SourceError::BadResult(format!(
        "{what}: the answer is larger than {} KiB; the query must return one number",
        MAX_BODY / 1024
    ))
}

/// The endpoint policy's refusal, when that is why a request failed.
fn policy_refusal(e: &reqwest::Error) -> Option<SourceError> {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(refused @ SourceError::NotAllowed(_)) = cause.downcast_ref::<SourceError>() {
            return Some(refused.clone());
        }
        source = cause.source();
    }
    None
}

/// An error and its causes on one line ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

/// The extra headers of a trigger, checked once at build.
fn headers(spec: Option<&BTreeMap<String, String>>) -> Result<HeaderMap, SourceError> {
    let mut map = HeaderMap::new();
    for (k, v) in spec.into_iter().flatten() {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            SourceError::Config(format!(
                "prometheus.headers: invalid header name {:?}",
                truncate(k, 40)
            ))
        })?;
        let value = HeaderValue::from_str(v).map_err(|_| {
            SourceError::Config(format!("prometheus.headers.{k}: invalid header value"))
        })?;
        map.insert(name, value);
    }
    Ok(map)
}

/// `%XX` decoding of a URL's user or password (the url crate keeps them encoded).
fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The envelope of every Prometheus HTTP API answer.
#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct QueryData {
    #[serde(rename = "resultType")]
    pub(super) result_type: String,
    pub(super) result: serde_json::Value,
}

/// The one number of an instant query's result, or what is wrong with it.
fn one_number(data: &QueryData, on_empty: OnEmpty) -> Result<f64, String> {
    match data.result_type.as_str() {
        "scalar" => sample_value(&data.result),
        "vector" => {
            let samples = data
                .result
                .as_array()
                .ok_or_else(|| "vector result is not a list".to_string())?;
            match samples.as_slice() {
                [] => match on_empty {
                    OnEmpty::Zero => Ok(0.0),
                    OnEmpty::Error => Err("the query returned no data (an empty vector); this is \
                         usually a broken query or scrape, not 'no work' (set onEmpty: Zero if \
                         empty means 0)"
                        .into()),
                },
                [one] => {
                    if let Some(v) = one.get("value") {
                        sample_value(v)
                    } else if one.get("histogram").is_some() {
                        Err(
                            "the query returned a native histogram sample; extract a number \
                             (e.g. histogram_count() or histogram_quantile())"
                                .into(),
                        )
                    } else {
                        Err("the sample has no value".into())
                    }
                }
                // The series' labels are the server's bytes: not quoted.
                many => Err(format!(
                    "the query returned {} series; it must return one: aggregate \
                     them, e.g. sum(...) or max(...)",
                    many.len(),
                )),
            }
        }
        "matrix" => Err(
            "the query returned a range vector (matrix); use an instant vector, \
             e.g. wrap it in rate(...[2m]) or last_over_time(...[2m])"
                .into(),
        ),
        "string" => Err("the query returned a string, not a number".into()),
        _ => Err("the result has a type that is not scalar, vector, matrix or string".into()),
    }
}

/// `[<unix time>, "<value>"]` → the value, refusing NaN and ±Inf.
pub(super) fn sample_value(v: &serde_json::Value) -> Result<f64, String> {
    let text = v
        .as_array()
        .and_then(|a| a.get(1))
        .and_then(|s| s.as_str())
        .ok_or_else(|| "the sample is not [time, \"value\"]".to_string())?;
    let value: f64 = match text {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        t => t
            .parse()
            .map_err(|_| "the sample's value is not a number".to_string())?,
    };
    if value.is_nan() {
        return Err("the query returned NaN (often 0/0: a ratio over no data)".into());
    }
    if value.is_infinite() {
        return Err(format!(
            "the query returned {text} (often a division by zero)"
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(result_type: &str, result: serde_json::Value) -> QueryData {
        QueryData {
            result_type: result_type.into(),
            result,
        }
    }

    #[test]
    fn scalar_and_single_sample() {
        assert_eq!(
            one_number(&data("scalar", json!([1.0, "3.5"])), OnEmpty::Error),
            Ok(3.5)
        );
        assert_eq!(
            one_number(
                &data("vector", json!([{"metric": {}, "value": [1.0, "7"]}])),
                OnEmpty::Error
            ),
            Ok(7.0)
        );
    }

    #[test]
    fn empty_many_nan_matrix() {
        let empty = data("vector", json!([]));
        assert!(one_number(&empty, OnEmpty::Error)
            .unwrap_err()
            .contains("no data"));
        assert_eq!(one_number(&empty, OnEmpty::Zero), Ok(0.0));
        let many = data(
            "vector",
            json!([
                {"metric": {"job": "a"}, "value": [1.0, "1"]},
                {"metric": {"job": "b"}, "value": [1.0, "2"]}
            ]),
        );
        let e = one_number(&many, OnEmpty::Error).unwrap_err();
        assert!(e.contains("2 series") && e.contains("sum("), "{e}");
        assert!(
            !e.contains(r#""a""#),
            "series labels are the server's bytes: {e}"
        );
        let nan = data("scalar", json!([1.0, "NaN"]));
        assert!(one_number(&nan, OnEmpty::Zero).unwrap_err().contains("NaN"));
        let inf = data("scalar", json!([1.0, "+Inf"]));
        assert!(one_number(&inf, OnEmpty::Zero)
            .unwrap_err()
            .contains("+Inf"));
        let m = data("matrix", json!([]));
        assert!(one_number(&m, OnEmpty::Zero)
            .unwrap_err()
            .contains("range vector"));
    }

    #[test]
    fn url_credentials_are_decoded() {
        assert_eq!(percent_decode("a%40b%3A"), "a@b:");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn auth_debug_hides_values() {
        let a = Auth::Basic {
            username: "u".into(),
            password: "hunter22".into(),
        };
        assert!(!format!("{a:?}").contains("hunter22"));
    }
}
