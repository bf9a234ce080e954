//! The parts of `Cluster` that differ between the emulator and a real API
//! server: reading objects, installing the CRD, and scoping the operator.

use std::future::Future;
use std::ops::Deref;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube_emulator::{Emulator, Gvr};
use serde_json::Value;
use workerpool_operator::runtime::RunConfig;

use super::cluster::{eventually, Cluster};
use super::control_plane::{real_kubeconfig_path, Backend};

/// The emulator behind a `Cluster`, for what only it has (its request log,
/// fault injection, a kubeconfig without credentials). On a real API server
/// a test that uses it stops with a message saying it is emulator-only.
pub struct EmulatorOnly(pub Option<Emulator>);

impl Deref for EmulatorOnly {
    type Target = Emulator;
    fn deref(&self) -> &Emulator {
        self.0.as_ref().unwrap_or_else(|| {
            panic!(
                "this test uses the emulator itself (request log, fault injection or its \
                 kubeconfig); it runs only with WP_KUBE unset"
            )
        })
    }
}

/// Runs a future to completion from synchronous test helpers (which tests
/// call outside `.await`); needs the multi-thread runtime the e2e tests use.
fn block_on<F: Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

fn collection_path(gvr: &Gvr, ns: &str) -> String {
    let prefix = if gvr.group.is_empty() {
        format!("/api/{}", gvr.version)
    } else {
        format!("/apis/{}/{}", gvr.group, gvr.version)
    };
    format!("{prefix}/namespaces/{ns}/{}", gvr.resource)
}

/// Applies crds/workerpool.yaml (server-side, so a shared real cluster that
/// already has it takes it again) and waits until it is Established.
pub async fn install_crd(client: &kube::Client) {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/workerpool.yaml"))
            .expect("crds/workerpool.yaml");
    let crd: CustomResourceDefinition =
        workerpool_operator::yaml::from_str(&text).expect("CRD yaml");
    let name = crd.metadata.name.clone().expect("CRD name");
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply("workerpool-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    eventually(
        "the CRD is Established",
        Duration::from_secs(60),
        || async {
            let crd = api.get(&name).await.ok()?;
            let conditions = crd.status?.conditions?;
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;
}

impl Cluster {
    /// One object of this cluster's namespace as JSON, or None if absent.
    pub fn get_json(&self, gvr: Gvr, name: &str) -> Option<Value> {
        if let Some(emu) = &self.emu.0 {
            return emu.get_json(gvr, &self.ns, name);
        }
        let path = format!("{}/{name}", collection_path(&gvr, &self.ns));
        block_on(self.get_raw(&path))
    }

    /// Every object of a resource in this cluster's namespace, as JSON.
    pub fn list_json(&self, gvr: Gvr) -> Vec<Value> {
        if let Some(emu) = &self.emu.0 {
            return emu.list_json(gvr, Some(&self.ns));
        }
        let list = block_on(self.get_raw(&collection_path(&gvr, &self.ns)));
        match list {
            Some(Value::Object(mut o)) => match o.remove("items") {
                Some(Value::Array(items)) => items,
                _ => vec![],
            },
            _ => vec![],
        }
    }

    async fn get_raw(&self, path: &str) -> Option<Value> {
        let req = http::Request::get(path).body(vec![]).ok()?;
        self.client.request::<Value>(req).await.ok()
    }

    /// Writes a kubeconfig for this cluster (admin on a real server) to `path`,
    /// for kubectl and operator processes.
    pub fn write_kubeconfig(&self, path: &std::path::Path) {
        match &self.emu.0 {
            Some(emu) => emu.write_kubeconfig(path).expect("write kubeconfig"),
            None => {
                std::fs::copy(real_kubeconfig_path(self.backend), path).expect("copy kubeconfig");
            }
        }
    }

    /// On a real server the operator watches only this test's namespace:
    /// the tests of one binary share that server and run in parallel.
    pub fn scoped(&self, mut cfg: RunConfig) -> RunConfig {
        if self.backend != Backend::Emulator && cfg.namespace.is_none() {
            cfg.namespace = Some(self.ns.clone());
        }
        cfg
    }
}
