//! The field managers of stickycanary's writes (STYLE 8): every write names one of these, so
//! `managedFields` says which part of stickycanary owns what.

/// The controller: the weight, the Deployments, the finalizer, the status it applies.
pub const CONTROLLER: &str = "stickycanary";

/// The `Degraded` condition a failed reconcile applies on its own (`k8s::status::
/// write_conditions`): a second manager, so its apply of the conditions alone removes
/// nothing the controller's full applies own.
pub const DEGRADED: &str = "stickycanary-degraded";

/// The CLI (`stickycanary promote|abort|pause|resume|approve`), with the user's credentials.
pub const CLI: &str = "stickycanary-cli";
