//! YAML in and out, on serde-saphyr (the YAML crate kube-rs itself uses;
//! serde_yaml is unmaintained). Two things are added here:
//! - errors name the field (`spec.maxReplicas: invalid i32`) as well as the
//!   line and column, counted in the whole text even for later documents;
//! - plain scalars resolve as Kubernetes resolves them (sigs.k8s.io/yaml on
//!   go-yaml v2, i.e. YAML 1.1): `yes`/`on` are booleans, `010` is octal 8,
//!   `1_000` is 1000 — so `check` reads a manifest the way `kubectl apply`
//!   would.
//!
//! A multi-document text is split at its document markers (`---`, `...` at
//! the start of a line): YAML forbids those two inside any scalar, so a
//! marker at the start of a line always begins or ends a document.

use std::cell::RefCell;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A YAML text that could not be read, or a value that could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct YamlError(String);

/// One document of a multi-document text.
#[derive(Debug, Clone, Copy)]
pub struct Document<'a> {
    /// The document's text, its start marker included.
    pub text: &'a str,
    /// Lines of the whole text before this document.
    pub line_offset: usize,
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        with_snippet: false,
        legacy_octal_numbers: true,
    }
}

/// The documents of `text`, numbered as a YAML parser numbers them: text
/// without content before the first marker (or after a `...`) is no
/// document, but an explicit `---` with nothing after it is an empty one
/// (it reads as null).
pub fn documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let (mut start, mut start_line) = (0, 0);
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        if is_marker(bare, "---") && offset > start {
            docs.push(Document {
                text: &text[start..offset],
                line_offset: start_line,
            });
            (start, start_line) = (offset, n);
        }
        offset += line.len();
        if is_marker(bare, "...") {
            docs.push(Document {
                text: &text[start..offset],
                line_offset: start_line,
            });
            (start, start_line) = (offset, n + 1);
        }
    }
    docs.push(Document {
        text: &text[start..],
        line_offset: start_line,
    });
    docs.retain(|d| is_marker(d.text, "---") || !is_empty(d.text));
    docs
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// Only blank lines, comments and `...`.
fn is_empty(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || is_marker(l, "...")
    })
}

/// Reads one document as `T`.
pub fn from_document<T: DeserializeOwned>(doc: &Document<'_>) -> Result<T, YamlError> {
    let path = RefCell::new(String::new());
    serde_saphyr::with_deserializer_from_str_with_options(doc.text, options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            *path.borrow_mut() = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| error(&e, &path.into_inner(), doc.line_offset))
}

/// Reads a single-document text as `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    from_document(&Document {
        text,
        line_offset: 0,
    })
}

/// Reads every document of `text` as `T`.
pub fn from_str_multiple<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, YamlError> {
    documents(text).iter().map(from_document).collect()
}

/// Writes `value` as a YAML document.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_saphyr::to_string(value).map_err(|e| YamlError(e.to_string()))
}

/// `path: message at line L column C`, the line counted in the whole text.
fn error(e: &serde_saphyr::Error, path: &str, line_offset: usize) -> YamlError {
    let text = e.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) if e.location().is_some() => &text[..at],
        _ => text.as_str(),
    };
    let place = e.location().map(|l| {
        format!(
            " at line {} column {}",
            l.line() as usize + line_offset,
            l.column()
        )
    });
    let field = match path {
        "" | "." => String::new(),
        p => format!("{p}: "),
    };
    YamlError(format!("{field}{message}{}", place.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::{json, Value};

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Spec {
        replicas: i32,
        name: String,
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Doc {
        spec: Spec,
    }

    #[test]
    fn documents_split_at_markers_and_are_numbered_as_a_parser_does() {
        let text = "# head\n---\na: 1\n---\n# only a comment\n---\nb: |\n  x\n  --- not a marker\n...\n# tail\n---\nc: 3\n";
        let docs = documents(text);
        let values: Vec<Value> = docs.iter().map(|d| from_document(d).unwrap()).collect();
        assert_eq!(
            values,
            [
                json!({"a": 1}),
                Value::Null,
                json!({"b": "x\n--- not a marker\n"}),
                json!({"c": 3})
            ]
        );
        assert_eq!(
            docs.iter().map(|d| d.line_offset).collect::<Vec<_>>(),
            [1, 3, 5, 11]
        );
        let implicit: Vec<Value> = from_str_multiple("a: 1\n...\nb: 2\n").unwrap();
        assert_eq!(implicit, [json!({"a": 1}), json!({"b": 2})]);
    }

    #[test]
    fn errors_name_the_field_and_the_line_in_the_whole_text() {
        let text = "a: 1\n---\nspec:\n  name: x\n  replicas: ten\n";
        let docs = documents(text);
        let e = from_document::<Doc>(&docs[1]).unwrap_err().to_string();
        assert!(e.starts_with("spec.replicas: "), "{e}");
        assert!(e.ends_with("at line 5 column 13"), "{e}");
        let e = from_str::<Doc>("spec:\n  name: x\n  replicas: 1\n  bogus: 2\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `bogus`"), "{e}");
        assert!(e.to_string().contains("line 4"), "{e}");
    }

    #[test]
    fn plain_scalars_resolve_as_kubernetes_resolves_them() {
        let v: Value =
            from_str("a: yes\nb: off\nc: 010\nd: 1_000\ne: true\nf: 0x1F\ng: ~\nh: \"yes\"\n")
                .unwrap();
        assert_eq!(
            v,
            json!({"a": true, "b": false, "c": 8, "d": 1000, "e": true, "f": 31, "g": null, "h": "yes"})
        );
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = from_str::<Value>("a: [1, 2\n").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn written_yaml_reads_back() {
        let v = json!({"a": [1, {"b": "yes", "c": "x\ny"}], "d": null, "e": "010", "f": ""});
        let text = to_string(&v).unwrap();
        assert_eq!(from_str::<Value>(&text).unwrap(), v, "{text}");
    }
}
