//! The state machine against Envoy's semantics (envoy-health.md §1.6, §1.7).

use std::time::Duration;

use super::*;
use crate::config::model::{Checker, HealthCheck, TcpCheck};

fn th(healthy: u32, unhealthy: u32) -> Thresholds {
    Thresholds {
        healthy,
        unhealthy,
        log_every_success: false,
        log_every_failure: false,
    }
}

fn pass() -> Outcome {
    Outcome::Pass { degraded: false }
}

fn fail(kind: FailureType) -> Outcome {
    Outcome::Fail {
        kind,
        retriable: false,
        immediate_fail_header: false,
        refused: false,
        reason: String::new(),
    }
}

fn retriable() -> Outcome {
    Outcome::Fail {
        kind: FailureType::Active,
        retriable: true,
        immediate_fail_header: false,
        refused: false,
        reason: "status 503".into(),
    }
}

fn failed(s: &Session) -> bool {
    s.flags & flags::FAILED_ACTIVE_HC != 0
}

#[test]
fn new_hosts_start_failed_and_the_first_success_makes_them_healthy() {
    let mut s = Session::new(false);
    assert!(failed(&s));
    let step = s.apply(&pass(), th(3, 3));
    assert!(!failed(&s));
    assert_eq!(step.transition, Transition::Changed);
    assert_eq!(step.events, vec![Event::AddHealthy { first_check: true }]);
}

#[test]
fn a_first_failure_is_logged_and_keeps_the_host_failed() {
    let mut s = Session::new(true);
    assert_ne!(s.flags & flags::PENDING_ACTIVE_HC, 0);
    let step = s.apply(&fail(FailureType::NetworkTimeout), th(2, 2));
    assert!(failed(&s));
    assert_eq!(
        s.flags & flags::PENDING_ACTIVE_HC,
        0,
        "cleared by any first result"
    );
    assert_ne!(s.flags & flags::ACTIVE_HC_TIMEOUT, 0);
    assert_eq!(step.transition, Transition::Changed);
    assert_eq!(
        step.events,
        vec![Event::Failure {
            failure_type: FailureType::NetworkTimeout,
            first_check: true
        }]
    );
}

#[test]
fn network_failures_count_toward_the_unhealthy_threshold() {
    let mut s = Session::new(false);
    s.apply(&pass(), th(2, 3));
    for i in 1..3 {
        let step = s.apply(&fail(FailureType::Network), th(2, 3));
        assert!(!failed(&s), "still healthy after {i}");
        assert_eq!(step.transition, Transition::ChangePending);
        assert!(
            step.events.is_empty(),
            "later failures are not logged by default"
        );
    }
    let step = s.apply(&fail(FailureType::Network), th(2, 3));
    assert!(failed(&s));
    assert_eq!(step.transition, Transition::Changed);
    assert_eq!(
        step.events,
        vec![Event::EjectUnhealthy {
            failure_type: FailureType::Network
        }]
    );
}

#[test]
fn an_unexpected_status_is_immediate_but_a_retriable_one_is_counted() {
    let mut s = Session::new(false);
    s.apply(&pass(), th(2, 3));
    assert_eq!(
        s.apply(&retriable(), th(2, 3)).transition,
        Transition::ChangePending
    );
    assert!(!failed(&s));
    s.apply(&fail(FailureType::Active), th(2, 3));
    assert!(
        failed(&s),
        "a non-retriable active failure ignores the threshold"
    );
}

#[test]
fn recovery_needs_healthy_threshold_successes_after_the_first_check() {
    let mut s = Session::new(false);
    s.apply(&pass(), th(3, 1));
    s.apply(&fail(FailureType::Network), th(3, 1));
    assert!(failed(&s));
    assert_eq!(
        s.apply(&pass(), th(3, 1)).transition,
        Transition::ChangePending
    );
    assert_eq!(
        s.apply(&pass(), th(3, 1)).transition,
        Transition::ChangePending
    );
    let step = s.apply(&pass(), th(3, 1));
    assert_eq!(step.transition, Transition::Changed);
    assert_eq!(step.events, vec![Event::AddHealthy { first_check: false }]);
    assert!(!failed(&s));
}

#[test]
fn a_failure_in_between_restarts_the_healthy_count() {
    let mut s = Session::new(false);
    s.apply(&fail(FailureType::Network), th(2, 1));
    s.apply(&pass(), th(2, 1));
    s.apply(&fail(FailureType::Network), th(2, 1));
    s.apply(&pass(), th(2, 1));
    assert!(failed(&s));
    s.apply(&pass(), th(2, 1));
    assert!(!failed(&s));
}

#[test]
fn zero_thresholds_never_trip_by_counting() {
    let mut s = Session::new(false);
    s.apply(&pass(), th(0, 0));
    for _ in 0..10 {
        s.apply(&fail(FailureType::Network), th(0, 0));
    }
    assert!(!failed(&s), "Envoy compares with ==");
    s.apply(&fail(FailureType::Active), th(0, 0));
    assert!(failed(&s));
    for _ in 0..10 {
        s.apply(&pass(), th(0, 0));
    }
    assert!(failed(&s), "only a first check can mark healthy with 0");
}

#[test]
fn degraded_is_set_and_cleared_by_each_pass_without_threshold() {
    let mut s = Session::new(false);
    s.apply(&pass(), th(2, 2));
    let step = s.apply(&Outcome::Pass { degraded: true }, th(2, 2));
    assert_ne!(s.flags & flags::DEGRADED_ACTIVE_HC, 0);
    assert_eq!(step.transition, Transition::Changed);
    assert_eq!(step.events, vec![Event::Degraded]);
    let step = s.apply(&pass(), th(2, 2));
    assert_eq!(s.flags & flags::DEGRADED_ACTIVE_HC, 0);
    assert_eq!(step.events, vec![Event::NoLongerDegraded]);
}

#[test]
fn immediate_fail_header_on_a_failed_check_excludes_and_clears_on_recovery() {
    let mut s = Session::new(false);
    s.apply(&pass(), th(1, 3));
    s.apply(
        &Outcome::Fail {
            kind: FailureType::Active,
            retriable: false,
            immediate_fail_header: true,
            refused: false,
            reason: "status 503".into(),
        },
        th(1, 3),
    );
    assert_ne!(s.flags & flags::EXCLUDED_VIA_IMMEDIATE_HC_FAIL, 0);
    s.apply(&pass(), th(1, 3));
    assert_eq!(s.flags & flags::EXCLUDED_VIA_IMMEDIATE_HC_FAIL, 0);
    assert_eq!(s.flags, 0);
}

#[test]
fn passive_immediate_fail_marks_at_once() {
    let mut s = Session::new(false);
    s.apply(&pass(), th(2, 5));
    let step = s.immediate_fail(th(2, 5));
    assert!(failed(&s));
    assert_ne!(s.flags & flags::EXCLUDED_VIA_IMMEDIATE_HC_FAIL, 0);
    assert_eq!(
        step.events,
        vec![Event::EjectUnhealthy {
            failure_type: FailureType::Passive
        }]
    );
}

#[test]
fn always_log_options_add_events() {
    let loud = Thresholds {
        healthy: 2,
        unhealthy: 3,
        log_every_success: true,
        log_every_failure: true,
    };
    let mut s = Session::new(false);
    s.apply(&pass(), loud);
    assert_eq!(s.apply(&pass(), loud).events, vec![Event::Success]);
    assert_eq!(
        s.apply(&fail(FailureType::Network), loud).events,
        vec![Event::Failure {
            failure_type: FailureType::Network,
            first_check: false
        }]
    );
}

/// A TCP check with every interval distinct (shared with revival.rs tests).
pub(crate) fn hc() -> HealthCheck {
    HealthCheck {
        timeout: Duration::from_secs(1),
        interval: Duration::from_secs(5),
        initial_jitter: Duration::ZERO,
        interval_jitter: Duration::ZERO,
        interval_jitter_percent: 0,
        unhealthy_threshold: 3,
        healthy_threshold: 2,
        reuse_connection: true,
        no_traffic_interval: Duration::from_secs(60),
        no_traffic_healthy_interval: Duration::from_secs(90),
        unhealthy_interval: Duration::from_secs(10),
        unhealthy_edge_interval: Duration::from_secs(2),
        healthy_edge_interval: Duration::from_secs(3),
        always_log_health_check_failures: false,
        always_log_health_check_success: false,
        event_log_paths: vec![],
        checker: Checker::Tcp(TcpCheck::default()),
    }
}

#[test]
fn interval_selection_is_envoys() {
    let h = hc();
    let zero = || 0;
    let secs = |d: Duration| d.as_secs();
    assert_eq!(
        secs(next_interval(&h, true, Transition::Unchanged, true, zero)),
        5
    );
    assert_eq!(
        secs(next_interval(&h, true, Transition::Changed, true, zero)),
        5
    );
    assert_eq!(
        secs(next_interval(
            &h,
            true,
            Transition::ChangePending,
            true,
            zero
        )),
        3
    );
    assert_eq!(
        secs(next_interval(&h, false, Transition::Unchanged, true, zero)),
        10
    );
    assert_eq!(
        secs(next_interval(
            &h,
            false,
            Transition::ChangePending,
            true,
            zero
        )),
        2
    );
    assert_eq!(
        secs(next_interval(&h, true, Transition::Unchanged, false, zero)),
        90
    );
    assert_eq!(
        secs(next_interval(
            &h,
            true,
            Transition::ChangePending,
            false,
            zero
        )),
        60
    );
    assert_eq!(
        secs(next_interval(&h, false, Transition::Unchanged, false, zero)),
        60
    );
}

#[test]
fn jitter_adds_within_its_bounds() {
    let mut h = hc();
    h.interval_jitter = Duration::from_millis(1000);
    h.interval_jitter_percent = 10;
    // percent span 500 ms, jitter span 1000 ms: the largest draws give
    // 5000 + 499 + 999.
    let big = || u64::MAX;
    let wait = next_interval(&h, true, Transition::Unchanged, true, big);
    assert_eq!(
        wait,
        Duration::from_millis(5000 + (u64::MAX % 500) + (u64::MAX % 1000))
    );
    let wait = next_interval(&h, true, Transition::Unchanged, true, || 0);
    assert_eq!(wait, Duration::from_millis(5000));
    h.initial_jitter = Duration::from_millis(500);
    assert_eq!(initial_delay(&h, || 0), Duration::from_millis(1));
    assert_eq!(initial_delay(&h, || 499), Duration::from_millis(499));
    h.initial_jitter = Duration::ZERO;
    assert_eq!(initial_delay(&h, || 7), Duration::ZERO);
}

#[test]
fn a_carried_session_is_first_checked_within_its_interval() {
    let mut h = hc(); // interval 5s
    h.initial_jitter = Duration::from_secs(60);
    assert_eq!(carried_delay(&h, || 0), Duration::ZERO);
    assert_eq!(carried_delay(&h, || 4999), Duration::from_millis(4999));
    assert_eq!(carried_delay(&h, || 5000), Duration::ZERO);
    assert!(carried_delay(&h, || u64::MAX) < h.interval);
    h.interval = Duration::ZERO;
    assert_eq!(carried_delay(&h, || 7), Duration::ZERO);
}

#[test]
fn a_carried_session_keeps_its_counts() {
    // What a reload hands over is the whole session, not just its flags:
    // a failed host mid-recovery needs only the passes it still lacks.
    let mut s = Session::new(false);
    s.apply(&pass(), th(3, 1));
    s.apply(&fail(FailureType::Network), th(3, 1));
    s.apply(&pass(), th(3, 1));
    let mut carried = s.clone();
    assert!(carried.has_result());
    assert_eq!(
        carried.apply(&pass(), th(3, 1)).transition,
        Transition::ChangePending
    );
    assert_eq!(
        carried.apply(&pass(), th(3, 1)).transition,
        Transition::Changed
    );
}

/// Drives a session as the scheduler does, on tokio's paused clock: probe,
/// apply, sleep the chosen interval. Returns when `until` holds.
async fn run_until(
    s: &mut Session,
    h: &HealthCheck,
    result: impl Fn() -> Outcome,
    until: impl Fn(&Session) -> bool,
) -> Duration {
    let start = tokio::time::Instant::now();
    loop {
        let outcome = result();
        let step = s.apply(&outcome, Thresholds::from(h));
        if until(s) {
            return start.elapsed();
        }
        let healthy = matches!(outcome, Outcome::Pass { .. });
        tokio::time::sleep(next_interval(h, healthy, step.transition, true, || 0)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn detection_and_recovery_take_the_time_envoy_gives() {
    let h = hc(); // interval 5s, unhealthy 10s, edges 2s/3s, thresholds 3/2
    let mut s = Session::new(false);
    s.apply(&pass(), Thresholds::from(&h));

    // Three counted failures, the two waits between them at the unhealthy
    // edge interval: out after 2 × 2s.
    let out = run_until(&mut s, &h, || fail(FailureType::Network), failed).await;
    assert_eq!(out, Duration::from_secs(4));

    // Two passes, one healthy-edge wait between them: back after 3s.
    let back = run_until(&mut s, &h, pass, |s| !failed(s)).await;
    assert_eq!(back, Duration::from_secs(3));
}
