use stickycanary::simulate::report::run_seed;
use stickycanary::simulate::rollout::run;
use stickycanary::simulate::scenario::catalog;
use stickycanary::simulate::Variant;
#[test]
fn trace() {
    let (index, scenario) = catalog().into_iter().enumerate().find(|(_, s)| s.name.starts_with("3% of users")).unwrap();
    for r in 0..60 {
        let end = run(&scenario, Variant::ClusterRobust, run_seed(20261126, index, r));
        eprintln!("run {r}: {end:?}");
        if matches!(end, stickycanary::simulate::End::Promoted{..}) {
            std::env::set_var("SC_TRACE", "1");
            run(&scenario, Variant::ClusterRobust, run_seed(20261126, index, r));
            std::env::remove_var("SC_TRACE");
            break;
        }
    }
}
