//! A runtime cluster: its hosts by priority, the balancer over them, each
//! host's pool and counters, its active health checks, and its stats.
//!
//! Owns: turning a `model::Cluster` into hosts (`hosts.rs`: DNS names
//! resolved once at build time, flags carried over a reload), the load plan
//! across priorities (`balancing.rs`: rebuilt when host health changes,
//! read once per pick), the pick itself, and handing host state to a
//! reload's successor (`retire`).
//! Must not touch: health decisions (flags come from `health::HostHealth`,
//! set by their owners, and are judged by `health::coarse`/`eligible`),
//! routing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::config::model::{self, UpstreamProtocol};
use crate::health::outlier::{self, Observation, OutlierCarry, Passive, WatchedHost};
use crate::health::scheduler::{ActiveChecks, CheckCarry, CheckedHost, ClusterChecks, Warmup};
use crate::health::{self, Coarse, HostHealth, unresponsive};
use crate::stats::{Counter, Gauge, Scope, StatusCounters, Store};

use super::balancer::{Candidate, Level};
use super::breaker::Breakers;
use super::pool::{ConnStats, HostPool};
use super::priority::{LevelCounts, LoadPlan, Pool};
use super::retry::RetryStats;

mod balancing;
mod hosts;

use balancing::{Balancing, Membership, count_hosts};
use hosts::{host_health, resolve};

pub use balancing::MembershipCounts;

/// What starting a cluster's health checks needs from the server.
#[derive(Debug, Clone)]
pub struct HealthRuntime {
    /// Counts first results; hale goes LIVE when it reaches zero.
    pub warmup: Arc<Warmup>,
    /// Stops the checks.
    pub stop: CancellationToken,
    /// Bumped after every recount of a cluster's host health, so the
    /// probe server's gRPC Watch pushes a cluster's change at once.
    pub changes: crate::lifecycle::Changes,
}

/// What a cluster replaced by a reload hands to its successor: the state
/// of each of its hosts, by address, so a host that survives the reload
/// keeps what hale learned about it (a host known bad is not re-warmed).
#[derive(Debug, Default)]
pub struct Carried {
    /// Each host's flags (the same `Arc`: the data path of the old world,
    /// finishing its requests, sees what the new checks find).
    pub health: HashMap<SocketAddr, Arc<HostHealth>>,
    /// Each active check's state per host (thresholds count on).
    pub checks: Option<CheckCarry>,
    /// Outlier detection's state per host (ejections run their course).
    pub outlier: Option<OutlierCarry>,
}

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
    /// Its position in the cluster (priority order, then file order).
    pub index: usize,
    /// The resolved address requests go to.
    pub address: SocketAddr,
    /// Where health checks go (`health_check_config.port_value` applied).
    pub check_address: SocketAddr,
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
    /// `lb_healthy_panic`: requests balanced over every host in panic.
    pub lb_healthy_panic: Counter,
    /// `upstream_rq_retry*` and `upstream_rq_per_try_timeout`.
    pub retries: RetryStats,
    /// `upstream_rq_unsent_repick` (hale's): requests refused a connection
    /// before being sent, sent to another host instead (no retry policy).
    pub upstream_rq_unsent_repick: Counter,
}

/// Whether a pick may follow Envoy's panic routing (every host, healthy
/// or not, when too few are healthy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panic {
    /// Envoy's behaviour.
    Allowed,
    /// Only usable hosts, even in panic (routes under degraded mode, which
    /// answers from its cache instead of sending to dead hosts).
    Refused,
}

/// A runtime cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The validated config it was built from.
    pub config: model::Cluster,
    balancing: Arc<Balancing>,
    /// Active health checks, when the cluster has `health_checks`.
    active: Option<Arc<ActiveChecks>>,
    /// Outlier detection's inbox, when the cluster has `outlier_detection`.
    passive: Option<Passive>,
    /// Circuit breakers (routing priority DEFAULT).
    pub breakers: Arc<Breakers>,
    /// Stats under `cluster.<name>.`.
    pub stats: ClusterStats,
    /// Stops this cluster's checks and outlier detection (a child of the
    /// server's: a reload that replaces or removes the cluster cancels it).
    stop: CancellationToken,
}

impl Cluster {
    /// Builds the cluster with a connection pool per host for each of
    /// `workers` data-path workers, resolving DNS names of the DNS types (a name that
    /// does not resolve yields no host and a warning, as Envoy keeps a DNS
    /// cluster with no hosts until resolution succeeds).
    pub async fn build(
        config: &model::Cluster,
        store: &Arc<Store>,
        workers: usize,
        health_runtime: &HealthRuntime,
        carried: Option<Carried>,
    ) -> Self {
        let mut carried = carried.unwrap_or_default();
        let stop = health_runtime.stop.child_token();
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
            traffic: Arc::default(),
        };
        let stats = ClusterStats {
            upstream_rq_total: scope.counter("upstream_rq_total"),
            upstream_rq: StatusCounters::new(&scope, "upstream_rq"),
            upstream_rq_completed: scope.counter("upstream_rq_completed"),
            upstream_rq_active: scope.gauge("upstream_rq_active"),
            upstream_rq_timeout: scope.counter("upstream_rq_timeout"),
            upstream_rq_rx_reset: scope.counter("upstream_rq_rx_reset"),
            upstream_cx_none_healthy: scope.counter("upstream_cx_none_healthy"),
            lb_healthy_panic: scope.counter("lb_healthy_panic"),
            retries: RetryStats::new(&scope),
            upstream_rq_unsent_repick: scope.counter("upstream_rq_unsent_repick"),
        };
        let membership = Membership {
            total: scope.gauge("membership_total"),
            healthy: scope.gauge("membership_healthy"),
            degraded: scope.gauge("membership_degraded"),
            excluded: scope.gauge("membership_excluded"),
        };

        let breakers = Breakers::new(&config.circuit_breakers, &scope);
        let mut resolved = Vec::new();
        for endpoint in &config.endpoints {
            for address in resolve(config.discovery, endpoint, &config.name).await {
                resolved.push((endpoint, address));
            }
        }
        // Hosts are indexed in priority order, the order /clusters prints.
        resolved.sort_by_key(|(e, _)| e.priority);
        let mut hosts: Vec<Arc<Host>> = Vec::with_capacity(resolved.len());
        for (index, (endpoint, address)) in resolved.into_iter().enumerate() {
            let host_stats = HostStats::default();
            let conn = ConnStats {
                host_cx_total: host_stats.cx_total.clone(),
                host_cx_active: host_stats.cx_active.clone(),
                host_cx_connect_fail: host_stats.cx_connect_fail.clone(),
                ..conn.clone()
            };
            let check_port = endpoint.health_check_port.unwrap_or(address.port());
            hosts.push(Arc::new(Host {
                index,
                address,
                check_address: SocketAddr::new(address.ip(), check_port),
                hostname: endpoint.host.clone(),
                weight: endpoint.weight.max(1),
                priority: endpoint.priority,
                health: host_health(&carried, address, endpoint.health_status, config),
                stats: host_stats,
                pool: HostPool::new(
                    address,
                    config.protocol,
                    config.connect_timeout,
                    conn,
                    &breakers,
                    workers,
                ),
            }));
        }

        let mut priorities: Vec<u32> = hosts.iter().map(|h| h.priority).collect();
        priorities.dedup();
        let levels = priorities
            .into_iter()
            .map(|p| {
                let members = hosts.iter().filter(|h| h.priority == p).cloned().collect();
                (p, Level::for_workers(members, workers))
            })
            .collect();
        let balancing = Arc::new(Balancing {
            levels,
            plan: ArcSwap::from_pointee(LoadPlan::default()),
            overprovisioning: config.overprovisioning_factor,
            panic_threshold: config.healthy_panic_threshold,
            membership,
            rebuild_scheduled: AtomicBool::new(false),
            rebuilding: std::sync::Mutex::new(()),
            changes: health_runtime.changes.clone(),
        });
        balancing.rebuild();

        let passive = config.outlier_detection.clone().map(|od| {
            let on_change = Arc::clone(&balancing);
            outlier::start(
                config.name.clone(),
                od,
                hosts
                    .iter()
                    .map(|h| WatchedHost {
                        address: h.address,
                        health: Arc::clone(&h.health),
                    })
                    .collect(),
                &scope,
                Box::new(move || on_change.request_rebuild()),
                stop.clone(),
                carried.outlier.take(),
            )
        });
        if hosts.len() > 1 {
            let on_change = Arc::clone(&balancing);
            unresponsive::start(
                config.name.clone(),
                hosts
                    .iter()
                    .map(|h| unresponsive::WatchedHost {
                        address: h.address,
                        health: Arc::clone(&h.health),
                    })
                    .collect(),
                unresponsive::DEFAULT_AFTER,
                Box::new(move || on_change.request_rebuild()),
                stop.clone(),
            );
        }
        let active = (!config.health_checks.is_empty()).then(|| {
            let on_change = Arc::clone(&balancing);
            let on_pass = passive.clone().map(|p| {
                Box::new(move |host: usize| p.active_check_passed(host))
                    as Box<dyn Fn(usize) + Send + Sync>
            });
            ActiveChecks::start(
                ClusterChecks {
                    cluster: config.name.clone(),
                    checks: config.health_checks.clone(),
                    hosts: hosts
                        .iter()
                        .map(|h| CheckedHost {
                            address: h.address,
                            check_address: h.check_address,
                            health: Arc::clone(&h.health),
                        })
                        .collect(),
                    traffic: Arc::clone(&conn.traffic),
                    on_change: Box::new(move || on_change.request_rebuild()),
                    on_pass,
                    carried: carried.checks.take(),
                },
                store,
                &health_runtime.warmup,
                &stop,
            )
        });
        Self {
            config: config.clone(),
            balancing,
            active,
            passive,
            breakers,
            stats,
            stop,
        }
    }

    /// Stops this cluster's checks and outlier detection and hands over
    /// what they knew of each host (a reload replaced the cluster). The
    /// cluster still serves the requests of the world it belongs to.
    pub async fn retire(&self) -> Carried {
        self.stop.cancel();
        // Taken before any await: a stopped session's queued mark is
        // applied here rather than lost with its task.
        let checks = self.active.as_ref().map(|a| a.carry());
        let outlier = match &self.passive {
            Some(p) => Some(p.retire().await),
            None => None,
        };
        Carried {
            health: self
                .hosts()
                .map(|h| (h.address, Arc::clone(&h.health)))
                .collect(),
            checks,
            outlier,
        }
    }

    /// Recounts its hosts and republishes the load plan now (a reload,
    /// about to swap a cluster in, wants the plan its first checks made
    /// rather than the one from before them, rebuilt a tick later).
    pub fn recount(&self) {
        self.balancing.rebuild();
    }

    /// Stops this cluster's checks and outlier detection for good (a
    /// reload removed it).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Every host, by priority then file order (the order of `Host::index`).
    pub fn hosts(&self) -> impl Iterator<Item = &Arc<Host>> {
        self.balancing
            .levels
            .iter()
            .flat_map(|(_, l)| l.hosts().iter())
    }

    /// Picks a host as Envoy does: a level and pool drawn from the load
    /// plan (healthy first, degraded for what healthy hosts cannot take,
    /// every host of a level in panic), then the balancer within it. With
    /// `fail_traffic_on_panic`, a panicking level yields no host (hale
    /// honours it without zone-aware routing).
    pub fn pick(&self) -> Option<&Arc<Host>> {
        self.pick_for(Panic::Allowed)
    }

    /// [`Cluster::pick`], where a route may refuse panic routing: with
    /// `Panic::Refused` (the degraded filter's routes) a priority in panic
    /// still gets only usable hosts, never ones known to be dead.
    pub fn pick_for(&self, panic: Panic) -> Option<&Arc<Host>> {
        let policy = self.config.lb_policy;
        let plan = self.balancing.plan.load();
        let choice = plan.choose(|| rand::random_range(1..=100))?;
        let (_, level) = self.balancing.levels.get(choice.level)?;
        let picked = match choice.pool {
            Pool::Healthy => level.pick(policy, |h| {
                health::coarse(h.health.bits()) == Coarse::Healthy
            }),
            Pool::Degraded => level.pick(policy, |h| {
                health::coarse(h.health.bits()) == Coarse::Degraded
            }),
            Pool::Panic if panic == Panic::Refused => {
                if self.config.fail_traffic_on_panic {
                    return None;
                }
                level.pick(policy, |h| h.health.eligible())
            }
            Pool::Panic => {
                if self.config.fail_traffic_on_panic {
                    return None;
                }
                self.stats.lb_healthy_panic.inc();
                return level.pick(policy, |_| true);
            }
        };
        // Flags may have moved since the plan was built: any usable host.
        picked.or_else(|| {
            self.balancing
                .levels
                .iter()
                .find_map(|(_, l)| l.pick(policy, |h| h.health.eligible()))
        })
    }

    /// A host for a retry: a pick that `avoid` rejects is redone up to
    /// `attempts` times, then the last pick is used (Envoy's
    /// `host_selection_retry_max_attempts`).
    pub fn pick_avoiding(
        &self,
        avoid: impl Fn(&Host) -> bool,
        attempts: u32,
        panic: Panic,
    ) -> Option<&Arc<Host>> {
        let mut picked = self.pick_for(panic)?;
        for _ in 0..attempts {
            if !avoid(picked) {
                break;
            }
            match self.pick_for(panic) {
                Some(next) => picked = next,
                None => break,
            }
        }
        Some(picked)
    }

    /// An upstream answered with `x-envoy-immediate-health-check-fail`:
    /// with active checking, the host is excluded at once (Envoy); without,
    /// the header means nothing.
    pub fn immediate_fail(&self, host: &Host) {
        // A retired cluster's checks have stopped: no session would ever
        // clear the mark, and its successor's checks own the host now.
        if self.stop.is_cancelled() {
            return;
        }
        if let Some(active) = &self.active {
            active.immediate_fail(host.index);
        }
    }

    /// Tells outlier detection what an attempt on `host` found (nothing
    /// without `outlier_detection`). Never waits.
    pub fn observe(&self, host: &Host, what: Observation) {
        if let Some(p) = &self.passive {
            p.report(host.index, what);
        }
    }

    /// What outlier detection's last sweep computed (`None` without it).
    pub fn outlier_rates(&self) -> Option<&Arc<outlier::Published>> {
        self.passive.as_ref().map(|p| &p.published)
    }

    /// The active checks `host` is failing now (empty without checks).
    pub fn failing_checks(&self, host: &Host) -> Vec<String> {
        self.active
            .as_ref()
            .map(|a| a.failing_checks(host.index))
            .unwrap_or_default()
    }

    /// With active checks: hosts whose every check has had a first result,
    /// and all hosts.
    pub fn hosts_checked(&self) -> Option<(usize, usize)> {
        self.active.as_ref().map(|a| a.hosts_checked())
    }

    /// Whether any host may take traffic now (stops at the first one).
    pub fn has_usable_host(&self) -> bool {
        self.balancing
            .levels
            .iter()
            .any(|(_, level)| level.hosts().iter().any(|h| h.health.eligible()))
    }

    /// The hosts by health now, counted from their flags (readiness, the
    /// gRPC services and the health_check filter read this; the gauges and
    /// the load plan follow a moment later, after the batched recount).
    pub fn membership(&self) -> MembershipCounts {
        let mut all = LevelCounts::default();
        for (_, level) in &self.balancing.levels {
            let c = count_hosts(level.hosts());
            all.total += c.total;
            all.healthy += c.healthy;
            all.degraded += c.degraded;
        }
        MembershipCounts {
            total: u64::from(all.total),
            healthy: u64::from(all.healthy),
            degraded: u64::from(all.degraded),
        }
    }

    /// The load plan now.
    pub fn plan(&self) -> Arc<LoadPlan> {
        self.balancing.plan.load_full()
    }
}
