//! `stickycanary approve` in local mode: into the status file; with a loop running, through
//! `<status>.approve`, which the loop takes at its next interval (it owns the status file
//! while it runs).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state;
use crate::crd::{revision_is_valid, ApprovalRecord, CanaryRolloutStatus, WebhookType};
use crate::engine::approve::{choose_approval, describe};
use crate::error::Error;

/// A queued approval for a running local loop.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalRequest {
    pub rollout: String,
    pub gate: WebhookType,
    pub revision: String,
    /// The run of the revision (absent: the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// `confirm-traffic-increase`: the stage the raise enters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<u32>,
}

impl ApprovalRequest {
    fn record(&self) -> ApprovalRecord {
        ApprovalRecord {
            revision: self.revision.clone(),
            attempt: self.attempt,
            stage: self.stage,
        }
    }
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
    let record = choose_approval(&local.status, gate, explicit).map_err(Error::Invalid)?;
    let approved = describe(&record);
    if let Some(pid) = state::running_pid(status_path) {
        let request = ApprovalRequest {
            rollout: name.to_string(),
            gate,
            revision: record.revision.clone(),
            attempt: record.attempt,
            stage: record.stage,
        };
        let path = request_path(status_path);
        let bytes = serde_json::to_vec(&request).map_err(|e| file_error(&path, e))?;
        state::write_atomically(&path, &bytes).map_err(|e| file_error(&path, e))?;
        return Ok(format!(
            "approval of {gate} for {approved} queued for {name} (the local loop, pid {pid}, records it at its next interval)"
        ));
    }
    local.status.approvals.record(gate, record);
    state::save(status_path, &local)?;
    Ok(format!(
        "approved {gate} of {name} for {approved} (in {})",
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
    let Some(request) = state::take_queued::<ApprovalRequest>(&path, "approval")? else {
        return Ok(None);
    };
    if request.rollout != name || !request.gate.is_gate() || !revision_is_valid(&request.revision) {
        return Err(file_error(
            &path,
            format!(
                "ignored an approval for {:?} {}",
                request.rollout, request.gate
            ),
        ));
    }
    status.approvals.record(request.gate, request.record());
    Ok(Some((request.gate, request.revision)))
}
