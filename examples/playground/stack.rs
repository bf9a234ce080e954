//! The processes and servers the playground runs: the API emulator (in this
//! process), `redis-server` and the operator binary (children in their own
//! process group, so a terminal's Ctrl-C reaches only the playground, which
//! then stops them in order), and kubectl to apply the demo objects.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kube_emulator::Emulator;
use serde_json::json;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::Args;

const CRD: &str = include_str!("../../crds/workerpool.yaml");

pub struct Stack {
    pub emu: Emulator,
    pub kubeconfig: PathBuf,
    pub redis_url: String,
    pub kubectl: Option<String>,
    redis: Child,
    operator: Mutex<Child>,
    operator_log: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Stack {
    pub async fn start(args: &Args) -> anyhow::Result<Stack> {
        let emu = Emulator::start()
            .await
            .context("starting the API emulator")?;
        let kubeconfig = args.dir.join("kubeconfig");
        emu.write_kubeconfig(&kubeconfig)?;
        let (redis, redis_url) = start_redis(&args.dir).await?;
        let operator_log = args.dir.join("operator.log");
        let operator = start_operator(args, &kubeconfig, &operator_log)?;
        println!(
            "API emulator:  {} (kubeconfig: {})",
            emu.url(),
            kubeconfig.display()
        );
        println!(
            "redis-server:  {redis_url} (pid {})",
            redis.id().unwrap_or(0)
        );
        println!(
            "operator:      pid {} (log: {})",
            operator.id().unwrap_or(0),
            operator_log.display()
        );
        Ok(Stack {
            emu,
            kubeconfig,
            redis_url,
            kubectl: find_kubectl(),
            redis,
            operator: Mutex::new(operator),
            operator_log,
        })
    }

    pub fn operator_log(&self) -> &Path {
        &self.operator_log
    }

    /// Resolves when the operator process ends (it should not, before Ctrl-C).
    pub async fn operator_exited(&self) -> String {
        match self.operator.lock().await.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        }
    }

    /// Stops the operator, then Redis, then the emulator.
    pub async fn stop(&mut self) {
        terminate(self.operator.get_mut(), "operator").await;
        terminate(&mut self.redis, "redis-server").await;
        self.emu.shutdown();
        println!("stopped: operator, redis-server, API emulator");
    }

    /// The CRD, a namespace, a worker Deployment and a WorkerPool, applied
    /// with kubectl as a user would (through the API when kubectl is missing).
    pub async fn apply_manifests(&self, args: &Args) -> anyhow::Result<()> {
        let crd = args.dir.join("workerpool-crd.yaml");
        std::fs::write(&crd, CRD)?;
        let pool = args.dir.join("workerpool.yaml");
        std::fs::write(
            &pool,
            workerpool_operator::yaml::to_string(&workerpool(args, &self.redis_url))?,
        )?;
        let ns = args.namespace.as_str();
        let Some(kubectl) = &self.kubectl else {
            println!("kubectl not found (set KUBECTL or put it on PATH): applying through the API");
            return self.apply_without_kubectl(args, &pool);
        };
        let (crd, pool) = (crd.to_string_lossy(), pool.to_string_lossy());
        let steps: [Vec<&str>; 4] = [
            vec!["apply", "-f", &crd],
            vec!["create", "namespace", ns],
            vec![
                "-n",
                ns,
                "create",
                "deployment",
                "worker",
                "--image=example/celery-worker:1.0",
                "--replicas=1",
            ],
            vec!["-n", ns, "apply", "-f", &pool],
        ];
        for step in steps {
            self.kubectl_run(kubectl, &step).await?;
        }
        Ok(())
    }

    async fn kubectl_run(&self, kubectl: &str, args: &[&str]) -> anyhow::Result<()> {
        println!("$ kubectl {}", args.join(" "));
        let out = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .await
            .with_context(|| format!("running {kubectl}"))?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn apply_without_kubectl(&self, args: &Args, pool: &Path) -> anyhow::Result<()> {
        let crd: serde_json::Value = workerpool_operator::yaml::from_str(CRD)?;
        let put = |gvr: &str, ns: &str, v: serde_json::Value| {
            self.emu
                .create_json(gvr, ns, v)
                .map_err(|e| anyhow::anyhow!("creating a {gvr}: {}", e.message))
        };
        put("apiextensions.k8s.io/v1/customresourcedefinitions", "", crd)?;
        put(
            "v1/namespaces",
            "",
            json!({"metadata": {"name": args.namespace}}),
        )?;
        put("apps/v1/deployments", &args.namespace, worker_deployment())?;
        let pool: serde_json::Value =
            workerpool_operator::yaml::from_str(&std::fs::read_to_string(pool)?)?;
        put("workerpool.dev/v1alpha1/workerpools", &args.namespace, pool)?;
        Ok(())
    }
}

fn worker_deployment() -> serde_json::Value {
    json!({
        "metadata": {"name": "worker", "labels": {"app": "worker"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "worker"}},
                 "template": {"metadata": {"labels": {"app": "worker"}},
                              "spec": {"containers": [{"name": "worker", "image": "example/celery-worker:1.0"}]}}},
    })
}

/// The demo pool: Celery's default queue, fast polls and a short
/// scale-down window so a burst is seen rising and falling within a minute.
fn workerpool(args: &Args, redis_url: &str) -> serde_json::Value {
    json!({
        "apiVersion": "workerpool.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": "worker", "namespace": args.namespace},
        "spec": {
            "scaleTargetRef": {"name": "worker"},
            "minReplicas": 1,
            "maxReplicas": args.max_replicas,
            "pollingIntervalSeconds": 1,
            "triggers": [{
                "name": "celery",
                "redis": {"url": redis_url, "celery": {"queue": crate::traffic::QUEUE}},
                "targetPerReplica": args.target_per_replica,
            }],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": args.scale_down_window}},
        },
    })
}

fn find_kubectl() -> Option<String> {
    let candidates = [
        std::env::var("KUBECTL").ok(),
        Some("kubectl".to_string()),
        Some(".venv/bin/kubectl".to_string()),
    ];
    candidates.into_iter().flatten().find(|k| {
        std::process::Command::new(k)
            .args(["version", "--client"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

async fn start_redis(dir: &Path) -> anyhow::Result<(Child, String)> {
    let port = free_port()?;
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .context("starting redis-server (install it: apt-get install redis-server)")?;
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url.as_str())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get_multiplexed_async_connection().await.is_err() {
        if Instant::now() > deadline {
            bail!("redis-server on port {port} did not answer within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((child, url))
}

fn operator_binary(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.operator {
        return Ok(path.clone());
    }
    // target/<profile>/examples/playground → target/<profile>/workerpool-operator
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("locating the target directory")?;
    Ok(dir.join("workerpool-operator"))
}

fn start_operator(args: &Args, kubeconfig: &Path, log: &Path) -> anyhow::Result<Child> {
    let bin = operator_binary(args)?;
    let log_file = std::fs::File::create(log)?;
    Command::new(&bin)
        .arg("run")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port()?)])
        .args(["--namespace", &args.namespace])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (build it: cargo build --bin workerpool-operator)",
                bin.display()
            )
        })
}

/// SIGTERM, then SIGKILL if the process has not exited after 10 s.
async fn terminate(child: &mut Child, what: &str) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        eprintln!("{what} did not exit on SIGTERM within 10 s: killing it");
        let _ = child.kill().await;
    }
}
