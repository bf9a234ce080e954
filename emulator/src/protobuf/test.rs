use serde_json::json;

use super::*;

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn bytes_field(number: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(number << 3 | 2, &mut out);
    varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

fn varint_field(number: u64, value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(number << 3, &mut out);
    varint(value, &mut out);
    out
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [
        bytes_field(1, api_version.as_bytes()),
        bytes_field(2, kind.as_bytes()),
    ]
    .concat();
    [
        MAGIC.to_vec(),
        bytes_field(1, &type_meta),
        bytes_field(2, raw),
        bytes_field(3, b""),
        bytes_field(4, b""),
    ]
    .concat()
}

#[test]
fn a_namespace_decodes_to_the_json_go_would_write() {
    let label = [bytes_field(1, b"team"), bytes_field(2, b"shop")].concat();
    let meta = [
        bytes_field(1, b"shop"),
        bytes_field(2, b""),
        varint_field(7, 0),
        bytes_field(8, b""),
        bytes_field(11, &label),
    ]
    .concat();
    let raw = [
        bytes_field(1, &meta),
        bytes_field(2, b""),
        bytes_field(3, b""),
    ]
    .concat();
    let v = decode_object(&envelope("v1", "Namespace", &raw)).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "shop", "labels": {"team": "shop"}},
               "spec": {}, "status": {}})
    );
}

#[test]
fn a_pointer_zero_is_kept_and_negative_ints_survive() {
    let spec = [varint_field(1, 0), varint_field(5, (-3i64) as u64)].concat();
    let raw = [
        bytes_field(1, &bytes_field(1, b"web")),
        bytes_field(2, &spec),
    ]
    .concat();
    let v = decode_object(&envelope("apps/v1", "Deployment", &raw)).unwrap();
    assert_eq!(v["spec"], json!({"replicas": 0, "minReadySeconds": -3}));
}

#[test]
fn an_unknown_field_or_kind_is_refused_by_name() {
    let raw = bytes_field(99, b"x");
    let err = decode_object(&envelope("v1", "ConfigMap", &raw)).unwrap_err();
    assert_eq!(err.code, 400);
    assert!(
        err.message.contains("ConfigMap field number 99"),
        "{}",
        err.message
    );
    let err = decode_object(&envelope("batch/v1", "Job", b"")).unwrap_err();
    assert_eq!(err.code, 415);
    let status = err.to_status().to_string();
    assert!(status.contains("batch/v1 Job"), "{status}");
    let err = decode_object(b"{}").unwrap_err();
    assert_eq!(err.code, 400);
}

#[test]
fn secret_data_is_base64_and_int_or_string_picks_its_side() {
    let entry = [bytes_field(1, b"password"), bytes_field(2, b"s3cr3t")].concat();
    let raw = [
        bytes_field(1, &bytes_field(1, b"db")),
        bytes_field(2, &entry),
    ]
    .concat();
    let v = decode_object(&envelope("v1", "Secret", &raw)).unwrap();
    assert_eq!(v["data"]["password"], "czNjcjN0");

    let target = [varint_field(1, 1), bytes_field(3, b"http")].concat();
    let port = [varint_field(3, 80), bytes_field(4, &target)].concat();
    let raw = [
        bytes_field(1, &bytes_field(1, b"web")),
        bytes_field(2, &bytes_field(1, &port)),
    ]
    .concat();
    let v = decode_object(&envelope("v1", "Service", &raw)).unwrap();
    assert_eq!(
        v["spec"]["ports"],
        json!([{"port": 80, "targetPort": "http"}])
    );
}
