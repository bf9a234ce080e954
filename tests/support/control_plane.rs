//! Which API server the tests talk to. The default is the in-repo emulator.
//! `WP_KUBE=real` starts a real control plane (etcd, kube-apiserver,
//! kube-controller-manager from scripts/control-plane.sh) once per test
//! binary; `WP_KUBE=kubeconfig` uses the cluster `$KUBECONFIG` points at
//! (kind, or any cluster you may create namespaces and a CRD in).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Emulator,
    /// Our own control plane, started by scripts/control-plane.sh.
    ControlPlane,
    /// Whatever `$KUBECONFIG` points at.
    Kubeconfig,
}

/// The backend `WP_KUBE` selects (unset: the emulator).
pub fn backend() -> Backend {
    match std::env::var("WP_KUBE").as_deref() {
        Err(_) | Ok("") | Ok("emulator") => Backend::Emulator,
        Ok("real") => Backend::ControlPlane,
        Ok("kubeconfig") => Backend::Kubeconfig,
        Ok(other) => panic!("WP_KUBE={other}: expected emulator, real or kubeconfig"),
    }
}

/// A real API server: `WP_KUBE=kubeconfig` keeps `$KUBECONFIG`, anything
/// else gets our control plane (tests that need a real server use this).
pub fn real_backend() -> Backend {
    match backend() {
        Backend::Kubeconfig => Backend::Kubeconfig,
        _ => Backend::ControlPlane,
    }
}

/// The running control plane. Its stdin pipe lives as long as this test
/// binary: when the binary exits, however it exits, the pipe closes and the
/// script stops etcd and the Kubernetes processes.
struct Running {
    kubeconfig: PathBuf,
    _child: Mutex<Child>,
}

static RUNNING: OnceLock<Running> = OnceLock::new();

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Starts scripts/control-plane.sh (once per test binary) and returns the
/// admin kubeconfig it wrote. Panics with the script's log if it fails.
pub fn control_plane_kubeconfig() -> PathBuf {
    RUNNING.get_or_init(start_control_plane).kubeconfig.clone()
}

/// Removes the directories of earlier test binaries that have exited.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("wp-control-plane-") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn start_control_plane() -> Running {
    remove_stale_dirs();
    let dir = std::env::temp_dir().join(format!("wp-control-plane-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("control plane dir");
    let log_path = dir.join("control-plane.log");
    let log = std::fs::File::create(&log_path).expect("control plane log");
    let script = repo_root().join("scripts/control-plane.sh");
    let mut child = Command::new(&script)
        .arg("up")
        .arg(&dir)
        .arg("--until-stdin-closes")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    // The script prints one line, the kubeconfig path, once /readyz is ok;
    // it exits (closing stdout) if anything fails to start.
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    let kubeconfig = PathBuf::from(line.trim());
    if line.trim().is_empty() || !kubeconfig.exists() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        panic!("{} up {} failed:\n{text}", script.display(), dir.display());
    }
    Running {
        kubeconfig,
        _child: Mutex::new(child),
    }
}

/// A client for a real API server (`backend` is ControlPlane or Kubeconfig).
pub async fn real_client(backend: Backend) -> kube::Client {
    let config = match backend {
        Backend::ControlPlane => {
            let path = control_plane_kubeconfig();
            let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("read kubeconfig");
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .expect("kubeconfig")
        }
        Backend::Kubeconfig => kube::Config::infer().await.expect("KUBECONFIG"),
        Backend::Emulator => panic!("real_client: the emulator is not a real API server"),
    };
    kube::Client::try_from(config).expect("client")
}

/// The kubeconfig file for kubectl and operator processes on a real backend.
pub fn real_kubeconfig_path(backend: Backend) -> PathBuf {
    match backend {
        Backend::ControlPlane => control_plane_kubeconfig(),
        _ => std::env::var_os("KUBECONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config")))
            .expect("KUBECONFIG or HOME"),
    }
}

/// A namespace name no earlier run or parallel test has used: tests on a
/// shared real cluster must not see each other's objects.
pub fn unique_namespace(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:x}{n}", (nanos ^ std::process::id()) & 0xffffff)
}
