//! What each subcommand does (except `controller` and `local`, which live in `k8s` and
//! `local`). Output goes to stdout; errors come back as one-line [`Error`]s.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;
use stickycanary_filter::assign;
use stickycanary_filter::config::PluginConfig;

use crate::cli::{ActionArgs, AssignArgs, SimulateArgs, StatusArgs, ValidateArgs};
use crate::crd::{CanaryRollout, CanaryRolloutStatus};
use crate::engine::approve::{ApproveTarget, Place};
use crate::error::Error;
use crate::k8s::manual::{request_value, REQUEST_ANNOTATION};
use crate::local::state;
use crate::observation::ManualAction;
use crate::simulate;

/// `stickycanary assign`: the filter's own bucket and threshold.
pub fn assign(args: &AssignArgs) -> Result<String, Error> {
    let saved = match &args.status_file {
        Some(path) => Some(state::load(path)?.ok_or_else(|| Error::StatusFile {
            path: path.display().to_string(),
            reason: "does not exist".to_string(),
        })?),
        None => None,
    };
    assign_with(args, saved.as_ref().map(|s| ("--status-file", &s.status)))
}

/// `stickycanary assign --rollout NAME`: the salt and weight from the CanaryRollout's
/// status in the cluster.
pub async fn assign_in_cluster(args: &AssignArgs) -> Result<String, Error> {
    let api = cluster_api(args.namespace.as_deref()).await?;
    assign_from(args, &api).await
}

/// `assign` with the status of `--rollout` read through `api` (a real or mocked cluster).
pub async fn assign_from(args: &AssignArgs, api: &Api<CanaryRollout>) -> Result<String, Error> {
    let name = args
        .rollout
        .as_deref()
        .ok_or_else(|| Error::Invalid("--rollout is required".into()))?;
    let rollout = match api.get(name).await {
        Ok(rollout) => rollout,
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return Err(Error::Invalid(format!(
                "--rollout: CanaryRollout {name} not found in namespace {}",
                api.namespace().unwrap_or("default")
            )))
        }
        Err(e) => return Err(Error::kube("cannot read the CanaryRollout", e)),
    };
    let status = rollout.status.unwrap_or_default();
    assign_with(args, Some(("--rollout", &status)))
}

/// The assignment from the flags, with the salt and weight a status (`origin` says which
/// flag named it) supplies when the flags do not.
fn assign_with(
    args: &AssignArgs,
    saved: Option<(&str, &CanaryRolloutStatus)>,
) -> Result<String, Error> {
    let salt = match (&args.salt, saved) {
        (Some(salt), _) => salt.clone(),
        (None, Some((origin, status))) => status.salt.clone().ok_or_else(|| {
            Error::Invalid(format!(
                "{origin}: the status records no salt (no run yet, or cohort.rotate: false); pass --salt"
            ))
        })?,
        (None, None) => {
            return Err(Error::Invalid(
                "--salt, --rollout or --status-file is required".into(),
            ))
        }
    };
    let weight = match (args.weight, saved) {
        (Some(weight), _) => weight,
        (None, Some((_, status))) => status.weight,
        (None, None) => {
            return Err(Error::Invalid(
                "--weight, --rollout or --status-file is required".into(),
            ))
        }
    };
    if !weight.is_finite() || !(0.0..=100.0).contains(&weight) {
        return Err(Error::Invalid(format!(
            "--weight: must be a number from 0 to 100 (got {weight})"
        )));
    }
    let bucket = assign::bucket(&salt, &args.user);
    let threshold = assign::threshold(weight);
    let version = if assign::is_canary(bucket, weight) {
        "canary"
    } else {
        "stable"
    };
    Ok(if args.json {
        json!({"salt": salt, "user": args.user, "weight": weight,
               "bucket": bucket, "threshold": threshold, "version": version})
        .to_string()
    } else {
        format!("bucket={bucket} threshold={threshold} version={version}")
    })
}

fn read_input(path: &Path) -> Result<Vec<u8>, Error> {
    let err = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map_err(err)?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(err)
    }
}

/// `stickycanary validate`: a pluginConfig (JSON object with `rollouts`) or a CanaryRollout.
pub fn validate(args: &ValidateArgs) -> Result<String, Error> {
    if !args.more.is_empty() {
        return validate_together(args);
    }
    let bytes = read_input(&args.file)?;
    let name = args.file.display().to_string();
    // A document that opens with `{` is JSON: its own parser's error says what is wrong,
    // where the YAML parser would report something about flow mappings.
    let opens_as_json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let parsed = serde_json::from_slice::<serde_json::Value>(&bytes);
    if opens_as_json && parsed.is_err() {
        return Err(match PluginConfig::from_json(&bytes) {
            Err(e) => Error::Invalid(format!("{name}: {e}")),
            Ok(_) => Error::Invalid(format!("{name}: (root): malformed JSON")),
        });
    }
    let looks_like_plugin_config = parsed
        .map(|v| v.get("kind").is_none() && v.get("apiVersion").is_none())
        .unwrap_or(false);
    if looks_like_plugin_config {
        let config =
            PluginConfig::from_json(&bytes).map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
        let keys: Vec<&str> = config.rollouts.keys().map(String::as_str).collect();
        return Ok(format!(
            "{name}: valid pluginConfig with {} rollout(s): {}",
            keys.len(),
            keys.join(", ")
        ));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| Error::Invalid(format!("{name}: not UTF-8 text")))?;
    crate::validate::documents::validate_yaml(&name, &text).map_err(Error::Invalid)
}

/// `stickycanary validate A.yaml B.yaml ...`: the files' documents as one, so references
/// between them are followed.
fn validate_together(args: &ValidateArgs) -> Result<String, Error> {
    let mut names = Vec::new();
    let mut texts = Vec::new();
    for path in std::iter::once(&args.file).chain(&args.more) {
        let name = path.display().to_string();
        let bytes = read_input(path)?;
        texts.push(
            String::from_utf8(bytes)
                .map_err(|_| Error::Invalid(format!("{name}: not UTF-8 text")))?,
        );
        names.push(name);
    }
    // Each file's documents stay apart: `---` between files (an empty document is skipped).
    crate::validate::documents::validate_yaml(&names.join(", "), &texts.join("\n---\n"))
        .map_err(Error::Invalid)
}

/// A status as a few readable lines.
/// The release lifecycle's part of `status`: revisions, the run's cohort, what failed.
fn release_lines(status: &CanaryRolloutStatus) -> String {
    let Some(canary) = &status.canary_revision else {
        return String::new();
    };
    let or_dash = |r: &Option<String>| r.clone().unwrap_or_else(|| "-".to_string());
    let mut out = format!(
        "\n  release: canary {canary} (run {}, salt {}) | stable {} | last promoted {} | last failed {}",
        status.attempt.max(1),
        or_dash(&status.salt),
        or_dash(&status.stable_revision),
        or_dash(&status.last_promoted_revision),
        or_dash(&status.failed_revision),
    );
    if let Some(reason) = &status.failure_reason {
        out.push_str(&format!("\n  failure: {reason}"));
    }
    if let Some(at) = &status.scale_down_at {
        out.push_str(&format!("\n  canary scale-down at {}", at.0));
    }
    out
}

pub fn describe_status(name: &str, status: &CanaryRolloutStatus) -> String {
    let mut out = format!(
        "{name}: {} stage {} weight {}%",
        status.phase,
        status.stage_index + 1,
        status.weight
    );
    if let Some(started) = &status.stage_started_at {
        out.push_str(&format!(" (stage started {})", started.0));
    }
    if let Some(reason) = &status.rollback_reason {
        out.push_str(&format!("\n  rollback reason: {reason}"));
    }
    out.push_str(&release_lines(status));
    if let Some(wait) = &status.gate {
        out.push_str(&format!("\n  {} since {}", wait.describe(), wait.since.0));
    }
    if let Some(analysis) = &status.last_analysis {
        let fmt = |v: Option<f64>, unit: &str| {
            v.map(|x| format!("{x:.2}{unit}"))
                .unwrap_or_else(|| "-".into())
        };
        out.push_str(&format!(
            "\n  last analysis {}: canary {} req err {} p99 {} | stable {} req err {} p99 {}",
            analysis.at.0,
            analysis.canary.requests,
            fmt(analysis.canary.error_rate_percent, "%"),
            fmt(analysis.canary.p99_ms, "ms"),
            analysis.stable.requests,
            fmt(analysis.stable.error_rate_percent, "%"),
            fmt(analysis.stable.p99_ms, "ms"),
        ));
        for check in &analysis.checks {
            out.push_str(&format!(
                "\n    {}: {:?} {}",
                check.name, check.verdict, check.message
            ));
        }
    }
    if let Some(since) = &status.prometheus_unavailable_since {
        out.push_str(&format!("\n  prometheus unavailable since {}", since.0));
    }
    for t in status.history.iter().rev().take(5) {
        out.push_str(&format!(
            "\n  {} {} -> {} stage {} weight {}%: {}",
            t.at.0,
            t.from,
            t.to,
            t.stage_index + 1,
            t.weight,
            t.reason
        ));
    }
    out
}

fn local_status(path: &Path, name: Option<&str>) -> Result<String, Error> {
    let local = state::load(path)?.ok_or_else(|| Error::StatusFile {
        path: path.display().to_string(),
        reason: "does not exist (has `stickycanary local` run?)".to_string(),
    })?;
    if let Some(name) = name {
        if name != local.rollout {
            return Err(Error::StatusFile {
                path: path.display().to_string(),
                reason: format!("holds rollout {:?}, not {name:?}", local.rollout),
            });
        }
    }
    let running = match state::running_pid(path) {
        Some(pid) => format!(" [local loop running, pid {pid}]"),
        None => String::new(),
    };
    let mut text = format!(
        "{}{running}",
        describe_status(&local.rollout, &local.status)
    );
    let target = ApproveTarget::local(&local.rollout, path);
    if let Some(hint) = target.hint(&local.status) {
        text.push_str(&format!("\n  to approve: {hint}"));
    }
    Ok(text)
}

async fn cluster_api(namespace: Option<&str>) -> Result<Api<CanaryRollout>, Error> {
    let client = Client::try_default()
        .await
        .map_err(|e| Error::kube("no cluster configuration", e))?;
    Ok(match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::default_namespaced(client),
    })
}

async fn cluster_status(args: &StatusArgs) -> Result<String, Error> {
    let api = cluster_api(args.namespace.as_deref()).await?;
    match &args.name {
        Some(name) => {
            let rollout = api.get(name).await?;
            let status = rollout.status.unwrap_or_default();
            let mut text = describe_status(name, &status);
            let target = ApproveTarget {
                name: name.clone(),
                place: Place::Cluster {
                    namespace: rollout.metadata.namespace,
                },
            };
            if let Some(hint) = target.hint(&status) {
                text.push_str(&format!("\n  to approve: {hint}"));
            }
            Ok(text)
        }
        None => {
            let list = api.list(&Default::default()).await?;
            let lines: Vec<String> = list
                .items
                .iter()
                .map(|r| {
                    let s = r.status.clone().unwrap_or_default();
                    format!(
                        "{:<30} {:<12} stage {:<3} weight {}%",
                        r.metadata.name.as_deref().unwrap_or_default(),
                        s.phase,
                        s.stage_index + 1,
                        s.weight
                    )
                })
                .collect();
            Ok(if lines.is_empty() {
                "no CanaryRollouts".to_string()
            } else {
                lines.join("\n")
            })
        }
    }
}

/// `stickycanary status`.
pub async fn status(args: &StatusArgs) -> Result<(), Error> {
    loop {
        let text = match &args.status_file {
            Some(path) => local_status(path, args.name.as_deref())?,
            None => cluster_status(args).await?,
        };
        println!("{text}");
        if !args.watch {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        println!();
    }
}

/// `stickycanary promote|abort|pause|resume`.
pub async fn manual(args: &ActionArgs, action: ManualAction) -> Result<String, Error> {
    let verb = action.as_str();
    if let Some(path) = &args.status_file {
        if let Some(pid) = state::running_pid(path) {
            state::queue_request(path, &args.name, action)?;
            return Ok(format!(
                "{verb} queued for {} (the local loop, pid {pid}, applies it now)",
                args.name
            ));
        }
        let status = crate::local::apply_directly(path, &args.name, action).await?;
        return Ok(format!(
            "{verb} applied to {} (no local loop running): {} weight {}%",
            args.name, status.phase, status.weight
        ));
    }
    let api = cluster_api(args.namespace.as_deref()).await?;
    let params = PatchParams {
        field_manager: Some(crate::field_managers::CLI.to_string()),
        ..PatchParams::default()
    };
    let patch = match action {
        // Pause is declarative: spec.paused stays until resumed.
        ManualAction::Pause => json!({"spec": {"paused": true}}),
        ManualAction::Resume => json!({"spec": {"paused": false}}),
        ManualAction::Promote | ManualAction::Abort | ManualAction::Retry => {
            json!({"metadata": {"annotations": {REQUEST_ANNOTATION: request_value(action)}}})
        }
    };
    api.patch(&args.name, &params, &Patch::Merge(&patch))
        .await?;
    Ok(format!("{verb} requested for {}", args.name))
}

/// `stickycanary approve`.
pub async fn approve(args: &crate::cli::ApproveArgs) -> Result<String, Error> {
    let gate = crate::engine::approve::parse_gate(&args.gate).map_err(Error::Invalid)?;
    if let Some(path) = &args.status_file {
        return crate::local::approve::approve_local(
            path,
            &args.name,
            gate,
            args.revision.as_deref(),
        );
    }
    let api = cluster_api(args.namespace.as_deref()).await?;
    crate::k8s::approve::approve_in_cluster(&api, &args.name, gate, args.revision.as_deref()).await
}

/// `stickycanary simulate`: the analysis simulation's Markdown tables; progress on stderr.
pub fn simulate(args: &SimulateArgs) -> Result<String, Error> {
    let mut options = if args.quick {
        simulate::Options::quick()
    } else {
        simulate::Options::full()
    };
    if let Some(seed) = args.seed {
        options.seed = seed;
    }
    if let Some(runs) = args.healthy_runs {
        options.healthy_runs = runs;
    }
    if let Some(runs) = args.regression_runs {
        options.regression_runs = runs;
    }
    if let Some(threads) = args.threads {
        options.threads = threads.max(1);
    }
    options.users = simulate::users::UserModel {
        users: args.users as usize,
        activity_sigma: args.activity_sigma,
    };
    options.only = args.only.clone();
    if let Some(only) = &options.only {
        if !simulate::scenario::catalog()
            .iter()
            .any(|scenario| scenario.name.contains(only.as_str()))
        {
            return Err(Error::Invalid(format!(
                "--only {only:?}: no scenario's name contains it (the tables list every name)"
            )));
        }
    }
    let started = std::time::Instant::now();
    let results = simulate::simulate_all(&options);
    eprintln!(
        "simulated {} rollouts in {:.1}s",
        results.iter().map(|result| result.runs).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    Ok(simulate::render_markdown(&results, &options))
}
