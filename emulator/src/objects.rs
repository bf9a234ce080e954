//! The write path: create, update, patch and delete with the apiserver's
//! strategies (system metadata, status subresource split, generation,
//! optimistic concurrency, finalizers, managedFields, CR schema checks).

use std::sync::Arc;

use serde_json::{json, Value};

use crate::apply::{self, ApplyRequest};
use crate::controllers;
use crate::crd;
use crate::fields::{self, Entry, FieldSet, Part};
use crate::patch::{self, PatchType};
use crate::resources::{GroupResource, ResourceType};
use crate::scale;
use crate::status::{ApiError, ApiResult, Cause};
use crate::store::{self, EventType, Store};
use crate::structural;
use crate::workloads;

/// The resource type, version and namespace a request addresses.
#[derive(Clone, Debug)]
pub struct Target {
    pub ty: Arc<ResourceType>,
    pub version: String,
    /// Empty for cluster-scoped resources.
    pub namespace: String,
}

impl Target {
    pub fn api_version(&self) -> String {
        self.ty.api_version(&self.version)
    }

    pub fn gr(&self) -> GroupResource {
        self.ty.gr()
    }

    fn status_separate(&self) -> bool {
        self.ty.has_status(&self.version)
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(&self.ty.group, &self.ty.plural, name)
    }

    fn conflict(&self, name: &str) -> ApiError {
        ApiError::conflict(&self.ty.group, &self.ty.plural, name)
    }

    fn invalid(&self, name: &str, causes: Vec<Cause>) -> ApiError {
        ApiError::invalid(&self.ty.group, &self.ty.kind, name, causes)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    Main,
    Status,
    Scale,
}

impl Sub {
    pub fn parse(s: Option<&str>) -> Option<Sub> {
        match s {
            None => Some(Sub::Main),
            Some("status") => Some(Sub::Status),
            Some("scale") => Some(Sub::Scale),
            Some(_) => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Sub::Main => "",
            Sub::Status => "status",
            Sub::Scale => "scale",
        }
    }
}

/// `fieldValidation`: what to do with fields a CR schema does not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// Per-request write options.
#[derive(Debug, Clone)]
pub struct WriteOpts {
    pub manager: String,
    pub dry_run: bool,
    pub validation: FieldValidation,
}

/// A successful write.
#[derive(Debug)]
pub struct Written {
    pub object: Arc<Value>,
    pub created: bool,
    /// `Warning` headers (e.g. unknown fields under `fieldValidation=Warn`).
    pub warnings: Vec<String>,
}

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Sets `metadata.{key}` (creating `metadata` when absent).
fn set_meta(v: &mut Value, key: &str, val: Value) {
    if let Some(obj) = v.as_object_mut() {
        let m = obj.entry("metadata").or_insert_with(|| json!({}));
        if !m.is_object() {
            *m = json!({});
        }
        if let Some(m) = m.as_object_mut() {
            m.insert(key.into(), val);
        }
    }
}

fn remove_meta(v: &mut Value, key: &str) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove(key);
    }
}

fn remove_key(v: &mut Value, key: &str) {
    if let Some(m) = v.as_object_mut() {
        m.remove(key);
    }
}

fn meta_str<'a>(v: &'a Value, key: &str) -> &'a str {
    v["metadata"][key].as_str().unwrap_or_default()
}

/// RFC 1123 subdomain (or label, for namespaces), as names must be.
fn name_problem(name: &str, label: bool) -> Option<String> {
    let max = if label { 63 } else { 253 };
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !p.starts_with('-')
            && !p.ends_with('-')
    };
    let ok = name.len() <= max
        && if label {
            part_ok(name)
        } else {
            name.split('.').all(part_ok)
        };
    if ok {
        return None;
    }
    Some(if label {
        format!("Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
    } else {
        format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    })
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Checks the body's `apiVersion`/`kind` and fills them in when absent.
fn check_type(t: &Target, body: &mut Value) -> ApiResult<()> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    let expected = t.api_version();
    match body["apiVersion"].as_str() {
        Some(v) if v != expected => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected})"
            )))
        }
        _ => body["apiVersion"] = json!(expected),
    }
    match body["kind"].as_str() {
        Some(k) if k != t.ty.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                t.ty.kind
            )))
        }
        _ => body["kind"] = json!(t.ty.kind),
    }
    Ok(())
}

/// Everything outside metadata (and status, when it is a subresource).
fn spec_part(v: &Value, status_separate: bool) -> Value {
    let mut out = v.clone();
    if let Some(m) = out.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if status_separate {
            m.remove("status");
        }
    }
    out
}

/// Equality ignoring what every write changes anyway.
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        if let Some(m) = v.as_object_mut() {
            m.remove("apiVersion");
        }
        v
    };
    strip(a) == strip(b)
}

/// Prunes, defaults and validates a custom resource against its schema.
fn check_custom(
    t: &Target,
    obj: &mut Value,
    old: Option<&Value>,
    opts: &WriteOpts,
    warnings: &mut Vec<String>,
) -> ApiResult<()> {
    let Some(schema) = t.ty.version(&t.version).and_then(|v| v.schema.clone()) else {
        return Ok(());
    };
    let pruned = structural::prune_root(obj, &schema.raw);
    if !pruned.is_empty() {
        match opts.validation {
            FieldValidation::Strict => {
                let list: Vec<String> = pruned
                    .iter()
                    .map(|p| format!("unknown field \"{p}\""))
                    .collect();
                let kind = &t.ty.kind;
                return Err(ApiError::bad_request(format!(
                    "{kind} in version \"{}\" cannot be handled as a {kind}: strict decoding error: {}",
                    t.version,
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => {
                warnings.extend(pruned.iter().map(|p| format!("unknown field \"{p}\"")))
            }
            FieldValidation::Ignore => {}
        }
    }
    structural::apply_defaults(obj, &schema.raw);
    let root = kube::core::cel::RootContext {
        api_version: t.api_version(),
        api_group: t.ty.group.clone(),
        kind: t.ty.kind.clone(),
    };
    let causes = schema.validate(obj, old, &root);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(t.invalid(meta_str(obj, "name"), causes))
    }
}

/// How a write maintains managedFields.
#[derive(Clone, Copy)]
enum Tracking<'a> {
    /// An Update operation by this manager.
    Update(&'a str),
    /// Already computed (server-side apply).
    Preset,
}

fn is_crd(gr: &GroupResource) -> bool {
    gr.group == "apiextensions.k8s.io" && gr.resource == "customresourcedefinitions"
}

/// Keeps the system metadata of `old` and splits status from the rest:
/// status writes change only status, other writes never change status
/// when it is a subresource.
fn strategy(old: &Value, mut new: Value, sub: Sub, status_separate: bool) -> Value {
    for key in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
    ] {
        match old["metadata"].get(key) {
            Some(v) => set_meta(&mut new, key, v.clone()),
            None => remove_meta(&mut new, key),
        }
    }
    let keep_status_from = if sub == Sub::Status {
        let managed = new["metadata"].get("managedFields").cloned();
        let status = new.get("status").cloned();
        new = old.clone();
        match managed {
            Some(m) => set_meta(&mut new, "managedFields", m),
            None => remove_meta(&mut new, "managedFields"),
        }
        status
    } else if status_separate {
        old.get("status").cloned()
    } else {
        return new;
    };
    match keep_status_from {
        Some(s) => {
            if let Some(m) = new.as_object_mut() {
                m.insert("status".into(), s);
            }
        }
        None => remove_key(&mut new, "status"),
    }
    new
}

/// The common tail of every write: strategy, validation, generation,
/// managedFields, no-op detection, finalizers and the commit.
/// A Secret's `stringData` is write-only: the API server merges it into
/// `data` (base64, `stringData` winning on a shared key) and never stores it.
fn merge_string_data(secret: &mut Value) {
    use base64::Engine;
    let Some(obj) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = obj.remove("stringData") else {
        return;
    };
    let data = obj.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    for (k, v) in strings {
        let text = v.as_str().unwrap_or_default();
        data[k.as_str()] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

fn finish(
    store: &mut Store,
    t: &Target,
    opts: &WriteOpts,
    old: Option<&Arc<Value>>,
    new: Value,
    sub: Sub,
    tracking: Tracking<'_>,
) -> ApiResult<Written> {
    if !new.is_object() {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    }
    let mut warnings = Vec::new();
    let gr = t.gr();
    let name = meta_str(&new, "name").to_string();
    let now = now();
    let status_separate = t.status_separate();
    let mut new = match old {
        Some(old) => strategy(old, new, sub, status_separate),
        None => new,
    };
    if let Some(m) = new.as_object_mut() {
        m.insert("apiVersion".into(), json!(t.api_version()));
        m.insert("kind".into(), json!(t.ty.kind));
    }
    if gr == GroupResource::new("", "secrets") {
        merge_string_data(&mut new);
    }

    if t.ty.custom {
        check_custom(t, &mut new, old.map(|o| &**o), opts, &mut warnings)?;
    } else {
        scale::default_replicas(t, &mut new);
    }
    if gr == GroupResource::new("", "pods") {
        if let Some(cause) = controllers::deletion_cost_problem(&new, old.map(|o| &**o)) {
            return Err(t.invalid(&name, vec![cause]));
        }
    }
    if is_crd(&gr) {
        let causes = crd::validate(&new);
        if !causes.is_empty() {
            return Err(t.invalid(&name, causes));
        }
        if old.is_none() {
            crd::set_status(&mut new, &now);
        }
    }
    if t.ty.has_generation {
        let generation = match old {
            None => 1,
            Some(old) => {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                if spec_part(old, status_separate) != spec_part(&new, status_separate) {
                    g + 1
                } else {
                    g
                }
            }
        };
        set_meta(&mut new, "generation", json!(generation));
    }

    if let Tracking::Update(manager) = tracking {
        let base = match old {
            Some(old) if new["metadata"].get("managedFields").is_none() => {
                old["metadata"].get("managedFields").cloned()
            }
            _ => new["metadata"].get("managedFields").cloned(),
        };
        let mut entries = Entry::read_all(&json!({"metadata": {"managedFields": base}}));
        let part = match sub {
            Sub::Status => Part::Status,
            _ => Part::Main { status_separate },
        };
        let changed = match old {
            Some(old) => FieldSet::changed(old, &new, part),
            None => FieldSet::of(&new, part),
        };
        let present = FieldSet::of(&new, part);
        fields::record_update(
            &mut entries,
            &changed,
            Some(&present),
            manager,
            &t.api_version(),
            sub.name(),
            &now,
        );
        Entry::write_all(&mut new, &entries);
    }

    // Decoding and validation errors come first, as in the apiserver.
    if old.is_none() && store.get(&gr, &t.namespace, &name).is_some() {
        return Err(ApiError::already_exists(&t.ty.group, &t.ty.plural, &name));
    }
    if let Some(old) = old {
        if same_content(old, &new)
            && old["metadata"]["managedFields"] == new["metadata"]["managedFields"]
        {
            return Ok(Written {
                object: old.clone(),
                created: false,
                warnings,
            });
        }
    }
    if opts.dry_run {
        return Ok(Written {
            object: Arc::new(new),
            created: old.is_none(),
            warnings,
        });
    }
    let finalized = new["metadata"].get("deletionTimestamp").is_some()
        && new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
    let kind = match (old, finalized) {
        (_, true) => EventType::Deleted,
        (None, false) => EventType::Added,
        (Some(_), false) => EventType::Modified,
    };
    let object = store.commit(&gr, kind, new);
    if is_crd(&gr) {
        if kind == EventType::Deleted {
            crd::unregister(store, &object);
        } else {
            crd::register(store, &object);
        }
    } else if kind != EventType::Deleted {
        workloads::settle(store, &gr, &object);
    }
    controllers::after_write(store, &gr, &t.namespace);
    Ok(Written {
        object,
        created: old.is_none(),
        warnings,
    })
}

/// POST: create an object in the collection.
pub fn create(store: &mut Store, t: &Target, opts: &WriteOpts, body: Value) -> ApiResult<Written> {
    create_tracked(store, t, opts, body, Tracking::Update(&opts.manager))
}

fn create_tracked(
    store: &mut Store,
    t: &Target,
    opts: &WriteOpts,
    mut body: Value,
    tracking: Tracking<'_>,
) -> ApiResult<Written> {
    check_type(t, &mut body)?;
    let mut name = meta_str(&body, "name").to_string();
    if name.is_empty() {
        let prefix = meta_str(&body, "generateName").to_string();
        if !prefix.is_empty() {
            name = format!("{prefix}{}", random_suffix());
            set_meta(&mut body, "name", json!(name));
        }
    }
    let body_ns = meta_str(&body, "namespace").to_string();
    if t.ty.namespaced {
        if !body_ns.is_empty() && body_ns != t.namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        set_meta(&mut body, "namespace", json!(t.namespace));
    } else {
        remove_meta(&mut body, "namespace");
    }
    if !meta_str(&body, "resourceVersion").is_empty() {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    if name.is_empty() {
        return Err(t.invalid(
            "",
            vec![Cause::new(
                "FieldValueRequired",
                "metadata.name",
                "Required value: name or generateName is required",
            )],
        ));
    }
    if let Some(problem) = name_problem(&name, t.ty.plural == "namespaces") {
        return Err(t.invalid(
            &name,
            vec![Cause::new("FieldValueInvalid", "metadata.name", problem)],
        ));
    }
    let gr = t.gr();
    if t.ty.namespaced
        && store
            .get(&GroupResource::new("", "namespaces"), "", &t.namespace)
            .is_none()
    {
        return Err(ApiError::not_found("", "namespaces", &t.namespace));
    }
    for key in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "selfLink",
    ] {
        remove_meta(&mut body, key);
    }
    if matches!(tracking, Tracking::Update(_)) {
        remove_meta(&mut body, "managedFields");
    }
    set_meta(&mut body, "uid", json!(uuid::Uuid::new_v4().to_string()));
    set_meta(&mut body, "creationTimestamp", json!(now()));
    if t.status_separate() {
        remove_key(&mut body, "status");
        if !t.ty.custom {
            body["status"] = json!({});
        }
    }
    if gr == GroupResource::new("", "namespaces") {
        body["spec"] = json!({"finalizers": ["kubernetes"]});
        body["status"] = json!({"phase": "Active"});
        let mut labels = body["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        set_meta(&mut body, "labels", Value::Object(labels));
    }
    finish(store, t, opts, None, body, Sub::Main, tracking)
}

fn current(store: &Store, t: &Target, name: &str) -> ApiResult<Arc<Value>> {
    store
        .get(&t.gr(), &t.namespace, name)
        .ok_or_else(|| t.not_found(name))
}

/// Checks `metadata.resourceVersion` of a write against the stored object.
fn precondition(
    t: &Target,
    name: &str,
    body: &Value,
    old: &Value,
    conditional_only: bool,
) -> ApiResult<()> {
    match body["metadata"]["resourceVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        Some(rv) => {
            let rv: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
            if Some(rv) != store::resource_version(old) {
                return Err(t.conflict(name));
            }
        }
        None if !conditional_only && !t.ty.unconditional_update => {
            return Err(t.invalid(
                name,
                vec![Cause::new(
                    "FieldValueInvalid",
                    "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update",
                )],
            ))
        }
        None => {}
    }
    Ok(())
}

/// PUT on the object, its status or its scale.
pub fn update(
    store: &mut Store,
    t: &Target,
    opts: &WriteOpts,
    name: &str,
    sub: Sub,
    mut body: Value,
) -> ApiResult<Written> {
    if sub == Sub::Scale {
        let old = current(store, t, name)?;
        precondition(t, name, &body, &old, true)?;
        let new = scale::write(t, &old, &body)?;
        return finish(
            store,
            t,
            opts,
            Some(&old),
            new,
            Sub::Scale,
            Tracking::Update(&opts.manager),
        );
    }
    check_type(t, &mut body)?;
    let body_name = meta_str(&body, "name");
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let body_ns = meta_str(&body, "namespace");
    if t.ty.namespaced && !body_ns.is_empty() && body_ns != t.namespace {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let old = current(store, t, name)?;
    precondition(t, name, &body, &old, false)?;
    finish(
        store,
        t,
        opts,
        Some(&old),
        body,
        sub,
        Tracking::Update(&opts.manager),
    )
}

/// A PATCH body with its type (and `force`, for apply).
pub struct PatchBody<'a> {
    pub kind: PatchType,
    pub body: &'a [u8],
    pub force: bool,
}

/// PATCH (including server-side apply, which creates when absent).
pub fn patch(
    store: &mut Store,
    t: &Target,
    opts: &WriteOpts,
    name: &str,
    sub: Sub,
    p: &PatchBody<'_>,
) -> ApiResult<Written> {
    let (kind, body, force) = (p.kind, p.body, p.force);
    if kind == PatchType::Apply {
        return apply_patch(store, t, opts, name, sub, body, force);
    }
    let old = current(store, t, name)?;
    if sub == Sub::Scale {
        let patched = patch::apply_patch(&scale::read(t, &old)?, kind, body)?;
        precondition(t, name, &patched, &old, true)?;
        let new = scale::write(t, &old, &patched)?;
        return finish(
            store,
            t,
            opts,
            Some(&old),
            new,
            Sub::Scale,
            Tracking::Update(&opts.manager),
        );
    }
    let mut view = (*old).clone();
    view["apiVersion"] = json!(t.api_version());
    let mut new = patch::apply_patch(&view, kind, body)?;
    if meta_str(&new, "name") != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta_str(&new, "name")
        )));
    }
    check_type(t, &mut new)?;
    precondition(t, name, &new, &old, true)?;
    finish(
        store,
        t,
        opts,
        Some(&old),
        new,
        sub,
        Tracking::Update(&opts.manager),
    )
}

/// A YAML request body as the API server reads it (sigs.k8s.io/yaml on
/// go-yaml v2: YAML 1.1 booleans and octal numbers).
pub(crate) fn yaml_value(body: &[u8]) -> Result<Value, serde_saphyr::Error> {
    serde_saphyr::from_slice_with_options(
        body,
        serde_saphyr::options! { legacy_octal_numbers: true },
    )
}

fn parse_apply_body(body: &[u8]) -> ApiResult<Value> {
    let v: Value =
        yaml_value(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the body of an apply patch must be an object",
        ));
    }
    Ok(v)
}

fn apply_patch(
    store: &mut Store,
    t: &Target,
    opts: &WriteOpts,
    name: &str,
    sub: Sub,
    body: &[u8],
    force: bool,
) -> ApiResult<Written> {
    let mut config = parse_apply_body(body)?;
    if sub == Sub::Scale {
        let old = current(store, t, name)?;
        let mut scale_obj = scale::read(t, &old)?;
        json_patch::merge(&mut scale_obj, &config);
        precondition(t, name, &config, &old, true)?;
        let new = scale::write(t, &old, &scale_obj)?;
        return finish(
            store,
            t,
            opts,
            Some(&old),
            new,
            Sub::Scale,
            Tracking::Update(&opts.manager),
        );
    }
    check_type(t, &mut config)?;
    let cfg_name = meta_str(&config, "name");
    // kube-apiserver checks the name after merging the configuration into
    // the live object (or a skeleton named by the URL), so an apply body may
    // omit metadata.name; only a different name is an error.
    if !cfg_name.is_empty() && cfg_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({cfg_name}) does not match the name on the URL ({name})"
        )));
    }
    let now = now();
    let status_separate = t.status_separate();
    let part = if sub == Sub::Status {
        Part::Status
    } else {
        Part::Main { status_separate }
    };
    let req = ApplyRequest {
        manager: &opts.manager,
        force,
        part,
        subresource: sub.name(),
        api_version: &t.api_version(),
        now: &now,
    };
    match store.get(&t.gr(), &t.namespace, name) {
        Some(old) => {
            let new = apply::apply(&old, &config, &req)?;
            precondition(t, name, &new, &old, true)?;
            finish(store, t, opts, Some(&old), new, sub, Tracking::Preset)
        }
        None if sub == Sub::Status => Err(t.not_found(name)),
        None => {
            let mut skeleton = json!({"apiVersion": t.api_version(), "kind": t.ty.kind, "metadata": {"name": name}});
            if t.ty.namespaced {
                skeleton["metadata"]["namespace"] = json!(t.namespace);
            }
            let new = apply::apply(&skeleton, &config, &req)?;
            create_tracked(store, t, opts, new, Tracking::Preset)
        }
    }
}

/// The outcome of a DELETE.
#[derive(Debug)]
pub enum Deleted {
    /// Removed now: the last state.
    Gone(Arc<Value>),
    /// Finalizers pending: `deletionTimestamp` set, still stored.
    Pending(Arc<Value>),
}

/// DELETE of one object, honouring `preconditions` and finalizers.
pub fn delete(
    store: &mut Store,
    t: &Target,
    name: &str,
    options: &Value,
    dry_run: bool,
) -> ApiResult<Deleted> {
    let old = current(store, t, name)?;
    let pre = &options["preconditions"];
    if let Some(uid) = pre["uid"].as_str() {
        if uid != meta_str(&old, "uid") {
            return Err(ApiError::conflict_with(
                &t.ty.group,
                &t.ty.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
    }
    if let Some(rv) = pre["resourceVersion"].as_str() {
        if rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict_with(
                &t.ty.group,
                &t.ty.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&old, "resourceVersion")
                ),
            ));
        }
    }
    let gr = t.gr();
    let has_finalizers = old["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if has_finalizers {
        if old["metadata"].get("deletionTimestamp").is_some() || dry_run {
            return Ok(Deleted::Pending(old));
        }
        let mut new = (*old).clone();
        set_meta(&mut new, "deletionTimestamp", json!(now()));
        set_meta(&mut new, "deletionGracePeriodSeconds", json!(0));
        if t.ty.has_generation {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
            set_meta(&mut new, "generation", json!(g + 1));
        }
        return Ok(Deleted::Pending(store.commit(
            &gr,
            EventType::Modified,
            new,
        )));
    }
    if dry_run {
        return Ok(Deleted::Gone(old));
    }
    if gr == GroupResource::new("", "namespaces") {
        delete_namespace_contents(store, name);
    }
    let object = store.commit(&gr, EventType::Deleted, (*old).clone());
    if gr == GroupResource::new("apiextensions.k8s.io", "customresourcedefinitions") {
        crd::unregister(store, &object);
    }
    controllers::after_write(store, &gr, &t.namespace);
    Ok(Deleted::Gone(object))
}

/// What the namespace controller does before a namespace goes away,
/// done at once: every namespaced object in it is deleted.
fn delete_namespace_contents(store: &mut Store, ns: &str) {
    let types: Vec<GroupResource> = store
        .registry
        .all()
        .filter(|t| t.namespaced)
        .map(|t| t.gr())
        .collect();
    for gr in types {
        for obj in store.list(&gr, Some(ns)) {
            store.commit(&gr, EventType::Deleted, (*obj).clone());
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn names_must_be_rfc1123() {
        assert!(name_problem("web-1.example", false).is_none());
        assert!(name_problem("Web", false).is_some());
        assert!(name_problem("a.b", true).is_some());
        assert!(name_problem("-a", false).is_some());
    }
}
