//! The generated stable's autoscaler: a copy of the workload's HorizontalPodAutoscaler or KEDA
//! ScaledObject, named `<name>-primary`, aimed at the generated stable (as Flagger generates
//! `<hpa>-primary`, flagger `pkg/canary/hpa_reconciler.go` and `scaled_object_reconciler.go`).
//!
//! Git owns the workload's autoscaler; the controller owns the copy: the same ownerReference
//! and rollout label as the generated stable, applied (forced, field manager `stickycanary`)
//! whenever its spec is not the workload's with `scaleTargetRef.name` set to the stable. A
//! ScaledObject's triggers are copied as they are, but for the queries
//! `spec.stable.scalerQueries` gives by trigger name (a trigger on the canary's traffic would
//! otherwise scale stable on the canary's load). KEDA's paused-replicas annotation, which the
//! controller sets on the workload's ScaledObject between runs, is not copied.

use std::collections::BTreeMap;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{json, Value};

use super::deployments::WorkloadError;
use super::primary::ROLLOUT_LABEL;
use crate::crd::CanaryRollout;
use crate::field_managers;

/// Which kind of autoscaler the workload has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    HorizontalPodAutoscaler,
    ScaledObject,
}

impl Kind {
    fn resource(self) -> ApiResource {
        let gvk = match self {
            Kind::HorizontalPodAutoscaler => {
                GroupVersionKind::gvk("autoscaling", "v2", "HorizontalPodAutoscaler")
            }
            Kind::ScaledObject => GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
        };
        ApiResource::from_gvk(&gvk)
    }
}

/// The workload's autoscaler the spec names, if any (a ScaledObject first: it owns an HPA of
/// its own, which is KEDA's, not the user's).
pub fn named(rollout: &CanaryRollout) -> Option<(Kind, String)> {
    let canary = &rollout.spec.canary;
    match (&canary.scaled_object, &canary.horizontal_pod_autoscaler) {
        (Some(name), _) => Some((Kind::ScaledObject, name.clone())),
        (None, Some(name)) => Some((Kind::HorizontalPodAutoscaler, name.clone())),
        (None, None) => None,
    }
}

/// The generated copy's name.
pub fn generated_name(source: &str) -> String {
    format!("{source}-primary")
}

/// The apply body of the stable's copy of `source` (the workload's autoscaler as read).
pub fn desired(
    kind: Kind,
    source: &Value,
    rollout: &CanaryRollout,
    stable_name: &str,
    scaler_queries: &BTreeMap<String, String>,
) -> Result<Value, String> {
    let name = source
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .ok_or("the workload's autoscaler has no name")?;
    let mut spec = source
        .get("spec")
        .cloned()
        .ok_or_else(|| format!("autoscaler {name} has no spec"))?;
    let target = spec
        .get_mut("scaleTargetRef")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| format!("autoscaler {name} has no spec.scaleTargetRef"))?;
    target.insert("name".to_string(), Value::from(stable_name));
    if kind == Kind::ScaledObject {
        replace_queries(&mut spec, scaler_queries);
    }
    let owner = rollout
        .controller_owner_ref(&())
        .ok_or("the CanaryRollout has no uid yet")?;
    let resource = kind.resource();
    Ok(json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {
            "name": generated_name(name),
            "namespace": source.pointer("/metadata/namespace"),
            "labels": {ROLLOUT_LABEL: rollout.name_any()},
            "ownerReferences": [owner],
        },
        "spec": spec,
    }))
}

/// Sets `metadata.query` of each trigger whose `name` is a key of `queries`.
fn replace_queries(spec: &mut Value, queries: &BTreeMap<String, String>) {
    let Some(triggers) = spec.get_mut("triggers").and_then(Value::as_array_mut) else {
        return;
    };
    for trigger in triggers {
        let Some(query) = trigger
            .get("name")
            .and_then(Value::as_str)
            .and_then(|name| queries.get(name))
            .cloned()
        else {
            continue;
        };
        if let Some(metadata) = trigger.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("query".to_string(), Value::from(query));
        }
    }
}

/// Whether the live copy already is `body` in what the controller sets.
pub fn converged(live: &DynamicObject, body: &Value, rollout: &CanaryRollout) -> bool {
    let owned = rollout.meta().uid.as_deref().is_some_and(|uid| {
        live.owner_references()
            .iter()
            .any(|o| o.uid == uid && o.controller == Some(true))
    });
    owned
        && live.labels().get(ROLLOUT_LABEL) == Some(&rollout.name_any())
        && live.data.get("spec") == body.get("spec")
}

/// The workload's autoscaler and its generated copy, in one namespace.
pub struct Autoscalers {
    client: Client,
    namespace: String,
}

impl Autoscalers {
    pub fn new(client: Client, namespace: &str) -> Self {
        Autoscalers {
            client,
            namespace: namespace.to_string(),
        }
    }

    fn api(&self, kind: Kind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &kind.resource())
    }

    fn error(&self, name: &str, source: kube::Error) -> WorkloadError {
        WorkloadError::Api {
            namespace: self.namespace.clone(),
            name: name.to_string(),
            source,
        }
    }

    /// Applies the stable's copy of the workload's autoscaler when it is missing or differs.
    /// Returns the copy's name when it wrote one; `None` when it was already right.
    pub async fn sync(
        &self,
        rollout: &CanaryRollout,
        kind: Kind,
        source_name: &str,
        stable_name: &str,
    ) -> Result<Option<String>, WorkloadError> {
        let api = self.api(kind);
        let source = api
            .get(source_name)
            .await
            .map_err(|e| self.error(source_name, e))?;
        let source = serde_json::to_value(&source).unwrap_or(Value::Null);
        let queries = rollout
            .spec
            .stable
            .as_ref()
            .map(|s| s.scaler_queries.clone())
            .unwrap_or_default();
        let body = desired(kind, &source, rollout, stable_name, &queries).map_err(|reason| {
            WorkloadError::Invalid {
                namespace: self.namespace.clone(),
                name: source_name.to_string(),
                reason,
            }
        })?;
        let name = generated_name(source_name);
        let live = api.get_opt(&name).await.map_err(|e| self.error(&name, e))?;
        if live.is_some_and(|live| converged(&live, &body, rollout)) {
            return Ok(None);
        }
        let params = PatchParams::apply(field_managers::CONTROLLER).force();
        api.patch(&name, &params, &Patch::Apply(&body))
            .await
            .map_err(|e| self.error(&name, e))?;
        Ok(Some(name))
    }
}

impl Autoscalers {
    /// Removes the copy's ownerReferences (it then outlives the rollout, with the stable it
    /// scales); a missing copy is fine.
    pub async fn orphan(&self, kind: Kind, source_name: &str) -> Result<(), WorkloadError> {
        let name = generated_name(source_name);
        let params = PatchParams {
            field_manager: Some(field_managers::CONTROLLER.to_string()),
            ..PatchParams::default()
        };
        let patch = json!({"metadata": {"ownerReferences": null}});
        match self
            .api(kind)
            .patch(&name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if crate::kube_error::is_not_found(&e) => Ok(()),
            Err(e) => Err(self.error(&name, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout() -> CanaryRollout {
        serde_json::from_value(json!({
            "apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
            "metadata": {"name": "checkout", "namespace": "shop", "uid": "u-1"},
            "spec": {"wasmPlugin": {"name": "p"}, "canary": {"deployment": "checkout", "scaledObject": "checkout"}, "stable": {}}
        }))
        .unwrap()
    }

    #[test]
    fn a_scaled_object_copy_targets_stable_with_the_named_queries_replaced_and_no_pause() {
        let source = json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "checkout", "namespace": "shop",
                         "annotations": {"autoscaling.keda.sh/paused-replicas": "0"}},
            "spec": {"scaleTargetRef": {"name": "checkout"}, "minReplicaCount": 1,
                     "triggers": [
                         {"type": "prometheus", "name": "rate", "metadata": {"query": "canary", "threshold": "50"}},
                         {"type": "cpu", "metadata": {"value": "60"}}
                     ]}
        });
        let queries = BTreeMap::from([("rate".to_string(), "stable".to_string())]);
        let body = desired(
            Kind::ScaledObject,
            &source,
            &rollout(),
            "checkout-primary",
            &queries,
        )
        .unwrap();
        assert_eq!(body["metadata"]["name"], "checkout-primary");
        assert_eq!(body["spec"]["scaleTargetRef"]["name"], "checkout-primary");
        assert_eq!(body["spec"]["triggers"][0]["metadata"]["query"], "stable");
        assert_eq!(body["spec"]["triggers"][0]["metadata"]["threshold"], "50");
        assert_eq!(body["spec"]["triggers"][1], source["spec"]["triggers"][1]);
        assert!(body["metadata"].get("annotations").is_none(), "{body}");
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(body["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(body["metadata"]["labels"][ROLLOUT_LABEL], "checkout");
    }

    #[test]
    fn an_hpa_copy_keeps_its_spec_but_the_target() {
        let source = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "checkout", "namespace": "shop"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout"},
                     "minReplicas": 2, "maxReplicas": 10,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]}
        });
        let body = desired(
            Kind::HorizontalPodAutoscaler,
            &source,
            &rollout(),
            "checkout-primary",
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(body["apiVersion"], "autoscaling/v2");
        assert_eq!(body["kind"], "HorizontalPodAutoscaler");
        assert_eq!(body["metadata"]["name"], "checkout-primary");
        let mut expected = source["spec"].clone();
        expected["scaleTargetRef"]["name"] = json!("checkout-primary");
        assert_eq!(body["spec"], expected);
    }

    #[test]
    fn an_autoscaler_without_a_target_is_refused_in_one_line() {
        let source = json!({"metadata": {"name": "checkout"}, "spec": {"minReplicas": 1}});
        let error = desired(
            Kind::HorizontalPodAutoscaler,
            &source,
            &rollout(),
            "s",
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(error, "autoscaler checkout has no spec.scaleTargetRef");
    }
}
