//! `stickycanary approve` in local mode: into the status file when no loop runs, queued
//! for a running loop otherwise; `status` prints the exact command for a manual gate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use stickycanary::commands::describe_status;
use stickycanary::crd::{ApprovalRecord, GateWait, WebhookType};
use stickycanary::crd::{CanaryRolloutStatus, Phase};
use stickycanary::engine::approve::{parse_gate, ApproveTarget};
use stickycanary::local::approve::{approve_local, request_path, take_local};
use stickycanary::local::state::{self, LocalState};

fn waiting_status() -> CanaryRolloutStatus {
    CanaryRolloutStatus {
        phase: Phase::Progressing,
        weight: 50.0,
        canary_revision: Some("v2".to_string()),
        gate: Some(GateWait {
            gate: "confirm-promotion".to_string(),
            reason: "manual approval".to_string(),
            since: Time("2026-11-30T06:00:00Z".parse().unwrap()),
            revision: "v2".to_string(),
            manual: true,
            next_window: None,
            attempt: None,
            stage: None,
        }),
        ..Default::default()
    }
}

fn save(path: &std::path::Path, status: CanaryRolloutStatus) {
    state::save(
        path,
        &LocalState {
            rollout: "checkout".to_string(),
            rollout_file: None,
            envoy_ecds: None,
            prometheus: None,
            status,
        },
    )
    .unwrap();
}

#[test]
fn without_a_loop_the_approval_goes_into_the_status_file_for_the_waiting_revision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkout.status.json");
    save(&path, waiting_status());
    let text = describe_status("checkout", &waiting_status());
    assert!(
        text.contains("waiting for confirm-promotion (manual approval)"),
        "{text}"
    );
    let place = format!(" --status-file {}", path.display());
    assert_eq!(
        ApproveTarget::local("checkout", &path)
            .hint(&waiting_status())
            .unwrap(),
        format!("stickycanary approve checkout --gate confirm-promotion --revision v2{place}")
    );
    let said = approve_local(&path, "checkout", WebhookType::ConfirmPromotion, None).unwrap();
    assert!(
        said.starts_with("approved confirm-promotion of checkout for revision v2"),
        "{said}"
    );
    let stored = state::load(&path).unwrap().unwrap();
    assert!(stored.status.approvals.approves(
        WebhookType::ConfirmPromotion,
        &ApprovalRecord::for_revision("v2")
    ));
    assert!(!stored.status.approvals.approves(
        WebhookType::ConfirmPromotion,
        &ApprovalRecord::for_revision("v3")
    ));
    // Another rollout's file, a gate that is not one, a revision the schema refuses: refused.
    assert!(approve_local(&path, "payments", WebhookType::ConfirmPromotion, None).is_err());
    assert!(parse_gate("rollback").is_err());
    assert!(approve_local(
        &path,
        "checkout",
        WebhookType::ConfirmPromotion,
        Some("v2 v3")
    )
    .is_err());
}

#[test]
fn with_a_loop_running_the_approval_is_queued_and_taken_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkout.status.json");
    save(&path, waiting_status());
    let _lock = state::LoopLock::acquire(&path).unwrap();
    let said = approve_local(&path, "checkout", WebhookType::ConfirmPromotion, None).unwrap();
    assert!(said.contains("queued"), "{said}");
    assert!(request_path(&path).exists());
    // The status file is the loop's: the CLI did not write it.
    let stored = state::load(&path).unwrap().unwrap();
    assert!(stored.status.approvals.is_empty());
    let mut status = waiting_status();
    assert_eq!(
        take_local(&path, "checkout", &mut status).unwrap(),
        Some((WebhookType::ConfirmPromotion, "v2".to_string()))
    );
    assert!(status.approvals.approves(
        WebhookType::ConfirmPromotion,
        &ApprovalRecord::for_revision("v2")
    ));
    assert_eq!(take_local(&path, "checkout", &mut status).unwrap(), None);
}

#[test]
fn an_approval_no_run_can_take_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkout.status.json");
    let rolled_back = CanaryRolloutStatus {
        phase: Phase::RolledBack,
        canary_revision: Some("v2".to_string()),
        attempt: 1,
        ..Default::default()
    };
    save(&path, rolled_back);
    let error = approve_local(&path, "checkout", WebhookType::ConfirmRollout, None)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("the rollout is RolledBack: no run waits at confirm-rollout"),
        "{error}"
    );
    assert!(state::load(&path)
        .unwrap()
        .unwrap()
        .status
        .approvals
        .is_empty());
    // A coming revision may be approved ahead of its run, for its first run.
    approve_local(&path, "checkout", WebhookType::ConfirmRollout, Some("v3")).unwrap();
    let stored = state::load(&path).unwrap().unwrap();
    assert_eq!(
        stored.status.approvals.confirm_rollout,
        Some(ApprovalRecord {
            revision: "v3".to_string(),
            attempt: Some(1),
            stage: None
        })
    );
}
