//! `controller-bench`'s command line: `--help` documents every flag with its default, and a bad
//! flag is refused with one line on stderr and exit status 2, before Prometheus starts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_controller-bench");

#[test]
fn help_documents_every_flag_with_its_default() {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run controller-bench --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?}", out.status);
    for flag in [
        "--rollouts",
        "[default: 1,100,1000]",
        "--intervals",
        "[default: 10]",
        "--interval-ms",
        "[default: 1000]",
        "--markdown",
        "--worker",
        "--prometheus",
        "--out",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn a_bad_flag_or_value_is_one_line_on_stderr_and_exit_2() {
    for (args, says) in [
        (
            &["--bogus"][..],
            "controller-bench: unexpected argument '--bogus'",
        ),
        (&["--rollouts", "1,0"], "at least 1"),
        (&["--interval-ms", "0"], "--interval-ms"),
        (&["--worker", "5"], "--prometheus"),
    ] {
        let out = Command::new(BIN)
            .args(args)
            .output()
            .expect("run controller-bench");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr:?}");
    }
}
