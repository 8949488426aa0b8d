//! Envoy's circuit breakers of one cluster, per routing priority (DEFAULT
//! and HIGH): limits on connections, requests waiting for a connection,
//! requests in flight and retries in flight (a fixed `max_retries`, or a
//! `retry_budget` that scales with the requests in flight), counted across
//! every worker and host of the cluster.
//!
//! Owns: the counts, the permits that release them on drop, and the
//! `circuit_breakers.<priority>.*_open` gauges.
//! Must not touch: what happens on overflow (the data path answers 503 with
//! `x-envoy-overloaded`, or does not retry; the pool waits or refuses).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::config::model::{CircuitBreakers, RetryBudget, RoutingPriority, Thresholds};
use crate::stats::{Counter, Gauge, Scope};

/// One limited resource: a count, its limit, and its `*_open` gauge.
#[derive(Debug)]
struct Resource {
    limit: u32,
    // Incremented by whichever worker takes a permit, decremented when the
    // permit drops; read by every worker deciding whether to take one.
    count: AtomicU32,
    open: Gauge,
}

impl Resource {
    fn new(limit: u32, open: Gauge) -> Self {
        open.set(0);
        Self {
            limit,
            count: AtomicU32::new(0),
            open,
        }
    }

    fn try_take(&self, limit: u32) -> bool {
        let taken = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            self.open.set(1);
        }
        taken
    }

    fn give(&self, limit: u32) {
        let before = self.count.fetch_sub(1, Ordering::AcqRel);
        if before <= limit.max(1) {
            self.open.set(0);
        }
    }

    fn count(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }
}

/// The limits of one routing priority.
#[derive(Debug)]
struct Tier {
    connections: Resource,
    pending: Resource,
    requests: Resource,
    retries: Resource,
    budget: Option<RetryBudget>,
}

impl Tier {
    fn new(limits: &Thresholds, scope: &Scope, label: &str) -> Self {
        let gauge = |n: &str| scope.gauge(&format!("circuit_breakers.{label}.{n}"));
        Self {
            connections: Resource::new(limits.max_connections, gauge("cx_open")),
            pending: Resource::new(limits.max_pending_requests, gauge("rq_pending_open")),
            requests: Resource::new(limits.max_requests, gauge("rq_open")),
            retries: Resource::new(limits.max_retries, gauge("rq_retry_open")),
            budget: limits.retry_budget,
        }
    }

    fn resource(&self, kind: Kind) -> &Resource {
        match kind {
            Kind::Connection => &self.connections,
            Kind::Pending => &self.pending,
            Kind::Request => &self.requests,
            Kind::Retry => &self.retries,
        }
    }

    /// The limit of `kind` now: fixed, except retries under a budget, which
    /// may be `budget_percent` of the requests in flight and waiting, and
    /// at least `min_retry_concurrency` (Envoy).
    fn limit(&self, kind: Kind) -> u32 {
        match (kind, self.budget) {
            (Kind::Retry, Some(budget)) => {
                let outstanding = f64::from(self.requests.count() + self.pending.count());
                let share = (outstanding * budget.budget_percent / 100.0) as u32;
                share.max(budget.min_retry_concurrency)
            }
            _ => self.resource(kind).limit,
        }
    }
}

/// The breakers of one cluster.
#[derive(Debug)]
pub struct Breakers {
    // DEFAULT, then HIGH.
    tiers: [Tier; 2],
    /// `upstream_cx_overflow`: a connection was not opened because of
    /// `max_connections`.
    pub cx_overflow: Counter,
    /// `upstream_rq_pending_overflow`: a request failed because of
    /// `max_pending_requests` or `max_requests`.
    pub rq_pending_overflow: Counter,
    /// `upstream_rq_retry_overflow`: a retry was not made because of
    /// `max_retries` or the retry budget.
    pub rq_retry_overflow: Counter,
}

/// Which kind of resource a permit holds.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Connection,
    Pending,
    Request,
    Retry,
}

/// Holds one unit of a resource until dropped.
#[derive(Debug)]
pub struct Permit {
    breakers: Arc<Breakers>,
    tier: usize,
    kind: Kind,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(tier) = self.breakers.tiers.get(self.tier) {
            tier.resource(self.kind).give(tier.limit(self.kind));
        }
    }
}

fn tier_index(priority: RoutingPriority) -> usize {
    match priority {
        RoutingPriority::Default => 0,
        RoutingPriority::High => 1,
    }
}

impl Breakers {
    /// Breakers with `limits`, gauges under `circuit_breakers.default.` and
    /// `circuit_breakers.high.`.
    pub fn new(limits: &CircuitBreakers, scope: &Scope) -> Arc<Self> {
        Arc::new(Self {
            tiers: [
                Tier::new(&limits.default, scope, "default"),
                Tier::new(&limits.high, scope, "high"),
            ],
            cx_overflow: scope.counter("upstream_cx_overflow"),
            rq_pending_overflow: scope.counter("upstream_rq_pending_overflow"),
            rq_retry_overflow: scope.counter("upstream_rq_retry_overflow"),
        })
    }

    fn take(self: &Arc<Self>, priority: RoutingPriority, kind: Kind) -> Option<Permit> {
        let index = tier_index(priority);
        let tier = self.tiers.get(index)?;
        let limit = tier.limit(kind);
        tier.resource(kind).try_take(limit).then(|| Permit {
            breakers: Arc::clone(self),
            tier: index,
            kind,
        })
    }

    /// A request in flight (`max_requests`); `None` counts an overflow.
    pub fn request(self: &Arc<Self>, priority: RoutingPriority) -> Option<Permit> {
        let permit = self.take(priority, Kind::Request);
        if permit.is_none() {
            self.rq_pending_overflow.inc();
        }
        permit
    }

    /// A request waiting for a connection (`max_pending_requests`); `None`
    /// counts an overflow.
    pub fn pending(self: &Arc<Self>, priority: RoutingPriority) -> Option<Permit> {
        let permit = self.take(priority, Kind::Pending);
        if permit.is_none() {
            self.rq_pending_overflow.inc();
        }
        permit
    }

    /// A new connection (`max_connections`); `None` counts an overflow.
    pub fn connection(self: &Arc<Self>, priority: RoutingPriority) -> Option<Permit> {
        let permit = self.take(priority, Kind::Connection);
        if permit.is_none() {
            self.cx_overflow.inc();
        }
        permit
    }

    /// A retry in flight (`max_retries`, or the retry budget); `None`
    /// counts an overflow.
    pub fn retry(self: &Arc<Self>, priority: RoutingPriority) -> Option<Permit> {
        let permit = self.take(priority, Kind::Retry);
        if permit.is_none() {
            self.rq_retry_overflow.inc();
        }
        permit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Store;

    #[test]
    fn permits_count_and_open_gauges_follow_the_limit() {
        let store = Store::new();
        let scope = Scope::tagged(store.clone(), "cluster", "c", "envoy_cluster_name");
        let b = Breakers::new(
            &CircuitBreakers {
                default: Thresholds {
                    max_connections: 1,
                    max_pending_requests: 1,
                    max_requests: 2,
                    max_retries: 3,
                    retry_budget: None,
                },
                high: Thresholds::default(),
            },
            &scope,
        );
        let one = b.request(RoutingPriority::Default).unwrap();
        let two = b.request(RoutingPriority::Default).unwrap();
        assert!(b.request(RoutingPriority::Default).is_none());
        let text = store.render_text(None, false);
        assert!(
            text.contains("cluster.c.circuit_breakers.default.rq_open: 1\n"),
            "{text}"
        );
        assert!(
            text.contains("cluster.c.upstream_rq_pending_overflow: 1\n"),
            "{text}"
        );
        drop(one);
        assert!(
            store
                .render_text(None, false)
                .contains("cluster.c.circuit_breakers.default.rq_open: 0\n")
        );
        let three = b.request(RoutingPriority::Default);
        assert!(three.is_some());
        drop((two, three));
        let cx = b.connection(RoutingPriority::Default).unwrap();
        assert!(b.connection(RoutingPriority::Default).is_none());
        drop(cx);
        assert!(b.connection(RoutingPriority::Default).is_some());
        assert!(
            store
                .render_text(None, false)
                .contains("cluster.c.upstream_cx_overflow: 1\n")
        );
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;
    use crate::stats::Store;

    fn breakers(default: Thresholds, high: Thresholds) -> (Arc<Store>, Arc<Breakers>) {
        let store = Store::new();
        let scope = Scope::tagged(store.clone(), "cluster", "c", "envoy_cluster_name");
        let b = Breakers::new(&CircuitBreakers { default, high }, &scope);
        (store, b)
    }

    #[test]
    fn max_retries_limits_retries_in_flight_per_priority() {
        let (store, b) = breakers(
            Thresholds {
                max_retries: 1,
                ..Thresholds::default()
            },
            Thresholds {
                max_retries: 2,
                ..Thresholds::default()
            },
        );
        let first = b.retry(RoutingPriority::Default);
        assert!(first.is_some());
        assert!(b.retry(RoutingPriority::Default).is_none());
        // HIGH has its own count.
        let high = (
            b.retry(RoutingPriority::High),
            b.retry(RoutingPriority::High),
        );
        assert!(high.0.is_some() && high.1.is_some());
        assert!(b.retry(RoutingPriority::High).is_none());
        let text = store.render_text(None, false);
        assert!(
            text.contains("cluster.c.upstream_rq_retry_overflow: 2\n"),
            "{text}"
        );
        assert!(
            text.contains("cluster.c.circuit_breakers.default.rq_retry_open: 1\n"),
            "{text}"
        );
        assert!(
            text.contains("cluster.c.circuit_breakers.high.rq_retry_open: 1\n"),
            "{text}"
        );
        drop(first);
        assert!(b.retry(RoutingPriority::Default).is_some());
        assert!(
            store
                .render_text(None, false)
                .contains("cluster.c.circuit_breakers.default.rq_retry_open: 0\n")
        );
    }

    #[test]
    fn a_retry_budget_scales_with_requests_in_flight() {
        let (_store, b) = breakers(
            Thresholds {
                max_retries: 0,
                retry_budget: Some(RetryBudget {
                    budget_percent: 20.0,
                    min_retry_concurrency: 1,
                }),
                ..Thresholds::default()
            },
            Thresholds::default(),
        );
        // Nothing in flight: the floor (1) applies, not max_retries (0).
        let floor = b.retry(RoutingPriority::Default);
        assert!(floor.is_some());
        assert!(b.retry(RoutingPriority::Default).is_none());
        // 10 requests in flight: 20% of them = 2 retries.
        let requests: Vec<_> = (0..10)
            .map(|_| b.request(RoutingPriority::Default))
            .collect();
        assert!(requests.iter().all(Option::is_some));
        let second = b.retry(RoutingPriority::Default);
        assert!(second.is_some());
        assert!(b.retry(RoutingPriority::Default).is_none());
    }
}
