//! What a cluster's active checks knew of its hosts when a reload replaced
//! the cluster, handed to the checks of the cluster that replaces it, so a
//! host known bad is not taken for new and a healthy one is not re-warmed.
//!
//! Owns: collecting the stopped sessions' state, and matching it to the new
//! cluster's hosts (same address and check address) and checks (equal
//! config). Must not touch: host flags (`ActiveChecks::start` publishes the
//! carried ones) or the sessions' timers.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{ActiveChecks, CheckedHost, lock};
use crate::config::model::HealthCheck;
use crate::health::checker::{Session, Thresholds};

/// The sessions of one check, by host (address, check address).
pub(super) type Sessions = HashMap<(SocketAddr, SocketAddr), Session>;

/// The state of every session of a stopped cluster's active checks: per
/// check (its whole config), each host's session by (address, check
/// address). Made by [`ActiveChecks::carry`], taken in by
/// [`ActiveChecks::start`] through `ClusterChecks::carried`. Default:
/// nothing carried (every host starts afresh).
#[derive(Debug, Default)]
pub struct CheckCarry {
    // One entry per check of the old cluster, in its order.
    checks: Vec<(HealthCheck, Sessions)>,
}

impl CheckCarry {
    /// Sessions carried (hosts × checks).
    pub fn len(&self) -> usize {
        self.checks.iter().map(|(_, s)| s.len()).sum()
    }

    /// Whether nothing is carried.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// For each of `checks`, the sessions of an equal check of the old
    /// cluster; none for a new or changed check. Each old check serves one
    /// new one, in order (a cluster may list the same check twice).
    pub(super) fn take_matches(mut self, checks: &[HealthCheck]) -> Vec<Sessions> {
        checks
            .iter()
            .map(
                |check| match self.checks.iter().position(|(old, _)| old == check) {
                    Some(i) => self.checks.remove(i).1,
                    None => Sessions::new(),
                },
            )
            .collect()
    }
}

/// The carried session of `host`, if its address and check address are
/// those of a host of the old cluster.
pub(super) fn session(carried: &Sessions, host: &CheckedHost) -> Option<Session> {
    carried.get(&(host.address, host.check_address)).cloned()
}

impl ActiveChecks {
    /// The state of every session, for the cluster that replaces this one.
    ///
    /// Call it right after cancelling the `stop` token given to
    /// [`ActiveChecks::start`], with no `.await` in between: from the
    /// cancellation on, no session applies or publishes another result, and
    /// an immediate-fail mark the data path queued that a session had not
    /// taken yet is still there to be taken here (a session's task, once
    /// dropped, drops its queued mark). Called before the cancellation, a
    /// session could still publish a result after its state was carried.
    pub fn carry(&self) -> CheckCarry {
        let shared = &self.shared;
        let checks = shared
            .checks
            .iter()
            .enumerate()
            .map(|(c, (hc, _, _))| {
                let th = Thresholds::from(hc);
                let sessions = shared
                    .hosts
                    .iter()
                    .enumerate()
                    .filter_map(|(h, host)| {
                        let mut session = lock(shared.sessions.get(h)?.get(c)?).clone();
                        // A mark still queued (the channel holds one at most):
                        // taken now, as the session would have taken it.
                        let queued = self
                            .passive
                            .get(h)
                            .and_then(|p| p.get(c))
                            .is_some_and(|tx| tx.capacity() == 0);
                        if queued {
                            session.immediate_fail(th);
                            shared.stats.failure.inc();
                            shared.stats.passive_failure.inc();
                        }
                        Some(((host.address, host.check_address), session))
                    })
                    .collect();
                (hc.clone(), sessions)
            })
            .collect();
        CheckCarry { checks }
    }
}
