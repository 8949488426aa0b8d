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

fn at(i: u8) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([10, 0, 0, i], 80))
}

/// One 5xx ejects for 30 s, doubling; swept every 10 s.
fn eager() -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx: 1,
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(300),
        interval: Duration::from_secs(10),
        ..permissive()
    }
}

#[tokio::test(start_paused = true)]
async fn a_carried_ejection_keeps_its_time_and_its_history() {
    let (mut old, _) = detector(eager(), 2);
    let start = Instant::now();
    old.observe(0, Observation::Status(500), start, &mut always());
    old.sweep(start + Duration::from_secs(30), &mut always());
    // Ejected a second time: 60 s.
    let t = start + Duration::from_secs(31);
    old.observe(0, Observation::Status(500), t, &mut always());
    let carry = old.carry(&[at(0), at(1)], t);
    assert_eq!((carry.len(), carry.ejected()), (2, 1));
    assert_eq!(carry.hosts[&at(0)].num_ejections, 2);

    // The new cluster lists the hosts in another order, with a new one.
    let (mut new, store) = detector(eager(), 3);
    new.resume(&[at(9), at(1), at(0)], &carry);
    assert!(new.is_ejected(2));
    assert!(!new.is_ejected(0) && !new.is_ejected(1));
    assert_eq!(stat(&store, "ejections_active"), 1);
    assert!(
        new.sweep(t + Duration::from_secs(59), &mut always())
            .is_empty()
    );
    assert_eq!(
        new.sweep(t + Duration::from_secs(60), &mut always()),
        vec![Action::Uneject { host: 2 }]
    );
    assert_eq!(stat(&store, "ejections_active"), 0);
    // Its history goes on: a third ejection, before any decay, is 90 s.
    let third = new.observe(
        2,
        Observation::Status(500),
        t + Duration::from_secs(61),
        &mut always(),
    );
    assert!(matches!(
        third.first(),
        Some(Action::Eject { duration, .. }) if *duration == Duration::from_secs(90)
    ));
}

fn watched(addresses: &[u8]) -> Vec<WatchedHost> {
    addresses
        .iter()
        .map(|i| WatchedHost {
            address: at(*i),
            health: std::sync::Arc::new(crate::health::HostHealth::default()),
        })
        .collect()
}

fn out(h: &WatchedHost) -> bool {
    h.health.bits() & crate::health::flags::FAILED_OUTLIER_CHECK != 0
}

fn launch(
    scope: &Scope,
    hosts: &[WatchedHost],
    carried: Option<OutlierCarry>,
) -> (Passive, tokio_util::sync::CancellationToken) {
    let stop = tokio_util::sync::CancellationToken::new();
    let passive = start(
        "c".into(),
        eager(),
        hosts.to_vec(),
        scope,
        Box::new(|| {}),
        stop.clone(),
        carried,
    );
    (passive, stop)
}

#[tokio::test(start_paused = true)]
async fn a_retired_task_hands_its_ejections_to_the_next_cluster() {
    let store = Store::new();
    let scope = Scope::tagged(store.clone(), "cluster", "c", "envoy_cluster_name");
    let hosts = watched(&[0, 1]);
    let t0 = Instant::now();
    let (old, _old_stop) = launch(&scope, &hosts, None);
    // Sweeps at t0 + 10, 20, 30, 40 s: ejected at 1 s for 30 s, the host is
    // back at the sweep of 40 s.
    tokio::time::sleep_until(t0 + Duration::from_secs(1)).await;
    old.report(0, Observation::Status(500));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(out(&hosts[0]));

    tokio::time::sleep_until(t0 + Duration::from_secs(15)).await;
    let carry = old.retire().await;
    assert_eq!(carry.ejected(), 1);
    old.report(1, Observation::Status(500));
    assert_eq!(
        stat(&store, "reports_dropped"),
        0,
        "a retired task is not full"
    );

    // The surviving host keeps its flags' Arc; host 2 is new.
    let mut next = vec![hosts[0].clone()];
    next.extend(watched(&[2]));
    let (new, _new_stop) = launch(&scope, &next, Some(carry));
    assert!(out(&next[0]), "still ejected");
    assert_eq!(stat(&store, "ejections_active"), 1);
    tokio::time::sleep_until(t0 + Duration::from_millis(39_999)).await;
    assert!(out(&next[0]), "not before its time");
    tokio::time::sleep_until(t0 + Duration::from_millis(40_001)).await;
    assert!(
        !out(&next[0]),
        "back at the sweep the old task would have run"
    );
    assert_eq!(stat(&store, "ejections_active"), 0);

    // Ejected again just after 40 s, before any decay: for 60 s, not a
    // first ejection's 30 s; back at the first sweep past 100 s.
    new.report(0, Observation::Status(500));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(out(&next[0]));
    tokio::time::sleep_until(t0 + Duration::from_secs(85)).await;
    assert!(out(&next[0]), "a new history would be back at 80 s");
    tokio::time::sleep_until(t0 + Duration::from_millis(109_999)).await;
    assert!(out(&next[0]));
    tokio::time::sleep_until(t0 + Duration::from_millis(110_001)).await;
    assert!(!out(&next[0]));
}

#[tokio::test(start_paused = true)]
async fn retire_after_the_stop_token_still_hands_the_state_over() {
    let store = Store::new();
    let scope = Scope::tagged(store.clone(), "cluster", "c", "envoy_cluster_name");
    let hosts = watched(&[0, 1]);
    let (old, stop) = launch(&scope, &hosts, None);
    old.report(1, Observation::Status(500));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(out(&hosts[1]));

    // Cancelled, and the task already gone: its state was left behind.
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(1)).await;
    let carry = old.retire().await;
    assert_eq!(carry.ejected(), 1);
    assert!(old.retire().await.is_empty(), "handed over once");

    // Cancelled, and the task not yet run since: the same.
    let (again, stop) = launch(&scope, &hosts, Some(carry));
    stop.cancel();
    assert_eq!(again.retire().await.ejected(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_uncarried_host_loses_a_stale_ejection_flag() {
    let store = Store::new();
    let scope = Scope::tagged(store.clone(), "cluster", "c", "envoy_cluster_name");
    let hosts = watched(&[0, 1]);
    hosts[0]
        .health
        .set(crate::health::flags::FAILED_OUTLIER_CHECK);
    let (_passive, _stop) = launch(&scope, &hosts, None);
    assert!(!out(&hosts[0]), "no detector would ever let it back");
    assert_eq!(stat(&store, "ejections_active"), 0);
}
