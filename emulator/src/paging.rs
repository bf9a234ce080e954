//! Lists in pages: `limit` and `continue`, as the API server serves a list
//! from etcd. A page holds at most `limit` objects; when more remain, its
//! `metadata.continue` token resumes the same list — at the same revision,
//! so every page is one consistent snapshot — after the last object given,
//! and `metadata.remainingItemCount` counts the rest (left out when a
//! label or field selector filtered the list, as the API server does).
//!
//! A list at `resourceVersion=0` is served from the API server's watch
//! cache, which has always answered it whole: `limit` is ignored there.
//! A token whose revision has been compacted away is refused with
//! `410 Expired`; a `continue` with a `resourceVersion` is a bad request.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};

use crate::router::Query;
use crate::status::{ApiError, ApiResult};
use crate::store::{key_of, ObjKey};

/// Where a `continue` token resumes: the list's revision, and the last
/// object already given.
#[derive(Debug, PartialEq)]
pub struct Resume {
    pub rv: u64,
    after: ObjKey,
}

/// What a list request asks of paging.
#[derive(Debug, Default)]
pub struct Paging {
    limit: Option<usize>,
    pub resume: Option<Resume>,
}

/// One page of a list, and what its metadata says about the rest.
pub struct Page {
    pub items: Vec<Arc<Value>>,
    continue_token: Option<String>,
    remaining: Option<usize>,
}

impl Paging {
    pub fn parse(q: &Query) -> ApiResult<Paging> {
        let limit = match q.get("limit") {
            None | Some("") => None,
            Some(raw) => {
                let n: i64 = raw.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "limit: Invalid value: \"{raw}\": must be an integer"
                    ))
                })?;
                usize::try_from(n).ok().filter(|n| *n > 0)
            }
        };
        let resume = match q.get("continue") {
            None | Some("") => None,
            Some(token) => {
                if q.get("resourceVersion").is_some_and(|rv| !rv.is_empty()) {
                    return Err(ApiError::bad_request(
                        "specifying resource version is not allowed when using continue",
                    ));
                }
                Some(decode(token)?)
            }
        };
        // The watch cache answers resourceVersion=0 whole.
        let from_cache = q.get("resourceVersion") == Some("0");
        Ok(Paging {
            limit: limit.filter(|_| !from_cache),
            resume,
        })
    }

    /// The page of `items` (sorted by namespace and name, at revision `rv`,
    /// already filtered) this request asks for; `filtered`: a selector was
    /// applied.
    pub fn page(&self, items: Vec<Arc<Value>>, rv: u64, filtered: bool) -> Page {
        let mut items = items;
        if let Some(resume) = &self.resume {
            items.retain(|o| key_of(o) > resume.after);
        }
        let Some(limit) = self.limit.filter(|l| *l < items.len()) else {
            return Page::whole(items);
        };
        let rest = items.split_off(limit);
        let last = items.last().map(|o| key_of(o)).unwrap_or_default();
        Page {
            continue_token: Some(encode(rv, &last)),
            remaining: (!filtered).then_some(rest.len()),
            items,
        }
    }
}

impl Page {
    /// Every object, on one page.
    pub fn whole(items: Vec<Arc<Value>>) -> Page {
        Page {
            items,
            continue_token: None,
            remaining: None,
        }
    }

    /// Adds `continue` and `remainingItemCount` to a list's metadata.
    pub fn annotate(&self, metadata: &mut Value) {
        if let Some(token) = &self.continue_token {
            metadata["continue"] = json!(token);
        }
        if let Some(n) = self.remaining {
            metadata["remainingItemCount"] = json!(n);
        }
    }
}

/// The API server's token layout: base64url of
/// `{"v":"meta.k8s.io/v1","rv":N,"start":"<key>"}`, where the start key is
/// the next key after the last one given (`\0` appended).
fn encode(rv: u64, last: &ObjKey) -> String {
    let start = format!("{}/{}\u{0}", last.0, last.1);
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.to_string())
}

fn decode(token: &str) -> ApiResult<Resume> {
    let invalid = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bytes = engine
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| invalid("not a JSON object"))?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(invalid("server does not recognize this encoded key"));
    }
    let rv = v["rv"].as_u64().filter(|rv| *rv > 0);
    let start = v["start"].as_str().and_then(|s| s.strip_suffix('\u{0}'));
    let (Some(rv), Some(start)) = (rv, start) else {
        return Err(invalid(
            "incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        ));
    };
    let (ns, name) = start.split_once('/').unwrap_or(("", start));
    Ok(Resume {
        rv,
        after: (ns.to_string(), name.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(ns: &str, name: &str) -> Arc<Value> {
        Arc::new(json!({"metadata": {"namespace": ns, "name": name}}))
    }

    fn names(page: &Page) -> Vec<String> {
        (page.items.iter())
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn query(raw: &str) -> Query {
        Query::parse(raw)
    }

    #[test]
    fn pages_walk_the_list_once_in_order_at_one_revision() {
        let all: Vec<_> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| obj("ns", n))
            .collect();
        let first = Paging::parse(&query("limit=2"))
            .unwrap()
            .page(all.clone(), 9, false);
        assert_eq!(names(&first), ["a", "b"]);
        assert_eq!(first.remaining, Some(3));
        let token = first.continue_token.as_deref().unwrap().to_string();
        let paging = Paging::parse(&query(&format!("limit=2&continue={token}"))).unwrap();
        assert_eq!(paging.resume.as_ref().map(|r| r.rv), Some(9));
        let second = paging.page(all.clone(), 9, false);
        assert_eq!(names(&second), ["c", "d"]);
        let token = second.continue_token.as_deref().unwrap().to_string();
        let last = Paging::parse(&query(&format!("limit=2&continue={token}")))
            .unwrap()
            .page(all, 9, false);
        assert_eq!(names(&last), ["e"]);
        assert!(last.continue_token.is_none() && last.remaining.is_none());
    }

    #[test]
    fn resource_version_zero_is_answered_whole_and_a_filtered_list_counts_nothing() {
        let all: Vec<_> = ["a", "b", "c"].iter().map(|n| obj("ns", n)).collect();
        let whole = Paging::parse(&query("limit=1&resourceVersion=0")).unwrap();
        assert_eq!(whole.page(all.clone(), 3, false).items.len(), 3);
        let filtered = Paging::parse(&query("limit=1")).unwrap().page(all, 3, true);
        assert!(filtered.continue_token.is_some());
        assert_eq!(filtered.remaining, None);
    }

    #[test]
    fn bad_tokens_and_a_token_with_a_resource_version_are_refused() {
        for raw in ["continue=%%%", "continue=e30", "limit=x"] {
            let e = Paging::parse(&query(raw)).unwrap_err();
            assert_eq!(e.code, 400, "{raw}");
        }
        let token = encode(4, &("ns".into(), "a".into()));
        let e = Paging::parse(&query(&format!("continue={token}&resourceVersion=4"))).unwrap_err();
        assert_eq!(e.code, 400);
    }
}
