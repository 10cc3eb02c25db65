//! Manual gates, the pure part: which gate a name means, which revision an approval is for,
//! and the exact `stickycanary approve` command a waiting gate's Event and `status` print.
//! Recording an approval is I/O: `k8s::approve` (the status subresource) and
//! `local::approve` (the status file).

use std::path::PathBuf;

use crate::crd::{
    revision_is_valid, ApprovalRecord, CanaryRolloutStatus, WebhookType, UNVERSIONED,
};

/// Where a rollout lives, as `stickycanary approve` is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// In the cluster, in this namespace (`None`: the kubeconfig's).
    Cluster { namespace: Option<String> },
    /// In local mode, in this status file.
    StatusFile(PathBuf),
}

/// How `stickycanary approve` finds one rollout: its name and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproveTarget {
    pub name: String,
    pub place: Place,
}

impl ApproveTarget {
    pub fn in_cluster(name: &str, namespace: &str) -> ApproveTarget {
        ApproveTarget {
            name: name.to_string(),
            place: Place::Cluster {
                namespace: Some(namespace.to_string()),
            },
        }
    }

    pub fn local(name: &str, status_file: impl Into<PathBuf>) -> ApproveTarget {
        ApproveTarget {
            name: name.to_string(),
            place: Place::StatusFile(status_file.into()),
        }
    }

    /// The exact command that approves `gate` for `revision`.
    pub fn command(&self, gate: &str, revision: &str) -> String {
        let place = match &self.place {
            Place::Cluster { namespace: None } => String::new(),
            Place::Cluster {
                namespace: Some(namespace),
            } => format!(" -n {namespace}"),
            Place::StatusFile(path) => format!(" --status-file {}", path.display()),
        };
        format!(
            "stickycanary approve {} --gate {gate} --revision {revision}{place}",
            self.name
        )
    }

    /// The command that opens the gate `status` waits at, if it is a manual one.
    pub fn hint(&self, status: &CanaryRolloutStatus) -> Option<String> {
        let wait = status.gate.as_ref().filter(|wait| wait.manual)?;
        Some(self.command(&wait.gate, &wait.revision))
    }
}

/// A gate name as the CLI takes it (`confirm-promotion`), checked to be a gate.
pub fn parse_gate(text: &str) -> Result<WebhookType, String> {
    match WebhookType::parse(text) {
        Some(kind) if kind.is_gate() => Ok(kind),
        _ => Err(format!(
            "--gate: {text:?} is not a gate (confirm-rollout, confirm-traffic-increase or confirm-promotion)"
        )),
    }
}

/// The revision to approve: `--revision`, else the one the rollout waits at, else its run's.
pub fn choose_revision(
    status: &CanaryRolloutStatus,
    explicit: Option<&str>,
) -> Result<String, String> {
    let revision = match explicit {
        Some(revision) => revision.to_string(),
        None => status
            .gate
            .as_ref()
            .map(|wait| wait.revision.clone())
            .unwrap_or_else(|| run_revision(status)),
    };
    if !revision_is_valid(&revision) {
        return Err(format!(
            "--revision: {revision:?} is not a revision (letters, digits and ._:+-, at most 128)"
        ));
    }
    Ok(revision)
}

/// The whole approval to record for `gate`: the revision [`choose_revision`] picks, and the
/// run and stage it is for. Waiting at `gate` for that revision: exactly what the wait names.
/// Otherwise the current run of that revision (its next raise, for a traffic increase), or
/// the first run (and first weight) of a revision not running yet.
pub fn choose_approval(
    status: &CanaryRolloutStatus,
    gate: WebhookType,
    explicit: Option<&str>,
) -> Result<ApprovalRecord, String> {
    let revision = choose_revision(status, explicit)?;
    let waiting = status
        .gate
        .as_ref()
        .filter(|wait| wait.manual && wait.gate == gate.as_str() && wait.revision == revision);
    if waiting.is_none() && explicit.is_none() && status.phase.is_terminal() {
        // Nothing can take the approval: the run is over, and a `retry` is another run.
        return Err(format!(
            "the rollout is {}: no run waits at {gate} (to approve a revision ahead of its run, name it with --revision)",
            status.phase
        ));
    }
    let traffic = gate == WebhookType::ConfirmTrafficIncrease;
    let (attempt, stage) = match waiting {
        Some(wait) => (wait.attempt.unwrap_or(1), wait.stage),
        None if run_revision(status) == revision => {
            let next = match status.stage_started_at {
                Some(_) => status.stage_index.saturating_add(1),
                None => 0,
            };
            (status.attempt.max(1), traffic.then_some(next))
        }
        None => (1, traffic.then_some(0)),
    };
    Ok(ApprovalRecord {
        revision,
        attempt: Some(attempt),
        stage,
    })
}

/// How an approval reads in the CLI's answer: `revision 7f3a9c` (`, run 2`, `, stage 3`).
pub fn describe(record: &ApprovalRecord) -> String {
    let mut text = format!("revision {}", record.revision);
    if let Some(attempt) = record.attempt.filter(|attempt| *attempt > 1) {
        text.push_str(&format!(", run {attempt}"));
    }
    if let Some(stage) = record.stage {
        text.push_str(&format!(", the raise into stage {}", u64::from(stage) + 1));
    }
    text
}

/// The revision a run's approvals must name.
pub fn run_revision(status: &CanaryRolloutStatus) -> String {
    status
        .canary_revision
        .clone()
        .unwrap_or_else(|| UNVERSIONED.to_string())
}
