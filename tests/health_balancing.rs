//! Load balancing that respects active health: priority failover, panic,
//! `fail_traffic_on_panic` without zone-aware routing, several checks per
//! cluster, and the TCP and gRPC checkers against real servers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::net::SocketAddr;

use support::upstream::{Behaviour, Upstream};
use support::{Hale, bootstrap, cluster, flags_of, get, wait_flags};
use tonic_health::ServingStatus;

const ROUTES: &str = support::ALL_TO_BACKEND;

const HTTP_CHECK: &str = "    health_checks:
    - timeout: 0.5s
      interval: 0.05s
      no_traffic_interval: 0.05s
      unhealthy_threshold: 1
      healthy_threshold: 1
      http_health_check: { path: /healthz }
";

async fn served_by(hale: &Hale) -> (u16, Option<String>) {
    let reply = get(&format!("{}/x", hale.url("listener_0")), &[]).await;
    (reply.status, reply.header("x-upstream").map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_one_takes_over_when_priority_zero_fails_its_checks() {
    let p0 = Upstream::start("p0", Behaviour::Echo).await;
    let p1 = Upstream::start("p1", Behaviour::Echo).await;
    let clusters = cluster(
        "backend",
        "ROUND_ROBIN",
        &[(p0.addr, 1, 0), (p1.addr, 1, 1)],
        HTTP_CHECK,
    );
    let hale = Hale::start(&bootstrap(ROUTES, &clusters));
    for _ in 0..10 {
        assert_eq!(served_by(&hale).await.1.as_deref(), Some("p0"));
    }
    p0.health.set_status(500);
    wait_flags(&hale, "backend", p0.addr, "/failed_active_hc").await;
    for _ in 0..10 {
        assert_eq!(served_by(&hale).await.1.as_deref(), Some("p1"));
    }
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_sends_to_every_host_and_fail_traffic_on_panic_refuses() {
    let a = Upstream::start("a", Behaviour::Echo).await;
    let b = Upstream::start("b", Behaviour::Echo).await;
    let fail_on_panic = "    common_lb_config:
      zone_aware_lb_config: { fail_traffic_on_panic: true }
";
    let clusters = format!(
        "{}{}",
        cluster(
            "backend",
            "ROUND_ROBIN",
            &[(a.addr, 1, 0), (b.addr, 1, 0)],
            HTTP_CHECK
        ),
        cluster(
            "strict",
            "ROUND_ROBIN",
            &[(a.addr, 1, 0), (b.addr, 1, 0)],
            &format!("{fail_on_panic}{HTTP_CHECK}"),
        ),
    );
    let routes = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/strict" }
                route: { cluster: strict }
              - match: { prefix: "/" }
                route: { cluster: backend }
"#;
    let hale = Hale::start(&bootstrap(routes, &clusters));
    a.health.set_status(500);
    b.health.set_status(500);
    wait_flags(&hale, "backend", a.addr, "/failed_active_hc").await;
    wait_flags(&hale, "backend", b.addr, "/failed_active_hc").await;
    wait_flags(&hale, "strict", b.addr, "/failed_active_hc").await;
    wait_flags(&hale, "strict", a.addr, "/failed_active_hc").await;

    // Envoy: below the 50% panic threshold, traffic goes to every host.
    for _ in 0..4 {
        assert_eq!(served_by(&hale).await.0, 200);
    }
    assert!(hale.stat("cluster.backend.lb_healthy_panic") >= 4);

    // hale: fail_traffic_on_panic works without zone-aware routing.
    let strict = get(&format!("{}/strict", hale.url("listener_0")), &[]).await;
    assert_eq!(strict.status, 503);
    assert_eq!(strict.body, "no healthy upstream");
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_checks_a_host_is_healthy_only_when_both_pass() {
    let a = Upstream::start("a", Behaviour::Echo).await;
    let b = Upstream::start("b", Behaviour::Echo).await;
    let log = support::scratch_path("two-checks.log");
    let two = format!(
        "{HTTP_CHECK}    - timeout: 0.5s
      interval: 0.05s
      no_traffic_interval: 0.05s
      unhealthy_threshold: 1
      healthy_threshold: 1
      event_log_path: {}
      http_health_check: {{ path: /deep }}
",
        log.display()
    );
    let clusters = cluster(
        "backend",
        "ROUND_ROBIN",
        &[(a.addr, 1, 0), (b.addr, 1, 0)],
        &two,
    );
    // `/deep` is echoed with 200 by the upstreams; `/healthz` is switchable.
    let hale = Hale::start(&bootstrap(ROUTES, &clusters));
    assert_eq!(flags_of(&hale, "backend", a.addr).await, "healthy");
    a.health.set_status(500);
    wait_flags(&hale, "backend", a.addr, "/failed_active_hc").await;
    for _ in 0..10 {
        assert_eq!(served_by(&hale).await.1.as_deref(), Some("b"));
    }
    // /clusters says which check failed.
    let text = get(&format!("{}/clusters", hale.admin()), &[]).await.body;
    assert!(
        text.contains(&format!(
            "backend::{}::hale_failing_checks::0 HTTP GET /healthz\n",
            a.addr
        )),
        "{text}"
    );
    // The second check (index 1) logged only first-check successes: the
    // failure was the first check's, and the log says which check it was.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().all(|l| l.contains("\"check_index\":1")),
        "{text}"
    );
    hale.stop().await;
}

/// A TCP server that answers every message with `reply`.
async fn tcp_server(reply: &'static [u8]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                break;
            };
            tokio::spawn(async move {
                // One reply per request, for as long as the check keeps
                // the connection (reuse_connection).
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_checks_want_the_payload_and_time_out_on_a_wrong_one() {
    let good = tcp_server(b"PONG").await;
    let wrong = tcp_server(b"NOPE").await;
    // "50494E47" is PING, "504F4E47" is PONG.
    let tcp = "    health_checks:
    - timeout: 0.2s
      interval: 0.05s
      no_traffic_interval: 0.05s
      unhealthy_threshold: 1
      healthy_threshold: 1
      tcp_health_check:
        send: { text: \"50494E47\" }
        receive: [{ text: \"504F4E47\" }]
";
    let clusters = cluster(
        "backend",
        "ROUND_ROBIN",
        &[(good, 1, 0), (wrong, 1, 0)],
        tcp,
    );
    let hale = Hale::start(&bootstrap(ROUTES, &clusters));
    assert_eq!(flags_of(&hale, "backend", good).await, "healthy");
    // A wrong payload is not a failure by itself: the check waits, then
    // times out (Envoy).
    assert_eq!(
        flags_of(&hale, "backend", wrong).await,
        "/failed_active_hc/active_hc_timeout"
    );
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_checks_pass_only_on_serving() {
    let (addr, reporter) = support::grpc_health_server(&[
        ("svc", ServingStatus::Serving),
        ("sick", ServingStatus::NotServing),
    ])
    .await;
    let grpc = |name: &str, service: &str| {
        cluster(
            name,
            "ROUND_ROBIN",
            &[(addr, 1, 0)],
            &format!(
                "    health_checks:
    - timeout: 0.5s
      interval: 0.05s
      no_traffic_interval: 0.05s
      unhealthy_threshold: 1
      healthy_threshold: 1
      grpc_health_check: {{ service_name: \"{service}\" }}
"
            ),
        )
    };
    let clusters = format!(
        "{}{}{}",
        grpc("backend", "svc"),
        grpc("sick", "sick"),
        grpc("unknown", "nobody")
    );
    let hale = Hale::start(&bootstrap(ROUTES, &clusters));
    assert_eq!(flags_of(&hale, "backend", addr).await, "healthy");
    assert_eq!(flags_of(&hale, "sick", addr).await, "/failed_active_hc");
    assert_eq!(flags_of(&hale, "unknown", addr).await, "/failed_active_hc");

    reporter
        .set_service_status("svc", ServingStatus::NotServing)
        .await;
    wait_flags(&hale, "backend", addr, "/failed_active_hc").await;
    reporter
        .set_service_status("sick", ServingStatus::Serving)
        .await;
    wait_flags(&hale, "sick", addr, "healthy").await;
    hale.stop().await;
}
