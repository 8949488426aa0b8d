//! Route retries as Envoy's router makes them: a retriable outcome (a 5xx,
//! a refused connection, a per-try timeout) is tried again on another host
//! after a back-off, a request body is sent again only if it was kept
//! whole, `max_retries` bounds the retries in flight, and the
//! `upstream_rq_retry*` stats count it all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::upstream::{Behaviour, Upstream};
use support::{Hale, bootstrap, cluster, eventually, get, h1_client, refused, send};

/// One virtual host sending everything to `backend` with `route_extra`
/// (indented by 16) under its `route`, and `vhost_extra` (indented by 14).
fn routes(route_extra: &str, vhost_extra: &str) -> String {
    format!(
        r#"            - name: all
              domains: ["*"]
{vhost_extra}              routes:
              - match: {{ prefix: "/" }}
                route:
                  cluster: backend
{route_extra}"#
    )
}

/// Cluster `backend`: `hosts`, round robin, nothing else.
fn round_robin(hosts: &[std::net::SocketAddr]) -> String {
    let endpoints: Vec<_> = hosts.iter().map(|&a| (a, 1, 0)).collect();
    cluster("backend", "ROUND_ROBIN", &endpoints, "")
}

const RETRY_5XX: &str = "                  retry_policy:
                    retry_on: 5xx
                    num_retries: 2
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                    host_selection_retry_max_attempts: 3
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_is_retried_on_another_host() {
    let bad = Upstream::start("bad", Behaviour::Status(503)).await;
    let good = Upstream::start("good", Behaviour::Echo).await;
    let clusters = round_robin(&[bad.addr, good.addr]);
    let hale = Hale::start(&bootstrap(&routes(RETRY_5XX, ""), &clusters));
    let url = format!("{}/x", hale.url("listener_0"));
    for _ in 0..6 {
        let reply = get(&url, &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("x-upstream"), Some("good"));
    }
    assert!(bad.received() >= 1, "round robin reached the bad host");
    let retries = hale.stat("cluster.backend.upstream_rq_retry");
    assert_eq!(retries, bad.received() as i64, "each 503 was retried once");
    assert_eq!(
        hale.stat("cluster.backend.upstream_rq_retry_success"),
        retries
    );
    assert_eq!(hale.stat("cluster.backend.retry.upstream_rq_503"), retries);
    // The retried 503s are not counted as answers; the client saw 200s.
    assert_eq!(hale.stat("cluster.backend.upstream_rq_503"), 0);
    assert_eq!(hale.stat("http.ingress.downstream_rq_2xx"), 6);
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_retries_spent_the_last_answer_goes_to_the_client() {
    let bad = Upstream::start("bad", Behaviour::Status(503)).await;
    let clusters = round_robin(&[bad.addr]);
    let hale = Hale::start(&bootstrap(&routes(RETRY_5XX, ""), &clusters));
    let reply = get(&format!("{}/x", hale.url("listener_0")), &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.header("x-upstream"),
        Some("bad"),
        "the upstream's own answer"
    );
    assert_eq!(bad.received(), 3, "one try and num_retries: 2");
    assert_eq!(hale.stat("cluster.backend.upstream_rq_retry"), 2);
    assert_eq!(
        hale.stat("cluster.backend.upstream_rq_retry_limit_exceeded"),
        1
    );
    assert_eq!(hale.stat("cluster.backend.upstream_rq_retry_success"), 0);
    assert_eq!(hale.stat("cluster.backend.upstream_rq_503"), 1);
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_on_connect_failure() {
    let dead = refused();
    let good = Upstream::start("good", Behaviour::Echo).await;
    let clusters = round_robin(&[dead.addr, good.addr]);
    let policy = "                  retry_policy:
                    retry_on: connect-failure
                    num_retries: 1
";
    let hale = Hale::start(&bootstrap(&routes(policy, ""), &clusters));
    let url = format!("{}/x", hale.url("listener_0"));
    for _ in 0..4 {
        assert_eq!(get(&url, &[]).await.status, 200);
    }
    assert!(hale.stat("cluster.backend.upstream_rq_retry") >= 1);
    assert!(hale.stat("cluster.backend.upstream_cx_connect_fail") >= 1);
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_try_is_cut_at_per_try_timeout_and_retried() {
    let hung = Upstream::start("hung", Behaviour::Hang).await;
    let good = Upstream::start("good", Behaviour::Echo).await;
    let clusters = round_robin(&[hung.addr, good.addr]);
    let policy = "                  timeout: 20s
                  retry_policy:
                    retry_on: reset
                    num_retries: 1
                    per_try_timeout: 0.3s
";
    let hale = Hale::start(&bootstrap(&routes(policy, ""), &clusters));
    let url = format!("{}/x", hale.url("listener_0"));
    // Until the hung host has taken a request (round robin may start on
    // either host), every answer comes from the good one.
    eventually("a request through the hung host", || async {
        let reply = get(&url, &[]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-upstream"), Some("good"));
        (hale.stat("cluster.backend.upstream_rq_per_try_timeout") >= 1).then_some(())
    })
    .await;
    assert!(hale.stat("cluster.backend.upstream_rq_retry") >= 1);
    assert_eq!(hale.stat("cluster.backend.upstream_rq_timeout"), 0);
    hale.stop().await;
}

fn post(url: &str, body: &'static [u8]) -> Request<Full<Bytes>> {
    Request::post(url)
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

static BODY: [u8; 1000] = [b'b'; 1000];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_body_is_sent_whole_again() {
    let bad = Upstream::start("bad", Behaviour::Status(503)).await;
    let sink = Upstream::start("sink", Behaviour::Sink).await;
    let clusters = round_robin(&[bad.addr, sink.addr]);
    let hale = Hale::start(&bootstrap(&routes(RETRY_5XX, ""), &clusters));
    let url = format!("{}/upload", hale.url("listener_0"));
    let client = h1_client();
    for _ in 0..4 {
        let reply = send(&client, post(&url, &BODY)).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "1000", "the retry carried the whole body");
    }
    assert!(bad.received() >= 1);
    assert_eq!(
        hale.stat("cluster.backend.upstream_rq_retry"),
        bad.received() as i64
    );
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_past_the_buffer_limit_is_not_retried() {
    let bad = Upstream::start("bad", Behaviour::Status(503)).await;
    let sink = Upstream::start("sink", Behaviour::Sink).await;
    let clusters = round_robin(&[bad.addr, sink.addr]);
    // The limit on the virtual host; the route's policy retries 5xx.
    let hale = Hale::start(&bootstrap(
        &routes(
            RETRY_5XX,
            "              per_request_buffer_limit_bytes: 100\n",
        ),
        &clusters,
    ));
    let url = format!("{}/upload", hale.url("listener_0"));
    let client = h1_client();
    let mut refused = 0;
    for _ in 0..4 {
        let reply = send(&client, post(&url, &BODY)).await;
        match reply.status {
            200 => assert_eq!(reply.body, "1000"),
            503 => refused += 1,
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert!(refused >= 1, "the bad host's 503 reached the client");
    assert_eq!(refused, bad.received());
    assert_eq!(hale.stat("cluster.backend.upstream_rq_retry"), 0);
    // A small body on the same route is still retried.
    eventually("a small body retried", || async {
        let reply = send(&client, post(&url, b"tiny")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, "4");
        (hale.stat("cluster.backend.upstream_rq_retry") >= 1).then_some(())
    })
    .await;
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_retries_overflow_passes_the_answer_on() {
    let bad = Upstream::start("bad", Behaviour::Status(503)).await;
    let breakers = "    circuit_breakers:
      thresholds:
      - priority: DEFAULT
        max_retries: 0
";
    let clusters = cluster("backend", "ROUND_ROBIN", &[(bad.addr, 1, 0)], breakers);
    let hale = Hale::start(&bootstrap(&routes(RETRY_5XX, ""), &clusters));
    let reply = get(&format!("{}/x", hale.url("listener_0")), &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("x-upstream"), Some("bad"));
    assert_eq!(bad.received(), 1);
    assert_eq!(hale.stat("cluster.backend.upstream_rq_retry_overflow"), 1);
    assert_eq!(hale.stat("cluster.backend.upstream_rq_retry"), 0);
    assert_eq!(
        hale.stat("cluster.backend.circuit_breakers.default.rq_retry_open"),
        1
    );
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_route_counts_against_the_high_thresholds() {
    let hang = Upstream::start("hang", Behaviour::Hang).await;
    let breakers = "    circuit_breakers:
      thresholds:
      - priority: DEFAULT
        max_requests: 1
      - priority: HIGH
        max_requests: 5
";
    let clusters = cluster("backend", "ROUND_ROBIN", &[(hang.addr, 1, 0)], breakers);
    let vhosts = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/high" }
                route: { cluster: backend, priority: HIGH }
              - match: { prefix: "/" }
                route: { cluster: backend }
"#;
    let hale = Hale::start(&bootstrap(vhosts, &clusters));
    let base = hale.url("listener_0");
    let held = tokio::spawn({
        let url = format!("{base}/default");
        async move { get(&url, &[]).await }
    });
    eventually("the default request in flight", || async {
        (hang.in_flight() == 1).then_some(())
    })
    .await;
    let overflow = get(&format!("{base}/default"), &[]).await;
    assert_eq!(overflow.status, 503);
    assert_eq!(overflow.header("x-envoy-overloaded"), Some("true"));
    // HIGH has its own room: its request goes through (and hangs).
    let high = tokio::spawn({
        let url = format!("{base}/high");
        async move { get(&url, &[]).await }
    });
    eventually("the high request in flight", || async {
        (hang.in_flight() == 2).then_some(())
    })
    .await;
    assert_eq!(
        hale.stat("cluster.backend.circuit_breakers.high.rq_open"),
        0
    );
    assert_eq!(
        hale.stat("cluster.backend.circuit_breakers.default.rq_open"),
        1
    );
    held.abort();
    high.abort();
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_policy_a_request_refused_a_connection_goes_to_another_host_once() {
    let dead = refused();
    let good = Upstream::start("good", Behaviour::Echo).await;
    let clusters = round_robin(&[dead.addr, good.addr]);
    let hale = Hale::start(&bootstrap(&routes("", ""), &clusters));
    let url = format!("{}/x", hale.url("listener_0"));
    for _ in 0..4 {
        assert_eq!(get(&url, &[]).await.status, 200);
    }
    // Nothing was sent to the dead host, so no retry policy was needed.
    assert!(hale.stat("cluster.backend.upstream_rq_unsent_repick") >= 1);
    assert_eq!(hale.stat("cluster.backend.upstream_rq_retry"), 0);
    hale.stop().await;

    // A single host has nowhere else to go: Envoy's 503.
    let dead = refused();
    let clusters = round_robin(&[dead.addr]);
    let hale = Hale::start(&bootstrap(&routes("", ""), &clusters));
    let reply = get(&format!("{}/x", hale.url("listener_0")), &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(hale.stat("cluster.backend.upstream_rq_unsent_repick"), 0);
    hale.stop().await;
}
