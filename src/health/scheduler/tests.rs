//! Sessions carried over a reload, against a TCP upstream double on a real
//! loopback socket, on tokio's paused clock (loopback answers within the
//! runtime's own poll, before the paused clock moves on).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::model::{Checker, HealthCheck, TcpCheck};
use crate::stats::Store;

/// Answers each connection with `pong` while up; while down, closes it at
/// once (the check sees a network failure). Stops with the runtime.
struct Upstream {
    address: SocketAddr,
    up: Arc<AtomicBool>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let answering = Arc::clone(&up);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                if answering.load(Ordering::SeqCst) {
                    tokio::spawn(async move {
                        let _ = conn.write_all(b"pong").await;
                        // Held until the prober has read and closed.
                        let _ = conn.readable().await;
                    });
                }
            }
        });
        Self { address, up }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

/// A TCP check expecting `pong` on a new connection each time; interval
/// 5s, unhealthy 10s, edges 2s/3s, thresholds healthy 2 / unhealthy 3.
fn pong_check() -> HealthCheck {
    HealthCheck {
        reuse_connection: false,
        checker: Checker::Tcp(TcpCheck {
            send: None,
            receive: vec![b"pong".to_vec()],
        }),
        ..crate::health::checker::tests::hc()
    }
}

/// The same upstream, connect-only: a second, different check.
fn connect_check() -> HealthCheck {
    HealthCheck {
        reuse_connection: false,
        checker: Checker::Tcp(TcpCheck::default()),
        ..crate::health::checker::tests::hc()
    }
}

fn host(i: u8, check_address: SocketAddr) -> CheckedHost {
    CheckedHost {
        address: SocketAddr::from(([10, 0, 0, i], 80)),
        check_address,
        health: Arc::new(HostHealth::default()),
    }
}

/// A cluster's checks as the cluster starts them, with traffic seen (the
/// intervals are the traffic ones).
struct Started {
    checks: Arc<ActiveChecks>,
    warmup: Arc<Warmup>,
    stop: CancellationToken,
}

fn start(
    store: &Arc<Store>,
    checks: Vec<HealthCheck>,
    hosts: &[CheckedHost],
    carried: Option<CheckCarry>,
) -> Started {
    let traffic = Arc::new(FirstTraffic::default());
    traffic.mark();
    let warmup = Warmup::new();
    let stop = CancellationToken::new();
    let checks = ActiveChecks::start(
        ClusterChecks {
            cluster: "c".into(),
            checks,
            hosts: hosts.to_vec(),
            traffic,
            on_change: Box::new(|| {}),
            on_pass: None,
            carried,
        },
        store,
        &warmup,
        &stop,
    );
    Started {
        checks,
        warmup,
        stop,
    }
}

impl Started {
    /// What the cluster does when a reload replaces it.
    fn retire(self) -> CheckCarry {
        self.stop.cancel();
        self.checks.carry()
    }
}

fn stat(store: &Store, name: &str) -> i64 {
    store
        .samples()
        .into_iter()
        .find(|s| s.name == format!("cluster.c.health_check.{name}"))
        .map_or(-1, |s| s.value)
}

fn failed(h: &CheckedHost) -> bool {
    h.health.bits() & flags::FAILED_ACTIVE_HC != 0
}

/// Lets the paused clock run, a millisecond at a time, until `done` holds
/// (within a minute).
async fn until(what: &str, done: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < give_up, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_host_carried_stays_failed_until_healthy_threshold_passes() {
    let upstream = Upstream::start().await;
    let store = Store::new();
    let hosts = [host(1, upstream.address)];
    let old = start(&store, vec![pong_check()], &hosts, None);
    until("first check passes", || !failed(&hosts[0])).await;

    // Three network failures in a row (unhealthy_threshold): out.
    upstream.set_up(false);
    until("the host fails", || failed(&hosts[0])).await;
    assert_eq!(stat(&store, "failure"), 3);
    let carry = old.retire();
    assert_eq!(carry.len(), 1);

    upstream.set_up(true);
    let new = start(&store, vec![pong_check()], &hosts, Some(carry));
    assert!(failed(&hosts[0]), "a known-bad host is not taken for new");
    assert_eq!(new.warmup.total(), 0, "it had its first check long ago");
    assert_eq!(new.checks.hosts_checked(), (1, 1));
    assert_eq!(stat(&store, "healthy"), 0);

    // Not a first check: one pass is not enough...
    let passes = stat(&store, "success");
    until("a pass", || stat(&store, "success") == passes + 1).await;
    assert!(failed(&hosts[0]), "healthy_threshold is 2");
    // ...the second is.
    until("a second pass", || stat(&store, "success") == passes + 2).await;
    assert!(!failed(&hosts[0]));
    assert_eq!(stat(&store, "healthy"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_healthy_host_carried_serves_at_once_and_a_new_one_warms_up() {
    let upstream = Upstream::start().await;
    let store = Store::new();
    let mut hosts: Vec<CheckedHost> = (1..=10).map(|i| host(i, upstream.address)).collect();
    let old = start(&store, vec![pong_check()], &hosts, None);
    until("every host checked", || old.warmup.pending() == 0).await;
    assert!(hosts.iter().all(|h| !failed(h)));
    let carry = old.retire();

    hosts.push(host(99, upstream.address));
    let new = start(&store, vec![pong_check()], &hosts, Some(carry));
    let started = Instant::now();
    let (carried, fresh) = hosts.split_at(10);
    assert!(carried.iter().all(|h| !failed(h)), "usable at once");
    assert!(failed(&fresh[0]), "a new host starts failed");
    assert_eq!(new.warmup.total(), 1, "only the new host warms up");
    assert_eq!(new.warmup.pending(), 1);
    assert_eq!(new.checks.hosts_checked(), (10, 11));
    assert_eq!(stat(&store, "healthy"), 10);

    // The new host is checked at once (no initial_jitter); the carried ones
    // each at a random point of their 5s interval, not all together.
    let attempts = stat(&store, "attempt");
    tokio::time::sleep_until(started + Duration::from_millis(1)).await;
    assert_eq!(new.warmup.pending(), 0, "the new host had its first check");
    assert!(!failed(&fresh[0]), "a first pass is enough");
    assert_eq!(stat(&store, "healthy"), 11);
    assert!(
        stat(&store, "attempt") - attempts < 11,
        "spread over the interval"
    );
    tokio::time::sleep_until(started + Duration::from_secs(5)).await;
    assert!(
        stat(&store, "attempt") - attempts >= 11,
        "each host checked within its interval"
    );
}

#[tokio::test(start_paused = true)]
async fn a_changed_check_starts_afresh_and_an_unchanged_one_carries() {
    let upstream = Upstream::start().await;
    let store = Store::new();
    let hosts = [host(1, upstream.address)];
    let old = start(&store, vec![connect_check(), pong_check()], &hosts, None);
    until("both checks pass", || old.warmup.pending() == 0).await;
    assert!(!failed(&hosts[0]));
    let carry = old.retire();
    assert_eq!(carry.len(), 2);

    let changed = HealthCheck {
        healthy_threshold: 3,
        ..pong_check()
    };
    let new = start(&store, vec![connect_check(), changed], &hosts, Some(carry));
    assert!(
        failed(&hosts[0]),
        "failed until the changed check's first result"
    );
    assert_eq!(
        new.warmup.total(),
        1,
        "the changed check warms up, the other not"
    );
    assert_eq!(new.checks.hosts_checked(), (0, 1));
    assert_eq!(new.checks.failing_checks(0), vec!["1 TCP send/receive"]);
    assert_eq!(stat(&store, "healthy"), 0);

    until("the changed check's first result", || {
        new.warmup.pending() == 0
    })
    .await;
    assert!(!failed(&hosts[0]), "its first pass is enough");
    assert_eq!(new.checks.hosts_checked(), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_host_with_another_check_address_is_not_carried() {
    let upstream = Upstream::start().await;
    let other = Upstream::start().await;
    let store = Store::new();
    let hosts = [host(1, upstream.address)];
    let old = start(&store, vec![pong_check()], &hosts, None);
    until("first check passes", || !failed(&hosts[0])).await;
    let carry = old.retire();

    let moved = [CheckedHost {
        check_address: other.address,
        ..hosts[0].clone()
    }];
    let new = start(&store, vec![pong_check()], &moved, Some(carry));
    assert!(failed(&moved[0]));
    assert_eq!(new.warmup.total(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_immediate_fail_mark_not_yet_taken_is_carried() {
    let upstream = Upstream::start().await;
    let store = Store::new();
    let hosts = [host(1, upstream.address)];
    let old = start(&store, vec![pong_check()], &hosts, None);
    until("first check passes", || !failed(&hosts[0])).await;

    // The data path marks the host; the reload comes before the session
    // has run again.
    old.checks.immediate_fail(0);
    let carry = old.retire();
    let new = start(&store, vec![pong_check()], &hosts, Some(carry));
    let bits = hosts[0].health.bits();
    assert_ne!(bits & flags::FAILED_ACTIVE_HC, 0);
    assert_ne!(bits & flags::EXCLUDED_VIA_IMMEDIATE_HC_FAIL, 0);
    assert_eq!(stat(&store, "passive_failure"), 1);
    assert_eq!(new.warmup.total(), 0);

    // Back after healthy_threshold passes, as from any failure.
    let passes = stat(&store, "success");
    until("a pass", || stat(&store, "success") == passes + 1).await;
    assert!(failed(&hosts[0]));
    until("a second pass", || stat(&store, "success") == passes + 2).await;
    assert_eq!(hosts[0].health.bits() & SESSION_FLAGS, 0);
}
