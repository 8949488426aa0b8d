//! Upstream host health: the flags in Envoy's vocabulary and THE predicate
//! that turns them into "may take traffic".
//!
//! Owns: `HostHealth` (one `AtomicU32` of flags per host) and `eligible()`.
//! Active checkers, outlier detection and endpoint `health_status` set and
//! clear flags here; the balancer only reads them through `eligible()`.
//! Must not touch: the data path (`proxy/` imports this room, never the
//! reverse) or the config beyond the health-check model.

pub mod checker;
pub mod events;
pub mod outlier;
pub mod probe;
pub mod revival;
pub mod scheduler;
pub mod unresponsive;

use std::sync::atomic::{AtomicU32, Ordering};

use crate::config::model::HealthStatus;

/// Host health flags, with Envoy's bit values (`envoy/upstream/upstream.h`).
pub mod flags {
    /// Failed active health checking.
    pub const FAILED_ACTIVE_HC: u32 = 0x1;
    /// Ejected by outlier detection.
    pub const FAILED_OUTLIER_CHECK: u32 = 0x2;
    /// `health_status` UNHEALTHY or TIMEOUT.
    pub const FAILED_EDS_HEALTH: u32 = 0x4;
    /// Active HC answered with `x-envoy-degraded`.
    pub const DEGRADED_ACTIVE_HC: u32 = 0x8;
    /// `health_status` DEGRADED.
    pub const DEGRADED_EDS_HEALTH: u32 = 0x10;
    /// Removed by discovery, kept until its health says otherwise.
    pub const PENDING_DYNAMIC_REMOVAL: u32 = 0x20;
    /// Waiting for its first active check (excluded meanwhile).
    pub const PENDING_ACTIVE_HC: u32 = 0x40;
    /// `x-envoy-immediate-health-check-fail` seen.
    pub const EXCLUDED_VIA_IMMEDIATE_HC_FAIL: u32 = 0x80;
    /// The latest failed active check timed out.
    pub const ACTIVE_HC_TIMEOUT: u32 = 0x100;
    /// `health_status` DRAINING.
    pub const EDS_STATUS_DRAINING: u32 = 0x200;
    /// hale's own: requests wait on the host and it answers nothing while
    /// its peers answer (see `health::unresponsive`). Above Envoy's bits.
    pub const UNRESPONSIVE: u32 = 0x1_0000;

    /// Any of these makes a host unhealthy.
    pub const UNHEALTHY: u32 = FAILED_ACTIVE_HC
        | FAILED_OUTLIER_CHECK
        | FAILED_EDS_HEALTH
        | EDS_STATUS_DRAINING
        | UNRESPONSIVE;
    /// What the endpoint's configured `health_status` sets.
    pub const EDS: u32 = FAILED_EDS_HEALTH | DEGRADED_EDS_HEALTH | EDS_STATUS_DRAINING;
    /// Any of these (and none of `UNHEALTHY`) makes a host degraded.
    pub const DEGRADED: u32 = DEGRADED_ACTIVE_HC | DEGRADED_EDS_HEALTH;
    /// Any of these leaves a host out of the load-balancing denominators
    /// (it still takes traffic in panic).
    pub const EXCLUDED: u32 =
        PENDING_ACTIVE_HC | EXCLUDED_VIA_IMMEDIATE_HC_FAIL | EDS_STATUS_DRAINING;

    /// Names in the fixed order Envoy's `/clusters` prints them (hale's
    /// own last).
    pub const NAMES: [(u32, &str); 11] = [
        (FAILED_ACTIVE_HC, "failed_active_hc"),
        (FAILED_OUTLIER_CHECK, "failed_outlier_check"),
        (FAILED_EDS_HEALTH, "failed_eds_health"),
        (DEGRADED_ACTIVE_HC, "degraded_active_hc"),
        (DEGRADED_EDS_HEALTH, "degraded_eds_health"),
        (PENDING_DYNAMIC_REMOVAL, "pending_dynamic_removal"),
        (PENDING_ACTIVE_HC, "pending_active_hc"),
        (
            EXCLUDED_VIA_IMMEDIATE_HC_FAIL,
            "excluded_via_immediate_hc_fail",
        ),
        (ACTIVE_HC_TIMEOUT, "active_hc_timeout"),
        (EDS_STATUS_DRAINING, "eds_status_draining"),
        (UNRESPONSIVE, "hale_unresponsive"),
    ];
}

/// Envoy's coarse health of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coarse {
    /// No unhealthy or degraded flag.
    Healthy,
    /// A degraded flag and no unhealthy one.
    Degraded,
    /// Any unhealthy flag.
    Unhealthy,
}

/// The coarse health that `bits` amount to.
#[inline]
pub fn coarse(bits: u32) -> Coarse {
    if bits & flags::UNHEALTHY != 0 {
        Coarse::Unhealthy
    } else if bits & flags::DEGRADED != 0 {
        Coarse::Degraded
    } else {
        Coarse::Healthy
    }
}

/// THE predicate: may a host with these flags be picked for a request.
///
/// Healthy and degraded hosts may; the balancer prefers healthy ones first
/// (degraded hosts only take traffic healthy ones cannot).
#[inline]
pub fn eligible(bits: u32) -> bool {
    coarse(bits) != Coarse::Unhealthy
}

/// One host's flags.
///
/// Written by whoever owns a kind of health (config at build time; later the
/// active checker and the outlier task); read by the balancer on every pick
/// and by the admin. Relaxed ordering: a pick that sees a flag a moment late
/// is no worse than a check that ran a moment later.
#[derive(Debug, Default)]
pub struct HostHealth {
    bits: AtomicU32,
    /// What real traffic and checks say about the host's answers.
    pub liveness: unresponsive::Liveness,
}

impl HostHealth {
    /// A host whose flags start from its configured `health_status`.
    pub fn from_status(status: HealthStatus) -> Self {
        Self {
            bits: AtomicU32::new(status_flags(status)),
            liveness: unresponsive::Liveness::default(),
        }
    }

    /// The current flags.
    #[inline]
    pub fn bits(&self) -> u32 {
        self.bits.load(Ordering::Relaxed)
    }

    /// Sets `mask`.
    pub fn set(&self, mask: u32) {
        self.bits.fetch_or(mask, Ordering::Relaxed);
    }

    /// Clears `mask`.
    pub fn clear(&self, mask: u32) {
        self.bits.fetch_and(!mask, Ordering::Relaxed);
    }

    /// Replaces the bits under `mask` with those of `bits`, leaving the
    /// others (owned by someone else) as they are.
    pub fn replace(&self, mask: u32, bits: u32) {
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some((old & !mask) | (bits & mask))
            });
    }

    /// `eligible()` of the current flags.
    #[inline]
    pub fn eligible(&self) -> bool {
        eligible(self.bits())
    }
}

/// The flags an endpoint's `health_status` sets (Envoy's `setEdsHealthFlag`).
pub fn status_flags(status: HealthStatus) -> u32 {
    match status {
        HealthStatus::Unknown | HealthStatus::Healthy => 0,
        HealthStatus::Unhealthy | HealthStatus::Timeout => flags::FAILED_EDS_HEALTH,
        HealthStatus::Draining => flags::EDS_STATUS_DRAINING,
        HealthStatus::Degraded => flags::DEGRADED_EDS_HEALTH,
    }
}

/// Envoy's `/clusters` `health_flags` string: `healthy`, or `/flag/flag…`.
pub fn flags_text(bits: u32) -> String {
    if bits == 0 {
        return "healthy".to_string();
    }
    let mut out = String::new();
    for (bit, name) in flags::NAMES {
        if bits & bit != 0 {
            out.push('/');
            out.push_str(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_health_follows_envoy() {
        assert_eq!(coarse(0), Coarse::Healthy);
        assert_eq!(coarse(flags::PENDING_DYNAMIC_REMOVAL), Coarse::Healthy);
        assert_eq!(coarse(flags::DEGRADED_EDS_HEALTH), Coarse::Degraded);
        assert_eq!(
            coarse(flags::DEGRADED_ACTIVE_HC | flags::FAILED_OUTLIER_CHECK),
            Coarse::Unhealthy
        );
        assert!(!eligible(flags::EDS_STATUS_DRAINING));
    }

    #[test]
    fn flags_text_in_envoy_order() {
        assert_eq!(flags_text(0), "healthy");
        assert_eq!(
            flags_text(flags::FAILED_OUTLIER_CHECK | flags::FAILED_ACTIVE_HC),
            "/failed_active_hc/failed_outlier_check"
        );
        assert_eq!(
            flags_text(status_flags(HealthStatus::Draining)),
            "/eds_status_draining"
        );
    }
}
