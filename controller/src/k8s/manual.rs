//! Manual actions in the cluster.
//!
//! `promote` and `abort` are one-shot: an annotation `stickycanary.dev/request: promote|abort`
//! (the CLI adds `@<millis>` so that asking twice is two requests). The controller handles a
//! value once and records it in `stickycanary.dev/request-handled`, so requeues and restarts
//! never repeat it. `pause` is declarative: `spec.paused`, which the engine reads itself
//! (`pause`/`resume` annotations are accepted too and map to the engine's manual pause).

use std::collections::BTreeMap;

use crate::crd::CanaryRollout;
use crate::observation::ManualAction;

pub const REQUEST_ANNOTATION: &str = "stickycanary.dev/request";
pub const HANDLED_ANNOTATION: &str = "stickycanary.dev/request-handled";

/// The annotation value the CLI writes: the action plus a nonce.
pub fn request_value(action: ManualAction) -> String {
    let verb = action.as_str();
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{verb}@{millis}")
}

/// The action named by an annotation value (`promote`, `abort@123`, ...).
pub fn parse_request(value: &str) -> Option<ManualAction> {
    ManualAction::parse(value.split('@').next().unwrap_or_default().trim())
}

/// What the reconciler should do about manual input this time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualInput {
    pub action: Option<ManualAction>,
    /// The request value to record as handled, when one was consumed (or rejected).
    pub consumed: Option<String>,
}

fn annotation<'a>(annotations: &'a Option<BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The unhandled request annotation, if any. `spec.paused` is not read here: the engine
/// applies it directly, so it holds exactly as long as the field is set.
pub fn manual_input(rollout: &CanaryRollout) -> ManualInput {
    let annotations = &rollout.metadata.annotations;
    match annotation(annotations, REQUEST_ANNOTATION) {
        Some(value) if annotation(annotations, HANDLED_ANNOTATION) != Some(value) => ManualInput {
            action: parse_request(value),
            consumed: Some(value.to_string()),
        },
        _ => ManualInput {
            action: None,
            consumed: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CanaryRolloutStatus, Phase};

    fn rollout(annotations: &[(&str, &str)], paused: bool, phase: Phase) -> CanaryRollout {
        let yaml = format!(
            "apiVersion: stickycanary.dev/v1alpha1\nkind: CanaryRollout\nmetadata: {{name: checkout}}\n\
             spec: {{wasmPlugin: {{name: sc}}, canary: {{deployment: checkout-canary}}, paused: {paused}}}\n"
        );
        let mut r: CanaryRollout = serde_yaml::from_str(&yaml).unwrap();
        r.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        r.status = Some(CanaryRolloutStatus {
            phase,
            ..Default::default()
        });
        r
    }

    #[test]
    fn a_new_request_is_consumed_and_a_handled_one_is_not_repeated() {
        let fresh = rollout(
            &[(REQUEST_ANNOTATION, "abort@1")],
            false,
            Phase::Progressing,
        );
        assert_eq!(
            manual_input(&fresh),
            ManualInput {
                action: Some(ManualAction::Abort),
                consumed: Some("abort@1".into())
            }
        );
        let handled = rollout(
            &[
                (REQUEST_ANNOTATION, "abort@1"),
                (HANDLED_ANNOTATION, "abort@1"),
            ],
            false,
            Phase::Progressing,
        );
        assert_eq!(manual_input(&handled).action, None);
        let again = rollout(
            &[
                (REQUEST_ANNOTATION, "promote@2"),
                (HANDLED_ANNOTATION, "abort@1"),
            ],
            false,
            Phase::Progressing,
        );
        assert_eq!(manual_input(&again).action, Some(ManualAction::Promote));
    }

    #[test]
    fn every_action_round_trips_through_its_request_value() {
        for action in ManualAction::ALL {
            assert_eq!(parse_request(&request_value(action)), Some(action));
            assert_eq!(
                crate::local::state::request_action(action).action,
                action.as_str()
            );
        }
    }

    #[test]
    fn an_unknown_request_is_consumed_without_an_action() {
        let r = rollout(
            &[(REQUEST_ANNOTATION, "explode")],
            false,
            Phase::Progressing,
        );
        assert_eq!(
            manual_input(&r),
            ManualInput {
                action: None,
                consumed: Some("explode".into())
            }
        );
    }

    #[test]
    fn spec_paused_is_left_to_the_engine() {
        assert_eq!(
            manual_input(&rollout(&[], true, Phase::Progressing)).action,
            None
        );
        assert_eq!(
            manual_input(&rollout(
                &[(REQUEST_ANNOTATION, "resume@5")],
                true,
                Phase::Paused
            ))
            .action,
            Some(ManualAction::Resume)
        );
    }
}
