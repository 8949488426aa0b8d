//! Upstream faults answered the way Envoy answers them: 504 on the route
//! timeout, 503 on a refused connection, 503 when no host is usable; the
//! proxy keeps serving afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::upstream::{Behaviour, Upstream};
use support::{Hale, bootstrap, cluster, get};

const ROUTES: &str = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/slow" }
                route: { cluster: slow, timeout: 0.25s }
              - match: { prefix: "/refused" }
                route: { cluster: refused }
              - match: { prefix: "/down" }
                route: { cluster: down }
              - match: { prefix: "/" }
                route: { cluster: ok }
"#;

fn clusters(slow: SocketAddr, refused: SocketAddr, ok: SocketAddr) -> String {
    let down = format!(
        "  - name: down\n    type: STATIC\n    load_assignment:\n      cluster_name: down\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: {}, port_value: {} }}\n          health_status: UNHEALTHY\n",
        ok.ip(),
        ok.port()
    );
    format!(
        "{}{}{}{down}",
        cluster("slow", "ROUND_ROBIN", &[(slow, 1, 0)], ""),
        cluster("refused", "ROUND_ROBIN", &[(refused, 1, 0)], ""),
        cluster("ok", "ROUND_ROBIN", &[(ok, 1, 0)], ""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_refusal_and_no_host_get_envoys_local_replies() {
    let slow = Upstream::start("slow", Behaviour::Slow(Duration::from_secs(5))).await;
    let ok = Upstream::start("ok", Behaviour::Echo).await;
    let refused: SocketAddr = format!("127.0.0.1:{}", support::refused_port())
        .parse()
        .unwrap();
    let hale = Hale::start(&bootstrap(ROUTES, &clusters(slow.addr, refused, ok.addr)));
    let url = hale.url("listener_0");

    let timeout = get(&format!("{url}/slow"), &[]).await;
    assert_eq!(timeout.status, 504);
    assert_eq!(timeout.body, "upstream request timeout");
    assert_eq!(hale.stat("cluster.slow.upstream_rq_timeout"), 1);
    assert_eq!(hale.stat("cluster.slow.upstream_rq_504"), 1);

    let refused_reply = get(&format!("{url}/refused"), &[]).await;
    assert_eq!(refused_reply.status, 503);
    assert!(
        refused_reply
            .body
            .starts_with("upstream connect error or disconnect/reset before headers. reset reason: connection failure"),
        "{}",
        refused_reply.body
    );
    assert_eq!(hale.stat("cluster.refused.upstream_cx_connect_fail"), 1);

    let down = get(&format!("{url}/down"), &[]).await;
    assert_eq!(down.status, 503);
    assert_eq!(down.body, "no healthy upstream");
    assert_eq!(hale.stat("cluster.down.upstream_cx_none_healthy"), 1);
    assert_eq!(
        ok.received(),
        0,
        "nothing is forwarded to an unhealthy host"
    );

    // And hale is fine afterwards.
    assert_eq!(get(&format!("{url}/fine"), &[]).await.status, 200);
    assert_eq!(hale.stat("http.ingress.downstream_rq_5xx"), 3);
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_mid_request_is_a_503_not_a_crash() {
    // A server that accepts, reads the request and closes without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rude = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                break;
            };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    let ok = Upstream::start("ok", Behaviour::Echo).await;
    let hale = Hale::start(&bootstrap(ROUTES, &clusters(rude, rude, ok.addr)));
    let reply = get(&format!("{}/refused", hale.url("listener_0")), &[]).await;
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("reset reason"), "{}", reply.body);
    assert_eq!(
        get(&format!("{}/ok", hale.url("listener_0")), &[])
            .await
            .status,
        200
    );
    hale.stop().await;
}
