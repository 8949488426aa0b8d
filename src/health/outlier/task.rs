//! The task that owns one cluster's [`Detector`]: the data path reports
//! results through a bounded channel with `try_send` (never waiting; a full
//! channel drops the report and counts it), a timer runs Envoy's sweep every
//! `interval`, and ejections become `FAILED_OUTLIER_CHECK` on the host, told
//! once with the numbers that tripped them. When a reload replaces the
//! cluster, the task hands its detector's state over ([`Passive::retire`])
//! and the next cluster's task starts from it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Action, Detector, Observation, OutlierCarry, OutlierStats};
use crate::config::model::OutlierDetection;
use crate::health::{HostHealth, flags};
use crate::stats::{Counter, Scope};

/// Reports queued before the data path starts dropping them.
const CHANNEL: usize = 8192;

enum Message {
    Observed(usize, Observation),
    ActiveCheckPassed(usize),
    // Hand the detector's state over and stop.
    Retire(oneshot::Sender<OutlierCarry>),
}

/// The state the task leaves when its stop token ends it. Written by the
/// task as it stops; taken by `Passive::retire`.
type Left = Arc<Mutex<Option<OutlierCarry>>>;

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
    left: Left,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Observed(h, o) => write!(f, "Observed({h}, {o:?})"),
            Message::ActiveCheckPassed(h) => write!(f, "ActiveCheckPassed({h})"),
            Message::Retire(_) => write!(f, "Retire"),
        }
    }
}

impl Passive {
    /// What one attempt on `host` told. Never waits.
    pub fn report(&self, host: usize, what: Observation) {
        if what == Observation::ConnectSuccess && !self.split {
            return;
        }
        self.send(Message::Observed(host, what));
    }

    /// An active check passed on `host` (may un-eject it).
    pub fn active_check_passed(&self, host: usize) {
        self.send(Message::ActiveCheckPassed(host));
    }

    fn send(&self, message: Message) {
        // A stopped task (retired by a reload, or shut down) drops nothing
        // worth counting: only a full channel is back pressure.
        if let Err(TrySendError::Full(_)) = self.tx.try_send(message) {
            self.dropped.inc();
        }
    }

    /// Stops the outlier task and returns its detector's state, for the
    /// cluster that replaces this one (a reload): give it to
    /// [`start`](super::start) as `carried`.
    ///
    /// Reports queued before are taken in first; reports after it are
    /// dropped, uncounted. It works before or after the cluster's stop token
    /// is cancelled (a task ended by the token leaves its state for this);
    /// it returns an empty carry only if called a second time.
    pub async fn retire(&self) -> OutlierCarry {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Message::Retire(reply)).await.is_ok()
            && let Ok(carry) = answer.await
        {
            return carry;
        }
        // The task had stopped, or stopped before it read the request: it
        // left its state (after its last action) before dropping either.
        self.left
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default()
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

/// Starts the outlier task of `cluster` on the current runtime, until `stop`
/// (or [`Passive::retire`]).
///
/// `carried` is what the detector of the cluster this one replaces knew (a
/// reload): hosts with a carried address go on from their state (an
/// ejected one stays out until its time, on the old sweep's schedule), the
/// others start afresh. Every host's `FAILED_OUTLIER_CHECK` is brought in
/// line with the detector's state before this returns.
pub fn start(
    cluster: String,
    config: OutlierDetection,
    hosts: Vec<WatchedHost>,
    scope: &Scope,
    on_change: Box<dyn Fn() + Send + Sync>,
    stop: CancellationToken,
    carried: Option<OutlierCarry>,
) -> Passive {
    let (tx, rx) = mpsc::channel(CHANNEL);
    let split = config.split_external_local_origin_errors;
    let dropped = scope.counter("outlier_detection.reports_dropped");
    let mut detector = Detector::new(config.clone(), hosts.len(), OutlierStats::new(scope));
    let carried = carried.unwrap_or_default();
    let addresses: Vec<SocketAddr> = hosts.iter().map(|h| h.address).collect();
    detector.resume(&addresses, &carried);
    // The task owns FAILED_OUTLIER_CHECK: a carried ejection keeps it (the
    // flags are usually the old cluster's, already set), anything else has
    // it cleared, or no sweep would ever clear it.
    let mut changed = false;
    for (i, h) in hosts.iter().enumerate() {
        let was = h.health.bits() & flags::FAILED_OUTLIER_CHECK != 0;
        let is = detector.is_ejected(i);
        if is && !was {
            h.health.set(flags::FAILED_OUTLIER_CHECK);
        } else if was && !is {
            h.health.clear(flags::FAILED_OUTLIER_CHECK);
        }
        changed |= is != was;
    }
    if changed {
        on_change();
    }
    let now = Instant::now();
    let first_sweep = carried
        .next_sweep
        .map_or(now + config.interval, |due| due.min(now + config.interval));
    let published = detector.published();
    let left = Left::default();
    let owner = Owner {
        cluster,
        hosts,
        addresses,
        detector,
        on_change,
    };
    let leave = Arc::clone(&left);
    tokio::spawn(owner.run(rx, config.interval, first_sweep, stop, leave));
    Passive {
        published,
        tx,
        dropped,
        split,
        left,
    }
}

struct Owner {
    cluster: String,
    hosts: Vec<WatchedHost>,
    // The hosts' addresses, in host order (what a carry is keyed by).
    addresses: Vec<SocketAddr>,
    detector: Detector,
    on_change: Box<dyn Fn() + Send + Sync>,
}

impl Owner {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Message>,
        interval: std::time::Duration,
        first_sweep: Instant,
        stop: CancellationToken,
        left: Left,
    ) {
        // Every `interval` from the first; a sweep missed altogether (the
        // task was busy) delays the next (tokio's `MissedTickBehavior::Delay`).
        let sweep = tokio::time::sleep_until(first_sweep);
        tokio::pin!(sweep);
        let mut random = rand::random::<u64>;
        loop {
            let actions = tokio::select! {
                // Stopped: nothing more is applied, and the state is left for
                // `Passive::retire`. Then a due sweep, before reports (a
                // steady stream of reports must not hold sweeps back).
                biased;
                () = stop.cancelled() => {
                    let carry = self.detector.carry(&self.addresses, sweep.deadline());
                    *left.lock().unwrap_or_else(PoisonError::into_inner) = Some(carry);
                    return;
                }
                () = &mut sweep => {
                    let now = Instant::now();
                    let next = sweep.deadline() + interval;
                    sweep.as_mut().reset(if next > now { next } else { now + interval });
                    self.detector.sweep(now, &mut random)
                }
                message = rx.recv() => match message {
                    None => return,
                    Some(Message::Retire(reply)) => {
                        let _ = reply.send(self.detector.carry(&self.addresses, sweep.deadline()));
                        return;
                    }
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
