//! A cluster's `circuit_breakers`: one thresholds entry per routing
//! priority, each with Envoy's defaults, and its optional `retry_budget`.
//!
//! Owns: decoding `circuit_breakers` into [`CircuitBreakers`], and the rule
//! that a priority has at most one thresholds entry.
//!
//! Must not touch: the rest of the cluster, and what the limits do at run
//! time (enforcement is the proxy's).

use super::super::{ROUTING_PRIORITIES, each};
use super::percent;
use crate::config::envoy::messages::{CIRCUIT_BREAKERS, RETRY_BUDGET, THRESHOLDS};
use crate::config::envoy::reader::{Node, Sink};
use crate::config::model::{CircuitBreakers, RetryBudget, RoutingPriority, Thresholds};

/// Decodes `circuit_breakers`; an absent entry keeps Envoy's defaults.
pub(super) fn decode(node: &Node<'_>, sink: &mut Sink) -> Option<CircuitBreakers> {
    let breakers = node.open(sink, &CIRCUIT_BREAKERS)?;
    let mut seen = Vec::new();
    let thresholds = breakers.optional(sink, "thresholds", vec![], |list, sink| {
        each(sink, list, |sink, item| {
            let (priority, thresholds) = threshold_entry(sink, item)?;
            if seen.contains(&priority) {
                item.report(sink, "a second thresholds entry for the same priority");
                return None;
            }
            seen.push(priority);
            Some((priority, thresholds))
        })
    })?;
    let mut decoded = CircuitBreakers::default();
    for (priority, thresholds) in thresholds {
        match priority {
            RoutingPriority::Default => decoded.default = thresholds,
            RoutingPriority::High => decoded.high = thresholds,
        }
    }
    Some(decoded)
}

fn threshold_entry(sink: &mut Sink, node: &Node<'_>) -> Option<(RoutingPriority, Thresholds)> {
    let entry = node.open(sink, &THRESHOLDS)?;
    let defaults = Thresholds::default();
    let priority = entry.optional(sink, "priority", RoutingPriority::Default, |node, sink| {
        node.enumeration(sink, ROUTING_PRIORITIES)
    });
    let mut limit = |name: &str, default: u32| {
        entry.optional(sink, name, default, |node, sink| node.u32_wrapper(sink))
    };
    let max_connections = limit("max_connections", defaults.max_connections);
    let max_pending_requests = limit("max_pending_requests", defaults.max_pending_requests);
    let max_requests = limit("max_requests", defaults.max_requests);
    let max_retries = limit("max_retries", defaults.max_retries);
    // Present (even `{}`) replaces max_retries with the budget.
    let retry_budget = entry.optional(sink, "retry_budget", None, |node, sink| {
        retry_budget(sink, node).map(Some)
    });
    Some((
        priority?,
        Thresholds {
            max_connections: max_connections?,
            max_pending_requests: max_pending_requests?,
            max_requests: max_requests?,
            max_retries: max_retries?,
            retry_budget: retry_budget?,
        },
    ))
}

/// `retry_budget`; each unset field takes Envoy's default (20%, 3).
fn retry_budget(sink: &mut Sink, node: &Node<'_>) -> Option<RetryBudget> {
    let budget = node.open(sink, &RETRY_BUDGET)?;
    let defaults = RetryBudget::default();
    // As in Envoy, `budget_percent: {}` is a set Percent of 0, not the default.
    let budget_percent = budget.optional(sink, "budget_percent", defaults.budget_percent, percent);
    let min_retry_concurrency = budget.optional(
        sink,
        "min_retry_concurrency",
        defaults.min_retry_concurrency,
        |node, sink| node.u32_wrapper(sink),
    );
    Some(RetryBudget {
        budget_percent: budget_percent?,
        min_retry_concurrency: min_retry_concurrency?,
    })
}
