//! Circuit breakers as Envoy's: requests past `max_requests`, or waiting
//! past `max_pending_requests` for one of `max_connections`, get an
//! immediate 503 with `x-envoy-overloaded: true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::time::Duration;

use support::upstream::{Behaviour, Upstream};
use support::{ALL_TO_BACKEND, Hale, bootstrap, cluster, eventually, get};

fn breakers(connections: u32, pending: u32, requests: u32) -> String {
    format!(
        "    circuit_breakers:
      thresholds:
      - priority: DEFAULT
        max_connections: {connections}
        max_pending_requests: {pending}
        max_requests: {requests}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_overflow_is_an_immediate_503() {
    let hang = Upstream::start("hang", Behaviour::Hang).await;
    let clusters = cluster(
        "backend",
        "ROUND_ROBIN",
        &[(hang.addr, 1, 0)],
        &breakers(100, 100, 1),
    );
    let hale = Hale::start(&bootstrap(ALL_TO_BACKEND, &clusters));
    let url = format!("{}/x", hale.url("listener_0"));
    let held = tokio::spawn({
        let url = url.clone();
        async move { get(&url, &[]).await }
    });
    eventually("the first request in flight", || async {
        (hang.in_flight() == 1).then_some(())
    })
    .await;
    let overflow = get(&url, &[]).await;
    assert_eq!(overflow.status, 503);
    assert_eq!(overflow.header("x-envoy-overloaded"), Some("true"));
    assert!(
        overflow.body.ends_with("reset reason: overflow"),
        "{}",
        overflow.body
    );
    assert_eq!(hale.stat("cluster.backend.upstream_rq_pending_overflow"), 1);
    assert_eq!(
        hale.stat("cluster.backend.circuit_breakers.default.rq_open"),
        1
    );
    assert_eq!(hang.received(), 1, "the overflowed request never left hale");
    held.abort();
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_requests_wait_then_overflow_past_max_pending() {
    let slow = Upstream::start("slow", Behaviour::Slow(Duration::from_millis(800))).await;
    let clusters = cluster(
        "backend",
        "ROUND_ROBIN",
        &[(slow.addr, 1, 0)],
        &breakers(1, 1, 100),
    );
    // One worker: one pool, whose one connection the waiting request gets.
    let hale = Hale::start_with_workers(&bootstrap(ALL_TO_BACKEND, &clusters), 1);
    let url = format!("{}/x", hale.url("listener_0"));
    let first = tokio::spawn({
        let url = url.clone();
        async move { get(&url, &[]).await }
    });
    eventually("the first request holding the connection", || async {
        (slow.in_flight() == 1).then_some(())
    })
    .await;
    let second = tokio::spawn({
        let url = url.clone();
        async move { get(&url, &[]).await }
    });
    eventually("the second request waiting for a connection", || async {
        (hale.stat("cluster.backend.upstream_cx_overflow") >= 1).then_some(())
    })
    .await;
    let third = get(&url, &[]).await;
    assert_eq!(third.status, 503);
    assert_eq!(third.header("x-envoy-overloaded"), Some("true"));
    assert_eq!(hale.stat("cluster.backend.upstream_rq_pending_overflow"), 1);
    // The waiting request gets the connection when the first is done.
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(second.await.unwrap().status, 200);
    assert_eq!(hale.stat("cluster.backend.upstream_cx_total"), 1);
    hale.stop().await;
}
