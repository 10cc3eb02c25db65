use stickycanary::simulate::report::run_seed;
use stickycanary::simulate::rollout::run;
use stickycanary::simulate::scenario::catalog;
use stickycanary::simulate::Variant;
fn trace(name: &str, slow: f64) {
    let (index, scenario) = catalog().into_iter().enumerate().find(|(_, s)| s.name.starts_with(name)).unwrap();
    for r in 0..60 {
        let end = run(&scenario, Variant::ClusterRobust, run_seed(20261126, index, r));
        let t = match &end { stickycanary::simulate::End::RolledBack{after_s, ..} => *after_s, _ => 1e9 };
        if t > slow {
            eprintln!("run {r}: {end:?}");
            std::env::set_var("SC_TRACE", "1");
            run(&scenario, Variant::ClusterRobust, run_seed(20261126, index, r));
            std::env::remove_var("SC_TRACE");
            break;
        }
    }
}
#[test]
fn trace_p99() { trace("p99 +100%", 120.0); }
#[test]
fn trace_broken() { trace("3% of users", 1e8); }
