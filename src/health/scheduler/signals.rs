//! What the sessions of active checking signal to the rest of hale, and
//! wait on: the first-round warm-up count (hale goes LIVE, and a reload
//! swaps in a new cluster, when it reaches zero) and a cluster's first
//! traffic (which ends the no-traffic intervals).
//!
//! Owns: those two counters and their wake-ups.
//! Must not touch: the sessions themselves (`scheduler.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Counts sessions that have not had their first result, and wakes a
/// waiter when none is left (hale goes LIVE only then, like Envoy's
/// cluster warming).
#[derive(Debug, Default)]
pub struct Warmup {
    pending: AtomicUsize,
    total: AtomicUsize,
    notify: Notify,
}

impl Warmup {
    /// A counter with nothing pending.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(super) fn add(&self, n: usize) {
        self.total.fetch_add(n, Ordering::SeqCst);
        self.pending.fetch_add(n, Ordering::SeqCst);
    }

    /// Sessions counted so far (one per host and check).
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    pub(super) fn done_one(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.notify.notify_waiters();
        }
    }

    /// Sessions still waiting for their first result.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Resolves once every session has had a first result.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.pending() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Whether a cluster has carried traffic yet, and a wake-up when it first
/// does.
///
/// Envoy picks `no_traffic_interval` (60 s by default) for the next check
/// while a cluster has had no traffic, and keeps that wait even when
/// traffic starts a moment later: for up to a minute a failed host goes
/// unnoticed by active checks while requests flow. hale cuts the wait
/// short when the first connection is made (see docs/health.md).
#[derive(Debug, Default)]
pub struct FirstTraffic {
    seen: std::sync::atomic::AtomicBool,
    arrived: Notify,
}

impl FirstTraffic {
    /// The cluster made (or tried) an upstream connection.
    #[inline]
    pub fn mark(&self) {
        if !self.seen.load(Ordering::Relaxed) && !self.seen.swap(true, Ordering::AcqRel) {
            self.arrived.notify_waiters();
        }
    }

    /// Whether the cluster has had traffic.
    pub fn seen(&self) -> bool {
        self.seen.load(Ordering::Acquire)
    }

    /// Resolves once the cluster has had traffic.
    pub async fn arrived(&self) {
        loop {
            let notified = self.arrived.notified();
            if self.seen() {
                return;
            }
            notified.await;
        }
    }
}
