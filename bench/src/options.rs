//! Command-line options of `bench`: a clap parser ([`Cli`]) and the settings a run uses
//! ([`Options`]), with `--quick`'s shorter run applied.

use std::path::PathBuf;

use clap::Parser;
use stickycanary_e2e::cli::at_least_one;

/// Runs every peer (plain weighted routing, no-op wasm, Lua, stickycanary x3) side by side,
/// interleaved round by round, and prints medians.
///
/// Each round also runs every case at the same time as peer 1 (both Envoys on one CPU, one wrk
/// each) and compares their CPU time per request: a ratio taken over the same seconds, which a
/// noisy machine cannot skew. Needs target/stickycanary.wasm, target/stickycanary-noop.wasm and
/// a release sc-backend (scripts/bench.sh builds all three).
#[derive(Parser, Debug)]
#[command(name = "bench")]
pub struct Cli {
    /// Measured rounds per case [default: 6; 2 with --quick]
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    rounds: Option<usize>,
    /// Repeat the whole measurement N times, each with freshly started Envoys, and report
    /// the `--pair` ratios per run: a ratio can differ more between two Envoy processes than
    /// between rounds of one (the soak top-up and reload timing run only in the last run)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = at_least_one)]
    runs: usize,
    /// wrk run length per case and round, in seconds [default: 8; 2 with --quick]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    duration: Option<u64>,
    /// Unrecorded wrk run per case first, in seconds [default: 2; 1 with --quick]
    #[arg(long, value_name = "SECS")]
    warmup: Option<u64>,
    /// wrk keep-alive connections
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = at_least_one)]
    connections: usize,
    /// Distinct x-user-id values rotated by wrk
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    users: u64,
    /// Top every Envoy up to N requests before the final RSS [default: 1000000; 0 with --quick]
    #[arg(long, value_name = "N")]
    soak_requests: Option<u64>,
    /// But spend at most this many seconds of top-up per case
    #[arg(long, value_name = "SECS", default_value_t = 25)]
    soak_max_seconds: u64,
    /// Config reloads timed, each direction [default: 5; 2 with --quick]
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    reloads: Option<usize>,
    /// Where results.json and the markdown fragment go [default: target/bench]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Do not pin Envoy to CPU 0 and wrk/backends to CPU 1
    #[arg(long)]
    no_pin: bool,
    /// Skip the paired runs (each case at the same time as peer 1)
    #[arg(long)]
    no_paired: bool,
    /// Run bench and every child at nice -20 (needs root or CAP_SYS_NICE): on a machine shared
    /// with other jobs, keeps them from stealing Envoy's core mid-run; the report says when it
    /// was used
    #[arg(long)]
    high_priority: bool,
    /// Only these cases (weighted, noop-wasm, lua, sc-1, sc-50, sc-anon, or added ones); peer 1
    /// (weighted) always runs
    #[arg(long, value_name = "ID,ID", value_delimiter = ',')]
    cases: Option<Vec<String>>,
    /// Add a one-rollout stickycanary case running another .wasm build (profiling: compare
    /// filter variants in the same run); repeatable. A NAME starting with `diag-` marks a
    /// cut-down build whose routing may differ: its sanity check only asks that it serves
    #[arg(long, value_name = "NAME=PATH.wasm", value_parser = variant)]
    variant: Vec<(String, PathBuf)>,
    /// Add a hostcall-probe case (target/stickycanary-probe.wasm, built by
    /// scripts/bench-build-noop.sh probe) doing OPS per request, from: authority, path, user,
    /// pairs, rawpairs, remove, set, split, scatter, clear, clock, code, duration, counter, histogram,
    /// shard, spread (case id: probe:NAME); repeatable
    #[arg(long, value_name = "NAME=OP,OP", value_parser = probe)]
    probe: Vec<(String, String)>,
    /// Every round, also load cases A and B at the same time (both Envoys on one CPU, one wrk
    /// each) and report B's CPU time per request over A's: A's throughput relative to B over
    /// the same seconds (1.00 for two identical modules); repeatable
    #[arg(long, value_name = "A/B", value_parser = pair)]
    pair: Vec<(String, String)>,
    /// 2 rounds of 2 s, 1 s warm-up, no soak, 2 reloads (debugging the harness); flags given
    /// explicitly still win
    #[arg(long)]
    quick: bool,
}

fn variant(spec: &str) -> Result<(String, PathBuf), String> {
    spec.split_once('=')
        .filter(|(name, path)| !name.is_empty() && !path.is_empty())
        .map(|(name, path)| (name.to_string(), PathBuf::from(path)))
        .ok_or_else(|| format!("expected NAME=PATH.wasm (got {spec:?})"))
}

fn probe(spec: &str) -> Result<(String, String), String> {
    spec.split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, ops)| (name.to_string(), ops.to_string()))
        .ok_or_else(|| format!("expected NAME=OP,OP,... (got {spec:?})"))
}

fn pair(spec: &str) -> Result<(String, String), String> {
    spec.split_once('/')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty() && a != b)
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .ok_or_else(|| format!("expected two different case ids A/B (got {spec:?})"))
}

#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    /// Whole measurements, each with fresh Envoys.
    pub runs: usize,
    pub duration_secs: u64,
    pub warmup_secs: u64,
    pub connections: usize,
    pub users: u64,
    pub soak_requests: u64,
    pub soak_max_secs: u64,
    pub reloads: usize,
    pub out_dir: PathBuf,
    pub pin: bool,
    /// Also run each case at the same time as peer 1, every round.
    pub paired: bool,
    /// Run at nice -20 (children inherit it).
    pub high_priority: bool,
    /// Only these case ids (peer 1 always runs: every ratio needs it).
    pub cases: Option<Vec<String>>,
    /// Extra one-rollout cases running another `.wasm` (name, path).
    pub variants: Vec<(String, PathBuf)>,
    /// Hostcall-probe cases (name, comma-separated operations).
    pub probes: Vec<(String, String)>,
    /// Case pairs `(a, b)` run at the same time every round.
    pub pairs: Vec<(String, String)>,
}

impl Cli {
    /// The run's settings; `default_out` is used when `--out` is not given.
    pub fn options(self, default_out: PathBuf) -> Options {
        // --quick shortens what was not set explicitly.
        fn pick<T>(quick: bool, full: T, short: T) -> T {
            if quick {
                short
            } else {
                full
            }
        }
        let q = self.quick;
        Options {
            rounds: self.rounds.unwrap_or(pick(q, 6, 2)),
            runs: self.runs,
            duration_secs: self.duration.unwrap_or(pick(q, 8, 2)),
            warmup_secs: self.warmup.unwrap_or(pick(q, 2, 1)),
            connections: self.connections,
            users: self.users,
            soak_requests: self.soak_requests.unwrap_or(pick(q, 1_000_000, 0)),
            soak_max_secs: self.soak_max_seconds,
            reloads: self.reloads.unwrap_or(pick(q, 5, 2)),
            out_dir: self.out.unwrap_or(default_out),
            pin: !self.no_pin,
            paired: !self.no_paired,
            high_priority: self.high_priority,
            cases: self.cases,
            variants: self.variant,
            probes: self.probe,
            pairs: self.pair,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map(|cli| cli.options(PathBuf::from("default-out")))
    }

    #[test]
    fn no_flags_give_the_documented_defaults() {
        let o = parse(&[]).expect("no flags parse");
        assert_eq!(
            (
                o.rounds,
                o.duration_secs,
                o.warmup_secs,
                o.connections,
                o.users
            ),
            (6, 8, 2, 32, 100_000)
        );
        assert_eq!(
            (o.soak_requests, o.soak_max_secs, o.reloads, o.runs),
            (1_000_000, 25, 5, 1)
        );
        assert_eq!(o.out_dir, PathBuf::from("default-out"));
        assert!(o.pin && o.paired && !o.high_priority && o.cases.is_none());
    }

    #[test]
    fn quick_shortens_the_run_but_explicit_flags_win() {
        let o = parse(&["--quick"]).expect("--quick parses");
        assert_eq!(
            (
                o.rounds,
                o.duration_secs,
                o.warmup_secs,
                o.soak_requests,
                o.reloads
            ),
            (2, 2, 1, 0, 2)
        );
        let o = parse(&["--rounds", "3", "--quick"]).expect("--rounds with --quick parses");
        assert_eq!((o.rounds, o.duration_secs), (3, 2));
    }

    #[test]
    fn repeatable_flags_collect_and_cases_split_on_commas() {
        let o = parse(&[
            "--cases",
            "noop-wasm,sc-1",
            "--pair",
            "sc-1/probe:same",
            "--pair",
            "a/b",
            "--probe",
            "same=user,split",
            "--variant",
            "x=t/x.wasm",
            "--no-pin",
            "--out",
            "o",
        ])
        .expect("flags of make bench-filter parse");
        assert_eq!(
            o.cases,
            Some(vec!["noop-wasm".to_string(), "sc-1".to_string()])
        );
        assert_eq!(o.pairs.len(), 2);
        assert_eq!(
            o.probes,
            vec![("same".to_string(), "user,split".to_string())]
        );
        assert_eq!(
            o.variants,
            vec![("x".to_string(), PathBuf::from("t/x.wasm"))]
        );
        assert!(!o.pin);
        assert_eq!(o.out_dir, PathBuf::from("o"));
    }

    #[test]
    fn malformed_values_are_rejected() {
        for bad in [
            &["--rounds", "0"][..],
            &["--runs", "0"],
            &["--duration", "x"],
            &["--pair", "sc-1/sc-1"],
            &["--variant", "=x.wasm"],
            &["--probe", "ops"],
            &["--bogus"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
