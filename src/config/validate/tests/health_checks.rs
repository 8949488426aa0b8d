//! Valid `health_checks[]` in, the expected model out: a full check of each
//! kind, every default once, several checks on one cluster, and the two
//! cluster fields health uses (`fail_traffic_on_panic`,
//! `overprovisioning_factor`).

// A list holding one status range (`vec![200..201]`) is exactly what the
// model means here, not a mistaken `Vec` of the range's numbers.
#![allow(clippy::single_range_in_vec_init)]

use std::path::PathBuf;
use std::time::Duration;

use super::{BASE, HTTP_CHECK, base_with, parse_yaml, with_health_checks};
use crate::config::model::{
    AppendAction, CheckCodec, Checker, Cluster, GrpcCheck, HeaderToAdd, HealthCheck, HttpCheck,
    TcpCheck,
};

fn cluster_of(text: &str) -> Cluster {
    let mut bootstrap = parse_yaml(text).unwrap_or_else(|e| panic!("{e}"));
    bootstrap.clusters.remove(0)
}

fn only_check(text: &str) -> HealthCheck {
    let mut cluster = cluster_of(text);
    assert_eq!(cluster.health_checks.len(), 1);
    cluster.health_checks.remove(0)
}

fn http_of(check: &HealthCheck) -> &HttpCheck {
    match &check.checker {
        Checker::Http(http) => http,
        other => panic!("expected an HTTP check, got {other:?}"),
    }
}

fn header(name: &str, value: &str, action: AppendAction) -> HeaderToAdd {
    HeaderToAdd {
        name: name.to_string(),
        value: value.to_string(),
        action,
    }
}

const FULL_HTTP: &str = r#"    - timeout: 0.5s
      interval: { seconds: 5 }
      initial_jitter: 0.25s
      interval_jitter: 1s
      intervalJitterPercent: 10
      unhealthy_threshold: { value: 3 }
      healthy_threshold: "2"
      reuse_connection: { value: false }
      no_traffic_interval: 30s
      no_traffic_healthy_interval: 120s
      unhealthy_interval: 10s
      unhealthy_edge_interval: 2s
      healthy_edge_interval: 1s
      always_log_health_check_failures: true
      always_log_health_check_success: true
      event_log_path: /var/log/hale/hc-deprecated.log
      event_logger:
      - name: envoy.health_check.event_sinks.file
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.health_check.event_sinks.file.v3.HealthCheckEventFileSink
          event_log_path: /var/log/hale/hc.log
      - name: any.name.the.type.decides
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.health_check.event_sinks.file.v3.HealthCheckEventFileSink
          event_log_path: /var/log/hale/hc-2.log
      http_health_check:
        host: backend.internal
        path: /health?deep=1
        method: POST
        send: { text: "7B7D" }
        receive: [{ text: "6f6b" }, { binary: "IQ==" }]
        response_buffer_size: { value: 2048 }
        request_headers_to_add:
        - header: { key: X-HC-Source, value: edge }
        - header: { key: x-mode, value: "100%% sure" }
          append_action: OVERWRITE_IF_EXISTS
        - header: { key: x-old-false, value: a }
          append: false
        - header: { key: x-old-true, value: b }
          append: { value: true }
        - header: { key: x-absent, value: c }
          append_action: 1
        - header: { key: x-empty, value: "" }
        request_headers_to_remove: [X-Debug, x-trace]
        expected_statuses: [{ start: 200, end: 300 }, { start: "304", end: "305" }]
        retriable_statuses: [{ start: 503, end: 504 }]
        codec_client_type: HTTP2
"#;

#[test]
fn full_http_check() {
    let check = only_check(&with_health_checks(FULL_HTTP));
    assert_eq!(check.timeout, Duration::from_millis(500));
    assert_eq!(check.interval, Duration::from_secs(5));
    assert_eq!(check.initial_jitter, Duration::from_millis(250));
    assert_eq!(check.interval_jitter, Duration::from_secs(1));
    assert_eq!(check.interval_jitter_percent, 10);
    assert_eq!(check.unhealthy_threshold, 3);
    assert_eq!(check.healthy_threshold, 2);
    assert!(!check.reuse_connection);
    assert_eq!(check.no_traffic_interval, Duration::from_secs(30));
    assert_eq!(check.no_traffic_healthy_interval, Duration::from_secs(120));
    assert_eq!(check.unhealthy_interval, Duration::from_secs(10));
    assert_eq!(check.unhealthy_edge_interval, Duration::from_secs(2));
    assert_eq!(check.healthy_edge_interval, Duration::from_secs(1));
    assert!(check.always_log_health_check_failures);
    assert!(check.always_log_health_check_success);
    // File order: the deprecated field is written first here.
    assert_eq!(
        check.event_log_paths,
        [
            PathBuf::from("/var/log/hale/hc-deprecated.log"),
            PathBuf::from("/var/log/hale/hc.log"),
            PathBuf::from("/var/log/hale/hc-2.log"),
        ]
    );
    let http = http_of(&check);
    assert_eq!(
        http,
        &HttpCheck {
            host: Some("backend.internal".to_string()),
            path: "/health?deep=1".to_string(),
            method: http::Method::POST,
            send: Some(b"{}".to_vec()),
            receive: vec![b"ok".to_vec(), b"!".to_vec()],
            response_buffer_size: 2048,
            request_headers_to_add: vec![
                header("x-hc-source", "edge", AppendAction::AppendIfExistsOrAdd),
                header("x-mode", "100% sure", AppendAction::OverwriteIfExists),
                header("x-old-false", "a", AppendAction::OverwriteIfExistsOrAdd),
                header("x-old-true", "b", AppendAction::AppendIfExistsOrAdd),
                header("x-absent", "c", AppendAction::AddIfAbsent),
                // x-empty: Envoy drops a header whose value is empty.
            ],
            request_headers_to_remove: vec!["x-debug".to_string(), "x-trace".to_string()],
            expected_statuses: vec![200..300, 304..305],
            retriable_statuses: vec![503..504],
            codec: CheckCodec::Http2,
        }
    );
}

#[test]
fn full_tcp_check() {
    let text = with_health_checks(
        "    - timeout: 1s
      interval: 2s
      unhealthy_threshold: 1
      healthy_threshold: 1
      tcp_health_check:
        send: { text: \"000000FF\" }
        receive: [{ text: \"0A\" }, { binary: \"aGk=\" }]
",
    );
    let check = only_check(&text);
    assert_eq!(
        check.checker,
        Checker::Tcp(TcpCheck {
            send: Some(vec![0, 0, 0, 0xff]),
            receive: vec![vec![0x0a], b"hi".to_vec()],
        })
    );
}

#[test]
fn full_grpc_check() {
    let text = with_health_checks(
        "    - timeout: 1s
      interval: 2s
      unhealthy_threshold: 1
      healthy_threshold: 1
      grpc_health_check:
        service_name: backend.v1.Api
        authority: grpc.internal
        initial_metadata:
        - header: { key: X-Token, value: abc }
          append_action: ADD_IF_ABSENT
        - header: { key: x-tenant, value: acme }
        - header: { key: x-token, value: ignored }
          append_action: ADD_IF_ABSENT
        - header: { key: x-zone, value: ignored }
          append_action: OVERWRITE_IF_EXISTS
        - header: { key: x-tenant, value: acme-2 }
        - header: { key: x-region, value: eu }
        - header: { key: x-region, value: us }
          append: false
",
    );
    let check = only_check(&text);
    assert_eq!(
        check.checker,
        Checker::Grpc(GrpcCheck {
            service_name: "backend.v1.Api".to_string(),
            authority: Some("grpc.internal".to_string()),
            // Envoy's append actions, applied in order to empty metadata.
            initial_metadata: vec![
                ("x-token".to_string(), "abc".to_string()),
                ("x-tenant".to_string(), "acme".to_string()),
                ("x-tenant".to_string(), "acme-2".to_string()),
                ("x-region".to_string(), "us".to_string()),
            ],
        })
    );
}

/// Every default of a health check and of each checker, checked once.
#[test]
fn defaults_are_envoys() {
    let check = only_check(&with_health_checks(HTTP_CHECK));
    assert_eq!(check.initial_jitter, Duration::ZERO);
    assert_eq!(check.interval_jitter, Duration::ZERO);
    assert_eq!(check.interval_jitter_percent, 0);
    assert!(check.reuse_connection);
    assert_eq!(check.no_traffic_interval, Duration::from_secs(60));
    assert_eq!(check.no_traffic_healthy_interval, Duration::from_secs(60));
    assert_eq!(check.unhealthy_interval, check.interval);
    assert_eq!(check.unhealthy_edge_interval, check.interval);
    assert_eq!(check.healthy_edge_interval, check.interval);
    assert!(!check.always_log_health_check_failures);
    assert!(!check.always_log_health_check_success);
    assert!(check.event_log_paths.is_empty());
    assert_eq!(
        http_of(&check),
        &HttpCheck {
            host: None,
            path: "/healthz".to_string(),
            method: http::Method::GET,
            send: None,
            receive: vec![],
            response_buffer_size: 1024,
            request_headers_to_add: vec![],
            request_headers_to_remove: vec![],
            expected_statuses: vec![200..201],
            retriable_statuses: vec![],
            codec: CheckCodec::Http1,
        }
    );

    let tcp = HTTP_CHECK.replace(
        "http_health_check:\n        path: /healthz",
        "tcp_health_check: {}",
    );
    let check = only_check(&with_health_checks(&tcp));
    let Checker::Tcp(TcpCheck { send, receive }) = check.checker else {
        panic!("expected a TCP check")
    };
    assert_eq!(send, None);
    assert!(receive.is_empty());

    let grpc = HTTP_CHECK.replace(
        "http_health_check:\n        path: /healthz",
        "grpc_health_check: {}",
    );
    let check = only_check(&with_health_checks(&grpc));
    let Checker::Grpc(grpc) = check.checker else {
        panic!("expected a gRPC check")
    };
    assert_eq!(grpc.service_name, "");
    assert_eq!(grpc.authority, None);
    assert!(grpc.initial_metadata.is_empty());

    let cluster = cluster_of(BASE);
    assert!(cluster.health_checks.is_empty());
    assert!(!cluster.fail_traffic_on_panic);
    assert_eq!(cluster.overprovisioning_factor, 140);
}

/// Envoy accepts a threshold of 0 (counting then never trips), so hale does.
#[test]
fn zero_thresholds_are_kept() {
    let text = with_health_checks(
        &HTTP_CHECK
            .replace("unhealthy_threshold: 3", "unhealthy_threshold: 0")
            .replace("healthy_threshold: 2", "healthy_threshold: { value: 0 }"),
    );
    let check = only_check(&text);
    assert_eq!(check.unhealthy_threshold, 0);
    assert_eq!(check.healthy_threshold, 0);
}

/// The defaults that follow another field follow it when it is set.
#[test]
fn derived_defaults_follow_their_field() {
    let text = with_health_checks(&HTTP_CHECK.replace(
        "      interval: 5s\n",
        "      interval: 5s\n      no_traffic_interval: 7s\n      unhealthy_interval: 9s\n",
    ));
    let check = only_check(&text);
    assert_eq!(check.no_traffic_healthy_interval, Duration::from_secs(7));
    assert_eq!(check.unhealthy_edge_interval, Duration::from_secs(9));
    assert_eq!(check.healthy_edge_interval, Duration::from_secs(5));
}

#[test]
fn http_check_spellings() {
    // Method by number, METHOD_UNSPECIFIED as GET, codec by number, an empty
    // expected list (proto3: unset), an empty host (unset), response buffer 0.
    let text = with_health_checks(&HTTP_CHECK.replace(
        "        path: /healthz\n",
        "        path: /healthz\n        method: 9\n        send: { binary: \"\" }\n        \
         host: \"\"\n        expected_statuses: []\n        codec_client_type: 1\n        \
         response_buffer_size: 0\n        receive: [{ text: \"00\" }]\n",
    ));
    let check = only_check(&text);
    let http = http_of(&check);
    assert_eq!(http.method, http::Method::PATCH);
    assert_eq!(http.send, Some(vec![]));
    assert_eq!(http.host, None);
    assert_eq!(http.expected_statuses, vec![200..201]);
    assert_eq!(http.codec, CheckCodec::Http2);
    assert_eq!(http.response_buffer_size, 0);

    let text = with_health_checks(&HTTP_CHECK.replace(
        "        path: /healthz\n",
        "        path: /healthz\n        method: METHOD_UNSPECIFIED\n",
    ));
    assert_eq!(http_of(&only_check(&text)).method, http::Method::GET);
}

/// hale's extension: Envoy rejects a second entry, hale runs them all.
#[test]
fn several_health_checks_on_one_cluster() {
    let tcp = "    - { timeout: 1s, interval: 3s, unhealthy_threshold: 2, healthy_threshold: 1, \
               tcp_health_check: {} }\n";
    let cluster = cluster_of(&with_health_checks(&format!("{HTTP_CHECK}{tcp}")));
    assert_eq!(cluster.health_checks.len(), 2);
    assert!(matches!(cluster.health_checks[0].checker, Checker::Http(_)));
    assert!(matches!(cluster.health_checks[1].checker, Checker::Tcp(_)));
    assert_eq!(cluster.health_checks[1].interval, Duration::from_secs(3));
}

#[test]
fn fail_traffic_on_panic_without_zone_aware_routing() {
    let text = base_with(
        "    connect_timeout: 1s",
        "    connect_timeout: 1s\n    common_lb_config:\n      healthy_panic_threshold: { value: 30 }\n      \
         zone_aware_lb_config: { fail_traffic_on_panic: true }",
    );
    let cluster = cluster_of(&text);
    assert!(cluster.fail_traffic_on_panic);
    assert_eq!(cluster.healthy_panic_threshold, 30.0);

    let text = base_with(
        "    connect_timeout: 1s",
        "    connect_timeout: 1s\n    common_lb_config: { zone_aware_lb_config: {} }",
    );
    assert!(!cluster_of(&text).fail_traffic_on_panic);
}

#[test]
fn overprovisioning_factor_from_the_policy() {
    for (policy, factor) in [
        ("{ overprovisioning_factor: 200 }", 200),
        ("{ overprovisioning_factor: { value: 100 } }", 100),
        ("{}", 140),
    ] {
        let text = base_with(
            "      cluster_name: backend\n",
            &format!("      cluster_name: backend\n      policy: {policy}\n"),
        );
        assert_eq!(
            cluster_of(&text).overprovisioning_factor,
            factor,
            "{policy}"
        );
    }
}
