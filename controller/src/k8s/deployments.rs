//! The Deployments of the release lifecycle: their revisions, their rollout state, the
//! workload's scale (plain, or through a KEDA ScaledObject) and the failed-run record.
//!
//! Git (or `kubectl set image`) owns the workload Deployment; the controller writes only its
//! `replicas`, and generates and owns the stable Deployment (see `super::primary`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Map, Value};

use crate::field_managers;
use crate::observation::WorkloadState;

/// Our annotations start with this; they never count toward a revision.
pub const ANNOTATION_PREFIX: &str = "stickycanary.dev/";
/// On the stable Deployment: the revision the controller last copied onto it.
pub const REVISION_ANNOTATION: &str = "stickycanary.dev/revision";
/// On the generated stable: the revision whose run last failed (a rollback or a failed
/// promotion), so a wiped status does not run it again on the same cohort. A merge patch
/// (an `Update` of the controller's), so the stable's apply, which does not send it, keeps
/// it.
pub const FAILED_REVISION_ANNOTATION: &str = "stickycanary.dev/failed-revision";
/// KEDA's pause annotation: the ScaledObject holds the target at this many replicas.
/// <https://keda.sh/docs/2.16/concepts/scaling-deployments/#pause-autoscaling>
pub const KEDA_PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";

impl WorkloadError {
    /// The object is not there (a 404 from the API server).
    pub fn is_not_found(&self) -> bool {
        match self {
            WorkloadError::Api { source, .. } | WorkloadError::Object { source, .. } => {
                crate::kube_error::is_not_found(source)
            }
            WorkloadError::Invalid { .. } => false,
        }
    }
}

/// Errors of the Deployment side, one line each.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("deployment {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{kind} {namespace}/{name}: {source}")]
    Object {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deployment {namespace}/{name}: {reason}")]
    Invalid {
        namespace: String,
        name: String,
        reason: String,
    },
}

/// The keys of `spec.selector.matchLabels`.
fn selector_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .selector
        .match_labels
        .clone()
        .unwrap_or_default()
}

/// A JSON value with every object's keys sorted (canonical form for hashing; serde_json's
/// map order depends on its `preserve_order` feature, which another crate may switch on).
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut sorted = Map::new();
            for key in keys {
                sorted.insert(key.clone(), canonical(&map[key]));
            }
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The pod template as the revision sees it: the Deployment's own selector labels and our
/// annotations left out (they name the Deployment, not the release), no `replicas` (which
/// is not in the template anyway).
fn release_template(deployment: &Deployment) -> Value {
    let template = serde_json::to_value(&deployment.spec.template).unwrap_or(Value::Null);
    let mut template = canonical(&template);
    let selector = selector_labels(deployment);
    if let Some(metadata) = template.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(labels) = metadata.get_mut("labels").and_then(Value::as_object_mut) {
            labels.retain(|key, _| !selector.contains_key(key));
            if labels.is_empty() {
                metadata.remove("labels");
            }
        }
        if let Some(annotations) = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            annotations.retain(|key, _| !key.starts_with(ANNOTATION_PREFIX));
            if annotations.is_empty() {
                metadata.remove("annotations");
            }
        }
        if metadata.is_empty() {
            if let Some(object) = template.as_object_mut() {
                object.remove("metadata");
            }
        }
    }
    template
}

/// The revision of a Deployment's pod template: xxh64 of its canonical JSON (16 hex
/// digits). A stable Deployment the controller copied a canary onto has the canary's
/// revision, because the labels that differ are the selector labels left out here.
pub fn revision_of(deployment: &Deployment) -> String {
    let text = release_template(deployment).to_string();
    format!("{:016x}", xxhash_rust::xxh64::xxh64(text.as_bytes(), 0))
}

/// Where a Deployment stands on `revision`, read as `kubectl rollout status` does
/// (k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go, DeploymentStatusViewer):
/// the status is only trusted once `observedGeneration` caught up with `generation`; a
/// `Progressing=False` condition with reason `ProgressDeadlineExceeded` is a failure; the
/// rollout is complete when updated = desired, no old replica is left (`replicas` =
/// updated) and available = updated.
pub fn workload_state(deployment: &Deployment, revision: &str) -> WorkloadState {
    if revision_of(deployment) != revision {
        return WorkloadState::Stopped;
    }
    rollout_state(deployment)
}

/// Where a Deployment's rollout of the template it has stands, as [`workload_state`] reads
/// it, whatever revision that template is.
pub fn rollout_state(deployment: &Deployment) -> WorkloadState {
    // An unset `replicas` defaults to 1 (apps/v1 defaulting, SetDefaults_Deployment).
    let desired = deployment.spec.replicas.unwrap_or(1);
    if desired == 0 {
        return WorkloadState::Stopped;
    }
    let Some(status) = &deployment.status else {
        return WorkloadState::Starting;
    };
    let generation = deployment.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return WorkloadState::Starting;
    }
    if let Some(failed) = status.conditions.iter().flatten().find(|c| {
        c.type_.as_deref() == Some("Progressing")
            && c.status.as_deref() == Some("False")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        return WorkloadState::Failed(format!(
            "ProgressDeadlineExceeded: {}",
            failed.message.as_deref().unwrap_or("no progress")
        ));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    if updated >= desired && total <= updated && available >= updated && ready >= updated {
        WorkloadState::Ready
    } else {
        WorkloadState::Starting
    }
}

/// The Deployment API of one namespace, with our field manager.
pub struct Deployments {
    api: Api<Deployment>,
    namespace: String,
    client: Client,
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(field_managers::CONTROLLER.to_string()),
        ..PatchParams::default()
    }
}

/// The KEDA ScaledObject resource (keda.sh/v1alpha1).
fn scaled_object_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "keda.sh",
        "v1alpha1",
        "ScaledObject",
    ))
}

impl Deployments {
    pub fn new(client: Client, namespace: &str) -> Self {
        Deployments {
            api: Api::namespaced(client.clone(), namespace),
            namespace: namespace.to_string(),
            client,
        }
    }

    fn api_error(&self, name: &str, source: kube::Error) -> WorkloadError {
        WorkloadError::Api {
            namespace: self.namespace.clone(),
            name: name.to_string(),
            source,
        }
    }

    pub async fn get(&self, name: &str) -> Result<Deployment, WorkloadError> {
        self.api
            .get(name)
            .await
            .map_err(|e| self.api_error(name, e))
    }

    /// Records `revision` as failed on the Deployment `name` (the generated stable): one
    /// annotation in a merge patch, which changes neither the pod template (so not the revision) nor the
    /// `generation`.
    pub async fn record_failed_revision(
        &self,
        name: &str,
        revision: &str,
    ) -> Result<(), WorkloadError> {
        let patch = json!({"metadata": {"annotations": {FAILED_REVISION_ANNOTATION: revision}}});
        self.api
            .patch(name, &params(), &Patch::Merge(&patch))
            .await
            .map_err(|e| self.api_error(name, e))?;
        Ok(())
    }

    /// Sets the canary's replicas through the `scale` subresource (what `kubectl scale`
    /// does; it leaves the rest of the Deployment, including the template Git owns, alone).
    pub async fn scale(&self, name: &str, replicas: i32) -> Result<(), WorkloadError> {
        let patch = json!({"spec": {"replicas": replicas}});
        self.api
            .patch_scale(name, &params(), &Patch::Merge(&patch))
            .await
            .map_err(|e| self.api_error(name, e))?;
        Ok(())
    }

    /// Pauses (`Some(0)`) or resumes (`None`) a KEDA ScaledObject: KEDA then scales the
    /// Deployment itself, so the controller never fights the autoscaler over `replicas`.
    pub async fn pause_scaled_object(
        &self,
        name: &str,
        paused_replicas: Option<i32>,
    ) -> Result<(), WorkloadError> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &scaled_object_resource(),
        );
        let value = paused_replicas.map_or(Value::Null, |n| Value::from(n.to_string()));
        let patch = json!({"metadata": {"annotations": {KEDA_PAUSED_REPLICAS: value}}});
        api.patch(name, &params(), &Patch::Merge(&patch))
            .await
            .map_err(|e| self.api_error(name, e))?;
        Ok(())
    }
}
