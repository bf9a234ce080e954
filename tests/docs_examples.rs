//! Every WorkerPool a user can copy from the docs works: each ```yaml block
//! with `kind: WorkerPool` in the Markdown files (README.md, the chart's and
//! the examples' READMEs) and each WorkerPool document under examples/ is
//! admitted by the CRD schema exactly as written (nothing pruned as an
//! unknown field) and accepted by the operator's own validation. The other
//! Kubernetes objects under examples/ are valid for the Kubernetes versions
//! the chart supports, and the e-commerce pools point at the Deployments
//! and the Redis Service that really consume and hold their queues.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::crd_schema::CrdSchema;
use workerpool_operator::cli::manifest;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, ext: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            if !name.starts_with('.') && name != "__pycache__" && name != "target" {
                files(&p, ext, out);
            }
        } else if ext.iter().any(|e| name.ends_with(e)) {
            out.push(p);
        }
    }
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// The YAML documents of a text, each as its own text (so that errors
/// carry lines of the document as written).
fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line == "---" || line.starts_with("--- ") {
            docs.push(String::new());
        } else {
            let d = docs.last_mut().unwrap();
            d.push_str(line);
            d.push('\n');
        }
    }
    docs.into_iter().filter(|d| !d.trim().is_empty()).collect()
}

/// ```yaml / ```yml blocks of a Markdown text.
fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = vec![];
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match &mut current {
            None if trimmed == "```yaml" || trimmed == "```yml" => current = Some(String::new()),
            Some(b) if trimmed.starts_with("```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// (where, document text) of every WorkerPool in the docs and examples.
fn documented_pools() -> Vec<(String, String)> {
    let mut pools = vec![];
    let mut markdown = vec![root().join("README.md")];
    files(&root().join("examples"), &[".md"], &mut markdown);
    files(&root().join("charts"), &[".md"], &mut markdown);
    for path in markdown {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (i, block) in yaml_blocks(&text).iter().enumerate() {
            for doc in documents(block) {
                if is_workerpool(&doc) {
                    pools.push((format!("{} (yaml block {})", rel(&path), i + 1), doc));
                }
            }
        }
    }
    let mut yaml = vec![];
    files(&root().join("examples"), &[".yaml", ".yml"], &mut yaml);
    for path in yaml {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in documents(&text) {
            if is_workerpool(&doc) {
                pools.push((rel(&path), doc));
            }
        }
    }
    pools
}

fn is_workerpool(doc: &str) -> bool {
    doc.lines().any(|l| l.trim_end() == "kind: WorkerPool")
}

/// Paths (`a.b[0].c`) of every leaf in `original` that `admitted` lacks or
/// changed: what the API server would prune or rewrite.
fn dropped(original: &Value, admitted: &Value, path: &str, out: &mut Vec<String>) {
    match (original, admitted) {
        (Value::Object(o), Value::Object(a)) => {
            for (k, v) in o {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match a.get(k) {
                    Some(av) => dropped(v, av, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(o), Value::Array(a)) if o.len() == a.len() => {
            for (i, (ov, av)) in o.iter().zip(a).enumerate() {
                dropped(ov, av, &format!("{path}[{i}]"), out);
            }
        }
        (o, a) if o == a => {}
        // YAML `5` and a schema `number` both become 5.0 after defaulting.
        (Value::Number(o), Value::Number(a)) if o.as_f64() == a.as_f64() => {}
        _ => out.push(path.to_string()),
    }
}

#[test]
fn every_documented_workerpool_is_admitted_and_valid() {
    let pools = documented_pools();
    let examples = pools
        .iter()
        .filter(|(w, _)| w.starts_with("examples/"))
        .count();
    assert!(
        examples >= 4,
        "expected the trace and e-commerce WorkerPools under examples/, found {pools:?}"
    );
    let crd = CrdSchema::workerpool();
    let mut failures = vec![];
    for (place, text) in &pools {
        let obj: Value = match workerpool_operator::yaml::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{place}: not YAML: {e}"));
                continue;
            }
        };
        match crd.admit(&obj) {
            Err(errors) => {
                failures.push(format!("{place}: rejected by the CRD schema: {errors:?}"))
            }
            Ok(admitted) => {
                let mut lost = vec![];
                dropped(&obj, &admitted, "", &mut lost);
                if !lost.is_empty() {
                    failures.push(format!(
                        "{place}: fields the API server would prune (misspelled or misplaced?): {lost:?}"
                    ));
                }
            }
        }
        if let Err(e) = manifest::parse(text) {
            failures.push(format!("{place}: rejected by the operator: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_prune_check_catches_a_misspelled_field() {
    let crd = CrdSchema::workerpool();
    let text = "apiVersion: workerpool.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: p}\nspec:\n  scaleTargetRef: {name: w}\n  maxReplicas: 3\n  cooldownSecond: 60\n  triggers:\n    - redis: {url: 'redis://r:6379', list: q}\n      targetPerReplica: 5\n";
    let obj: Value = workerpool_operator::yaml::from_str(text).unwrap();
    let admitted = crd.admit(&obj).expect("pruned, then admitted");
    let mut lost = vec![];
    dropped(&obj, &admitted, "", &mut lost);
    assert_eq!(lost, ["spec.cooldownSecond"]);
}

fn python() -> PathBuf {
    std::env::var_os("PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"))
}

fn min_kube_version() -> String {
    let chart: Value = workerpool_operator::yaml::from_str(
        &std::fs::read_to_string(root().join("charts/workerpool-operator/Chart.yaml")).unwrap(),
    )
    .unwrap();
    let c = chart["kubeVersion"].as_str().unwrap();
    c.trim_start_matches(">=")
        .trim()
        .trim_end_matches("-0")
        .to_string()
}

#[test]
fn example_kubernetes_objects_are_valid_for_supported_versions() {
    let mut yaml = vec![];
    files(&root().join("examples"), &[".yaml", ".yml"], &mut yaml);
    let versions = format!("{},latest", min_kube_version());
    let mut failures = vec![];
    let mut checked = 0;
    for path in yaml {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut child = Command::new(python())
            .arg(root().join("tests/helm_render.py"))
            .args(["validate", &versions])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{} ({e}): run through scripts/test.sh", python().display())
            });
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            rel(&path),
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        for o in report["objects"].as_array().unwrap() {
            let kind = o["object"]["kind"].as_str().unwrap_or_default();
            if kind == "WorkerPool" {
                continue; // checked against the CRD above
            }
            checked += 1;
            for (version, result) in o["validation"].as_object().unwrap() {
                if result != "ok" {
                    failures.push(format!(
                        "{}: {kind} {}: Kubernetes {version}: {result}",
                        rel(&path),
                        o["object"]["metadata"]["name"]
                    ));
                }
            }
        }
    }
    assert!(checked >= 7, "only {checked} objects under examples/");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// All objects of examples/ecommerce/k8s.
fn ecommerce_objects() -> Vec<Value> {
    let mut yaml = vec![];
    files(
        &root().join("examples/ecommerce/k8s"),
        &[".yaml"],
        &mut yaml,
    );
    yaml.iter()
        .flat_map(|p| documents(&std::fs::read_to_string(p).unwrap()))
        .map(|d| workerpool_operator::yaml::from_str(&d).unwrap())
        .collect()
}

#[test]
fn ecommerce_pools_scale_the_workers_of_their_queue() {
    let objects = ecommerce_objects();
    let find = |kind: &str, ns: &Value, name: &Value| {
        objects
            .iter()
            .find(|o| {
                o["kind"] == kind
                    && &o["metadata"]["namespace"] == ns
                    && &o["metadata"]["name"] == name
            })
            .cloned()
    };
    let pools: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "WorkerPool")
        .collect();
    let queues: Vec<&str> = pools
        .iter()
        .map(|p| {
            p["spec"]["triggers"][0]["redis"]["celery"]["queue"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(queues, ["payments", "inventory"]);
    for pool in pools {
        let ns = &pool["metadata"]["namespace"];
        let target = &pool["spec"]["scaleTargetRef"];
        let deployment = find("Deployment", ns, &target["name"]).unwrap_or_else(|| {
            panic!(
                "{}: no Deployment {}",
                pool["metadata"]["name"], target["name"]
            )
        });
        // The WorkerPool owns replicas: a re-apply must not reset them.
        assert!(
            deployment["spec"]["replicas"].is_null(),
            "{}: a scaled Deployment should not set spec.replicas",
            target["name"]
        );
        let command: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        for trigger in pool["spec"]["triggers"].as_array().unwrap() {
            let queue = trigger["redis"]["celery"]["queue"].as_str().unwrap();
            let q = command
                .iter()
                .position(|c| *c == "-Q")
                .expect("worker without -Q");
            assert_eq!(
                command[q + 1],
                queue,
                "{} consumes {}, its pool scales on {queue}",
                target["name"],
                command[q + 1]
            );
            // The Redis the trigger reads is the Service in the manifests.
            let url = url::Url::parse(trigger["redis"]["url"].as_str().unwrap()).unwrap();
            let host = url.host_str().unwrap();
            let (service, rest) = host.split_once('.').unwrap();
            let service_ns = rest.split('.').next().unwrap();
            let svc = find("Service", &Value::from(service_ns), &Value::from(service))
                .unwrap_or_else(|| panic!("no Service {service} in {service_ns} for {url}"));
            assert!(svc["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["port"].as_u64() == url.port().map(u64::from)));
            // The worker reads the same Redis (broker) as the trigger.
            let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
            let broker = env
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == "REDIS_URL")
                .unwrap();
            assert_eq!(broker["value"].as_str(), Some(url.as_str()));
        }
    }
}

#[test]
fn ecommerce_readme_shows_the_payments_pool_as_shipped() {
    let readme = std::fs::read_to_string(root().join("examples/ecommerce/README.md")).unwrap();
    let shown: Vec<Value> = yaml_blocks(&readme)
        .iter()
        .filter(|b| is_workerpool(b))
        .map(|b| workerpool_operator::yaml::from_str(b).unwrap())
        .collect();
    let file =
        std::fs::read_to_string(root().join("examples/ecommerce/k8s/40-workerpool-payments.yaml"))
            .unwrap();
    let shipped: Value = workerpool_operator::yaml::from_str(&file).unwrap();
    assert_eq!(
        shown,
        [shipped],
        "examples/ecommerce/README.md is out of date"
    );
}
