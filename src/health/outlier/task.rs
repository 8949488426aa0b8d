//! The task that owns one cluster's [`Detector`]: the data path reports
//! results through a bounded channel with `try_send` (never waiting; a full
//! channel drops the report and counts it), a timer runs Envoy's sweep every
//! `interval`, and ejections become `FAILED_OUTLIER_CHECK` on the host, told
//! once with the numbers that tripped them.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Action, Detector, Observation, OutlierStats};
use crate::config::model::OutlierDetection;
use crate::health::{HostHealth, flags};
use crate::stats::{Counter, Scope};

/// Reports queued before the data path starts dropping them.
const CHANNEL: usize = 8192;

enum Message {
    Observed(usize, Observation),
    ActiveCheckPassed(usize),
}

/// The data path's end: report and forget.
#[derive(Debug, Clone)]
pub struct Passive {
    /// What the sweeps computed, for `/clusters`.
    pub published: Arc<super::Published>,
    tx: mpsc::Sender<Message>,
    dropped: Counter,
    // Without split_external_local_origin_errors, a connection success
    // means nothing to the detector: not worth a message per request.
    split: bool,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Observed(h, o) => write!(f, "Observed({h}, {o:?})"),
            Message::ActiveCheckPassed(h) => write!(f, "ActiveCheckPassed({h})"),
        }
    }
}

impl Passive {
    /// What one attempt on `host` told. Never waits.
    pub fn report(&self, host: usize, what: Observation) {
        if what == Observation::ConnectSuccess && !self.split {
            return;
        }
        if self.tx.try_send(Message::Observed(host, what)).is_err() {
            self.dropped.inc();
        }
    }

    /// An active check passed on `host` (may un-eject it).
    pub fn active_check_passed(&self, host: usize) {
        if self.tx.try_send(Message::ActiveCheckPassed(host)).is_err() {
            self.dropped.inc();
        }
    }
}

/// One host as the outlier task sees it.
#[derive(Debug, Clone)]
pub struct WatchedHost {
    /// For people.
    pub address: SocketAddr,
    /// Where `FAILED_OUTLIER_CHECK` goes.
    pub health: Arc<HostHealth>,
}

/// Starts the outlier task of `cluster` on the current runtime, until `stop`.
pub fn start(
    cluster: String,
    config: OutlierDetection,
    hosts: Vec<WatchedHost>,
    scope: &Scope,
    on_change: Box<dyn Fn() + Send + Sync>,
    stop: CancellationToken,
) -> Passive {
    let (tx, rx) = mpsc::channel(CHANNEL);
    let split = config.split_external_local_origin_errors;
    let dropped = scope.counter("outlier_detection.reports_dropped");
    let detector = Detector::new(config.clone(), hosts.len(), OutlierStats::new(scope));
    let published = detector.published();
    let owner = Owner {
        cluster,
        hosts,
        detector,
        on_change,
    };
    tokio::spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = owner.run(rx, config.interval) => {}
        }
    });
    Passive {
        published,
        tx,
        dropped,
        split,
    }
}

struct Owner {
    cluster: String,
    hosts: Vec<WatchedHost>,
    detector: Detector,
    on_change: Box<dyn Fn() + Send + Sync>,
}

impl Owner {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>, interval: std::time::Duration) {
        let mut sweep = tokio::time::interval_at(Instant::now() + interval, interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut random = rand::random::<u64>;
        loop {
            let actions = tokio::select! {
                message = rx.recv() => match message {
                    None => return,
                    Some(Message::Observed(host, what)) => {
                        self.detector.observe(host, what, Instant::now(), &mut random)
                    }
                    Some(Message::ActiveCheckPassed(host)) => {
                        let eligible = self.hosts.get(host).is_some_and(|h| {
                            let bits = h.health.bits();
                            bits & flags::FAILED_OUTLIER_CHECK != 0 && bits & flags::FAILED_ACTIVE_HC == 0
                        });
                        if eligible {
                            self.detector.active_check_passed(host, Instant::now()).into_iter().collect()
                        } else {
                            Vec::new()
                        }
                    }
                },
                _ = sweep.tick() => self.detector.sweep(Instant::now(), &mut random),
            };
            self.apply(actions);
        }
    }

    fn apply(&self, actions: Vec<Action>) {
        let mut changed = false;
        for action in actions {
            match action {
                Action::Eject {
                    host,
                    kind,
                    duration,
                    reason,
                } => {
                    if let Some(h) = self.hosts.get(host) {
                        h.health.set(flags::FAILED_OUTLIER_CHECK);
                        changed = true;
                        tracing::warn!(
                            cluster = %self.cluster,
                            host = %h.address,
                            ejection = kind.envoy_name(),
                            seconds = duration.as_secs_f64(),
                            "host ejected by outlier detection: {reason}"
                        );
                    }
                }
                Action::Detected { host, kind } => {
                    if let Some(h) = self.hosts.get(host) {
                        tracing::info!(
                            cluster = %self.cluster,
                            host = %h.address,
                            ejection = kind.envoy_name(),
                            "outlier detected but not ejected (its enforcing_* percentage said no)"
                        );
                    }
                }
                Action::Uneject { host } => {
                    if let Some(h) = self.hosts.get(host) {
                        h.health.clear(flags::FAILED_OUTLIER_CHECK);
                        changed = true;
                        tracing::info!(cluster = %self.cluster, host = %h.address, "host back from outlier ejection");
                    }
                }
            }
        }
        if changed {
            (self.on_change)();
        }
    }
}
