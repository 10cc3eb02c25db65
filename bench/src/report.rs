//! From samples to the answer: medians per case, ratios to peer 1, added CPU per request,
//! RSS over time, the goals of issue 6, as a terminal table and a BENCHMARKS.md fragment.

use serde::Serialize;
use stickycanary_e2e::stats::median;

use crate::machine::Testbed;
use crate::wrk::LoadRun;

/// One measured wrk run of one case, with Envoy's CPU use during it.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub round: usize,
    pub run: LoadRun,
    /// Envoy process CPU time (user+sys, all threads) per request.
    pub envoy_cpu_us_per_request: f64,
    /// Envoy CPU time / wall time: about 1.0 when its one worker is the bottleneck.
    pub envoy_cores: f64,
}

/// One paired run: this case and peer 1 loaded at the same time, each by its own wrk, both
/// Envoys on the same CPU. Whatever slows the machine slows both alike, so the ratio of
/// their CPU time per request is steady where sequential req/s are not.
#[derive(Debug, Clone, Serialize)]
pub struct PairedSample {
    pub round: usize,
    pub cpu_us_per_request: f64,
    pub peer1_cpu_us_per_request: f64,
}

impl PairedSample {
    /// Throughput at saturation relative to peer 1: peer 1's CPU per request over ours.
    pub fn of_peer1(&self) -> f64 {
        self.peer1_cpu_us_per_request / self.cpu_us_per_request
    }
}

/// `--pair A/B`: A and B loaded at the same time every round.
#[derive(Debug, Clone, Serialize)]
pub struct CasePair {
    pub a: String,
    pub b: String,
    /// Per `--runs` run (fresh Envoys), per round: B's CPU time per request over A's, i.e.
    /// A's throughput relative to B.
    pub runs: Vec<Vec<f64>>,
}

impl CasePair {
    /// The median of the runs' medians: two Envoy processes can differ more than two rounds
    /// of one, so each run counts once however many rounds it had.
    pub fn median(&self) -> f64 {
        median(&self.run_medians())
    }

    pub fn run_medians(&self) -> Vec<f64> {
        self.runs.iter().map(|rounds| median(rounds)).collect()
    }
}

/// The `--pair` results as lines: `A vs B: median`, each run's median, then every round
/// (runs separated by `|`).
pub fn pair_lines(pairs: &[CasePair]) -> String {
    let list = |values: &[f64]| {
        values
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = String::new();
    for pair in pairs {
        let rounds: Vec<f64> = pair.runs.iter().flatten().copied().collect();
        let min = rounds.iter().copied().fold(f64::INFINITY, f64::min);
        let max = rounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let runs = pair.runs.len();
        out.push_str(&format!(
            "pair {} vs {}: {:.3}x ({}; rounds min {min:.3}, max {max:.3}: {})\n",
            pair.a,
            pair.b,
            pair.median(),
            if runs == 1 {
                "1 run".to_string()
            } else {
                format!(
                    "median of {runs} runs with fresh Envoys: {}",
                    list(&pair.run_medians())
                )
            },
            pair.runs
                .iter()
                .map(|run| list(run))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct RssPoint {
    pub when: String,
    /// Requests this Envoy had served when the point was taken.
    pub after_requests: u64,
    pub rss_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub id: String,
    pub label: String,
    pub sanity: String,
    pub samples: Vec<Sample>,
    /// Empty for peer 1 and with `--no-paired`.
    pub paired: Vec<PairedSample>,
    pub rss: Vec<RssPoint>,
    pub total_requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub rounds: usize,
    pub runs: usize,
    pub duration_secs: u64,
    pub warmup_secs: u64,
    pub connections: usize,
    pub users: u64,
    pub pinned: bool,
    pub high_priority: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub machine: Testbed,
    pub settings: Settings,
    pub load_average_before: [f64; 3],
    pub load_average_after: [f64; 3],
    pub wall_seconds: f64,
    pub filter_wasm_bytes: u64,
    pub noop_wasm_bytes: u64,
    pub reload_ms: Vec<f64>,
    /// Peer 1 first.
    pub cases: Vec<CaseResult>,
    /// `--pair` comparisons.
    pub pairs: Vec<CasePair>,
}

/// Medians of one case.
#[derive(Debug, Clone, Copy)]
pub struct CaseSummary {
    pub rps: f64,
    pub rps_min: f64,
    pub rps_max: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub cpu_us: f64,
    pub cores: f64,
    pub errors: u64,
    /// Median of [`PairedSample::of_peer1`]; 1 for peer 1, NaN when not measured.
    pub paired_of_p1: f64,
}

pub fn summarize(case: &CaseResult) -> CaseSummary {
    let pick = |f: fn(&Sample) -> f64| -> Vec<f64> { case.samples.iter().map(f).collect() };
    let rps = pick(|s| s.run.requests_per_second);
    CaseSummary {
        rps: median(&rps),
        rps_min: rps.iter().copied().fold(f64::INFINITY, f64::min),
        rps_max: rps.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        p50_ms: median(&pick(|s| s.run.p50_ms)),
        p99_ms: median(&pick(|s| s.run.p99_ms)),
        cpu_us: median(&pick(|s| s.envoy_cpu_us_per_request)),
        cores: median(&pick(|s| s.envoy_cores)),
        errors: case.samples.iter().map(|s| s.run.errors).sum(),
        paired_of_p1: if case.id == PEER1 {
            1.0
        } else {
            median(
                &case
                    .paired
                    .iter()
                    .map(PairedSample::of_peer1)
                    .collect::<Vec<_>>(),
            )
        },
    }
}

pub const PEER1: &str = "weighted";

/// A goal of issue 6, judged three ways: by saturated throughput (what the issue asks), by
/// Envoy's CPU time per request, both from the sequential runs, and by the paired runs (the
/// one a noisy machine cannot skew; NaN-valued, so never met, with `--no-paired`).
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub goal: String,
    pub by_throughput: String,
    pub by_cpu: String,
    pub by_paired: String,
    pub met: bool,
    pub met_by_cpu: bool,
    pub met_by_paired: bool,
}

const WASM_LIMIT_BYTES: u64 = 300_000;

/// `cost / base - 1` as a signed percentage.
fn pct(cost: f64, base: f64) -> String {
    format!("{:+.1}%", (cost / base - 1.0) * 100.0)
}

pub fn goals(results: &Results) -> Vec<Goal> {
    let find = |id: &str| results.cases.iter().find(|c| c.id == id).map(summarize);
    let mut goals = Vec::new();
    let sc1 = find("sc-1");
    if let (Some(p1), Some(sc1)) = (find(PEER1), sc1) {
        let of_p1 = sc1.rps / p1.rps;
        // Throughput at 85% of peer 1 means at most 1/0.85 of its time per request.
        let cpu_ratio = sc1.cpu_us / p1.cpu_us;
        goals.push(Goal {
            goal: "stickycanary (1 rollout) >= 85% of peer 1 throughput".into(),
            by_throughput: format!(
                "{:.1}% ({:.0} vs {:.0} req/s)",
                of_p1 * 100.0,
                sc1.rps,
                p1.rps
            ),
            by_cpu: format!(
                "{:.1}% ({:.1} vs {:.1} µs/req)",
                100.0 / cpu_ratio,
                sc1.cpu_us,
                p1.cpu_us
            ),
            by_paired: format!("{:.1}% of peer 1", sc1.paired_of_p1 * 100.0),
            met: of_p1 >= 0.85,
            met_by_cpu: 1.0 / cpu_ratio >= 0.85,
            met_by_paired: sc1.paired_of_p1 >= 0.85,
        });
    }
    if let (Some(noop), Some(sc1)) = (find("noop-wasm"), sc1) {
        let over = noop.rps / sc1.rps - 1.0;
        let over_cpu = sc1.cpu_us / noop.cpu_us - 1.0;
        goals.push(Goal {
            goal: "stickycanary (1 rollout) at most 10% over the no-op wasm peer".into(),
            by_throughput: format!(
                "{} time/req ({:.0} vs {:.0} req/s)",
                pct(noop.rps, sc1.rps),
                sc1.rps,
                noop.rps
            ),
            by_cpu: format!(
                "{} ({:.1} vs {:.1} µs/req)",
                pct(sc1.cpu_us, noop.cpu_us),
                sc1.cpu_us,
                noop.cpu_us
            ),
            // Both paired against peer 1: the ratio of ratios is the time per request.
            by_paired: format!(
                "{} time/req ({:.3} vs {:.3} of peer 1)",
                pct(noop.paired_of_p1, sc1.paired_of_p1),
                sc1.paired_of_p1,
                noop.paired_of_p1
            ),
            met: over <= 0.10,
            met_by_cpu: over_cpu <= 0.10,
            met_by_paired: noop.paired_of_p1 / sc1.paired_of_p1 - 1.0 <= 0.10,
        });
    }
    if let (Some(lua), Some(sc1)) = (find("lua"), sc1) {
        goals.push(Goal {
            goal: "stickycanary (1 rollout) faster than the Lua peer".into(),
            by_throughput: format!(
                "{:.0} vs {:.0} req/s ({})",
                sc1.rps,
                lua.rps,
                pct(sc1.rps, lua.rps)
            ),
            by_cpu: format!(
                "{:.1} vs {:.1} µs/req ({})",
                sc1.cpu_us,
                lua.cpu_us,
                pct(sc1.cpu_us, lua.cpu_us)
            ),
            by_paired: format!(
                "{:.3} vs {:.3} of peer 1",
                sc1.paired_of_p1, lua.paired_of_p1
            ),
            met: sc1.rps > lua.rps,
            met_by_cpu: sc1.cpu_us < lua.cpu_us,
            met_by_paired: sc1.paired_of_p1 > lua.paired_of_p1,
        });
    }
    if let (Some(sc50), Some(sc1)) = (find("sc-50"), sc1) {
        goals.push(Goal {
            goal: "50 rollouts within 5% of 1 rollout".into(),
            by_throughput: format!(
                "{} req/s ({:.0} vs {:.0})",
                pct(sc50.rps, sc1.rps),
                sc50.rps,
                sc1.rps
            ),
            by_cpu: format!(
                "{} µs/req ({:.1} vs {:.1})",
                pct(sc50.cpu_us, sc1.cpu_us),
                sc50.cpu_us,
                sc1.cpu_us
            ),
            by_paired: format!(
                "{} ({:.3} vs {:.3} of peer 1)",
                pct(sc50.paired_of_p1, sc1.paired_of_p1),
                sc50.paired_of_p1,
                sc1.paired_of_p1
            ),
            met: sc50.rps / sc1.rps >= 0.95,
            met_by_cpu: sc50.cpu_us / sc1.cpu_us <= 1.05,
            met_by_paired: sc50.paired_of_p1 / sc1.paired_of_p1 >= 0.95,
        });
    }
    let small = results.filter_wasm_bytes < WASM_LIMIT_BYTES;
    goals.push(Goal {
        goal: "stickycanary.wasm < 300 KB (300 000 bytes)".into(),
        by_throughput: format!("{} bytes", results.filter_wasm_bytes),
        by_cpu: "-".into(),
        by_paired: "-".into(),
        met: small,
        met_by_cpu: small,
        met_by_paired: small,
    });
    goals
}

fn paired_cell(case: &CaseResult, summary: &CaseSummary) -> String {
    let ratios: Vec<f64> = case.paired.iter().map(PairedSample::of_peer1).collect();
    if ratios.is_empty() {
        return if case.id == PEER1 {
            "1".into()
        } else {
            "-".into()
        };
    }
    let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.3} ({min:.3}–{max:.3})", summary.paired_of_p1)
}

fn rss_cell(case: &CaseResult) -> String {
    let first = case.rss.first();
    let after_round1 = case.rss.iter().find(|p| p.when == "round 1");
    let last = case.rss.last();
    match (first, after_round1, last) {
        (Some(idle), Some(r1), Some(last)) => format!(
            "{:.1} → {:.1} → {:.1} ({:.2}M req)",
            idle.rss_mib,
            r1.rss_mib,
            last.rss_mib,
            last.after_requests as f64 / 1e6
        ),
        _ => "-".into(),
    }
}

/// The plain-text side-by-side table for the terminal.
pub fn terminal_table(results: &Results) -> String {
    let Some(base) = results.cases.first().map(summarize) else {
        return "no cases measured\n".into();
    };
    let mut out = format!(
        "{:<38} {:>8} {:>6} {:>7} {:>6} {:>7} {:>6} {:>8} {:>8} {:>6} {:>6} {:>7}  {}\n",
        "case",
        "req/s",
        "x p1",
        "p50 ms",
        "x p1",
        "p99 ms",
        "x p1",
        "+us/req",
        "cpu us",
        "cores",
        "errs",
        "paired",
        "RSS MiB idle → round 1 → end"
    );
    for case in &results.cases {
        let s = summarize(case);
        out.push_str(&format!(
            "{:<38} {:>8.0} {:>6.3} {:>7.3} {:>6.2} {:>7.3} {:>6.2} {:>8.2} {:>8.2} {:>6.2} {:>6} {:>7.3}  {}\n",
            case.label,
            s.rps,
            s.rps / base.rps,
            s.p50_ms,
            s.p50_ms / base.p50_ms,
            s.p99_ms,
            s.p99_ms / base.p99_ms,
            (1.0 / s.rps - 1.0 / base.rps) * 1e6,
            s.cpu_us,
            s.cores,
            s.errors,
            s.paired_of_p1,
            rss_cell(case)
        ));
    }
    out
}

/// The BENCHMARKS.md fragment (data-plane sections).
pub fn markdown(results: &Results) -> String {
    let m = &results.machine;
    let st = &results.settings;
    let la = |l: &[f64; 3]| format!("{:.2} / {:.2} / {:.2}", l[0], l[1], l[2]);
    let mut md = String::new();
    md.push_str(&format!(
        "Measured {} on {} × {} ({:.0} GiB RAM, kernel {}), Envoy {}, {}.\n\
         Load average (1/5/15 min) before the run: {}; after: {}. Run took {:.0} s.\n\n\
         Setup: one Envoy per case, `--concurrency 1`{}; two `sc-backend` upstreams; \
         `wrk -t1 -c{}` for {} s per run with every request carrying a different `x-user-id` \
         (rotating over {} ids; none in the anonymous case); {} s unrecorded warm-up per case; \
         {} rounds, cases interleaved (A B C … A B C …); medians shown{}. \
         All cases route 10% to canary.\n\n",
        m.machine.date_utc,
        m.machine.cpus,
        m.machine.cpu_model,
        m.machine.ram_gib,
        m.machine.kernel,
        m.envoy_version,
        m.wrk_version,
        la(&results.load_average_before),
        la(&results.load_average_after),
        results.wall_seconds,
        match (st.pinned, st.high_priority) {
            (true, true) =>
                ", pinned to CPU 0 (wrk and the backends on CPU 1), everything at nice -20",
            (true, false) => ", pinned to CPU 0 (wrk and the backends on CPU 1)",
            (false, true) => ", not pinned, everything at nice -20",
            (false, false) => ", not pinned",
        },
        st.connections,
        st.duration_secs,
        st.users,
        st.warmup_secs,
        st.rounds,
        if st.runs > 1 {
            format!(
                "; all of it repeated in {} runs, each with freshly started Envoys (the RSS \
                 column and the reloads are the last run's)",
                st.runs
            )
        } else {
            String::new()
        },
    ));
    // The run itself keeps both CPUs busy (load 2-3 after it), so only the load before it
    // says whether other work shared the machine.
    if results.load_average_before[0] >= 1.0 {
        md.push_str(&format!(
            "**Possibly busy machine:** the 1-minute load average was {:.1} before this run \
             (the run itself adds 2–3), so other work may have shared Envoy's core (see \
             \"Envoy cores busy\"): the sequential throughput and latency are noisy and \
             pessimistic; the paired ratios are the steady measure.\n\n",
            results.load_average_before[0]
        ));
    }
    let Some(base) = results.cases.first().map(summarize) else {
        return md;
    };
    md.push_str("| case | req/s (min–max) | × peer 1 | p50 ms | × peer 1 | p99 ms | × peer 1 | added µs/req (1/rps − 1/rps₁) | Envoy CPU µs/req | Envoy cores busy | errors | paired: × peer 1 (min–max) |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for case in &results.cases {
        let s = summarize(case);
        md.push_str(&format!(
            "| {} | {:.0} ({:.0}–{:.0}) | {:.3} | {:.3} | {:.2} | {:.3} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
            case.label,
            s.rps,
            s.rps_min,
            s.rps_max,
            s.rps / base.rps,
            s.p50_ms,
            s.p50_ms / base.p50_ms,
            s.p99_ms,
            s.p99_ms / base.p99_ms,
            (1.0 / s.rps - 1.0 / base.rps) * 1e6,
            s.cpu_us,
            s.cores,
            s.errors,
            paired_cell(case, &s)
        ));
    }
    md.push_str(
        "\n\"paired\" runs the case and peer 1 at the same time, both Envoys on CPU 0 and one \
         wrk each on CPU 1, and divides peer 1's Envoy CPU time per request by the case's: the \
         throughput the case would have relative to peer 1 with a core each. Both see the same \
         seconds of the machine, so this ratio holds still where the sequential req/s swing by \
         ±30% from run to run on a shared VM; the goals below are judged all three ways.\n\n",
    );
    md.push_str(
        "\"added µs/req\" is the extra time per request at saturation on one core, from the \
         throughput; \"Envoy CPU µs/req\" is Envoy's own user+system CPU time (all threads, from \
         `/proc/<pid>/stat`) divided by the requests of the run.\n\n",
    );

    md.push_str(
        "### Goals (issue 6)\n\n| goal | by throughput | met | by Envoy CPU µs/req | met | by paired runs | met |\n|---|---|---|---|---|---|---|\n",
    );
    let verdict = |met: bool| if met { "yes" } else { "**no**" };
    for goal in goals(results) {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            goal.goal,
            goal.by_throughput,
            verdict(goal.met),
            goal.by_cpu,
            verdict(goal.met_by_cpu),
            goal.by_paired,
            verdict(goal.met_by_paired)
        ));
    }

    md.push_str("\n### Envoy memory (RSS, MiB) over the run\n\n| case | ");
    let points: Vec<String> = results
        .cases
        .first()
        .map(|c| c.rss.iter().map(|p| p.when.clone()).collect())
        .unwrap_or_default();
    md.push_str(&points.join(" | "));
    md.push_str(" | requests at end |\n|---|");
    md.push_str(&"---:|".repeat(points.len() + 1));
    md.push('\n');
    for case in &results.cases {
        let cells: Vec<String> = case
            .rss
            .iter()
            .map(|p| format!("{:.1}", p.rss_mib))
            .collect();
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            case.label,
            cells.join(" | "),
            case.total_requests
        ));
    }

    let mut reload = results.reload_ms.clone();
    reload.sort_by(f64::total_cmp);
    md.push_str(&format!(
        "\n### Artefacts and reloads\n\n\
         - `target/stickycanary.wasm`: {} bytes; `target/stickycanary-noop.wasm` (no-op peer, same toolchain and profile): {} bytes.\n\
         - Config reload (weight 10 → 100 → 10, ECDS file written by temp + rename, polled with one user until the version flips), {} samples: median {:.1} ms, max {:.1} ms.\n",
        results.filter_wasm_bytes,
        results.noop_wasm_bytes,
        reload.len(),
        median(&reload),
        reload.last().copied().unwrap_or(f64::NAN),
    ));
    if !results.pairs.is_empty() {
        md.push_str(
            "\n### Paired comparisons (`--pair A/B`: both loaded at the same time on one CPU; \
             B's Envoy CPU µs/request over A's, so A's throughput relative to B)\n\n```\n",
        );
        md.push_str(&pair_lines(&results.pairs));
        md.push_str("```\n");
    }
    md
}
