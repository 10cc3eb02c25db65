//! `stickycanary approve NAME [--gate G]`: an approval of one gate for one revision,
//! recorded where the rollout's state lives, so it survives restarts.
//!
//! - In the cluster: a merge patch of `status.approvals.<gate>` on the status subresource,
//!   with the resourceVersion the revision was read at, so an approval never lands on a
//!   rollout that moved to another revision meanwhile (a 409 re-reads and re-checks). The
//!   controller writes the status by server-side apply without `approvals`
//!   (`k8s::status`), so it never owns them and never writes back an older read over them.
//! - In local mode: in the status file; with a loop running, through `<status>.approve`,
//!   which the loop takes at its next interval (it owns the status file while it runs).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::crd::{revision_is_valid, Approvals, WebhookType};
use crate::crd::{CanaryRollout, CanaryRolloutStatus};
use crate::engine::gates::run_revision;
use crate::error::Error;
use crate::local::state;

/// The field manager of the CLI's writes.
pub const FIELD_MANAGER: &str = "stickycanary-cli";

/// A gate name as the CLI takes it (`confirm-promotion`), checked to be a gate.
pub fn parse_gate(text: &str) -> Result<WebhookType, Error> {
    match WebhookType::parse(text) {
        Some(kind) if kind.is_gate() => Ok(kind),
        _ => Err(Error::Invalid(format!(
            "--gate: {text:?} is not a gate (confirm-rollout, confirm-traffic-increase or confirm-promotion)"
        ))),
    }
}

/// The revision to approve: `--revision`, else the one the rollout waits at, else its run's.
pub fn choose_revision(
    status: &CanaryRolloutStatus,
    explicit: Option<&str>,
) -> Result<String, Error> {
    let revision = match explicit {
        Some(revision) => revision.to_string(),
        None => status
            .gate
            .as_ref()
            .map(|wait| wait.revision.clone())
            .unwrap_or_else(|| run_revision(status)),
    };
    if !revision_is_valid(&revision) {
        return Err(Error::Invalid(format!(
            "--revision: {revision:?} is not a revision (letters, digits and ._:+-, at most 128)"
        )));
    }
    Ok(revision)
}

/// The status merge patch that records the approval (the resourceVersion makes it
/// conditional on nothing having changed since the revision was read).
pub fn approval_patch(gate: WebhookType, revision: &str, resource_version: Option<&str>) -> Value {
    let field = Approvals::field(gate).unwrap_or("unknown");
    let mut patch = json!({"status": {"approvals": {field: {"revision": revision}}}});
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
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let rollout = api.get(name).await?;
        let status = rollout.status.clone().unwrap_or_default();
        let revision = choose_revision(&status, explicit)?;
        let patch = approval_patch(
            gate,
            &revision,
            rollout.metadata.resource_version.as_deref(),
        );
        match api.patch_status(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(format!("approved {gate} of {name} for revision {revision}")),
            Err(kube::Error::Api(status)) if status.code == 409 && attempts < 3 => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A queued approval for a running local loop.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalRequest {
    pub rollout: String,
    pub gate: WebhookType,
    pub revision: String,
}

pub fn request_path(status_path: &Path) -> PathBuf {
    let mut name = status_path.as_os_str().to_owned();
    name.push(".approve");
    PathBuf::from(name)
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::StatusFile {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Approves in local mode: queued for a running loop, else written to the status file.
pub fn approve_local(
    status_path: &Path,
    name: &str,
    gate: WebhookType,
    explicit: Option<&str>,
) -> Result<String, Error> {
    let mut local = state::load(status_path)?.ok_or_else(|| {
        file_error(
            status_path,
            "does not exist (has `stickycanary local` run?)",
        )
    })?;
    if local.rollout != name {
        return Err(file_error(
            status_path,
            format!("holds rollout {:?}, not {name:?}", local.rollout),
        ));
    }
    let revision = choose_revision(&local.status, explicit)?;
    if let Some(pid) = state::running_pid(status_path) {
        let request = ApprovalRequest {
            rollout: name.to_string(),
            gate,
            revision: revision.clone(),
        };
        let path = request_path(status_path);
        let bytes = serde_json::to_vec(&request).map_err(|e| file_error(&path, e))?;
        state::write_atomically(&path, &bytes).map_err(|e| file_error(&path, e))?;
        return Ok(format!(
            "approval of {gate} for revision {revision} queued for {name} (the local loop, pid {pid}, records it at its next interval)"
        ));
    }
    local.status.approvals.approve(gate, &revision);
    state::save(status_path, &local)?;
    Ok(format!(
        "approved {gate} of {name} for revision {revision} (in {})",
        status_path.display()
    ))
}

/// Takes a queued approval (the loop's side) and records it in `status`. Returns what was
/// approved; a request for another rollout or one that does not parse is dropped with an
/// error, so it does not repeat.
pub fn take_local(
    status_path: &Path,
    name: &str,
    status: &mut CanaryRolloutStatus,
) -> Result<Option<(WebhookType, String)>, Error> {
    let path = request_path(status_path);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(&path, e)),
    };
    let _ = fs::remove_file(&path);
    let request: ApprovalRequest = serde_json::from_slice(&bytes)
        .map_err(|e| file_error(&path, format!("ignored a corrupt approval: {e}")))?;
    if request.rollout != name || !request.gate.is_gate() || !revision_is_valid(&request.revision) {
        return Err(file_error(
            &path,
            format!(
                "ignored an approval for {:?} {}",
                request.rollout, request.gate
            ),
        ));
    }
    status.approvals.approve(request.gate, &request.revision);
    Ok(Some((request.gate, request.revision)))
}

/// How `stickycanary approve` finds one rollout: its name, and where it lives
/// (` -n shop` in the cluster, ` --status-file PATH` in local mode).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApproveTarget {
    pub name: String,
    pub place: String,
}

impl ApproveTarget {
    pub fn in_cluster(name: &str, namespace: &str) -> ApproveTarget {
        ApproveTarget {
            name: name.to_string(),
            place: format!(" -n {namespace}"),
        }
    }

    pub fn local(name: &str, status_file: &Path) -> ApproveTarget {
        ApproveTarget {
            name: name.to_string(),
            place: format!(" --status-file {}", status_file.display()),
        }
    }

    /// The exact command that approves `gate` for `revision`.
    pub fn command(&self, gate: &str, revision: &str) -> String {
        format!(
            "stickycanary approve {} --gate {gate} --revision {revision}{}",
            self.name, self.place
        )
    }
}

/// The exact command that opens the gate a status waits at, if it is a manual one.
pub fn command_hint(name: &str, status: &CanaryRolloutStatus, place: &str) -> Option<String> {
    let wait = status.gate.as_ref().filter(|wait| wait.manual)?;
    let target = ApproveTarget {
        name: name.to_string(),
        place: place.to_string(),
    };
    Some(target.command(&wait.gate, &wait.revision))
}
