//! Errors in the document's shape, one test per class: unknown and
//! unsupported fields, wrong types, missing fields, bad scalars, and all
//! errors reported at once in order.

use super::{BASE, ENDPOINT, HCM, ROUTE, assert_one_error, base_with, errors_of, sorted_errors_of};

#[test]
fn unknown_field_suggests_the_supported_one() {
    let text = base_with("    connect_timeout: 1s", "    conect_timeout: 1s");
    assert_one_error(
        &text,
        "static_resources.clusters[0].conect_timeout",
        "unknown field \"conect_timeout\" (did you mean \"connect_timeout\"?)",
    );
}

#[test]
fn unknown_field_without_a_close_match() {
    let text = base_with(
        "  clusters:\n  - name: backend\n",
        "  clusters:\n  - name: backend\n    colour: blue\n",
    );
    assert_one_error(
        &text,
        "static_resources.clusters[0].colour",
        "unknown field \"colour\"",
    );
}

#[test]
fn envoy_field_that_hale_lacks_is_named() {
    let text = base_with(
        "    connect_timeout: 1s",
        "    connect_timeout: 1s\n    dns_lookup_family: V4_ONLY",
    );
    assert_one_error(
        &text,
        "static_resources.clusters[0].dns_lookup_family",
        "\"dns_lookup_family\" is an Envoy field that is not supported by hale",
    );
}

#[test]
fn type_error_names_expected_and_found() {
    let text = base_with("port_value: 9000", "port_value: abc");
    assert_one_error(
        &text,
        &format!("{ENDPOINT}.endpoint.address.socket_address.port_value"),
        "expected an unsigned integer, found a string \"abc\"",
    );
}

#[test]
fn port_above_65535_is_rejected() {
    let text = base_with("port_value: 8080", "port_value: 70000");
    assert_one_error(
        &text,
        "static_resources.listeners[0].address.socket_address.port_value",
        "port 70000 is out of range: at most 65535",
    );
}

#[test]
fn missing_required_field_is_reported_where_it_belongs() {
    let text = base_with("  - name: ingress\n    address:", "  - address:");
    assert_one_error(
        &text,
        "static_resources.listeners[0].name",
        "missing required field",
    );
}

#[test]
fn durations_with_units_or_without_s_are_rejected() {
    for (written, message) in [
        (
            "5ms",
            "invalid duration \"5ms\": expected seconds with an \"s\" suffix, like \"5s\" or \"0.25s\"",
        ),
        (
            "\"5\"",
            "invalid duration \"5\": expected seconds with an \"s\" suffix",
        ),
        (
            "-1s",
            "invalid duration \"-1s\": a duration must not be negative",
        ),
        (
            "5",
            "expected a duration like \"5s\" or \"0.25s\", found a number 5",
        ),
        ("0s", "connect_timeout must be more than 0s"),
    ] {
        let text = base_with(
            "connect_timeout: 1s",
            &format!("connect_timeout: {written}"),
        );
        assert_one_error(
            &text,
            "static_resources.clusters[0].connect_timeout",
            message,
        );
    }
}

#[test]
fn unsupported_enum_values() {
    let text = base_with(
        "    connect_timeout: 1s",
        "    connect_timeout: 1s\n    type: EDS\n    lb_policy: MAGLEV",
    );
    assert_eq!(
        sorted_errors_of(&text),
        vec![
            (
                "static_resources.clusters[0].lb_policy".to_string(),
                "MAGLEV is an Envoy value that is not supported by hale; hale supports ROUND_ROBIN, LEAST_REQUEST, RANDOM".to_string()
            ),
            (
                "static_resources.clusters[0].type".to_string(),
                "EDS is an Envoy value that is not supported by hale; hale supports STATIC, STRICT_DNS, LOGICAL_DNS".to_string()
            ),
        ]
    );
    let text = base_with(
        "stat_prefix: ingress",
        "stat_prefix: ingress\n          codec_type: HTTP4",
    );
    assert_one_error(
        &text,
        &format!("{HCM}.codec_type"),
        "unknown value \"HTTP4\"; expected one of AUTO, HTTP1, HTTP2",
    );
}

#[test]
fn rds_is_not_supported() {
    let text = base_with(
        "stat_prefix: ingress",
        "stat_prefix: ingress\n          rds: { route_config_name: x }",
    );
    assert_one_error(
        &text,
        &format!("{HCM}.rds"),
        "\"rds\" is an Envoy field that is not supported by hale; put the routes inline in route_config",
    );
}

#[test]
fn deprecated_header_match_form_points_to_string_match() {
    let text = base_with(
        "match: { prefix: \"/\" }",
        "match: { prefix: \"/\", headers: [{ name: x-a, exact_match: b }] }",
    );
    assert_one_error(
        &text,
        &format!("{ROUTE}.match.headers[0].exact_match"),
        "\"exact_match\" is an Envoy field that is not supported by hale; use string_match",
    );
}

#[test]
fn admin_access_log_path_other_than_dev_null() {
    let admin = "admin:\n  access_log_path: /tmp/admin.log\n  address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }\n";
    assert_one_error(
        &format!("{admin}{BASE}"),
        "admin.access_log_path",
        "only \"/dev/null\" is accepted",
    );
}

/// Errors come back sorted by their position in the document. Within one
/// object that is the order `serde_json::Map` iterates keys in: the order
/// written when serde_json's `preserve_order` feature is on, alphabetical
/// otherwise. This document writes `clusters` before `listeners` (Envoy does
/// not care) so the expectation holds either way.
#[test]
fn several_errors_are_reported_at_once_in_document_order() {
    let clusters = &BASE[BASE.find("  clusters:").unwrap()..];
    let listeners = &BASE[BASE.find("  listeners:").unwrap()..BASE.find("  clusters:").unwrap()];
    let text = format!("static_resources:\n{clusters}{listeners}")
        .replace("port_value: 8080", "port_value: 80800")
        .replace(
            "route: { cluster: backend }",
            "route: { cluster: nope, timeout: 5ms }",
        )
        .replace("port_value: 9000", "port_value: 0")
        .replace(
            "  clusters:\n  - name: backend\n",
            "  clusters:\n  - name: backend\n    lb_policy: RING_HASH\n",
        );
    let errors = errors_of(&text);
    let paths: Vec<&str> = errors.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "static_resources.clusters[0].lb_policy",
            &format!("{ENDPOINT}.endpoint.address.socket_address.port_value"),
            "static_resources.listeners[0].address.socket_address.port_value",
            &format!("{ROUTE}.route.cluster"),
            &format!("{ROUTE}.route.timeout"),
        ]
    );
}
