//! What the engine is told about the pods' resources at one tick.

/// One version's pods over the analysis window. Every figure is `None` when its series are
/// missing (no pod matched, the kubelet is not scraped, or a container has no CPU limit and
/// so no CFS periods): no data, never zero.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodUsage {
    /// Pods that had any series in the window.
    pub pods: u32,
    /// Mean CPU usage per pod, in cores.
    pub cpu_cores_per_pod: Option<f64>,
    /// Mean memory working set per pod, in bytes.
    pub memory_bytes_per_pod: Option<f64>,
    /// Throttled CFS periods over all CFS periods of the version's containers, in percent.
    pub throttled_percent: Option<f64>,
}

/// The resource figures of one rollout, or why there are none.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ResourceObservation {
    /// Not asked for: the spec has no resource checks, or this front end has no container
    /// metrics. A resource check that sees this is inconclusive.
    #[default]
    NotQueried,
    /// The query failed: counts toward `unavailableGrace` like any lost metrics.
    Unavailable {
        reason: String,
    },
    Window {
        canary: PodUsage,
        stable: PodUsage,
    },
}
