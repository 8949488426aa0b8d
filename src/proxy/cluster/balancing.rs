//! The hosts of a cluster by priority, the load plan over them, and the
//! membership counts: rebuilt when host health changes, read per pick.
//!
//! Owns: recounting hosts by health and republishing the plan and the
//! `membership_*` gauges (batched per tick).
//! Must not touch: the pick itself (`cluster.rs`) or health decisions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;

use super::Host;
use crate::health::{self, Coarse, flags};
use crate::proxy::balancer::Level;
use crate::proxy::priority::{LevelCounts, LoadPlan};
use crate::stats::Gauge;

/// A cluster's hosts by health, as of the last recount (Envoy's
/// `membership_*`, what its health_check filter reads).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MembershipCounts {
    /// All hosts.
    pub total: u64,
    /// Coarse-healthy hosts.
    pub healthy: u64,
    /// Coarse-degraded hosts.
    pub degraded: u64,
}

impl MembershipCounts {
    /// Hosts that may take traffic: healthy or degraded.
    pub fn usable(&self) -> u64 {
        self.healthy + self.degraded
    }

    /// Envoy's health_check filter arithmetic: whether usable hosts are at
    /// least `percent` of all hosts; an empty cluster meets only 0%.
    pub fn meets(&self, percent: f64) -> bool {
        if self.total == 0 {
            percent <= 0.0
        } else {
            100.0 * self.usable() as f64 >= self.total as f64 * percent
        }
    }
}

/// `membership_*` gauges.
#[derive(Debug)]
pub(super) struct Membership {
    pub(super) total: Gauge,
    pub(super) healthy: Gauge,
    pub(super) degraded: Gauge,
    pub(super) excluded: Gauge,
}

/// The hosts by priority and the plan over them. Shared with the health
/// checks' change callback, which rebuilds the plan.
#[derive(Debug)]
pub(super) struct Balancing {
    /// Levels in ascending priority number (0 first).
    pub(super) levels: Vec<(u32, Level<Arc<Host>>)>,
    // Rebuilt by whoever changes host health (the control thread, or a
    // worker on an immediate-fail header); loaded once per pick.
    pub(super) plan: ArcSwap<LoadPlan>,
    pub(super) overprovisioning: u32,
    pub(super) panic_threshold: f64,
    pub(super) membership: Membership,
    // Set while a rebuild is scheduled: a burst of changes (the first round
    // of checks over thousands of hosts) costs one recount, not one each.
    pub(super) rebuild_scheduled: AtomicBool,
    // Serialises rebuilds (the control thread's and a worker's after an
    // immediate-fail header), so the last plan stored is from the last count.
    pub(super) rebuilding: std::sync::Mutex<()>,
    pub(super) changes: crate::lifecycle::Changes,
}

impl Balancing {
    /// Asks for a rebuild on the current runtime, after the changes of the
    /// current tick; without a runtime, rebuilds now. Host flags are read
    /// on every pick, so a failed host is skipped even before the rebuild;
    /// the plan only sets the shares between levels and panic.
    pub(super) fn request_rebuild(self: &Arc<Self>) {
        if self.rebuild_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let me = Arc::clone(self);
                runtime.spawn(async move {
                    tokio::task::yield_now().await;
                    me.rebuild_scheduled.store(false, Ordering::Release);
                    me.rebuild();
                });
            }
            Err(_) => {
                self.rebuild_scheduled.store(false, Ordering::Release);
                self.rebuild();
            }
        }
    }

    /// Recounts hosts by health and republishes the plan and gauges.
    pub(super) fn rebuild(&self) {
        let _one_at_a_time = match self.rebuilding.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut all = LevelCounts::default();
        let counts: Vec<LevelCounts> = self
            .levels
            .iter()
            .map(|(_, level)| {
                let c = count_hosts(level.hosts());
                all.total += c.total;
                all.healthy += c.healthy;
                all.degraded += c.degraded;
                all.excluded += c.excluded;
                c
            })
            .collect();
        self.plan.store(Arc::new(LoadPlan::compute(
            &counts,
            self.overprovisioning,
            self.panic_threshold,
        )));
        self.membership.total.set(i64::from(all.total));
        self.membership.healthy.set(i64::from(all.healthy));
        self.membership.degraded.set(i64::from(all.degraded));
        self.membership.excluded.set(i64::from(all.excluded));
        self.changes.notify();
    }
}

/// Counts `hosts` by coarse health, as Envoy's membership stats do.
pub(super) fn count_hosts(hosts: &[Arc<Host>]) -> LevelCounts {
    let mut c = LevelCounts::default();
    for h in hosts {
        let bits = h.health.bits();
        c.total += 1;
        match health::coarse(bits) {
            Coarse::Healthy => c.healthy += 1,
            Coarse::Degraded => c.degraded += 1,
            Coarse::Unhealthy => {}
        }
        if bits & flags::EXCLUDED != 0 {
            c.excluded += 1;
        }
    }
    c
}
