//! Resource checks (`spec.analysis.resources`): the canary's CPU throttling, and its memory
//! working set and CPU per pod against stable's, read from cAdvisor's container series.
//!
//! The pieces, each in its own file:
//! - [`spec`]: the CRD block and its defaults;
//! - [`observation`]: what the engine is told (per-version figures, or why there are none);
//! - [`query`]: which pods belong to a Deployment, the batched PromQL and how its results
//!   are split per rollout (pure, table-tested);
//! - `prometheus::resources` fetches a batch, `k8s::resource_batch` shares it between
//!   rollouts, and `engine::resources` judges it.
//!
//! A missing series is *no data*: the check is inconclusive and holds the stage; it is
//! never a breach. Local mode has no kubelet and so no cAdvisor: it refuses a rollout that
//! asks for these checks instead of holding it forever ([`local_mode_refusal`]).

pub mod observation;
pub mod query;
pub mod spec;

pub use observation::{PodUsage, ResourceObservation};
pub use query::{PodSelector, ResourceSelectors};
pub use spec::{IncreaseCheck, ResourceChecks, ThrottlingCheck, WorkloadRef};

use crate::crd::CanaryRolloutSpec;
use crate::validate::ValidationError;

/// Why `stickycanary local` cannot run a rollout with resource checks, or `None`.
pub fn local_mode_refusal(spec: &CanaryRolloutSpec) -> Option<ValidationError> {
    spec.analysis.resources.as_ref().map(|_| ValidationError {
        field: "spec.analysis.resources".to_string(),
        message: LOCAL_MODE_NOTE.to_string(),
    })
}

/// The one line `validate` and `local` print about resource checks outside a cluster.
pub const LOCAL_MODE_NOTE: &str = "resource checks read cAdvisor's container metrics, which only a cluster's Prometheus has (the kubelet serves them); local mode has none, so they would hold the rollout forever: remove analysis.resources to run it with `stickycanary local`";
