//! Serializing stored objects into responses without copying them:
//! items of typed lists lose `kind`/`apiVersion` (as the apiserver's typed
//! lists do), objects read through another CRD version get its apiVersion.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// How one object is written out.
pub struct ObjectView<'a> {
    pub object: &'a Value,
    /// The apiVersion to report; None drops `kind` and `apiVersion`.
    pub api_version: Option<&'a str>,
}

impl Serialize for ObjectView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Value::Object(map) = self.object else {
            return self.object.serialize(s);
        };
        let mut out = s.serialize_map(None)?;
        for (k, v) in map {
            match (k.as_str(), self.api_version) {
                ("apiVersion", Some(av)) => out.serialize_entry(k, av)?,
                ("apiVersion" | "kind", None) => {}
                _ => out.serialize_entry(k, v)?,
            }
        }
        out.end()
    }
}

/// A `*List` response body.
pub fn list_body(
    list_kind: &str,
    api_version: &str,
    rv: u64,
    page: &crate::paging::Page,
    keep_types: bool,
) -> Vec<u8> {
    let items = &page.items;
    let mut metadata = serde_json::json!({"resourceVersion": rv.to_string()});
    page.annotate(&mut metadata);
    let mut buf = Vec::with_capacity(64 + items.len() * 512);
    buf.extend_from_slice(
        format!("{{\"kind\":\"{list_kind}\",\"apiVersion\":\"{api_version}\",\"metadata\":{metadata},\"items\":[").as_bytes(),
    );
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let view = ObjectView {
            object: item,
            api_version: keep_types.then_some(api_version),
        };
        if serde_json::to_writer(&mut buf, &view).is_err() {
            buf.extend_from_slice(b"{}");
        }
    }
    buf.extend_from_slice(b"]}");
    buf
}

/// One object in the requested version.
pub fn object_body(object: &Value, api_version: &str) -> Vec<u8> {
    let view = ObjectView {
        object,
        api_version: Some(api_version),
    };
    serde_json::to_vec(&view).unwrap_or_else(|_| b"{}".to_vec())
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::paging::Page;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn typed_list_items_have_no_type_meta() {
        let items = vec![Arc::new(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
        )];
        let body = |kind: &str, api_version: &str, keep_types: bool| -> Value {
            let page = Page::whole(items.clone());
            serde_json::from_slice(&list_body(kind, api_version, 7, &page, keep_types)).unwrap()
        };
        let typed = body("ConfigMapList", "v1", false);
        assert_eq!(typed["metadata"]["resourceVersion"], "7");
        assert_eq!(typed["items"][0], json!({"metadata": {"name": "a"}}));
        let body = body("WList", "x/v2", true);
        assert_eq!(body["items"][0]["apiVersion"], "x/v2");
    }
}
