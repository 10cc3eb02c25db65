//! Stage arithmetic: which stage comes next, how long each lasts, how long has passed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::crd::{CanaryRolloutSpec, Stage};
use crate::duration::Duration;

/// The stage at `index`, clamped to the last one (the spec may have lost stages since
/// the status was written). `None` only for a spec without stages.
pub fn stage(spec: &CanaryRolloutSpec, index: u32) -> Option<&Stage> {
    let index = usize::try_from(index).unwrap_or(usize::MAX);
    spec.stages.get(index).or_else(|| spec.stages.last())
}

/// `index` clamped into the spec's stages.
pub fn clamp_index(spec: &CanaryRolloutSpec, index: u32) -> u32 {
    let last = u32::try_from(spec.stages.len().saturating_sub(1)).unwrap_or(u32::MAX);
    index.min(last)
}

pub fn is_last(spec: &CanaryRolloutSpec, index: u32) -> bool {
    usize::try_from(index).is_ok_and(|index| index + 1 >= spec.stages.len())
}

/// Whether passing the stage at `index` gives canary all the traffic: it is the last stage,
/// or the next one sends 100%.
pub fn hands_over(spec: &CanaryRolloutSpec, index: u32) -> bool {
    let next = usize::try_from(index)
        .ok()
        .and_then(|index| spec.stages.get(index + 1));
    next.is_none_or(|next| next.weight >= 100.0)
}

/// How long a stage must pass; a last stage without a duration needs none.
pub fn hold_for(stage: &Stage) -> Duration {
    stage.duration.unwrap_or(Duration::ZERO)
}

/// Time from `since` to `now`, zero if the clock went backwards.
pub fn elapsed(now: Timestamp, since: &Time) -> Duration {
    let span = now.duration_since(since.0);
    std::time::Duration::try_from(span)
        .map(Duration::from)
        .unwrap_or(Duration::ZERO)
}

/// `time` moved later by `by` (saturating at the end of jiff's range).
pub fn shifted(time: &Time, by: Duration) -> Time {
    Time(time.0.checked_add(by.to_signed()).unwrap_or(Timestamp::MAX))
}

/// Human form of a stage for messages: `stage 2/4 (25%)`.
pub fn describe(spec: &CanaryRolloutSpec, index: u32, weight: f64) -> String {
    format!(
        "stage {}/{} ({weight}%)",
        u64::from(index) + 1,
        spec.stages.len()
    )
}
