//! Packaging: the Helm chart (charts/workerpool-operator) and the operator
//! image (Dockerfile), checked with real tools and no cluster.
//!
//! Helm itself (its Go SDK, through helm-python-sdk in .venv; driven by
//! tests/helm_render.py) lints the chart with `--strict` and renders it with
//! the default values and with every documented switch; every rendered
//! object is validated by kubernetes-validate (strict: unknown fields fail)
//! for the oldest Kubernetes the chart's `kubeVersion` admits and the newest
//! kubernetes-validate knows. The RBAC the chart grants must equal, verb for
//! verb, the rules in src/controller/rbac.rs; the Grafana dashboard may only
//! query metrics the real operator exports (read from its /metrics); the
//! Dockerfile must pass hadolint and build the binary Cargo.toml declares.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::cluster::{eventually, http_get, Cluster};
use support::crd_schema::CrdSchema;
use support::redis::{connect, free_port, shared_url};
use workerpool_operator::cli::manifest;
use workerpool_operator::controller::rbac::{Rule, LEADER_ELECTION_RULES, WATCH_RULES};

const RELEASE: &str = "wp";
const NS: &str = "ops";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    root().join("charts/workerpool-operator")
}

fn read(path: impl AsRef<Path>) -> String {
    let path = root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_file(path: &str) -> Value {
    workerpool_operator::yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The venv's Python (scripts/test.sh exports PYTHON).
fn python() -> PathBuf {
    std::env::var_os("PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"))
}

/// A tool installed into .venv/bin by scripts/test.sh.
fn venv_tool(name: &str) -> PathBuf {
    let beside_python = python().with_file_name(name);
    if beside_python.exists() {
        beside_python
    } else {
        root().join(".venv/bin").join(name)
    }
}

/// Runs tests/helm_render.py and returns the JSON it prints.
fn helper(args: &[&str]) -> Value {
    let out = Command::new(python())
        .arg(root().join("tests/helm_render.py"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); run the tests through scripts/test.sh",
                python().display()
            )
        });
    assert!(
        out.status.success(),
        "helm_render.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `kubeVersion: ">=1.29.0-0"` -> "1.29.0": the oldest Kubernetes the chart
/// claims, which every manifest must be valid for.
fn min_kube_version() -> String {
    let chart = yaml_file("charts/workerpool-operator/Chart.yaml");
    let constraint = chart["kubeVersion"]
        .as_str()
        .expect("Chart.yaml has no kubeVersion");
    let v = constraint
        .strip_prefix(">=")
        .unwrap_or_else(|| panic!("kubeVersion {constraint:?}: expected a `>=X.Y.Z-0` lower bound"))
        .trim()
        .trim_end_matches("-0");
    let parts: Vec<u32> = v
        .split('.')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("kubeVersion {constraint:?}"))
        })
        .collect();
    assert_eq!(parts.len(), 3, "kubeVersion {constraint:?}");
    v.to_string()
}

/// Every documented switch of values.yaml (see the chart's README), with the
/// values that turn it on.
fn switches() -> Vec<(&'static str, Value)> {
    vec![
        ("defaults", json!({})),
        ("watchNamespace", json!({"watchNamespace": "shop"})),
        ("replicaCount 2", json!({"replicaCount": 2})),
        (
            "leaderElection forced",
            json!({"leaderElection": {"enabled": true}}),
        ),
        (
            "serviceMonitor",
            json!({"serviceMonitor": {"enabled": true}}),
        ),
        ("dashboard", json!({"dashboard": {"enabled": true}})),
        (
            "all at once",
            json!({
                "watchNamespace": "shop",
                "replicaCount": 3,
                "logFormat": "text",
                "logLevel": "debug",
                "image": {"digest": format!("sha256:{}", "a".repeat(64))},
                "serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}},
                "dashboard": {"enabled": true, "namespace": "monitoring"},
                "rbac": {"extraRules": [{"apiGroups": ["argoproj.io"], "resources": ["rollouts/scale"], "verbs": ["get", "patch"]}]},
                "extraEnv": [{"name": "EXTRA", "value": "1"}],
                "podDisruptionBudget": {"minAvailable": "50%"},
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
                "priorityClassName": "system-cluster-critical"
            }),
        ),
    ]
}

struct Rendered {
    objects: Vec<Value>,
    /// (template, object, {kube version: result}) for templates and crds/.
    validation: Vec<(String, Value, BTreeMap<String, String>)>,
    notes: String,
}

impl Rendered {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        match self.all(kind).as_slice() {
            [o] => o,
            other => panic!("expected one {kind}, rendered {}", other.len()),
        }
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    fn container(&self) -> &Value {
        &self.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    }

    fn env(&self, name: &str) -> Option<&Value> {
        self.container()["env"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == name)
    }
}

fn render(values: &Value) -> Rendered {
    let versions = format!("{},latest", min_kube_version());
    let out = helper(&[
        "render",
        chart_dir().to_str().unwrap(),
        RELEASE,
        NS,
        &versions,
        &values.to_string(),
    ]);
    let mut validation = vec![];
    let mut objects = vec![];
    for (list, is_template) in [(&out["objects"], true), (&out["crds"], false)] {
        for o in list.as_array().unwrap() {
            let results = o["validation"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            validation.push((
                o["template"].as_str().unwrap().to_string(),
                o["object"].clone(),
                results,
            ));
            if is_template {
                objects.push(o["object"].clone());
            }
        }
    }
    Rendered {
        objects,
        validation,
        notes: out["notes"].as_str().unwrap_or_default().to_string(),
    }
}

/// `workerpool-operator run --help` of the binary under test.
fn run_help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_workerpool-operator"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn fullname() -> String {
    format!("{RELEASE}-workerpool-operator")
}

// ---------------------------------------------------------------- metadata

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart = yaml_file("charts/workerpool-operator/Chart.yaml");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "workerpool-operator");
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "Chart.yaml appVersion must be the crate version (Cargo.toml)"
    );
    // Parses, and is one the validator has schemas for.
    let min = min_kube_version();
    let minor: u32 = min.split('.').nth(1).unwrap().parse().unwrap();
    assert!(
        minor >= 29,
        "the CRD's CEL rules with fieldPath need Kubernetes >= 1.29, chart claims {min}"
    );
}

#[test]
fn chart_crd_is_byte_identical_to_the_generated_crd() {
    let generated = std::fs::read(root().join("crds/workerpool.yaml")).unwrap();
    let shipped =
        std::fs::read(chart_dir().join("crds/workerpool.yaml")).expect("chart has no crds/");
    assert!(
        generated == shipped,
        "charts/workerpool-operator/crds/workerpool.yaml is stale: \
         cp crds/workerpool.yaml charts/workerpool-operator/crds/"
    );
    let files: Vec<_> = std::fs::read_dir(chart_dir().join("crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["workerpool.yaml"], "only the WorkerPool CRD ships");
}

#[test]
fn every_values_key_is_documented_in_the_chart_readme() {
    let values = yaml_file("charts/workerpool-operator/values.yaml");
    let readme = read("charts/workerpool-operator/README.md");
    let schema: Value =
        serde_json::from_str(&read("charts/workerpool-operator/values.schema.json")).unwrap();
    let mut missing = vec![];
    for (key, v) in values.as_object().unwrap() {
        assert!(
            schema["properties"].get(key).is_some(),
            "values.yaml key {key} is not in values.schema.json"
        );
        let keys: Vec<String> = match v.as_object().filter(|o| !o.is_empty()) {
            Some(o)
                if !matches!(
                    key.as_str(),
                    "resources" | "podSecurityContext" | "securityContext"
                ) =>
            {
                o.keys().map(|k| format!("{key}.{k}")).collect()
            }
            _ => vec![key.clone()],
        };
        for k in keys {
            if !readme.contains(&format!("`{k}`")) {
                missing.push(k);
            }
        }
    }
    assert!(missing.is_empty(), "undocumented values: {missing:?}");
}

// ---------------------------------------------------------------- helm lint and render

#[test]
fn helm_lint_strict_passes_for_every_switch() {
    let kube = format!("v{}", min_kube_version());
    for (name, values) in switches() {
        let report = helper(&[
            "lint",
            chart_dir().to_str().unwrap(),
            &kube,
            &values.to_string(),
        ]);
        let bad: Vec<&Value> = report["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
            .collect();
        assert!(
            bad.is_empty() && report["errors"].as_array().unwrap().is_empty(),
            "{name}: helm lint --strict: {report}"
        );
    }
}

/// Kinds kubernetes-validate has no schema for (CRDs of other projects).
/// Anything else without a schema is a typo'd kind or apiVersion.
const NOT_IN_KUBERNETES_VALIDATE: &[&str] = &["ServiceMonitor"];

#[test]
fn every_rendered_manifest_is_valid_for_the_claimed_kubernetes_versions() {
    for (name, values) in switches() {
        let r = render(&values);
        assert!(!r.objects.is_empty(), "{name}: nothing rendered");
        let mut failures = vec![];
        let mut seen = BTreeSet::new();
        for (template, obj, results) in &r.validation {
            let kind = obj["kind"].as_str().unwrap_or_default();
            let id = format!(
                "{kind} {}/{}",
                obj["metadata"]["namespace"].as_str().unwrap_or(""),
                obj["metadata"]["name"].as_str().unwrap_or("")
            );
            if !seen.insert(id.clone()) {
                failures.push(format!("{template}: {id} rendered twice"));
            }
            assert_eq!(results.len(), 2, "{results:?}");
            for (version, result) in results {
                let skip =
                    NOT_IN_KUBERNETES_VALIDATE.contains(&kind) && result.starts_with("no-schema");
                if result != "ok" && !skip {
                    failures.push(format!(
                        "{template}: {id} on Kubernetes {version}: {result}"
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
    }
}

#[test]
fn namespaced_objects_name_their_namespace() {
    // `helm template | kubectl apply -f -` must not land anything in the
    // current kubectl namespace by accident.
    const CLUSTER_SCOPED: &[&str] = &[
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
    ];
    for (name, values) in switches() {
        for o in &render(&values).objects {
            let kind = o["kind"].as_str().unwrap();
            let ns = o["metadata"]["namespace"].as_str();
            if CLUSTER_SCOPED.contains(&kind) {
                assert_eq!(ns, None, "{name}: {kind} is cluster-scoped");
            } else {
                assert!(
                    ns.is_some(),
                    "{name}: {kind} {} has no namespace",
                    o["metadata"]["name"]
                );
            }
        }
    }
}

// ---------------------------------------------------------------- RBAC equals the code

/// (apiGroup, resource, verb): what a set of rules grants, however grouped.
fn grants_of_rules(rules: &[Rule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules {
        for res in r.resources {
            for verb in r.verbs {
                out.insert((r.api_group.to_string(), res.to_string(), verb.to_string()));
            }
        }
    }
    out
}

fn grants_of(role: &Value) -> BTreeSet<(String, String, String)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not a list: {v}"))
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("role without rules") {
        let keys: BTreeSet<&str> = rule
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["apiGroups", "resources", "verbs"]),
            "a rule with resourceNames/nonResourceURLs is not in rbac.rs: {rule}"
        );
        for g in strings(&rule["apiGroups"]) {
            for res in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    assert_ne!(verb, "*", "wildcard verb in {rule}");
                    assert_ne!(res, "*", "wildcard resource in {rule}");
                    out.insert((g.clone(), res.clone(), verb));
                }
            }
        }
    }
    out
}

fn assert_grants(what: &str, role: &Value, want: &[Rule]) {
    let got = grants_of(role);
    let want = grants_of_rules(want);
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what} differs from src/controller/rbac.rs:\n  missing (the operator would get 403): {missing:?}\n  extra (more than it uses): {extra:?}"
    );
}

fn assert_binds(binding: &Value, role_kind: &str, role_name: &str) {
    assert_eq!(binding["roleRef"]["kind"], role_kind);
    assert_eq!(binding["roleRef"]["name"], role_name);
    assert_eq!(binding["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": fullname(), "namespace": NS}])
    );
}

#[test]
fn cluster_role_grants_exactly_the_watch_rules() {
    let r = render(&json!({}));
    let role = r.one("ClusterRole");
    assert_grants("ClusterRole", role, WATCH_RULES);
    assert_binds(r.one("ClusterRoleBinding"), "ClusterRole", &fullname());
    assert!(r.all("Role").is_empty(), "one replica: no Lease Role");
    assert_eq!(r.one("ServiceAccount")["metadata"]["name"], fullname());
    assert_eq!(
        r.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"],
        fullname()
    );
    assert!(r.env("WATCH_NAMESPACE").is_none());
}

#[test]
fn namespaced_mode_grants_the_watch_rules_in_that_namespace_only() {
    let r = render(&json!({"watchNamespace": "shop"}));
    assert!(
        r.all("ClusterRole").is_empty(),
        "no cluster-wide permission"
    );
    assert!(r.all("ClusterRoleBinding").is_empty());
    let role = r.one("Role");
    assert_eq!(role["metadata"]["namespace"], "shop");
    assert_grants("Role (watchNamespace)", role, WATCH_RULES);
    let binding = r.one("RoleBinding");
    assert_eq!(binding["metadata"]["namespace"], "shop");
    assert_binds(binding, "Role", &fullname());
    assert_eq!(r.env("WATCH_NAMESPACE").unwrap()["value"], "shop");
}

#[test]
fn extra_rules_are_added_to_the_watch_rules() {
    let extra = json!({"apiGroups": ["argoproj.io"], "resources": ["rollouts/scale"], "verbs": ["get", "patch"]});
    let r = render(&json!({"rbac": {"extraRules": [extra]}}));
    let got = grants_of(r.one("ClusterRole"));
    let mut want = grants_of_rules(WATCH_RULES);
    for verb in ["get", "patch"] {
        want.insert(("argoproj.io".into(), "rollouts/scale".into(), verb.into()));
    }
    assert_eq!(got, want);
    let off = render(&json!({"rbac": {"create": false}}));
    for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        assert!(
            off.all(kind).is_empty(),
            "rbac.create=false still renders a {kind}"
        );
    }
}

#[test]
fn more_than_one_replica_elects_a_leader_with_exactly_the_lease_rules() {
    for values in [
        json!({"replicaCount": 2}),
        json!({"replicaCount": 2, "watchNamespace": "shop"}),
        json!({"leaderElection": {"enabled": true}}),
    ] {
        let r = render(&values);
        let lease_role = format!("{}-leader-election", fullname());
        let role = r.named("Role", &lease_role);
        assert_eq!(
            role["metadata"]["namespace"], NS,
            "the Lease lives in the release namespace"
        );
        assert_grants("leader-election Role", role, LEADER_ELECTION_RULES);
        let binding = r.named("RoleBinding", &lease_role);
        assert_eq!(binding["metadata"]["namespace"], NS);
        assert_binds(binding, "Role", &lease_role);
        assert_eq!(
            r.container()["args"],
            json!(["run", "--leader-election"]),
            "{values}"
        );
        assert_eq!(r.env("LEASE_NAMESPACE").unwrap()["value"], NS);
        assert_eq!(
            r.one("Deployment")["spec"]["strategy"]["type"],
            "RollingUpdate"
        );
    }
    let single = render(&json!({}));
    assert_eq!(single.container()["args"], json!(["run"]));
    assert_eq!(
        single.one("Deployment")["spec"]["strategy"]["type"],
        "Recreate",
        "without leader election an upgrade must not run two instances"
    );
    assert!(single.all("PodDisruptionBudget").is_empty());
}

// ---------------------------------------------------------------- the Deployment

#[test]
fn deployment_runs_the_operator_hardened_with_probes_on_its_port() {
    let r = render(&json!({}));
    let d = r.one("Deployment");
    let pod = &d["spec"]["template"]["spec"];
    let c = r.container();
    assert_eq!(
        c["image"],
        format!(
            "ghcr.io/workerpool-dev/workerpool-operator:{}",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(c["args"], json!(["run"]));
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        assert_eq!(
            r.env(name).unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
            field
        );
    }
    assert_eq!(r.env("LOG_FORMAT").unwrap()["value"], "json");
    assert_eq!(r.env("METRICS_ADDR").unwrap()["value"], "0.0.0.0:8080");
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "http"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "http"})
    );

    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());

    // Every environment variable and flag the chart sets is one `run` reads
    // (its --help lists them; RUST_LOG is read by the log filter,
    // POD_NAMESPACE by a hidden flag, MIMALLOC_* by the allocator).
    let help = run_help();
    let mut known: Vec<String> = help
        .split("[env: ")
        .skip(1)
        .map(|s| s.split('=').next().unwrap().to_string())
        .collect();
    // MIMALLOC_* are read by the binary's allocator (src/main.rs).
    known.extend(
        [
            "RUST_LOG",
            "POD_NAMESPACE",
            "MIMALLOC_PURGE_DELAY",
            "MIMALLOC_ARENA_EAGER_COMMIT",
        ]
        .map(String::from),
    );
    for values in [
        json!({"replicaCount": 2, "logLevel": "debug", "watchNamespace": "shop"}),
        json!({}),
    ] {
        let r = render(&values);
        for e in r.container()["env"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap().to_string();
            assert!(
                known.contains(&name),
                "the chart sets {name}, which `workerpool-operator run` does not read"
            );
        }
        for arg in r.container()["args"].as_array().unwrap().iter().skip(1) {
            let flag = arg.as_str().unwrap();
            let has = help.lines().any(|l| {
                l.trim_start()
                    .strip_prefix(flag)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
            });
            assert!(has, "`run` has no {flag}");
        }
    }

    // The Service reaches the pods and the metrics port.
    let svc = r.one("Service");
    let labels = d["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            labels.get(k),
            Some(v),
            "Service selector {k} does not match the pods"
        );
    }
    assert_eq!(
        d["spec"]["selector"]["matchLabels"],
        svc["spec"]["selector"]
    );
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
}

#[test]
fn pod_disruption_budget_and_service_monitor_select_the_operator() {
    let r = render(
        &json!({"replicaCount": 2, "serviceMonitor": {"enabled": true, "labels": {"release": "prom"}}}),
    );
    let selector = &r.one("Deployment")["spec"]["selector"]["matchLabels"];
    let pdb = r.one("PodDisruptionBudget");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let sm = r.one("ServiceMonitor");
    assert_eq!(sm["metadata"]["labels"]["release"], "prom");
    let svc = r.one("Service");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor does not select the Service"
        );
    }
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], svc["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    // Keeps the pool's `namespace` label instead of `exported_namespace`.
    assert_eq!(endpoint["honorLabels"], true);
    assert!(render(&json!({})).all("ServiceMonitor").is_empty());
}

#[test]
fn notes_show_a_pool_the_crd_and_the_operator_accept() {
    for values in [
        json!({}),
        json!({"watchNamespace": "shop", "replicaCount": 2}),
    ] {
        let notes = render(&values).notes;
        let start = notes
            .find("<<'YAML'\n")
            .expect("NOTES.txt has no example WorkerPool")
            + 8;
        let len = notes[start..].find("\n  YAML").unwrap();
        let text: String = notes[start..start + len]
            .lines()
            .map(|l| l.strip_prefix("  ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let obj: Value = workerpool_operator::yaml::from_str(&text).unwrap();
        CrdSchema::workerpool()
            .admit(&obj)
            .unwrap_or_else(|e| panic!("NOTES.txt WorkerPool: {e:?}"));
        manifest::parse(&text).unwrap_or_else(|e| panic!("NOTES.txt WorkerPool: {e}"));
        assert!(notes.contains("kubectl get wp"));
    }
}

// ---------------------------------------------------------------- values.schema.json

#[test]
fn schema_rejects_wrong_values_naming_the_key() {
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    let kube = format!("v{}", min_kube_version());
    for (values, key) in [
        (json!({"replicaCount": "two"}), "/replicaCount"),
        (json!({"replicaCount": -1}), "/replicaCount"),
        (json!({"logFormat": "xml"}), "/logFormat"),
        (json!({"replicas": 2}), "replicas"),
        (
            json!({"watchNamespace": "Not_A_Namespace"}),
            "/watchNamespace",
        ),
        (
            json!({"serviceMonitor": {"enabled": "yes"}}),
            "/serviceMonitor/enabled",
        ),
        (
            json!({"serviceMonitor": {"interval": "30 seconds"}}),
            "/serviceMonitor/interval",
        ),
        (json!({"dashboard": {"enable": true}}), "enable"),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (
            json!({"podDisruptionBudget": {"minAvailable": "half"}}),
            "/podDisruptionBudget/minAvailable",
        ),
        (
            json!({"rbac": {"extraRules": [{"resources": ["pods"], "verbs": ["get"]}]}}),
            "apiGroups",
        ),
    ] {
        let out = helper(&["schema", chart, &values.to_string()]);
        assert_eq!(out["ok"], false, "{values} accepted by values.schema.json");
        let error = out["error"].as_str().unwrap();
        assert!(
            error.contains(key),
            "{values}: error does not name {key}: {error}"
        );
        // And `helm lint` (like `helm install`) fails on them.
        let lint = helper(&["lint", chart, &kube, &values.to_string()]);
        assert!(
            !lint["errors"].as_array().unwrap().is_empty(),
            "{values}: helm lint passed"
        );
    }
    for (name, values) in switches() {
        let out = helper(&["schema", chart, &values.to_string()]);
        assert_eq!(out["ok"], true, "{name}: {}", out["error"]);
    }
    // The schema allows exactly the log formats the binary accepts.
    let schema: Value =
        serde_json::from_str(&read("charts/workerpool-operator/values.schema.json")).unwrap();
    let help = run_help();
    let formats = help
        .split("--log-format")
        .nth(1)
        .and_then(|s| s.split("[possible values: ").nth(1))
        .and_then(|s| s.split(']').next())
        .expect("run --help lists no log formats");
    let mut want: Vec<&str> = formats.split(", ").collect();
    let mut got: Vec<&str> = schema["properties"]["logFormat"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------- the Grafana dashboard

/// Label names the scrape adds (Prometheus target labels), not the operator.
const SCRAPE_LABELS: &[&str] = &["job", "instance", "pod", "container", "endpoint", "service"];

/// What one PromQL expression references.
#[derive(Default, Debug)]
struct Refs {
    metrics: BTreeSet<String>,
    /// (metric, label) from `metric{label=...}`.
    matchers: BTreeSet<(String, String)>,
    /// Labels of `by (...)`, `without (...)`, `on (...)`, ... and legends.
    grouping: BTreeSet<String>,
}

/// A small PromQL scanner: enough to find metric names, label matchers and
/// grouping labels; skips strings, range selectors and `$variables`.
fn promql_refs(expr: &str, refs: &mut Refs) {
    let b = expr.as_bytes();
    let mut i = 0;
    let ident = |i: usize| -> usize {
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b':') {
            j += 1;
        }
        j
    };
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut last_metric: Option<String> = None;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' {
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'[' {
            while i < b.len() && b[i] != b']' {
                i += 1;
            }
            i += 1;
        } else if c == b'$' {
            i = ident(i + 1);
        } else if c == b'{' {
            // Label matchers of the metric just before.
            let metric = last_metric.clone().unwrap_or_default();
            i += 1;
            while i < b.len() && b[i] != b'}' {
                i = skip_ws(i);
                let j = ident(i);
                if j > i {
                    refs.matchers
                        .insert((metric.clone(), expr[i..j].to_string()));
                    i = skip_ws(j);
                    // operator, then a quoted value
                    while i < b.len() && matches!(b[i], b'=' | b'!' | b'~') {
                        i += 1;
                    }
                    i = skip_ws(i);
                    if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                        let q = b[i];
                        i += 1;
                        while i < b.len() && b[i] != q {
                            i += if b[i] == b'\\' { 2 } else { 1 };
                        }
                        i += 1;
                    }
                } else {
                    i += 1;
                }
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let j = ident(i);
            let word = &expr[i..j];
            let k = skip_ws(j);
            if matches!(
                word,
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) && k < b.len()
                && b[k] == b'('
            {
                let end = expr[k..].find(')').map(|e| k + e).unwrap_or(b.len());
                for l in expr[k + 1..end]
                    .split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                {
                    refs.grouping.insert(l.to_string());
                }
                i = end + 1;
                continue;
            }
            if k < b.len() && b[k] == b'(' {
                last_metric = None; // a function
            } else if word.starts_with("workerpool_") {
                refs.metrics.insert(word.to_string());
                last_metric = Some(word.to_string());
            } else {
                last_metric = None;
            }
            i = j;
        } else {
            i += 1;
        }
    }
}

/// `{{label}}` placeholders of a legend.
fn legend_labels(legend: &str, refs: &mut Refs) {
    for part in legend.split("{{").skip(1) {
        if let Some((label, _)) = part.split_once("}}") {
            refs.grouping.insert(label.trim().to_string());
        }
    }
}

/// (sample name -> label names) of a /metrics page, and the sample names
/// its `# TYPE` lines allow (counters `_total`, histograms `_bucket`,
/// `_sum`, `_count`): the names a query can use.
fn exported(text: &str) -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (family, kind) = (it.next().unwrap(), it.next().unwrap());
            match kind {
                "counter" => {
                    names.insert(format!("{}_total", family.trim_end_matches("_total")));
                }
                "histogram" => {
                    for s in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{family}{s}"));
                    }
                }
                _ => {
                    names.insert(family.to_string());
                }
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = series.entry(line[..end].to_string()).or_default();
            if let Some(body) = line[end..].strip_prefix('{') {
                let body = &body[..body.rfind('}').unwrap()];
                for pair in body.split("\",") {
                    if let Some((k, _)) = pair.split_once('=') {
                        labels.insert(k.trim().to_string());
                    }
                }
            }
        }
    }
    (series, names)
}

/// Every PromQL expression of a Grafana dashboard (panels, nested rows and
/// templating queries), with its legend.
fn dashboard_queries(dash: &Value) -> Vec<(String, String, String)> {
    let mut out = vec![];
    fn panels(list: &Value, out: &mut Vec<(String, String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    format!("panel {title:?}"),
                    t["expr"].as_str().unwrap_or("").to_string(),
                    t["legendFormat"].as_str().unwrap_or("").to_string(),
                ));
            }
            panels(&p["panels"], out);
        }
    }
    panels(&dash["panels"], &mut out);
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or("");
        // label_values(SELECTOR, LABEL): check LABEL like a legend placeholder.
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: unsupported query {q}", v["name"]));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        out.push((
            format!("variable ${}", v["name"].as_str().unwrap()),
            selector.trim().to_string(),
            format!("{{{{{}}}}}", label.trim()),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_only_metrics_and_labels_the_operator_exports() {
    // The dashboard as the chart ships it.
    let r = render(&json!({"dashboard": {"enabled": true}}));
    let cm = r.one("ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let data = cm["data"].as_object().unwrap();
    assert_eq!(data.len(), 1);
    let dash: Value = serde_json::from_str(data.values().next().unwrap().as_str().unwrap())
        .expect("the dashboard is not JSON");
    assert!(dash["uid"].is_string() && dash["title"].is_string());
    assert!(
        render(&json!({})).all("ConfigMap").is_empty(),
        "the dashboard is opt-in"
    );

    // The real operator, with one pool that scales (so scale series exist)
    // and a trigger that fails (so error series exist).
    let c = Cluster::start("shop").await;
    c.deployment("orders-worker", 1).await;
    let key = format!("dashboard-orders-{}", std::process::id());
    let mut redis = connect(&shared_url());
    let _: () = redis::cmd("DEL").arg(&key).query(&mut redis).unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(vec!["order"; 50])
        .query(&mut redis)
        .unwrap();
    let dead = format!("redis://127.0.0.1:{}", free_port());
    c.apply_pool(json!({
        "apiVersion": "workerpool.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": "orders"},
        "spec": {
            "scaleTargetRef": {"name": "orders-worker"},
            "minReplicas": 1,
            "maxReplicas": 10,
            "pollingIntervalSeconds": 1,
            "triggers": [
                {"name": "orders", "redis": {"url": shared_url(), "list": key}, "targetPerReplica": 10},
                {"name": "retries", "redis": {"url": dead, "list": "retries"}, "targetPerReplica": 10}
            ]
        }
    }))
    .await;
    let op = c.operator(None).await;
    let wanted = [
        "workerpool_desired_replicas{",
        "workerpool_current_replicas{",
        "workerpool_trigger_value{",
        "workerpool_trigger_errors_total{",
        "workerpool_scale_total{",
        "workerpool_poll_lag_seconds_count ",
        "workerpool_reconcile_duration_seconds_count ",
    ];
    let text = eventually(
        "labelled series on /metrics",
        Duration::from_secs(30),
        || async {
            let (code, body) = http_get(op.http_addr, "/metrics").await?;
            (code == 200 && wanted.iter().all(|w| body.contains(w))).then_some(body)
        },
    )
    .await;
    op.shutdown(Duration::from_secs(5)).await;
    let _: () = redis::cmd("DEL").arg(&key).query(&mut redis).unwrap();

    let (series, names) = exported(&text);
    for s in series.keys() {
        assert!(
            names.contains(s),
            "{s} on /metrics but not in a # TYPE line"
        );
    }
    let mut failures = vec![];
    let mut used = BTreeSet::new();
    for (place, expr, legend) in dashboard_queries(&dash) {
        let mut refs = Refs::default();
        promql_refs(&expr, &mut refs);
        legend_labels(&legend, &mut refs);
        if refs.metrics.is_empty() {
            failures.push(format!("{place}: {expr:?} queries no workerpool_ metric"));
        }
        let labels_of = |m: &str| -> BTreeSet<String> {
            let mut l = series.get(m).cloned().unwrap_or_default();
            l.extend(SCRAPE_LABELS.iter().map(|s| s.to_string()));
            l
        };
        for m in &refs.metrics {
            used.insert(m.clone());
            if !names.contains(m) {
                failures.push(format!(
                    "{place}: {m} is not exported (exported: {names:?})"
                ));
            }
        }
        for (m, l) in &refs.matchers {
            if !labels_of(m).contains(l) {
                failures.push(format!("{place}: {m} has no label {l}"));
            }
        }
        let any: BTreeSet<String> = refs.metrics.iter().flat_map(|m| labels_of(m)).collect();
        for l in &refs.grouping {
            if !any.contains(l) {
                failures.push(format!(
                    "{place}: label {l} is on none of {:?}",
                    refs.metrics
                ));
            }
        }
    }
    // Every metric family shows up somewhere, so a new metric gets a panel.
    for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let family = family.split_whitespace().next().unwrap();
        let shown = |u: &String| {
            u == family
                || ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| *u == format!("{family}{s}"))
        };
        if !used.iter().any(shown) {
            failures.push(format!("no panel shows {family}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn promql_scanner_finds_metrics_matchers_and_grouping() {
    let mut r = Refs::default();
    promql_refs(
        r#"histogram_quantile(0.9, sum by (le, namespace) (rate(workerpool_x_bucket{workerpool=~"$workerpool", a!="}"}[$__rate_interval]))) / on(instance) workerpool_y"#,
        &mut r,
    );
    assert_eq!(
        r.metrics,
        BTreeSet::from([
            "workerpool_x_bucket".to_string(),
            "workerpool_y".to_string()
        ])
    );
    assert_eq!(
        r.matchers,
        BTreeSet::from([
            ("workerpool_x_bucket".to_string(), "workerpool".to_string()),
            ("workerpool_x_bucket".to_string(), "a".to_string())
        ])
    );
    assert_eq!(
        r.grouping,
        BTreeSet::from([
            "le".to_string(),
            "namespace".to_string(),
            "instance".to_string()
        ])
    );
}

// ---------------------------------------------------------------- the image

fn dockerfile() -> String {
    read("Dockerfile")
}

#[test]
fn dockerfile_passes_hadolint() {
    let hadolint = venv_tool("hadolint");
    for file in ["Dockerfile", "examples/ecommerce/Dockerfile"] {
        let out = Command::new(&hadolint)
            .args(["--no-color", "--failure-threshold", "info"])
            .arg(root().join(file))
            .output()
            .unwrap_or_else(|e| {
                panic!("{} ({e}): run through scripts/test.sh", hadolint.display())
            });
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "hadolint {file}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn dockerfile_builds_and_runs_the_binary_cargo_declares() {
    let cargo: toml_lite::Manifest = toml_lite::parse(&read("Cargo.toml"));
    let bin = cargo.bin_name.as_deref().unwrap_or(&cargo.package_name);
    assert_eq!(bin, env!("CARGO_PKG_NAME"));
    let d = dockerfile();
    let froms: Vec<&str> = d.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(
        froms.len(),
        2,
        "multi-stage: a builder and a runtime: {froms:?}"
    );
    assert!(
        froms[0].starts_with("FROM rust:1.95-bookworm AS builder"),
        "{}",
        froms[0]
    );
    assert_eq!(froms[1], "FROM gcr.io/distroless/cc-debian12:nonroot");

    // The toolchain is at least the crate's rust-version.
    let image_minor: u32 = froms[0]["FROM rust:1.".len()..]
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let msrv_minor: u32 = cargo
        .rust_version
        .split('.')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        image_minor >= msrv_minor,
        "rust:1.{image_minor} < rust-version {}",
        cargo.rust_version
    );

    // One RUN builds exactly the declared binary from the lockfile.
    let build = format!("cargo build --release --locked --bin {bin}");
    let runs: Vec<String> = d
        .replace("\\\n", " ")
        .lines()
        .filter(|l| l.starts_with("RUN "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(
        runs[0].ends_with(&build),
        "{} does not run `{build}`",
        runs[0]
    );
    // CI builds the release binary with the very same command and
    // smoke-tests target/release/<bin>, the path the image copies.
    let ci = read(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == build),
        ".ci/run must run `{build}`"
    );
    assert!(ci.contains(&format!("target/release/{bin}")));

    let lines: Vec<&str> = d.lines().collect();
    assert!(
        lines.contains(&format!("COPY --from=builder /src/target/release/{bin} /{bin}").as_str())
    );
    assert!(lines.contains(&format!("ENTRYPOINT [\"/{bin}\"]").as_str()));
    assert!(lines.contains(&"CMD [\"run\"]"));
    assert!(
        lines.contains(&"USER 65532:65532"),
        "runs as distroless nonroot, numerically"
    );
    assert!(lines.contains(&"WORKDIR /src"));
    assert!(d.contains(&format!(
        "org.opencontainers.image.version=\"{}\"",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(d.contains("org.opencontainers.image.licenses=\"Apache-2.0\""));
    // No credentials baked into a layer or passed as build arguments.
    for line in d
        .lines()
        .filter(|l| l.starts_with("ARG ") || l.starts_with("ENV "))
    {
        let l = line.to_lowercase();
        for word in ["token", "password", "secret", "key"] {
            assert!(!l.contains(word), "Dockerfile: {line}");
        }
    }
}

#[test]
fn dockerignore_keeps_the_context_small_but_buildable() {
    let ignore = read(".dockerignore");
    let patterns: BTreeSet<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for p in ["target", ".venv", ".git", ".test-servers"] {
        assert!(patterns.contains(p), ".dockerignore does not exclude {p}");
    }
    // What the build needs: the manifests, the lockfile, src/, and every
    // workspace member (Cargo refuses a workspace with a member missing).
    let cargo = toml_lite::parse(&read("Cargo.toml"));
    let mut needed = vec!["Cargo.toml".to_string(), "Cargo.lock".into(), "src".into()];
    needed.extend(cargo.members.iter().filter(|m| *m != ".").cloned());
    // Cargo also refuses a manifest whose explicit target paths are missing.
    needed.extend(cargo.target_paths.iter().cloned());
    for n in &needed {
        for p in &patterns {
            let excluded = p == n || n.starts_with(&format!("{p}/")) || *p == "*";
            assert!(
                !excluded,
                ".dockerignore pattern {p} excludes {n}, which the build needs"
            );
        }
    }
}

/// Just enough of Cargo.toml (no TOML parser among the dependencies).
mod toml_lite {
    pub struct Manifest {
        pub package_name: String,
        pub bin_name: Option<String>,
        pub rust_version: String,
        pub members: Vec<String>,
        /// `path = "..."` of every explicit target ([lib], [[bin]], [[test]], ...).
        pub target_paths: Vec<String>,
    }

    pub fn parse(text: &str) -> Manifest {
        let mut section = String::new();
        let mut m = Manifest {
            package_name: String::new(),
            bin_name: None,
            rust_version: String::new(),
            members: vec![],
            target_paths: vec![],
        };
        let unquote = |v: &str| v.trim().trim_matches('"').to_string();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                section = line.to_string();
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match (section.as_str(), k.trim()) {
                ("[package]", "name") => m.package_name = unquote(v),
                ("[package]", "rust-version") => m.rust_version = unquote(v),
                ("[[bin]]", "name") => {
                    assert!(m.bin_name.is_none(), "more than one [[bin]]");
                    m.bin_name = Some(unquote(v));
                }
                (s, "path") if !s.contains("dependencies") => m.target_paths.push(unquote(v)),
                ("[workspace]", "members") => {
                    m.members = v
                        .trim()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .split(',')
                        .map(unquote)
                        .filter(|s| !s.is_empty())
                        .collect();
                }
                _ => {}
            }
        }
        assert!(!m.package_name.is_empty() && !m.rust_version.is_empty());
        m
    }
}
