//! The Deployment watch (contract 5, "Release lifecycle"): a change of a canary Deployment's
//! pod template wakes the CanaryRollouts that use it within seconds, instead of one
//! `analysis.interval` later, while the weight may sit at 100 with everyone on the canary.
//!
//! The Controller watches Deployments (`.watches`, kube-runtime's mapper from a secondary
//! object to the primaries it concerns; kube-runtime `controller/mod.rs`, `Controller::watches`)
//! and maps one to the rollouts whose `spec.canary.deployment` names it **and** whose
//! status has not recorded its revision yet. Everything else a Deployment does (the
//! Deployment controller's status updates while it rolls, our own scale and copy writes)
//! maps to nothing, so the watch adds ticks only for a new revision. A mapped rollout is
//! marked in [`Wakes`], which lets its next reconcile past the one-tick-per-interval
//! throttle. A missed watch event costs nothing but time: each periodic tick reads the
//! Deployments anyway.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use super::deployments::revision_of;
use crate::crd::CanaryRollout;

/// Rollouts a Deployment watch event woke, by `namespace/name`, until their next reconcile.
#[derive(Debug, Default)]
pub struct Wakes(Mutex<HashSet<String>>);

impl Wakes {
    pub fn mark(&self, key: String) {
        if let Ok(mut keys) = self.0.lock() {
            keys.insert(key);
        }
    }

    /// Whether `key` was woken since its last reconcile (and forgets it).
    pub fn take(&self, key: &str) -> bool {
        self.0.lock().is_ok_and(|mut keys| keys.remove(key))
    }
}

/// The rollouts `deployment` is the canary of, whose status has not seen its revision: a
/// new revision (or the first one) for them to start on.
pub fn rollouts_to_wake(
    rollouts: &[Arc<CanaryRollout>],
    deployment: &Deployment,
) -> Vec<ObjectRef<CanaryRollout>> {
    let name = deployment.name_any();
    let namespace = deployment.namespace();
    let mut revision = None;
    rollouts
        .iter()
        .filter(|rollout| rollout.spec.stable.is_some() && rollout.spec.canary.deployment == name)
        .filter(|rollout| {
            let canary_namespace = rollout
                .spec
                .canary
                .namespace
                .clone()
                .or_else(|| rollout.namespace());
            canary_namespace == namespace
        })
        .filter(|rollout| {
            let revision = revision.get_or_insert_with(|| revision_of(deployment));
            let recorded = rollout
                .status
                .as_ref()
                .and_then(|s| s.canary_revision.as_deref());
            recorded != Some(revision.as_str())
        })
        .map(|rollout| ObjectRef::from_obj(rollout.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout(name: &str, canary: &str, recorded: Option<&str>) -> Arc<CanaryRollout> {
        let mut object = json!({
            "apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"wasmPlugin": {"name": "p"}, "canary": {"deployment": canary},
                     "stable": {"deployment": "checkout-stable"},
                     "stages": [{"weight": 100}]}
        });
        if let Some(revision) = recorded {
            object["status"] = json!({"canaryRevision": revision});
        }
        Arc::new(serde_json::from_value(object).unwrap())
    }

    fn deployment(image: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "checkout-canary", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "checkout"}},
                     "template": {"metadata": {"labels": {"app": "checkout"}},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}
        }))
        .unwrap()
    }

    #[test]
    fn a_canary_on_a_revision_its_rollout_has_not_seen_wakes_only_that_rollout() {
        let v2 = deployment("app:v2");
        let seen = revision_of(&deployment("app:v1"));
        let rollouts = vec![
            rollout("checkout", "checkout-canary", Some(&seen)),
            rollout("other", "other-canary", Some(&seen)),
        ];
        let woken = rollouts_to_wake(&rollouts, &v2);
        assert_eq!(woken.len(), 1);
        assert_eq!(woken[0].name, "checkout");
    }

    #[test]
    fn a_canary_on_the_recorded_revision_wakes_nothing() {
        // The Deployment controller's status updates and our own scale writes.
        let v1 = deployment("app:v1");
        let rollouts = vec![rollout(
            "checkout",
            "checkout-canary",
            Some(&revision_of(&v1)),
        )];
        assert!(rollouts_to_wake(&rollouts, &v1).is_empty());
    }

    #[test]
    fn wakes_are_taken_once() {
        let wakes = Wakes::default();
        wakes.mark("shop/checkout".into());
        assert!(wakes.take("shop/checkout"));
        assert!(!wakes.take("shop/checkout"));
    }
}
