//! What each API request does to the store: get, list, create, update (PUT), patch (merge,
//! JSON, strategic, server-side apply), delete and delete-collection, with dry run, field
//! validation, defaulting, managed fields, generation and finalizers.

use serde_json::{Map, Value, json};

use crate::defaults;
use crate::managed::{Key, Managers, Operation};
use crate::patch;
use crate::registry::KindInfo;
use crate::select::{FieldSelector, LabelSelector};
use crate::ssa;
use crate::status::{ApiError, Cause};
use crate::store::{ObjKey, Store, Stored, render, set_meta};
use crate::validate;

/// `fieldValidation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validation {
    Strict,
    /// The apiserver's default: drop unknown fields and warn.
    #[default]
    Warn,
    Ignore,
}

/// Options of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    pub dry_run: bool,
    /// `fieldManager`, or the user agent's program name when the client sent none.
    pub manager: String,
    /// Whether `fieldManager` was sent (server-side apply requires it).
    pub manager_given: bool,
    pub validation: Validation,
    pub force: bool,
}

/// The patch content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

/// Options of a delete (query and body).
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub dry_run: bool,
    /// `Background`, `Foreground` or `Orphan`.
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub code: u16,
    pub body: Value,
    /// `Warning` headers (unknown fields under `fieldValidation=Warn`).
    pub warnings: Vec<String>,
}

impl Answer {
    fn ok(body: Value) -> Answer {
        Answer {
            code: 200,
            body,
            warnings: Vec::new(),
        }
    }
}

/// Selection and paging of a list.
#[derive(Debug, Clone, Default)]
pub struct ListOpts {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

fn meta_str<'v>(v: &'v Value, field: &str) -> Option<&'v str> {
    v.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.get("metadata").is_some_and(Value::is_object)
        && let Some(o) = v.as_object_mut()
    {
        o.insert("metadata".into(), Value::Object(Map::new()));
    }
    match v.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// `Deployment.apps` → `apps/v1, Kind=Deployment`; core → `/v1, Kind=ConfigMap`.
fn gvk_string(kind: &KindInfo) -> String {
    format!("{}/{}, Kind={}", kind.group, kind.version, kind.kind)
}

/// The body minus `metadata` and `status`: what moves `generation`.
fn spec_part(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn token_encode(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn token_decode(t: &str) -> Option<(String, String)> {
    let bytes: Option<Vec<u8>> = (0..t.len())
        .step_by(2)
        .map(|i| t.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    let s = String::from_utf8(bytes?).ok()?;
    let (ns, name) = s.split_once('/')?;
    Some((ns.to_string(), name.to_string()))
}

impl Store {
    fn update_key(&self, kind: usize, manager: &str, subresource: &str) -> Key {
        Key {
            manager: manager.to_string(),
            operation: Operation::Update,
            api_version: self.kind(kind).api_version(),
            subresource: subresource.to_string(),
        }
    }

    /// GET an object.
    pub fn get_object(&self, kind: usize, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let key = self.key(kind, ns, name);
        self.objects
            .get(&key)
            .map(|s| self.render(s))
            .ok_or_else(|| ApiError::not_found(self.kind(kind), name))
    }

    /// Objects of a kind (in one namespace or all) matching the selectors, in key order.
    pub fn select(&self, kind: usize, ns: Option<&str>, opts: &ListOpts) -> Vec<(ObjKey, Value)> {
        self.objects
            .iter()
            .filter(|(k, _)| k.kind == kind && ns.is_none_or(|ns| k.namespace == ns))
            .map(|(k, s)| (k.clone(), self.render(s)))
            .filter(|(_, o)| opts.labels.matches(o) && opts.fields.matches(o))
            .collect()
    }

    /// LIST: `<Kind>List` with `items` always present.
    pub fn list_objects(
        &self,
        kind: usize,
        ns: Option<&str>,
        opts: &ListOpts,
    ) -> Result<Value, ApiError> {
        let info = self.kind(kind);
        let mut items = self.select(kind, ns, opts);
        if let Some(t) = &opts.continue_token {
            let (cns, cname) = token_decode(t).ok_or_else(|| {
                ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
            })?;
            items.retain(|(k, _)| {
                (k.namespace.as_str(), k.name.as_str()) > (cns.as_str(), cname.as_str())
            });
        }
        let mut meta = Map::new();
        meta.insert(
            "resourceVersion".into(),
            json!(self.resource_version().to_string()),
        );
        if let Some(limit) = opts.limit.filter(|l| *l > 0)
            && items.len() > limit
        {
            let remaining = items.len() - limit;
            items.truncate(limit);
            if let Some((k, _)) = items.last() {
                meta.insert(
                    "continue".into(),
                    json!(token_encode(&k.namespace, &k.name)),
                );
            }
            meta.insert("remainingItemCount".into(), json!(remaining));
        }
        let items: Vec<Value> = items
            .into_iter()
            .map(|(_, mut o)| {
                // Typed (built-in) lists carry no type per item; custom resource lists do.
                if info.builtin
                    && let Some(m) = o.as_object_mut()
                {
                    m.shift_remove("apiVersion");
                    m.shift_remove("kind");
                }
                o
            })
            .collect();
        Ok(json!({
            "kind": format!("{}List", info.kind),
            "apiVersion": info.api_version(),
            "metadata": meta,
            "items": items,
        }))
    }

    /// Check `apiVersion`, `kind`, `metadata.namespace` and `metadata.name` of a request
    /// body against the URL, filling in what is missing.
    fn check_identity(
        &self,
        kind: usize,
        ns: Option<&str>,
        name: Option<&str>,
        body: &mut Value,
    ) -> Result<(), ApiError> {
        let info = self.kind(kind);
        let Some(obj) = body.as_object_mut() else {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        };
        let api_version = info.api_version();
        match obj.get("apiVersion").and_then(Value::as_str) {
            Some(v) if v != api_version => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({api_version})"
                )));
            }
            Some(_) => {}
            None => {
                obj.insert("apiVersion".into(), json!(api_version));
            }
        }
        match obj.get("kind").and_then(Value::as_str) {
            Some(k) if k != info.kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    info.kind
                )));
            }
            Some(_) => {}
            None => {
                obj.insert("kind".into(), json!(info.kind));
            }
        }
        let namespaced = info.namespaced;
        let meta = meta_mut(body);
        if namespaced {
            let url_ns = ns.unwrap_or("");
            match meta.get("namespace").and_then(Value::as_str) {
                Some(b) if !b.is_empty() && b != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(url_ns));
                }
            }
        } else {
            meta.shift_remove("namespace");
        }
        if let Some(url_name) = name {
            match meta.get("name").and_then(Value::as_str) {
                Some(b) if !b.is_empty() && b != url_name => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({b}) does not match the name on the URL ({url_name})"
                    )));
                }
                _ => {
                    meta.insert("name".into(), json!(url_name));
                }
            }
        }
        Ok(())
    }

    /// Unknown fields: an error under `Strict`, dropped (with warnings under `Warn`)
    /// otherwise.
    fn check_fields(
        &self,
        kind: usize,
        body: &mut Value,
        validation: Validation,
    ) -> Result<Vec<String>, ApiError> {
        let unknown = validate::unknown_fields(self.kind(kind), body);
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        if validation == Validation::Strict {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            return Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                list.join(", ")
            )));
        }
        validate::drop_fields(body, &unknown);
        Ok(if validation == Validation::Warn {
            unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect()
        } else {
            Vec::new()
        })
    }

    fn validate_meta(&self, kind: usize, body: &Value) -> Result<(), ApiError> {
        let empty = Map::new();
        let meta = body
            .get("metadata")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let causes = validate::metadata_causes(self.kind(kind), meta);
        if causes.is_empty() {
            Ok(())
        } else {
            let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
            Err(ApiError::invalid(self.kind(kind), name, &causes))
        }
    }

    fn require_namespace(&self, kind: usize, ns: Option<&str>) -> Result<(), ApiError> {
        if !self.kind(kind).namespaced {
            return Ok(());
        }
        let ns = ns.unwrap_or("");
        if ns.is_empty() {
            return Err(ApiError::method_not_allowed());
        }
        if self.namespace_exists(ns) {
            Ok(())
        } else {
            Err(ApiError::namespace_not_found(ns))
        }
    }

    /// Persist (unless dry run) a new or changed object, or recognise a no-op.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        key: ObjKey,
        old: Option<&Stored>,
        mut body: Value,
        mut managers: Managers,
        touch: Option<&Key>,
        dry_run: bool,
    ) -> Answer {
        let now = self.now();
        if let Some(k) = touch
            && let Some(e) = managers.get_mut(k)
        {
            e.time = Some(now.clone());
        }
        managers.drop_empty();
        let Some(old) = old else {
            let meta = meta_mut(&mut body);
            for f in [
                "uid",
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                meta.shift_remove(f);
            }
            meta.insert("generation".into(), json!(1));
            meta.insert("creationTimestamp".into(), json!(now));
            if dry_run {
                return Answer {
                    code: 201,
                    body: render(&body, &managers),
                    warnings: Vec::new(),
                };
            }
            let uid = self.next_uid();
            meta_mut(&mut body).insert("uid".into(), json!(uid));
            let object = self.put(key, Stored { body, managers });
            return Answer {
                code: 201,
                body: object,
                warnings: Vec::new(),
            };
        };
        // Server-managed metadata comes from the stored object.
        let old_meta = old
            .body
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        {
            let meta = meta_mut(&mut body);
            for f in [
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                match old_meta.get(f) {
                    Some(v) => {
                        meta.insert(f.to_string(), v.clone());
                    }
                    None => {
                        meta.shift_remove(f);
                    }
                }
            }
        }
        if spec_part(&body) != spec_part(&old.body) {
            let generation = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            set_meta(&mut body, "generation", json!(generation + 1));
        }
        if body == old.body && managers == old.managers {
            return Answer::ok(render(&old.body, &old.managers));
        }
        let finished = old_meta.contains_key("deletionTimestamp")
            && body
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        if dry_run {
            return Answer::ok(render(&body, &managers));
        }
        if finished {
            let stored = Stored { body, managers };
            self.objects.insert(key.clone(), stored);
            let object = self.remove(&key).unwrap_or(Value::Null);
            return Answer::ok(object);
        }
        let object = self.put(key, Stored { body, managers });
        Answer::ok(object)
    }

    /// POST: create.
    pub fn create(
        &mut self,
        kind: usize,
        ns: Option<&str>,
        mut body: Value,
        opts: &WriteOpts,
    ) -> Result<Answer, ApiError> {
        self.check_identity(kind, ns, None, &mut body)?;
        let warnings = self.check_fields(kind, &mut body, opts.validation)?;
        let info = self.kind(kind).clone();
        {
            let meta = meta_mut(&mut body);
            let has_name = meta
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if !has_name
                && let Some(prefix) = meta
                    .get("generateName")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            {
                let suffix = self.next_suffix();
                meta_mut(&mut body).insert("name".into(), json!(format!("{prefix}{suffix}")));
            }
        }
        if meta_str(&body, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        self.validate_meta(kind, &body)?;
        self.require_namespace(kind, ns)?;
        let name = meta_str(&body, "name").unwrap_or("").to_string();
        let key = self.key(kind, ns, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&info, &name));
        }
        meta_mut(&mut body).shift_remove("managedFields");
        if info.status_subresource
            && let Some(o) = body.as_object_mut()
        {
            o.shift_remove("status");
        }
        defaults::apply(&info, &mut body, None, &mut || self.next_ip());
        let ukey = self.update_key(kind, &opts.manager, "");
        let out = ssa::update(&info, &json!({}), &body, &Managers::default(), &ukey, "");
        let mut answer = self.commit(
            key,
            None,
            out.object,
            out.managers,
            Some(&ukey),
            opts.dry_run,
        );
        answer.warnings = warnings;
        Ok(answer)
    }

    /// PUT: replace (main resource or `status`).
    pub fn replace(
        &mut self,
        kind: usize,
        ns: Option<&str>,
        name: &str,
        mut body: Value,
        opts: &WriteOpts,
        subresource: &str,
    ) -> Result<Answer, ApiError> {
        let info = self.kind(kind).clone();
        let key = self.key(kind, ns, name);
        let Some(live) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(&info, name));
        };
        self.check_identity(kind, ns, Some(name), &mut body)?;
        self.write_over(kind, key, &live, body, opts, subresource)
    }

    /// The shared tail of PUT and non-apply PATCH: `body` is the whole new object.
    fn write_over(
        &mut self,
        kind: usize,
        key: ObjKey,
        live: &Stored,
        mut body: Value,
        opts: &WriteOpts,
        subresource: &str,
    ) -> Result<Answer, ApiError> {
        let info = self.kind(kind).clone();
        let name = key.name.clone();
        if let Some(rv) = meta_str(&body, "resourceVersion")
            && !rv.is_empty()
            && Some(rv) != meta_str(&live.body, "resourceVersion")
        {
            return Err(ApiError::stale(&info, &name));
        }
        let warnings = self.check_fields(kind, &mut body, opts.validation)?;
        // A client that changes managedFields sets them.
        let live_rendered = self.render(live);
        let mut base = live.managers.clone();
        if let Some(mf) = body.pointer("/metadata/managedFields")
            && Some(mf) != live_rendered.pointer("/metadata/managedFields")
        {
            base = Managers::from_json(mf).map_err(ApiError::bad_request)?;
        }
        meta_mut(&mut body).shift_remove("managedFields");
        let mut new = if subresource == "status" {
            let mut n = live.body.clone();
            copy_status(&mut n, &body);
            n
        } else {
            if info.status_subresource {
                copy_status(&mut body, &live.body);
            }
            body
        };
        self.validate_meta(kind, &new)?;
        defaults::apply(&info, &mut new, Some(&live.body), &mut || self.next_ip());
        let ukey = self.update_key(kind, &opts.manager, subresource);
        let out = ssa::update(&info, &live.body, &new, &base, &ukey, subresource);
        let mut answer = self.commit(
            key,
            Some(live),
            out.object,
            out.managers,
            out.touched.then_some(&ukey),
            opts.dry_run,
        );
        answer.warnings = warnings;
        Ok(answer)
    }

    /// PATCH.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        kind: usize,
        ns: Option<&str>,
        name: &str,
        how: PatchKind,
        patch_body: Value,
        opts: &WriteOpts,
        subresource: &str,
    ) -> Result<Answer, ApiError> {
        if how == PatchKind::Apply {
            return self.apply(kind, ns, name, patch_body, opts, subresource);
        }
        let info = self.kind(kind).clone();
        if opts.force {
            return Err(ApiError::invalid_options(
                "force",
                "may not be specified for non-apply patch",
            ));
        }
        if how == PatchKind::Strategic && !info.builtin {
            return Err(ApiError::unsupported_media_type(
                "application/strategic-merge-patch+json",
                &[
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                ],
            ));
        }
        let key = self.key(kind, ns, name);
        let Some(live) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(&info, name));
        };
        let current = self.render(&live);
        let mut new = match how {
            PatchKind::Merge => {
                if !patch_body.is_object() {
                    return Err(ApiError::bad_request(
                        "json: cannot unmarshal into Go value of type map[string]interface {}",
                    ));
                }
                patch::merge_patch(&current, &patch_body)
            }
            PatchKind::Strategic => patch::strategic_merge_patch(&info, &current, &patch_body),
            PatchKind::Json => patch::json_patch(&current, &patch_body).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?,
            PatchKind::Apply => unreachable!("handled above"),
        };
        self.check_identity(kind, ns, Some(name), &mut new)?;
        self.write_over(kind, key, &live, new, opts, subresource)
    }

    /// Server-side apply.
    fn apply(
        &mut self,
        kind: usize,
        ns: Option<&str>,
        name: &str,
        mut config: Value,
        opts: &WriteOpts,
        subresource: &str,
    ) -> Result<Answer, ApiError> {
        let info = self.kind(kind).clone();
        if !opts.manager_given || opts.manager.is_empty() {
            return Err(ApiError::invalid_options(
                "fieldManager",
                "is required for apply patch",
            ));
        }
        check_apply_body(&info, &config)?;
        let api_version = info.api_version();
        self.check_identity(kind, ns, Some(name), &mut config)?;
        check_declared(&info, &config)?;
        if subresource != "status"
            && info.status_subresource
            && let Some(o) = config.as_object_mut()
        {
            o.shift_remove("status");
        }
        let key = self.key(kind, ns, name);
        let live = self.objects.get(&key).cloned();
        // A resourceVersion in the configuration is a precondition.
        if let Some(rv) = meta_str(&config, "resourceVersion").filter(|rv| !rv.is_empty())
            && live
                .as_ref()
                .and_then(|l| meta_str(&l.body, "resourceVersion"))
                != Some(rv)
        {
            return Err(ApiError::stale(&info, name));
        }
        if live.is_none() {
            if subresource == "status" {
                return Err(ApiError::not_found(&info, name));
            }
            // Name problems are reported before the namespace is looked up.
            self.validate_meta(kind, &config)?;
            self.require_namespace(kind, ns)?;
        }
        let akey = Key {
            manager: opts.manager.clone(),
            operation: Operation::Apply,
            api_version: api_version.clone(),
            subresource: subresource.to_string(),
        };
        let empty = Stored {
            body: json!({}),
            managers: Managers::default(),
        };
        let base = live.as_ref().unwrap_or(&empty);
        let out = ssa::apply(
            &info,
            &base.body,
            &base.managers,
            &config,
            &akey,
            opts.force,
            subresource,
        )
        .map_err(|c| ApiError::apply_conflict(&info, name, &c))?;
        let mut merged = out.object;
        if let Some(live) = &live {
            if subresource == "status" {
                let mut n = live.body.clone();
                copy_status(&mut n, &merged);
                merged = n;
            } else if info.status_subresource {
                copy_status(&mut merged, &live.body);
            }
        }
        self.validate_meta(kind, &merged)?;
        let live_body = live.as_ref().map(|l| l.body.clone());
        defaults::apply(&info, &mut merged, live_body.as_ref(), &mut || {
            self.next_ip()
        });
        Ok(self.commit(
            key,
            live.as_ref(),
            merged,
            out.managers,
            out.touched.then_some(&akey),
            opts.dry_run,
        ))
    }

    /// DELETE one object.
    pub fn delete(
        &mut self,
        kind: usize,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Answer, ApiError> {
        let info = self.kind(kind).clone();
        let key = self.key(kind, ns, name);
        let Some(live) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(&info, name));
        };
        let uid = meta_str(&live.body, "uid").unwrap_or("").to_string();
        if let Some(want) = &opts.precondition_uid
            && *want != uid
        {
            return Err(ApiError::precondition(
                &info,
                name,
                format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
        let rv = meta_str(&live.body, "resourceVersion")
            .unwrap_or("")
            .to_string();
        if let Some(want) = &opts.precondition_rv
            && *want != rv
        {
            return Err(ApiError::precondition(
                &info,
                name,
                format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
                ),
            ));
        }
        let success = || {
            let mut details = Map::new();
            details.insert("name".into(), json!(name));
            if !info.group.is_empty() {
                details.insert("group".into(), json!(info.group));
            }
            details.insert("kind".into(), json!(info.plural));
            details.insert("uid".into(), json!(uid));
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
        };
        let has_finalizers = live
            .body
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if has_finalizers && !(info.group.is_empty() && info.kind == "Namespace") {
            // Deletion waits for the finalizers to be removed.
            let mut body = live.body.clone();
            if meta_str(&body, "deletionTimestamp").is_none() {
                set_meta(&mut body, "deletionTimestamp", json!(self.now()));
                set_meta(&mut body, "deletionGracePeriodSeconds", json!(0));
            }
            if opts.dry_run || body == live.body {
                return Ok(Answer::ok(render(&body, &live.managers)));
            }
            let object = self.put(
                key,
                Stored {
                    body,
                    managers: live.managers,
                },
            );
            return Ok(Answer::ok(object));
        }
        if opts.dry_run {
            return Ok(Answer::ok(if info.builtin {
                success()
            } else {
                self.render(&live)
            }));
        }
        let last = self.remove_cascading(&key, opts.propagation.as_deref());
        Ok(Answer::ok(if info.builtin { success() } else { last }))
    }

    /// Remove an object and what depends on it: a namespace's contents, and (unless
    /// `Orphan`) objects whose `ownerReferences` name it. Returns the object's last state.
    fn remove_cascading(&mut self, key: &ObjKey, propagation: Option<&str>) -> Value {
        let is_namespace = {
            let k = self.kind(key.kind);
            k.group.is_empty() && k.kind == "Namespace"
        };
        if is_namespace {
            let inside: Vec<ObjKey> = self
                .objects
                .keys()
                .filter(|k| k.namespace == key.name)
                .cloned()
                .collect();
            for k in inside {
                self.remove(&k);
            }
        }
        let last = self.remove(key).unwrap_or(Value::Null);
        let uid = meta_str(&last, "uid").unwrap_or("").to_string();
        if uid.is_empty() {
            return last;
        }
        let dependents: Vec<ObjKey> = self
            .objects
            .iter()
            .filter(|(_, s)| {
                s.body
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r.get("uid").and_then(Value::as_str) == Some(&uid))
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for dep in dependents {
            if propagation == Some("Orphan") {
                self.modify(&dep, |body| {
                    if let Some(Value::Array(refs)) = body.pointer_mut("/metadata/ownerReferences")
                    {
                        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(&uid));
                    }
                });
            } else if self.objects.contains_key(&dep) {
                self.remove_cascading(&dep, propagation);
            }
        }
        last
    }

    /// DELETE a collection: the deleted objects as a `<Kind>List`.
    pub fn delete_collection(
        &mut self,
        kind: usize,
        ns: Option<&str>,
        list: &ListOpts,
        opts: &DeleteOpts,
    ) -> Result<Answer, ApiError> {
        let info = self.kind(kind).clone();
        let selected = self.select(kind, ns, list);
        let mut items = Vec::new();
        for (k, before) in selected {
            let answer = self.delete(kind, Some(k.namespace.as_str()), &k.name, opts)?;
            if answer.body.get("kind").and_then(Value::as_str) == Some("Status") {
                items.push(before);
            } else {
                items.push(answer.body);
            }
        }
        Ok(Answer::ok(json!({
            "kind": format!("{}List", info.kind),
            "apiVersion": info.api_version(),
            "metadata": {"resourceVersion": self.resource_version().to_string()},
            "items": items,
        })))
    }
}

impl ApiError {
    /// 422 about the request options (`PatchOptions`).
    pub fn invalid_options(field: &str, msg: &str) -> ApiError {
        let cause = if msg.starts_with("is required") {
            Cause::required(field, msg)
        } else {
            Cause::forbidden(field, msg)
        };
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!(
                "PatchOptions.meta.k8s.io \"\" is invalid: {}: {}",
                cause.field, cause.message
            ),
            details: Some(json!({
                "group": "meta.k8s.io",
                "kind": "PatchOptions",
                "causes": [{"reason": cause.reason, "message": cause.message, "field": cause.field}],
            })),
        }
    }
}

/// A write to the `scale` subresource.
#[derive(Debug, Clone)]
pub enum ScaleWrite {
    Put(Value),
    Patch(PatchKind, Value),
}

/// The `autoscaling/v1` `Scale` of an object.
fn scale_of(body: &Value) -> Value {
    let meta = body.get("metadata").cloned().unwrap_or(json!({}));
    let mut m = Map::new();
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(f) {
            m.insert(f.to_string(), v.clone());
        }
    }
    let selector: Vec<String> = body
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": m,
        "spec": {"replicas": body.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": body.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector.join(","),
        },
    })
}

impl Store {
    /// GET the `scale` subresource.
    pub fn get_scale(&self, kind: usize, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let key = self.key(kind, ns, name);
        let live = self
            .objects
            .get(&key)
            .ok_or_else(|| ApiError::not_found(self.kind(kind), name))?;
        Ok(scale_of(&live.body))
    }

    /// PUT or PATCH the `scale` subresource: only `spec.replicas` of the object changes,
    /// owned by the writer with subresource `scale`.
    pub fn write_scale(
        &mut self,
        kind: usize,
        ns: Option<&str>,
        name: &str,
        write: ScaleWrite,
        opts: &WriteOpts,
    ) -> Result<Answer, ApiError> {
        let info = self.kind(kind).clone();
        let key = self.key(kind, ns, name);
        let Some(live) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(&info, name));
        };
        let current = scale_of(&live.body);
        let scale = match write {
            ScaleWrite::Put(v) => v,
            ScaleWrite::Patch(PatchKind::Merge | PatchKind::Strategic, p) => {
                patch::merge_patch(&current, &p)
            }
            ScaleWrite::Patch(PatchKind::Json, p) => {
                patch::json_patch(&current, &p).map_err(|e| ApiError::new(422, "Invalid", e))?
            }
            ScaleWrite::Patch(PatchKind::Apply, _) => {
                return Err(ApiError::unsupported_media_type(
                    "application/apply-patch+yaml",
                    &[
                        "application/json-patch+json",
                        "application/merge-patch+json",
                    ],
                ));
            }
        };
        if let Some(rv) = meta_str(&scale, "resourceVersion")
            && !rv.is_empty()
            && Some(rv) != meta_str(&live.body, "resourceVersion")
        {
            return Err(ApiError::stale(&info, name));
        }
        let Some(replicas) = scale.pointer("/spec/replicas").and_then(Value::as_i64) else {
            return Err(ApiError::invalid(
                &info,
                name,
                &[Cause::required("spec.replicas", "replicas must be set")],
            ));
        };
        if replicas < 0 {
            return Err(ApiError::invalid(
                &info,
                name,
                &[Cause::invalid(
                    "spec.replicas",
                    &replicas.to_string(),
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut new = live.body.clone();
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("replicas".into(), json!(replicas));
        }
        let ukey = self.update_key(kind, &opts.manager, "scale");
        let out = ssa::update(&info, &live.body, &new, &live.managers, &ukey, "");
        let answer = self.commit(
            key,
            Some(&live),
            out.object,
            out.managers,
            out.touched.then_some(&ukey),
            opts.dry_run,
        );
        Ok(Answer {
            code: answer.code,
            body: scale_of(&answer.body),
            warnings: Vec::new(),
        })
    }
}

/// Give `into` the `status` of `from` (none when `from` has none).
fn copy_status(into: &mut Value, from: &Value) {
    if let Some(o) = into.as_object_mut() {
        match from.get("status") {
            Some(s) => {
                o.insert("status".into(), s.clone());
            }
            None => {
                o.shift_remove("status");
            }
        }
    }
}

/// What an apply body must be: an object without `managedFields`, of this kind and version.
fn check_apply_body(info: &KindInfo, config: &Value) -> Result<(), ApiError> {
    let Some(obj) = config.as_object() else {
        return Err(ApiError::bad_request(
            "error decoding YAML: the apply body must be an object",
        ));
    };
    if obj
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let api_version = info.api_version();
    let sent_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let sent_kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if sent_kind.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in '{}'",
            Value::Object(obj.clone())
        )));
    }
    if sent_version != api_version || sent_kind != info.kind {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {sent_version}, Kind={sent_kind}, expected: {api_version}, Kind={}",
            info.kind
        )));
    }
    Ok(())
}

/// Refuse fields the kind's schema does not declare, as building the typed patch does.
fn check_declared(info: &KindInfo, config: &Value) -> Result<(), ApiError> {
    let unknown = validate::unknown_fields(info, config);
    if unknown.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!(".{f}: field not declared in schema"))
        .collect();
    Err(ApiError::internal(format!(
        "failed to create typed patch object ({}): {}",
        gvk_string(info),
        fields.join("\n")
    )))
}
