//! Protocols through hale: HTTP/1.1 and h2c downstream on one port, HTTP/2
//! upstream, and gRPC unary and server-streaming calls end to end with a
//! tonic client and server (trailers and `grpc-status` intact).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::upstream::{Behaviour, Upstream};
use support::{Hale, bootstrap, cluster, h1_client, h2_client, send};
use tokio_stream::StreamExt;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as Wire;
use tonic_health::pb::health_client::HealthClient;

const H2_UPSTREAM: &str = r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
"#;

const ROUTES: &str = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/h2/" }
                route: { cluster: h2up }
              - match: { prefix: "/grpc.health.v1.Health/" }
                route: { cluster: grpc, timeout: 0s }
              - match: { prefix: "/" }
                route: { cluster: h1up }
"#;

fn version_seen(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["version"].as_str().unwrap().to_string()
}

async fn start_grpc_upstream() -> (std::net::SocketAddr, tonic_health::server::HealthReporter) {
    support::grpc_health_server(&[("svc", ServingStatus::Serving)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_and_h2c_downstream_with_h1_and_h2_upstreams() {
    let h1up = Upstream::start("h1up", Behaviour::Echo).await;
    let h2up = Upstream::start("h2up", Behaviour::Echo).await;
    let (grpc_addr, _reporter) = start_grpc_upstream().await;
    let clusters = format!(
        "{}{}{}",
        cluster("h1up", "ROUND_ROBIN", &[(h1up.addr, 1, 0)], ""),
        cluster("h2up", "ROUND_ROBIN", &[(h2up.addr, 1, 0)], H2_UPSTREAM),
        cluster("grpc", "ROUND_ROBIN", &[(grpc_addr, 1, 0)], H2_UPSTREAM),
    );
    let hale = Hale::start(&bootstrap(ROUTES, &clusters));
    let url = hale.url("listener_0");

    for (client, downstream) in [(h1_client(), "h1"), (h2_client(), "h2c")] {
        for (path, upstream_version) in [("/plain", "HTTP/1.1"), ("/h2/x", "HTTP/2.0")] {
            let req = Request::get(format!("{url}{path}"))
                .header("host", "example.com")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let reply = send(&client, req).await;
            assert_eq!(reply.status, 200, "{downstream} {path}: {}", reply.body);
            assert_eq!(
                version_seen(&reply.body),
                upstream_version,
                "{downstream} {path}"
            );
            let seen: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            // The client's host reaches the upstream as Host or :authority.
            let authority = seen["headers"]["host"]
                .as_str()
                .or(seen["authority"].as_str())
                .unwrap_or_default()
                .to_string();
            assert_eq!(authority, "example.com", "{downstream} {path}: {seen}");
        }
    }
    assert_eq!(hale.stat("http.ingress.downstream_rq_http1_total"), 2);
    assert_eq!(hale.stat("http.ingress.downstream_rq_http2_total"), 2);
    // Each worker has its own pool (2 workers here): two downstream
    // connections share at most one HTTP/2 connection per worker.
    let h2_connections = hale.stat("cluster.h2up.upstream_cx_http2_total");
    assert!((1..=2).contains(&h2_connections), "{h2_connections}");
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_and_server_streaming_through_hale() {
    let (grpc_addr, reporter) = start_grpc_upstream().await;
    let h1up = Upstream::start("h1up", Behaviour::Echo).await;
    let clusters = format!(
        "{}{}{}",
        cluster("h1up", "ROUND_ROBIN", &[(h1up.addr, 1, 0)], ""),
        cluster("h2up", "ROUND_ROBIN", &[(h1up.addr, 1, 0)], ""),
        cluster("grpc", "ROUND_ROBIN", &[(grpc_addr, 1, 0)], H2_UPSTREAM),
    );
    let hale = Hale::start(&bootstrap(ROUTES, &clusters));
    let channel = tonic::transport::Channel::from_shared(hale.url("listener_0"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);

    // Unary: the status arrives in trailers, which must survive the hop.
    let reply = client
        .check(HealthCheckRequest {
            service: "svc".into(),
        })
        .await
        .expect("unary call succeeds");
    assert_eq!(reply.into_inner().status, Wire::Serving as i32);

    // An error status (NOT_FOUND) passes through unchanged.
    let err = client
        .check(HealthCheckRequest {
            service: "missing".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(err.code(), tonic::Code::NotFound);

    // Server streaming: the first message, then a pushed change.
    let mut stream = client
        .watch(HealthCheckRequest {
            service: "svc".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.status, Wire::Serving as i32);
    reporter
        .set_service_status("svc", ServingStatus::NotServing)
        .await;
    let second = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.status, Wire::NotServing as i32);
    drop(stream);

    assert!(hale.stat("cluster.grpc.upstream_rq_200") >= 3);
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_request_to_a_dead_cluster_gets_unavailable() {
    let refused = support::refused();
    let dead = refused.addr;
    let h1up = Upstream::start("h1up", Behaviour::Echo).await;
    let clusters = format!(
        "{}{}{}",
        cluster("h1up", "ROUND_ROBIN", &[(h1up.addr, 1, 0)], ""),
        cluster("h2up", "ROUND_ROBIN", &[(h1up.addr, 1, 0)], ""),
        cluster("grpc", "ROUND_ROBIN", &[(dead, 1, 0)], H2_UPSTREAM),
    );
    let hale = Hale::start(&bootstrap(ROUTES, &clusters));
    let channel = tonic::transport::Channel::from_shared(hale.url("listener_0"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let call = client.check(HealthCheckRequest {
        service: "svc".into(),
    });
    let err = tokio::time::timeout(support::DEADLINE, call)
        .await
        .expect("an answer within the deadline")
        .expect_err("dead upstream");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(
        err.message().contains("upstream connect error"),
        "{}",
        err.message()
    );
    hale.stop().await;
}
