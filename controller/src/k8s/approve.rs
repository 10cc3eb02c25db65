//! `stickycanary approve` in the cluster: a merge patch of `status.approvals.<gate>` on the
//! status subresource, with the resourceVersion the revision was read at, so an approval
//! never lands on a rollout that moved to another revision meanwhile (a 409 re-reads and
//! re-checks). The controller writes the status by server-side apply without `approvals`
//! (`k8s::status`), so it never owns them and never writes back an older read over them.

use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};

use crate::crd::{ApprovalRecord, Approvals, CanaryRollout, WebhookType};
use crate::engine::approve::{choose_approval, describe};
use crate::error::Error;
use crate::field_managers::CLI;

/// The status merge patch that records the approval (the resourceVersion makes it
/// conditional on nothing having changed since the revision was read). Every key of the
/// record is sent, an absent one as `null`: a merge patch merges into the stored record,
/// so a key left out would keep an older approval's value.
pub fn approval_patch(
    gate: WebhookType,
    record: &ApprovalRecord,
    resource_version: Option<&str>,
) -> Value {
    let field = Approvals::field(gate).unwrap_or("unknown");
    let body = json!({
        "revision": record.revision,
        "attempt": record.attempt,
        "stage": record.stage,
    });
    let mut patch = json!({"status": {"approvals": {field: body}}});
    if let Some(version) = resource_version {
        patch["metadata"] = json!({"resourceVersion": version});
    }
    patch
}

/// Approves `gate` of the CanaryRollout `name` in the cluster.
pub async fn approve_in_cluster(
    api: &Api<CanaryRollout>,
    name: &str,
    gate: WebhookType,
    explicit: Option<&str>,
) -> Result<String, Error> {
    let params = PatchParams {
        field_manager: Some(CLI.to_string()),
        ..PatchParams::default()
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let rollout = api.get(name).await?;
        let status = rollout.status.clone().unwrap_or_default();
        let record = choose_approval(&status, gate, explicit).map_err(Error::Invalid)?;
        let patch = approval_patch(gate, &record, rollout.metadata.resource_version.as_deref());
        match api.patch_status(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {
                return Ok(format!(
                    "approved {gate} of {name} for {}",
                    describe(&record)
                ))
            }
            Err(kube::Error::Api(status)) if status.code == 409 && attempts < 3 => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
