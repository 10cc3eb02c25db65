//! Which cAdvisor series belong to a Deployment, the batched PromQL that reads them for
//! every rollout at once, and how the results are split back per rollout.
//!
//! cAdvisor (served by the kubelet at `/metrics/cadvisor`) labels each container's series
//! with `namespace`, `pod` and `container`, but not with the Deployment. A Deployment's pods
//! are named `<deployment>-<pod-template-hash>-<suffix>` (the ReplicaSet is
//! `<deployment>-<hash>`, its pods add a 5-character suffix), so a pod belongs to Deployment
//! `d` exactly when its name is `d-` followed by two more dash-free segments. Prometheus
//! anchors regex matchers, so `checkout-[a-z0-9]+-[a-z0-9]+` does not match the pods of
//! `checkout-canary` (`checkout-canary-<hash>-<suffix>` has three segments after `checkout-`).
//!
//! `container!=""` drops the pod-level cgroup series (which would count every container
//! twice) and `container!="POD"` the pause container of older runtimes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::crd::CanaryRolloutSpec;
use crate::crd::ResourceChecks;
use crate::observation::{PodUsage, ResourceObservation};
use crate::prometheus::queries::promql_range;

/// The pods of one Deployment.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodSelector {
    pub namespace: String,
    pub deployment: String,
}

impl PodSelector {
    /// True when `pod` in `namespace` is one of this Deployment's pods.
    pub fn matches(&self, namespace: &str, pod: &str) -> bool {
        if namespace != self.namespace {
            return false;
        }
        let Some(rest) = pod
            .strip_prefix(self.deployment.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
        else {
            return false;
        };
        let segments: Vec<&str> = rest.split('-').collect();
        segments.len() == 2
            && segments.iter().all(|segment| {
                !segment.is_empty()
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
    }
}

/// The pods one rollout compares: the canary's, and stable's when a check needs them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceSelectors {
    pub canary: PodSelector,
    pub stable: Option<PodSelector>,
}

impl ResourceSelectors {
    /// The selectors a spec asks for, or `None` without `analysis.resources`.
    /// `namespace` is the CanaryRollout's: the canary defaults to it, stable to the canary's.
    pub fn for_spec(spec: &CanaryRolloutSpec, namespace: &str) -> Option<Self> {
        let checks: &ResourceChecks = spec.analysis.resources.as_ref()?;
        let canary_namespace = spec
            .canary
            .namespace
            .clone()
            .unwrap_or_else(|| namespace.to_string());
        let stable = checks.stable.as_ref().map(|stable| PodSelector {
            namespace: stable
                .namespace
                .clone()
                .unwrap_or_else(|| canary_namespace.clone()),
            deployment: stable.deployment.clone(),
        });
        Some(ResourceSelectors {
            canary: PodSelector {
                namespace: canary_namespace,
                deployment: spec.canary.deployment.clone(),
            },
            stable,
        })
    }

    pub fn all(&self) -> impl Iterator<Item = &PodSelector> {
        std::iter::once(&self.canary).chain(self.stable.as_ref())
    }
}

/// Keeps regex metacharacters literal. Names are DNS-1123 labels and have none, but a
/// selector must never be able to widen itself.
fn regex_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
            // PromQL strings need the backslash itself escaped.
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The label matchers for every pod of every selector, one PromQL string for the batch.
/// Namespaces and Deployments are matched separately, so a pod named like one rollout's
/// Deployment in another rollout's namespace is fetched too; [`ResourceBatch::usage`]
/// matches both exactly.
pub fn pod_matchers(selectors: &BTreeSet<PodSelector>) -> String {
    let namespaces: BTreeSet<String> = selectors
        .iter()
        .map(|s| regex_literal(&s.namespace))
        .collect();
    let deployments: BTreeSet<String> = selectors
        .iter()
        .map(|s| regex_literal(&s.deployment))
        .collect();
    format!(
        "namespace=~\"{}\",pod=~\"({})-[a-z0-9]+-[a-z0-9]+\",container!=\"\",container!=\"POD\"",
        namespaces.into_iter().collect::<Vec<_>>().join("|"),
        deployments.into_iter().collect::<Vec<_>>().join("|"),
    )
}

/// The four batched queries, one per cAdvisor metric, each summed per pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceQueries {
    /// CPU cores used, averaged over the window.
    pub cpu: String,
    /// Memory working set in bytes, averaged over the window.
    pub memory: String,
    /// CFS periods in which the container was throttled, over the window.
    pub throttled_periods: String,
    /// All CFS periods over the window (only containers with a CPU limit have them).
    pub periods: String,
}

pub fn queries(selectors: &BTreeSet<PodSelector>, window: Duration) -> ResourceQueries {
    let matchers = pod_matchers(selectors);
    let range = promql_range(window);
    let per_pod = |function: &str, metric: &str| {
        format!("sum by (namespace, pod) ({function}({metric}{{{matchers}}}[{range}]))")
    };
    ResourceQueries {
        cpu: per_pod("rate", "container_cpu_usage_seconds_total"),
        memory: per_pod("avg_over_time", "container_memory_working_set_bytes"),
        throttled_periods: per_pod("increase", "container_cpu_cfs_throttled_periods_total"),
        periods: per_pod("increase", "container_cpu_cfs_periods_total"),
    }
}

/// One value per pod: `(namespace, pod) -> value`.
pub type PerPod = BTreeMap<(String, String), f64>;

/// One interval's resource results for every selector in the batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceBatch {
    pub cpu: PerPod,
    pub memory: PerPod,
    pub throttled_periods: PerPod,
    pub periods: PerPod,
}

/// Sum and count of the values of `selector`'s pods.
fn matching(per_pod: &PerPod, selector: &PodSelector) -> (f64, u32) {
    per_pod
        .iter()
        .filter(|((namespace, pod), value)| selector.matches(namespace, pod) && value.is_finite())
        .fold((0.0, 0), |(sum, count), (_, value)| {
            (sum + value, count + 1)
        })
}

fn per_pod_mean(per_pod: &PerPod, selector: &PodSelector) -> Option<f64> {
    let (sum, count) = matching(per_pod, selector);
    (count > 0).then(|| sum / f64::from(count))
}

impl ResourceBatch {
    /// One Deployment's figures. Missing series give `None`, never 0.
    pub fn usage(&self, selector: &PodSelector) -> PodUsage {
        let pods: BTreeSet<&(String, String)> = [&self.cpu, &self.memory]
            .into_iter()
            .flat_map(|per_pod| per_pod.keys())
            .filter(|(namespace, pod)| selector.matches(namespace, pod))
            .collect();
        let (throttled, throttled_pods) = matching(&self.throttled_periods, selector);
        let (periods, _) = matching(&self.periods, selector);
        PodUsage {
            pods: u32::try_from(pods.len()).unwrap_or(u32::MAX),
            cpu_cores_per_pod: per_pod_mean(&self.cpu, selector),
            memory_bytes_per_pod: per_pod_mean(&self.memory, selector),
            // No periods in the window (no CPU limit, or no series) is no data.
            throttled_percent: (periods > 0.0 && throttled_pods > 0)
                .then(|| throttled * 100.0 / periods),
        }
    }

    /// One rollout's observation: the canary's figures, and stable's when it has a selector.
    pub fn observation(&self, selectors: &ResourceSelectors) -> ResourceObservation {
        ResourceObservation::Window {
            canary: self.usage(&selectors.canary),
            stable: selectors
                .stable
                .as_ref()
                .map(|stable| self.usage(stable))
                .unwrap_or_default(),
        }
    }
}
