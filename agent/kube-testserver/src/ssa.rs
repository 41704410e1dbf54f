//! Server-side apply and the managed-fields bookkeeping of ordinary writes, after
//! structured-merge-diff (`merge.Updater.Apply` and `Update`).
//!
//! Objects are JSON values; the only schema knowledge is [`KindInfo::list_type`] (which lists
//! are associative or sets). The steps:
//! - [`field_set`]: the fields an applied configuration sets (what its applier will own);
//! - [`compare`]: fields added, modified and removed between two objects;
//! - [`merge`]: an applied configuration over the live object;
//! - [`apply`]: merge, take ownership, detect conflicts with other managers, and remove what
//!   the applier stopped applying unless someone else owns it;
//! - [`update`]: ownership after a non-apply write (the writer takes what it changed).

use serde_json::{Map, Value};

use crate::fieldset::{FieldSet, PathElement, canonical_json, path_string};
use crate::managed::{Key, Managers, Operation};
use crate::registry::{KindInfo, ListType, key_default};

/// Paths never recorded in managed fields (only the path itself, not what lies below).
const IGNORED: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["metadata"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "uid"],
    &["metadata", "resourceVersion"],
    &["metadata", "generation"],
    &["metadata", "creationTimestamp"],
    &["metadata", "deletionTimestamp"],
    &["metadata", "deletionGracePeriodSeconds"],
    &["metadata", "managedFields"],
    &["metadata", "selfLink"],
];

fn fields(path: &[&str]) -> Vec<PathElement> {
    path.iter()
        .map(|s| PathElement::Field((*s).to_string()))
        .collect()
}

/// Drop what is never owned: type and server-set metadata, and `status` of kinds with a
/// status subresource when writing the main resource (or everything but `status` when
/// writing the status subresource).
pub fn strip_ignored(kind: &KindInfo, set: &mut FieldSet, subresource: &str) {
    for p in IGNORED {
        set.remove(&fields(p));
    }
    let status = fields(&["status"]);
    if subresource == "status" {
        let kept = set.at(&status).cloned();
        *set = FieldSet::new();
        if let Some(kept) = kept {
            for p in kept.paths() {
                let mut full = status.clone();
                full.extend(p);
                set.insert(&full);
            }
        }
    } else if kind.status_subresource {
        set.remove_subtree(&status);
    }
}

/// The path elements of a list's items, or `None` when the list is atomic (by type, or
/// because its items cannot be keyed).
fn item_elements(kind: &KindInfo, fpath: &[String], items: &[Value]) -> Option<Vec<PathElement>> {
    let names: Vec<&str> = fpath.iter().map(String::as_str).collect();
    match kind.list_type(&names) {
        ListType::Atomic => None,
        ListType::Set => Some(
            items
                .iter()
                .map(|v| PathElement::Value(canonical_json(v)))
                .collect(),
        ),
        ListType::Map(keys) => items
            .iter()
            .map(|item| {
                let obj = item.as_object()?;
                let mut fields = Vec::new();
                for k in keys {
                    match obj.get(*k).cloned().or_else(|| key_default(k)) {
                        Some(v) => fields.push(((*k).to_string(), v)),
                        None => return None,
                    }
                }
                Some(PathElement::key(fields))
            })
            .collect(),
    }
}

/// Whether a list item matches a path element (without knowing the list's type).
fn item_matches(item: &Value, pe: &PathElement, index: usize) -> bool {
    match pe {
        PathElement::Key(fields) => {
            let Some(obj) = item.as_object() else {
                return false;
            };
            fields.iter().all(|(k, v)| {
                obj.get(k)
                    .cloned()
                    .or_else(|| key_default(k))
                    .is_some_and(|actual| canonical_json(&actual) == *v)
            })
        }
        PathElement::Value(v) => canonical_json(item) == *v,
        PathElement::Index(i) => *i == index,
        PathElement::Field(_) => false,
    }
}

/// The fields an applied configuration sets.
pub fn field_set(kind: &KindInfo, config: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    fs_walk(kind, &mut Vec::new(), &mut Vec::new(), config, &mut set);
    set
}

fn fs_walk(
    kind: &KindInfo,
    fpath: &mut Vec<String>,
    path: &mut Vec<PathElement>,
    v: &Value,
    set: &mut FieldSet,
) {
    let names: Vec<&str> = fpath.iter().map(String::as_str).collect();
    if v.is_object() && !path.is_empty() && kind.atomic_map(&names) {
        set.insert(path);
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                path.push(PathElement::Field(k.clone()));
                fpath.push(k.clone());
                fs_walk(kind, fpath, path, child, set);
                if child.is_null() || child.as_object().is_some_and(Map::is_empty) {
                    set.insert(path);
                }
                fpath.pop();
                path.pop();
            }
        }
        Value::Array(items) => match item_elements(kind, fpath, items) {
            None => set.insert(path),
            Some(pes) => {
                for (pe, item) in pes.into_iter().zip(items) {
                    path.push(pe);
                    if item.is_object() {
                        fs_walk(kind, fpath, path, item, set);
                    }
                    set.insert(path);
                    path.pop();
                }
            }
        },
        _ => {
            if !path.is_empty() {
                set.insert(path);
            }
        }
    }
}

/// Fields that differ between two objects.
#[derive(Debug, Default, Clone)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    pub fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// What changed from `old` to `new`. Maps and non-atomic lists are compared item by item;
/// a map or list item that appears (or disappears) is itself added (removed).
pub fn compare(kind: &KindInfo, old: &Value, new: &Value) -> Comparison {
    let mut out = Comparison::default();
    cmp_walk(
        kind,
        &mut Vec::new(),
        &mut Vec::new(),
        Some(old),
        Some(new),
        &mut out,
    );
    out
}

fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn cmp_walk(
    kind: &KindInfo,
    fpath: &mut Vec<String>,
    path: &mut Vec<PathElement>,
    l: Option<&Value>,
    r: Option<&Value>,
    out: &mut Comparison,
) {
    let (l, r) = (present(l), present(r));
    if l.is_none() && r.is_none() {
        return;
    }
    let map_like = |v: Option<&Value>| v.is_none_or(Value::is_object);
    let list_like = |v: Option<&Value>| v.is_none_or(Value::is_array);
    let empty = |v: Option<&Value>| match v {
        None => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    let mut leaf = true;
    let names: Vec<&str> = fpath.iter().map(String::as_str).collect();
    let atomic = kind.atomic_map(&names);
    if atomic {
        // Compared as a whole.
    } else if map_like(l) && map_like(r) && !(empty(l) && empty(r)) {
        leaf = false;
        let lm = l.and_then(Value::as_object);
        let rm = r.and_then(Value::as_object);
        let mut keys: Vec<&String> = lm.into_iter().flat_map(|m| m.keys()).collect();
        for k in rm.into_iter().flat_map(|m| m.keys()) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        for k in keys {
            path.push(PathElement::Field(k.clone()));
            fpath.push(k.clone());
            cmp_walk(
                kind,
                fpath,
                path,
                lm.and_then(|m| m.get(k)),
                rm.and_then(|m| m.get(k)),
                out,
            );
            fpath.pop();
            path.pop();
        }
    } else if list_like(l) && list_like(r) && !(empty(l) && empty(r)) {
        let li: &[Value] = l.and_then(Value::as_array).map_or(&[], Vec::as_slice);
        let ri: &[Value] = r.and_then(Value::as_array).map_or(&[], Vec::as_slice);
        if let (Some(lp), Some(rp)) = (
            item_elements(kind, fpath, li),
            item_elements(kind, fpath, ri),
        ) {
            leaf = false;
            for (pe, rv) in rp.iter().zip(ri) {
                let lv = lp.iter().position(|p| p == pe).map(|i| &li[i]);
                path.push(pe.clone());
                cmp_walk(kind, fpath, path, lv, Some(rv), out);
                path.pop();
            }
            for (pe, lv) in lp.iter().zip(li) {
                if !rp.contains(pe) {
                    path.push(pe.clone());
                    cmp_walk(kind, fpath, path, Some(lv), None, out);
                    path.pop();
                }
            }
        }
    }
    if leaf {
        match (l, r) {
            (None, Some(_)) => out.added.insert(path),
            (Some(_), None) => out.removed.insert(path),
            (Some(a), Some(b)) if a != b => out.modified.insert(path),
            _ => {}
        }
    } else if !path.is_empty() {
        if l.is_none() {
            out.added.insert(path);
        } else if r.is_none() {
            out.removed.insert(path);
        }
    }
}

/// An applied configuration merged over the live object: maps field by field, associative
/// lists item by item (configuration order, live-only items kept in place), everything else
/// replaced. A `null` in the configuration removes the field.
pub fn merge(kind: &KindInfo, live: &Value, config: &Value) -> Value {
    merge_walk(kind, &mut Vec::new(), Some(live), config)
}

fn merge_walk(
    kind: &KindInfo,
    fpath: &mut Vec<String>,
    live: Option<&Value>,
    cfg: &Value,
) -> Value {
    let names: Vec<&str> = fpath.iter().map(String::as_str).collect();
    if kind.atomic_map(&names) {
        return strip_nulls(cfg);
    }
    match (live, cfg) {
        (Some(Value::Object(l)), Value::Object(c)) => {
            let mut out = l.clone();
            for (k, cv) in c {
                if cv.is_null() {
                    out.remove(k);
                    continue;
                }
                fpath.push(k.clone());
                let merged = merge_walk(kind, fpath, l.get(k), cv);
                fpath.pop();
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Some(Value::Array(l)), Value::Array(c)) => {
            match (item_elements(kind, fpath, l), item_elements(kind, fpath, c)) {
                (Some(lp), Some(cp)) => {
                    let mut out = Vec::with_capacity(l.len().max(c.len()));
                    let mut emitted = vec![false; c.len()];
                    let mut next = 0;
                    let emit = |j: usize, out: &mut Vec<Value>, fpath: &mut Vec<String>| {
                        let live_item = lp.iter().position(|p| *p == cp[j]).map(|i| &l[i]);
                        out.push(merge_walk(kind, fpath, live_item, &c[j]));
                    };
                    for (i, pe) in lp.iter().enumerate() {
                        match cp.iter().position(|p| p == pe) {
                            Some(j) => {
                                while next <= j {
                                    if !emitted[next] {
                                        emitted[next] = true;
                                        emit(next, &mut out, fpath);
                                    }
                                    next += 1;
                                }
                                if !emitted[j] {
                                    emitted[j] = true;
                                    emit(j, &mut out, fpath);
                                }
                            }
                            None => out.push(l[i].clone()),
                        }
                    }
                    for (j, done) in emitted.iter().enumerate() {
                        if !done {
                            emit(j, &mut out, fpath);
                        }
                    }
                    Value::Array(out)
                }
                _ => strip_nulls(cfg),
            }
        }
        _ => strip_nulls(cfg),
    }
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// Remove the value at `path`; returns whether something was removed.
fn remove_at(v: &mut Value, path: &[PathElement]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let Some(parent) = value_at_mut(v, parents) else {
        return false;
    };
    match (parent, last) {
        (Value::Object(m), PathElement::Field(f)) => m.shift_remove(f).is_some(),
        (Value::Array(a), pe) => match a
            .iter()
            .enumerate()
            .position(|(i, x)| item_matches(x, pe, i))
        {
            Some(i) => {
                a.remove(i);
                true
            }
            None => false,
        },
        _ => false,
    }
}

fn value_at_mut<'v>(v: &'v mut Value, path: &[PathElement]) -> Option<&'v mut Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(v);
    };
    let next = match (v, first) {
        (Value::Object(m), PathElement::Field(f)) => m.get_mut(f)?,
        (Value::Array(a), pe) => {
            let i = a
                .iter()
                .enumerate()
                .position(|(i, x)| item_matches(x, pe, i))?;
            &mut a[i]
        }
        _ => return None,
    };
    value_at_mut(next, rest)
}

fn is_empty_container(v: Option<&mut Value>) -> bool {
    match v {
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

/// Remove from `merged` what the applier applied last time (`last`) and nobody owns now;
/// maps and lists emptied by that go too unless someone owns them.
fn prune(merged: &mut Value, last: &FieldSet, owned: &FieldSet) {
    let to_remove = last.difference(owned);
    for p in to_remove.paths() {
        if !remove_at(merged, &p) {
            continue;
        }
        for depth in (1..p.len()).rev() {
            let anc = &p[..depth];
            if owned.contains(anc) || !is_empty_container(value_at_mut(merged, anc)) {
                break;
            }
            remove_at(merged, anc);
        }
    }
}

/// A conflict: a field the applied configuration changes that another manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// How messages name the manager (see [`crate::managed::Entry::describe`]).
    pub manager: String,
    pub path: Vec<PathElement>,
}

impl Conflict {
    pub fn field(&self) -> String {
        path_string(&self.path)
    }
}

/// The outcome of [`apply`] or [`update`].
#[derive(Debug, Clone)]
pub struct Outcome {
    pub object: Value,
    pub managers: Managers,
    /// The applier's or updater's own entry changed fields or the object changed (its time
    /// should move).
    pub touched: bool,
}

/// Server-side apply of `config` by `key` over `live` (an empty object when creating).
/// Returns the merged object and new managers, or the conflicts (unless `force`).
pub fn apply(
    kind: &KindInfo,
    live: &Value,
    managers: &Managers,
    config: &Value,
    key: &Key,
    force: bool,
    subresource: &str,
) -> Result<Outcome, Vec<Conflict>> {
    let mut managers = managers.clone();
    let mut merged = merge(kind, live, config);
    let last = managers
        .get(key)
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut set = field_set(kind, config);
    strip_ignored(kind, &mut set, subresource);
    managers.set(key, set, None);
    prune(&mut merged, &last, &managers.owned());
    // Other managers: conflicts on what the apply changes, and loss of what it removes.
    let mut cmp = compare(kind, live, &merged);
    strip_ignored(kind, &mut cmp.added, subresource);
    strip_ignored(kind, &mut cmp.modified, subresource);
    strip_ignored(kind, &mut cmp.removed, subresource);
    let changed = cmp.modified.union(&cmp.added);
    let mut conflicts = Vec::new();
    for e in &managers.entries {
        if e.is(key) {
            continue;
        }
        for p in e.fields.intersection(&changed).paths() {
            conflicts.push(Conflict {
                manager: e.describe(),
                path: p,
            });
        }
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by(|a, b| a.manager.cmp(&b.manager).then_with(|| a.path.cmp(&b.path)));
        return Err(conflicts);
    }
    for e in &mut managers.entries {
        if e.is(key) {
            continue;
        }
        e.fields = e.fields.difference(&changed).difference(&cmp.removed);
    }
    managers.drop_empty();
    if *live != merged {
        prune(&mut merged, &last, &managers.owned());
    }
    let touched = *live != merged || managers.get(key).is_some_and(|e| e.time.is_none());
    Ok(Outcome {
        object: merged,
        managers,
        touched,
    })
}

/// Ownership after a non-apply write from `live` to `new` by `key`: the writer takes every
/// field it added or changed, other managers lose them, and everyone loses removed fields.
pub fn update(
    kind: &KindInfo,
    live: &Value,
    new: &Value,
    managers: &Managers,
    key: &Key,
    subresource: &str,
) -> Outcome {
    debug_assert_eq!(key.operation, Operation::Update);
    let mut managers = managers.clone();
    let mut cmp = compare(kind, live, new);
    strip_ignored(kind, &mut cmp.added, subresource);
    strip_ignored(kind, &mut cmp.modified, subresource);
    strip_ignored(kind, &mut cmp.removed, subresource);
    let taken = cmp.modified.union(&cmp.added);
    for e in &mut managers.entries {
        e.fields = e.fields.difference(&cmp.removed);
        if !e.is(key) {
            e.fields = e.fields.difference(&taken);
        }
    }
    let touched = !taken.is_empty();
    if touched {
        let mine = managers
            .get(key)
            .map(|e| e.fields.clone())
            .unwrap_or_default()
            .union(&taken);
        managers.set(key, mine, None);
    }
    managers.drop_empty();
    Outcome {
        object: new.clone(),
        managers,
        touched,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    fn cm() -> KindInfo {
        let r = Registry::builtins();
        r.get(r.by_kind("v1", "ConfigMap").expect("configmap"))
            .clone()
    }

    fn deploy() -> KindInfo {
        let r = Registry::builtins();
        r.get(r.by_kind("apps/v1", "Deployment").expect("deployment"))
            .clone()
    }

    fn key(m: &str, op: Operation) -> Key {
        Key {
            manager: m.into(),
            operation: op,
            api_version: "v1".into(),
            subresource: String::new(),
        }
    }

    #[test]
    fn field_set_of_apply_config() {
        let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "x", "labels": {"app": "y"}},
            "data": {"a": "1"}});
        let mut s = field_set(&cm(), &cfg);
        strip_ignored(&cm(), &mut s, "");
        assert_eq!(
            s.to_fields_v1(),
            json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
        );
    }

    #[test]
    fn field_set_keys_containers() {
        let cfg = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "i", "ports": [{"containerPort": 80}]}]}}}});
        let s = field_set(&deploy(), &cfg);
        assert_eq!(
            s.to_fields_v1(),
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}, "f:ports": {
                    "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}}}})
        );
    }

    #[test]
    fn update_records_created_maps() {
        let new = json!({"metadata": {"name": "c", "labels": {"app": "y"}}, "data": {"k": "v"}});
        let mut cmp = compare(&cm(), &json!({}), &new);
        strip_ignored(&cm(), &mut cmp.added, "");
        assert_eq!(
            cmp.added.to_fields_v1(),
            json!({"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}})
        );
    }

    #[test]
    fn apply_shares_conflicts_forces_and_prunes() {
        let k = cm();
        let a = key("a", Operation::Apply);
        let b = key("b", Operation::Apply);
        let live = json!({});
        let o = apply(
            &k,
            &live,
            &Managers::default(),
            &json!({"data": {"x": "1", "y": "2"}}),
            &a,
            false,
            "",
        )
        .expect("no conflict");
        // Same value: shared.
        let o2 = apply(
            &k,
            &o.object,
            &o.managers,
            &json!({"data": {"x": "1"}}),
            &b,
            false,
            "",
        )
        .expect("shared");
        assert_eq!(o2.object, o.object);
        assert_eq!(o2.managers.entries.len(), 2);
        // Different value: conflict.
        let err = apply(
            &k,
            &o2.object,
            &o2.managers,
            &json!({"data": {"x": "9"}}),
            &b,
            false,
            "",
        )
        .expect_err("conflict");
        assert_eq!(err[0].manager, "\"a\"");
        assert_eq!(err[0].field(), ".data.x");
        // Force moves ownership.
        let o3 = apply(
            &k,
            &o2.object,
            &o2.managers,
            &json!({"data": {"x": "9"}}),
            &b,
            true,
            "",
        )
        .expect("forced");
        assert_eq!(o3.object, json!({"data": {"x": "9", "y": "2"}}));
        let a_fields = o3.managers.get(&a).expect("a").fields.to_fields_v1();
        assert_eq!(a_fields, json!({"f:data": {"f:y": {}}}));
        // `a` stops applying y: removed. x stays (b owns it).
        let o4 = apply(
            &k,
            &o3.object,
            &o3.managers,
            &json!({"data": {}}),
            &a,
            false,
            "",
        )
        .expect("prune");
        assert_eq!(o4.object, json!({"data": {"x": "9"}}));
    }

    #[test]
    fn label_selectors_are_atomic() {
        let k = deploy();
        let cfg = json!({"spec": {"selector": {"matchLabels": {"app": "d"}}}});
        assert_eq!(
            field_set(&k, &cfg).to_fields_v1(),
            json!({"f:spec": {"f:selector": {}}})
        );
        let live = json!({"spec": {"selector": {"matchLabels": {"app": "d", "old": "x"}}}});
        assert_eq!(merge(&k, &live, &cfg), cfg);
        let cmp = compare(&k, &live, &cfg);
        assert_eq!(
            cmp.modified.to_fields_v1(),
            json!({"f:spec": {"f:selector": {}}})
        );
    }

    #[test]
    fn associative_lists_merge_by_key() {
        let k = deploy();
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "1"}, {"name": "side", "image": "s"}]}}}});
        let cfg = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "2"}, {"name": "b", "image": "3"}]}}}});
        let m = merge(&k, &live, &cfg);
        assert_eq!(
            m["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "image": "2"}, {"name": "side", "image": "s"}, {"name": "b", "image": "3"}])
        );
    }
}
