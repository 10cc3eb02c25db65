use super::*;

#[test]
fn counter_name_follows_the_istio_tag_convention() {
    assert_eq!(
        counter_name("checkout", "canary", "5xx", "hash"),
        "rollout=.=checkout;.;version=.=canary;.;code_class=.=5xx;.;source=.=hash;.;stickycanary_requests_total"
    );
    assert_eq!(
        histogram_name("checkout", "stable", "override"),
        "rollout=.=checkout;.;version=.=stable;.;source=.=override;.;stickycanary_request_duration_ms"
    );
}

#[test]
fn status_codes_map_to_their_class() {
    let class = |status| CODE_CLASSES[code_class(status)];
    assert_eq!(class(Some(100)), "1xx");
    assert_eq!(class(Some(200)), "2xx");
    assert_eq!(class(Some(304)), "3xx");
    assert_eq!(class(Some(404)), "4xx");
    assert_eq!(class(Some(503)), "5xx");
    assert_eq!(class(Some(599)), "5xx");
    assert_eq!(class(Some(0)), "none");
    assert_eq!(class(Some(600)), "none");
    assert_eq!(class(None), "none");
}

#[test]
fn every_stat_of_a_config_is_named_once_at_its_index() {
    let config = CompiledConfig::from_json(
        br#"{"rollouts":{"b":{"hosts":["b"],"weight":1,"canaryVersion":"v2"},"a":{"hosts":["a"],"weight":1}}}"#,
    )
    .unwrap();
    let names = StatNames::for_config(&config);
    assert_eq!(names.counters.len(), 2 * 2 * 6 * 2);
    assert_eq!(names.histograms.len(), 2 * 2 * 2);
    let unique: std::collections::HashSet<_> =
        names.counters.iter().chain(&names.histograms).collect();
    assert_eq!(unique.len(), names.counters.len() + names.histograms.len());
    // Rollouts are in name order: "a" is 0, "b" is 1.
    assert_eq!(
        names.counters[counter_index(1, Version::Canary, code_class(Some(503)), Source::Override)],
        counter_name("b", "v2", "5xx", "override")
    );
    assert_eq!(
        names.counters[counter_index(0, Version::Stable, code_class(None), Source::Hash)],
        counter_name("a", "stable", "none", "hash")
    );
    assert_eq!(
        names.histograms[histogram_index(1, Version::Stable, Source::Override)],
        histogram_name("b", "stable", "override")
    );
}

#[test]
fn every_counter_index_points_at_its_own_name() {
    let config =
        CompiledConfig::from_json(br#"{"rollouts":{"r":{"hosts":["h"],"weight":1}}}"#).unwrap();
    let names = StatNames::for_config(&config);
    for version in [Version::Stable, Version::Canary] {
        let version_name = config.rollouts[0].version_name(version);
        for (class_index, class) in CODE_CLASSES.iter().enumerate() {
            for source in [Source::Hash, Source::Override] {
                let index = counter_index(0, version, class_index, source);
                assert_eq!(
                    names.counters[index],
                    counter_name("r", version_name, class, source.label())
                );
            }
        }
    }
}

#[test]
fn durations_round_up_to_whole_milliseconds() {
    assert_eq!(duration_ms(0), 0);
    assert_eq!(duration_ms(1), 1);
    assert_eq!(duration_ms(1_000_000), 1);
    assert_eq!(duration_ms(200_000_000), 200);
    assert_eq!(duration_ms(200_300_000), 201);
}

#[test]
fn every_shard_counter_index_points_at_its_own_name_and_a_rollout_has_96() {
    let config = CompiledConfig::from_json(
        br#"{"rollouts":{"b":{"hosts":["b"],"weight":1,"canaryVersion":"v2"},"a":{"hosts":["a"],"weight":1}}}"#,
    )
    .unwrap();
    let names = StatNames::for_config(&config);
    assert_eq!(names.shard_counters.len(), 2 * 96);
    for (rollout_index, rollout) in config.rollouts.iter().enumerate() {
        for version in [Version::Stable, Version::Canary] {
            for shard in 0..SHARDS {
                for (outcome_index, outcome) in OUTCOMES.iter().enumerate() {
                    let index = shard_counter_index(rollout_index, version, shard, outcome_index);
                    assert_eq!(
                        names.shard_counters[index],
                        shard_counter_name(
                            &rollout.name,
                            rollout.version_name(version),
                            shard,
                            outcome
                        )
                    );
                }
            }
        }
    }
    assert_eq!(
        shard_counter_name("checkout", "canary", 15, "slow"),
        "rollout=.=checkout;.;version=.=canary;.;shard=.=15;.;outcome=.=slow;.;stickycanary_shard_requests_total"
    );
}

#[test]
fn outcome_is_error_for_5xx_only_then_slow_past_the_threshold() {
    let five = code_class(Some(503));
    let four = code_class(Some(404));
    assert_eq!(OUTCOMES[outcome(five, Some(1), 10)], "error");
    assert_eq!(OUTCOMES[outcome(five, None, 10)], "error");
    assert_eq!(OUTCOMES[outcome(four, Some(11), 10)], "slow");
    assert_eq!(OUTCOMES[outcome(four, Some(10), 10)], "ok");
    assert_eq!(OUTCOMES[outcome(code_class(None), Some(11), 10)], "slow");
    assert_eq!(OUTCOMES[outcome(code_class(Some(200)), None, 10)], "ok");
}
