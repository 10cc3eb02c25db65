//! Field ownership (`metadata.managedFields`) and server-side apply, as the API server runs
//! them, for the fake API server in [`super::api`].
//!
//! Sources this follows (kubernetes-sigs/structured-merge-diff `merge/update.go`, and
//! kubernetes `staging/src/k8s.io/apimachinery/pkg/util/managedfields/internal/`):
//! - One entry per manager identity: (manager, operation, subresource), plus apiVersion
//!   for `Update` entries only (`BuildManagerIdentifier` leaves the apiVersion out for
//!   appliers). Each holds a fieldsV1 set of paths.
//! - `Update` (create, PUT, merge patch): the fields it changed or added become its own and
//!   are taken from every other manager; removed fields leave every set (`Updater.update`
//!   with force, then `Updater.Update`). An object without managedFields stays without on
//!   a write that is not a create (`skipnonapplied.go`).
//! - `Apply`: the body is merged into the live object (maps granular, lists atomic); the
//!   applier's set becomes exactly the body's fields; fields its previous apply set owned
//!   and this one omits are removed unless another manager (applier or updater) owns them
//!   (`Updater.prune`, `addBackOwnedItems`); a changed field another manager owns is a
//!   conflict (409, reason `Conflict`) unless `force`, which takes it over. An object with
//!   no managedFields first gets a `before-first-apply` Update entry owning all it holds.
//! - `apiVersion`, `kind`, `metadata.{name,namespace,uid,resourceVersion,generation,
//!   creationTimestamp,managedFields,...}` are never owned (`stripmeta.go`).
//! - A write to the status subresource changes only `status` (apiextensions-apiserver
//!   `registry/customresource/status_strategy.go`: `PrepareForUpdate` copies the stored
//!   object and keeps the request's status; `GetResetFields` keeps `spec` out of its
//!   managed set); a main-resource write never changes or owns `status`. The fake also
//!   records no metadata for a status write: a real server may record metadata fields a
//!   status apply body names although it drops their values, which only matters for bodies
//!   with more metadata than `name` (the controller's have none).
//!
//! Lists are atomic: a CRD array is atomic unless its schema says
//! `x-kubernetes-list-type: map|set` (apiextensions `JSONSchemaProps.XListType`: "Defaults
//! to atomic for arrays"), and our CRD declares none (conditions, history, checks).
//! Simplifications, none of which the controller's requests reach: every JSON object is a
//! granular map (no `x-kubernetes-map-type: atomic`), `metadata.finalizers` is atomic
//! (Kubernetes declares it a set), and a map key's own membership (the `.` entries of a
//! fieldsV1 written for a map that was added whole) is not tracked: sets hold leaf paths.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

/// A field path from the object root (`["status", "gate", "reason"]`).
pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

/// The timestamp the fake server writes into managedFields entries it touches.
pub const NOW: &str = "2026-11-30T08:00:00Z";

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    /// `""` for the main resource.
    pub subresource: String,
    pub time: String,
    pub fields: FieldSet,
}

impl Entry {
    /// Whether `self` is the entry of the manager identity (manager, operation,
    /// subresource, apiVersion for updaters).
    fn is(&self, manager: &str, operation: &str, subresource: &str, api_version: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == "Apply" || self.api_version == api_version)
    }

    pub fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager, "operation": self.operation,
            "apiVersion": self.api_version, "time": self.time,
            "fieldsType": "FieldsV1", "fieldsV1": fields_v1(&self.fields),
        });
        if !self.subresource.is_empty() {
            entry["subresource"] = json!(self.subresource);
        }
        entry
    }

    pub fn from_json(entry: &Value) -> Entry {
        let text = |key: &str| entry[key].as_str().unwrap_or_default().to_string();
        Entry {
            manager: text("manager"),
            operation: text("operation"),
            api_version: text("apiVersion"),
            subresource: text("subresource"),
            time: text("time"),
            fields: from_fields_v1(&entry["fieldsV1"]),
        }
    }
}

/// The entries of `object`'s `metadata.managedFields`.
pub fn decode(object: &Value) -> Vec<Entry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| entries.iter().map(Entry::from_json).collect())
        .unwrap_or_default()
}

/// Writes `entries` into `object` (no entries: no `managedFields` key).
pub fn encode(object: &mut Value, entries: &[Entry]) {
    let metadata = object
        .as_object_mut()
        .unwrap()
        .entry("metadata")
        .or_insert(json!({}));
    let metadata = metadata.as_object_mut().unwrap();
    if entries.is_empty() {
        metadata.remove("managedFields");
    } else {
        metadata.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(Entry::to_json).collect()),
        );
    }
}

/// `object` without `metadata.managedFields`.
pub fn without_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    object
}

/// The fieldsV1 trie of a set: `{"f:status": {"f:phase": {}}}`; a path that is both a
/// member and a parent of members gets a `.` key, as the API server writes it.
pub fn fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for name in path {
            node = node
                .entry(format!("f:{name}"))
                .or_insert(json!({}))
                .as_object_mut()
                .unwrap();
        }
        if !node.is_empty() {
            node.insert(".".into(), json!({}));
        }
    }
    // A member inserted before its children: mark it.
    fn mark(node: &mut Map<String, Value>, set: &FieldSet, path: &mut FieldPath) {
        for (key, child) in node.iter_mut() {
            let Some(name) = key.strip_prefix("f:") else {
                continue;
            };
            path.push(name.to_string());
            let child = child.as_object_mut().unwrap();
            if !child.is_empty() && set.contains(path) {
                child.insert(".".into(), json!({}));
            }
            mark(child, set, path);
            path.pop();
        }
    }
    mark(&mut root, set, &mut Vec::new());
    Value::Object(root)
}

/// The set a fieldsV1 trie holds (field keys only; `k:`/`v:` list keys never occur for
/// atomic lists).
pub fn from_fields_v1(trie: &Value) -> FieldSet {
    fn walk(node: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        let Some(map) = node.as_object() else { return };
        if (map.is_empty() || map.contains_key(".")) && !path.is_empty() {
            out.insert(path.clone());
        }
        for (key, child) in map {
            if let Some(name) = key.strip_prefix("f:") {
                path.push(name.to_string());
                walk(child, path, out);
                path.pop();
            }
        }
    }
    let mut out = FieldSet::new();
    walk(trie, &mut Vec::new(), &mut out);
    out
}

/// The part of an object a request may own: the status subresource owns `status` only,
/// the main resource everything else.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scope {
    Main,
    Status,
}

impl Scope {
    pub fn of(subresource: &str) -> Scope {
        if subresource == "status" {
            Scope::Status
        } else {
            Scope::Main
        }
    }

    fn holds(self, path: &FieldPath) -> bool {
        let status = path.first().map(String::as_str) == Some("status");
        match self {
            Scope::Main => !status,
            Scope::Status => status,
        }
    }
}

/// Never owned by anyone (`stripmeta.go`).
fn stripped(path: &FieldPath) -> bool {
    match path.as_slice() {
        [one] => one == "apiVersion" || one == "kind" || one == "metadata",
        [metadata, field, ..] if metadata == "metadata" => matches!(
            field.as_str(),
            "name"
                | "namespace"
                | "creationTimestamp"
                | "selfLink"
                | "uid"
                | "clusterName"
                | "generation"
                | "managedFields"
                | "resourceVersion"
        ),
        _ => false,
    }
}

/// The leaf paths of `value` within `scope`: scalars, nulls, lists (atomic) and empty maps
/// (SMD's `ToFieldSet` inserts a map field whose value is null or `{}` itself).
pub fn leaves(value: &Value, scope: Scope) -> FieldSet {
    fn walk(value: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    path.push(key.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = FieldSet::new();
    walk(value, &mut Vec::new(), &mut out);
    out.into_iter()
        .filter(|p| scope.holds(p) && !stripped(p))
        .collect()
}

pub fn get<'a>(value: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    path.iter().try_fold(value, |node, name| node.get(name))
}

/// Removes the field at `path`, then each parent map the removal left empty.
fn remove(value: &mut Value, path: &FieldPath) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = &mut *value;
    for name in parents {
        match node.get_mut(name) {
            Some(child) => node = child,
            None => return,
        }
    }
    if let Some(map) = node.as_object_mut() {
        if map.remove(last).is_some() && map.is_empty() && !parents.is_empty() {
            remove(value, &parents.to_vec());
        }
    }
}

/// The apply merge: maps merge key by key, anything else (scalars, null, atomic lists) is
/// replaced by the applied value.
pub fn merge(live: &mut Value, applied: &Value) {
    match (live.as_object_mut(), applied.as_object()) {
        (Some(live_map), Some(applied_map)) => {
            for (key, value) in applied_map {
                match live_map.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        live_map.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        _ => *live = applied.clone(),
    }
}

/// What a write changed, within a scope.
struct Comparison {
    /// Added or modified: the fields a write takes from other managers.
    changed: FieldSet,
    removed: FieldSet,
}

fn compare(old: &Value, new: &Value, scope: Scope) -> Comparison {
    let before = leaves(old, scope);
    let after = leaves(new, scope);
    let changed = after
        .iter()
        .filter(|p| !before.contains(*p) || get(old, p) != get(new, p))
        .cloned()
        .collect();
    let removed = before.difference(&after).cloned().collect();
    Comparison { changed, removed }
}

/// Whether `a` is `b`, or one lies under the other.
fn overlaps(a: &FieldPath, b: &FieldPath) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Where a manager's request lands.
#[derive(Debug, Clone)]
pub struct Writer {
    pub manager: String,
    /// `""` for the main resource.
    pub subresource: String,
    pub api_version: String,
}

/// Records an `Update` (create, PUT, merge patch) by `writer` that turned `old` into `new`
/// (both without managedFields). `creating`: the object did not exist before.
pub fn record_update(
    entries: &mut Vec<Entry>,
    old: &Value,
    new: &Value,
    writer: &Writer,
    creating: bool,
) {
    if entries.is_empty() && !creating {
        // skipNonAppliedManager.Update: an existing object without managedFields is not
        // tracked by updates (only an apply starts tracking it, as `before-first-apply`).
        return;
    }
    let scope = Scope::of(&writer.subresource);
    let comparison = compare(old, new, scope);
    let me = |e: &Entry| {
        e.is(
            &writer.manager,
            "Update",
            &writer.subresource,
            &writer.api_version,
        )
    };
    for entry in entries.iter_mut().filter(|e| !me(e)) {
        entry
            .fields
            .retain(|p| !comparison.changed.contains(p) && !comparison.removed.contains(p));
    }
    let previous = entries.iter().position(me);
    let mut fields = previous
        .map(|i| entries[i].fields.clone())
        .unwrap_or_default();
    fields.retain(|p| !comparison.removed.contains(p));
    fields.extend(comparison.changed.iter().cloned());
    let entry = Entry {
        manager: writer.manager.clone(),
        operation: "Update".into(),
        api_version: writer.api_version.clone(),
        subresource: writer.subresource.clone(),
        time: NOW.into(),
        fields,
    };
    match previous {
        Some(i) if entries[i].fields == entry.fields => {}
        Some(i) => entries[i] = entry,
        // managedFieldsUpdater: the newest entry goes first.
        None => entries.insert(0, entry),
    }
    entries.retain(|e| !e.fields.is_empty());
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub path: FieldPath,
}

/// The API server's message for apply conflicts (`internal.NewConflictError`).
pub fn conflict_message(conflicts: &[Conflict], api_version: &str) -> String {
    let lines: Vec<String> = conflicts
        .iter()
        .map(|c| {
            format!(
                "conflict with \"{}\" using {api_version}: .{}",
                c.manager,
                c.path.join(".")
            )
        })
        .collect();
    if lines.len() == 1 {
        format!("Apply failed with 1 conflict: {}", lines[0])
    } else {
        format!(
            "Apply failed with {} conflicts: {}",
            lines.len(),
            lines.join("\n")
        )
    }
}

/// Server-side apply of `config` (already cut to the writer's scope) onto `live` (with its
/// managedFields). Returns the new object with its managedFields, or the conflicts.
pub fn apply(
    live: &Value,
    config: &Value,
    writer: &Writer,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let scope = Scope::of(&writer.subresource);
    let mut entries = decode(live);
    let live = without_managed_fields(live);
    if entries.is_empty() {
        let before_first_apply = Writer {
            manager: "before-first-apply".into(),
            ..writer.clone()
        };
        record_update(&mut entries, &json!({}), &live, &before_first_apply, true);
    }
    let me = |e: &Entry| {
        e.is(
            &writer.manager,
            "Apply",
            &writer.subresource,
            &writer.api_version,
        )
    };
    let last = entries
        .iter()
        .find(|e| me(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let applied = leaves(config, scope);

    let mut merged = live.clone();
    merge(&mut merged, config);
    // prune: what this applier owned and no longer applies goes, unless someone else owns it.
    for path in last.difference(&applied) {
        let owned_elsewhere = entries
            .iter()
            .filter(|e| !me(e))
            .any(|e| e.fields.iter().any(|p| overlaps(p, path)));
        if !owned_elsewhere {
            remove(&mut merged, path);
        }
    }

    let comparison = compare(&live, &merged, scope);
    let mut conflicts = Vec::new();
    for entry in entries.iter().filter(|e| !me(e)) {
        for path in entry.fields.intersection(&comparison.changed) {
            conflicts.push(Conflict {
                manager: entry.manager.clone(),
                path: path.clone(),
            });
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(conflicts);
    }
    for entry in entries.iter_mut().filter(|e| !me(e)) {
        entry
            .fields
            .retain(|p| !comparison.changed.contains(p) && !comparison.removed.contains(p));
    }
    match entries.iter().position(me) {
        Some(i) if entries[i].fields == applied => {}
        Some(i) => {
            entries[i].fields = applied;
            entries[i].time = NOW.into();
        }
        None => entries.insert(
            0,
            Entry {
                manager: writer.manager.clone(),
                operation: "Apply".into(),
                api_version: writer.api_version.clone(),
                subresource: writer.subresource.clone(),
                time: NOW.into(),
                fields: applied,
            },
        ),
    }
    entries.retain(|e| !e.fields.is_empty());
    encode(&mut merged, &entries);
    Ok(merged)
}

/// The paths `manager`'s entry (operation, subresource) owns, dotted (`status.phase`).
pub fn owned(
    object: &Value,
    manager: &str,
    operation: &str,
    subresource: &str,
) -> BTreeSet<String> {
    decode(object)
        .into_iter()
        .filter(|e| {
            e.manager == manager && e.operation == operation && e.subresource == subresource
        })
        .flat_map(|e| e.fields.into_iter().map(|p| p.join(".")))
        .collect()
}
