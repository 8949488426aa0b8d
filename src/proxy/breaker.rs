//! Envoy's circuit breakers of one cluster (routing priority DEFAULT):
//! limits on connections, requests waiting for a connection, and requests
//! in flight, counted across every worker and host of the cluster.
//!
//! Owns: the counts, the permits that release them on drop, and the
//! `circuit_breakers.default.*_open` gauges.
//! Must not touch: what happens on overflow (the data path answers 503 with
//! `x-envoy-overloaded`; the pool waits or refuses).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::config::model::Thresholds;
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

    fn try_take(&self) -> bool {
        let taken = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            self.open.set(1);
        }
        taken
    }

    fn give(&self) {
        let before = self.count.fetch_sub(1, Ordering::AcqRel);
        if before == self.limit {
            self.open.set(0);
        }
    }
}

/// The breakers of one cluster.
#[derive(Debug)]
pub struct Breakers {
    connections: Resource,
    pending: Resource,
    requests: Resource,
    /// `upstream_cx_overflow`: a connection was not opened because of
    /// `max_connections`.
    pub cx_overflow: Counter,
    /// `upstream_rq_pending_overflow`: a request failed because of
    /// `max_pending_requests` or `max_requests`.
    pub rq_pending_overflow: Counter,
}

/// Which kind of resource a permit holds.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Connection,
    Pending,
    Request,
}

/// Holds one unit of a resource until dropped.
#[derive(Debug)]
pub struct Permit {
    breakers: Arc<Breakers>,
    kind: Kind,
}

impl Drop for Permit {
    fn drop(&mut self) {
        match self.kind {
            Kind::Connection => self.breakers.connections.give(),
            Kind::Pending => self.breakers.pending.give(),
            Kind::Request => self.breakers.requests.give(),
        }
    }
}

impl Breakers {
    /// Breakers with `limits`, gauges under `circuit_breakers.default.`.
    pub fn new(limits: Thresholds, scope: &Scope) -> Arc<Self> {
        let gauge = |n: &str| scope.gauge(&format!("circuit_breakers.default.{n}"));
        // Retries come with the retry policy; the gauge exists for dashboards.
        gauge("rq_retry_open").set(0);
        Arc::new(Self {
            connections: Resource::new(limits.max_connections, gauge("cx_open")),
            pending: Resource::new(limits.max_pending_requests, gauge("rq_pending_open")),
            requests: Resource::new(limits.max_requests, gauge("rq_open")),
            cx_overflow: scope.counter("upstream_cx_overflow"),
            rq_pending_overflow: scope.counter("upstream_rq_pending_overflow"),
        })
    }

    fn take(self: &Arc<Self>, kind: Kind) -> Option<Permit> {
        let resource = match kind {
            Kind::Connection => &self.connections,
            Kind::Pending => &self.pending,
            Kind::Request => &self.requests,
        };
        resource.try_take().then(|| Permit {
            breakers: Arc::clone(self),
            kind,
        })
    }

    /// A request in flight (`max_requests`); `None` counts an overflow.
    pub fn request(self: &Arc<Self>) -> Option<Permit> {
        let permit = self.take(Kind::Request);
        if permit.is_none() {
            self.rq_pending_overflow.inc();
        }
        permit
    }

    /// A request waiting for a connection (`max_pending_requests`); `None`
    /// counts an overflow.
    pub fn pending(self: &Arc<Self>) -> Option<Permit> {
        let permit = self.take(Kind::Pending);
        if permit.is_none() {
            self.rq_pending_overflow.inc();
        }
        permit
    }

    /// A new connection (`max_connections`); `None` counts an overflow.
    pub fn connection(self: &Arc<Self>) -> Option<Permit> {
        let permit = self.take(Kind::Connection);
        if permit.is_none() {
            self.cx_overflow.inc();
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
            Thresholds {
                max_connections: 1,
                max_pending_requests: 1,
                max_requests: 2,
                max_retries: 3,
                retry_budget: None,
            },
            &scope,
        );
        let one = b.request().unwrap();
        let two = b.request().unwrap();
        assert!(b.request().is_none());
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
        let three = b.request();
        assert!(three.is_some());
        drop((two, three));
        let cx = b.connection().unwrap();
        assert!(b.connection().is_none());
        drop(cx);
        assert!(b.connection().is_some());
        assert!(
            store
                .render_text(None, false)
                .contains("cluster.c.upstream_cx_overflow: 1\n")
        );
    }
}
