//! The `stickycanary` command line (contract 6), as clap derive types. `main.rs` runs them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "stickycanary",
    version,
    about = "Sticky per-user canary rollouts for Envoy and Istio: staged promotion, metric-driven rollback",
    long_about = "stickycanary steps a canary's weight through stages (10 -> 25 -> 50 -> 100 by default) \
while per-version error rate and p99 latency from Prometheus stay healthy, and rolls back to 0 when \
they breach. Users stay on the version they were given: assignment is a hash of the user id.",
    after_help = "Examples:\n  \
stickycanary local --rollout rollout.yaml --envoy-ecds /run/envoy/filter.ecds.json --prometheus http://127.0.0.1:9090\n  \
stickycanary status checkout --status-file checkout.status.json --watch\n  \
stickycanary abort checkout --status-file checkout.status.json\n  \
stickycanary assign --salt checkout --weight 25 --user u42\n  \
stickycanary validate rollout.yaml\n  \
stickycanary simulate --quick\n  \
stickycanary crd > canaryrollouts.yaml\n  \
stickycanary controller --metrics-addr 0.0.0.0:8080"
)]
pub struct Cli {
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "STICKYCANARY_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run in the cluster: watch CanaryRollouts, drive WasmPlugin weights, serve /metrics, /healthz and /readyz
    #[command(
        after_help = "Example:\n  stickycanary controller --metrics-addr 0.0.0.0:8080 --lease-namespace stickycanary"
    )]
    Controller(ControllerArgs),

    /// Drive a standalone Envoy through its ECDS file with the same engine and a CanaryRollout YAML
    #[command(
        after_help = "Example:\n  stickycanary local --rollout examples/rollout.yaml \\\n    \
--envoy-ecds .scratch/envoy/filter.ecds.json --prometheus http://127.0.0.1:9090 \\\n    \
--status-file .scratch/checkout.status.json\n\n\
Stops with exit status 0 when the rollout is Promoted or RolledBack (the status file says which),\n\
or on Ctrl-C. With spec.canary.revision in the file it runs the release lifecycle instead and keeps\n\
running: editing the revision starts the next release (--on-scale-up, --on-promote, --on-scale-down). Run the same command again to resume from the status file.\n\
With --metrics-addr it serves the controller's /metrics while it runs, and for --metrics-linger\n\
after the rollout finishes (Ctrl-C ends that wait)."
    )]
    Local(Box<LocalArgs>),

    /// Show a rollout's progress (local status file, or the CanaryRollout in the cluster)
    #[command(
        after_help = "Examples:\n  stickycanary status checkout --status-file checkout.status.json\n  \
stickycanary status checkout -n shop --watch\n  stickycanary status -n shop"
    )]
    Status(StatusArgs),

    /// Skip the remaining stages and go to 100%
    Promote(ActionArgs),
    /// Roll back to 0% now
    Abort(ActionArgs),
    /// Hold the current weight and freeze the stage timer
    Pause(ActionArgs),
    /// Continue after pause
    Resume(ActionArgs),
    /// Run the last failed revision again, with a new cohort (release lifecycle)
    Retry(ActionArgs),
    /// Open a manual gate (`approval: manual`) for one revision; survives restarts
    #[command(after_help = "Examples:\n  stickycanary approve checkout -n shop\n  \
stickycanary approve checkout --gate confirm-rollout --status-file checkout.status.json\n\n\
The approval is for the revision the rollout waits at (or --revision): an approval of v2 never\n\
lets v3 through. In the cluster it is a patch of the CanaryRollout's status subresource, so who\n\
may approve is who may patch canaryrollouts/status (see SECURITY.md).")]
    Approve(ApproveArgs),

    /// Print a CRD's YAML (CanaryRollout by default, or AlertProvider), generated from the
    /// Rust types
    #[command(after_help = "Examples:\n  stickycanary crd > canaryrollouts.yaml\n  \
stickycanary crd alertprovider > alertproviders.yaml")]
    Crd(CrdArgs),

    /// Print a user's bucket and version, using exactly the filter's assignment code
    #[command(
        after_help = "Example:\n  stickycanary assign --salt checkout --weight 25 --user u42\n  \
bucket=... threshold=2500 version=stable|canary\n  \
stickycanary assign --rollout checkout -n shop --user u42   (salt and weight from the status)"
    )]
    Assign(AssignArgs),

    /// Check a pluginConfig (JSON) or a CanaryRollout (YAML) and print clear errors
    #[command(
        after_help = "Examples:\n  stickycanary validate plugin-config.json\n  stickycanary validate rollout.yaml"
    )]
    Validate(ValidateArgs),

    /// Simulate thousands of rollouts through the real decision engine and print how often
    /// healthy canaries roll back and how fast regressions are caught (Markdown tables)
    #[command(
        after_help = "Examples:\n  stickycanary simulate --quick        # 200 healthy / 60 regressed rollouts per scenario, seconds\n  \
stickycanary simulate                # the full run recorded in BENCHMARKS.md (## Analysis)\n  \
stickycanary simulate --seed 7       # another seed; the same seed always gives the same figures\n  \
stickycanary simulate --only 'users broken' --users 500 --activity-sigma 2   # a population like yours"
    )]
    Simulate(SimulateArgs),
}

#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// Where /metrics, /healthz and /readyz listen
    #[arg(
        long,
        default_value = "0.0.0.0:8080",
        env = "STICKYCANARY_METRICS_ADDR"
    )]
    pub metrics_addr: SocketAddr,
    /// Only watch CanaryRollouts in this namespace (default: all namespaces)
    #[arg(long, env = "STICKYCANARY_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Name of the coordination.k8s.io Lease used for leader election
    #[arg(long, default_value = "stickycanary-leader")]
    pub lease_name: String,
    /// Namespace of the Lease (the controller's own namespace)
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (the pod name)
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a Lease stays valid without renewal, in seconds
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Timeout of each WasmPlugin read or patch, in seconds
    #[arg(long, default_value_t = 10)]
    pub patch_timeout_seconds: u64,
    /// Timeout of each Prometheus query, in seconds (default: the patch timeout, which set
    /// both before this flag existed)
    #[arg(long)]
    pub prometheus_timeout_seconds: Option<u64>,
}

impl ControllerArgs {
    /// The timeout of each WasmPlugin read or patch.
    pub fn patch_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.patch_timeout_seconds.max(1))
    }

    /// The timeout of each Prometheus query.
    pub fn prometheus_timeout(&self) -> std::time::Duration {
        self.prometheus_timeout_seconds
            .map(|seconds| std::time::Duration::from_secs(seconds.max(1)))
            .unwrap_or_else(|| self.patch_timeout())
    }
}

#[derive(Args, Debug)]
pub struct LocalArgs {
    /// CanaryRollout YAML (the same shape as the cluster resource)
    #[arg(long)]
    pub rollout: PathBuf,
    /// Envoy's ECDS file (filter.ecds.json); rewritten through a temporary file and a rename
    #[arg(long)]
    pub envoy_ecds: PathBuf,
    /// Prometheus base URL (overrides spec.prometheus.address); user:password@ in it is sent
    /// as Basic auth
    #[arg(long)]
    pub prometheus: Option<String>,
    /// File holding a bearer token for Prometheus (stands in for
    /// spec.prometheus.bearerTokenSecretRef, which local mode cannot read)
    #[arg(
        long,
        value_name = "FILE",
        env = "STICKYCANARY_PROMETHEUS_BEARER_TOKEN_FILE"
    )]
    pub prometheus_bearer_token_file: Option<PathBuf>,
    /// Basic-auth username for Prometheus, with --prometheus-basic-auth-password-file
    /// (stands in for spec.prometheus.basicAuth.username; not with a bearer token)
    #[arg(
        long,
        value_name = "USER",
        env = "STICKYCANARY_PROMETHEUS_BASIC_AUTH_USER"
    )]
    pub prometheus_basic_auth_user: Option<String>,
    /// File holding the basic-auth password for Prometheus (stands in for
    /// spec.prometheus.basicAuth.password)
    #[arg(
        long,
        value_name = "FILE",
        env = "STICKYCANARY_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE"
    )]
    pub prometheus_basic_auth_password_file: Option<PathBuf>,
    /// PEM CA bundle trusted for Prometheus besides the host's (stands in for
    /// spec.prometheus.ca)
    #[arg(long, value_name = "FILE", env = "STICKYCANARY_PROMETHEUS_CA_FILE")]
    pub prometheus_ca_file: Option<PathBuf>,
    /// Header sent with every Prometheus query, e.g. 'X-Scope-OrgID: t1' (repeatable; stands
    /// in for spec.prometheus.headers[].valueFrom, and replaces a spec header of its name)
    #[arg(long, value_name = "'NAME: VALUE'", value_parser = crate::local::prometheus::parse_header)]
    pub prometheus_header: Vec<(String, String)>,
    /// Do not verify Prometheus's TLS certificate (test setups only; warns)
    #[arg(long)]
    pub prometheus_insecure_skip_verify: bool,
    /// Where the status is kept (default: NAME.status.json, NAME the rollout's, next to the rollout
    /// file; never in the ECDS file's directory, which Envoy watches)
    #[arg(long)]
    pub status_file: Option<PathBuf>,
    /// Run one interval and exit
    #[arg(long)]
    pub once: bool,
    /// Serve /metrics, /healthz and /readyz here, as `controller` does (e.g. 127.0.0.1:8080)
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// With --metrics-addr: keep serving this long after the rollout finishes, so Prometheus
    /// scrapes the final phase and the rollback count (0s: exit at once)
    #[arg(long, default_value = "30s")]
    pub metrics_linger: crate::duration::Duration,
    /// Release lifecycle: command that starts the canary on a new revision; the run goes on
    /// when it exits 0 (run by `sh -c` with STICKYCANARY_ROLLOUT, STICKYCANARY_REVISION and
    /// STICKYCANARY_ACTION set)
    #[arg(long, value_name = "COMMAND")]
    pub on_scale_up: Option<String>,
    /// Release lifecycle: command that makes stable serve the promoted revision and returns
    /// when it is ready (without it a promotion stops at 100%)
    #[arg(long, value_name = "COMMAND")]
    pub on_promote: Option<String>,
    /// Release lifecycle: command that stops the canary (after a promotion or a rollback)
    #[arg(long, value_name = "COMMAND")]
    pub on_scale_down: Option<String>,
    /// How long each --on-* command may run before it counts as failed
    #[arg(long, default_value = "120s", value_name = "DURATION")]
    pub hook_timeout: crate::duration::Duration,
    /// AlertProviders for the rollout's `spec.alerts` (YAML, the same documents as in a
    /// cluster); their Secrets as Secret documents in the same file or in --alert-secrets-dir
    #[arg(long, value_name = "FILE", env = "STICKYCANARY_ALERT_PROVIDERS")]
    pub alert_providers: Option<PathBuf>,
    /// The providers' Secrets laid out as a mounted Secret volume: DIR/SECRET-NAME/KEY
    #[arg(long, value_name = "DIR", env = "STICKYCANARY_ALERT_SECRETS_DIR")]
    pub alert_secrets_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The rollout (required with --status-file only to check it matches)
    pub name: Option<String>,
    /// Local mode: read this status file instead of the cluster
    #[arg(long)]
    pub status_file: Option<PathBuf>,
    /// Namespace in the cluster (default: the kubeconfig's)
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Keep printing, once a second, until interrupted
    #[arg(long, short = 'w')]
    pub watch: bool,
}

#[derive(Args, Debug)]
pub struct ActionArgs {
    /// The rollout (CanaryRollout name)
    pub name: String,
    /// Local mode: the status file of `stickycanary local`. A running loop picks the action up
    /// within a tenth of a second; if none runs, it is applied directly
    #[arg(long)]
    pub status_file: Option<PathBuf>,
    /// Namespace in the cluster (default: the kubeconfig's)
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// The rollout (CanaryRollout name)
    pub name: String,
    /// The gate: confirm-rollout, confirm-traffic-increase or confirm-promotion
    #[arg(long, default_value = "confirm-promotion")]
    pub gate: String,
    /// The revision to approve (default: the one the rollout waits at)
    #[arg(long)]
    pub revision: Option<String>,
    /// Local mode: the status file of `stickycanary local`
    #[arg(long)]
    pub status_file: Option<PathBuf>,
    /// Namespace in the cluster (default: the kubeconfig's)
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

#[derive(Args, Debug)]
pub struct AssignArgs {
    /// The rollout's salt (default in the plugin config: the rollout name). With the release
    /// lifecycle each run has its own: take it from --rollout or --status-file instead
    #[arg(long, required_unless_present_any = ["status_file", "rollout"])]
    pub salt: Option<String>,
    /// Local mode's status file: the salt (and, without --weight, the weight) of the run in
    /// progress
    #[arg(long, conflicts_with = "rollout")]
    pub status_file: Option<PathBuf>,
    /// A CanaryRollout in the cluster: the salt (and, without --weight, the weight) from its
    /// status. Needs `get` on canaryrollouts in its namespace
    #[arg(long)]
    pub rollout: Option<String>,
    /// Namespace of --rollout (default: the kubeconfig's)
    #[arg(long, short = 'n', requires = "rollout")]
    pub namespace: Option<String>,
    /// Canary weight in percent, 0 to 100 (default with --rollout or --status-file: the
    /// status's weight)
    #[arg(long, required_unless_present_any = ["status_file", "rollout"])]
    pub weight: Option<f64>,
    /// The user id (the identity header or cookie value)
    #[arg(long)]
    pub user: String,
    /// Print JSON instead of key=value
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CrdArgs {
    /// Which CRD to print
    #[arg(value_enum, default_value_t = CrdKind::Canaryrollout)]
    pub kind: CrdKind,
}

/// The custom resources stickycanary defines.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrdKind {
    Canaryrollout,
    Alertprovider,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// A pluginConfig JSON file, or YAML ("-" for stdin): a CanaryRollout, or several
    /// documents (CanaryRollouts, AlertProviders, Secrets)
    pub file: PathBuf,
    /// More YAML files checked together with FILE, so that references between them are
    /// followed (a rollout's alert provider, a provider's Secret)
    pub more: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// A small run (200 healthy / 60 regressed rollouts per scenario) instead of the full one
    #[arg(long)]
    pub quick: bool,
    /// Base seed; the same seed gives the same figures
    #[arg(long)]
    pub seed: Option<u64>,
    /// Rollouts per healthy scenario (overrides the --quick and default counts)
    #[arg(long)]
    pub healthy_runs: Option<usize>,
    /// Rollouts per regression scenario
    #[arg(long)]
    pub regression_runs: Option<usize>,
    /// Worker threads (default: all cores; the figures do not depend on it)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Ordinary users in each simulated population (the analysis sees users, not requests:
    /// with fewer users a bug that breaks a few percent of them is a few users)
    #[arg(long, default_value_t = crate::simulate::users::USERS as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub users: u32,
    /// How unequal the users' activity is: σ of ln(request rate). 1.5 puts about 20% of the
    /// requests on the top 1% of users, 2.0 about 37%, 1.0 about 9%
    #[arg(long, default_value_t = crate::simulate::users::ACTIVITY_SIGMA, value_parser = activity_sigma)]
    pub activity_sigma: f64,
    /// Only the scenarios whose name contains this text (each gives the same figures as in
    /// the full run)
    #[arg(long, value_name = "TEXT")]
    pub only: Option<String>,
}

fn activity_sigma(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(sigma) if (0.0..=4.0).contains(&sigma) => Ok(sigma),
        Ok(_) => Err("must be between 0 and 4".to_string()),
        Err(_) => Err(format!("{value:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::{Cli, Command};

    fn controller(args: &[&str]) -> super::ControllerArgs {
        let argv = ["stickycanary", "controller"].iter().chain(args);
        match Cli::try_parse_from(argv).map(|cli| cli.command) {
            Ok(Command::Controller(args)) => args,
            other => panic!("not a controller command: {other:?}"),
        }
    }

    #[test]
    fn the_prometheus_timeout_follows_the_patch_timeout_unless_it_is_given() {
        let old_style = controller(&["--patch-timeout-seconds", "30"]);
        assert_eq!(old_style.patch_timeout(), Duration::from_secs(30));
        assert_eq!(old_style.prometheus_timeout(), Duration::from_secs(30));
        let split = controller(&[
            "--patch-timeout-seconds",
            "30",
            "--prometheus-timeout-seconds",
            "4",
        ]);
        assert_eq!(split.patch_timeout(), Duration::from_secs(30));
        assert_eq!(split.prometheus_timeout(), Duration::from_secs(4));
        assert_eq!(
            controller(&[]).prometheus_timeout(),
            Duration::from_secs(10)
        );
    }
}
