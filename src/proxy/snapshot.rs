//! The runtime world built from a validated config: one router per listener
//! with routes resolved to cluster handles, and the clusters themselves.
//! Published as ONE `ArcSwap<World>`; a request loads it once.
//!
//! Owns: model → runtime translation and the per-listener HTTP stats.
//! Must not touch: sockets (listeners bind elsewhere) and health decisions.

use super::cluster::Panic;
use super::degraded_filter::{
    self, DegradedRuntime, DegradedStats, ListenerDegraded, RouteDegraded, Watched, watch_route,
};
use super::health_filter::HealthFilter;
use crate::config::model::DegradedPerRoute;
use crate::degraded::state::Overrides;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::config::model::{self, Bootstrap, ForwardAction, RouteAction, RouteMatch};
use crate::stats::{Counter, Gauge, Scope, StatusCounters, Store};

use super::cluster::{Carried, Cluster, HealthRuntime};
use super::listener::{HttpBuilder, ListenerGate, http_builder};
use super::router::Router;
use crate::health::scheduler::Warmup;

/// The shared handle every listener and the admin read.
pub type Snapshot = Arc<ArcSwap<World>>;

/// What a route resolves to at runtime.
#[derive(Debug)]
pub enum RouteTarget {
    /// Forward to a cluster.
    Forward(Arc<ForwardRoute>),
    /// Answer with a fixed response.
    Direct(model::DirectResponse),
}

/// A forwarding route with its cluster resolved.
#[derive(Debug)]
pub struct ForwardRoute {
    /// The cluster (same handle the world lists).
    pub cluster: Arc<Cluster>,
    /// The route's action settings.
    pub action: ForwardAction,
    /// The route's match (for `prefix_rewrite`).
    pub matcher: RouteMatch,
    /// The degraded-mode filter as it applies to this route.
    pub degraded: RouteDegraded,
    /// `x-envoy-expected-rq-timeout-ms`, rendered once.
    pub expected_timeout_header: Option<http::HeaderValue>,
}

impl ForwardRoute {
    /// Whether this route's picks may use panic routing: not under the
    /// degraded filter, which never sends to hosts known to be dead.
    pub fn panic(&self) -> Panic {
        match self.degraded {
            RouteDegraded::On { .. } => Panic::Refused,
            RouteDegraded::Off => Panic::Allowed,
        }
    }
}

/// `http.<stat_prefix>.*` stats of one connection manager.
#[derive(Debug)]
pub struct HttpStats {
    /// `downstream_cx_total`.
    pub downstream_cx_total: Counter,
    /// `downstream_cx_active`.
    pub downstream_cx_active: Gauge,
    /// `downstream_cx_destroy`.
    pub downstream_cx_destroy: Counter,
    /// `downstream_cx_drain_close`: responses that closed their connection
    /// because hale was draining (`/healthcheck/fail`).
    pub downstream_cx_drain_close: Counter,
    /// `downstream_rq_total`.
    pub downstream_rq_total: Counter,
    /// `downstream_rq_active`.
    pub downstream_rq_active: Gauge,
    /// `downstream_rq_http1_total`.
    pub downstream_rq_http1_total: Counter,
    /// `downstream_rq_http2_total`.
    pub downstream_rq_http2_total: Counter,
    /// `downstream_rq_<code>` and `downstream_rq_<N>xx`.
    pub downstream_rq: StatusCounters,
    /// `no_route`.
    pub no_route: Counter,
    /// `rq_direct_response`.
    pub rq_direct_response: Counter,
    /// `downstream_cx_idle_timeout`: connections closed for idleness.
    pub downstream_cx_idle_timeout: Counter,
    /// `downstream_rq_timeout`: requests that hit `request_timeout`.
    pub downstream_rq_timeout: Counter,
    /// `downstream_rq_idle_timeout`: streams that hit `stream_idle_timeout`.
    pub downstream_rq_idle_timeout: Counter,
    /// `downstream_rq_stalled` (hale): connections closed because a
    /// response passed its deadline while the client was not reading.
    pub downstream_rq_stalled: Counter,
}

impl HttpStats {
    /// Registers the stats under `http.<stat_prefix>.`.
    pub fn new(store: &Arc<Store>, stat_prefix: &str) -> Self {
        let scope = Scope::tagged(
            store.clone(),
            "http",
            stat_prefix,
            "envoy_http_conn_manager_prefix",
        );
        Self {
            downstream_cx_total: scope.counter("downstream_cx_total"),
            downstream_cx_active: scope.gauge("downstream_cx_active"),
            downstream_cx_destroy: scope.counter("downstream_cx_destroy"),
            downstream_cx_drain_close: scope.counter("downstream_cx_drain_close"),
            downstream_rq_total: scope.counter("downstream_rq_total"),
            downstream_rq_active: scope.gauge("downstream_rq_active"),
            downstream_rq_http1_total: scope.counter("downstream_rq_http1_total"),
            downstream_rq_http2_total: scope.counter("downstream_rq_http2_total"),
            downstream_rq: StatusCounters::new(&scope, "downstream_rq"),
            no_route: scope.counter("no_route"),
            rq_direct_response: scope.counter("rq_direct_response"),
            downstream_cx_idle_timeout: scope.counter("downstream_cx_idle_timeout"),
            downstream_rq_timeout: scope.counter("downstream_rq_timeout"),
            downstream_rq_idle_timeout: scope.counter("downstream_rq_idle_timeout"),
            downstream_rq_stalled: scope.counter("downstream_rq_stalled"),
        }
    }
}

/// One listener's routing state.
#[derive(Debug)]
pub struct ListenerWorld {
    /// Stable for the listener's life, across reloads (connections find
    /// their listener in each new world by it).
    pub id: u64,
    /// The address it is bound to (the config's, with port 0 resolved).
    pub address: SocketAddr,
    /// The listener's validated config.
    pub config: model::Listener,
    /// Its route table.
    pub router: Router<RouteTarget>,
    /// Its connection manager's stats.
    pub stats: Arc<HttpStats>,
    /// Its `envoy.filters.http.health_check` filters, in chain order.
    pub health_filters: Vec<Arc<HealthFilter>>,
    /// The admin's drain state of it (kept across reloads).
    pub gate: Arc<ListenerGate>,
    /// How its new connections are served (codec, header limits).
    pub http: Arc<HttpBuilder>,
    /// Its degraded filter's shared state, when it has the filter.
    degraded: Option<Arc<ListenerDegraded>>,
    /// Its degraded filter's runtimes (each with a cache).
    degraded_runtimes: Vec<Arc<DegradedRuntime>>,
}

/// Everything a request needs, swapped whole.
#[derive(Debug)]
pub struct World {
    /// The config this world was built from.
    pub bootstrap: Arc<Bootstrap>,
    /// Clusters in file order.
    pub clusters: Vec<Arc<Cluster>>,
    /// Cluster name → index in `clusters`.
    cluster_index: HashMap<String, usize>,
    /// Listeners in file order.
    pub listeners: Vec<Arc<ListenerWorld>>,
    /// Operators' degraded-mode settings per cluster (`POST /degraded`).
    pub degraded_modes: Arc<Overrides>,
    /// Stops this world's own tasks (the degraded-mode watch) when a
    /// reload replaces it.
    tasks: CancellationToken,
}

/// What building a world needs besides its config.
#[derive(Debug)]
pub struct Build<'a> {
    /// Where stats are registered.
    pub store: &'a Arc<Store>,
    /// Data-path workers (a pool per host for each).
    pub workers: usize,
    /// Where health checks start, and what they report to.
    pub health: &'a HealthRuntime,
    /// Each listener's bound address, by name.
    pub bound: &'a HashMap<String, SocketAddr>,
    /// The world a reload replaces: its clusters named in `unchanged` are
    /// reused whole (pools, checks, outlier state), and its listeners'
    /// ids, drain gates and degraded-mode caches carry over.
    pub previous: Option<&'a World>,
    /// Clusters of `previous` to reuse as they are.
    pub unchanged: &'a [String],
    /// Clusters built (and warmed) already, by name: a reload's new ones.
    pub ready: HashMap<String, Arc<Cluster>>,
    /// What replaced clusters knew of their hosts, by cluster name.
    pub carried: HashMap<String, Carried>,
    /// What the degraded-mode watch waits for before its first look: the
    /// first round of checks at startup; on a reload, the first checks of
    /// the changed clusters' new hosts (which start failed, and are not
    /// known to be down yet either).
    pub watch_after: Arc<Warmup>,
}

impl Build<'_> {
    /// A first build: nothing to carry over.
    pub fn fresh<'a>(
        store: &'a Arc<Store>,
        workers: usize,
        health: &'a HealthRuntime,
        bound: &'a HashMap<String, SocketAddr>,
    ) -> Build<'a> {
        Build {
            store,
            workers,
            health,
            bound,
            previous: None,
            unchanged: &[],
            ready: HashMap::new(),
            carried: HashMap::new(),
            watch_after: Arc::clone(&health.warmup),
        }
    }
}

/// Listener ids are never reused within a process.
static NEXT_LISTENER_ID: AtomicU64 = AtomicU64::new(1);

impl World {
    /// A world with nothing in it yet (before the first build).
    pub fn empty(bootstrap: Arc<Bootstrap>) -> Self {
        Self {
            bootstrap,
            clusters: Vec::new(),
            cluster_index: HashMap::new(),
            listeners: Vec::new(),
            degraded_modes: Arc::new(Overrides::new([])),
            tasks: CancellationToken::new(),
        }
    }

    /// Builds the world for `bootstrap`, registering stats and starting
    /// health checks (of new and changed clusters) on the current runtime.
    pub async fn build(bootstrap: Arc<Bootstrap>, mut build: Build<'_>) -> Self {
        let Build {
            store,
            workers,
            health,
            ..
        } = build;
        let previous = build.previous;
        let unchanged: std::collections::HashSet<&str> =
            build.unchanged.iter().map(String::as_str).collect();
        let before: HashMap<&str, &Arc<Cluster>> = previous
            .map(|p| p.clusters.iter().map(|c| (c.name(), c)).collect())
            .unwrap_or_default();
        let mut clusters = Vec::with_capacity(bootstrap.clusters.len());
        for c in &bootstrap.clusters {
            let reused = build.ready.remove(&c.name).or_else(|| {
                unchanged
                    .contains(c.name.as_str())
                    .then(|| before.get(c.name.as_str()).map(|c| Arc::clone(c)))
                    .flatten()
            });
            let cluster = match reused {
                Some(cluster) => cluster,
                None => {
                    let carried = build.carried.remove(&c.name);
                    Arc::new(Cluster::build(c, store, workers, health, carried).await)
                }
            };
            clusters.push(cluster);
        }
        let tasks = health.stop.child_token();
        let by_name: HashMap<&str, &Arc<Cluster>> =
            clusters.iter().map(|c| (c.name(), c)).collect();
        let mut watched: Watched = Vec::new();
        let mut warned_blind: Vec<&str> = Vec::new();
        // Caches of the world before, each taken by one configuration at most.
        let mut claimed: Vec<*const DegradedRuntime> = Vec::new();
        let listeners = bootstrap
            .listeners
            .iter()
            .map(|l| {
                let before =
                    previous.and_then(|p| p.listeners.iter().find(|b| b.config.name == l.name));
                let rc = &l.http.route_config;
                let scope = Scope::tagged(
                    store.clone(),
                    "http",
                    &l.http.stat_prefix,
                    "envoy_http_conn_manager_prefix",
                );
                // The listener's degraded filter; the routes' own
                // configurations share its stats, and equal ones share one
                // runtime (one cache).
                let degraded = l.http.http_filters.iter().find_map(|f| match f {
                    model::HttpFilter::Degraded(c) => Some(c),
                    _ => None,
                });
                let shared = degraded.map(|_| {
                    let kept = before
                        .filter(|b| b.config.http.stat_prefix == l.http.stat_prefix)
                        .and_then(|b| b.degraded.as_ref());
                    match kept {
                        Some(d) => Arc::clone(d),
                        None => Arc::new(ListenerDegraded::new(DegradedStats::new(&scope))),
                    }
                });
                let mut runtimes: Vec<Arc<DegradedRuntime>> = Vec::new();
                let mut runtime_for = |config: &model::DegradedFilter,
                                       shared: &Arc<ListenerDegraded>|
                 -> Arc<DegradedRuntime> {
                    if let Some(r) = runtimes.iter().find(|r| r.runs(config)) {
                        return Arc::clone(r);
                    }
                    // A reload keeps a cache of the same size limits (and
                    // the same stat_prefix, whose gauges count it).
                    let kept = before
                        .filter(|b| b.config.http.stat_prefix == l.http.stat_prefix)
                        .and_then(|b| {
                            b.degraded_runtimes.iter().find(|r| {
                                r.cache_limits() == config.cache
                                    && !claimed.contains(&Arc::as_ptr(r))
                            })
                        });
                    if let Some(k) = kept {
                        claimed.push(Arc::as_ptr(k));
                    }
                    let r = Arc::new(DegradedRuntime::new(
                        config.clone(),
                        Arc::clone(shared),
                        &clusters,
                        kept.map(Arc::as_ref),
                    ));
                    runtimes.push(Arc::clone(&r));
                    r
                };
                let mut route_degraded = |route: &model::Route, cluster: &str| -> RouteDegraded {
                    let (Some(shared), Some(listener_config)) = (&shared, degraded) else {
                        // Validation rejects a route override without the
                        // listener's filter.
                        return RouteDegraded::Off;
                    };
                    let config = match &route.degraded {
                        Some(DegradedPerRoute::Disabled) => return RouteDegraded::Off,
                        Some(DegradedPerRoute::Config(c)) => c,
                        None => listener_config,
                    };
                    match clusters.iter().position(|c| c.name() == cluster) {
                        Some(cluster_slot) => {
                            if let Some(c) = bootstrap.cluster(cluster)
                                && c.health_checks.is_empty()
                                && c.outlier_detection.is_none()
                                && !warned_blind.contains(&c.name.as_str())
                            {
                                warned_blind.push(c.name.as_str());
                                tracing::warn!(
                                    listener = %l.name,
                                    cluster,
                                    "degraded mode covers a cluster with neither health_checks nor \
                                     outlier_detection: hale cannot see it fail, so only a \
                                     dependency or an operator can degrade its routes"
                                );
                            }
                            let runtime = runtime_for(config, shared);
                            if let Some(c) = clusters.get(cluster_slot) {
                                watch_route(&mut watched, &runtime, c, cluster_slot);
                            }
                            RouteDegraded::On {
                                runtime,
                                cluster_slot,
                            }
                        }
                        None => RouteDegraded::Off,
                    }
                };
                let router = Router::new(rc, |vi, ri| {
                    let route = &rc.virtual_hosts[vi].routes[ri];
                    match &route.action {
                        RouteAction::DirectResponse(d) => RouteTarget::Direct(d.clone()),
                        RouteAction::Forward(f) => match by_name.get(f.cluster.as_str()) {
                            Some(cluster) => RouteTarget::Forward(Arc::new(ForwardRoute {
                                cluster: Arc::clone(cluster),
                                action: f.clone(),
                                matcher: route.matcher.clone(),
                                degraded: route_degraded(route, &f.cluster),
                                expected_timeout_header: expected_timeout(f)
                                    .map(|t| http::HeaderValue::from(t.as_millis() as u64)),
                            })),
                            // Validation rejects routes to undefined clusters.
                            // Should one slip through, a 503 says something is
                            // wrong upstream, where a 404 would hide it.
                            None => RouteTarget::Direct(model::DirectResponse {
                                status: 503,
                                body: Some(bytes::Bytes::from_static(b"no healthy upstream")),
                            }),
                        },
                    }
                });
                // What this listener saw degraded before a reload stays
                // seen only for clusters its filters still watch.
                if let Some(d) = &shared {
                    let mine: Vec<&str> = watched
                        .iter()
                        .filter(|(r, _, _)| runtimes.iter().any(|m| Arc::ptr_eq(m, r)))
                        .map(|(_, c, _)| c.name())
                        .collect();
                    d.keep_only(&mine);
                }
                let health_filters = l
                    .http
                    .http_filters
                    .iter()
                    .filter_map(|f| match f {
                        model::HttpFilter::HealthCheck(c) => Some(Arc::new(HealthFilter::new(
                            c.clone(),
                            &bootstrap.node.cluster,
                        ))),
                        model::HttpFilter::Router | model::HttpFilter::Degraded(_) => None,
                    })
                    .collect();
                let (id, gate) = match before {
                    Some(b) => (b.id, Arc::clone(&b.gate)),
                    None => (
                        NEXT_LISTENER_ID.fetch_add(1, Ordering::Relaxed),
                        Arc::new(ListenerGate::new(&l.name)),
                    ),
                };
                Arc::new(ListenerWorld {
                    id,
                    address: build
                        .bound
                        .get(&l.name)
                        .copied()
                        .or_else(|| before.map(|b| b.address))
                        .unwrap_or(l.address),
                    config: l.clone(),
                    router,
                    stats: Arc::new(HttpStats::new(store, &l.http.stat_prefix)),
                    health_filters,
                    gate,
                    http: Arc::new(http_builder(&l.http)),
                    degraded: shared,
                    degraded_runtimes: runtimes,
                })
            })
            .collect();
        let degraded_modes = Arc::new(Overrides::new(clusters.iter().map(|c| c.name())));
        if let Some(p) = previous {
            degraded_modes.carry(&p.degraded_modes);
        }
        if !watched.is_empty() {
            tokio::spawn(degraded_filter::watch(
                watched,
                Arc::clone(&degraded_modes),
                Arc::clone(&build.watch_after),
                health.changes.clone(),
                tasks.clone(),
            ));
        }
        let cluster_index = clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name().to_string(), i))
            .collect();
        Self {
            bootstrap,
            clusters,
            cluster_index,
            listeners,
            degraded_modes,
            tasks,
        }
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.cluster_index
            .get(name)
            .and_then(|&i| self.clusters.get(i))
    }

    /// The listener whose id is `id` (gone once a reload removed it).
    #[inline]
    pub fn listener(&self, id: u64) -> Option<&Arc<ListenerWorld>> {
        self.listeners.iter().find(|l| l.id == id)
    }

    /// The listener called `name`.
    pub fn listener_named(&self, name: &str) -> Option<&Arc<ListenerWorld>> {
        self.listeners.iter().find(|l| l.config.name == name)
    }

    /// Stops this world's own tasks: a reload replaced it with
    /// `successor` (already serving). Its requests in flight finish on it;
    /// caches the successor did not keep are dropped from the gauges.
    pub fn retire(&self, successor: &World) {
        self.tasks.cancel();
        let kept: Vec<&Arc<DegradedRuntime>> = successor
            .listeners
            .iter()
            .flat_map(|l| &l.degraded_runtimes)
            .collect();
        for r in self.listeners.iter().flat_map(|l| &l.degraded_runtimes) {
            if !kept.iter().any(|k| k.shares_cache_with(r)) {
                r.release();
            }
        }
    }
}

/// What `x-envoy-expected-rq-timeout-ms` announces (Envoy): the retry
/// policy's `per_try_timeout` when it is shorter than the route timeout
/// (or there is none), else the route timeout.
fn expected_timeout(action: &model::ForwardAction) -> Option<std::time::Duration> {
    let per_try = action.retry_policy.as_ref().and_then(|p| p.per_try_timeout);
    match (per_try, action.timeout) {
        (Some(p), Some(t)) => Some(p.min(t)),
        (Some(p), None) => Some(p),
        (None, t) => t,
    }
}
