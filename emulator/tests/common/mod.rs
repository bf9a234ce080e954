//! Shared helpers for the emulator's tests: a raw HTTP client that shows
//! status codes and bodies as the wire carries them, a watch-stream
//! reader, deadline polling and a small test CRD.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use kube_emulator::Emulator;
use serde_json::{json, Value};

pub const JSON: &str = "application/json";
pub const MERGE: &str = "application/merge-patch+json";
pub const JSON_PATCH: &str = "application/json-patch+json";
pub const APPLY: &str = "application/apply-patch+yaml";
pub const STRATEGIC: &str = "application/strategic-merge-patch+json";

/// Raw HTTP access to an emulator.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(emu: &Emulator) -> Self {
        Api {
            base: emu.url(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        ct: Option<&str>,
        body: Option<String>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(ct) = ct {
            req = req.header("Content-Type", ct);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.expect("request sent");
        let code = resp.status().as_u16();
        let text = resp.text().await.expect("body read");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (code, v)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            Some(JSON),
            Some(body.to_string()),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(
            reqwest::Method::PUT,
            path,
            Some(JSON),
            Some(body.to_string()),
        )
        .await
    }

    pub async fn patch(&self, path: &str, ct: &str, body: &str) -> (u16, Value) {
        self.send(
            reqwest::Method::PATCH,
            path,
            Some(ct),
            Some(body.to_string()),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, None, None).await
    }

    pub async fn raw_post(&self, path: &str, ct: &str, body: &str) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            Some(ct),
            Some(body.to_string()),
        )
        .await
    }

    /// Opens a watch and returns a reader of its events.
    pub async fn watch(&self, path: &str) -> WatchStream {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("watch opened");
        assert_eq!(resp.status().as_u16(), 200, "watch {path}");
        WatchStream {
            resp,
            buf: Vec::new(),
        }
    }
}

/// Newline-delimited watch events.
pub struct WatchStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl WatchStream {
    /// The next event, None when the stream ended, or panics after `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line).expect("event is JSON"));
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Err(_) => panic!("no watch event within {within:?}"),
                Ok(Ok(Some(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(Ok(None)) | Ok(Err(_)) => return None,
            }
        }
    }

    /// The next event that is not a BOOKMARK.
    pub async fn next_change(&mut self, within: Duration) -> Option<Value> {
        loop {
            let ev = self.next(within).await?;
            if ev["type"] != "BOOKMARK" {
                return Some(ev);
            }
        }
    }
}

/// Polls `check` until it returns Some or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("object has a resourceVersion")
}

pub fn configmap(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

pub fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]}
            }
        }
    })
}

pub const CM: &str = "/api/v1/namespaces/default/configmaps";
pub const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments";
pub const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
pub const WIDGETS: &str = "/apis/example.dev/v1/namespaces/default/widgets";

/// A small CRD made for the tests: a namespaced `Widget` with a status and
/// a scale subresource, a shortName, printer columns, a required field, a
/// minimum, a default and a CEL rule.
pub fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.dev"},
        "spec": {
            "group": "example.dev",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}
                },
                "additionalPrinterColumns": [
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color"}
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["replicas"],
                            "properties": {
                                "replicas": {"type": "integer", "minimum": 0},
                                "maxReplicas": {"type": "integer", "minimum": 1},
                                "color": {"type": "string", "default": "blue", "enum": ["blue", "red"]}
                            },
                            "x-kubernetes-validations": [
                                {"rule": "!has(self.maxReplicas) || self.maxReplicas >= self.replicas", "message": "maxReplicas must be >= replicas"}
                            ]
                        },
                        "status": {
                            "type": "object",
                            "properties": {
                                "replicas": {"type": "integer", "minimum": 0},
                                "selector": {"type": "string"}
                            }
                        }
                    }
                }}
            }]
        }
    })
}

pub fn widget(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": name}, "spec": {"replicas": replicas}})
}

/// Creates the Widget CRD and waits until the resource is served.
pub async fn install_widgets(api: &Api) {
    let (code, body) = api.post(CRDS, &widget_crd()).await;
    assert_eq!(code, 201, "{body}");
    let (code, _) = api.get(WIDGETS).await;
    assert_eq!(code, 200);
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
