//! The detector against Envoy's algorithms (envoy-health.md §2), on tokio's
//! paused clock.

use std::time::Duration;

use super::*;
use crate::stats::{Scope, Store};

fn detector(cfg: OutlierDetection, hosts: usize) -> (Detector, std::sync::Arc<Store>) {
    let store = Store::new();
    let scope = Scope::tagged(store.clone(), "cluster", "c", "envoy_cluster_name");
    (Detector::new(cfg, hosts, OutlierStats::new(&scope)), store)
}

fn stat(store: &Store, name: &str) -> i64 {
    store
        .samples()
        .into_iter()
        .find(|s| s.name == format!("cluster.c.outlier_detection.{name}"))
        .map_or(-1, |s| s.value)
}

/// Always enforce, no jitter.
fn always() -> impl FnMut() -> u64 {
    || 0
}

fn permissive() -> OutlierDetection {
    OutlierDetection {
        max_ejection_percent: 100,
        ..OutlierDetection::default()
    }
}

fn ejected(actions: &[Action]) -> Vec<(usize, Ejection)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Eject { host, kind, .. } => Some((*host, *kind)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn consecutive_5xx_ejects_on_the_nth() {
    let (mut d, store) = detector(permissive(), 2);
    let now = Instant::now();
    for _ in 0..4 {
        assert!(
            d.observe(0, Observation::Status(500), now, &mut always())
                .is_empty()
        );
    }
    // A success in between resets the count.
    d.observe(0, Observation::Status(200), now, &mut always());
    for _ in 0..4 {
        d.observe(0, Observation::Status(500), now, &mut always());
    }
    let actions = d.observe(0, Observation::Status(500), now, &mut always());
    assert_eq!(ejected(&actions), vec![(0, Ejection::Consecutive5xx)]);
    assert!(d.is_ejected(0));
    assert_eq!(stat(&store, "ejections_active"), 1);
    assert_eq!(stat(&store, "ejections_enforced_consecutive_5xx"), 1);
    assert_eq!(stat(&store, "ejections_detected_consecutive_5xx"), 1);
}

#[tokio::test(start_paused = true)]
async fn gateway_failures_are_detected_but_not_enforced_by_default() {
    let cfg = OutlierDetection {
        consecutive_5xx: 100,
        ..permissive()
    };
    let (mut d, store) = detector(cfg.clone(), 2);
    let now = Instant::now();
    let mut last = Vec::new();
    for _ in 0..5 {
        last = d.observe(0, Observation::Status(503), now, &mut always());
    }
    assert_eq!(
        last,
        vec![Action::Detected {
            host: 0,
            kind: Ejection::ConsecutiveGatewayFailure
        }]
    );
    assert!(!d.is_ejected(0));
    assert_eq!(
        stat(&store, "ejections_detected_consecutive_gateway_failure"),
        1
    );
    assert_eq!(
        stat(&store, "ejections_enforced_consecutive_gateway_failure"),
        0
    );

    let (mut d, _) = detector(
        OutlierDetection {
            enforcing_consecutive_gateway_failure: 100,
            ..cfg
        },
        2,
    );
    for _ in 0..4 {
        d.observe(1, Observation::Status(502), now, &mut always());
    }
    // A 500 is a 5xx but not a gateway failure: the gateway count restarts.
    d.observe(1, Observation::Status(500), now, &mut always());
    for _ in 0..4 {
        d.observe(1, Observation::Status(504), now, &mut always());
    }
    assert!(!d.is_ejected(1));
    let actions = d.observe(1, Observation::Status(504), now, &mut always());
    assert_eq!(
        ejected(&actions),
        vec![(1, Ejection::ConsecutiveGatewayFailure)]
    );
}

#[tokio::test(start_paused = true)]
async fn local_origin_errors_count_as_504_and_503_unless_split() {
    let now = Instant::now();
    // Not split: timeouts are gateway failures and 5xx.
    let (mut d, _) = detector(permissive(), 2);
    for _ in 0..4 {
        d.observe(0, Observation::Timeout, now, &mut always());
    }
    let actions = d.observe(0, Observation::ConnectFailed, now, &mut always());
    assert_eq!(ejected(&actions), vec![(0, Ejection::Consecutive5xx)]);

    // Split: local-origin failures only feed their own counter...
    let (mut d, _) = detector(
        OutlierDetection {
            split_external_local_origin_errors: true,
            ..permissive()
        },
        2,
    );
    for _ in 0..4 {
        d.observe(0, Observation::Timeout, now, &mut always());
        d.observe(0, Observation::Status(500), now, &mut always());
    }
    assert!(!d.is_ejected(0));
    // ...which a connection success resets.
    d.observe(0, Observation::ConnectSuccess, now, &mut always());
    for _ in 0..4 {
        d.observe(0, Observation::ConnectFailed, now, &mut always());
    }
    assert!(!d.is_ejected(0));
    let actions = d.observe(0, Observation::ConnectFailed, now, &mut always());
    assert_eq!(
        ejected(&actions),
        vec![(0, Ejection::ConsecutiveLocalOriginFailure)]
    );
}

#[tokio::test(start_paused = true)]
async fn success_rate_ejects_the_one_bad_host_among_five() {
    let (mut d, store) = detector(permissive(), 5);
    let now = Instant::now();
    for host in 0..5 {
        for i in 0..100 {
            // Host 4 fails half its requests; the others none.
            let status = if host == 4 && i % 2 == 0 { 500 } else { 200 };
            d.observe(host, Observation::Status(status), now, &mut always());
        }
    }
    // {50,100,100,100,100}: mean 90, stdev 20, threshold 52 → host 4.
    let actions = d.sweep(now + Duration::from_secs(10), &mut always());
    assert_eq!(ejected(&actions), vec![(4, Ejection::SuccessRate)]);
    assert_eq!(stat(&store, "ejections_enforced_success_rate"), 1);
    // What /clusters prints: the mean, the threshold, each host's rate.
    let p = d.published();
    assert_eq!(p.success_rate_average.get(), 90.0);
    assert!((p.success_rate_ejection_threshold.get() - 52.0).abs() < 1e-9);
    assert_eq!(p.hosts[4].0.get(), 50.0);
    assert_eq!(p.hosts[0].0.get(), 100.0);
    assert_eq!(p.local_origin_success_rate_average.get(), -1.0);
}

#[tokio::test(start_paused = true)]
async fn failure_percentage_needs_enforcing_to_eject() {
    let cfg = OutlierDetection {
        enforcing_failure_percentage: 100,
        enforcing_success_rate: 0,
        // Only the sweep may eject here.
        consecutive_5xx: 1000,
        consecutive_gateway_failure: 1000,
        ..permissive()
    };
    let (mut d, store) = detector(cfg, 5);
    let now = Instant::now();
    for host in 0..5 {
        for i in 0..50 {
            let status = if host == 2 && i % 10 != 0 { 503 } else { 200 };
            d.observe(host, Observation::Status(status), now, &mut always());
        }
    }
    let actions = d.sweep(now, &mut always());
    assert_eq!(ejected(&actions), vec![(2, Ejection::FailurePercentage)]);
    assert_eq!(stat(&store, "ejections_enforced_failure_percentage"), 1);
}

#[tokio::test(start_paused = true)]
async fn ejection_time_grows_with_each_ejection_and_decays() {
    let cfg = OutlierDetection {
        consecutive_5xx: 1,
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(300),
        interval: Duration::from_secs(10),
        ..permissive()
    };
    let (mut d, _) = detector(cfg, 2);
    let start = Instant::now();
    let duration_of = |actions: &[Action]| match actions.first() {
        Some(Action::Eject { duration, .. }) => *duration,
        other => panic!("{other:?}"),
    };

    let first = d.observe(0, Observation::Status(500), start, &mut always());
    assert_eq!(duration_of(&first), Duration::from_secs(30));
    // Back at the first sweep past 30 s.
    assert!(
        d.sweep(start + Duration::from_secs(20), &mut always())
            .is_empty()
    );
    let back = d.sweep(start + Duration::from_secs(30), &mut always());
    assert_eq!(back, vec![Action::Uneject { host: 0 }]);

    // Ejected again before any decay: twice as long.
    let t = start + Duration::from_secs(31);
    let second = d.observe(0, Observation::Status(500), t, &mut always());
    assert_eq!(duration_of(&second), Duration::from_secs(60));
    assert!(
        d.sweep(t + Duration::from_secs(59), &mut always())
            .is_empty()
    );
    assert_eq!(d.sweep(t + Duration::from_secs(60), &mut always()).len(), 1);

    // Staying back decays the multiplier by one per sweep after an interval:
    // two sweeps later a new ejection is back to the base time.
    let back_at = t + Duration::from_secs(60);
    d.sweep(back_at + Duration::from_secs(10), &mut always());
    d.sweep(back_at + Duration::from_secs(20), &mut always());
    let third = d.observe(
        0,
        Observation::Status(500),
        back_at + Duration::from_secs(21),
        &mut always(),
    );
    assert_eq!(duration_of(&third), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn max_ejection_percent_counts_the_would_be_ejection() {
    let now = Instant::now();
    // Default 10% of 5 hosts: even one ejection would be 20%.
    let (mut d, store) = detector(OutlierDetection::default(), 5);
    for _ in 0..5 {
        d.observe(0, Observation::Status(500), now, &mut always());
    }
    assert!(!d.is_ejected(0));
    assert_eq!(stat(&store, "ejections_overflow"), 1);

    // always_eject_one_host: the first ejection is always admitted.
    let (mut d, _) = detector(
        OutlierDetection {
            always_eject_one_host: true,
            ..OutlierDetection::default()
        },
        5,
    );
    for host in 0..2 {
        for _ in 0..5 {
            d.observe(host, Observation::Status(500), now, &mut always());
        }
    }
    assert!(d.is_ejected(0));
    assert!(!d.is_ejected(1), "the second would exceed 10%");
}

#[tokio::test(start_paused = true)]
async fn a_passing_active_check_unejects_unless_told_not_to() {
    let now = Instant::now();
    let (mut d, _) = detector(
        OutlierDetection {
            consecutive_5xx: 1,
            ..permissive()
        },
        2,
    );
    d.observe(0, Observation::Status(500), now, &mut always());
    assert_eq!(
        d.active_check_passed(0, now),
        Some(Action::Uneject { host: 0 })
    );
    assert!(!d.is_ejected(0));

    let (mut d, _) = detector(
        OutlierDetection {
            consecutive_5xx: 1,
            successful_active_health_check_uneject_host: false,
            ..permissive()
        },
        2,
    );
    d.observe(0, Observation::Status(500), now, &mut always());
    assert_eq!(d.active_check_passed(0, now), None);
    assert!(d.is_ejected(0));
}
