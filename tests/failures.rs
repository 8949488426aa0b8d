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
              - match: { prefix: "/panic" }
                route: { cluster: panic }
              - match: { prefix: "/" }
                route: { cluster: ok }
"#;

/// A cluster whose one host is marked UNHEALTHY, with `extra` cluster lines.
fn unhealthy_cluster(name: &str, host: SocketAddr, extra: &str) -> String {
    format!(
        "  - name: {name}\n    type: STATIC\n{extra}    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: {}, port_value: {} }}\n          health_status: UNHEALTHY\n",
        host.ip(),
        host.port()
    )
}

fn clusters(slow: SocketAddr, refused: SocketAddr, ok: SocketAddr) -> String {
    // Panic disabled: with no usable host there is nothing to send to.
    let down = unhealthy_cluster(
        "down",
        ok,
        "    common_lb_config: { healthy_panic_threshold: { value: 0 } }\n",
    );
    // Envoy's default 50% panic threshold: 0% usable is panic, and panic
    // routes to every host, unhealthy or not.
    let panic = unhealthy_cluster("panic", ok, "");
    format!(
        "{}{}{}{down}{panic}",
        cluster("slow", "ROUND_ROBIN", &[(slow, 1, 0)], ""),
        cluster("refused", "ROUND_ROBIN", &[(refused, 1, 0)], ""),
        cluster("ok", "ROUND_ROBIN", &[(ok, 1, 0)], ""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_refusal_and_no_host_get_envoys_local_replies() {
    let slow = Upstream::start("slow", Behaviour::Slow(Duration::from_secs(5))).await;
    let ok = Upstream::start("ok", Behaviour::Echo).await;
    let refused_guard = support::refused();
    let refused: SocketAddr = refused_guard.addr;
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

    let panic = get(&format!("{url}/panic"), &[]).await;
    assert_eq!(
        panic.status, 200,
        "panic routing reaches the unhealthy host"
    );
    assert_eq!(hale.stat("cluster.panic.lb_healthy_panic"), 1);
    assert_eq!(ok.received(), 1);

    // And hale is fine afterwards.
    assert_eq!(get(&format!("{url}/fine"), &[]).await.status, 200);
    assert_eq!(ok.received(), 2);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_idle_and_request_timeouts_answer_408() {
    let slow = Upstream::start("slow", Behaviour::Slow(Duration::from_secs(10))).await;
    let sink = Upstream::start("sink", Behaviour::Sink).await;
    let routes = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/upload" }
                route: { cluster: sink, timeout: 0s }
              - match: { prefix: "/" }
                route: { cluster: slow, timeout: 0s }
"#;
    let hcm = "          stream_idle_timeout: 0.3s\n          request_timeout: 0.6s\n";
    let clusters = format!(
        "{}{}",
        cluster("slow", "ROUND_ROBIN", &[(slow.addr, 1, 0)], ""),
        cluster("sink", "ROUND_ROBIN", &[(sink.addr, 1, 0)], "")
    );
    let hale = Hale::start(&support::bootstrap_with(hcm, routes, &clusters));

    // Nothing moves while the upstream thinks: the stream idles out.
    let idle = get(&format!("{}/think", hale.url("listener_0")), &[]).await;
    assert_eq!(idle.status, 408);
    assert_eq!(idle.body, "stream timeout");
    assert_eq!(hale.stat("http.ingress.downstream_rq_idle_timeout"), 1);

    // A body that trickles in keeps the stream busy, but never completes:
    // the request timeout ends it.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(hale.addr()).await.unwrap();
    raw.write_all(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if raw.write_all(b"x").await.is_err() {
                break;
            }
            let mut buf = [0u8; 1024];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), raw.read(&mut buf)).await
            {
                answer.extend_from_slice(&buf[..n]);
                if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(support::DEADLINE, trickle)
        .await
        .unwrap();
    if !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        // hale may have closed the connection after answering: what it sent
        // is still in the socket.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(support::DEADLINE, raw.read_to_end(&mut rest)).await;
        answer.extend_from_slice(&rest);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(hale.stat("http.ingress.downstream_rq_timeout"), 1);
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_gives_up_leaves_no_request_counted_in_flight() {
    let hang = Upstream::start("hang", Behaviour::Hang).await;
    let ok = Upstream::start("ok", Behaviour::Echo).await;
    let hale = Hale::start(&bootstrap(ROUTES, &clusters(hang.addr, hang.addr, ok.addr)));
    let url = format!("{}/refused", hale.url("listener_0"));
    // The client stops waiting while hale waits for the upstream.
    let gave_up = tokio::time::timeout(Duration::from_millis(200), get(&url, &[])).await;
    assert!(gave_up.is_err());
    support::eventually("the request's accounting to end", || async {
        (hale.stat("http.ingress.downstream_rq_active") == 0
            && hale.stat("cluster.refused.upstream_rq_active") == 0)
            .then_some(())
    })
    .await;
    let text = get(&format!("{}/clusters", hale.admin()), &[]).await.body;
    assert!(
        text.contains(&format!("refused::{}::rq_active::0", hang.addr)),
        "{text}"
    );
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_at_the_route_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let big = Upstream::start("big", Behaviour::Stream(1 << 30)).await;
    let routes = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: big, timeout: 0.5s }
"#;
    let hale = Hale::start(&bootstrap(
        routes,
        &cluster("big", "ROUND_ROBIN", &[(big.addr, 1, 0)], ""),
    ));
    let mut raw = tokio::net::TcpStream::connect(hale.addr()).await.unwrap();
    raw.write_all(b"GET /huge HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let n = raw.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    // ...and never reads again. hale must not hold the stream forever.
    support::eventually("the stalled response to be cut off", || async {
        (hale.stat("http.ingress.downstream_rq_stalled") == 1
            && hale.stat("cluster.big.upstream_rq_active") == 0)
            .then_some(())
    })
    .await;
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_to_an_upload_does_not_park_a_busy_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let early = Upstream::start("early", Behaviour::EarlyAnswer).await;
    let routes = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: early, timeout: 5s }
"#;
    // One worker: both requests share its pool.
    let hale = Hale::start_with_workers(
        &bootstrap(
            routes,
            &cluster("early", "ROUND_ROBIN", &[(early.addr, 1, 0)], ""),
        ),
        1,
    );
    // An upload the upstream answers before reading it, and that never ends.
    let mut upload = tokio::net::TcpStream::connect(hale.addr()).await.unwrap();
    upload
        .write_all(b"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\nstart")
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let n = upload.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    // The next request must get a connection of its own, not wait behind
    // the upload still being sent.
    let reply = get(&format!("{}/next", hale.url("listener_0")), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(early.received(), 2);
    drop(upload);
    hale.stop().await;
}
