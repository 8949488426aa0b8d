//! Invalid `health_checks[]` and health-related cluster fields: one test per
//! error class, each with its exact path.

use super::{
    HC, HTTP_CHECK, assert_one_error, base_with, errors_of, sorted_errors_of, with_health_checks,
};

/// [`HTTP_CHECK`] with `from` replaced by `to` (which must occur), as a
/// whole bootstrap.
fn check_with(from: &str, to: &str) -> String {
    assert!(HTTP_CHECK.contains(from), "HTTP_CHECK has no {from:?}");
    with_health_checks(&HTTP_CHECK.replacen(from, to, 1))
}

/// [`HTTP_CHECK`] with `lines` added to its `http_health_check`.
fn http_with(lines: &str) -> String {
    check_with(
        "        path: /healthz\n",
        &format!("        path: /healthz\n{lines}"),
    )
}

const HTTP: &str = "static_resources.clusters[0].health_checks[0].http_health_check";

#[test]
fn missing_timeout_and_thresholds() {
    assert_one_error(
        &check_with("    - timeout: 1s\n      interval", "    - interval"),
        &format!("{HC}.timeout"),
        "missing required field",
    );
    assert_one_error(
        &check_with("      unhealthy_threshold: 3\n", ""),
        &format!("{HC}.unhealthy_threshold"),
        "missing required field",
    );
}

#[test]
fn zero_durations_where_envoy_wants_more_than_0s() {
    assert_one_error(
        &check_with("interval: 5s", "interval: 0s"),
        &format!("{HC}.interval"),
        "interval must be more than 0s",
    );
    assert_one_error(
        &check_with(
            "interval: 5s",
            "interval: 5s\n      no_traffic_interval: { seconds: 0 }",
        ),
        &format!("{HC}.no_traffic_interval"),
        "no_traffic_interval must be more than 0s",
    );
}

#[test]
fn status_ranges_outside_100_to_600() {
    for range in [
        "{ start: 99, end: 200 }",
        "{ start: 200, end: 200 }",
        "{ start: 500, end: 601 }",
        "{ end: 300 }",
    ] {
        let text = http_with(&format!(
            "        expected_statuses: [{{ start: 200, end: 201 }}, {range}]\n"
        ));
        assert_one_error(
            &text,
            &format!("{HTTP}.expected_statuses[1]"),
            "it must satisfy 100 <= start < end <= 600",
        );
    }
    assert_one_error(
        &http_with("        retriable_statuses: [{ start: \"-1\", end: 600 }]\n"),
        &format!("{HTTP}.retriable_statuses[0]"),
        "invalid status range [-1, 600)",
    );
}

#[test]
fn connect_method() {
    for method in ["CONNECT", "6"] {
        assert_one_error(
            &http_with(&format!("        method: {method}\n")),
            &format!("{HTTP}.method"),
            "CONNECT cannot be a health check method",
        );
    }
}

#[test]
fn request_body_with_a_method_that_takes_none() {
    assert_one_error(
        &http_with("        send: { text: \"00\" }\n"),
        &format!("{HTTP}.send"),
        "a request body (send) is not allowed with method GET; use POST, PUT, PATCH or OPTIONS",
    );
    assert_one_error(
        &http_with("        method: DELETE\n        send: { binary: \"AA==\" }\n"),
        &format!("{HTTP}.send"),
        "not allowed with method DELETE",
    );
}

#[test]
fn receive_larger_than_the_response_buffer() {
    assert_one_error(
        &http_with(
            "        response_buffer_size: 2\n        receive: [{ text: \"0000\" }, { text: \"00\" }]\n",
        ),
        &format!("{HTTP}.receive"),
        "the receive payloads add up to 3 bytes, more than response_buffer_size (2 bytes)",
    );
}

#[test]
fn body_and_buffer_errors_are_reported_together() {
    let text = http_with(
        "        send: { text: \"00\" }\n        response_buffer_size: 1\n        \
         receive: [{ text: \"0000\" }]\n",
    );
    let paths: Vec<String> = errors_of(&text).into_iter().map(|(path, _)| path).collect();
    assert_eq!(paths, [format!("{HTTP}.send"), format!("{HTTP}.receive")]);
}

#[test]
fn both_append_and_append_action() {
    let text = http_with(
        "        request_headers_to_add:\n        - header: { key: x-a, value: b }\n          \
         append: true\n          append_action: ADD_IF_ABSENT\n",
    );
    assert_one_error(
        &text,
        &format!("{HTTP}.request_headers_to_add[0].append_action"),
        "\"append_action\" conflicts with \"append\": set only append_action",
    );
}

#[test]
fn header_rules_of_envoys_header_parser() {
    let add = |header: &str| {
        http_with(&format!(
            "        request_headers_to_add:\n        - header: {header}\n"
        ))
    };
    let key = format!("{HTTP}.request_headers_to_add[0].header.key");
    let value = format!("{HTTP}.request_headers_to_add[0].header.value");
    assert_one_error(
        &add("{ key: \":path\", value: /x }"),
        &key,
        "\":path\" may not be set by a health check",
    );
    assert_one_error(
        &add("{ key: Host, value: x }"),
        &key,
        "\"Host\" may not be set",
    );
    assert_one_error(
        &add("{ key: \"x a\", value: x }"),
        &key,
        "invalid header name \"x a\"",
    );
    assert_one_error(
        &add("{ key: x-a, value: \"%UPSTREAM_REMOTE_ADDRESS%\" }"),
        &value,
        "header value formatters (%COMMAND%) are not supported by hale; write %% for a literal %",
    );
    assert_one_error(
        &add("{ key: x-a, value: \"a\\nb\" }"),
        &value,
        "invalid header value",
    );
    assert_one_error(
        &http_with("        request_headers_to_remove: [x-ok, \":authority\"]\n"),
        &format!("{HTTP}.request_headers_to_remove[1]"),
        "\":authority\" may not be removed by a health check",
    );
}

#[test]
fn too_many_headers() {
    let headers = "        - header: { key: x-a, value: b }\n".repeat(1001);
    assert_one_error(
        &http_with(&format!("        request_headers_to_add:\n{headers}")),
        &format!("{HTTP}.request_headers_to_add"),
        "at most 1000 headers (Envoy's limit); found 1001",
    );
}

#[test]
fn event_sinks_other_than_the_file_sink() {
    let logger = |entry: &str| {
        check_with(
            "      http_health_check:",
            &format!("      event_logger:\n      - {entry}\n      http_health_check:"),
        )
    };
    assert_one_error(
        &logger("{ name: my.sink }"),
        &format!("{HC}.event_logger[0].name"),
        "health check event sink \"my.sink\" is not supported by hale; hale supports \
         envoy.health_check.event_sinks.file",
    );
    assert_one_error(
        &logger(
            "{ name: envoy.health_check.event_sinks.file, typed_config: \
             { \"@type\": type.googleapis.com/acme.Sink } }",
        ),
        &format!("{HC}.event_logger[0].typed_config.@type"),
        "health check event sink \"type.googleapis.com/acme.Sink\" is not supported by hale",
    );
    assert_one_error(
        &logger("{ name: envoy.health_check.event_sinks.file }"),
        &format!("{HC}.event_logger[0].typed_config"),
        "missing required field",
    );
    assert_one_error(
        &logger(
            "{ name: f, typed_config: { \"@type\": type.googleapis.com/envoy.extensions.\
             health_check.event_sinks.file.v3.HealthCheckEventFileSink, event_log_path: \"\" } }",
        ),
        &format!("{HC}.event_logger[0].typed_config.event_log_path"),
        "must not be empty",
    );
}

#[test]
fn no_checker_or_two() {
    assert_one_error(
        &check_with("      http_health_check:\n        path: /healthz\n", ""),
        HC,
        "one of http_health_check, tcp_health_check, grpc_health_check is required",
    );
    assert_one_error(
        &check_with(
            "      http_health_check:",
            "      tcp_health_check: {}\n      http_health_check:",
        ),
        &format!("{HC}.http_health_check"),
        "\"http_health_check\" conflicts with \"tcp_health_check\": only one of them may be set",
    );
}

#[test]
fn envoy_health_check_features_hale_lacks() {
    let text = check_with(
        "      http_health_check:\n        path: /healthz\n",
        "      alt_port: 8081\n      custom_health_check: { name: envoy.health_checkers.redis }\n",
    );
    assert_eq!(
        errors_of(&text),
        vec![
            (
                format!("{HC}.alt_port"),
                "\"alt_port\" is an Envoy field that is not supported by hale; set the \
                 endpoint's health_check_config.port_value instead"
                    .to_string()
            ),
            (
                format!("{HC}.custom_health_check"),
                "\"custom_health_check\" is an Envoy field that is not supported by hale"
                    .to_string()
            ),
        ]
    );
    let text =
        http_with("        service_name_matcher: { exact: x }\n        codec_client_type: HTTP3\n");
    assert_eq!(
        errors_of(&text),
        vec![
            (
                format!("{HTTP}.service_name_matcher"),
                "\"service_name_matcher\" is an Envoy field that is not supported by hale yet"
                    .to_string()
            ),
            (
                format!("{HTTP}.codec_client_type"),
                "HTTP3 is an Envoy value that is not supported by hale; hale supports HTTP1, HTTP2"
                    .to_string()
            ),
        ]
    );
    let tcp = check_with(
        "      http_health_check:\n        path: /healthz\n",
        "      tcp_health_check: { proxy_protocol_config: {} }\n",
    );
    assert_one_error(
        &tcp,
        &format!("{HC}.tcp_health_check.proxy_protocol_config"),
        "not supported by hale",
    );
    let header = http_with(
        "        request_headers_to_add:\n        - header: { key: x-a, raw_value: YQ== }\n          \
         keep_empty_value: true\n",
    );
    assert_eq!(
        sorted_errors_of(&header)
            .into_iter()
            .map(|(path, _)| path)
            .collect::<Vec<_>>(),
        [
            format!("{HTTP}.request_headers_to_add[0].header.raw_value"),
            format!("{HTTP}.request_headers_to_add[0].keep_empty_value"),
        ]
    );
}

#[test]
fn payloads_and_path() {
    let tcp = |payload: &str| {
        check_with(
            "      http_health_check:\n        path: /healthz\n",
            &format!("      tcp_health_check: {{ send: {payload} }}\n"),
        )
    };
    let send = format!("{HC}.tcp_health_check.send");
    assert_one_error(
        &tcp("{ text: \"0g\" }"),
        &format!("{send}.text"),
        "invalid hex string",
    );
    assert_one_error(
        &tcp("{}"),
        &send,
        "a payload needs \"text\" (hex) or \"binary\" (base64)",
    );
    assert_one_error(
        &tcp("{ text: \"00\", binary: \"AA==\" }"),
        &format!("{send}.binary"),
        "conflicts with \"text\"",
    );
    assert_one_error(
        &check_with("        path: /healthz\n", "        host: x\n"),
        &format!("{HTTP}.path"),
        "missing required field",
    );
    assert_one_error(
        &check_with("path: /healthz", "path: \"/a b\""),
        &format!("{HTTP}.path"),
        "\"/a b\" is not a valid request path",
    );
}

#[test]
fn zone_aware_and_policy_fields_hale_lacks() {
    let text = base_with(
        "    connect_timeout: 1s",
        "    connect_timeout: 1s\n    common_lb_config:\n      zone_aware_lb_config: \
         { routing_enabled: { value: 50 }, fail_traffic_on_panic: true }",
    );
    assert_one_error(
        &text,
        "static_resources.clusters[0].common_lb_config.zone_aware_lb_config.routing_enabled",
        "\"routing_enabled\" is an Envoy field that is not supported by hale; hale does no \
         zone-aware routing",
    );
    let text = base_with(
        "    connect_timeout: 1s",
        "    connect_timeout: 1s\n    common_lb_config: { locality_weighted_lb_config: {} }",
    );
    assert_one_error(
        &text,
        "static_resources.clusters[0].common_lb_config.locality_weighted_lb_config",
        "not supported by hale",
    );
    let policy = |policy: &str| {
        base_with(
            "      cluster_name: backend\n",
            &format!("      cluster_name: backend\n      policy: {policy}\n"),
        )
    };
    let at = "static_resources.clusters[0].load_assignment.policy";
    assert_one_error(
        &policy("{ overprovisioning_factor: 0 }"),
        &format!("{at}.overprovisioning_factor"),
        "overprovisioning_factor must be more than 0",
    );
    assert_one_error(
        &policy("{ weighted_priority_health: true }"),
        &format!("{at}.weighted_priority_health"),
        "not supported by hale",
    );
}
