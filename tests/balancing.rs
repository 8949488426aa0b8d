//! Load balancing through hale: weighted round robin distribution, least
//! request preferring the less loaded host, priority failover by health.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::collections::HashMap;

use support::upstream::{Behaviour, Upstream};
use support::{Hale, bootstrap, cluster, eventually, get};

const ALL_TO_BACKEND: &str = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: backend, timeout: 0s }
"#;

async fn tally(url: &str, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let reply = get(url, &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        *counts
            .entry(reply.header("x-upstream").unwrap().to_string())
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_follows_weights_exactly() {
    let a = Upstream::start("a", Behaviour::Echo).await;
    let b = Upstream::start("b", Behaviour::Echo).await;
    let c = Upstream::start("c", Behaviour::Echo).await;
    let clusters = cluster(
        "backend",
        "ROUND_ROBIN",
        &[(a.addr, 3, 0), (b.addr, 2, 0), (c.addr, 1, 0)],
        "",
    );
    let hale = Hale::start(&bootstrap(ALL_TO_BACKEND, &clusters));
    // Whole cycles of the schedule (6 picks each) on one connection, so one
    // worker's round-robin position: the split is exact.
    let mut conn = support::one_connection(hale.addr()).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..60 {
        let req = http::Request::get("/")
            .header("host", "x")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let reply = support::send_on(&mut conn, req).await;
        *counts
            .entry(reply.header("x-upstream").unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(counts["a"], 30, "{counts:?}");
    assert_eq!(counts["b"], 20, "{counts:?}");
    assert_eq!(counts["c"], 10, "{counts:?}");
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_prefers_the_less_loaded_host() {
    let busy = Upstream::start("busy", Behaviour::Hang).await;
    let idle = Upstream::start("idle", Behaviour::Echo).await;
    let clusters = cluster(
        "backend",
        "LEAST_REQUEST",
        &[(busy.addr, 1, 0), (idle.addr, 1, 0)],
        "",
    );
    let hale = Hale::start(&bootstrap(ALL_TO_BACKEND, &clusters));
    let url = format!("{}/", hale.url("listener_0"));

    // Load the busy host with one request it never answers: send requests
    // one at a time until one of them is stuck there.
    let mut stuck = Vec::new();
    let deadline = tokio::time::Instant::now() + support::DEADLINE;
    while busy.in_flight() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no request reached the busy host"
        );
        let before = idle.received();
        let u = url.clone();
        stuck.push(tokio::spawn(async move { get(&u, &[]).await }));
        eventually("the request to land on a host", || async {
            (busy.in_flight() > 0 || idle.received() > before).then_some(())
        })
        .await;
    }

    // Now every pick compares both hosts: the busy one has a request in
    // flight, the idle one none, so everything goes to the idle one.
    let counts = tally(&url, 30).await;
    assert_eq!(counts.get("idle"), Some(&30), "{counts:?}");
    assert_eq!(busy.in_flight(), 1);
    for t in stuck {
        t.abort();
    }
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_priority_takes_over_when_priority_zero_has_no_usable_host() {
    let p0 = Upstream::start("p0", Behaviour::Echo).await;
    let p1 = Upstream::start("p1", Behaviour::Echo).await;
    let p0_draining = Upstream::start("p0-draining", Behaviour::Echo).await;
    // Priority 0 has one host marked UNHEALTHY by its health_status and one
    // healthy: priority 0 serves. A second cluster whose priority-0 hosts
    // are all unusable fails over to priority 1.
    let healthy_first = format!(
        "{}{}",
        cluster(
            "backend",
            "ROUND_ROBIN",
            &[(p0.addr, 1, 0), (p1.addr, 1, 1)],
            ""
        ),
        cluster_with_status(
            "failover",
            &[(p0_draining.addr, 0, "DRAINING"), (p1.addr, 1, "HEALTHY")]
        ),
    );
    let vhosts = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/failover" }
                route: { cluster: failover }
              - match: { prefix: "/" }
                route: { cluster: backend }
"#;
    let hale = Hale::start(&bootstrap(vhosts, &healthy_first));
    let url = hale.url("listener_0");
    let counts = tally(&format!("{url}/"), 10).await;
    assert_eq!(counts.get("p0"), Some(&10), "{counts:?}");
    let counts = tally(&format!("{url}/failover"), 10).await;
    assert_eq!(counts.get("p1"), Some(&10), "{counts:?}");
    assert_eq!(p0_draining.received(), 0);

    let clusters = get(&format!("{}/clusters", hale.admin()), &[]).await.body;
    assert!(
        clusters.contains(&format!(
            "failover::{}::health_flags::/eds_status_draining",
            p0_draining.addr
        )),
        "{clusters}"
    );
    hale.stop().await;
}

fn cluster_with_status(name: &str, endpoints: &[(std::net::SocketAddr, u32, &str)]) -> String {
    let mut out = format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n"
    );
    for (addr, priority, status) in endpoints {
        out.push_str(&format!(
            "      - priority: {priority}\n        lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: {}, port_value: {} }}\n          health_status: {status}\n",
            addr.ip(),
            addr.port()
        ));
    }
    out
}
