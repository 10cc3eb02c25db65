//! The side-by-side table (terminal) and the `## Controller` markdown for BENCHMARKS.md.

use std::fmt::Write as _;

use stickycanary_e2e::stats::median;

use crate::worker::WorkerResult;

/// Issue 3's memory goal at 100 rollouts.
pub const RSS_GOAL_MIB: f64 = 30.0;

/// One rollout count, summarised.
pub struct Row {
    pub rollouts: usize,
    pub intervals: usize,
    pub queries_min: u64,
    pub queries_max: u64,
    pub queries_total: u64,
    pub fetches_total: u64,
    /// Intervals that sent no query: the batch from the previous interval was still fresh.
    pub reused_intervals: usize,
    pub fetch_median_ms: f64,
    pub wall_median_ms: f64,
    pub wall_max_ms: f64,
    pub cpu_median_ms: f64,
    pub cpu_mean_ms: f64,
    pub rss_before_mib: f64,
    pub peak_rss_mib: f64,
    /// Intervals in which every rollout's window carried canary traffic.
    pub full_intervals: usize,
    pub unavailable: usize,
    pub final_phases: String,
    pub first_unavailable_reason: Option<String>,
}

impl Row {
    pub fn from_result(r: &WorkerResult) -> Self {
        let walls: Vec<f64> = r.intervals.iter().map(|s| s.wall_ms).collect();
        let cpus: Vec<f64> = r.intervals.iter().map(|s| s.cpu_ms).collect();
        let n = r.intervals.len().max(1) as f64;
        Row {
            rollouts: r.rollouts,
            intervals: r.intervals.len(),
            queries_min: r.intervals.iter().map(|s| s.queries).min().unwrap_or(0),
            queries_max: r.intervals.iter().map(|s| s.queries).max().unwrap_or(0),
            queries_total: r.intervals.iter().map(|s| s.queries).sum(),
            fetches_total: r.intervals.iter().map(|s| s.fetches).sum(),
            reused_intervals: r.intervals.iter().filter(|s| s.fetches == 0).count(),
            fetch_median_ms: median(
                &r.intervals
                    .iter()
                    .filter(|s| s.fetches > 0)
                    .map(|s| s.fetch_ms / s.fetches as f64)
                    .collect::<Vec<_>>(),
            ),
            wall_median_ms: median(&walls),
            wall_max_ms: walls.iter().copied().fold(0.0, f64::max),
            cpu_median_ms: median(&cpus),
            cpu_mean_ms: cpus.iter().sum::<f64>() / n,
            rss_before_mib: r.rss_before_kib as f64 / 1024.0,
            peak_rss_mib: r.peak_rss_kib as f64 / 1024.0,
            full_intervals: r
                .intervals
                .iter()
                .filter(|s| s.rollouts_with_data == r.rollouts)
                .count(),
            unavailable: r.intervals.iter().map(|s| s.unavailable).sum(),
            final_phases: r
                .final_phases
                .iter()
                .map(|(p, c)| format!("{p} x{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            first_unavailable_reason: r.first_unavailable_reason.clone(),
        }
    }

    /// Queries per batch fetch; `0` when nothing was fetched.
    fn per_fetch(&self) -> String {
        match self.queries_total.checked_div(self.fetches_total) {
            Some(q) if q * self.fetches_total == self.queries_total => q.to_string(),
            Some(_) => format!(
                "{:.2}",
                self.queries_total as f64 / self.fetches_total as f64
            ),
            None => "0".to_string(),
        }
    }

    fn queries(&self) -> String {
        if self.queries_min == self.queries_max {
            self.queries_min.to_string()
        } else {
            format!("{}-{}", self.queries_min, self.queries_max)
        }
    }
}

/// The terminal table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>9} {:>13} {:>11} {:>14} {:>14} {:>13} {:>13} {:>13} {:>14} {:>10}",
        "rollouts",
        "queries/intvl",
        "q/fetch",
        "fetch ms (med)",
        "wall ms (med)",
        "wall ms (max)",
        "CPU ms (med)",
        "CPU ms (mean)",
        "peak RSS MiB",
        "full data"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:>9} {:>13} {:>11} {:>14.1} {:>14.1} {:>13.1} {:>13.1} {:>13.1} {:>14.1} {:>10}",
            r.rollouts,
            r.queries(),
            r.per_fetch(),
            r.fetch_median_ms,
            r.wall_median_ms,
            r.wall_max_ms,
            r.cpu_median_ms,
            r.cpu_mean_ms,
            r.peak_rss_mib,
            format!("{}/{}", r.full_intervals, r.intervals)
        );
    }
    out
}

/// Goal verdicts, one line each.
pub fn goals(rows: &[Row]) -> Vec<String> {
    let mut lines = Vec::new();
    let counts: Vec<String> = rows.iter().map(Row::queries).collect();
    let per_fetch: Vec<String> = rows.iter().map(Row::per_fetch).collect();
    // Flat: every fetch is the same few queries whatever N is, and no interval sends more
    // than one fetch's worth. An interval that sends none reused a still-fresh batch.
    let first = rows.first().map_or(0, |r| r.queries_max);
    let flat = rows.iter().all(|r| {
        r.queries_max == first && r.fetches_total > 0 && r.per_fetch() == first.to_string()
    });
    lines.push(format!(
        "Flat query count across rollout counts: {} (queries per interval: {}; per batch fetch: {})",
        if flat { "met" } else { "NOT met" },
        counts.join(" / "),
        per_fetch.join(" / ")
    ));
    for r in rows.iter().filter(|r| r.reused_intervals > 0) {
        lines.push(format!(
            "{} rollouts: {} of {} intervals sent no query and reused the previous batch (the batcher's half-interval freshness is counted from the end of a fetch, and the fetch took {:.0} ms)",
            r.rollouts, r.reused_intervals, r.intervals, r.fetch_median_ms
        ));
    }
    match rows.iter().find(|r| r.rollouts == 100) {
        Some(r) => lines.push(format!(
            "RSS under {RSS_GOAL_MIB} MiB at 100 rollouts: {} (peak {:.1} MiB)",
            if r.peak_rss_mib < RSS_GOAL_MIB {
                "met"
            } else {
                "NOT met"
            },
            r.peak_rss_mib
        )),
        None => lines.push("RSS at 100 rollouts: not measured in this run".to_string()),
    }
    lines
}

/// Where and when the run happened.
pub struct RunContext {
    pub date: String,
    pub machine: String,
    pub prometheus: String,
    pub load_before: String,
    pub load_after: String,
    pub cores: usize,
    pub intervals: usize,
    pub interval_ms: u128,
    pub command: String,
}

/// A 1-minute load above half the cores at either end of the run.
fn busy(ctx: &RunContext) -> bool {
    [&ctx.load_before, &ctx.load_after]
        .iter()
        .any(|l| l.parse::<f64>().is_ok_and(|v| v > ctx.cores as f64 / 2.0))
}

/// The `## Controller` section body (without the heading).
pub fn markdown(rows: &[Row], ctx: &RunContext) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "### How to run\n");
    let _ = writeln!(md, "```sh\n{}\n```\n", ctx.command);
    let _ = writeln!(
        md,
        "A real Prometheus ({}) on 127.0.0.1 with a temp TSDB scrapes, every 1s, a small exporter \
         inside the bench process that serves contract 4's series for N rollouts \
         (`stickycanary_requests_total{{rollout,version,code_class,source}}` and the 16-bucket \
         `stickycanary_request_duration_ms` histogram with `_sum`/`_count`, 40 series per rollout, \
         counters growing on every scrape). For each N a fresh Prometheus and a fresh child process \
         (the bench binary re-executed with `--worker N`) are started, so the RSS is per N. The \
         child builds N CanaryRollout specs (default stages and checks plus `compareStable` and \
         `comparative`, window 10s) and then, for {} intervals of {} ms, runs what the reconciler \
         runs per interval: `MetricsBatcher::observation` for every rollout (the first call sends \
         the batched queries, the rest read the shared batch, which may be half an interval old) \
         and `engine::decide` with the rollout's status from the previous interval. Not included: \
         the per-rollout Kubernetes calls (WasmPlugin read/patch, pod list, status patch), since \
         there is no API server here.\n",
        ctx.prometheus, ctx.intervals, ctx.interval_ms
    );
    let _ = writeln!(md, "### Results\n");
    let _ = writeln!(
        md,
        "Run {} on {}. {} load average {} before and {} after the run (1-minute){}.\n",
        ctx.date,
        ctx.machine,
        if busy(ctx) {
            "**The machine was busy** with other builds:"
        } else {
            "The machine was shared with other builds, fairly quiet during this run:"
        },
        ctx.load_before,
        ctx.load_after,
        if busy(ctx) {
            ", so wall and CPU times are upper bounds"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "| Rollouts | Prometheus queries / interval | Queries / batch fetch | Batch fetch ms (median) | Wall ms / interval (median, max) | CPU ms / interval (median, mean) | RSS before first interval (MiB) | Peak RSS (MiB, VmHWM) | Intervals with data for every rollout | Phases at the end |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.1}, {:.1} | {:.1}, {:.1} | {:.1} | {:.1} | {}/{} | {} |",
            r.rollouts,
            r.queries(),
            r.per_fetch(),
            r.fetch_median_ms,
            r.wall_median_ms,
            r.wall_max_ms,
            r.cpu_median_ms,
            r.cpu_mean_ms,
            r.rss_before_mib,
            r.peak_rss_mib,
            r.full_intervals,
            r.intervals,
            r.final_phases
        );
    }
    let _ = writeln!(md, "\n#### Goals (issue 3)\n");
    for line in goals(rows) {
        let _ = writeln!(md, "- {line}");
    }
    for r in rows.iter().filter(|r| r.unavailable > 0) {
        let _ = writeln!(
            md,
            "- {} rollouts: {} observations were Unavailable ({})",
            r.rollouts,
            r.unavailable,
            r.first_unavailable_reason.as_deref().unwrap_or("no reason")
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::IntervalSample;

    fn result(rollouts: usize, queries: &[u64], hwm_kib: u64) -> WorkerResult {
        WorkerResult {
            rollouts,
            intervals: queries
                .iter()
                .map(|&q| IntervalSample {
                    queries: q,
                    wall_ms: 10.0,
                    cpu_ms: 4.0,
                    rollouts_with_data: rollouts,
                    fetches: q / 3,
                    fetch_ms: 5.0 * (q / 3) as f64,
                    unavailable: 0,
                    set_weight_actions: 0,
                })
                .collect(),
            rss_before_kib: 1024,
            peak_rss_kib: hwm_kib,
            final_phases: vec![("Progressing".into(), rollouts)],
            first_unavailable_reason: None,
        }
    }

    #[test]
    fn goals_follow_the_numbers() {
        let ok = [
            Row::from_result(&result(1, &[3, 3], 10 * 1024)),
            Row::from_result(&result(100, &[3, 3], 20 * 1024)),
        ];
        let lines = goals(&ok);
        assert!(lines[0].contains(": met"), "{lines:?}");
        assert!(lines[1].contains(": met"), "{lines:?}");

        // An interval that reused the previous batch keeps the count flat, and is reported.
        let reused = [
            Row::from_result(&result(1, &[3, 3], 10 * 1024)),
            Row::from_result(&result(1000, &[3, 0], 20 * 1024)),
        ];
        let lines = goals(&reused);
        assert!(lines[0].contains(": met"), "{lines:?}");
        assert!(
            lines[1].contains("1 of 2 intervals sent no query"),
            "{lines:?}"
        );

        let bad = [
            Row::from_result(&result(1, &[3, 3], 10 * 1024)),
            Row::from_result(&result(100, &[3, 6], 40 * 1024)),
        ];
        let lines = goals(&bad);
        assert!(lines[0].contains("NOT met"), "{lines:?}");
        assert!(lines[1].contains("NOT met"), "{lines:?}");
    }
}
