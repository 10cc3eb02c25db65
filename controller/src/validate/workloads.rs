//! The workload and the stable Deployment generated from it (B7): the DestinationRule
//! subsets tell stable's pods from the canary's by the selector labels. The generated stable
//! is the workload with `spec.stable.podLabels` over the workload's selector and pod labels,
//! so that only works when every key of `podLabels` is one the workload selects on (a revision
//! leaves out the selector labels, so a key outside it would make stable's revision never
//! match the workload's) and at least one has another value there. The controller runs this
//! on the workload it reads every tick (a failure holds the rollout in `InvalidSpec`);
//! `stickycanary validate` runs it when the file also holds the workload.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;

use super::ValidationError;

fn match_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .selector
        .match_labels
        .clone()
        .unwrap_or_default()
}

fn name(deployment: &Deployment) -> &str {
    deployment.metadata.name.as_deref().unwrap_or("?")
}

fn render(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Why a stable generated from `workload` with `pod_labels` could not be told apart from it,
/// naming the field.
pub fn check_stable_labels(
    workload: &Deployment,
    pod_labels: &BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    let selector = match_labels(workload);
    if let Some(key) = pod_labels.keys().find(|k| !selector.contains_key(*k)) {
        return Err(ValidationError::new(
            "spec.stable.podLabels",
            format!(
                "{key} is not a key of {}'s spec.selector.matchLabels {}: the generated stable's labels must override keys the workload selects on",
                name(workload),
                render(&selector)
            ),
        ));
    }
    if pod_labels.iter().all(|(k, v)| selector.get(k) == Some(v)) {
        return Err(ValidationError::new(
            "spec.stable.podLabels",
            format!(
                "{} leaves {}'s selector {} as it is: the subsets cannot tell the pods apart (give one key another value, e.g. version: stable where the workload has version: canary)",
                render(pod_labels),
                name(workload),
                render(&selector)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(name: &str, selector: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": selector}}}
        }))
        .unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_selector_key_with_another_value_is_accepted() {
        let workload = deployment("c", json!({"app": "shop", "version": "canary"}));
        let pod_labels = labels(&[("version", "stable")]);
        assert_eq!(check_stable_labels(&workload, &pod_labels), Ok(()));
    }

    #[test]
    fn a_key_the_workload_does_not_select_on_is_refused_naming_the_field() {
        let workload = deployment("c", json!({"app": "shop"}));
        let error = check_stable_labels(&workload, &labels(&[("version", "stable")])).unwrap_err();
        assert_eq!(error.field, "spec.stable.podLabels");
        assert!(error.message.contains("version is not a key"), "{error}");
    }

    #[test]
    fn labels_equal_to_the_workloads_are_refused() {
        let workload = deployment("c", json!({"app": "shop", "version": "stable"}));
        let error = check_stable_labels(&workload, &labels(&[("version", "stable")])).unwrap_err();
        assert_eq!(error.field, "spec.stable.podLabels");
        assert!(
            error.message.contains("cannot tell the pods apart"),
            "{error}"
        );
    }
}
