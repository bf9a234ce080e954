//! Everyday kubectl on WorkerPools against the API emulator, with the real
//! kubectl (`$KUBECTL`, from scripts/test.sh): `explain` shows a description
//! for every field, `describe` and `get events` show status and the
//! operator's (events.k8s.io/v1) Events, `get -w` shows a
//! status change. Plus a walk of the CRD schema that fails on any property
//! without a description.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::CustomResourceExt;
use serde_json::{json, Value};
use support::cluster::Cluster;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use workerpool_operator::api::WorkerPool;

/// Every property under `node` without a description, by path.
fn undescribed(node: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = node["properties"].as_object() {
        for (name, prop) in props {
            let here = format!("{path}.{name}");
            if prop["description"]
                .as_str()
                .is_none_or(|d| d.trim().is_empty())
            {
                out.push(here.clone());
            }
            undescribed(prop, &here, out);
        }
    }
    if node["items"].is_object() {
        undescribed(&node["items"], &format!("{path}[]"), out);
    }
    if node["additionalProperties"].is_object() {
        undescribed(&node["additionalProperties"], &format!("{path}{{}}"), out);
    }
}

#[test]
fn every_crd_property_has_a_description() {
    let crd = serde_json::to_value(WorkerPool::crd()).expect("CRD as JSON");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut missing = Vec::new();
    undescribed(&schema["properties"]["spec"], ".spec", &mut missing);
    undescribed(&schema["properties"]["status"], ".status", &mut missing);
    assert!(
        missing.is_empty(),
        "add a doc comment (shown by kubectl explain) to: {missing:#?}"
    );
    // The walk itself reaches the deepest fields.
    let mut all = Vec::new();
    let mut bare = schema.clone();
    strip_descriptions(&mut bare);
    undescribed(&bare["properties"]["spec"], ".spec", &mut all);
    assert!(
        all.contains(&".spec.behavior.scaleUp.policies[].value".to_string()),
        "{all:?}"
    );
    assert!(all.contains(&".spec.triggers[].redis.passwordSecretRef.key".to_string()));
}

fn strip_descriptions(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("description");
            map.values_mut().for_each(strip_descriptions);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}

struct Kubectl {
    bin: String,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(cluster: &Cluster) -> Kubectl {
        let bin = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        cluster
            .emu
            .write_kubeconfig(&kubeconfig)
            .expect("kubeconfig");
        Kubectl {
            bin,
            kubeconfig,
            _dir: dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self._dir.path().join("cache"))
            .args(args)
            .kill_on_drop(true);
        c
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .expect("kubectl finished in time")
            .unwrap_or_else(|e| panic!("kubectl is required ($KUBECTL, scripts/test.sh): {e}"));
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "kubectl {args:?}:\n{stdout}\n{stderr}"
        );
        stdout
    }

    async fn apply(&self, obj: &Value) -> String {
        let path = self._dir.path().join("obj.yaml");
        std::fs::write(
            &path,
            workerpool_operator::yaml::to_string(obj).expect("yaml"),
        )
        .expect("written");
        self.ok(&["apply", "-f", &path.to_string_lossy()]).await
    }
}

fn pool() -> Value {
    json!({
        "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {
            "scaleTargetRef": {"name": "worker"}, "minReplicas": 1, "maxReplicas": 8,
            "triggers": [{"redis": {"url": "redis://127.0.0.1:6379", "celery": {"queue": "orders"}}, "targetPerReplica": 20}],
        },
    })
}

async fn set_status(cluster: &Cluster, current: i64, desired: i64) {
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        "shop",
        &kube::discovery::ApiResource::erase::<WorkerPool>(&()),
    );
    let status = json!({"status": {"currentReplicas": current, "desiredReplicas": desired,
        "lastDecision": format!("{current} -> {desired}: celery=120 wants {desired} (20/replica)")}});
    api.patch_status("orders", &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("status patched");
}

#[tokio::test]
async fn kubectl_explain_shows_the_workerpool_spec_with_descriptions() {
    let cluster = Cluster::start("shop").await;
    let k = Kubectl::new(&cluster);
    let out = k.ok(&["explain", "workerpool.spec"]).await;
    assert!(out.contains("KIND:       WorkerPool"), "{out}");
    assert!(
        out.contains("maxReplicas") && out.contains("Most replicas"),
        "{out}"
    );
    let out = k
        .ok(&["explain", "workerpool.spec.behavior.scaleUp.policies.value"])
        .await;
    assert!(out.contains("The most change allowed per period"), "{out}");
    let out = k.ok(&["explain", "workerpool.spec", "--recursive"]).await;
    for field in ["triggers", "passwordSecretRef", "periodSeconds", "celery"] {
        assert!(out.contains(field), "{field} missing from:\n{out}");
    }
}

#[tokio::test]
async fn kubectl_describe_and_watch_a_workerpool() {
    let cluster = Cluster::start("shop").await;
    let k = Kubectl::new(&cluster);
    assert!(k
        .apply(&pool())
        .await
        .contains("workerpool.workerpool.dev/orders created"));
    set_status(&cluster, 2, 6).await;
    // The operator writes events.k8s.io/v1 Events; kubectl lists core/v1.
    let uid = cluster.pool("orders")["metadata"]["uid"].clone();
    let event: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "orders.1", "namespace": "shop"},
        "regarding": {"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
                      "name": "orders", "namespace": "shop", "uid": uid},
        "reason": "ScaledUp", "note": "2 -> 6: celery=120 wants 6", "type": "Normal",
        "action": "Scale", "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "workerpool.dev/operator", "reportingInstance": "test",
    }))
    .expect("an Event");
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(cluster.client.clone(), "shop")
        .create(&Default::default(), &event)
        .await
        .expect("event created");

    let out = k.ok(&["-n", "shop", "describe", "wp", "orders"]).await;
    assert!(
        out.contains("Desired Replicas:") && out.contains('6'),
        "{out}"
    );
    assert!(
        out.contains("ScaledUp") && out.contains("celery=120 wants 6"),
        "{out}"
    );

    let mut child = k
        .command(&["-n", "shop", "get", "wp", "-w"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl get -w");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let header = lines.next_line().await.expect("read").unwrap_or_default();
    assert!(
        header.contains("CURRENT") && header.contains("DESIRED"),
        "{header}"
    );
    let first = lines.next_line().await.expect("read").unwrap_or_default();
    assert!(first.starts_with("orders"), "{first}");
    set_status(&cluster, 6, 6).await;
    // CURRENT's column, as the header names it.
    let current = header
        .split_whitespace()
        .position(|h| h == "CURRENT")
        .expect("a CURRENT column");
    let read = async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if line.split_whitespace().nth(current) == Some("6") {
                return line;
            }
        }
        String::new()
    };
    let seen = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("kubectl get -w showed CURRENT 6 within 30 s");
    assert!(seen.starts_with("orders"), "{seen}");
    let _ = child.kill().await;
}
