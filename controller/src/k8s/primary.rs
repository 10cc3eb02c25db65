//! The generated stable Deployment (`<workload>-primary` by default): what it must look like,
//! as one server-side apply body.
//!
//! Git owns the workload Deployment (`spec.canary.deployment`); the controller owns this one,
//! as Flagger owns its `-primary` (flagger `pkg/canary/deployment_controller.go`,
//! `createPrimaryDeployment` and `Promote`). It is the workload with:
//! - the stable subset's labels (`spec.stable.podLabels`) over the workload's values on its
//!   selector and pod template, so the stable subset selects it and the canary subset does not;
//! - the pod template of the last promoted revision, kept in an annotation on the object
//!   itself (`stickycanary.dev/template`) together with its revision, so every tick can apply
//!   the whole object again (drift is repaired) and a wiped status loses nothing;
//! - an ownerReference to the CanaryRollout (`controller: true`), so the garbage collector
//!   removes it with the rollout unless the finalizer orphans it first (see `finalizer`).
//!
//! The apply is forced under the controller's field manager: a field another writer changed
//! (a `kubectl edit`) is taken back, and a field the controller stops sending (an env var the
//! next release dropped) is removed, as server-side apply does for a manager's own fields
//! (Kubernetes docs, "Server-Side Apply", "Conflicts" and "Merge strategy").

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{json, Map, Value};

use super::config_refs;
use super::deployments::{revision_of, WorkloadError, ANNOTATION_PREFIX, REVISION_ANNOTATION};
use crate::crd::CanaryRollout;
use crate::field_managers;

/// On the generated stable: the pod template of the promoted revision, as the workload had it.
pub const TEMPLATE_ANNOTATION: &str = "stickycanary.dev/template";
/// On the generated stable's pod template, when it references ConfigMaps or Secrets: the
/// release (template and data) it runs.
pub const RELEASE_ANNOTATION: &str = "stickycanary.dev/release";
/// On the generated stable: the CanaryRollout that generated it.
pub const ROLLOUT_LABEL: &str = "stickycanary.dev/rollout";

/// The workload's settings the generated stable follows as they are now (not a release).
const WORKLOAD_SETTINGS: [&str; 4] = [
    "strategy",
    "minReadySeconds",
    "progressDeadlineSeconds",
    "revisionHistoryLimit",
];

/// What the generated stable must run: a workload's pod template (referencing the
/// workload's ConfigMaps and Secrets, as the workload has it) and its revision (the
/// template's and the referenced data's, see [`config_refs::release_revision`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub template: Value,
    pub revision: String,
}

impl Release {
    /// The workload's template now, with the data it references (a bootstrap, a promotion
    /// or an undone promotion).
    pub fn of_workload(workload: &Deployment, data: &config_refs::Data) -> Self {
        Release {
            template: serde_json::to_value(&workload.spec.template).unwrap_or(Value::Null),
            revision: config_refs::release_revision(&revision_of(workload), data),
        }
    }

    /// What the generated stable runs now, when its record is lost: its own template (its
    /// references pointed back at the originals) and the live template's revision (never
    /// the workload's, which may be a run not yet analysed).
    pub fn of_live(primary: &Deployment, stable_name: &str) -> Self {
        let mut template = serde_json::to_value(&primary.spec.template).unwrap_or(Value::Null);
        config_refs::unrename(&mut template, stable_name);
        Release {
            template,
            revision: revision_of(primary),
        }
    }

    /// The release recorded on the generated stable, if both annotations are there and the
    /// template reads.
    pub fn recorded_on(primary: &Deployment) -> Option<Self> {
        let annotations = primary.metadata.annotations.as_ref()?;
        let template = serde_json::from_str(annotations.get(TEMPLATE_ANNOTATION)?).ok()?;
        let revision = annotations.get(REVISION_ANNOTATION)?.clone();
        Some(Release { template, revision })
    }

    /// The template the generated stable runs for this release: every ConfigMap and Secret
    /// reference pointed at the stable's copy.
    pub fn rendered(&self, stable_name: &str) -> Value {
        let mut template = self.template.clone();
        config_refs::rename(&mut template, stable_name);
        template
    }
}

/// The revision of the pod template the generated stable has when it runs `release`
/// unchanged (the selector labels, which `podLabels` sets, are not part of a revision).
pub fn rendered_revision(workload: &Deployment, release: &Release, stable_name: &str) -> String {
    let mut rendered = workload.clone();
    match serde_json::from_value(release.rendered(stable_name)) {
        Ok(template) => rendered.spec.template = template,
        Err(_) => return String::new(),
    }
    revision_of(&rendered)
}

/// The release the generated stable runs, as observed: the recorded one while its template
/// is what that release renders to, else its live template's own revision (drifted).
pub fn observed_revision(primary: &Deployment, workload: &Deployment, stable_name: &str) -> String {
    let live = revision_of(primary);
    match Release::recorded_on(primary) {
        Some(recorded) if rendered_revision(workload, &recorded, stable_name) == live => {
            recorded.revision
        }
        _ => live,
    }
}

/// The generated stable's copy of each referenced object that exists, as apply bodies.
pub fn copies(
    rollout: &CanaryRollout,
    namespace: &str,
    stable_name: &str,
    data: &config_refs::Data,
) -> Result<Vec<(config_refs::Kind, String, Value)>, String> {
    let owner = rollout
        .controller_owner_ref(&())
        .ok_or("the CanaryRollout has no uid yet")?;
    Ok(data
        .iter()
        .filter_map(|((kind, source), payload)| {
            let name = config_refs::copy_name(stable_name, source);
            let mut body = json!({
                "apiVersion": "v1",
                "kind": kind.as_str(),
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {ROLLOUT_LABEL: rollout.name_any()},
                    "ownerReferences": [owner.clone()],
                },
            });
            for (key, value) in payload.as_ref()?.as_object()? {
                body[key] = value.clone();
            }
            Some((*kind, name, body))
        })
        .collect())
}

/// The apply body of the generated stable `name` for `release`, with `replicas`.
pub fn desired(
    rollout: &CanaryRollout,
    workload: &Deployment,
    name: &str,
    pod_labels: &BTreeMap<String, String>,
    release: &Release,
    replicas: i32,
) -> Result<Value, String> {
    let selector = selector(workload, pod_labels);
    let mut template = release.rendered(name);
    relabel(&mut template, pod_labels)?;
    if !config_refs::references(&release.template).is_empty() {
        // The copies keep their names from release to release: a release that changes only
        // their data changes this, so that stable's pods restart on it.
        template["metadata"]["annotations"][RELEASE_ANNOTATION] =
            Value::from(release.revision.clone());
    }
    let owner = rollout
        .controller_owner_ref(&())
        .ok_or("the CanaryRollout has no uid yet")?;
    let mut body = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": workload.namespace(),
            "labels": {ROLLOUT_LABEL: rollout.name_any()},
            "annotations": {
                REVISION_ANNOTATION: release.revision,
                TEMPLATE_ANNOTATION: release.template.to_string(),
            },
            "ownerReferences": [owner],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": template,
        },
    });
    // The rollout settings of the workload's spec, as Git has them now (not a release).
    let workload_spec = serde_json::to_value(&workload.spec).map_err(|e| e.to_string())?;
    for key in WORKLOAD_SETTINGS {
        if let Some(value) = workload_spec.get(key).filter(|v| !v.is_null()) {
            body["spec"][key] = value.clone();
        }
    }
    Ok(body)
}

/// The generated stable's selector: the workload's, with `pod_labels` over it.
pub fn selector(
    workload: &Deployment,
    pod_labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut selector = workload
        .spec
        .selector
        .match_labels
        .clone()
        .unwrap_or_default();
    selector.extend(pod_labels.clone());
    selector
}

/// Sets `pod_labels` on a pod template's labels, and drops our own annotations from it.
fn relabel(template: &mut Value, pod_labels: &BTreeMap<String, String>) -> Result<(), String> {
    let object = template
        .as_object_mut()
        .ok_or("the workload's pod template is not an object")?;
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("the workload's pod template metadata is not an object")?;
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("the workload's pod labels are not an object")?;
    for (key, value) in pod_labels {
        labels.insert(key.clone(), Value::from(value.clone()));
    }
    if let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.retain(|key, _| !key.starts_with(ANNOTATION_PREFIX));
    }
    Ok(())
}

/// Why the generated stable does not hold `expected` any more, when another writer changed
/// its template (the apply that follows takes it back).
pub fn drift(
    primary: &Deployment,
    workload: &Deployment,
    expected: &Release,
    stable_name: &str,
) -> Option<String> {
    let live = revision_of(primary);
    let wanted = rendered_revision(workload, expected, stable_name);
    (live != wanted).then(|| {
        format!(
            "its pod template was changed outside the controller (revision {live}, expected {wanted})"
        )
    })
}

/// The merge patch that turns the live stable's pod template into the one `body` (from
/// [`desired`]) applies, for the fields a forced apply keeps: a field another manager added
/// (the `kubectl.kubernetes.io/restartedAt` annotation of `kubectl rollout restart`, an env
/// var added by `kubectl edit`) is not the applier's to remove (Kubernetes docs,
/// "Server-Side Apply", "Merge strategy"). Keys that are gone become `null` and lists are
/// replaced whole (RFC 7386); the read `resourceVersion` is a precondition.
pub fn template_repair(live: &Deployment, body: &Value) -> Value {
    let old = serde_json::to_value(&live.spec.template).unwrap_or(Value::Null);
    let new = body
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "metadata": {"resourceVersion": live.metadata.resource_version},
        "spec": {"template": merge_diff(&old, &new)},
    })
}

/// A JSON merge patch turning `old` into `new`: keys that disappeared become `null`.
fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(old_map), Value::Object(new_map)) => {
            let mut patch = Map::new();
            for (key, new_value) in new_map {
                let value = match old_map.get(key) {
                    Some(old_value) => merge_diff(old_value, new_value),
                    None => new_value.clone(),
                };
                patch.insert(key.clone(), value);
            }
            for key in old_map.keys().filter(|key| !new_map.contains_key(*key)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => new.clone(),
    }
}

/// The replicas to apply: the generated stable's own (an autoscaler or `kubectl scale` may
/// have set them), else the workload's as Git wrote them, else the canary's run size.
pub fn replicas(primary: Option<&Deployment>, workload: &Deployment, run_replicas: i32) -> i32 {
    primary
        .and_then(|p| p.spec.replicas)
        .or(workload.spec.replicas.filter(|n| *n > 0))
        .unwrap_or(run_replicas.max(1))
}

/// The ConfigMaps and Secrets `workload`'s template references, as they are now (`None`
/// for one that does not exist: its pods would not start either, unless it is optional).
pub async fn read_config_data(
    client: &Client,
    namespace: &str,
    workload: &Deployment,
) -> Result<config_refs::Data, WorkloadError> {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    let template = serde_json::to_value(&workload.spec.template).unwrap_or(Value::Null);
    let mut data = config_refs::Data::new();
    for (kind, name) in config_refs::references(&template) {
        let object = match kind {
            config_refs::Kind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), namespace)
                .get_opt(&name)
                .await
                .map(|o| o.and_then(|o| serde_json::to_value(o).ok())),
            config_refs::Kind::Secret => Api::<Secret>::namespaced(client.clone(), namespace)
                .get_opt(&name)
                .await
                .map(|o| o.and_then(|o| serde_json::to_value(o).ok())),
        };
        let object = object.map_err(|source| WorkloadError::Object {
            kind: kind.as_str(),
            namespace: namespace.to_string(),
            name: name.clone(),
            source,
        })?;
        data.insert((kind, name), object.map(|o| config_refs::payload(kind, &o)));
    }
    Ok(data)
}

/// The generated stable's API in one namespace, under the controller's field manager.
pub struct Primaries {
    api: Api<Deployment>,
    client: Client,
    namespace: String,
}

impl Primaries {
    pub fn new(client: Client, namespace: &str) -> Self {
        Primaries {
            api: Api::namespaced(client.clone(), namespace),
            client,
            namespace: namespace.to_string(),
        }
    }

    fn error(&self, name: &str, source: kube::Error) -> WorkloadError {
        WorkloadError::Api {
            namespace: self.namespace.clone(),
            name: name.to_string(),
            source,
        }
    }

    /// The generated stable, or `None` before the first apply created it.
    pub async fn get(&self, name: &str) -> Result<Option<Deployment>, WorkloadError> {
        self.api
            .get_opt(name)
            .await
            .map_err(|e| self.error(name, e))
    }

    /// The names of the Deployments labelled as generated by `rollout` (its stables).
    pub async fn generated_by(&self, rollout: &str) -> Result<Vec<String>, WorkloadError> {
        let selector = format!("{ROLLOUT_LABEL}={rollout}");
        let listed = self
            .api
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .map_err(|e| self.error(&selector, e))?;
        Ok(listed.items.iter().map(ResourceExt::name_any).collect())
    }

    /// Applies `body` (from [`desired`]), creating the Deployment on first use; returns it
    /// as the API server stored it.
    pub async fn apply(&self, name: &str, body: &Value) -> Result<Deployment, WorkloadError> {
        let params = PatchParams::apply(field_managers::CONTROLLER).force();
        self.api
            .patch(name, &params, &Patch::Apply(body))
            .await
            .map_err(|e| self.error(name, e))
    }

    /// Applies the stable's copies of the referenced ConfigMaps and Secrets (before the
    /// stable itself, so its new pods find them).
    pub async fn apply_copies(
        &self,
        copies: &[(config_refs::Kind, String, Value)],
    ) -> Result<(), WorkloadError> {
        let client = &self.client;
        use k8s_openapi::api::core::v1::{ConfigMap, Secret};
        let params = PatchParams::apply(field_managers::CONTROLLER).force();
        for (kind, name, body) in copies {
            let result = match kind {
                config_refs::Kind::ConfigMap => {
                    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &self.namespace);
                    api.patch(name, &params, &Patch::Apply(body))
                        .await
                        .map(|_| ())
                }
                config_refs::Kind::Secret => {
                    let api: Api<Secret> = Api::namespaced(client.clone(), &self.namespace);
                    api.patch(name, &params, &Patch::Apply(body))
                        .await
                        .map(|_| ())
                }
            };
            result.map_err(|source| WorkloadError::Object {
                kind: kind.as_str(),
                namespace: self.namespace.clone(),
                name: name.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Sends [`template_repair`]'s merge patch; returns the Deployment as stored.
    pub async fn repair(&self, name: &str, patch: &Value) -> Result<Deployment, WorkloadError> {
        let params = PatchParams {
            field_manager: Some(field_managers::CONTROLLER.to_string()),
            ..PatchParams::default()
        };
        self.api
            .patch(name, &params, &Patch::Merge(patch))
            .await
            .map_err(|e| self.error(name, e))
    }

    /// Removes the ownerReferences (a merge patch sets the list whole): the garbage
    /// collector then leaves the Deployment in place when the CanaryRollout goes.
    pub async fn orphan(&self, name: &str) -> Result<(), WorkloadError> {
        let patch = json!({"metadata": {"ownerReferences": null}});
        let params = PatchParams {
            field_manager: Some(field_managers::CONTROLLER.to_string()),
            ..PatchParams::default()
        };
        match self.api.patch(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(e) if crate::kube_error::is_not_found(&e) => Ok(()),
            Err(e) => Err(self.error(name, e)),
        }
    }
}

/// Whether the Deployment named like the generated stable is this rollout's to apply:
/// generated by it (the rollout label; an ownerReference to an older object of the same name
/// is replaced), never a Deployment someone else wrote.
pub fn is_generated_by(primary: &Deployment, rollout: &CanaryRollout) -> bool {
    primary.labels().get(ROLLOUT_LABEL) == Some(&rollout.name_any())
        || is_owned_by(primary, rollout)
}

/// Whether the object names this rollout (its uid) as its controller.
fn is_owned_by(primary: &Deployment, rollout: &CanaryRollout) -> bool {
    rollout.meta().uid.as_deref().is_some_and(|uid| {
        primary
            .owner_references()
            .iter()
            .any(|o| o.uid == uid && o.controller == Some(true))
    })
}

/// Whether the live generated stable already is what `body` describes, for the fields that
/// can drift: the recorded release, the template's revision, the subset labels, the owner.
/// (Everything else in `body` comes from the workload's spec or was read from this object.)
pub fn converged(
    primary: &Deployment,
    workload: &Deployment,
    body: &Value,
    release: &Release,
    rollout: &CanaryRollout,
) -> bool {
    let stable_name = primary.name_any();
    let recorded = Release::recorded_on(primary);
    let labels_of = |path: &str| {
        body.pointer(path)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let wanted_pod_labels = labels_of("/spec/template/metadata/labels");
    let live_pod_labels = primary
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let pod_labels_hold = wanted_pod_labels
        .iter()
        .all(|(k, v)| live_pod_labels.get(k).map(String::as_str) == v.as_str());
    let replicas_hold = body.pointer("/spec/replicas").and_then(Value::as_i64)
        == primary.spec.replicas.map(i64::from);
    let live_spec = serde_json::to_value(&primary.spec).unwrap_or(Value::Null);
    let settings_hold = WORKLOAD_SETTINGS
        .iter()
        .filter_map(|key| Some((key, body.pointer(&format!("/spec/{key}"))?)))
        .all(|(key, wanted)| live_spec.get(*key) == Some(wanted));
    recorded.as_ref() == Some(release)
        && drift(primary, workload, release, &stable_name).is_none()
        && is_owned_by(primary, rollout)
        && primary.labels().get(ROLLOUT_LABEL) == Some(&rollout.name_any())
        && pod_labels_hold
        && replicas_hold
        && settings_hold
}
