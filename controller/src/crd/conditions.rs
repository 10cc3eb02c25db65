//! `status.conditions`: their types, and the one rule for writing one (Argo Rollouts'
//! `SetRolloutCondition`): a condition replaces the one of its type, and its
//! `lastTransitionTime` moves only when its status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// True when the rollout reached where it was going (`Promoted`, `Succeeded`,
/// `WaitingForRelease`, `Initialized`).
pub const READY: &str = "Ready";
/// True when the rollout rolled back, failed to promote, has an invalid spec, flies blind on
/// metrics, or (set by the controller alone) could not carry out an action.
pub const DEGRADED: &str = "Degraded";

/// Puts `condition` in `conditions` in place of the one of its type (at the end); keeps the
/// old `lastTransitionTime` when the status did not change.
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition) {
    if let Some(old) = conditions.iter().find(|c| c.type_ == condition.type_) {
        if old.status == condition.status {
            condition.last_transition_time = old.last_transition_time.clone();
        }
    }
    conditions.retain(|c| c.type_ != condition.type_);
    conditions.push(condition);
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn degraded(status: &str, at: &str) -> Condition {
        Condition {
            type_: DEGRADED.to_string(),
            status: status.to_string(),
            reason: "Reason".to_string(),
            message: String::new(),
            last_transition_time: Time(at.parse().unwrap()),
            observed_generation: None,
        }
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_changes() {
        let mut conditions = vec![degraded("True", "2026-01-01T00:00:00Z")];
        set_condition(&mut conditions, degraded("True", "2026-01-02T00:00:00Z"));
        assert_eq!(conditions, vec![degraded("True", "2026-01-01T00:00:00Z")]);
        set_condition(&mut conditions, degraded("False", "2026-01-03T00:00:00Z"));
        assert_eq!(conditions, vec![degraded("False", "2026-01-03T00:00:00Z")]);
    }

    #[test]
    fn other_conditions_stay_and_the_new_one_goes_last() {
        let ready = Condition {
            type_: READY.to_string(),
            ..degraded("True", "2026-01-01T00:00:00Z")
        };
        let mut conditions = vec![degraded("False", "2026-01-01T00:00:00Z"), ready.clone()];
        set_condition(&mut conditions, degraded("True", "2026-01-02T00:00:00Z"));
        assert_eq!(
            conditions,
            vec![ready, degraded("True", "2026-01-02T00:00:00Z")]
        );
    }
}
