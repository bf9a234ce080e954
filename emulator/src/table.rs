//! Server-side printing: `meta.k8s.io/v1` `Table` responses for clients
//! that ask with `Accept: application/json;as=Table;...` (kubectl get).
//! Columns: NAME, then the CRD's additionalPrinterColumns, or a few
//! built-in column sets (Deployments, StatefulSets, Namespaces, Events), or AGE.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::objects::Target;
use crate::router::Query;

pub fn wanted(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

struct Column {
    name: String,
    type_: String,
    format: String,
    description: String,
    priority: i64,
    cell: Cell,
}

enum Cell {
    Name,
    Age,
    Path(String, String),
    ReadyOf(&'static str, &'static str),
    Status(&'static str),
    /// An Event's last occurrence (lastTimestamp, else eventTime, else creation).
    LastSeen,
    /// An Event's `involvedObject` as `kind/name`, kind lower-cased.
    InvolvedObject,
    /// A Pod's ready containers over its containers, `1/2`.
    PodReady,
    /// A Pod's status as kubectl shows it: `Terminating`, a reason, the phase.
    PodStatus,
    /// A Pod's container restarts, summed.
    PodRestarts,
}

/// Age like kubectl's `translateTimestampSince`: 45s, 12m, 5h, 3d.
fn age(ts: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 3 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A JSONPath subset: `.a.b`, `[0]`, `[?(@.type=="Ready")]`.
fn json_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}');
    rest = rest.strip_prefix('$').unwrap_or(rest);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            cur = cur.get(&r[..end])?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (key, want) = filter.split_once("==")?;
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                cur = cur
                    .as_array()?
                    .iter()
                    .find(|i| i.get(key.trim()).and_then(Value::as_str) == Some(want))?;
            } else {
                cur = cur.get(inner.parse::<usize>().ok()?)?;
            }
        } else {
            return None;
        }
    }
    Some(cur)
}

fn column(name: &str, type_: &str, cell: Cell) -> Column {
    Column {
        name: name.to_string(),
        type_: type_.into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        cell,
    }
}

fn columns(t: &Target) -> Vec<Column> {
    let mut cols = vec![Column {
        format: "name".into(),
        description: "Name must be unique within a namespace.".into(),
        ..column("Name", "string", Cell::Name)
    }];
    let custom: Vec<Column> =
        t.ty.version(&t.version)
            .map(|v| {
                v.columns
                    .iter()
                    .map(|c| Column {
                        name: c.name.clone(),
                        type_: c.type_.clone(),
                        format: c.format.clone(),
                        description: c.description.clone(),
                        priority: c.priority,
                        cell: Cell::Path(c.json_path.clone(), c.type_.clone()),
                    })
                    .collect()
            })
            .unwrap_or_default();
    if !custom.is_empty() {
        cols.extend(custom);
        return cols;
    }
    if (t.ty.group.as_str(), t.ty.plural.as_str()) == ("", "events") {
        return event_columns(cols);
    }
    match (t.ty.group.as_str(), t.ty.plural.as_str()) {
        ("apps", "deployments") => {
            cols.push(column(
                "Ready",
                "string",
                Cell::ReadyOf("readyReplicas", "replicas"),
            ));
            cols.push(column(
                "Up-to-date",
                "integer",
                Cell::Status("updatedReplicas"),
            ));
            cols.push(column(
                "Available",
                "integer",
                Cell::Status("availableReplicas"),
            ));
        }
        ("apps", "statefulsets") => cols.push(column(
            "Ready",
            "string",
            Cell::ReadyOf("readyReplicas", "replicas"),
        )),
        ("", "pods") => return pod_columns(cols),
        ("apps", "replicasets") => {
            cols.push(column(
                "Desired",
                "integer",
                Cell::Path(".spec.replicas".into(), "integer".into()),
            ));
            cols.push(column("Current", "integer", Cell::Status("replicas")));
            cols.push(column("Ready", "integer", Cell::Status("readyReplicas")));
        }
        ("", "namespaces") => cols.push(column(
            "Status",
            "string",
            Cell::Path(".status.phase".into(), "string".into()),
        )),
        _ => {}
    }
    cols.push(column("Age", "string", Cell::Age));
    cols
}

/// The apiserver's Pod columns (IP and node only with `-o wide`).
fn pod_columns(mut cols: Vec<Column>) -> Vec<Column> {
    cols.push(column("Ready", "string", Cell::PodReady));
    cols.push(column("Status", "string", Cell::PodStatus));
    cols.push(column("Restarts", "string", Cell::PodRestarts));
    cols.push(column("Age", "string", Cell::Age));
    for (name, path) in [("IP", ".status.podIP"), ("Node", ".spec.nodeName")] {
        cols.push(Column {
            priority: 1,
            ..column(name, "string", Cell::Path(path.into(), "string".into()))
        });
    }
    cols
}

fn pod_cell(c: &Cell, obj: &Value) -> Value {
    let statuses = obj["status"]["containerStatuses"].as_array();
    match c {
        Cell::PodReady => {
            let ready = statuses
                .into_iter()
                .flatten()
                .filter(|s| s["ready"] == true)
                .count();
            let total = obj["spec"]["containers"].as_array().map_or(0, Vec::len);
            json!(format!("{ready}/{total}"))
        }
        Cell::PodRestarts => {
            let n: i64 = statuses
                .into_iter()
                .flatten()
                .filter_map(|s| s["restartCount"].as_i64())
                .sum();
            json!(n.to_string())
        }
        _ if !obj["metadata"]["deletionTimestamp"].is_null() => json!("Terminating"),
        _ => obj["status"]["reason"]
            .as_str()
            .or(obj["status"]["phase"].as_str())
            .map_or(json!("Pending"), |s| json!(s)),
    }
}

/// The apiserver's core/v1 Event columns; the name only with `-o wide`.
fn event_columns(mut cols: Vec<Column>) -> Vec<Column> {
    let path = |p: &str| Cell::Path(p.into(), "string".into());
    cols[0].priority = 1;
    let mut out = vec![column("Last Seen", "string", Cell::LastSeen)];
    out.push(column("Type", "string", path(".type")));
    out.push(column("Reason", "string", path(".reason")));
    out.push(column("Object", "string", Cell::InvolvedObject));
    out.push(column("Message", "string", path(".message")));
    cols.extend(out);
    cols
}

fn cell(c: &Cell, obj: &Value) -> Value {
    match c {
        Cell::LastSeen => {
            let at = ["lastTimestamp", "eventTime"]
                .iter()
                .find_map(|k| obj[*k].as_str())
                .or(obj["metadata"]["creationTimestamp"].as_str());
            json!(age(at.unwrap_or_default()))
        }
        Cell::InvolvedObject => {
            let o = &obj["involvedObject"];
            let kind = o["kind"].as_str().unwrap_or_default().to_lowercase();
            json!(format!("{kind}/{}", o["name"].as_str().unwrap_or_default()))
        }
        Cell::PodReady | Cell::PodStatus | Cell::PodRestarts => pod_cell(c, obj),
        Cell::Name => obj["metadata"]["name"].clone(),
        Cell::Age => json!(age(obj["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or_default())),
        Cell::ReadyOf(ready, total) => json!(format!(
            "{}/{}",
            obj["status"][*ready].as_i64().unwrap_or(0),
            obj["spec"][*total].as_i64().unwrap_or(0)
        )),
        Cell::Status(field) => json!(obj["status"][*field].as_i64().unwrap_or(0)),
        Cell::Path(path, type_) => match json_path(obj, path) {
            Some(Value::String(s)) if type_ == "date" => json!(age(s)),
            Some(v) => v.clone(),
            None => Value::Null,
        },
    }
}

/// A Table of `items`; `rv` is the list revision (None inside watch events).
pub fn render(t: &Target, items: &[Arc<Value>], rv: Option<u64>, q: &Query) -> Value {
    let cols = columns(t);
    let include = q.get("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = cols.iter().map(|c| cell(&c.cell, obj)).collect();
            let mut row = json!({"cells": cells});
            match include {
                "None" => {}
                "Object" => {
                    let mut o = (**obj).clone();
                    o["apiVersion"] = json!(t.api_version());
                    o["kind"] = json!(t.ty.kind);
                    row["object"] = o;
                }
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj["metadata"],
                    });
                }
            }
            row
        })
        .collect();
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = rv {
        metadata["resourceVersion"] = json!(rv.to_string());
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn json_path_subset() {
        let v = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}, "spec": {"n": [5]}});
        assert_eq!(
            json_path(&v, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(&json!("True"))
        );
        assert_eq!(json_path(&v, ".spec.n[0]"), Some(&json!(5)));
        assert_eq!(json_path(&v, ".spec.missing"), None);
    }

    #[test]
    fn accept_header_detection() {
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
    }
}
