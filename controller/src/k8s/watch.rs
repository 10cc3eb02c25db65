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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use super::config_refs::{Kind, Refs};
use super::deployments::revision_of;
use crate::crd::CanaryRollout;

/// Rollouts a Deployment watch event woke, by `namespace/name`, until their next reconcile;
/// and the workload template revision each rollout's last tick saw.
#[derive(Debug, Default)]
pub struct Wakes {
    woken: Mutex<HashSet<String>>,
    seen: Mutex<HashMap<String, String>>,
    /// The ConfigMaps and Secrets each rollout's workload referenced at its last tick.
    refs: Mutex<HashMap<String, Refs>>,
}

impl Wakes {
    pub fn mark(&self, key: String) {
        if let Ok(mut keys) = self.woken.lock() {
            keys.insert(key);
        }
    }

    /// Whether `key` was woken since its last reconcile (and forgets it).
    pub fn take(&self, key: &str) -> bool {
        self.woken.lock().is_ok_and(|mut keys| keys.remove(key))
    }

    /// Records the workload's template revision a tick of rollout `key` saw. (A revision
    /// that covers referenced ConfigMaps and Secrets is not the template's, so the status
    /// cannot tell the watch whether the template is new.)
    pub fn saw(&self, key: String, template_revision: String) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(key, template_revision);
        }
    }

    /// The template revision rollout `key`'s last tick saw, if one did since the start.
    pub fn seen(&self, key: &str) -> Option<String> {
        self.seen
            .lock()
            .ok()
            .and_then(|seen| seen.get(key).cloned())
    }

    /// Records the ConfigMaps and Secrets the workload of rollout `key` references.
    pub fn saw_refs(&self, key: String, refs: Refs) {
        if let Ok(mut all) = self.refs.lock() {
            all.insert(key, refs);
        }
    }

    /// Whether the workload of rollout `key` referenced `kind` `name` at its last tick.
    pub fn references(&self, key: &str, kind: Kind, name: &str) -> bool {
        self.refs.lock().is_ok_and(|all| {
            all.get(key)
                .is_some_and(|refs| refs.contains(&(kind, name.to_string())))
        })
    }

    /// Forgets a deleted rollout.
    pub fn forget(&self, key: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(key);
        }
        if let Ok(mut refs) = self.refs.lock() {
            refs.remove(key);
        }
        self.take(key);
    }
}

/// The rollouts `deployment` is the canary of, which have not seen its template yet (the
/// template revision `seen` says their last tick saw, else the status's revision): a new
/// revision (or the first one) for them to start on.
pub fn rollouts_to_wake(
    rollouts: &[Arc<CanaryRollout>],
    deployment: &Deployment,
    seen: impl Fn(&str) -> Option<String>,
) -> Vec<ObjectRef<CanaryRollout>> {
    let name = deployment.name_any();
    let namespace = deployment.namespace();
    let mut revision = None;
    rollouts
        .iter()
        .filter(|rollout| rollout.spec.stable.is_some() && rollout.spec.canary.deployment == name)
        .filter(|rollout| in_workload_namespace(rollout, namespace.as_deref()))
        .filter(|rollout| {
            let revision = revision.get_or_insert_with(|| revision_of(deployment));
            let key = format!(
                "{}/{}",
                rollout.namespace().unwrap_or_default(),
                rollout.name_any()
            );
            let recorded = seen(&key).or_else(|| {
                rollout
                    .status
                    .as_ref()
                    .and_then(|s| s.canary_revision.clone())
            });
            recorded.as_deref() != Some(revision.as_str())
        })
        .map(|rollout| ObjectRef::from_obj(rollout.as_ref()))
        .collect()
}

/// The rollouts (in `namespace`) whose workload referenced the ConfigMap or Secret `name`
/// at their last tick: a change of its data may be a release. Our own copies are named
/// after the stable, never referenced by a workload, and wake nothing.
pub fn rollouts_referencing(
    rollouts: &[Arc<CanaryRollout>],
    namespace: Option<&str>,
    references: impl Fn(&str) -> bool,
) -> Vec<ObjectRef<CanaryRollout>> {
    rollouts
        .iter()
        .filter(|rollout| rollout.spec.stable.is_some())
        .filter(|rollout| in_workload_namespace(rollout, namespace))
        .filter(|rollout| {
            let key = format!(
                "{}/{}",
                rollout.namespace().unwrap_or_default(),
                rollout.name_any()
            );
            references(&key)
        })
        .map(|rollout| ObjectRef::from_obj(rollout.as_ref()))
        .collect()
}

/// Whether the rollout's workload lives in `namespace`.
fn in_workload_namespace(rollout: &CanaryRollout, namespace: Option<&str>) -> bool {
    let own = rollout.namespace().unwrap_or_default();
    namespace == Some(rollout.spec.workload_namespace(&own))
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
                     "stable": {},
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
        let woken = rollouts_to_wake(&rollouts, &v2, |_| None);
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
        assert!(rollouts_to_wake(&rollouts, &v1, |_| None).is_empty());
    }

    #[test]
    fn with_referenced_config_the_template_seen_by_the_last_tick_decides() {
        // The status holds a release revision (template and ConfigMap data), never equal
        // to the template's own: the template the last tick saw says whether it is new.
        let v1 = deployment("app:v1");
        let rollouts = vec![rollout(
            "checkout",
            "checkout-canary",
            Some("release-of-v1"),
        )];
        let saw_v1 = |key: &str| (key == "shop/checkout").then(|| revision_of(&v1));
        assert!(rollouts_to_wake(&rollouts, &v1, saw_v1).is_empty());
        assert_eq!(
            rollouts_to_wake(&rollouts, &deployment("app:v2"), saw_v1).len(),
            1
        );
        let wakes = Wakes::default();
        wakes.saw("shop/checkout".into(), "t1".into());
        assert_eq!(wakes.seen("shop/checkout").as_deref(), Some("t1"));
        wakes.forget("shop/checkout");
        assert_eq!(wakes.seen("shop/checkout"), None);
    }

    #[test]
    fn a_config_map_wakes_only_the_rollouts_whose_workload_references_it() {
        let rollouts = vec![
            rollout("checkout", "checkout-canary", Some("r")),
            rollout("other", "other-canary", Some("r")),
        ];
        let wakes = Wakes::default();
        wakes.saw_refs(
            "shop/checkout".into(),
            Refs::from([(Kind::ConfigMap, "checkout-config".to_string())]),
        );
        let woken = rollouts_referencing(&rollouts, Some("shop"), |key| {
            wakes.references(key, Kind::ConfigMap, "checkout-config")
        });
        assert_eq!(woken.len(), 1);
        assert_eq!(woken[0].name, "checkout");
        // A Secret of that name, or the same ConfigMap name in another namespace: nothing.
        assert!(rollouts_referencing(&rollouts, Some("shop"), |key| {
            wakes.references(key, Kind::Secret, "checkout-config")
        })
        .is_empty());
        assert!(rollouts_referencing(&rollouts, Some("other"), |key| {
            wakes.references(key, Kind::ConfigMap, "checkout-config")
        })
        .is_empty());
    }

    #[test]
    fn wakes_are_taken_once() {
        let wakes = Wakes::default();
        wakes.mark("shop/checkout".into());
        assert!(wakes.take("shop/checkout"));
        assert!(!wakes.take("shop/checkout"));
    }
}
