//! Resource checks (`spec.analysis.resources`): the canary's CPU throttling, and its memory
//! working set and CPU per pod against stable's, read from cAdvisor's container series.
//!
//! The pieces, each in its own file:
//! - `crd::resources`: the CRD block and its defaults;
//! - `observation::resources`: what the engine is told (per-version figures, or why there
//!   are none);
//! - [`query`]: which pods belong to a Deployment, the batched PromQL and how its results
//!   are split per rollout (pure, table-tested);
//! - `prometheus::resources` fetches a batch, `k8s::resource_batch` shares it between
//!   rollouts, and `engine::resources` judges it.
//!
//! A missing series is *no data*: the check is inconclusive and holds the stage; it is
//! never a breach. Local mode has no kubelet and so no cAdvisor: it refuses a rollout that
//! asks for these checks instead of holding it forever (`validate::local_mode_refusal`).

pub mod query;

pub use crate::observation::{PodUsage, ResourceObservation};
pub use query::{PodSelector, ResourceSelectors};
