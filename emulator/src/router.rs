//! URL → what the request is about: discovery, or a verb on a resource.

use std::collections::HashMap;
use std::fmt;

use hyper::Method;

/// A Kubernetes API verb, as RBAC and audit logs name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }

    pub fn is_write(self) -> bool {
        !matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decoded query parameters (the last value wins, like `url.Values.Get`).
#[derive(Debug, Clone, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: &str) -> Self {
        Query(
            form_urlencoded::parse(raw.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// `true`/`1` (as Go's `strconv.ParseBool` accepts).
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key),
            Some("true" | "1" | "True" | "TRUE" | "t" | "T")
        )
    }
}

/// A request on a resource path.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub plural: String,
    /// Set for paths under `/namespaces/{ns}/`.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Version,
    Healthz,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`
    Resources {
        group: String,
        version: String,
    },
    Resource(ResourcePath),
    /// `/openapi/...`, with the path.
    OpenApi(String),
    Unknown,
}

fn resource_path(group: &str, version: &str, rest: &[&str]) -> Route {
    let make = |plural: &str, namespace: Option<&str>, name: Option<&&str>, sub: Option<&&str>| {
        Route::Resource(ResourcePath {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.map(|s| s.to_string()),
            subresource: sub.map(|s| s.to_string()),
        })
    };
    match rest {
        [] => Route::Resources {
            group: group.to_string(),
            version: version.to_string(),
        },
        // `/namespaces/{ns}/status` is the namespace's own subresource.
        ["namespaces", ns, sub @ ("status" | "finalize")] if group.is_empty() => {
            make("namespaces", None, Some(ns), Some(sub))
        }
        ["namespaces", ns, plural, tail @ ..] if tail.len() <= 2 => {
            make(plural, Some(ns), tail.first(), tail.get(1))
        }
        [plural, tail @ ..] if tail.len() <= 2 => make(plural, None, tail.first(), tail.get(1)),
        _ => Route::Unknown,
    }
}

pub fn route(path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Healthz,
        ["openapi", ..] => Route::OpenApi(path.to_string()),
        ["api"] => Route::CoreVersions,
        ["api", version, rest @ ..] => resource_path("", version, rest),
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["apis", group, version, rest @ ..] => resource_path(group, version, rest),
        _ => Route::Unknown,
    }
}

/// The verb of a request, or None for requests that are not on a resource
/// (discovery) or use a method the path does not allow.
pub fn verb(method: &Method, route: &Route, query: &Query) -> Option<Verb> {
    let Route::Resource(p) = route else {
        return (method == Method::GET).then_some(Verb::Get);
    };
    let named = p.name.is_some();
    let watch = query.flag("watch");
    Some(match (method.as_str(), named) {
        ("GET", _) if watch => Verb::Watch,
        ("GET", true) => Verb::Get,
        ("GET", false) => Verb::List,
        ("POST", false) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => return None,
    })
}

#[cfg(test)]
mod test {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match route(path) {
            Route::Resource(p) => p,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths() {
        let p = res("/apis/apps/v1/namespaces/default/deployments/web/scale");
        assert_eq!(
            (p.group.as_str(), p.plural.as_str()),
            ("apps", "deployments")
        );
        assert_eq!(p.namespace.as_deref(), Some("default"));
        assert_eq!(p.name.as_deref(), Some("web"));
        assert_eq!(p.subresource.as_deref(), Some("scale"));
        let p = res("/api/v1/namespaces/default");
        assert_eq!(
            (p.plural.as_str(), p.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let p = res("/api/v1/namespaces/kube-system/status");
        assert_eq!(p.subresource.as_deref(), Some("status"));
        assert_eq!(p.namespace, None);
        let p = res("/api/v1/pods");
        assert_eq!((p.plural.as_str(), p.namespace.clone()), ("pods", None));
        assert_eq!(
            route("/apis/example.dev"),
            Route::Group("example.dev".into())
        );
        assert_eq!(
            route("/apis/example.dev/v1"),
            Route::Resources {
                group: "example.dev".into(),
                version: "v1".into()
            }
        );
    }

    #[test]
    fn verbs() {
        let r = route("/api/v1/namespaces/a/configmaps");
        assert_eq!(
            verb(&Method::GET, &r, &Query::parse("watch=1")),
            Some(Verb::Watch)
        );
        assert_eq!(
            verb(&Method::GET, &r, &Query::parse("watch=false")),
            Some(Verb::List)
        );
        assert_eq!(verb(&Method::PUT, &r, &Query::default()), None);
    }
}
