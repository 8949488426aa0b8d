//! Active health checking of one cluster: one session per (host, check),
//! each a task that probes, applies the result to its state machine,
//! publishes the host's flags, tells the events and sleeps Envoy's interval.
//!
//! Owns: the sessions' timers and probers, `cluster.<name>.health_check.*`
//! stats, passive immediate-fail marks (the warm-up count and first-traffic
//! signal they report to are in `scheduler/signals.rs`), and
//! handing the sessions' state to the cluster a reload builds
//! ([`CheckCarry`], in `scheduler/carry.rs`).
//! Must not touch: the data path. The cluster hands in its hosts' flags and
//! a callback to run when host health changed; nothing here imports proxy/.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checker::{
    self, Event, FailureType, Outcome, SESSION_FLAGS, Session, Step, Thresholds, Transition,
};
use super::events::{EventLog, EventSource, tell};
use super::probe::{self, Prober};
use super::revival::{LateAnswer, Revival};
use super::{HostHealth, flags};
use crate::config::model::{Checker, HealthCheck};
use crate::stats::{Counter, Gauge, Scope, Store};

/// What active checking needs to know about one host.
#[derive(Debug, Clone)]
pub struct CheckedHost {
    /// The host's serving address (what events and `/clusters` name).
    pub address: SocketAddr,
    /// Where probes go (`health_check_config.port_value` applied).
    pub check_address: SocketAddr,
    /// The host's flags (active checking owns [`SESSION_FLAGS`] of them).
    pub health: Arc<HostHealth>,
}

/// `cluster.<name>.health_check.*`.
#[derive(Debug)]
struct CheckStats {
    attempt: Counter,
    success: Counter,
    failure: Counter,
    passive_failure: Counter,
    network_failure: Counter,
    healthy: Gauge,
    degraded: Gauge,
}

impl CheckStats {
    fn new(store: &Arc<Store>, cluster: &str) -> Self {
        let scope = Scope::tagged(store.clone(), "cluster", cluster, "envoy_cluster_name");
        // Registered so dashboards see it; hale has no service_name_matcher yet.
        let _ = scope.counter("health_check.verify_cluster");
        Self {
            attempt: scope.counter("health_check.attempt"),
            success: scope.counter("health_check.success"),
            failure: scope.counter("health_check.failure"),
            passive_failure: scope.counter("health_check.passive_failure"),
            network_failure: scope.counter("health_check.network_failure"),
            healthy: scope.gauge("health_check.healthy"),
            degraded: scope.gauge("health_check.degraded"),
        }
    }
}

/// State shared by a cluster's sessions.
struct Shared {
    cluster: String,
    hosts: Vec<CheckedHost>,
    checks: Vec<(HealthCheck, String, EventLog)>,
    // sessions[host][check]: each session's state as of its last applied
    // result. Written by the session's task after every result (the task
    // works on its own copy); read by `publish`, `failing_checks` and, once
    // the sessions are stopped, `carry`. Locks are never held across an await.
    sessions: Vec<Vec<Mutex<Session>>>,
    // published[host]: the combined flags last written to the host, so the
    // gauges move by differences instead of recounting every host.
    published: Vec<AtomicU32>,
    // passive_pending[host]: sessions that have not yet taken in an
    // immediate-fail mark the data path set; until they all have, publishing
    // keeps the mark (a probe finishing meanwhile must not undo it).
    passive_pending: Vec<AtomicUsize>,
    stats: CheckStats,
    // Hosts whose every check has had a first result (for the probes).
    hosts_checked: AtomicUsize,
    // first_results[host]: sessions of the host with a first result.
    first_results: Vec<AtomicUsize>,
    traffic: Arc<FirstTraffic>,
    on_change: Box<dyn Fn() + Send + Sync>,
    on_pass: Option<Box<dyn Fn(usize) + Send + Sync>>,
}

/// A session's state; a poisoned lock still holds a whole `Session` (it is
/// only ever replaced whole).
fn lock(session: &Mutex<Session>) -> MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The flags a host's sessions amount to: a host is healthy only when every
/// check passes.
fn combined(sessions: &[Mutex<Session>]) -> u32 {
    sessions.iter().fold(0, |acc, s| acc | lock(s).flags)
}

impl Shared {
    /// ORs the host's sessions' flags into the host (a host is healthy only
    /// when every check passes) and moves the gauges by the difference.
    fn publish(&self, host: usize) {
        let (Some(h), Some(sessions), Some(last)) = (
            self.hosts.get(host),
            self.sessions.get(host),
            self.published.get(host),
        ) else {
            return;
        };
        let mut combined = combined(sessions);
        if self
            .passive_pending
            .get(host)
            .is_some_and(|p| p.load(Ordering::SeqCst) > 0)
        {
            combined |= flags::FAILED_ACTIVE_HC | flags::EXCLUDED_VIA_IMMEDIATE_HC_FAIL;
        }
        h.health.replace(SESSION_FLAGS, combined);
        let before = last.swap(combined, Ordering::Relaxed);
        let delta = |bit: u32, healthy_when_clear: bool| -> i64 {
            let was = (before & bit == 0) == healthy_when_clear;
            let is = (combined & bit == 0) == healthy_when_clear;
            i64::from(is) - i64::from(was)
        };
        let healthy = delta(flags::FAILED_ACTIVE_HC, true);
        let degraded = delta(flags::DEGRADED_ACTIVE_HC, false);
        if healthy != 0 {
            self.stats.healthy.set(self.stats.healthy.value() + healthy);
        }
        if degraded != 0 {
            self.stats
                .degraded
                .set(self.stats.degraded.value() + degraded);
        }
    }
}

/// The active health checking of one cluster.
pub struct ActiveChecks {
    shared: Arc<Shared>,
    // passive[host][check]: wakes a session for an immediate-fail mark.
    passive: Vec<Vec<mpsc::Sender<()>>>,
}

impl std::fmt::Debug for ActiveChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveChecks")
            .field("cluster", &self.shared.cluster)
            .field("hosts", &self.shared.hosts.len())
            .field("checks", &self.shared.checks.len())
            .finish()
    }
}

/// Everything needed to start checking one cluster.
pub struct ClusterChecks {
    /// The cluster's name.
    pub cluster: String,
    /// Its `health_checks`.
    pub checks: Vec<HealthCheck>,
    /// Its hosts, in the cluster's order.
    pub hosts: Vec<CheckedHost>,
    /// Set by the cluster's first upstream connection (Envoy reads
    /// `upstream_cx_total`): from then on the no-traffic intervals no
    /// longer apply.
    pub traffic: Arc<FirstTraffic>,
    /// Run after any host's health changed (rebuild load-balancing state).
    pub on_change: Box<dyn Fn() + Send + Sync>,
    /// Run with a host's index after each passing check (outlier detection
    /// may let an ejected host back on it).
    pub on_pass: Option<Box<dyn Fn(usize) + Send + Sync>>,
    /// What the checks of the cluster this one replaces knew (a reload):
    /// a host with the same address and check address, under a check equal
    /// to one of the old cluster's, goes on from where its session was.
    pub carried: Option<CheckCarry>,
}

impl ActiveChecks {
    /// Starts one session per host and check on the current runtime, until
    /// `stop`. A new session marks its host failed until its first result,
    /// counted in `warmup` (Envoy); a session carried over a reload (see
    /// [`ClusterChecks::carried`]) goes on from its state: its flags are
    /// published as they were, it is not counted in `warmup`, and its first
    /// probe comes at a random point within `interval`.
    pub fn start(
        spec: ClusterChecks,
        store: &Arc<Store>,
        warmup: &Arc<Warmup>,
        stop: &CancellationToken,
    ) -> Arc<Self> {
        let carried = spec.carried.unwrap_or_default().take_matches(&spec.checks);
        let checks: Vec<(HealthCheck, String, EventLog)> = spec
            .checks
            .into_iter()
            .map(|c| {
                let label = probe::describe(&c);
                let log = EventLog::open(&c.event_log_paths);
                (c, label, log)
            })
            .collect();
        // Envoy: hosts of a health-checked cluster start failed until their
        // first check; a host that re-appears with the same address keeps
        // its active-check flags (envoy-health.md §1.5).
        let sessions: Vec<Vec<Mutex<Session>>> = spec
            .hosts
            .iter()
            .map(|h| {
                carried
                    .iter()
                    .map(|c| Mutex::new(carry::session(c, h).unwrap_or_default()))
                    .collect()
            })
            .collect();
        let published: Vec<AtomicU32> = sessions
            .iter()
            .map(|s| AtomicU32::new(combined(s)))
            .collect();
        let first_results: Vec<AtomicUsize> = sessions
            .iter()
            .map(|s| AtomicUsize::new(s.iter().filter(|s| lock(s).has_result()).count()))
            .collect();
        let hosts_checked = first_results
            .iter()
            .filter(|n| {
                let n = n.load(Ordering::SeqCst);
                n > 0 && n == checks.len()
            })
            .count();
        let unchecked = sessions
            .iter()
            .flatten()
            .filter(|s| !lock(s).has_result())
            .count();
        let passive_pending = spec.hosts.iter().map(|_| AtomicUsize::new(0)).collect();
        let shared = Arc::new(Shared {
            published,
            passive_pending,
            stats: CheckStats::new(store, &spec.cluster),
            hosts_checked: AtomicUsize::new(hosts_checked),
            first_results,
            cluster: spec.cluster,
            hosts: spec.hosts,
            checks,
            sessions,
            traffic: spec.traffic,
            on_change: spec.on_change,
            on_pass: spec.on_pass,
        });
        let (mut healthy, mut degraded) = (0, 0);
        for (host, published) in shared.hosts.iter().zip(&shared.published) {
            let bits = published.load(Ordering::Relaxed);
            host.health.replace(SESSION_FLAGS, bits);
            healthy += i64::from(bits & flags::FAILED_ACTIVE_HC == 0);
            degraded += i64::from(bits & flags::DEGRADED_ACTIVE_HC != 0);
        }
        shared.stats.healthy.set(healthy);
        shared.stats.degraded.set(degraded);
        (shared.on_change)();
        warmup.add(unchecked);

        let mut passive = Vec::with_capacity(shared.hosts.len());
        for host in 0..shared.hosts.len() {
            let mut per_check = Vec::with_capacity(shared.checks.len());
            for check in 0..shared.checks.len() {
                let (tx, rx) = mpsc::channel(1);
                per_check.push(tx);
                let task = SessionTask {
                    shared: Arc::clone(&shared),
                    host,
                    check,
                    warmup: Arc::clone(warmup),
                    passive: rx,
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        // Once stopped, a session applies and publishes
                        // nothing more: its state may be carried already.
                        biased;
                        () = stop.cancelled() => {}
                        () = task.run() => {}
                    }
                });
            }
            passive.push(per_check);
        }
        Arc::new(Self { shared, passive })
    }

    /// Hosts whose every check has had a first result, and all hosts.
    pub fn hosts_checked(&self) -> (usize, usize) {
        (
            self.shared.hosts_checked.load(Ordering::SeqCst),
            self.shared.hosts.len(),
        )
    }

    /// The checks `host` is failing now, as `"<index> <description>"`
    /// (hale runs several checks per cluster; this says which one failed).
    pub fn failing_checks(&self, host: usize) -> Vec<String> {
        let Some(sessions) = self.shared.sessions.get(host) else {
            return Vec::new();
        };
        sessions
            .iter()
            .zip(&self.shared.checks)
            .enumerate()
            .filter(|(_, (s, _))| lock(s).flags & flags::FAILED_ACTIVE_HC != 0)
            .map(|(i, (_, (_, label, _)))| format!("{i} {label}"))
            .collect()
    }

    /// `x-envoy-immediate-health-check-fail` on a proxied response from
    /// `host`: excluded at once (from the data path, without waiting), and
    /// each of its sessions records a passive failure.
    pub fn immediate_fail(&self, host: usize) {
        let (Some(h), Some(pending)) = (
            self.shared.hosts.get(host),
            self.shared.passive_pending.get(host),
        ) else {
            return;
        };
        // Counted before the mark is set, so a session publishing in
        // between keeps it; each session takes one off when it has the mark.
        for tx in self.passive.get(host).into_iter().flatten() {
            // A mark already queued says the same thing.
            if let Ok(permit) = tx.try_reserve() {
                pending.fetch_add(1, Ordering::SeqCst);
                permit.send(());
            }
        }
        h.health
            .set(flags::FAILED_ACTIVE_HC | flags::EXCLUDED_VIA_IMMEDIATE_HC_FAIL);
        (self.shared.on_change)();
    }
}

struct SessionTask {
    shared: Arc<Shared>,
    host: usize,
    check: usize,
    warmup: Arc<Warmup>,
    passive: mpsc::Receiver<()>,
}

impl SessionTask {
    async fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let (hc, label, log) = &shared.checks[self.check];
        let target = &shared.hosts[self.host];
        let th = Thresholds::from(hc);
        let source = EventSource {
            cluster: &shared.cluster,
            host: target.address,
            checker: probe::checker_type(hc),
            check_index: self.check,
            check: label,
        };
        // New, or carried over a reload (see `ActiveChecks::start`).
        let mut session = shared
            .sessions
            .get(self.host)
            .and_then(|s| s.get(self.check))
            .map(|s| lock(s).clone())
            .unwrap_or_default();
        // Taken by each probe and given back when it ends; a timed-out probe
        // keeps it (see revival.rs), and a new one replaces it.
        let mut prober = Some(Prober::new(hc, target.check_address, &shared.cluster));
        let mut revival = Revival::Nothing;
        let mut traffic_seen = false;
        let first_delay = if session.has_result() {
            checker::carried_delay(hc, rand::random)
        } else {
            checker::initial_delay(hc, rand::random)
        };
        let mut next = Instant::now() + first_delay;
        // How the last check went, to redo the wait when traffic starts.
        let mut last: Option<(Instant, bool, Transition)> = None;
        loop {
            let early = tokio::select! {
                biased;
                () = shared.traffic.arrived(), if !traffic_seen => {
                    traffic_seen = true;
                    if let Some((at, healthy, transition)) = last {
                        let sooner = at + checker::next_interval(hc, healthy, transition, true, rand::random);
                        next = next.min(sooner);
                    }
                    continue;
                }
                marked = self.passive.recv() => {
                    if marked.is_none() {
                        return;
                    }
                    let step = session.immediate_fail(th);
                    if let Some(pending) = self.shared.passive_pending.get(self.host) {
                        let _ = pending.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                            Some(n.saturating_sub(1))
                        });
                    }
                    self.shared.stats.failure.inc();
                    self.shared.stats.passive_failure.inc();
                    self.record(&session, &step, &source, log, Some("x-envoy-immediate-health-check-fail on proxied traffic"));
                    continue;
                }
                () = tokio::time::sleep_until(next) => false,
                () = revival.seen(&mut prober) => true,
            };
            if early {
                tracing::debug!(cluster = %self.shared.cluster, host = %target.check_address, check = %label, "failed host shows a sign of life; checking it now");
            }
            // Dropping a late check closes its connection, as Envoy closes a
            // timed-out check's.
            revival = Revival::Nothing;
            let mut probing = prober
                .take()
                .unwrap_or_else(|| Prober::new(hc, target.check_address, &shared.cluster));
            self.shared.stats.attempt.inc();
            let mut probe: LateAnswer = Box::pin(async move {
                let outcome = probing.probe().await;
                (probing, outcome)
            });
            let (outcome, late) = tokio::select! {
                // An answer ready together with the deadline is on time.
                biased;
                (returned, outcome) = &mut probe => {
                    prober = Some(returned);
                    (outcome, None)
                }
                () = tokio::time::sleep(hc.timeout) => {
                    let timed_out = Outcome::Fail {
                        kind: FailureType::NetworkTimeout,
                        retriable: false,
                        immediate_fail_header: false,
                        refused: false,
                        reason: format!("no answer within {:?}", hc.timeout),
                    };
                    (timed_out, Some(probe))
                }
            };
            let first = !session.has_result();
            let step = session.apply(&outcome, th);
            let (healthy, reason) = match &outcome {
                Outcome::Pass { .. } => {
                    self.shared.stats.success.inc();
                    (true, None)
                }
                Outcome::Fail { kind, reason, .. } => {
                    self.shared.stats.failure.inc();
                    if matches!(kind, FailureType::Network | FailureType::NetworkTimeout) {
                        self.shared.stats.network_failure.inc();
                    }
                    (false, Some(reason.as_str()))
                }
            };
            if !healthy {
                tracing::debug!(cluster = %self.shared.cluster, host = %target.check_address, check = %label, reason = reason.unwrap_or(""), "health check failed");
            }
            self.record(&session, &step, &source, log, reason);
            if healthy && let Some(on_pass) = &self.shared.on_pass {
                on_pass(self.host);
            }
            if first {
                self.warmup.done_one();
                let checks = self.shared.checks.len();
                if let Some(n) = self.shared.first_results.get(self.host)
                    && n.fetch_add(1, Ordering::SeqCst) + 1 == checks
                {
                    self.shared.hosts_checked.fetch_add(1, Ordering::SeqCst);
                }
            }
            traffic_seen = traffic_seen || self.shared.traffic.seen();
            // Watched only after a regular check, so a host that keeps
            // showing signs and failing is checked at most twice an interval.
            if !early && session.flags & flags::FAILED_ACTIVE_HC != 0 {
                // gRPC servers give up at the check's own deadline
                // (`grpc-timeout`), so a late gRPC answer never passes.
                let late = late.filter(|_| !matches!(hc.checker, Checker::Grpc(_)));
                revival = Revival::after(&outcome, late, target.check_address, hc.timeout);
            }
            let now = Instant::now();
            last = Some((now, healthy, step.transition));
            next = now
                + checker::next_interval(hc, healthy, step.transition, traffic_seen, rand::random);
        }
    }

    fn record(
        &self,
        session: &Session,
        step: &Step,
        source: &EventSource<'_>,
        log: &EventLog,
        reason: Option<&str>,
    ) {
        if let Some(slot) = self
            .shared
            .sessions
            .get(self.host)
            .and_then(|s| s.get(self.check))
        {
            *lock(slot) = session.clone();
        }
        // Flags can change without a transition (a timeout flag on a failed
        // host): always publish; rebuild balancing state only on a change.
        self.shared.publish(self.host);
        if step.transition == Transition::Changed {
            (self.shared.on_change)();
        }
        for event in &step.events {
            let why = match event {
                Event::EjectUnhealthy { .. } | Event::Failure { .. } => reason,
                _ => None,
            };
            tell(log, source, event, why);
        }
    }
}

mod carry;
mod signals;
pub use carry::CheckCarry;
pub use signals::{FirstTraffic, Warmup};

#[cfg(test)]
mod tests;
