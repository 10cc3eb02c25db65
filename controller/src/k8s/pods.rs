//! Canary pod health: OOMKilled or CrashLoopBackOff in any container of the pods selected
//! by the canary Deployment's `spec.selector.matchLabels` means roll back now.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, ListParams};
use kube::Client;

use crate::observation::CanaryHealth;

/// The crash reason of one container, if it has one.
fn container_crash(status: &ContainerStatus) -> Option<&'static str> {
    let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref());
    if waiting.and_then(|w| w.reason.as_deref()) == Some("CrashLoopBackOff") {
        return Some("CrashLoopBackOff");
    }
    let terminated_now = status.state.as_ref().and_then(|s| s.terminated.as_ref());
    let terminated_before = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    if [terminated_now, terminated_before]
        .into_iter()
        .flatten()
        .any(|t| t.reason.as_deref() == Some("OOMKilled"))
    {
        return Some("OOMKilled");
    }
    None
}

/// The health of a set of pods: the first crashing container wins.
pub fn health_of(pods: &[Pod]) -> CanaryHealth {
    if pods.is_empty() {
        return CanaryHealth::Unknown;
    }
    for pod in pods {
        let statuses = pod.status.as_ref().into_iter().flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        });
        for status in statuses {
            if let Some(reason) = container_crash(status) {
                return CanaryHealth::Crashing {
                    pod: pod.metadata.name.clone().unwrap_or_default(),
                    reason: reason.to_string(),
                };
            }
        }
    }
    CanaryHealth::Healthy
}

/// Reads the Deployment's selector and its pods. Any API problem is `Unknown`, which
/// never rolls back on its own.
pub async fn canary_health(client: &Client, namespace: &str, deployment: &str) -> CanaryHealth {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let selector = match deployments.get(deployment).await {
        Ok(d) => d
            .spec
            .selector
            .match_labels
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        Err(e) => {
            tracing::debug!(error = %e, deployment, "canary deployment not readable");
            return CanaryHealth::Unknown;
        }
    };
    if selector.is_empty() {
        return CanaryHealth::Unknown;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => health_of(&list.items),
        Err(e) => {
            tracing::debug!(error = %e, deployment, "canary pods not listable");
            CanaryHealth::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"containerStatuses": [status]}
        }))
        .unwrap()
    }

    fn container(state: serde_json::Value, last: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
                           "state": state, "lastState": last})
    }

    #[test]
    fn crashloop_and_oomkill_are_crashing_and_running_pods_are_healthy() {
        let running = pod(
            "ok",
            container(serde_json::json!({"running": {}}), serde_json::json!({})),
        );
        let looping = pod(
            "loop",
            container(
                serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                serde_json::json!({}),
            ),
        );
        let oom = pod(
            "oom",
            container(
                serde_json::json!({"running": {}}),
                serde_json::json!({"terminated": {"reason": "OOMKilled", "exitCode": 137}}),
            ),
        );
        assert_eq!(
            health_of(std::slice::from_ref(&running)),
            CanaryHealth::Healthy
        );
        assert_eq!(
            health_of(&[running.clone(), looping]),
            CanaryHealth::Crashing {
                pod: "loop".into(),
                reason: "CrashLoopBackOff".into()
            }
        );
        assert_eq!(
            health_of(&[running, oom]),
            CanaryHealth::Crashing {
                pod: "oom".into(),
                reason: "OOMKilled".into()
            }
        );
        assert_eq!(health_of(&[]), CanaryHealth::Unknown);
    }
}
