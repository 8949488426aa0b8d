//! hale's own phase: Initializing → Live → Draining → Stopped, published in
//! a watch so the admin (and later the probe server) read one truth.
//!
//! Owns: the phase, its Envoy names and numbers (`/ready`, `server.state`),
//! and the `server.live` / `server.state` gauges.
//! Must not touch: upstream health. hale's phase never depends on whether
//! its upstreams are up (that is what readiness policy, later, is for).

use tokio::sync::watch;

use crate::stats::{Gauge, Store};

/// The server's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Config loaded, listeners not yet serving (Envoy INITIALIZING).
    Initializing,
    /// Serving (Envoy LIVE).
    Live,
    /// Shutting down: not accepting, finishing in-flight requests.
    Draining,
    /// Every listener and connection is closed.
    Stopped,
}

impl Phase {
    /// Envoy's `ServerInfo.State` name, as `/ready` and `/server_info` print it.
    pub fn envoy_name(self) -> &'static str {
        match self {
            Phase::Initializing => "INITIALIZING",
            Phase::Live => "LIVE",
            Phase::Draining | Phase::Stopped => "DRAINING",
        }
    }

    /// Envoy's `ServerInfo.State` number (`server.state` gauge).
    pub fn envoy_number(self) -> i64 {
        match self {
            Phase::Live => 0,
            Phase::Draining | Phase::Stopped => 1,
            Phase::Initializing => 3,
        }
    }
}

/// The published phase. Cheap to clone; every clone sees the same phase.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    tx: watch::Sender<Phase>,
    live: Gauge,
    state: Gauge,
}

impl Lifecycle {
    /// Starts in `Initializing`, with its gauges registered in `store`.
    pub fn new(store: &Store) -> Self {
        let (tx, _rx) = watch::channel(Phase::Initializing);
        let lifecycle = Self {
            tx,
            live: store.gauge("server.live"),
            state: store.gauge("server.state"),
        };
        lifecycle.publish(Phase::Initializing);
        lifecycle
    }

    /// Moves to `phase` (phases only move forward; an earlier one is ignored).
    pub fn advance(&self, phase: Phase) {
        let moved = self.tx.send_if_modified(|current| {
            if rank(phase) > rank(*current) {
                *current = phase;
                true
            } else {
                false
            }
        });
        if moved {
            self.publish(phase);
        }
    }

    fn publish(&self, phase: Phase) {
        self.live.set(i64::from(phase == Phase::Live));
        self.state.set(phase.envoy_number());
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.tx.borrow()
    }

    /// A receiver that sees every later change.
    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.tx.subscribe()
    }
}

fn rank(phase: Phase) -> u8 {
    match phase {
        Phase::Initializing => 0,
        Phase::Live => 1,
        Phase::Draining => 2,
        Phase::Stopped => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward_and_publish_gauges() {
        let store = Store::new();
        let lc = Lifecycle::new(&store);
        assert_eq!(lc.phase(), Phase::Initializing);
        lc.advance(Phase::Live);
        assert!(store.render_text(None, false).contains("server.live: 1\n"));
        lc.advance(Phase::Draining);
        lc.advance(Phase::Live);
        assert_eq!(lc.phase(), Phase::Draining);
        let text = store.render_text(None, false);
        assert!(text.contains("server.live: 0\n"), "{text}");
        assert!(text.contains("server.state: 1\n"), "{text}");
    }
}
