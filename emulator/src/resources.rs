//! The resource types the emulator serves: the built-in subset and those
//! registered by CustomResourceDefinitions.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::validation::CrSchema;

/// Storage identity of a resource: objects are stored per group and
/// resource, not per version (like etcd keys).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: &str, resource: &str) -> Self {
        GroupResource {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

/// Where a `scale` subresource reads and writes replicas.
#[derive(Clone, Debug)]
pub struct ScalePaths {
    /// JSON path such as `.spec.replicas`.
    pub spec_replicas: String,
    pub status_replicas: String,
    /// For CRDs: a path to a string selector in the object.
    pub label_selector: Option<String>,
    /// For Deployments and StatefulSets: format `spec.selector` as a string.
    pub selector_from_spec: bool,
}

/// An `additionalPrinterColumns` entry (used for `Table` responses).
#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// One served version of a resource type.
#[derive(Clone, Debug)]
pub struct VersionInfo {
    pub name: String,
    pub status: bool,
    pub scale: Option<ScalePaths>,
    pub schema: Option<Arc<CrSchema>>,
    pub columns: Vec<PrinterColumn>,
}

/// A resource type: names, scope, subresources and write strategy.
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Served versions, the preferred (storage) one first.
    pub versions: Vec<VersionInfo>,
    /// Whether the strategy maintains `metadata.generation`.
    pub has_generation: bool,
    /// Whether PUT without `metadata.resourceVersion` is allowed.
    pub unconditional_update: bool,
    /// Served from a CustomResourceDefinition.
    pub custom: bool,
    /// Field selector labels besides `metadata.name` / `metadata.namespace`.
    pub field_labels: Vec<&'static str>,
}

impl ResourceType {
    pub fn gr(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    pub fn version(&self, v: &str) -> Option<&VersionInfo> {
        self.versions.iter().find(|x| x.name == v)
    }

    pub fn api_version(&self, v: &str) -> String {
        if self.group.is_empty() {
            v.to_string()
        } else {
            format!("{}/{v}", self.group)
        }
    }

    /// Whether a write to the main resource must keep `status` as it was.
    pub fn has_status(&self, v: &str) -> bool {
        self.version(v).is_some_and(|x| x.status)
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    categories: &[&str],
    status: bool,
    scale: bool,
    has_generation: bool,
    field_labels: &[&'static str],
) -> ResourceType {
    let scale = scale.then(|| ScalePaths {
        spec_replicas: ".spec.replicas".into(),
        status_replicas: ".status.replicas".into(),
        label_selector: None,
        selector_from_spec: true,
    });
    ResourceType {
        group: group.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: categories.iter().map(|s| s.to_string()).collect(),
        versions: vec![VersionInfo {
            name: version.into(),
            status,
            scale,
            schema: None,
            columns: Vec::new(),
        }],
        has_generation,
        unconditional_update: true,
        custom: false,
        field_labels: field_labels.to_vec(),
    }
}

/// The built-in subset, in discovery order.
pub fn builtins() -> Vec<ResourceType> {
    const POD_FIELDS: &[&str] = &[
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ];
    const EVENT_FIELDS: &[&str] = &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ];
    let all = &["all"];
    let mut crd = builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        &["api-extensions"],
        true,
        false,
        true,
        &[],
    );
    crd.unconditional_update = false;
    vec![
        builtin(
            "",
            "v1",
            "namespaces",
            "Namespace",
            false,
            &["ns"],
            &[],
            true,
            false,
            false,
            &["status.phase"],
        ),
        builtin(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            true,
            &["cm"],
            &[],
            false,
            false,
            false,
            &[],
        ),
        builtin(
            "",
            "v1",
            "secrets",
            "Secret",
            true,
            &[],
            &[],
            false,
            false,
            false,
            &["type"],
        ),
        builtin(
            "",
            "v1",
            "pods",
            "Pod",
            true,
            &["po"],
            all,
            true,
            false,
            true,
            POD_FIELDS,
        ),
        builtin(
            "",
            "v1",
            "services",
            "Service",
            true,
            &["svc"],
            all,
            true,
            false,
            false,
            &[],
        ),
        builtin(
            "",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            &[],
            false,
            false,
            false,
            EVENT_FIELDS,
        ),
        builtin(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            all,
            true,
            true,
            true,
            &[],
        ),
        builtin(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            true,
            &["rs"],
            all,
            true,
            true,
            true,
            &[],
        ),
        builtin(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            true,
            &["sts"],
            all,
            true,
            true,
            true,
            &[],
        ),
        builtin(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            true,
            &["hpa"],
            all,
            true,
            false,
            false,
            &[],
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            &[],
            false,
            false,
            false,
            &[],
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            &[],
            false,
            false,
            false,
            &[],
        ),
        crd,
    ]
}

/// All resource types currently served, in discovery order.
#[derive(Debug, Default)]
pub struct Registry {
    types: HashMap<GroupResource, Arc<ResourceType>>,
    order: Vec<GroupResource>,
}

impl Registry {
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        for t in builtins() {
            r.insert(t);
        }
        r
    }

    pub fn insert(&mut self, t: ResourceType) {
        let gr = t.gr();
        if !self.types.contains_key(&gr) {
            self.order.push(gr.clone());
        }
        self.types.insert(gr, Arc::new(t));
    }

    pub fn remove(&mut self, gr: &GroupResource) {
        self.types.remove(gr);
        self.order.retain(|g| g != gr);
    }

    /// The type serving `plural` in `group`/`version`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        let t = self.types.get(&GroupResource::new(group, plural))?;
        t.version(version).map(|_| t.clone())
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.order.iter().filter_map(|gr| self.types.get(gr))
    }
}

/// Reads a `spec.names`-style string list.
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The resource type a (validated) CustomResourceDefinition object declares.
pub fn from_crd(crd: &Value) -> Result<ResourceType, String> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let plural = text(&names["plural"]);
    let kind = text(&names["kind"]);
    let mut versions: Vec<(bool, VersionInfo)> = Vec::new();
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"] != Value::Bool(true) {
            continue;
        }
        let name = text(&v["name"]);
        let schema = match v["schema"].get("openAPIV3Schema") {
            Some(s) => Some(Arc::new(CrSchema::compile(s).map_err(|e| {
                format!("spec.versions[{name}].schema.openAPIV3Schema: Invalid value: {e}")
            })?)),
            None => None,
        };
        let sub = &v["subresources"];
        let scale = sub.get("scale").map(|s| ScalePaths {
            spec_replicas: text(&s["specReplicasPath"]),
            status_replicas: text(&s["statusReplicasPath"]),
            label_selector: s["labelSelectorPath"].as_str().map(str::to_string),
            selector_from_spec: false,
        });
        let columns = v["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| PrinterColumn {
                name: text(&c["name"]),
                type_: text(&c["type"]),
                format: text(&c["format"]),
                description: text(&c["description"]),
                priority: c["priority"].as_i64().unwrap_or(0),
                json_path: text(&c["jsonPath"]),
            })
            .collect();
        versions.push((
            v["storage"] == Value::Bool(true),
            VersionInfo {
                name,
                status: sub.get("status").is_some(),
                scale,
                schema,
                columns,
            },
        ));
    }
    // Discovery prefers the storage version; the rest keep their order.
    versions.sort_by_key(|(storage, _)| !*storage);
    let singular = match names["singular"].as_str() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => kind.to_lowercase(),
    };
    let list_kind = match names["listKind"].as_str() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => format!("{kind}List"),
    };
    Ok(ResourceType {
        group: text(&spec["group"]),
        plural,
        singular,
        kind,
        list_kind,
        namespaced: spec["scope"] != Value::String("Cluster".into()),
        short_names: strings(&names["shortNames"]),
        categories: strings(&names["categories"]),
        versions: versions.into_iter().map(|(_, v)| v).collect(),
        has_generation: true,
        unconditional_update: false,
        custom: true,
        field_labels: Vec::new(),
    })
}
