//! Reading a KEDA object field by field. Every field is *taken* from its
//! mapping; what is left at the end was not understood and becomes a
//! warning, so nothing is dropped silently.

use super::Mapping;
use serde_json::Value;

use super::warnings::{ConvertError, Warnings};

/// One mapping of the input, with the path it sits at.
#[derive(Debug, Clone, Default)]
pub struct Object {
    at: String,
    map: Mapping,
}

impl Object {
    /// `value` must be a mapping or absent (null).
    pub fn new(value: Option<Value>, at: &str, w: &Warnings) -> Result<Object, ConvertError> {
        match value {
            None | Some(Value::Null) => Ok(Object::empty(at)),
            Some(Value::Object(map)) => Ok(Object {
                at: at.to_string(),
                map,
            }),
            Some(_) => Err(w.invalid(at, "must be a mapping")),
        }
    }

    pub fn empty(at: &str) -> Object {
        Object {
            at: at.to_string(),
            map: Mapping::new(),
        }
    }

    /// The path of `key` in this object (`spec.triggers[0].metadata.listName`).
    pub fn path(&self, key: &str) -> String {
        if self.at.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.at)
        }
    }

    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    /// A child mapping (empty when absent).
    pub fn child(&mut self, key: &str, w: &Warnings) -> Result<Object, ConvertError> {
        let at = self.path(key);
        Object::new(self.take(key), &at, w)
    }

    /// A scalar as text (KEDA metadata values are strings; YAML may have
    /// written a number or a boolean).
    pub fn take_str(&mut self, key: &str, w: &Warnings) -> Result<Option<String>, ConvertError> {
        let Some(v) = self.take(key) else {
            return Ok(None);
        };
        scalar_text(&v)
            .map(Some)
            .ok_or_else(|| w.invalid(self.path(key), "must be a string"))
    }

    pub fn take_i64(&mut self, key: &str, w: &Warnings) -> Result<Option<i64>, ConvertError> {
        let Some(text) = self.take_str(key, w)? else {
            return Ok(None);
        };
        text.trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| w.invalid(self.path(key), format!("not an integer: {text:?}")))
    }

    pub fn take_f64(&mut self, key: &str, w: &Warnings) -> Result<Option<f64>, ConvertError> {
        let Some(text) = self.take_str(key, w)? else {
            return Ok(None);
        };
        match text.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Some(x)),
            _ => Err(w.invalid(self.path(key), format!("not a number: {text:?}"))),
        }
    }

    /// A boolean as Go's strconv.ParseBool reads it (KEDA's parser).
    pub fn take_bool(&mut self, key: &str, w: &Warnings) -> Result<Option<bool>, ConvertError> {
        let Some(text) = self.take_str(key, w)? else {
            return Ok(None);
        };
        parse_go_bool(&text)
            .map(Some)
            .ok_or_else(|| w.invalid(self.path(key), format!("not a boolean: {text:?}")))
    }

    /// Keys not taken, with their paths.
    pub fn leftovers(&self) -> Vec<String> {
        self.map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| self.path(k))
            .collect()
    }

    /// A warning for every key not taken.
    pub fn warn_leftovers(&self, w: &mut Warnings, why: &str) {
        for field in self.leftovers() {
            w.add(field, why);
        }
    }
}

pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text.trim() {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// KEDA's comma-separated lists (`a, b,c`): trimmed, empty items dropped.
pub fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A YAML number: an integer when the value is one, so `5` stays `5`, not `5.0`.
pub fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

/// A mapping from pairs, in order.
pub fn mapping<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(k.to_string(), v);
    }
    Value::Object(m)
}

impl Object {
    /// What is left of the mapping (null when empty).
    pub fn into_value(self) -> Option<Value> {
        (!self.map.is_empty()).then_some(Value::Object(self.map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_numbers_and_lists_read_as_keda_reads_them() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_go_bool("yes"), None);
        assert_eq!(comma_list(" a, b,,c "), vec!["a", "b", "c"]);
        assert_eq!(number(5.0), Value::from(5));
        assert_eq!(number(100.5), Value::from(100.5));
    }

    #[test]
    fn a_bad_value_names_its_field() {
        let w = Warnings::new("ScaledObject shop/x");
        let map: Mapping = crate::yaml::from_str("listLength: five\nenableTLS: maybe").unwrap();
        let mut o = Object::new(Some(Value::Object(map)), "spec.triggers[0].metadata", &w).unwrap();
        let e = o.take_i64("listLength", &w).unwrap_err().to_string();
        assert!(
            e.contains("spec.triggers[0].metadata.listLength") && e.contains("five"),
            "{e}"
        );
        let e = o.take_bool("enableTLS", &w).unwrap_err().to_string();
        assert!(e.contains("enableTLS"), "{e}");
        assert!(o.leftovers().is_empty());
    }
}
