//! Command-line options of `bench` (plain flags, no parser dependency).

use std::path::PathBuf;

pub const USAGE: &str = "\
usage: bench [--rounds N] [--duration SECS] [--warmup SECS] [--connections N] [--users N]
             [--soak-requests N] [--soak-max-seconds SECS] [--reloads N] [--out DIR]
             [--no-pin] [--no-paired] [--high-priority] [--quick] [--cases ID,ID]
             [--variant NAME=PATH.wasm] [--probe NAME=OP,OP] [--pair ID/ID]

Runs every peer (plain weighted routing, no-op wasm, Lua, stickycanary x3) side by side,
interleaved round by round, and prints medians. Each round also runs every case at the same
time as peer 1 (both Envoys on one CPU, one wrk each) and compares their CPU time per
request: a ratio taken over the same seconds, which a noisy machine cannot skew. Needs target/stickycanary.wasm,
target/stickycanary-noop.wasm and a release sc-backend (scripts/bench.sh builds all three).
  --rounds N            measured rounds per case (default 6)
  --duration SECS       wrk run length per case and round (default 8)
  --warmup SECS         unrecorded wrk run per case first (default 2)
  --connections N       wrk keep-alive connections (default 32)
  --users N             distinct x-user-id values rotated by wrk (default 100000)
  --soak-requests N     top every Envoy up to N requests before the final RSS (default 1000000)
  --soak-max-seconds S  but spend at most S seconds of top-up per case (default 25)
  --reloads N           config reloads timed, each direction (default 5)
  --out DIR             where results.json and the markdown fragment go (default target/bench)
  --no-pin              do not pin Envoy to CPU 0 and wrk/backends to CPU 1
  --no-paired           skip the paired runs (each case at the same time as peer 1)
  --high-priority       run bench and every child at nice -20 (needs root or CAP_SYS_NICE):
                        on a machine shared with other jobs, keeps them from stealing
                        Envoy's core mid-run; the report says when it was used
  --cases ID,ID         only these cases (weighted, noop-wasm, lua, sc-1, sc-50, sc-anon);
                        peer 1 (weighted) always runs
  --variant NAME=PATH   add a one-rollout stickycanary case running another .wasm build
                        (profiling: compare filter variants in the same run); repeatable.
                        A NAME starting with `diag-` marks a cut-down build whose routing
                        may differ: its sanity check only asks that it serves
  --probe NAME=OPS      add a hostcall-probe case (target/stickycanary-probe.wasm, built by
                        scripts/bench-build-noop.sh probe) doing OPS per request, from:
                        authority,path,user,pairs,rawpairs,remove,set,split,clear,clock,code,
                        duration,counter,histogram,shard (case id: probe:NAME)
  --pair A/B            every round, also load cases A and B at the same time (both Envoys
                        on one CPU, one wrk each) and report B's CPU time per request over
                        A's: A's throughput relative to B over the same seconds (1.00 for
                        two identical modules); repeatable
  --quick               2 rounds of 2 s, 1 s warm-up, no soak, 2 reloads (debugging the harness)";

#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
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

impl Options {
    fn defaults(out_dir: PathBuf) -> Self {
        Self {
            rounds: 6,
            duration_secs: 8,
            warmup_secs: 2,
            connections: 32,
            users: 100_000,
            soak_requests: 1_000_000,
            soak_max_secs: 25,
            reloads: 5,
            out_dir,
            pin: true,
            paired: true,
            high_priority: false,
            cases: None,
            variants: Vec::new(),
            probes: Vec::new(),
            pairs: Vec::new(),
        }
    }

    /// `Ok(None)` means `--help` was asked for.
    pub fn parse(args: &[String], default_out: PathBuf) -> Result<Option<Self>, String> {
        let mut opts = Self::defaults(default_out);
        let mut iter = args.iter();
        while let Some(flag) = iter.next() {
            let mut value = |name: &str| {
                iter.next()
                    .cloned()
                    .ok_or_else(|| format!("{name}: needs a value"))
            };
            match flag.as_str() {
                "--help" | "-h" => return Ok(None),
                "--rounds" => opts.rounds = number(flag, &value(flag)?, 1)?,
                "--duration" => opts.duration_secs = number(flag, &value(flag)?, 1)?,
                "--warmup" => opts.warmup_secs = number(flag, &value(flag)?, 0)?,
                "--connections" => opts.connections = number(flag, &value(flag)?, 1)?,
                "--users" => opts.users = number(flag, &value(flag)?, 1)?,
                "--soak-requests" => opts.soak_requests = number(flag, &value(flag)?, 0)?,
                "--soak-max-seconds" => opts.soak_max_secs = number(flag, &value(flag)?, 0)?,
                "--reloads" => opts.reloads = number(flag, &value(flag)?, 1)?,
                "--out" => opts.out_dir = PathBuf::from(value(flag)?),
                "--no-pin" => opts.pin = false,
                "--no-paired" => opts.paired = false,
                "--high-priority" => opts.high_priority = true,
                "--cases" => {
                    opts.cases = Some(value(flag)?.split(',').map(str::to_string).collect());
                }
                "--variant" => {
                    let spec = value(flag)?;
                    let (name, path) = spec
                        .split_once('=')
                        .filter(|(name, path)| !name.is_empty() && !path.is_empty())
                        .ok_or_else(|| {
                            format!("--variant: expected NAME=PATH.wasm (got {spec:?})")
                        })?;
                    opts.variants.push((name.to_string(), PathBuf::from(path)));
                }
                "--probe" => {
                    let spec = value(flag)?;
                    let (name, ops) = spec
                        .split_once('=')
                        .filter(|(name, _)| !name.is_empty())
                        .ok_or_else(|| {
                            format!("--probe: expected NAME=OP,OP,... (got {spec:?})")
                        })?;
                    opts.probes.push((name.to_string(), ops.to_string()));
                }
                "--pair" => {
                    let spec = value(flag)?;
                    let (a, b) = spec
                        .split_once('/')
                        .filter(|(a, b)| !a.is_empty() && !b.is_empty() && a != b)
                        .ok_or_else(|| {
                            format!("--pair: expected two different case ids A/B (got {spec:?})")
                        })?;
                    opts.pairs.push((a.to_string(), b.to_string()));
                }
                "--quick" => {
                    opts.rounds = 2;
                    opts.duration_secs = 2;
                    opts.warmup_secs = 1;
                    opts.soak_requests = 0;
                    opts.reloads = 2;
                }
                other => return Err(format!("{other}: unknown option (see --help)")),
            }
        }
        Ok(Some(opts))
    }
}

fn number<T: std::str::FromStr + PartialOrd + From<u8> + std::fmt::Display>(
    flag: &str,
    text: &str,
    min: u8,
) -> Result<T, String> {
    let parsed: T = text
        .parse()
        .map_err(|_| format!("{flag}: must be a whole number (got {text:?})"))?;
    if parsed < T::from(min) {
        return Err(format!("{flag}: must be at least {min} (got {parsed})"));
    }
    Ok(parsed)
}
