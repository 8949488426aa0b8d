//! A `retry_policy`, of a route or of a virtual host.
//!
//! Owns: decoding an Envoy `RetryPolicy` into [`RetryPolicy`] with Envoy's
//! defaults: the `retry_on` conditions (where hale rejects the unknown
//! values Envoy ignores), `num_retries`, `per_try_timeout`, the back-off
//! intervals and their rounding, retriable status codes and headers, the
//! `previous_hosts` host predicate and `host_selection_retry_max_attempts`;
//! and how much of a request body is kept for retries, once `route` has
//! found the limits that apply.
//!
//! Must not touch: which policy a route uses (its own, else its virtual
//! host's, decided in `route`), and what the policy does at run time.

use std::time::Duration;

use super::super::{each, zero_disables};
use super::header_matcher;
use crate::config::envoy::messages::{
    PREVIOUS_HOSTS_PREDICATE, RETRY_BACK_OFF, RETRY_HOST_PREDICATE, RETRY_POLICY,
};
use crate::config::envoy::reader::{Node, Sink};
use crate::config::model::{RetryOn, RetryPolicy};

const PREVIOUS_HOSTS_NAME: &str = "envoy.retry_host_predicates.previous_hosts";
const PREVIOUS_HOSTS_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";

/// Envoy: without `retry_back_off`, the base interval is 25 ms
/// (`upstream.base_retry_backoff_ms`).
const DEFAULT_BACK_OFF_BASE: Duration = Duration::from_millis(25);

/// Envoy: the maximum interval defaults to 10 times the base interval.
const DEFAULT_BACK_OFF_FACTOR: u32 = 10;

/// Every `retry_on` value Envoy knows (`parseRetryOn` and `parseRetryGrpcOn`),
/// in the order Envoy documents them; `None`: not supported by hale.
const RETRY_ON: &[(&str, Option<RetryOn>)] = &[
    ("5xx", Some(RetryOn::FIVE_XX)),
    ("gateway-error", Some(RetryOn::GATEWAY_ERROR)),
    ("reset", Some(RetryOn::RESET)),
    ("reset-before-request", None),
    ("connect-failure", Some(RetryOn::CONNECT_FAILURE)),
    ("envoy-ratelimited", Some(RetryOn::ENVOY_RATELIMITED)),
    ("retriable-4xx", Some(RetryOn::RETRIABLE_4XX)),
    ("refused-stream", Some(RetryOn::REFUSED_STREAM)),
    (
        "retriable-status-codes",
        Some(RetryOn::RETRIABLE_STATUS_CODES),
    ),
    ("retriable-headers", Some(RetryOn::RETRIABLE_HEADERS)),
    (
        "http3-post-connect-failure",
        Some(RetryOn::HTTP3_POST_CONNECT_FAILURE),
    ),
    ("cancelled", Some(RetryOn::GRPC_CANCELLED)),
    ("deadline-exceeded", Some(RetryOn::GRPC_DEADLINE_EXCEEDED)),
    ("internal", Some(RetryOn::GRPC_INTERNAL)),
    ("resource-exhausted", Some(RetryOn::GRPC_RESOURCE_EXHAUSTED)),
    ("unavailable", Some(RetryOn::GRPC_UNAVAILABLE)),
];

/// Decodes a `retry_policy`; `{}` is a policy that retries nothing.
pub(super) fn policy(sink: &mut Sink, node: &Node<'_>) -> Option<RetryPolicy> {
    let policy = node.open(sink, &RETRY_POLICY)?;
    let retry_on = policy.optional(sink, "retry_on", RetryOn::default(), retry_on);
    let num_retries = policy.optional(sink, "num_retries", 1, |node, sink| node.u32_wrapper(sink));
    let per_try_timeout = policy.optional(sink, "per_try_timeout", None, |node, sink| {
        node.duration(sink).map(zero_disables)
    });
    let back_off = policy.optional(
        sink,
        "retry_back_off",
        (
            DEFAULT_BACK_OFF_BASE,
            DEFAULT_BACK_OFF_BASE.saturating_mul(DEFAULT_BACK_OFF_FACTOR),
        ),
        back_off,
    );
    let retriable_status_codes =
        policy.optional(sink, "retriable_status_codes", vec![], |list, sink| {
            each(sink, list, status_code)
        });
    let retriable_headers = policy.optional(sink, "retriable_headers", vec![], |list, sink| {
        each(sink, list, header_matcher)
    });
    let retriable_request_headers =
        policy.optional(sink, "retriable_request_headers", vec![], |list, sink| {
            each(sink, list, header_matcher)
        });
    let previous_hosts = policy.optional(sink, "retry_host_predicate", false, |list, sink| {
        let predicates = each(sink, list, host_predicate)?;
        Some(!predicates.is_empty())
    });
    let host_selection_retry_max_attempts = policy.optional(
        sink,
        "host_selection_retry_max_attempts",
        1,
        host_selection_attempts,
    );
    let (back_off_base, back_off_max) = back_off?;
    Some(RetryPolicy {
        retry_on: retry_on?,
        num_retries: num_retries?,
        per_try_timeout: per_try_timeout?,
        back_off_base,
        back_off_max,
        retriable_status_codes: retriable_status_codes?,
        retriable_headers: retriable_headers?,
        retriable_request_headers: retriable_request_headers?,
        previous_hosts: previous_hosts?,
        host_selection_retry_max_attempts: host_selection_retry_max_attempts?,
    })
}

/// How much of a request body Envoy's router buffers for retries: the
/// route's (else the virtual host's) `per_request_buffer_limit_bytes`, but
/// never more than the listener's `per_connection_buffer_limit_bytes`, where
/// 0 means no limit (Envoy's router takes the smaller of the two).
pub(super) fn buffer_limit(per_request: Option<u32>, per_connection: u32) -> u32 {
    let per_connection = match per_connection {
        0 => u32::MAX,
        limit => limit,
    };
    per_request.map_or(per_connection, |limit| limit.min(per_connection))
}

/// `retry_on`: comma-separated, each item trimmed, empty items skipped (as
/// Envoy splits it). Envoy ignores a value it does not know; hale rejects
/// it, since a typo there would silently turn retries off.
fn retry_on(node: &Node<'_>, sink: &mut Sink) -> Option<RetryOn> {
    let text = node.string(sink)?;
    let mut conditions = RetryOn::default();
    let mut valid = true;
    let items = text
        .split(',')
        .map(|item| item.trim_matches(|c: char| c.is_ascii_whitespace()))
        .filter(|item| !item.is_empty());
    for item in items {
        match RETRY_ON.iter().find(|(name, _)| *name == item) {
            Some((_, Some(condition))) => conditions = conditions.with(*condition),
            Some((name, None)) => {
                node.report(
                    sink,
                    format!("\"{name}\" is an Envoy retry_on value that is not supported by hale"),
                );
                valid = false;
            }
            None => {
                let known: Vec<&str> = RETRY_ON
                    .iter()
                    .filter(|(_, condition)| condition.is_some())
                    .map(|(name, _)| *name)
                    .collect();
                node.report(
                    sink,
                    format!(
                        "unknown retry_on value \"{item}\"; expected a comma-separated list of \
                         {} (Envoy ignores an unknown value; hale rejects it so that a typo \
                         cannot silently turn retries off)",
                        known.join(", ")
                    ),
                );
                valid = false;
            }
        }
    }
    valid.then_some(conditions)
}

/// `retry_back_off`: the base and maximum intervals.
fn back_off(node: &Node<'_>, sink: &mut Sink) -> Option<(Duration, Duration)> {
    let back_off = node.open(sink, &RETRY_BACK_OFF)?;
    let base = back_off
        .require(sink, "base_interval")
        .and_then(|node| interval(sink, &node, "base_interval"));
    let max = back_off.optional(sink, "max_interval", None, |node, sink| {
        Some(Some((interval(sink, node, "max_interval")?, node.clone())))
    });
    let base = base?;
    match max? {
        None => Some((base, base.saturating_mul(DEFAULT_BACK_OFF_FACTOR))),
        Some((max, at)) if max < base => {
            // Envoy's own words, at route config creation.
            at.report(
                sink,
                "max_interval must be greater than or equal to the base_interval",
            );
            None
        }
        Some((max, _)) => Some((base, max)),
    }
}

/// A back-off interval: more than 0s, then in whole milliseconds (rounded
/// down, at least 1 ms), as Envoy reads it.
fn interval(sink: &mut Sink, node: &Node<'_>, name: &str) -> Option<Duration> {
    let interval = node.duration(sink)?;
    if interval.is_zero() {
        node.report(sink, format!("{name} must be more than 0s"));
        return None;
    }
    let millis = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    Some(Duration::from_millis(millis.max(1)))
}

/// One `retriable_status_codes[]` entry. Envoy takes any `uint32`; hale
/// rejects what cannot be an HTTP status, as it would never match.
fn status_code(sink: &mut Sink, node: &Node<'_>) -> Option<u16> {
    let code = node.u32(sink)?;
    match u16::try_from(code) {
        Ok(code) if (100..=599).contains(&code) => Some(code),
        _ => {
            node.report(
                sink,
                format!("status {code} is out of range: an HTTP status is 100 to 599"),
            );
            None
        }
    }
}

/// `host_selection_retry_max_attempts`, an `int64`.
fn host_selection_attempts(node: &Node<'_>, sink: &mut Sink) -> Option<u32> {
    let attempts = node.i64(sink)?;
    if attempts < 0 {
        node.report(
            sink,
            format!("host_selection_retry_max_attempts must not be negative; found {attempts}"),
        );
        return None;
    }
    match u32::try_from(attempts) {
        // proto3: 0 is the unset value, and Envoy then makes one attempt.
        Ok(0) => Some(1),
        Ok(attempts) => Some(attempts),
        Err(_) => {
            node.report(
                sink,
                format!("{attempts} is out of range: at most {}", u32::MAX),
            );
            None
        }
    }
}

/// One `retry_host_predicate[]` entry. As Envoy does, the `@type` of its
/// `typed_config` picks the predicate when there is one, else its name;
/// hale has only `previous_hosts`.
fn host_predicate(sink: &mut Sink, node: &Node<'_>) -> Option<()> {
    let entry = node.open(sink, &RETRY_HOST_PREDICATE)?;
    let name = entry
        .require(sink, "name")
        .and_then(|node| Some((node.non_empty_string(sink)?, node)));
    let typed_config = entry.get("typed_config");
    let typed = typed_config
        .as_ref()
        .and_then(|node| Some((node.type_url()?, node.type_url_place())));
    match (&typed, &name) {
        (Some((PREVIOUS_HOSTS_TYPE_URL, _)), _) => {}
        (Some((other, at)), _) => {
            sink.report(at, unsupported_predicate(other));
            return None;
        }
        (None, Some((name, at))) if *name != PREVIOUS_HOSTS_NAME => {
            at.report(sink, unsupported_predicate(name));
            return None;
        }
        // previous_hosts by name (or no usable name, already reported).
        (None, _) => {}
    }
    // PreviousHostsPredicate has no fields: `typed_config` may be absent,
    // `{}`, or its `@type` alone.
    let config = match &typed_config {
        None => Some(()),
        Some(config) if typed.is_some() => config
            .open_any(sink, PREVIOUS_HOSTS_TYPE_URL, &PREVIOUS_HOSTS_PREDICATE)
            .map(drop),
        Some(config) => config.open(sink, &PREVIOUS_HOSTS_PREDICATE).map(drop),
    };
    name?;
    config
}

/// The error for a host predicate other than `previous_hosts`, named by its
/// `name` or its `@type`.
fn unsupported_predicate(what: &str) -> String {
    let envoy = what.starts_with("envoy.retry_host_predicates.")
        || what.starts_with("type.googleapis.com/envoy.extensions.retry.host.");
    if envoy {
        format!(
            "\"{what}\" is an Envoy retry host predicate that is not supported by hale; \
             hale supports {PREVIOUS_HOSTS_NAME}"
        )
    } else {
        format!("unknown retry host predicate \"{what}\"; hale supports {PREVIOUS_HOSTS_NAME}")
    }
}
