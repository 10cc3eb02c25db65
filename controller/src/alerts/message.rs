//! What an alert says: the severity of each event, and the message every provider type
//! renders in its own format.

use crate::crd::alerts::Severity;
use crate::crd::{CanaryRolloutStatus, Outcome};
use crate::engine::reasons;

/// How loud an Event (by its reason) is:
/// - error: a rollback (a breach, a crash, an abort, lost metrics or a missed progress
///   deadline all end in `RollingBack`), a failed promotion (the stable rollout failed or
///   missed its deadline);
/// - warn: a gate waiting, a pause, Prometheus unavailable or inconclusive, an invalid spec,
///   an ignored retry, a refused manual action, a stable Deployment changed by someone else;
/// - info: everything else (release started, stage advanced, promoted, succeeded, ...), so an
///   Event added later reaches `info` subscribers without a change here.
pub fn severity_of(reason: &str) -> Severity {
    match reason {
        reasons::ROLLING_BACK | reasons::PROMOTION_FAILED => Severity::Error,
        reasons::GATE_WAITING
        | reasons::PAUSED
        | reasons::PROMETHEUS_UNAVAILABLE
        | reasons::INCONCLUSIVE
        | reasons::INVALID_SPEC
        | reasons::RETRY_IGNORED
        | reasons::ACTION_REFUSED
        | reasons::STABLE_DRIFTED => Severity::Warn,
        _ => Severity::Info,
    }
}

/// The check that breached, with what it measured and its limit.
#[derive(Clone, Debug, PartialEq)]
pub struct Breach {
    pub check: String,
    pub value: f64,
    pub threshold: f64,
}

/// One alert, independent of the service it goes to.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertMessage {
    /// The Event reason (`RollingBack`, `StageAdvanced`, ...).
    pub reason: String,
    pub severity: Severity,
    pub rollout: String,
    pub namespace: String,
    pub revision: Option<String>,
    pub phase: String,
    /// Percent of users on the canary.
    pub weight: f64,
    /// The Event's message.
    pub text: String,
    pub breach: Option<Breach>,
    /// The command that acts on this event, where one applies ([`suggested_command`]).
    pub command: Option<String>,
    /// The dashboard link ([`dashboard_link`]).
    pub dashboard: Option<String>,
}

impl AlertMessage {
    /// The alert for one Event (`reason`, `text`) of rollout `name` in `namespace`, from the
    /// status the tick saved. The breached check is the last analysis's first failed check
    /// with a value and a threshold. `approve`: the approve command when the rollout waits
    /// at a manual gate. The dashboard link is left to each provider's template.
    pub fn from_event(
        name: &str,
        namespace: &str,
        status: &CanaryRolloutStatus,
        reason: &str,
        text: &str,
        approve: Option<&str>,
    ) -> AlertMessage {
        let breach = status.last_analysis.as_ref().and_then(|analysis| {
            analysis
                .checks
                .iter()
                .filter(|check| check.verdict == Outcome::Fail)
                .find_map(|check| {
                    Some(Breach {
                        check: check.name.clone(),
                        value: check.value?,
                        threshold: check.threshold?,
                    })
                })
        });
        AlertMessage {
            reason: reason.to_string(),
            severity: severity_of(reason),
            rollout: name.to_string(),
            namespace: namespace.to_string(),
            revision: status.canary_revision.clone(),
            phase: status.phase.as_str().to_string(),
            weight: status.weight,
            text: text.to_string(),
            breach,
            command: suggested_command(reason, name, namespace, approve),
            dashboard: None,
        }
    }

    /// `[ERROR] shop/checkout: RollingBack`: the title every format leads with.
    pub fn title(&self) -> String {
        format!(
            "[{}] {}/{}: {}",
            self.severity.as_str().to_ascii_uppercase(),
            self.namespace,
            self.rollout,
            self.reason
        )
    }

    /// The facts every format lists, in this order (absent ones left out).
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = vec![
            ("Rollout", self.rollout.clone()),
            ("Namespace", self.namespace.clone()),
        ];
        if let Some(revision) = &self.revision {
            facts.push(("Revision", revision.clone()));
        }
        facts.push(("Phase", self.phase.clone()));
        facts.push(("Weight", format!("{}%", self.weight)));
        if let Some(breach) = &self.breach {
            facts.push((
                "Check",
                format!(
                    "{}: {} (threshold {})",
                    breach.check, breach.value, breach.threshold
                ),
            ));
        }
        facts
    }

    /// The one-line text the plain webhook and notification fallbacks carry.
    pub fn line(&self) -> String {
        format!("{}: {}", self.reason, self.text)
    }
}

/// `stickycanary abort <rollout> -n <namespace>`.
pub fn abort_command(rollout: &str, namespace: &str) -> String {
    format!("stickycanary abort {rollout} -n {namespace}")
}

/// The command a reader can run about this event: the approve command for a manual gate
/// (`approve`, the exact command the gate's Event already gives, e.g. from
/// `gates::approve::command_hint`), the abort command while a run can still be stopped
/// (paused, Prometheus unavailable or inconclusive, stage advanced, release started, a
/// failed promotion holding users on the canary). None once the run is over.
pub fn suggested_command(
    reason: &str,
    rollout: &str,
    namespace: &str,
    approve: Option<&str>,
) -> Option<String> {
    match reason {
        reasons::GATE_WAITING => approve.map(str::to_string),
        reasons::PAUSED
        | reasons::PROMETHEUS_UNAVAILABLE
        | reasons::INCONCLUSIVE
        | reasons::STAGE_ADVANCED
        | reasons::RELEASE_STARTED
        | reasons::PROMOTION_FAILED => Some(abort_command(rollout, namespace)),
        _ => None,
    }
}

pub use crate::crd::alerts::DASHBOARD_PLACEHOLDERS;

/// `template` with `{namespace}`, `{rollout}` and `{revision}` replaced, each value
/// percent-encoded so that it stays one URL component (no revision: empty).
pub fn dashboard_link(
    template: &str,
    namespace: &str,
    rollout: &str,
    revision: Option<&str>,
) -> String {
    template
        .replace("{namespace}", &encode_component(namespace))
        .replace("{rollout}", &encode_component(rollout))
        .replace("{revision}", &encode_component(revision.unwrap_or("")))
}

/// RFC 3986 unreserved characters stay, everything else becomes %XX.
fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_has_the_severity_the_issue_names() {
        for (reason, severity) in [
            ("RollingBack", Severity::Error),
            ("PromotionFailed", Severity::Error),
            ("GateWaiting", Severity::Warn),
            ("Paused", Severity::Warn),
            ("PrometheusUnavailable", Severity::Warn),
            ("ActionRefused", Severity::Warn),
            ("StableDrifted", Severity::Warn),
            ("ReleaseStarted", Severity::Info),
            ("StageAdvanced", Severity::Info),
            ("Promoted", Severity::Info),
            ("Succeeded", Severity::Info),
            ("SomethingNew", Severity::Info),
        ] {
            assert_eq!(severity_of(reason), severity, "{reason}");
        }
    }

    #[test]
    fn a_message_takes_the_status_and_the_failed_check() {
        let status: CanaryRolloutStatus = serde_json::from_value(serde_json::json!({
            "phase": "RolledBack",
            "weight": 0.0,
            "canaryRevision": "v2",
            "lastAnalysis": {
                "at": "2026-12-06T03:39:40Z",
                "canary": {"requests": 120.0},
                "stable": {"requests": 980.0},
                "checks": [
                    {"name": "latency", "verdict": "Pass", "value": 120.0, "threshold": 500.0},
                    {"name": "error-rate", "verdict": "Fail", "value": 7.5, "threshold": 5.0},
                ],
            },
        }))
        .unwrap();
        let message = AlertMessage::from_event(
            "checkout",
            "shop",
            &status,
            "RollingBack",
            "rolling back",
            None,
        );
        assert_eq!(message.severity, Severity::Error);
        assert_eq!(message.revision.as_deref(), Some("v2"));
        assert_eq!(message.phase, "RolledBack");
        assert_eq!(
            message.breach,
            Some(Breach {
                check: "error-rate".into(),
                value: 7.5,
                threshold: 5.0
            })
        );
        assert_eq!(message.command, None);
        assert_eq!(message.line(), "RollingBack: rolling back");
    }

    #[test]
    fn commands_are_offered_while_they_can_act() {
        let approve =
            "stickycanary approve checkout --gate confirm-promotion --revision v2 -n shop";
        assert_eq!(
            suggested_command("GateWaiting", "checkout", "shop", Some(approve)).as_deref(),
            Some(approve)
        );
        assert_eq!(
            suggested_command("Paused", "checkout", "shop", None).as_deref(),
            Some("stickycanary abort checkout -n shop")
        );
        assert_eq!(
            suggested_command("RollingBack", "checkout", "shop", None),
            None
        );
        assert_eq!(
            suggested_command("GateWaiting", "checkout", "shop", None),
            None
        );
    }

    #[test]
    fn dashboard_values_are_encoded_into_the_template() {
        let link = dashboard_link(
            "https://grafana.example/d/sc?var-ns={namespace}&var-r={rollout}&rev={revision}",
            "shop",
            "check out",
            Some("v2&x=1"),
        );
        assert_eq!(
            link,
            "https://grafana.example/d/sc?var-ns=shop&var-r=check%20out&rev=v2%26x%3D1"
        );
        assert_eq!(
            dashboard_link("https://g/{revision}", "a", "b", None),
            "https://g/"
        );
    }
}
