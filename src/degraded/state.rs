//! When a route is degraded, and why: its cluster has no usable host, a
//! declared dependency has none, or an operator said so (`POST /degraded`).
//! The host counts come from health flags, so degradation follows the
//! health checks' thresholds (their hysteresis) and never flaps faster.
//!
//! Owns: the reasons, their words, and the per-cluster operator modes.
//! Must not touch: cluster internals (callers pass usable-host counts).

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

/// Why a route is degraded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The route's cluster has no usable host.
    NoUsableHost(String),
    /// A declared dependency has no usable host.
    Dependency(String),
    /// An operator set the cluster degraded.
    Operator(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoUsableHost(c) => write!(f, "cluster {c} has no usable host"),
            Reason::Dependency(c) => write!(f, "dependency {c} has no usable host"),
            Reason::Operator(c) => write!(f, "cluster {c} set degraded by an operator"),
        }
    }
}

/// An operator's setting for one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Follow health (the default).
    Auto,
    /// Degraded whatever the health.
    On,
    /// Never degraded (requests go to the cluster, healthy or not).
    Off,
}

impl Mode {
    /// `on`, `off` or `auto`.
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "auto" => Some(Mode::Auto),
            "on" => Some(Mode::On),
            "off" => Some(Mode::Off),
            _ => None,
        }
    }

    /// The word `parse` reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::On => "on",
            Mode::Off => "off",
        }
    }

    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::On,
            2 => Mode::Off,
            _ => Mode::Auto,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Mode::Auto => 0,
            Mode::On => 1,
            Mode::Off => 2,
        }
    }
}

/// The operator modes of every cluster, read per request without a lock.
#[derive(Debug)]
pub struct Overrides {
    /// Sorted by cluster name.
    modes: Vec<(String, AtomicU8)>,
}

impl Overrides {
    /// Every cluster in `Auto`.
    pub fn new<'a>(clusters: impl IntoIterator<Item = &'a str>) -> Self {
        let mut modes: Vec<(String, AtomicU8)> = clusters
            .into_iter()
            .map(|c| (c.to_string(), AtomicU8::new(0)))
            .collect();
        modes.sort_by(|a, b| a.0.cmp(&b.0));
        Self { modes }
    }

    fn slot(&self, cluster: &str) -> Option<&AtomicU8> {
        self.modes
            .binary_search_by(|(name, _)| name.as_str().cmp(cluster))
            .ok()
            .and_then(|i| self.modes.get(i))
            .map(|(_, m)| m)
    }

    /// Sets `cluster`'s mode; `false` when there is no such cluster.
    pub fn set(&self, cluster: &str, mode: Mode) -> bool {
        match self.slot(cluster) {
            Some(slot) => {
                slot.store(mode.to_u8(), Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Takes over the modes `previous` set for clusters also here (a
    /// reload keeps what operators set).
    pub fn carry(&self, previous: &Overrides) {
        for (cluster, mode) in &previous.modes {
            if let Some(slot) = self.slot(cluster) {
                slot.store(mode.load(Ordering::Acquire), Ordering::Release);
            }
        }
    }

    /// `cluster`'s mode (`Auto` for an unknown name).
    pub fn get(&self, cluster: &str) -> Mode {
        self.slot(cluster)
            .map_or(Mode::Auto, |m| Mode::from_u8(m.load(Ordering::Acquire)))
    }
}

/// Whether a route to `cluster` (with `usable` hosts) is degraded, given
/// its dependencies' usable hosts and the cluster's operator mode.
pub fn decide<'a>(
    cluster: &str,
    usable: u64,
    dependencies: impl IntoIterator<Item = (&'a str, u64)>,
    mode: Mode,
) -> Option<Reason> {
    match mode {
        Mode::Off => None,
        Mode::On => Some(Reason::Operator(cluster.to_string())),
        Mode::Auto => {
            if usable == 0 {
                return Some(Reason::NoUsableHost(cluster.to_string()));
            }
            dependencies
                .into_iter()
                .find(|(_, usable)| *usable == 0)
                .map(|(name, _)| Reason::Dependency(name.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_decides_unless_an_operator_does() {
        assert_eq!(decide("api", 2, [("db", 1)], Mode::Auto), None);
        assert_eq!(
            decide("api", 0, [("db", 1)], Mode::Auto),
            Some(Reason::NoUsableHost("api".into()))
        );
        assert_eq!(
            decide("api", 2, [("cache", 1), ("db", 0)], Mode::Auto),
            Some(Reason::Dependency("db".into()))
        );
        assert_eq!(decide("api", 0, [("db", 0)], Mode::Off), None);
        assert_eq!(
            decide("api", 3, [], Mode::On),
            Some(Reason::Operator("api".into()))
        );
        assert_eq!(
            Reason::Dependency("db".into()).to_string(),
            "dependency db has no usable host"
        );
    }

    #[test]
    fn overrides_are_per_cluster() {
        let o = Overrides::new(["b", "a"]);
        assert!(o.set("a", Mode::On));
        assert!(!o.set("nope", Mode::On));
        assert_eq!(o.get("a"), Mode::On);
        assert_eq!(o.get("b"), Mode::Auto);
        assert_eq!(Mode::parse("off"), Some(Mode::Off));
        assert_eq!(Mode::parse("maybe"), None);
    }
}
