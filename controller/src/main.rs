//! The `stickycanary` binary: parse the command line, run the subcommand, and turn any error
//! into one line on stderr with a non-zero exit (never a backtrace).

use std::process::ExitCode;

use clap::Parser;
use stickycanary::cli::{Cli, Command, CrdKind, LogFormat};
use stickycanary::observation::ManualAction;
use stickycanary::{commands, k8s, local};

/// Colour codes only for a person at a terminal: never when stderr goes to a pipe, a file or
/// a log collector, and never when `NO_COLOR` is set to anything non-empty (no-color.org).
fn log_colours(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

fn init_tracing(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let colours = log_colours(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR"),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Controller(args) => {
            init_tracing(cli.log_format, "info,kube=warn");
            k8s::run(args).await?;
        }
        Command::Local(args) => {
            let args = *args;
            init_tracing(cli.log_format, "warn");
            let rollout = local::load_rollout(&args.rollout)?;
            let status_file = match args.status_file.clone() {
                Some(path) => path,
                None => local::default_status_file(
                    rollout.metadata.name.as_deref().unwrap_or("rollout"),
                    &args.rollout,
                    &args.envoy_ecds,
                )?,
            };
            let options = local::LocalOptions {
                rollout_file: args.rollout,
                envoy_ecds: args.envoy_ecds,
                prometheus: args.prometheus,
                prometheus_access: local::prometheus::PrometheusAccess {
                    address: String::new(),
                    bearer_token_file: args.prometheus_bearer_token_file,
                    basic_auth_user: args.prometheus_basic_auth_user,
                    basic_auth_password_file: args.prometheus_basic_auth_password_file,
                    ca_file: args.prometheus_ca_file,
                    headers: args.prometheus_header,
                    insecure_skip_verify: args.prometheus_insecure_skip_verify,
                },
                status_file,
                once: args.once,
                metrics_addr: args.metrics_addr,
                metrics_linger: args.metrics_linger.as_std(),
                hooks: local::hooks::Hooks {
                    on_scale_up: args.on_scale_up,
                    on_promote: args.on_promote,
                    on_scale_down: args.on_scale_down,
                    timeout: args.hook_timeout.as_std(),
                },
                alert_providers: args.alert_providers.map(|providers_file| {
                    local::alerts::FileObjects {
                        providers_file,
                        secrets_dir: args.alert_secrets_dir,
                    }
                }),
            };
            let mut stdout = std::io::stdout();
            local::run(&options, &mut stdout).await?;
        }
        Command::Status(args) => commands::status(&args).await?,
        Command::Promote(args) => {
            println!("{}", commands::manual(&args, ManualAction::Promote).await?)
        }
        Command::Abort(args) => println!("{}", commands::manual(&args, ManualAction::Abort).await?),
        Command::Pause(args) => println!("{}", commands::manual(&args, ManualAction::Pause).await?),
        Command::Resume(args) => {
            println!("{}", commands::manual(&args, ManualAction::Resume).await?)
        }
        Command::Retry(args) => println!("{}", commands::manual(&args, ManualAction::Retry).await?),
        Command::Approve(args) => println!("{}", commands::approve(&args).await?),
        Command::Crd(args) => print!(
            "{}",
            match args.kind {
                CrdKind::Canaryrollout => stickycanary::crd::crd_yaml(),
                CrdKind::Alertprovider => stickycanary::crd::alert_provider_crd_yaml(),
            }
        ),
        Command::Assign(args) if args.rollout.is_some() => {
            println!("{}", commands::assign_in_cluster(&args).await?)
        }
        Command::Assign(args) => println!("{}", commands::assign(&args)?),
        Command::Validate(args) => println!("{}", commands::validate(&args)?),
        Command::Simulate(args) => print!("{}", commands::simulate(&args)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// The one line a panic prints: its message and where it happened, so a bug report
/// carries the place to look (no backtrace, which is not one line).
fn panic_line(info: &std::panic::PanicHookInfo<'_>) -> String {
    let message = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".to_string());
    let location = info
        .location()
        .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    format!(
        "error: internal error: {}{location}",
        message.replace('\n', " ")
    )
}

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("{}", panic_line(info))));
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // Each line of a multi-problem error (validate) is its own complete message.
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    #[test]
    fn log_colours_only_on_a_terminal_without_no_color() {
        use super::log_colours;
        assert!(log_colours(true, None));
        assert!(
            log_colours(true, Some("".into())),
            "an empty NO_COLOR is unset"
        );
        assert!(!log_colours(true, Some("1".into())));
        assert!(!log_colours(false, None));
        assert!(!log_colours(false, Some("1".into())));
    }

    #[test]
    fn a_panic_prints_one_line_with_its_file_and_line() {
        let captured = Arc::new(Mutex::new(String::new()));
        let sink = captured.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            *sink.lock().unwrap() = super::panic_line(info);
        }));
        let line = line!() + 1;
        let result = std::panic::catch_unwind(|| panic!("bad\nthing {}", 42));
        std::panic::set_hook(previous);
        assert!(result.is_err());
        let text = captured.lock().unwrap().clone();
        assert!(
            text.starts_with("error: internal error: bad thing 42 at "),
            "{text}"
        );
        assert!(text.contains(&format!("main.rs:{line}:")), "{text}");
        assert!(!text.contains('\n'));
    }
}
