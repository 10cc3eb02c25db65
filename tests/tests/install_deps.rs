//! `scripts/install-deps.sh` changes only what it installs: it is run here with `dpkg`,
//! `apt-get`, `systemctl`, `python3` and `prometheus` replaced by recording stand-ins, so
//! nothing on this machine is touched, and what it would have done is checked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use stickycanary_e2e::paths::workspace_root;

fn shim(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs install-deps.sh with `installed` packages present and a prometheus service that is
/// active from the start (`running`); returns the systemctl and apt-get calls it made.
fn run(installed: &[&str], running: bool) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let log = dir.path().join("log");
    let active = dir.path().join("prometheus-active");
    if running {
        fs::write(&active, "").unwrap();
    }
    let installed_list = installed.join(" ");
    shim(
        &bin,
        "dpkg",
        &format!("for p in {installed_list}; do [ \"$2\" = \"$p\" ] && exit 0; done; exit 1"),
    );
    // Installing the package starts its service, as a misbehaving init setup would.
    shim(
        &bin,
        "apt-get",
        &format!(
            "echo \"apt-get $*\" >> {log}; case \"$*\" in *prometheus*) touch {active};; esac; exit 0",
            log = log.display(),
            active = active.display()
        ),
    );
    shim(
        &bin,
        "systemctl",
        &format!(
            "echo \"systemctl $*\" >> {log}; case \"$1\" in is-active) [ -e {active} ];; stop) rm -f {active};; esac",
            log = log.display(),
            active = active.display()
        ),
    );
    shim(&bin, "python3", "exit 0");
    shim(&bin, "prometheus", "echo prometheus, version 2.0");
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/install-deps.sh"))
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("POLICY_RC_D", dir.path().join("policy-rc.d"))
        .env("ENVOY_BIN", "/bin/true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !dir.path().join("policy-rc.d").exists(),
        "policy-rc.d left behind"
    );
    let log = fs::read_to_string(&log).unwrap_or_default();
    let systemctl = log
        .lines()
        .filter(|l| l.starts_with("systemctl"))
        .collect::<Vec<_>>()
        .join("\n");
    let apt = log
        .lines()
        .filter(|l| l.starts_with("apt-get"))
        .collect::<Vec<_>>()
        .join("\n");
    (systemctl, apt)
}

const ALL: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "rust-web-clippy",
    "lld-22",
    "wasi-libc",
    "binaryen",
    "prometheus",
    "wrk",
    "hey",
    "nghttp2-client",
    "skopeo",
    "jq",
    "curl",
];

#[test]
fn a_prometheus_service_the_owner_runs_is_left_alone() {
    let (systemctl, apt) = run(ALL, true);
    assert!(
        !systemctl.contains("stop"),
        "stopped the owner's Prometheus: {systemctl}"
    );
    assert!(apt.is_empty(), "installed something already there: {apt}");
}

#[test]
fn a_prometheus_service_its_own_install_started_is_stopped() {
    let without: Vec<&str> = ALL.iter().copied().filter(|p| *p != "prometheus").collect();
    let (systemctl, apt) = run(&without, false);
    assert!(
        apt.contains("install") && apt.contains("prometheus"),
        "{apt}"
    );
    assert!(systemctl.contains("stop prometheus"), "{systemctl}");
}

#[test]
fn installing_something_else_leaves_a_running_prometheus_alone() {
    let without: Vec<&str> = ALL.iter().copied().filter(|p| *p != "jq").collect();
    let (systemctl, apt) = run(&without, true);
    assert!(apt.contains("jq"), "{apt}");
    assert!(!systemctl.contains("stop"), "{systemctl}");
}

/// CI enforces formatting and the lints (the data plane's deny-unwrap/expect/panic) before
/// it runs the tests.
#[test]
fn ci_runs_make_lint_before_make_test() {
    let ci = fs::read_to_string(workspace_root().join(".ci/run")).unwrap();
    let commands: Vec<&str> = ci
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let lint = commands.iter().position(|l| *l == "make lint");
    let test = commands.iter().position(|l| *l == "make test");
    assert!(
        matches!((lint, test), (Some(l), Some(t)) if l < t),
        ".ci/run must run `make lint` before `make test`:\n{ci}"
    );
    let makefile = fs::read_to_string(workspace_root().join("Makefile")).unwrap();
    assert!(makefile.contains("cargo clippy --workspace --all-targets --locked -- -D warnings"));
}

/// The minimum versions are stated alike where users and the e2e script look.
#[test]
fn minimum_versions_agree_in_readme_chart_notes_and_the_kind_script() {
    let root = workspace_root();
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let notes =
        fs::read_to_string(root.join("manifests/helm/stickycanary/templates/NOTES.txt")).unwrap();
    let script = fs::read_to_string(root.join("scripts/e2e-kind.sh")).unwrap();
    let chart = fs::read_to_string(root.join("manifests/helm/stickycanary/Chart.yaml")).unwrap();
    for (name, version) in [("Kubernetes", "1.25"), ("Istio", "1.20"), ("KEDA", "2.9")] {
        assert!(
            readme.contains(&format!("**{name} {version}**")),
            "README lacks {name} {version}"
        );
        assert!(
            notes.contains(&format!("{name} {version}")),
            "NOTES lacks {name} {version}"
        );
    }
    for line in [
        "MIN_KUBERNETES=1.25",
        "MIN_ISTIO=1.20",
        "MIN_KEDA=2.9",
        "MIN_PROMETHEUS_OPERATOR=0.50",
    ] {
        assert!(script.contains(line), "e2e-kind.sh lacks {line}");
    }
    assert!(readme.contains("0.50 or newer") && notes.contains("0.50 or newer"));
    assert!(
        chart.contains("kubeVersion: \">=1.25.0-0\""),
        "Chart.yaml kubeVersion"
    );
}
