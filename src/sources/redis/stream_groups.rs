//! Reading one consumer group's number out of an `XINFO GROUPS` reply.

use ::redis::Value;

use super::errors::key_text;
use crate::api::StreamMeasureKind;
use crate::sources::{truncate, SourceError};

/// Why a group's number could not be taken from `XINFO GROUPS`.
pub(super) enum GroupError {
    NoGroup(Vec<String>),
    NilLag,
    NoLagField,
    Malformed(String),
}

impl GroupError {
    pub(super) fn in_context(self, what: &str, stream: &str, group: &str) -> SourceError {
        match self {
            GroupError::NoGroup(names) => SourceError::NotFound(format!(
                "{what}: stream {} has no consumer group {}{}",
                key_text(stream),
                key_text(group),
                if names.is_empty() {
                    " (it has none)".to_string()
                } else {
                    format!(
                        " (it has: {})",
                        truncate(
                            &names.iter().map(|n| key_text(n)).collect::<Vec<_>>().join(", "),
                            200
                        )
                    )
                }
            )),
            GroupError::NilLag => SourceError::BadResult(format!(
                "{what}: Redis reports no lag for group {} (it cannot compute it, e.g. after \
                 XDEL/XTRIM past the group's position or XGROUP SETID); use measure Pending or Length",
                key_text(group)
            )),
            GroupError::NoLagField => SourceError::BadResult(format!(
                "{what}: XINFO GROUPS has no lag field: measure Lag needs Redis >= 7 \
                 (use Pending or Length on older servers)"
            )),
            GroupError::Malformed(m) => {
                SourceError::BadResult(format!("{what}: unexpected XINFO GROUPS reply: {m}"))
            }
        }
    }
}

/// Picks the group's number from an `XINFO GROUPS` reply (RESP2 flat
/// key/value arrays, or RESP3 maps).
pub(super) fn group_value(
    reply: &Value,
    group: &str,
    kind: StreamMeasureKind,
) -> Result<f64, GroupError> {
    let Value::Array(groups) = reply else {
        return Err(GroupError::Malformed("not an array".into()));
    };
    let mut names = Vec::new();
    for g in groups {
        let fields =
            fields_of(g).ok_or_else(|| GroupError::Malformed("group is not a map".into()))?;
        let name = fields
            .iter()
            .find(|(k, _)| k == "name")
            .and_then(|(_, v)| text_of(v))
            .unwrap_or_default();
        if name != group {
            names.push(name);
            continue;
        }
        let field = match kind {
            StreamMeasureKind::Lag => "lag",
            StreamMeasureKind::Pending => "pending",
            StreamMeasureKind::Length => "length",
        };
        return match fields.iter().find(|(k, _)| k == field).map(|(_, v)| *v) {
            None if kind == StreamMeasureKind::Lag => Err(GroupError::NoLagField),
            None => Err(GroupError::Malformed(format!("no {field} field"))),
            Some(Value::Nil) if kind == StreamMeasureKind::Lag => Err(GroupError::NilLag),
            Some(Value::Int(n)) => Ok(*n as f64),
            Some(v) => text_of(v)
                .and_then(|t| t.parse::<i64>().ok())
                .map(|n| n as f64)
                .ok_or_else(|| GroupError::Malformed(format!("{field} is not a number"))),
        };
    }
    Err(GroupError::NoGroup(names))
}

fn fields_of(v: &Value) -> Option<Vec<(String, &Value)>> {
    match v {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len() / 2);
            for pair in items.chunks(2) {
                if let [k, v] = pair {
                    out.push((text_of(k)?, v));
                }
            }
            Some(out)
        }
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| text_of(k).map(|k| (k, v)))
            .collect(),
        _ => None,
    }
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(fields: &[(&str, Value)]) -> Value {
        Value::Array(
            fields
                .iter()
                .flat_map(|(k, v)| [Value::BulkString(k.as_bytes().to_vec()), v.clone()])
                .collect(),
        )
    }

    #[test]
    fn group_value_reads_lag_pending_and_reports_nil_lag() {
        let reply = Value::Array(vec![
            group(&[
                ("name", Value::BulkString(b"a".to_vec())),
                ("pending", Value::Int(2)),
                ("lag", Value::Int(5)),
            ]),
            group(&[
                ("name", Value::BulkString(b"b".to_vec())),
                ("pending", Value::Int(1)),
                ("lag", Value::Nil),
            ]),
        ]);
        assert_eq!(
            group_value(&reply, "a", StreamMeasureKind::Lag).ok(),
            Some(5.0)
        );
        assert_eq!(
            group_value(&reply, "a", StreamMeasureKind::Pending).ok(),
            Some(2.0)
        );
        assert!(matches!(
            group_value(&reply, "b", StreamMeasureKind::Lag),
            Err(GroupError::NilLag)
        ));
        match group_value(&reply, "c", StreamMeasureKind::Lag) {
            Err(GroupError::NoGroup(names)) => assert_eq!(names, ["a", "b"]),
            _ => panic!("expected NoGroup"),
        }
    }
}
