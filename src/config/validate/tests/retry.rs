//! Retries: `retry_policy` of a route and of a virtual host: defaults, every
//! `retry_on` value, which policy a route uses, and one test per error class
//! with its exact path. What bounds retries (priority, buffer limits, retry
//! budgets) is in `retry_limits`.

use std::time::Duration;

use super::{BASE, ROUTE, assert_one_error, base_with, errors_of, parse_yaml};
use crate::config::model::{
    DEFAULT_BUFFER_LIMIT_BYTES, ForwardAction, HeaderRule, RetryOn, RetryPolicy, RouteAction,
    RoutingPriority,
};

/// The retry policy of the first route of [`BASE`] (see [`with_route`]).
const POLICY: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config\
                      .route_config.virtual_hosts[0].routes[0].route.retry_policy";

/// The first virtual host of [`BASE`].
pub(super) const HOST: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config\
                    .route_config.virtual_hosts[0]";

/// `lines` indented by `spaces`, each ending in a newline.
fn indented(lines: &str, spaces: usize) -> String {
    lines
        .lines()
        .map(|line| format!("{:spaces$}{line}\n", ""))
        .collect()
}

/// [`BASE`] whose first route action has `fields` (YAML lines, unindented)
/// next to its cluster.
pub(super) fn with_route(fields: &str) -> String {
    base_with(
        "                route: { cluster: backend }\n",
        &format!(
            "                route:\n                  cluster: backend\n{}",
            indented(fields, 18)
        ),
    )
}

/// [`BASE`] whose virtual host has `fields` (YAML lines, unindented).
pub(super) fn with_host(fields: &str) -> String {
    base_with(
        "              domains: [\"*\"]\n",
        &format!("              domains: [\"*\"]\n{}", indented(fields, 14)),
    )
}

/// [`BASE`] with the retry policy `policy` (flow style) on the first route.
fn with_policy(policy: &str) -> String {
    with_route(&format!("retry_policy: {policy}"))
}

/// The first route's forward action.
pub(super) fn forward_of(text: &str) -> ForwardAction {
    let bootstrap = parse_yaml(text).unwrap_or_else(|e| panic!("{e}"));
    forwards(&bootstrap).remove(0)
}

fn forwards(bootstrap: &crate::config::Bootstrap) -> Vec<ForwardAction> {
    let host = &bootstrap.listeners[0].http.route_config.virtual_hosts[0];
    host.routes
        .iter()
        .map(|route| match &route.action {
            RouteAction::Forward(forward) => forward.clone(),
            RouteAction::DirectResponse(_) => panic!("a direct response"),
        })
        .collect()
}

fn policy_of(text: &str) -> RetryPolicy {
    forward_of(text).retry_policy.expect("a retry policy")
}

#[test]
fn a_route_without_any_of_it_has_envoys_defaults() {
    let forward = forward_of(BASE);
    assert_eq!(forward.priority, RoutingPriority::Default);
    assert!(forward.retry_policy.is_none());
    assert_eq!(forward.retry_buffer_limit, DEFAULT_BUFFER_LIMIT_BYTES);
    assert_eq!(forward.retry_buffer_limit, 1024 * 1024);
    let breakers = parse_yaml(BASE).unwrap().clusters[0].circuit_breakers;
    assert_eq!(breakers.default.retry_budget, None);
}

#[test]
fn an_empty_policy_retries_nothing_with_envoys_defaults() {
    let policy = policy_of(&with_policy("{}"));
    assert_eq!(policy.retry_on, RetryOn::default());
    assert_eq!(policy.num_retries, 1);
    assert_eq!(policy.per_try_timeout, None);
    assert_eq!(policy.back_off_base, Duration::from_millis(25));
    assert_eq!(policy.back_off_max, Duration::from_millis(250));
    assert!(policy.retriable_status_codes.is_empty());
    assert!(policy.retriable_headers.is_empty());
    assert!(policy.retriable_request_headers.is_empty());
    assert!(!policy.previous_hosts);
    assert_eq!(policy.host_selection_retry_max_attempts, 1);
    // An empty retry_on is allowed too: no condition, so no retries.
    let policy = policy_of(&with_policy("{ retry_on: \"\", num_retries: 3 }"));
    assert_eq!(policy.retry_on, RetryOn::default());
}

#[test]
fn a_full_policy_decodes_every_field() {
    let text = with_route(
        r#"retry_policy:
  retry_on: "5xx,retriable-status-codes,retriable-headers"
  num_retries: { value: 4 }
  per_try_timeout: 0.5s
  retry_back_off: { base_interval: 0.1s, max_interval: 2s }
  retriable_status_codes: [409, "503"]
  retriable_headers:
  - name: X-Retry
    string_match: { exact: "yes" }
  retriable_request_headers:
  - name: ":method"
    string_match: { exact: GET }
  retry_host_predicate:
  - name: envoy.retry_host_predicates.previous_hosts
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
  host_selection_retry_max_attempts: "3""#,
    );
    let policy = policy_of(&text);
    assert_eq!(
        policy.retry_on,
        RetryOn::FIVE_XX
            .with(RetryOn::RETRIABLE_STATUS_CODES)
            .with(RetryOn::RETRIABLE_HEADERS)
    );
    assert_eq!(policy.num_retries, 4);
    assert_eq!(policy.per_try_timeout, Some(Duration::from_millis(500)));
    assert_eq!(policy.back_off_base, Duration::from_millis(100));
    assert_eq!(policy.back_off_max, Duration::from_secs(2));
    assert_eq!(policy.retriable_status_codes, vec![409, 503]);
    assert_eq!(policy.retriable_headers.len(), 1);
    assert_eq!(policy.retriable_headers[0].name, "x-retry");
    assert!(matches!(
        policy.retriable_headers[0].rule,
        HeaderRule::Value(_)
    ));
    assert_eq!(policy.retriable_request_headers[0].name, ":method");
    assert!(policy.previous_hosts);
    assert_eq!(policy.host_selection_retry_max_attempts, 3);
}

#[test]
fn camel_case_spellings_are_read() {
    let policy = policy_of(&with_policy(
        "{ retryOn: reset, numRetries: 2, perTryTimeout: 1s, \
         retryBackOff: { baseInterval: 0.01s }, hostSelectionRetryMaxAttempts: 5 }",
    ));
    assert_eq!(policy.retry_on, RetryOn::RESET);
    assert_eq!(policy.num_retries, 2);
    assert_eq!(policy.per_try_timeout, Some(Duration::from_secs(1)));
    assert_eq!(policy.back_off_base, Duration::from_millis(10));
    assert_eq!(policy.back_off_max, Duration::from_millis(100));
    assert_eq!(policy.host_selection_retry_max_attempts, 5);
}

#[test]
fn every_retry_on_value_sets_its_condition() {
    for (value, condition) in [
        ("5xx", RetryOn::FIVE_XX),
        ("gateway-error", RetryOn::GATEWAY_ERROR),
        ("reset", RetryOn::RESET),
        ("connect-failure", RetryOn::CONNECT_FAILURE),
        ("refused-stream", RetryOn::REFUSED_STREAM),
        ("retriable-4xx", RetryOn::RETRIABLE_4XX),
        ("retriable-status-codes", RetryOn::RETRIABLE_STATUS_CODES),
        ("retriable-headers", RetryOn::RETRIABLE_HEADERS),
        ("envoy-ratelimited", RetryOn::ENVOY_RATELIMITED),
        (
            "http3-post-connect-failure",
            RetryOn::HTTP3_POST_CONNECT_FAILURE,
        ),
        ("cancelled", RetryOn::GRPC_CANCELLED),
        ("deadline-exceeded", RetryOn::GRPC_DEADLINE_EXCEEDED),
        ("resource-exhausted", RetryOn::GRPC_RESOURCE_EXHAUSTED),
        ("internal", RetryOn::GRPC_INTERNAL),
        ("unavailable", RetryOn::GRPC_UNAVAILABLE),
    ] {
        let policy = policy_of(&with_policy(&format!("{{ retry_on: \"{value}\" }}")));
        assert_eq!(policy.retry_on, condition, "{value}");
    }
}

#[test]
fn retry_on_items_are_trimmed_and_empty_ones_skipped() {
    let policy = policy_of(&with_policy(
        "{ retry_on: \" 5xx ,\\treset,,unavailable , \" }",
    ));
    assert_eq!(
        policy.retry_on,
        RetryOn::FIVE_XX
            .with(RetryOn::RESET)
            .with(RetryOn::GRPC_UNAVAILABLE)
    );
}

#[test]
fn unknown_retry_on_value_is_an_error_naming_the_valid_ones() {
    let text = with_policy("{ retry_on: \"5xx,gateway-eror\" }");
    assert_one_error(
        &text,
        &format!("{POLICY}.retry_on"),
        "unknown retry_on value \"gateway-eror\"; expected a comma-separated list of 5xx, \
         gateway-error, reset, connect-failure, envoy-ratelimited, retriable-4xx, \
         refused-stream, retriable-status-codes, retriable-headers, \
         http3-post-connect-failure, cancelled, deadline-exceeded, internal, \
         resource-exhausted, unavailable (Envoy ignores an unknown value; hale rejects it",
    );
    // Values are case-sensitive, as in Envoy.
    assert_one_error(
        &with_policy("{ retry_on: 5XX }"),
        &format!("{POLICY}.retry_on"),
        "unknown retry_on value \"5XX\"",
    );
    // Each unknown value is its own error.
    assert_eq!(errors_of(&with_policy("{ retry_on: \"a,b\" }")).len(), 2);
}

#[test]
fn reset_before_request_is_not_supported() {
    assert_one_error(
        &with_policy("{ retry_on: \"reset-before-request\" }"),
        &format!("{POLICY}.retry_on"),
        "\"reset-before-request\" is an Envoy retry_on value that is not supported by hale",
    );
}

#[test]
fn unsupported_policy_fields_are_named() {
    for field in [
        "per_try_idle_timeout: 1s",
        "retry_priority: { name: envoy.retry_priorities.previous_priorities }",
        "retry_options_predicates: []",
        "rate_limited_retry_back_off: { reset_headers: [{ name: Retry-After }] }",
    ] {
        let name = field.split(':').next().unwrap();
        assert_one_error(
            &with_policy(&format!("{{ {field} }}")),
            &format!("{POLICY}.{name}"),
            &format!("\"{name}\" is an Envoy field that is not supported by hale"),
        );
    }
    assert_one_error(
        &with_route("retry_policy_typed_config: {}"),
        &format!("{ROUTE}.route.retry_policy_typed_config"),
        "not supported by hale",
    );
}

#[test]
fn the_virtual_host_policy_applies_unless_the_route_has_its_own() {
    let own_route = r#"
              - match: { prefix: "/own" }
                route: { cluster: backend, retry_policy: { retry_on: reset } }"#;
    let text = with_host("retry_policy: { retry_on: 5xx, num_retries: 3 }").replacen(
        "              routes:",
        &format!("              routes:{own_route}"),
        1,
    );
    let bootstrap = parse_yaml(&text).unwrap_or_else(|e| panic!("{e}"));
    let [own, inherited] = forwards(&bootstrap).try_into().unwrap();
    // The route's policy wins whole: num_retries is its default, not 3.
    let own = own.retry_policy.unwrap();
    assert_eq!(own.retry_on, RetryOn::RESET);
    assert_eq!(own.num_retries, 1);
    let inherited = inherited.retry_policy.unwrap();
    assert_eq!(inherited.retry_on, RetryOn::FIVE_XX);
    assert_eq!(inherited.num_retries, 3);
}

#[test]
fn an_invalid_virtual_host_policy_is_reported_at_its_path() {
    assert_one_error(
        &with_host("retry_policy: { retry_on: nope }"),
        &format!("{HOST}.retry_policy.retry_on"),
        "unknown retry_on value \"nope\"",
    );
}

#[test]
fn back_off_max_defaults_to_ten_times_the_base() {
    let policy = policy_of(&with_policy("{ retry_back_off: { base_interval: 0.2s } }"));
    assert_eq!(policy.back_off_base, Duration::from_millis(200));
    assert_eq!(policy.back_off_max, Duration::from_secs(2));
}

#[test]
fn back_off_intervals_are_whole_milliseconds_of_at_least_one() {
    let policy = policy_of(&with_policy(
        "{ retry_back_off: { base_interval: 0.0000001s, max_interval: 0.0025s } }",
    ));
    assert_eq!(policy.back_off_base, Duration::from_millis(1));
    assert_eq!(policy.back_off_max, Duration::from_millis(2));
    // Compared after rounding, as Envoy does: 1.5 ms and 1.2 ms are both 1 ms.
    let policy = policy_of(&with_policy(
        "{ retry_back_off: { base_interval: 0.0015s, max_interval: 0.0012s } }",
    ));
    assert_eq!(policy.back_off_max, Duration::from_millis(1));
}

#[test]
fn back_off_max_below_base_is_an_error() {
    assert_one_error(
        &with_policy("{ retry_back_off: { base_interval: 1s, max_interval: 0.5s } }"),
        &format!("{POLICY}.retry_back_off.max_interval"),
        "max_interval must be greater than or equal to the base_interval",
    );
}

#[test]
fn back_off_base_is_required_and_intervals_positive() {
    assert_one_error(
        &with_policy("{ retry_back_off: { max_interval: 1s } }"),
        &format!("{POLICY}.retry_back_off.base_interval"),
        "missing required field",
    );
    assert_one_error(
        &with_policy("{ retry_back_off: { base_interval: 0s } }"),
        &format!("{POLICY}.retry_back_off.base_interval"),
        "base_interval must be more than 0s",
    );
    assert_one_error(
        &with_policy("{ retry_back_off: { base_interval: 1s, max_interval: 0s } }"),
        &format!("{POLICY}.retry_back_off.max_interval"),
        "max_interval must be more than 0s",
    );
}

#[test]
fn a_zero_per_try_timeout_means_none() {
    let policy = policy_of(&with_policy("{ per_try_timeout: 0s }"));
    assert_eq!(policy.per_try_timeout, None);
}

#[test]
fn retriable_status_codes_must_be_http_statuses() {
    assert_one_error(
        &with_policy("{ retriable_status_codes: [503, 600] }"),
        &format!("{POLICY}.retriable_status_codes[1]"),
        "status 600 is out of range: an HTTP status is 100 to 599",
    );
    assert_one_error(
        &with_policy("{ retriable_status_codes: [99] }"),
        &format!("{POLICY}.retriable_status_codes[0]"),
        "status 99 is out of range",
    );
}

#[test]
fn retriable_headers_use_the_route_header_matcher() {
    assert_one_error(
        &with_policy("{ retriable_headers: [{ name: x-a, exact_match: b }] }"),
        &format!("{POLICY}.retriable_headers[0].exact_match"),
        "use string_match",
    );
}

#[test]
fn host_selection_attempts_zero_is_one_and_negative_an_error() {
    let policy = policy_of(&with_policy("{ host_selection_retry_max_attempts: 0 }"));
    assert_eq!(policy.host_selection_retry_max_attempts, 1);
    assert_one_error(
        &with_policy("{ host_selection_retry_max_attempts: -2 }"),
        &format!("{POLICY}.host_selection_retry_max_attempts"),
        "host_selection_retry_max_attempts must not be negative; found -2",
    );
}

#[test]
fn previous_hosts_by_name_with_or_without_its_empty_config() {
    for predicate in [
        "{ name: envoy.retry_host_predicates.previous_hosts }",
        "{ name: envoy.retry_host_predicates.previous_hosts, typed_config: {} }",
        "{ name: any.name, typed_config: { \"@type\": type.googleapis.com/envoy.extensions.\
         retry.host.previous_hosts.v3.PreviousHostsPredicate } }",
    ] {
        let text = with_policy(&format!("{{ retry_host_predicate: [{predicate}] }}"));
        assert!(policy_of(&text).previous_hosts, "{predicate}");
    }
    let policy = policy_of(&with_policy("{ retry_host_predicate: [] }"));
    assert!(!policy.previous_hosts);
}

#[test]
fn other_host_predicates_are_rejected() {
    let predicate = |entry: &str| with_policy(&format!("{{ retry_host_predicate: [{entry}] }}"));
    assert_one_error(
        &predicate("{ name: envoy.retry_host_predicates.omit_canary_hosts }"),
        &format!("{POLICY}.retry_host_predicate[0].name"),
        "\"envoy.retry_host_predicates.omit_canary_hosts\" is an Envoy retry host predicate \
         that is not supported by hale; hale supports envoy.retry_host_predicates.previous_hosts",
    );
    assert_one_error(
        &predicate("{ name: my.predicate }"),
        &format!("{POLICY}.retry_host_predicate[0].name"),
        "unknown retry host predicate \"my.predicate\"",
    );
    // The @type decides over the name, as in Envoy.
    assert_one_error(
        &predicate(
            "{ name: envoy.retry_host_predicates.previous_hosts, typed_config: { \"@type\": \
             type.googleapis.com/envoy.extensions.retry.host.omit_host_metadata.v3.\
             OmitHostMetadataConfig } }",
        ),
        &format!("{POLICY}.retry_host_predicate[0].typed_config.@type"),
        "is an Envoy retry host predicate that is not supported by hale",
    );
    // PreviousHostsPredicate has no fields.
    assert_one_error(
        &predicate(
            "{ name: envoy.retry_host_predicates.previous_hosts, typed_config: { \"@type\": \
             type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.\
             PreviousHostsPredicate, hosts: 2 } }",
        ),
        &format!("{POLICY}.retry_host_predicate[0].typed_config.hosts"),
        "unknown field \"hosts\"",
    );
    assert_one_error(
        &predicate("{ typed_config: {} }"),
        &format!("{POLICY}.retry_host_predicate[0].name"),
        "missing required field",
    );
}
