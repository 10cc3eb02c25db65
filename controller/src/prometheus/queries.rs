//! The PromQL text: the four batched queries over contract 4's series (`source="hash"`
//! traffic only), and the custom checks' templates.

use std::time::Duration;

/// A PromQL range like `30s`. Prometheus needs at least 1s.
pub fn promql_range(window: Duration) -> String {
    format!("{}s", window.as_secs().max(1))
}

/// Requests per `code_class` over the window, all rollouts at once.
pub fn requests_query(window: Duration) -> String {
    format!(
        "sum by (rollout, version, code_class) (increase(stickycanary_requests_total{{source=\"hash\"}}[{}]))",
        promql_range(window)
    )
}

/// p99 latency per rollout and version, all rollouts at once.
pub fn p99_query(window: Duration) -> String {
    format!(
        "histogram_quantile(0.99, sum by (rollout, version, le) (rate(stickycanary_request_duration_ms_bucket{{source=\"hash\"}}[{}])))",
        promql_range(window)
    )
}

/// Cumulative bucket counts over the window per rollout and version, all rollouts at once.
pub fn buckets_query(window: Duration) -> String {
    format!(
        "sum by (rollout, version, le) (increase(stickycanary_request_duration_ms_bucket{{source=\"hash\"}}[{}]))",
        promql_range(window)
    )
}

/// Per-user-shard outcomes (contract 4, `stickycanary_shard_requests_total`), all rollouts at
/// once. Only hash-routed traffic is counted by the filter, so no `source` selector.
pub fn shards_query(window: Duration) -> String {
    format!(
        "sum by (rollout, version, shard, outcome) (increase(stickycanary_shard_requests_total[{}]))",
        promql_range(window)
    )
}

/// Custom checks may name their rollout with `$rollout` (or `{{rollout}}`) so one query
/// template serves many rollouts.
pub fn render_check_query(template: &str, rollout: &str) -> String {
    template
        .replace("{{rollout}}", rollout)
        .replace("{{ rollout }}", rollout)
        .replace("$rollout", rollout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_select_hash_traffic_only_and_group_by_rollout_and_version() {
        let w = Duration::from_secs(30);
        assert_eq!(
            requests_query(w),
            "sum by (rollout, version, code_class) (increase(stickycanary_requests_total{source=\"hash\"}[30s]))"
        );
        assert_eq!(
            p99_query(w),
            "histogram_quantile(0.99, sum by (rollout, version, le) (rate(stickycanary_request_duration_ms_bucket{source=\"hash\"}[30s])))"
        );
        assert!(buckets_query(w).contains("source=\"hash\""));
        assert_eq!(promql_range(Duration::from_millis(200)), "1s");
    }

    #[test]
    fn check_templates_name_their_rollout() {
        assert_eq!(
            render_check_query(
                "sum(rate(orders_total{rollout=\"$rollout\"}[1m]))",
                "checkout"
            ),
            "sum(rate(orders_total{rollout=\"checkout\"}[1m]))"
        );
        assert_eq!(
            render_check_query("x{r=\"{{rollout}}\"}", "a"),
            "x{r=\"a\"}"
        );
    }
}
