//! Label and field selectors (`labelSelector=`, `fieldSelector=` query
//! parameters) with the apimachinery grammar.

use serde_json::Value;

use crate::status::{ApiError, ApiResult};

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

/// Splits on commas that are not inside `( )`.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_err(s: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unable to parse requirement: found '{s}', expected: identifier"
    ))
}

fn set_values(rest: &str, whole: &str) -> ApiResult<Vec<String>> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| parse_err(whole))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn parse_requirement(raw: &str) -> ApiResult<Requirement> {
    let s = raw.trim();
    if let Some(key) = s.strip_prefix('!') {
        return Ok(Requirement {
            key: key.trim().to_string(),
            op: Op::DoesNotExist,
        });
    }
    for (token, is_in) in [(" notin ", false), (" in ", true)] {
        if let Some(i) = s.find(token) {
            let key = s[..i].trim().to_string();
            let values = set_values(&s[i + token.len()..], s)?;
            let op = if is_in {
                Op::In(values)
            } else {
                Op::NotIn(values)
            };
            return Ok(Requirement { key, op });
        }
    }
    let int = |v: &str| {
        v.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "unable to parse requirement: invalid integer value: {v}"
            ))
        })
    };
    for token in ["!=", "==", "=", ">", "<"] {
        if let Some(i) = s.find(token) {
            let key = s[..i].trim().to_string();
            if key.is_empty() {
                return Err(parse_err(s));
            }
            let value = s[i + token.len()..].trim().to_string();
            let op = match token {
                "!=" => Op::NotEq(value),
                ">" => Op::Gt(int(&value)?),
                "<" => Op::Lt(int(&value)?),
                _ => Op::Eq(value),
            };
            return Ok(Requirement { key, op });
        }
    }
    if s.is_empty() || s.contains(char::is_whitespace) {
        return Err(parse_err(s));
    }
    Ok(Requirement {
        key: s.to_string(),
        op: Op::Exists,
    })
}

impl LabelSelector {
    pub fn parse(s: &str) -> ApiResult<Self> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        split_top(s)
            .into_iter()
            .map(parse_requirement)
            .collect::<ApiResult<Vec<_>>>()
            .map(LabelSelector)
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.0.iter().all(|r| {
            let v = labels.get(&r.key).and_then(Value::as_str);
            match &r.op {
                Op::Eq(x) => v == Some(x.as_str()),
                Op::NotEq(x) => v != Some(x.as_str()),
                Op::In(xs) => v.is_some_and(|v| xs.iter().any(|x| x == v)),
                Op::NotIn(xs) => !v.is_some_and(|v| xs.iter().any(|x| x == v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
                Op::Gt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *n),
                Op::Lt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *n),
            }
        })
    }
}

/// A parsed field selector (`=`, `==`, `!=` on supported field labels).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses `s`, rejecting labels outside `metadata.name`,
    /// `metadata.namespace` and the type's own `supported` list.
    pub fn parse(s: &str, supported: &[&str]) -> ApiResult<Self> {
        let mut terms = Vec::new();
        for raw in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (key, eq, value) = if let Some(i) = raw.find("!=") {
                (&raw[..i], false, &raw[i + 2..])
            } else if let Some(i) = raw.find("==") {
                (&raw[..i], true, &raw[i + 2..])
            } else if let Some(i) = raw.find('=') {
                (&raw[..i], true, &raw[i + 1..])
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{raw}'"
                )));
            };
            let key = key.trim();
            if !matches!(key, "metadata.name" | "metadata.namespace") && !supported.contains(&key) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {key}"
                )));
            }
            terms.push((key.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(key, eq, want)| {
            let mut cur = object;
            for part in key.split('.') {
                cur = &cur[part];
            }
            let have = match cur {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (have == *want) == *eq
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn label_selector_grammar() {
        let o = obj(json!({"app": "web", "tier": "front", "n": "5"}));
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier=back", false),
            ("n>3,n<6", true),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&o),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("app in web").is_err());
    }

    #[test]
    fn field_selector_on_name_and_namespace() {
        let o = obj(json!({}));
        assert!(FieldSelector::parse("metadata.name=a", &[])
            .unwrap()
            .matches(&o));
        assert!(!FieldSelector::parse("metadata.namespace!=ns", &[])
            .unwrap()
            .matches(&o));
        assert!(FieldSelector::parse("spec.foo=1", &[]).is_err());
    }
}
