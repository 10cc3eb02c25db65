//! The two Deployments of the release lifecycle, checked against each other (B7): the
//! DestinationRule subsets tell stable's pods from the canary's by the selector labels, and
//! a promotion copies the canary's template onto stable keeping stable's value of every
//! selector key. Both only work when both Deployments select on the same label keys with a
//! different value of at least one. The controller runs this on the Deployments it reads
//! every tick (a failure holds the rollout in `InvalidSpec`); `stickycanary validate` runs
//! it when the file also holds both Deployments.

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

/// Why `canary` and `stable` cannot run a release lifecycle together, naming the field.
pub fn check_pair(canary: &Deployment, stable: &Deployment) -> Result<(), ValidationError> {
    let canary_labels = match_labels(canary);
    let stable_labels = match_labels(stable);
    let keys = |labels: &BTreeMap<String, String>| labels.keys().cloned().collect::<Vec<_>>();
    if keys(&canary_labels) != keys(&stable_labels) {
        return Err(ValidationError::new(
            "spec.stable.deployment",
            format!(
                "{} selects on {} but the canary {} on {}: both Deployments' spec.selector.matchLabels must use the same label keys, or stable's template after a promotion never matches the canary's revision",
                name(stable),
                render(&stable_labels),
                name(canary),
                render(&canary_labels)
            ),
        ));
    }
    if canary_labels == stable_labels {
        return Err(ValidationError::new(
            "spec.canary.deployment",
            format!(
                "{} and the stable {} have the same spec.selector.matchLabels {}: the subsets cannot tell their pods apart (give one key a different value in each, e.g. version: canary and version: stable)",
                name(canary),
                name(stable),
                render(&canary_labels)
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

    #[test]
    fn selectors_on_the_same_keys_with_one_value_apart_are_accepted() {
        let canary = deployment("c", json!({"app": "shop", "version": "canary"}));
        let stable = deployment("s", json!({"app": "shop", "version": "stable"}));
        assert_eq!(check_pair(&canary, &stable), Ok(()));
    }

    #[test]
    fn selectors_on_different_keys_are_refused_naming_the_stable_field() {
        let canary = deployment("c", json!({"app": "shop"}));
        let stable = deployment("s", json!({"app": "shop", "version": "stable"}));
        let error = check_pair(&canary, &stable).unwrap_err();
        assert_eq!(error.field, "spec.stable.deployment");
        assert!(error.message.contains("same label keys"), "{error}");
    }

    #[test]
    fn equal_selectors_are_refused_naming_the_canary_field() {
        let canary = deployment("c", json!({"app": "shop"}));
        let stable = deployment("s", json!({"app": "shop"}));
        let error = check_pair(&canary, &stable).unwrap_err();
        assert_eq!(error.field, "spec.canary.deployment");
        assert!(
            error.message.contains("cannot tell their pods apart"),
            "{error}"
        );
    }
}
