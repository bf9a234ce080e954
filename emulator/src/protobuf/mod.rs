//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), which
//! kubectl sends for the built-in types it builds itself (`kubectl create
//! namespace|deployment|configmap|secret|service`, `kubectl run`).
//! Decoded to the JSON the apiserver would have stored, for the types in
//! `schema::for_kind`; anything else is refused with a clear error.
//! Responses stay JSON: kubectl accepts `application/json` alongside.

mod decode;
mod schema;
mod wire;

use serde_json::Value;

use crate::status::ApiError;

pub use decode::DecodeError;

/// Every protobuf body starts with these four bytes.
const MAGIC: &[u8] = b"k8s\0";

/// Whether a Content-Type names the Kubernetes protobuf encoding.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim() == "application/vnd.kubernetes.protobuf")
}

/// `k8s\0` + `runtime.Unknown{typeMeta, raw}` → the object as JSON, with
/// `apiVersion` and `kind` from the envelope.
pub fn decode_object(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body.strip_prefix(MAGIC).ok_or_else(|| {
        ApiError::bad_request("protobuf body does not start with the k8s\\0 magic")
    })?;
    let unknown = decode::message(&schema::UNKNOWN, envelope).map_err(bad)?;
    let api_version = unknown["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or_default();
    let kind = unknown["typeMeta"]["kind"].as_str().unwrap_or_default();
    let desc = schema::for_kind(api_version, kind).ok_or_else(|| {
        ApiError::unsupported_media_type(
            &format!("application/vnd.kubernetes.protobuf ({api_version} {kind})"),
            "application/json, application/yaml; protobuf only for v1 Namespace, ConfigMap, Secret, Service, Pod, apps/v1 Deployment, autoscaling/v1 Scale",
        )
    })?;
    let raw = raw_bytes(envelope)?;
    let mut object = decode::message(desc, &raw).map_err(bad)?;
    object.insert("apiVersion".into(), Value::String(api_version.to_string()));
    object.insert("kind".into(), Value::String(kind.to_string()));
    Ok(Value::Object(object))
}

/// The `raw` field of the envelope, as bytes (the JSON view is base64).
fn raw_bytes(envelope: &[u8]) -> Result<Vec<u8>, ApiError> {
    for item in wire::Fields::new(envelope) {
        if let (2, wire::WireValue::Bytes(b)) = item.map_err(|e| bad(e.into()))? {
            return Ok(b.to_vec());
        }
    }
    Ok(Vec::new())
}

fn bad(e: DecodeError) -> ApiError {
    ApiError::bad_request(format!("decoding the protobuf body: {e}"))
}

#[cfg(test)]
mod test;
