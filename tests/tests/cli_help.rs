//! The harness binaries' command lines: `--help` documents every flag with its default, and a
//! bad flag is refused with one line on stderr and exit status 2 (scripts and `make` read it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"))
}

fn assert_help_lists(bin: &str, flags: &[&str]) {
    let out = run(bin, &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{bin} --help: {:?}", out.status);
    assert!(help.contains("Usage:"), "{bin} --help:\n{help}");
    for flag in flags {
        assert!(help.contains(flag), "{bin} --help lacks {flag}:\n{help}");
    }
}

/// One line on stderr naming the program and the problem, nothing on stdout, exit 2.
fn assert_refused(bin: &str, args: &[&str], says: &str) {
    let out = run(bin, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{bin} {args:?}: stderr {stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{bin} {args:?}: stderr {stderr:?}"
    );
    assert!(stderr.contains(says), "{bin} {args:?}: stderr {stderr:?}");
    assert!(
        out.stdout.is_empty(),
        "{bin} {args:?}: stdout {:?}",
        out.stdout
    );
}

#[test]
fn sc_backend_help_documents_every_flag_and_bad_input_is_one_line_exit_2() {
    let bin = env!("CARGO_BIN_EXE_sc-backend");
    assert_help_lists(
        bin,
        &[
            "--listen",
            "--name",
            "--error-ratio",
            "--error-status",
            "[default: 503]",
            "--delay-ms",
            "/__control",
        ],
    );
    assert_refused(
        bin,
        &["--bogus"],
        "sc-backend: unexpected argument '--bogus'",
    );
    assert_refused(bin, &["--listen", "127.0.0.1:0"], "--name");
    assert_refused(bin, &["--listen=0.0.0.0:0", "--name=x"], "loopback");
    assert_refused(
        bin,
        &["--listen=127.0.0.1:0", "--name=x", "--error-ratio=2"],
        "errorRatio",
    );
}

#[test]
fn sc_load_help_documents_every_flag_and_bad_input_is_one_line_exit_2() {
    let bin = env!("CARGO_BIN_EXE_sc-load");
    assert_help_lists(
        bin,
        &[
            "--target",
            "--host",
            "[default: checkout]",
            "--connections",
            "--users",
            "--first-user",
            "--requests",
            "--duration",
            "--rate",
            "--header",
            "--anonymous",
            "--path",
            "--timeout",
            "--progress",
        ],
    );
    assert_refused(bin, &["--bogus"], "sc-load: unexpected argument '--bogus'");
    assert_refused(bin, &["--target", "127.0.0.1:1"], "--requests");
    assert_refused(bin, &["--target=10.0.0.1:1", "--requests=1"], "loopback");
    assert_refused(
        bin,
        &["--target=127.0.0.1:1", "--duration=0"],
        "positive number of seconds",
    );
    assert_refused(
        bin,
        &["--target=127.0.0.1:1", "--requests=1", "--header=nocolon"],
        "name: value",
    );
}

#[test]
fn sc_rollout_timing_help_documents_runs_and_bad_input_is_one_line_exit_2() {
    let bin = env!("CARGO_BIN_EXE_sc-rollout-timing");
    assert_help_lists(bin, &["--runs", "[default: 5]"]);
    assert_refused(
        bin,
        &["--bogus"],
        "sc-rollout-timing: unexpected argument '--bogus'",
    );
    assert_refused(bin, &["--runs", "0"], "at least 1");
}

#[test]
fn sc_demo_help_says_what_it_needs_and_any_flag_is_one_line_exit_2() {
    let bin = env!("CARGO_BIN_EXE_sc-demo");
    assert_help_lists(bin, &["make demo", ".scratch/demo"]);
    assert_refused(bin, &["--bogus"], "sc-demo: unexpected argument '--bogus'");
}
