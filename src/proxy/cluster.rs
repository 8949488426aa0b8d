//! A runtime cluster: its hosts by priority, the balancer over them, each
//! host's pool and counters, and the cluster's stats.
//!
//! Owns: turning a `model::Cluster` into hosts (resolving DNS names once at
//! build time), and the pick across priorities: priority 0 while it has a
//! usable host, then 1, and so on; healthy hosts before degraded ones.
//! Must not touch: health decisions (flags come from `health::HostHealth`
//! and are judged by `health::eligible`), routing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::config::model::{self, DiscoveryType, UpstreamProtocol};
use crate::health::{self, Coarse, HostHealth};
use crate::stats::{Counter, Gauge, Scope, StatusCounters, Store};

use super::balancer::{Candidate, Level};
use super::pool::{ConnStats, HostPool};

/// Per-host counters, shown by `/clusters` (Envoy does not put them in `/stats`).
#[derive(Debug, Default)]
pub struct HostStats {
    /// Connections opened (and failed attempts).
    pub cx_total: Arc<AtomicU64>,
    /// Connections open now.
    pub cx_active: Arc<AtomicI64>,
    /// Failed connection attempts.
    pub cx_connect_fail: Arc<AtomicU64>,
    /// Requests sent.
    pub rq_total: AtomicU64,
    /// Requests in flight.
    pub rq_active: AtomicU64,
    /// Requests answered with a non-5xx status.
    pub rq_success: AtomicU64,
    /// Requests that got a 5xx, a reset or a connect failure.
    pub rq_error: AtomicU64,
    /// Requests that hit the route timeout.
    pub rq_timeout: AtomicU64,
}

/// One upstream host.
#[derive(Debug)]
pub struct Host {
    /// The resolved address requests go to.
    pub address: SocketAddr,
    /// The configured name or IP (shown as `hostname` for DNS clusters).
    pub hostname: String,
    /// `load_balancing_weight`.
    pub weight: u32,
    /// Priority of its locality.
    pub priority: u32,
    /// Health flags (shared with the checkers that own them).
    pub health: Arc<HostHealth>,
    /// Counters shown by `/clusters`.
    pub stats: HostStats,
    /// Its connections.
    pub pool: HostPool,
}

impl Candidate for Arc<Host> {
    fn weight(&self) -> u32 {
        self.weight
    }

    fn active_requests(&self) -> u64 {
        self.stats.rq_active.load(Ordering::Relaxed)
    }
}

/// `cluster.<name>.*` stats the data path bumps.
#[derive(Debug)]
pub struct ClusterStats {
    /// `upstream_rq_total`.
    pub upstream_rq_total: Counter,
    /// `upstream_rq_<code>` and `upstream_rq_<N>xx`.
    pub upstream_rq: StatusCounters,
    /// `upstream_rq_completed`.
    pub upstream_rq_completed: Counter,
    /// `upstream_rq_active`.
    pub upstream_rq_active: Gauge,
    /// `upstream_rq_timeout`.
    pub upstream_rq_timeout: Counter,
    /// `upstream_rq_rx_reset`: the upstream reset or closed before a response.
    pub upstream_rq_rx_reset: Counter,
    /// `upstream_cx_none_healthy`: no host could be picked.
    pub upstream_cx_none_healthy: Counter,
    /// `membership_total`.
    pub membership_total: Gauge,
    /// `membership_healthy`.
    pub membership_healthy: Gauge,
    /// `membership_degraded`.
    pub membership_degraded: Gauge,
}

/// A runtime cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The validated config it was built from.
    pub config: model::Cluster,
    /// Levels in ascending priority number (0 first).
    levels: Vec<(u32, Level<Arc<Host>>)>,
    /// Stats under `cluster.<name>.`.
    pub stats: ClusterStats,
}

impl Cluster {
    /// Builds the cluster with a connection pool per host for each of
    /// `workers` data-path workers, resolving DNS names of the DNS types (a name that
    /// does not resolve yields no host and a warning, as Envoy keeps a DNS
    /// cluster with no hosts until resolution succeeds).
    pub async fn build(config: &model::Cluster, store: &Arc<Store>, workers: usize) -> Self {
        let scope = Scope::tagged(store.clone(), "cluster", &config.name, "envoy_cluster_name");
        let conn = ConnStats {
            host_cx_total: Arc::default(),
            host_cx_active: Arc::default(),
            host_cx_connect_fail: Arc::default(),
            cx_total: scope.counter("upstream_cx_total"),
            cx_active: scope.gauge("upstream_cx_active"),
            cx_connect_fail: scope.counter("upstream_cx_connect_fail"),
            cx_connect_timeout: scope.counter("upstream_cx_connect_timeout"),
            cx_protocol_total: match config.protocol {
                UpstreamProtocol::Http1 => scope.counter("upstream_cx_http1_total"),
                UpstreamProtocol::Http2 => scope.counter("upstream_cx_http2_total"),
            },
        };
        let stats = ClusterStats {
            upstream_rq_total: scope.counter("upstream_rq_total"),
            upstream_rq: StatusCounters::new(&scope, "upstream_rq"),
            upstream_rq_completed: scope.counter("upstream_rq_completed"),
            upstream_rq_active: scope.gauge("upstream_rq_active"),
            upstream_rq_timeout: scope.counter("upstream_rq_timeout"),
            upstream_rq_rx_reset: scope.counter("upstream_rq_rx_reset"),
            upstream_cx_none_healthy: scope.counter("upstream_cx_none_healthy"),
            membership_total: scope.gauge("membership_total"),
            membership_healthy: scope.gauge("membership_healthy"),
            membership_degraded: scope.gauge("membership_degraded"),
        };

        let mut hosts: Vec<Arc<Host>> = Vec::new();
        for endpoint in &config.endpoints {
            for address in resolve(config.discovery, endpoint, &config.name).await {
                let host_stats = HostStats::default();
                let conn = ConnStats {
                    host_cx_total: host_stats.cx_total.clone(),
                    host_cx_active: host_stats.cx_active.clone(),
                    host_cx_connect_fail: host_stats.cx_connect_fail.clone(),
                    ..conn.clone()
                };
                hosts.push(Arc::new(Host {
                    address,
                    hostname: endpoint.host.clone(),
                    weight: endpoint.weight.max(1),
                    priority: endpoint.priority,
                    health: Arc::new(HostHealth::from_status(endpoint.health_status)),
                    stats: host_stats,
                    pool: HostPool::new(
                        address,
                        config.protocol,
                        config.connect_timeout,
                        conn,
                        workers,
                    ),
                }));
            }
        }

        let mut priorities: Vec<u32> = hosts.iter().map(|h| h.priority).collect();
        priorities.sort_unstable();
        priorities.dedup();
        let levels = priorities
            .into_iter()
            .map(|p| {
                let members = hosts.iter().filter(|h| h.priority == p).cloned().collect();
                (p, Level::new(members))
            })
            .collect();
        let cluster = Self {
            config: config.clone(),
            levels,
            stats,
        };
        cluster.refresh_membership();
        cluster
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Every host, by priority then file order.
    pub fn hosts(&self) -> impl Iterator<Item = &Arc<Host>> {
        self.levels.iter().flat_map(|(_, l)| l.hosts().iter())
    }

    /// Picks a host: the first priority with a healthy host, else the first
    /// with a degraded one, else none (Envoy's full priority and panic
    /// arithmetic arrives with active health checking).
    pub fn pick(&self) -> Option<&Arc<Host>> {
        let policy = self.config.lb_policy;
        let healthy = |h: &Arc<Host>| health::coarse(h.health.bits()) == Coarse::Healthy;
        self.levels
            .iter()
            .find_map(|(_, level)| level.pick(policy, healthy))
            .or_else(|| {
                self.levels
                    .iter()
                    .find_map(|(_, level)| level.pick(policy, |h| h.health.eligible()))
            })
    }

    /// Recomputes the `membership_*` gauges from the hosts' flags.
    pub fn refresh_membership(&self) {
        let (mut total, mut healthy, mut degraded) = (0, 0, 0);
        for h in self.hosts() {
            total += 1;
            match health::coarse(h.health.bits()) {
                Coarse::Healthy => healthy += 1,
                Coarse::Degraded => degraded += 1,
                Coarse::Unhealthy => {}
            }
        }
        self.stats.membership_total.set(total);
        self.stats.membership_healthy.set(healthy);
        self.stats.membership_degraded.set(degraded);
    }
}

async fn resolve(
    discovery: DiscoveryType,
    endpoint: &model::Endpoint,
    cluster: &str,
) -> Vec<SocketAddr> {
    if let Ok(ip) = endpoint.host.parse::<std::net::IpAddr>() {
        return vec![SocketAddr::new(ip, endpoint.port)];
    }
    match tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port)).await {
        Ok(addrs) => {
            let mut addrs: Vec<SocketAddr> = addrs.collect();
            addrs.dedup();
            if discovery == DiscoveryType::LogicalDns {
                addrs.truncate(1);
            }
            addrs
        }
        Err(e) => {
            tracing::warn!(cluster, host = %endpoint.host, error = %e, "DNS resolution failed; the endpoint has no hosts");
            Vec::new()
        }
    }
}
