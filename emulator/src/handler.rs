//! Request dispatch: discovery documents and the verbs on resources.

use std::sync::Arc;

use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::discovery;
use crate::objects::{self, Deleted, FieldValidation, Sub, Target, WriteOpts, Written};
use crate::paging::{Page, Paging};
use crate::patch::PatchType;
use crate::render;
use crate::router::{self, Query, ResourcePath, Route, Verb};
use crate::scale;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::state::Shared;
use crate::status::{ApiError, ApiResult};
use crate::table;
use crate::watch::{self, WatchParams};

/// What the server sends back.
pub enum Reply {
    Json {
        code: u16,
        body: Vec<u8>,
        warnings: Vec<String>,
    },
    Watch(mpsc::Receiver<Bytes>),
}

impl Reply {
    fn json(code: u16, v: &Value) -> Reply {
        Reply::Json {
            code,
            body: serde_json::to_vec(v).unwrap_or_default(),
            warnings: Vec::new(),
        }
    }
}

/// The parts of an HTTP request the API looks at.
pub struct Request<'a> {
    pub method: &'a Method,
    pub route: &'a Route,
    pub query: &'a Query,
    pub content_type: &'a str,
    pub accept: &'a str,
    pub user_agent: &'a str,
    pub host: &'a str,
    pub body: Bytes,
}

pub fn handle(shared: &Arc<Shared>, req: &Request<'_>) -> ApiResult<Reply> {
    if !matches!(req.route, Route::Resource(_)) && req.method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    match req.route {
        Route::Version => Ok(Reply::json(
            200,
            &discovery::version(&shared.config.git_version),
        )),
        Route::Healthz => Ok(Reply::Json {
            code: 200,
            body: b"ok".to_vec(),
            warnings: Vec::new(),
        }),
        Route::CoreVersions => Ok(Reply::json(200, &discovery::core_versions(req.host))),
        Route::Groups => Ok(Reply::json(
            200,
            &discovery::group_list(&shared.store.lock().registry),
        )),
        Route::Group(g) => discovery::group(&shared.store.lock().registry, g)
            .map(|d| Reply::json(200, &d))
            .ok_or_else(ApiError::no_route),
        Route::Resources { group, version } => {
            discovery::resource_list(&shared.store.lock().registry, group, version)
                .map(|d| Reply::json(200, &d))
                .ok_or_else(ApiError::no_route)
        }
        Route::OpenApi(path) => crate::openapi::serve(&shared.store.lock().registry, path)
            .map(|d| Reply::json(200, &d))
            .ok_or_else(ApiError::no_route),
        Route::Unknown => Err(ApiError::no_route()),
        Route::Resource(p) => resource(shared, req, p),
    }
}

fn target(shared: &Shared, p: &ResourcePath) -> ApiResult<Target> {
    let ty = shared
        .store
        .lock()
        .registry
        .find(&p.group, &p.version, &p.plural)
        .ok_or_else(ApiError::no_route)?;
    let namespace = match (ty.namespaced, &p.namespace, &p.name) {
        (false, Some(_), _) => return Err(ApiError::no_route()),
        (true, None, Some(_)) => return Err(ApiError::no_route()),
        (true, Some(ns), _) => ns.clone(),
        _ => String::new(),
    };
    Ok(Target {
        ty,
        version: p.version.clone(),
        namespace,
    })
}

fn write_opts(req: &Request<'_>) -> ApiResult<WriteOpts> {
    let validation = match req.query.get("fieldValidation") {
        None | Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            )))
        }
    };
    let manager = match req.query.get("fieldManager") {
        Some(m) => m.to_string(),
        None => {
            let ua = req.user_agent.split('/').next().unwrap_or_default();
            if ua.is_empty() {
                "unknown".to_string()
            } else {
                ua.chars().take(128).collect()
            }
        }
    };
    Ok(WriteOpts {
        manager,
        dry_run: req.query.get("dryRun") == Some("All"),
        validation,
    })
}

fn parse_body(req: &Request<'_>) -> ApiResult<Value> {
    let ct = req.content_type;
    if crate::protobuf::is_protobuf(ct) {
        return crate::protobuf::decode_object(&req.body);
    }
    if ct.contains("protobuf") || ct.contains("cbor") {
        return Err(ApiError::unsupported_media_type(
            ct,
            "application/json, application/yaml, application/vnd.kubernetes.protobuf",
        ));
    }
    let v: Value = if ct.contains("yaml") {
        crate::objects::yaml_value(&req.body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; yaml parse error: {e}"))
        })?
    } else {
        serde_json::from_slice(&req.body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "couldn't get version/kind; the body is not an object",
        ));
    }
    Ok(v)
}

fn written(t: &Target, w: Written, code: u16) -> Reply {
    Reply::Json {
        code,
        body: render::object_body(&w.object, &t.api_version()),
        warnings: w.warnings,
    }
}

fn resource(shared: &Arc<Shared>, req: &Request<'_>, p: &ResourcePath) -> ApiResult<Reply> {
    let t = target(shared, p)?;
    let verb =
        router::verb(req.method, req.route, req.query).ok_or_else(ApiError::method_not_allowed)?;
    let sub = Sub::parse(p.subresource.as_deref()).ok_or_else(ApiError::no_route)?;
    let version = t.ty.version(&t.version).ok_or_else(ApiError::no_route)?;
    let served = match sub {
        Sub::Main => true,
        Sub::Status => version.status,
        Sub::Scale => version.scale.is_some(),
    };
    if !served || (sub != Sub::Main && !matches!(verb, Verb::Get | Verb::Update | Verb::Patch)) {
        return Err(ApiError::no_route());
    }
    let name = p.name.clone().unwrap_or_default();
    match verb {
        Verb::Get => {
            let obj = shared
                .store
                .lock()
                .get(&t.gr(), &t.namespace, &name)
                .ok_or_else(|| ApiError::not_found(&t.ty.group, &t.ty.plural, &name))?;
            if sub == Sub::Scale {
                return Ok(Reply::json(200, &scale::read(&t, &obj)?));
            }
            if table::wanted(req.accept) {
                return Ok(Reply::json(
                    200,
                    &table::render(&t, &[obj], None, req.query),
                ));
            }
            Ok(Reply::Json {
                code: 200,
                body: render::object_body(&obj, &t.api_version()),
                warnings: Vec::new(),
            })
        }
        Verb::List => list(shared, req, &t, p),
        Verb::Watch => {
            let params = WatchParams::parse(req.query, &t.ty.field_labels, p.name.clone())?;
            let ns = p.namespace.clone().filter(|_| t.ty.namespaced);
            let table = table::wanted(req.accept).then(|| req.query.clone());
            Ok(Reply::Watch(watch::start(shared, &t, ns, params, table)))
        }
        Verb::Create => {
            let body = parse_body(req)?;
            let opts = write_opts(req)?;
            let mut store = shared.store.lock();
            let w = objects::create(&mut store, &t, &opts, body)?;
            if t.ty.group == "events.k8s.io" && !opts.dry_run {
                crate::events::mirror_to_core(&mut store, &opts, &w.object);
            }
            drop(store);
            Ok(written(&t, w, 201))
        }
        Verb::Update => {
            let body = parse_body(req)?;
            let opts = write_opts(req)?;
            let w = objects::update(&mut shared.store.lock(), &t, &opts, &name, sub, body)?;
            if sub == Sub::Scale {
                return Ok(Reply::json(200, &scale::read(&t, &w.object)?));
            }
            Ok(written(&t, w, 200))
        }
        Verb::Patch => patch(shared, req, &t, &name, sub),
        Verb::Delete => delete(shared, req, &t, &name),
        Verb::DeleteCollection => delete_collection(shared, req, &t, p),
    }
}

fn patch(
    shared: &Arc<Shared>,
    req: &Request<'_>,
    t: &Target,
    name: &str,
    sub: Sub,
) -> ApiResult<Reply> {
    let kind = PatchType::from_content_type(req.content_type, t.ty.custom)?;
    let opts = write_opts(req)?;
    let force = req.query.get("force");
    if kind == PatchType::Apply {
        if req.query.get("fieldManager").is_none() {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                vec![crate::status::Cause::new(
                    "FieldValueRequired",
                    "fieldManager",
                    "Required value: is required for apply patch",
                )],
            ));
        }
    } else if force.is_some() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![crate::status::Cause::new(
                "FieldValueForbidden",
                "force",
                "Forbidden: may not be specified for non-apply patch",
            )],
        ));
    }
    let force = req.query.flag("force");
    let body = objects::PatchBody {
        kind,
        body: &req.body,
        force,
    };
    let w = objects::patch(&mut shared.store.lock(), t, &opts, name, sub, &body)?;
    if sub == Sub::Scale {
        return Ok(Reply::json(200, &scale::read(t, &w.object)?));
    }
    let code = if w.created { 201 } else { 200 };
    Ok(written(t, w, code))
}

fn delete_options(req: &Request<'_>) -> ApiResult<Value> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))
}

fn dry_run(req: &Request<'_>, options: &Value) -> bool {
    req.query.get("dryRun") == Some("All")
        || options["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "All"))
}

fn delete(shared: &Arc<Shared>, req: &Request<'_>, t: &Target, name: &str) -> ApiResult<Reply> {
    let options = delete_options(req)?;
    let dry = dry_run(req, &options);
    let outcome = objects::delete(&mut shared.store.lock(), t, name, &options, dry)?;
    Ok(match outcome {
        Deleted::Pending(obj) => Reply::Json {
            code: 202,
            body: render::object_body(&obj, &t.api_version()),
            warnings: Vec::new(),
        },
        // Custom resources answer with the deleted object, built-ins with a Status.
        Deleted::Gone(obj) if t.ty.custom => Reply::Json {
            code: 200,
            body: render::object_body(&obj, &t.api_version()),
            warnings: Vec::new(),
        },
        Deleted::Gone(obj) => Reply::json(
            200,
            &json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": t.ty.group, "kind": t.ty.plural, "uid": obj["metadata"]["uid"]},
            }),
        ),
    })
}

fn selected(req: &Request<'_>, t: &Target, items: Vec<Arc<Value>>) -> ApiResult<Vec<Arc<Value>>> {
    let labels = LabelSelector::parse(req.query.get("labelSelector").unwrap_or_default())?;
    let fields = FieldSelector::parse(
        req.query.get("fieldSelector").unwrap_or_default(),
        &t.ty.field_labels,
    )?;
    Ok(items
        .into_iter()
        .filter(|o| labels.matches(o) && fields.matches(o))
        .collect())
}

fn list(shared: &Arc<Shared>, req: &Request<'_>, t: &Target, p: &ResourcePath) -> ApiResult<Reply> {
    let ns = p.namespace.as_deref().filter(|_| t.ty.namespaced);
    let paging = Paging::parse(req.query)?;
    let (items, at) = listed(shared, req, t, ns, &paging)?;
    let filtered = ["labelSelector", "fieldSelector"]
        .iter()
        .any(|k| req.query.get(k).is_some_and(|v| !v.is_empty()));
    let page = paging.page(selected(req, t, items)?, at, filtered);
    if table::wanted(req.accept) {
        let mut table = table::render(t, &page.items, Some(at), req.query);
        page.annotate(&mut table["metadata"]);
        return Ok(Reply::json(200, &table));
    }
    Ok(Reply::Json {
        code: 200,
        body: render::list_body(&t.ty.list_kind, &t.api_version(), at, &page, t.ty.custom),
        warnings: Vec::new(),
    })
}

/// The objects a list request names, and the revision it sees them at: a
/// continued list's own revision, an exact one, or the latest.
fn listed(
    shared: &Arc<Shared>,
    req: &Request<'_>,
    t: &Target,
    ns: Option<&str>,
    paging: &Paging,
) -> ApiResult<(Vec<Arc<Value>>, u64)> {
    let store = shared.store.lock();
    if let Some(resume) = &paging.resume {
        let items =
            (store.list_at(&t.gr(), ns, resume.rv)).map_err(|_| ApiError::continue_expired())?;
        return Ok((items, resume.rv));
    }
    let rv = watch::parse_rv(req.query.get("resourceVersion"))?;
    let exact = req.query.get("resourceVersionMatch") == Some("Exact");
    match rv {
        Some(rv) if exact => Ok((store.list_at(&t.gr(), ns, rv)?, rv)),
        Some(rv) if rv > store.rv() => Err(ApiError::too_large_resource_version(rv, store.rv())),
        _ => Ok((store.list(&t.gr(), ns), store.rv())),
    }
}

fn delete_collection(
    shared: &Arc<Shared>,
    req: &Request<'_>,
    t: &Target,
    p: &ResourcePath,
) -> ApiResult<Reply> {
    let options = delete_options(req)?;
    let dry = dry_run(req, &options);
    let ns = p.namespace.as_deref().filter(|_| t.ty.namespaced);
    let mut store = shared.store.lock();
    let items = selected(req, t, store.list(&t.gr(), ns))?;
    let mut deleted = Vec::new();
    for item in items {
        let target = Target {
            namespace: item["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            ..t.clone()
        };
        let name = item["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match objects::delete(&mut store, &target, &name, &options, dry)? {
            Deleted::Gone(o) | Deleted::Pending(o) => deleted.push(o),
        }
    }
    let rv = store.rv();
    drop(store);
    Ok(Reply::Json {
        code: 200,
        body: render::list_body(
            &t.ty.list_kind,
            &t.api_version(),
            rv,
            &Page::whole(deleted),
            t.ty.custom,
        ),
        warnings: Vec::new(),
    })
}
