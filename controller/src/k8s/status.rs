//! Writing a CanaryRollout's status: server-side apply of the whole status the controller
//! owns, on the status subresource, under the `stickycanary` field manager, forced.
//!
//! Why apply and not a merge patch: an apply states the controller's full intent, and the
//! API server removes a field this manager applied before and omits now (a `gate` that
//! passed, a `rollbackReason` of an earlier run) unless another manager owns it
//! (structured-merge-diff `merge/update.go`, `Updater.Apply` and `prune`). Nothing needs to
//! diff the old status to send `null`s. `status.approvals` is written by
//! `stickycanary approve` under its own manager (`stickycanary-cli`, merge patch) and is
//! never part of the apply body, so the controller never owns it: an apply built from a read
//! taken before an approval cannot remove or overwrite it.
//!
//! The whole status is applied at every tick. One that changes nothing is a no-op for the
//! API server: no new resourceVersion, so no watch event (k8s.io/apiserver
//! `endpoints/handlers/fieldmanager/equality.go`, `IgnoreManagedFieldsTimestampsTransformer`
//! reverts the refreshed managedFields timestamp when nothing else changed).
//!
//! `force`: the controller is the status's only author; a field someone else edited (e.g.
//! `kubectl edit --subresource status`) is taken back rather than failing every reconcile
//! with a conflict. Approvals are unaffected: force only takes fields the body contains.
//!
//! Upgrade from the merge-patch writer: status fields written by earlier versions of this
//! controller are owned by the (stickycanary, Update, status) managedFields entry, not by the
//! Apply entry, so an apply that omits them would leave them behind (SSA removes only what
//! the applier itself owned). Before its first apply the controller moves that entry's
//! fields into its Apply entry and drops the Update entry, as client-go's `csaupgrade`
//! (`UpgradeManagedFields`) does for kubectl, except that `status.approvals` is left out of
//! the move. The managedFields are replaced by a merge patch of the main resource carrying
//! the resourceVersion that was read, so managedFields changed meanwhile are never
//! overwritten (csaupgrade's caveat 4): the main resource takes managedFields from the
//! request, a subresource ignores them (apimachinery `managedfields/internal/
//! fieldmanager.go`, `decodeLiveOrNew`).
//!
//! A `metadata.resourceVersion` in an apply body is a precondition like in any other write:
//! it is merged into the object, and the registry store refuses an update whose
//! resourceVersion differs from the stored one with 409 (k8s.io/apiserver
//! `registry/generic/registry/store.go`, `Update`; the CRD status strategy relies on it:
//! apiextensions-apiserver `registry/customresource/status_strategy.go`, "we have already
//! checked that new object and old object have the same resourceVersion").

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, FieldsV1, ManagedFieldsEntry};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};

use crate::crd::{CanaryRollout, CanaryRolloutStatus};
use crate::error::Error;
use crate::field_managers;

const STATUS: &str = "status";
/// The fieldsV1 key of `status.approvals` (written by `stickycanary approve`).
const APPROVALS_KEY: &str = "f:approvals";

/// The apply body: `apiVersion`, `kind` and `metadata.name` (an apply names the object
/// it is for) and the status without `approvals`.
pub fn apply_body(name: &str, status: &CanaryRolloutStatus) -> Result<Value, Error> {
    let mut status =
        serde_json::to_value(status).map_err(|e| Error::Invalid(format!("status: {e}")))?;
    if let Some(fields) = status.as_object_mut() {
        fields.remove("approvals");
    }
    Ok(status_body(name, status))
}

/// An apply body for the status subresource: `apiVersion`, `kind`, `metadata.name` (an
/// apply names the object it is for) and `status`.
fn status_body(name: &str, status: Value) -> Value {
    json!({
        "apiVersion": CanaryRollout::api_version(&()),
        "kind": CanaryRollout::kind(&()),
        "metadata": { "name": name },
        "status": status,
    })
}

fn ours(entry: &ManagedFieldsEntry, operation: &str) -> bool {
    entry.manager.as_deref() == Some(field_managers::CONTROLLER)
        && entry.operation.as_deref() == Some(operation)
        && entry.subresource.as_deref() == Some(STATUS)
}

/// The union of two fieldsV1 tries (a trie's keys are its members' path elements).
fn union(into: &mut Value, other: &Value) {
    match (into.as_object_mut(), other.as_object()) {
        (Some(into), Some(other)) => {
            for (key, child) in other {
                union(into.entry(key.clone()).or_insert(json!({})), child);
            }
        }
        (None, Some(_)) => *into = other.clone(),
        _ => {}
    }
}

/// The managedFields with this controller's merge-patch-era ownership of the status moved
/// into its Apply entry (`approvals` excepted), or `None` when there is nothing to move.
pub fn upgraded_managed_fields(entries: &[ManagedFieldsEntry]) -> Option<Vec<ManagedFieldsEntry>> {
    if !entries.iter().any(|e| ours(e, "Update")) {
        return None;
    }
    let mut fields = json!({});
    for entry in entries
        .iter()
        .filter(|e| ours(e, "Update") || ours(e, "Apply"))
    {
        if let Some(FieldsV1(set)) = &entry.fields_v1 {
            union(&mut fields, set);
        }
    }
    if let Some(status) = fields.get_mut("f:status").and_then(Value::as_object_mut) {
        status.remove(APPROVALS_KEY);
    }
    let owns_anything = fields
        .get("f:status")
        .and_then(Value::as_object)
        .is_some_and(|status| status.keys().any(|k| k != "."));
    // The Apply entry keeps its place; else the newest Update entry becomes it.
    let target = entries
        .iter()
        .position(|e| ours(e, "Apply"))
        .or_else(|| entries.iter().position(|e| ours(e, "Update")))?;
    let mut upgraded = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        if index == target {
            if owns_anything {
                upgraded.push(ManagedFieldsEntry {
                    operation: Some("Apply".into()),
                    fields_v1: Some(FieldsV1(fields.clone())),
                    ..entry.clone()
                });
            }
        } else if !ours(entry, "Update") {
            upgraded.push(entry.clone());
        }
    }
    Some(upgraded)
}

/// Applies `status` as the rollout's status. `rollout` is the object as read: its
/// managedFields decide whether the one-time ownership upgrade runs first.
///
/// The apply carries no resourceVersion. The status is computed from the read status, as
/// the merge patches before it were; the one other writer of the status, an approval, is
/// not a field of this apply, so it can neither conflict with it nor be lost; and a
/// precondition would refuse every status write in a reconcile whose own earlier write
/// (the finalizer, the upgrade) moved the resourceVersion on.
pub async fn write(
    api: &Api<CanaryRollout>,
    rollout: &CanaryRollout,
    status: &CanaryRolloutStatus,
) -> Result<(), Error> {
    let name = rollout.name_any();
    if let Some(managed_fields) = upgraded_managed_fields(rollout.managed_fields()) {
        let patch = json!({"metadata": {
            "resourceVersion": rollout.resource_version(),
            "managedFields": managed_fields,
        }});
        let params = PatchParams {
            field_manager: Some(field_managers::CONTROLLER.to_string()),
            ..PatchParams::default()
        };
        api.patch(&name, &params, &Patch::Merge(&patch)).await?;
    }
    let body = apply_body(&name, status)?;
    api.patch_status(
        &name,
        &PatchParams::apply(field_managers::CONTROLLER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Applies only `status.conditions`, under [`field_managers::DEGRADED`], forced. Used when a
/// reconcile fails before its status write: the rest of the status stays as the API server
/// has it. Applying the whole status as read instead would write back a stale read (the
/// watch cache may lag the controller's own last write), and a status weight older than
/// the WasmPlugin's would then be "restored" there.
pub async fn write_conditions(
    api: &Api<CanaryRollout>,
    name: &str,
    conditions: &[Condition],
) -> Result<(), Error> {
    let body = status_body(name, json!({ "conditions": conditions }));
    api.patch_status(
        name,
        &PatchParams::apply(field_managers::DEGRADED).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}
