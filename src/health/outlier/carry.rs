//! What a cluster's outlier detection knew of its hosts when a reload
//! replaced the cluster, handed to the detector of the cluster that
//! replaces it: an ejected host stays out until the time it was given, and
//! its ejection history keeps growing its next ejection time.
//!
//! Owns: exporting and importing the detector's per-host state by address.
//! Must not touch: host flags (the task brings them in line at start).

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::time::Instant;

use super::{Detector, HostState};

/// The outlier state of a stopped cluster's hosts, by address: consecutive
/// counters, ejection (with its multiplier, jitter and times), the number
/// of ejections and the request buckets; and when its next sweep was due.
/// Made by `Passive::retire`, taken in by `outlier::start`. Default:
/// nothing carried (every host starts afresh).
#[derive(Debug, Default)]
pub struct OutlierCarry {
    pub(super) hosts: HashMap<SocketAddr, HostState>,
    // When the old task's next sweep was due: the new task keeps the phase,
    // so an ejected host comes back at the sweep it would have.
    pub(super) next_sweep: Option<Instant>,
}

impl OutlierCarry {
    /// Hosts carried.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether nothing is carried.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Carried hosts that are ejected.
    pub fn ejected(&self) -> usize {
        self.hosts.values().filter(|h| h.ejected).count()
    }
}

impl Detector {
    /// Every host's state, by address (`addresses` in host order).
    pub(super) fn carry(&self, addresses: &[SocketAddr], next_sweep: Instant) -> OutlierCarry {
        OutlierCarry {
            hosts: addresses
                .iter()
                .zip(&self.hosts)
                .map(|(a, h)| (*a, h.clone()))
                .collect(),
            next_sweep: Some(next_sweep),
        }
    }

    /// Takes in the state of the hosts whose address is carried (the others
    /// keep a new state), then counts the ejected hosts again and sets
    /// `ejections_active` to match.
    pub(super) fn resume(&mut self, addresses: &[SocketAddr], carried: &OutlierCarry) {
        for (address, h) in addresses.iter().zip(&mut self.hosts) {
            if let Some(state) = carried.hosts.get(address) {
                *h = state.clone();
            }
        }
        let active = self.hosts.iter().filter(|h| h.ejected).count();
        self.active = u32::try_from(active).unwrap_or(u32::MAX);
        self.stats.ejections_active.set(i64::from(self.active));
    }
}
