//! `bench`'s command line: `--help` documents every flag with its default, and a bad flag is
//! refused with one line on stderr and exit status 2, before any benchmark starts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_bench");

#[test]
fn help_documents_every_flag_with_its_default() {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run bench --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?}", out.status);
    for flag in [
        "--rounds",
        "[default: 6",
        "--runs",
        "[default: 1]",
        "--duration",
        "--warmup",
        "--connections",
        "[default: 32]",
        "--users",
        "--soak-requests",
        "--soak-max-seconds",
        "--reloads",
        "--out",
        "--no-pin",
        "--no-paired",
        "--high-priority",
        "--cases",
        "--variant",
        "--probe",
        "--pair",
        "--quick",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn a_bad_flag_or_value_is_one_line_on_stderr_and_exit_2() {
    for (args, says) in [
        (&["--bogus"][..], "bench: unexpected argument '--bogus'"),
        (&["--rounds", "0"], "at least 1"),
        (&["--pair", "sc-1/sc-1"], "two different case ids"),
    ] {
        let out = Command::new(BIN).args(args).output().expect("run bench");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr:?}");
    }
}
