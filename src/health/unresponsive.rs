//! Unresponsive hosts (hale's own; Envoy has no equivalent).
//!
//! A backend that hangs (stopped process, full accept queue, deadlocked
//! event loop) answers nothing, and neither active checks (seconds: timeout
//! × threshold) nor outlier detection (the first per-try or route timeout)
//! notice it before hundreds of requests have been sent into it. Real
//! traffic notices sooner: the host has requests waiting for response
//! headers, has answered none of them for a while, and its peers answer
//! theirs. Such a host is flagged `UNRESPONSIVE` (an unhealthy flag, so
//! panic mode still applies) until it answers one of the requests still
//! waiting on it, or, once nothing waits on it any more, until a hold time
//! runs out and it gets a trial (the hold doubles with each strike, up to
//! 30 s). A passing active check does not clear the flag: a health
//! endpoint that answers says little about requests that do not.
//!
//! "A while" is `unresponsive_after` (default 250 ms), or four times the
//! slowest response-header latency the cluster has shown recently,
//! whichever is longer, so a service that is simply slow is not flagged.
//!
//! Owns: [`Liveness`] (what the data path records per host) and the
//! per-cluster watch. Must not touch: the balancer (it asks for a rebuild
//! through `on_change`) or requests already in flight (they keep their own
//! timers: flagging a host only stops new requests going to it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{HostHealth, flags};

/// Default `unresponsive_after`.
pub const DEFAULT_AFTER: Duration = Duration::from_millis(250);
/// How often the watch looks.
const TICK: Duration = Duration::from_millis(50);
/// The slowest latency counts this many times over.
const SLOW_FACTOR: u64 = 4;
/// First hold time before an unanswered flagged host gets a trial.
const FIRST_HOLD: Duration = Duration::from_secs(1);
/// Longest hold time.
const MAX_HOLD: Duration = Duration::from_secs(30);

/// Milliseconds since the first call in this process (one clock for the
/// data path and the watch; 0 is reserved for "never").
fn millis(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_millis(1)).unwrap_or(now)
    });
    u64::try_from(at.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

/// What the data path and the active checks record about one host's
/// answers. Relaxed atomics: the watch tolerates a stale read for a tick.
// On a cache line of its own: written on every request, while the host's
// flags next to it are read on every pick.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Liveness {
    // Attempts waiting for response headers.
    awaiting: AtomicU32,
    // When the host last answered (`millis`), 0: never.
    answered_ms: AtomicU64,
    // When `awaiting` last went from 0 to 1.
    waiting_since_ms: AtomicU64,
    // Slowest response-header latency (ms) since the watch last looked.
    peak_ms: AtomicU64,
}

impl Liveness {
    /// An attempt was sent at `now`.
    #[inline]
    pub fn attempt_started(&self, now: Instant) {
        if self.awaiting.fetch_add(1, Ordering::Relaxed) == 0 {
            self.waiting_since_ms.store(millis(now), Ordering::Relaxed);
        }
    }

    /// An attempt sent at `started` got its response headers at `now`.
    #[inline]
    pub fn answered(&self, started: Instant, now: Instant) {
        self.answered_ms.store(millis(now), Ordering::Relaxed);
        let latency =
            u64::try_from(now.saturating_duration_since(started).as_millis()).unwrap_or(u64::MAX);
        if latency > self.peak_ms.load(Ordering::Relaxed) {
            self.peak_ms.fetch_max(latency, Ordering::Relaxed);
        }
    }

    /// An attempt is over (answered or not).
    #[inline]
    pub fn attempt_ended(&self) {
        // Paired with `attempt_started` by the data path's guard.
        self.awaiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One host as the watch sees it.
#[derive(Debug, Clone)]
pub struct WatchedHost {
    /// For people.
    pub address: SocketAddr,
    /// Where the flag goes, and the host's [`Liveness`].
    pub health: Arc<HostHealth>,
}

/// A change the watch made to one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Flagged: waiting `waited` with `awaiting` requests outstanding.
    Flagged {
        /// Host index.
        host: usize,
        /// How long it had answered nothing while requests waited.
        waited: Duration,
        /// Requests waiting on it.
        awaiting: u32,
        /// The threshold in force.
        threshold: Duration,
    },
    /// Unflagged because it answered.
    Answered(usize),
    /// Unflagged for a trial after its hold time, nothing waiting on it.
    Trial(usize),
}

#[derive(Debug, Clone, Copy, Default)]
struct HostState {
    flagged_at_ms: Option<u64>,
    readmit_at_ms: u64,
    strikes: u32,
}

/// The watch over one cluster's hosts (pure: the task feeds it the time).
#[derive(Debug)]
pub struct Watch {
    after: Duration,
    slow_ms: u64,
    hosts: Vec<HostState>,
    // Each host's last answer, refilled every tick (kept to reuse it).
    answered: Vec<u64>,
}

impl Watch {
    /// A watch over `hosts` hosts with threshold floor `after`.
    pub fn new(hosts: usize, after: Duration) -> Self {
        Self {
            after,
            slow_ms: 0,
            hosts: vec![HostState::default(); hosts],
            answered: Vec::with_capacity(hosts),
        }
    }

    /// The threshold in force: the floor, or the cluster's recent slowest
    /// answer times [`SLOW_FACTOR`].
    pub fn threshold(&self) -> Duration {
        self.after.max(Duration::from_millis(
            self.slow_ms.saturating_mul(SLOW_FACTOR),
        ))
    }

    /// Looks at every host at `now`; flags and unflags in `health`.
    pub fn tick(&mut self, now: Instant, health: &[&HostHealth]) -> Vec<Change> {
        let now_ms = millis(now);
        // The slowest answer decays by 1/16 per tick (halves in about a
        // second) so one slow response does not blind the watch for long.
        let peak = health
            .iter()
            .map(|h| h.liveness.peak_ms.swap(0, Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        self.slow_ms = peak.max(self.slow_ms - self.slow_ms / 16);
        let threshold = self.threshold();
        let threshold_ms = u64::try_from(threshold.as_millis()).unwrap_or(u64::MAX);
        let mut answered = std::mem::take(&mut self.answered);
        answered.clear();
        answered.extend(
            health
                .iter()
                .map(|h| h.liveness.answered_ms.load(Ordering::Relaxed)),
        );

        let mut changes = Vec::new();
        for (index, (h, state)) in health.iter().zip(self.hosts.iter_mut()).enumerate() {
            let live = &h.liveness;
            let awaiting = live.awaiting.load(Ordering::Relaxed);
            let last_answer = answered.get(index).copied().unwrap_or(0);
            if let Some(flagged_at) = state.flagged_at_ms {
                if last_answer > flagged_at {
                    state.flagged_at_ms = None;
                    state.strikes = 0;
                    h.clear(flags::UNRESPONSIVE);
                    changes.push(Change::Answered(index));
                } else if awaiting == 0 && now_ms >= state.readmit_at_ms {
                    state.flagged_at_ms = None;
                    h.clear(flags::UNRESPONSIVE);
                    changes.push(Change::Trial(index));
                }
                continue;
            }
            if awaiting == 0 {
                continue;
            }
            let quiet_since = last_answer.max(live.waiting_since_ms.load(Ordering::Relaxed));
            let waited_ms = now_ms.saturating_sub(quiet_since);
            if waited_ms < threshold_ms {
                continue;
            }
            // Only a host that is quiet while its peers answer: when the
            // whole cluster is silent the fault is not this host's.
            let peers_answer = answered
                .iter()
                .enumerate()
                .any(|(j, &at)| j != index && at > 0 && now_ms.saturating_sub(at) < threshold_ms);
            if !peers_answer {
                continue;
            }
            state.strikes = state.strikes.saturating_add(1);
            let hold = FIRST_HOLD
                .saturating_mul(1 << (state.strikes - 1).min(16))
                .min(MAX_HOLD);
            state.flagged_at_ms = Some(now_ms);
            state.readmit_at_ms = now_ms + u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
            h.set(flags::UNRESPONSIVE);
            changes.push(Change::Flagged {
                host: index,
                waited: Duration::from_millis(waited_ms),
                awaiting,
                threshold,
            });
        }
        self.answered = answered;
        changes
    }
}

/// Starts the watch of `cluster` on the current runtime, until `stop`.
pub fn start(
    cluster: String,
    hosts: Vec<WatchedHost>,
    after: Duration,
    on_change: Box<dyn Fn() + Send + Sync>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut watch = Watch::new(hosts.len(), after);
        let health: Vec<&HostHealth> = hosts.iter().map(|h| h.health.as_ref()).collect();
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let changes = watch.tick(Instant::now(), &health);
            for change in &changes {
                log(&cluster, &hosts, change);
            }
            if !changes.is_empty() {
                on_change();
            }
        }
    });
}

fn log(cluster: &str, hosts: &[WatchedHost], change: &Change) {
    let address = |i: usize| {
        hosts
            .get(i)
            .map(|h| h.address.to_string())
            .unwrap_or_default()
    };
    match change {
        Change::Flagged {
            host,
            waited,
            awaiting,
            threshold,
        } => tracing::warn!(
            cluster,
            host = %address(*host),
            waited_ms = waited.as_millis() as u64,
            awaiting,
            threshold_ms = threshold.as_millis() as u64,
            "host unresponsive: requests waiting and no answer while its peers answer; no new requests until it answers"
        ),
        Change::Answered(host) => {
            tracing::info!(cluster, host = %address(*host), "host answers again; back in rotation");
        }
        Change::Trial(host) => tracing::info!(
            cluster,
            host = %address(*host),
            "unresponsive host's hold time is over; back in rotation on trial"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<HostHealth> {
        (0..n).map(|_| HostHealth::default()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_host_is_flagged_while_peers_answer_and_back_when_it_answers() {
        let hs = hosts(3);
        let refs: Vec<&HostHealth> = hs.iter().collect();
        let mut watch = Watch::new(3, DEFAULT_AFTER);
        let t0 = Instant::now();
        // Everyone answers quickly at first.
        for h in &hs {
            h.liveness.attempt_started(t0);
            h.liveness.answered(t0, t0 + Duration::from_millis(1));
            h.liveness.attempt_ended();
        }
        assert!(watch.tick(t0 + Duration::from_millis(10), &refs).is_empty());
        // Host 0 hangs with requests waiting; the others keep answering.
        let hang = t0 + Duration::from_millis(20);
        hs[0].liveness.attempt_started(hang);
        hs[0].liveness.attempt_started(hang);
        let mut now = hang;
        let mut flagged_at = None;
        while flagged_at.is_none() && now < hang + Duration::from_secs(1) {
            now += TICK;
            tokio::time::advance(TICK).await;
            for h in &hs[1..] {
                h.liveness.attempt_started(now);
                h.liveness.answered(now, now);
                h.liveness.attempt_ended();
            }
            if let Some(Change::Flagged {
                host: 0,
                awaiting: 2,
                ..
            }) = watch.tick(now, &refs).first()
            {
                flagged_at = Some(now);
            }
        }
        let flagged_at = flagged_at.expect("host 0 flagged");
        assert!(flagged_at - hang >= DEFAULT_AFTER);
        assert!(flagged_at - hang < DEFAULT_AFTER + 2 * TICK);
        assert!(hs[0].bits() & flags::UNRESPONSIVE != 0);
        assert!(!hs[0].eligible());

        // It answers one of them: back at the next tick.
        now += TICK;
        hs[0].liveness.answered(hang, now);
        assert_eq!(watch.tick(now, &refs), vec![Change::Answered(0)]);
        assert!(hs[0].eligible());
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_cluster_or_a_slow_service_is_not_flagged() {
        let hs = hosts(2);
        let refs: Vec<&HostHealth> = hs.iter().collect();
        let mut watch = Watch::new(2, DEFAULT_AFTER);
        let t0 = Instant::now();
        // Both hosts wait and nobody answers: not one host's fault.
        hs[0].liveness.attempt_started(t0);
        hs[1].liveness.attempt_started(t0);
        assert!(watch.tick(t0 + Duration::from_secs(2), &refs).is_empty());

        // A service whose answers take 400 ms: the threshold follows it.
        let hs = hosts(2);
        let refs: Vec<&HostHealth> = hs.iter().collect();
        let mut watch = Watch::new(2, DEFAULT_AFTER);
        hs[1].liveness.answered(t0, t0 + Duration::from_millis(400));
        assert!(
            watch
                .tick(t0 + Duration::from_millis(400), &refs)
                .is_empty()
        );
        assert_eq!(watch.threshold(), Duration::from_millis(1600));
        hs[0]
            .liveness
            .attempt_started(t0 + Duration::from_millis(400));
        hs[1].liveness.answered(t0, t0 + Duration::from_millis(800));
        assert!(
            watch
                .tick(t0 + Duration::from_millis(900), &refs)
                .is_empty()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_flag_gives_a_trial_after_a_growing_hold() {
        let hs = hosts(2);
        let refs: Vec<&HostHealth> = hs.iter().collect();
        let mut watch = Watch::new(2, DEFAULT_AFTER);
        let t0 = Instant::now() + Duration::from_millis(10);
        hs[0].liveness.attempt_started(t0);
        let t1 = t0 + Duration::from_millis(300);
        hs[1].liveness.answered(t1, t1);
        assert!(matches!(
            watch.tick(t1, &refs)[..],
            [Change::Flagged { host: 0, .. }]
        ));
        // Its request times out; nothing waits on it; a second later it
        // gets a trial.
        hs[0].liveness.attempt_ended();
        assert!(
            watch
                .tick(t1 + Duration::from_millis(500), &refs)
                .is_empty()
        );
        assert_eq!(watch.tick(t1 + FIRST_HOLD, &refs), vec![Change::Trial(0)]);
        // Still silent on the trial: flagged again, held twice as long.
        let t2 = t1 + FIRST_HOLD + Duration::from_millis(10);
        hs[0].liveness.attempt_started(t2);
        let t3 = t2 + Duration::from_millis(300);
        hs[1].liveness.answered(t3, t3);
        assert!(matches!(
            watch.tick(t3, &refs)[..],
            [Change::Flagged { host: 0, .. }]
        ));
        hs[0].liveness.attempt_ended();
        assert!(watch.tick(t3 + FIRST_HOLD, &refs).is_empty());
        assert_eq!(
            watch.tick(t3 + 2 * FIRST_HOLD, &refs),
            vec![Change::Trial(0)]
        );
    }
}
