//! The gate types of the CanaryRollout (contract 5, "Gates"): `spec.webhooks[]`,
//! `spec.schedule`, and the status they leave behind (`status.gate`, `status.approvals`).
//!
//! Schema checks (URL scheme, name pattern, revision pattern) are schemars attributes, so
//! the API server enforces them too; rules spanning fields live in `validate.rs`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DNS1123_LABEL_PATTERN;
use crate::duration::Duration;

/// What a webhook URL must look like. Plain http(s) only: no `file:`, no `gopher:`.
pub const WEBHOOK_URL_PATTERN: &str = r"^https?://[^\s]+$";

/// What a revision in an approval must look like: the lifecycle's revisions are hex
/// hashes or the rollout file's `spec.canary.revision`; no spaces or control characters.
pub const REVISION_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$";

/// The revision an approval names when the rollout has no revision source (no
/// `spec.stable`, no `spec.canary.revision`): the one run there is.
pub const UNVERSIONED: &str = "unversioned";

/// When a webhook is called and what its answer means (the table in contract 5).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookType {
    /// Before the canary is scaled up for a new revision; a failure waits (a gate).
    ConfirmRollout,
    /// Canary ready, weight still 0; a failure is a failed check (its `for`, then rollback).
    PreRollout,
    /// Every analysis interval beside the metric checks; a failed check with its own `for`.
    Rollout,
    /// Before every weight increase; a failure waits.
    ConfirmTrafficIncrease,
    /// Before the last stage's 100%; a failure waits while the analysis keeps running.
    ConfirmPromotion,
    /// Every interval while progressing; a 2xx answer means "roll back now".
    Rollback,
    /// After a run succeeded or rolled back; logged only.
    PostRollout,
    /// Every Event; notify only.
    Event,
}

impl WebhookType {
    pub const ALL: [WebhookType; 8] = [
        WebhookType::ConfirmRollout,
        WebhookType::PreRollout,
        WebhookType::Rollout,
        WebhookType::ConfirmTrafficIncrease,
        WebhookType::ConfirmPromotion,
        WebhookType::Rollback,
        WebhookType::PostRollout,
        WebhookType::Event,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            WebhookType::ConfirmRollout => "confirm-rollout",
            WebhookType::PreRollout => "pre-rollout",
            WebhookType::Rollout => "rollout",
            WebhookType::ConfirmTrafficIncrease => "confirm-traffic-increase",
            WebhookType::ConfirmPromotion => "confirm-promotion",
            WebhookType::Rollback => "rollback",
            WebhookType::PostRollout => "post-rollout",
            WebhookType::Event => "event",
        }
    }

    pub fn parse(text: &str) -> Option<WebhookType> {
        WebhookType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The types that wait (and so may be `approval: manual`).
    pub fn is_gate(&self) -> bool {
        matches!(
            self,
            WebhookType::ConfirmRollout
                | WebhookType::ConfirmTrafficIncrease
                | WebhookType::ConfirmPromotion
        )
    }
}

impl std::fmt::Display for WebhookType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who opens a gate that has no `url`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalMode {
    /// `stickycanary approve NAME --gate <type>` for the run's revision.
    Manual,
}

/// One webhook (or manual gate) of `spec.webhooks[]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Unique in the rollout; shown in status and Events instead of the URL.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL_PATTERN))]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: WebhookType,
    /// Where the JSON payload is POSTed (http or https). Never shown in status, Events or
    /// logs: a URL may carry a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048), regex(pattern = WEBHOOK_URL_PATTERN))]
    pub url: Option<String>,
    /// `manual`: a gate (confirm-*) opened by `stickycanary approve` instead of a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalMode>,
    /// How long one call may take (connect, send, answer); longer counts as a failure.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// `rollout` and `pre-rollout`: how long failures may last before the run rolls back.
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub for_duration: Option<Duration>,
    /// Passed through in the payload.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// The default `for` of `rollout` and `pre-rollout` webhooks.
pub const DEFAULT_WEBHOOK_FOR: Duration = Duration::from_mins(1);

impl Webhook {
    pub fn breach_for(&self) -> Duration {
        self.for_duration.unwrap_or(DEFAULT_WEBHOOK_FOR)
    }
}

/// The longest `timeout` a webhook may have (a tick waits for its calls).
pub const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_mins(1);

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `spec.schedule`: rollout windows and a freeze.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Times when runs may start and weights may rise. None: always.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<RolloutWindow>,
    /// Hold every run where it is (no start, no raise); analysis and rollbacks go on.
    #[serde(default)]
    pub freeze: bool,
}

/// A window opens at each time its cron expression names and stays open for `duration`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutWindow {
    /// Five fields (minute hour day-of-month month day-of-week), e.g. `0 9 * * 1-5`.
    #[schemars(length(min = 9, max = 128))]
    pub cron: String,
    /// How long the window stays open, e.g. `7h`.
    pub duration: Duration,
    /// An IANA time zone such as `Europe/Berlin` (default `UTC`); the cron fields are
    /// wall-clock times there, daylight saving included.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".to_string()
}

/// What a run is waiting for (`status.gate`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateWait {
    /// `confirm-rollout`, `pre-rollout`, `confirm-traffic-increase`, `confirm-promotion`
    /// or `schedule`.
    pub gate: String,
    /// Why, e.g. `webhook checkout-approval: 403` or `manual approval`.
    pub reason: String,
    pub since: Time,
    /// The revision the wait is for (an approval must name it).
    pub revision: String,
    /// A manual gate: `stickycanary approve` opens it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
    /// Outside the rollout windows: when the next one opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window: Option<Time>,
    /// A manual gate: the run (`status.attempt`, at least 1) an approval must name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32", "minimum" = 1))]
    pub attempt: Option<u32>,
    /// A manual `confirm-traffic-increase`: the stage the raise enters (an index into
    /// `spec.stages`, as `status.stageIndex`), which an approval must name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32", "minimum" = 0))]
    pub stage: Option<u32>,
}

impl GateWait {
    /// `waiting for confirm-promotion (webhook checkout-approval: 403)`.
    pub fn describe(&self) -> String {
        format!("waiting for {} ({})", self.gate, self.reason)
    }
}

/// One approval: the gate is open for this revision's run `attempt` only, and for a
/// `confirm-traffic-increase` only for the raise into `stage`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    #[schemars(length(min = 1, max = 128), regex(pattern = REVISION_PATTERN))]
    pub revision: String,
    /// The run of the revision (`status.attempt`); absent means the first run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32", "minimum" = 1))]
    pub attempt: Option<u32>,
    /// `confirm-traffic-increase` only: the stage the raise enters (an index into
    /// `spec.stages`). An approval of that gate without it opens no raise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32", "minimum" = 0))]
    pub stage: Option<u32>,
}

impl ApprovalRecord {
    /// An approval of the first run of `revision`, for any gate but a traffic increase.
    pub fn for_revision(revision: &str) -> ApprovalRecord {
        ApprovalRecord {
            revision: revision.to_string(),
            attempt: None,
            stage: None,
        }
    }

    /// Whether this approval opens the gate that waits for `wanted`.
    pub fn opens(&self, wanted: &ApprovalRecord) -> bool {
        self.revision == wanted.revision
            && self.attempt.unwrap_or(1) == wanted.attempt.unwrap_or(1)
            && self.stage == wanted.stage
    }
}

/// `status.approvals`: one field per gate type, so a merge patch of one approval never
/// touches another. The controller never writes it (its status apply leaves it out).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approvals {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_rollout: Option<ApprovalRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_traffic_increase: Option<ApprovalRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_promotion: Option<ApprovalRecord>,
}

impl Approvals {
    pub fn is_empty(&self) -> bool {
        self == &Approvals::default()
    }

    fn slot(&self, gate: WebhookType) -> Option<&Option<ApprovalRecord>> {
        match gate {
            WebhookType::ConfirmRollout => Some(&self.confirm_rollout),
            WebhookType::ConfirmTrafficIncrease => Some(&self.confirm_traffic_increase),
            WebhookType::ConfirmPromotion => Some(&self.confirm_promotion),
            _ => None,
        }
    }

    /// Whether `gate` is approved for `wanted` (its revision, run and, for a traffic
    /// increase, stage; an approval of anything else is not).
    pub fn approves(&self, gate: WebhookType, wanted: &ApprovalRecord) -> bool {
        self.slot(gate)
            .and_then(Option::as_ref)
            .is_some_and(|record| record.opens(wanted))
    }

    /// Records an approval of `gate` for the first run of `revision`; `false` for a type
    /// that is no gate.
    pub fn approve(&mut self, gate: WebhookType, revision: &str) -> bool {
        self.record(gate, ApprovalRecord::for_revision(revision))
    }

    /// Records `record` as the approval of `gate`; `false` for a type that is no gate.
    pub fn record(&mut self, gate: WebhookType, record: ApprovalRecord) -> bool {
        let record = Some(record);
        match gate {
            WebhookType::ConfirmRollout => self.confirm_rollout = record,
            WebhookType::ConfirmTrafficIncrease => self.confirm_traffic_increase = record,
            WebhookType::ConfirmPromotion => self.confirm_promotion = record,
            _ => return false,
        }
        true
    }

    /// The status field name of `gate` (`confirmPromotion`), for the approval's merge patch.
    pub fn field(gate: WebhookType) -> Option<&'static str> {
        match gate {
            WebhookType::ConfirmRollout => Some("confirmRollout"),
            WebhookType::ConfirmTrafficIncrease => Some("confirmTrafficIncrease"),
            WebhookType::ConfirmPromotion => Some("confirmPromotion"),
            _ => None,
        }
    }
}

/// Whether `revision` may be recorded in an approval (the CRD schema's pattern).
pub fn revision_is_valid(revision: &str) -> bool {
    let mut chars = revision.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    first_ok
        && revision.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "._:+-".contains(c))
}
