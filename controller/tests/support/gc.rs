//! Deleting objects from the fake API server's store, and the garbage collection that
//! follows, as kube-controller-manager's garbage collector runs it
//! (`pkg/controller/garbagecollector/garbagecollector.go`, `attemptToDeleteItem`):
//!
//! - An object is removed from the store only once it has no finalizers; a DELETE of an
//!   object with finalizers sets `metadata.deletionTimestamp` instead, and the write that
//!   takes its last finalizer away removes it.
//! - When an object is removed, every object whose `metadata.ownerReferences` names its
//!   uid is deleted too, with background propagation (the default of a DELETE without a
//!   `propagationPolicy`, as kube-rs sends with `DeleteParams::default()`): those with
//!   finalizers of their own get a deletionTimestamp, the rest go at once, and their own
//!   dependents after them. The real collector does this asynchronously, within seconds;
//!   the fake does it before it answers the request that removed the owner.
//! - A dependent with another owner that still exists is not deleted: the collector drops
//!   only the dangling reference (`attemptToDeleteItem`: "remove dangling references" when
//!   some owners are solid).
//! - An object whose ownerReference was removed before its owner went is not touched
//!   (orphaned): the collector only looks at the references an object holds now.
//!
//! Foreground deletion (`propagationPolicy: Foreground`, the `foregroundDeletion`
//! finalizer) and `Orphan` are not served: the fake panics on a DELETE that asks for them.

use serde_json::{json, Value};

use super::api::Store;

/// The time the fake API server writes into `metadata.deletionTimestamp`.
pub const DELETION_TIME: &str = "2026-11-26T06:00:00Z";

/// The uid of `object`, if it has one.
pub fn uid(object: &Value) -> Option<&str> {
    object.pointer("/metadata/uid").and_then(Value::as_str)
}

/// The uids `object`'s ownerReferences name.
pub fn owner_uids(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|reference| reference["uid"].as_str().map(str::to_string))
        .collect()
}

pub fn has_finalizers(object: &Value) -> bool {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|finalizers| !finalizers.is_empty())
}

/// Whether a write leaves `object` to be removed: it is being deleted and its last
/// finalizer is gone.
pub fn finished_deleting(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some() && !has_finalizers(object)
}

/// The propagation policy a DELETE asks for (in its DeleteOptions body or query);
/// panics on the ones the fake does not serve.
pub fn check_propagation_policy(body: &Value, query_policy: Option<String>) {
    let policy = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(query_policy);
    if let Some(policy) = policy.filter(|p| p != "Background") {
        panic!("the fake API server serves only Background propagation, not {policy}");
    }
}

impl Store {
    /// A DELETE of the object at `path`: marks it with a deletionTimestamp while it has
    /// finalizers, else removes it (and collects its dependents). `None` when missing.
    pub fn delete_object(&mut self, path: &str) -> Option<Value> {
        let stored = self.objects.get(path)?.clone();
        if !has_finalizers(&stored) {
            return Some(self.remove_object(path));
        }
        if stored.pointer("/metadata/deletionTimestamp").is_some() {
            return Some(stored);
        }
        let mut marked = stored;
        marked["metadata"]["deletionTimestamp"] = json!(DELETION_TIME);
        marked["metadata"]["resourceVersion"] = json!(self.next_rv());
        self.objects.insert(path.to_string(), marked.clone());
        Some(marked)
    }

    /// Stores a written object, or removes it when the write took the last finalizer of
    /// an object being deleted.
    pub fn store_written(&mut self, path: &str, object: Value) {
        self.objects.insert(path.to_string(), object.clone());
        if finished_deleting(&object) {
            self.remove_object(path);
        }
    }

    /// Removes the object at `path` for good, then garbage-collects its dependents.
    pub fn remove_object(&mut self, path: &str) -> Value {
        let gone = self
            .objects
            .remove(path)
            .unwrap_or_else(|| panic!("no object at {path} to remove"));
        if let Some(owner) = uid(&gone) {
            self.collect_dependents_of(owner);
        }
        gone
    }

    /// Deletes every object whose ownerReferences name `owner` and no other owner that
    /// still exists; drops the dangling reference from the others.
    fn collect_dependents_of(&mut self, owner: &str) {
        let dependents: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, object)| owner_uids(object).iter().any(|u| u == owner))
            .map(|(path, _)| path.clone())
            .collect();
        for path in dependents {
            if self.has_another_living_owner(&path, owner) {
                self.drop_owner_reference(&path, owner);
            } else {
                self.delete_object(&path);
            }
        }
    }

    fn has_another_living_owner(&self, path: &str, gone_owner: &str) -> bool {
        owner_uids(&self.objects[path])
            .iter()
            .filter(|u| *u != gone_owner)
            .any(|u| self.objects.values().any(|o| uid(o) == Some(u.as_str())))
    }

    fn drop_owner_reference(&mut self, path: &str, gone_owner: &str) {
        let rv = self.next_rv();
        let object = self.objects.get_mut(path).unwrap();
        let references = object["metadata"]["ownerReferences"]
            .as_array_mut()
            .unwrap();
        references.retain(|reference| reference["uid"].as_str() != Some(gone_owner));
        object["metadata"]["resourceVersion"] = json!(rv);
    }
}
