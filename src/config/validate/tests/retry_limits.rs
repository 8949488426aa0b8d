//! What bounds retries: a route's `priority` (which circuit-breaker
//! thresholds it counts against), the buffer limit for retries resolved from
//! route, virtual host and listener, and a thresholds entry's `retry_budget`.

use super::retry::{HOST, forward_of, with_host, with_route};
use super::{BASE, ROUTE, assert_one_error, base_with, parse_yaml};
use crate::config::model::{DEFAULT_BUFFER_LIMIT_BYTES, RetryBudget, RoutingPriority, Thresholds};

#[test]
fn route_priority_high_by_name_or_number() {
    assert_eq!(
        forward_of(&with_route("priority: HIGH")).priority,
        RoutingPriority::High
    );
    assert_eq!(
        forward_of(&with_route("priority: 1")).priority,
        RoutingPriority::High
    );
    assert_eq!(
        forward_of(&with_route("priority: DEFAULT")).priority,
        RoutingPriority::Default
    );
    assert_one_error(
        &with_route("priority: URGENT"),
        &format!("{ROUTE}.route.priority"),
        "unknown value \"URGENT\"; expected one of DEFAULT, HIGH",
    );
}

/// [`BASE`] with the listener's, the virtual host's and the route's buffer
/// limits, each when given.
fn with_limits(listener: Option<u32>, host: Option<u32>, route: Option<u32>) -> String {
    let mut text = BASE.to_string();
    if let Some(limit) = listener {
        text = text.replacen(
            "  - name: ingress\n",
            &format!("  - name: ingress\n    per_connection_buffer_limit_bytes: {limit}\n"),
            1,
        );
    }
    if let Some(limit) = host {
        text = text.replacen(
            "              domains: [\"*\"]\n",
            &format!(
                "              domains: [\"*\"]\n              per_request_buffer_limit_bytes: \
                 {{ value: {limit} }}\n"
            ),
            1,
        );
    }
    if let Some(limit) = route {
        text = text.replacen(
            "              - match: { prefix: \"/\" }\n",
            &format!(
                "              - match: {{ prefix: \"/\" }}\n                \
                 per_request_buffer_limit_bytes: {limit}\n"
            ),
            1,
        );
    }
    text
}

#[test]
fn retry_buffer_limit_is_the_route_else_host_capped_by_the_listener() {
    let limit = |listener, host, route| forward_of(&with_limits(listener, host, route));
    let limit = |listener, host, route| limit(listener, host, route).retry_buffer_limit;
    // Nothing set: the listener's default, 1 MiB.
    assert_eq!(limit(None, None, None), DEFAULT_BUFFER_LIMIT_BYTES);
    // The listener alone.
    assert_eq!(limit(Some(4096), None, None), 4096);
    // The virtual host's, then the route's, each below the listener's.
    assert_eq!(limit(None, Some(2048), None), 2048);
    assert_eq!(limit(None, Some(2048), Some(512)), 512);
    assert_eq!(limit(Some(8192), Some(2048), Some(4096)), 4096);
    // 0 is a limit: nothing is buffered, so a request with a body is not retried.
    assert_eq!(limit(None, Some(2048), Some(0)), 0);
    // Envoy never buffers more than the connection allows...
    assert_eq!(limit(None, None, Some(8 << 20)), DEFAULT_BUFFER_LIMIT_BYTES);
    assert_eq!(limit(Some(1000), Some(5000), None), 1000);
    // ...and a listener limit of 0 means no limit.
    assert_eq!(limit(Some(0), None, Some(8 << 20)), 8 << 20);
    assert_eq!(limit(Some(0), None, None), u32::MAX);
}

#[test]
fn buffer_limit_errors_are_reported_at_their_path() {
    assert_one_error(
        &base_with(
            "  - name: ingress\n",
            "  - name: ingress\n    per_connection_buffer_limit_bytes: -1\n",
        ),
        "static_resources.listeners[0].per_connection_buffer_limit_bytes",
        "expected an unsigned integer",
    );
    assert_one_error(
        &with_host("per_request_buffer_limit_bytes: lots"),
        &format!("{HOST}.per_request_buffer_limit_bytes"),
        "expected an unsigned integer",
    );
    assert_one_error(
        &base_with(
            "              - match: { prefix: \"/\" }\n",
            "              - match: { prefix: \"/\" }\n                \
             per_request_buffer_limit_bytes: 1.5\n",
        ),
        &format!("{ROUTE}.per_request_buffer_limit_bytes"),
        "expected an unsigned integer",
    );
}

/// [`BASE`] whose cluster has one circuit-breaker thresholds entry (flow style).
fn with_thresholds(entry: &str) -> String {
    base_with(
        "    connect_timeout: 1s\n",
        &format!(
            "    connect_timeout: 1s\n    circuit_breakers:\n      thresholds:\n      - {entry}\n"
        ),
    )
}

fn default_thresholds(text: &str) -> Thresholds {
    let bootstrap = parse_yaml(text).unwrap_or_else(|e| panic!("{e}"));
    bootstrap.clusters[0].circuit_breakers.default
}

#[test]
fn an_empty_retry_budget_has_envoys_defaults() {
    let thresholds = default_thresholds(&with_thresholds("{ retry_budget: {} }"));
    let budget = thresholds.retry_budget.unwrap();
    assert_eq!(budget, RetryBudget::default());
    assert_eq!(budget.budget_percent, 20.0);
    assert_eq!(budget.min_retry_concurrency, 3);
    // Without retry_budget, there is none.
    let thresholds = default_thresholds(&with_thresholds("{ max_retries: 5 }"));
    assert_eq!(thresholds.retry_budget, None);
    assert_eq!(thresholds.max_retries, 5);
}

#[test]
fn a_retry_budget_decodes_both_fields() {
    let text = with_thresholds(
        "{ priority: HIGH, retry_budget: { budget_percent: { value: 12.5 }, \
         min_retry_concurrency: { value: 7 } } }",
    );
    let bootstrap = parse_yaml(&text).unwrap_or_else(|e| panic!("{e}"));
    let breakers = bootstrap.clusters[0].circuit_breakers;
    assert_eq!(breakers.default.retry_budget, None);
    assert_eq!(
        breakers.high.retry_budget,
        Some(RetryBudget {
            budget_percent: 12.5,
            min_retry_concurrency: 7,
        })
    );
    // As in Envoy, a set Percent without value is 0, not the default.
    let thresholds =
        default_thresholds(&with_thresholds("{ retry_budget: { budget_percent: {} } }"));
    assert_eq!(thresholds.retry_budget.unwrap().budget_percent, 0.0);
}

#[test]
fn retry_budget_errors_are_reported_at_their_path() {
    let at = "static_resources.clusters[0].circuit_breakers.thresholds[0].retry_budget";
    assert_one_error(
        &with_thresholds("{ retry_budget: { budget_percent: { value: 120 } } }"),
        &format!("{at}.budget_percent.value"),
        "120 is out of range: a percentage is 0 to 100",
    );
    assert_one_error(
        &with_thresholds("{ retry_budget: { min_retry_concurency: 2 } }"),
        &format!("{at}.min_retry_concurency"),
        "unknown field \"min_retry_concurency\" (did you mean \"min_retry_concurrency\"?)",
    );
}
