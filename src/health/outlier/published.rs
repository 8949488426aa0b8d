//! What the detector's last sweep computed, published for `/clusters`.
//!
//! Owns: the rates as atomics (written by the outlier task at each sweep,
//! read by the admin). Must not touch: detection.

use std::sync::atomic::{AtomicU64, Ordering};

/// A success rate as `/clusters` prints it: a percentage, or -1 when the
/// last sweep did not compute one.
#[derive(Debug)]
pub struct Rate(AtomicU64);

impl Rate {
    pub(super) fn unknown() -> Self {
        Self(AtomicU64::new((-1.0f64).to_bits()))
    }

    pub(super) fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    /// The value (-1 when unknown).
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// What the last sweep computed, for `/clusters`. Written by the outlier
/// task at each sweep, read by the admin.
#[derive(Debug)]
pub struct Published {
    /// `outlier::success_rate_average`.
    pub success_rate_average: Rate,
    /// `outlier::success_rate_ejection_threshold`.
    pub success_rate_ejection_threshold: Rate,
    /// `outlier::local_origin_success_rate_average`.
    pub local_origin_success_rate_average: Rate,
    /// `outlier::local_origin_success_rate_ejection_threshold`.
    pub local_origin_success_rate_ejection_threshold: Rate,
    /// Per host: (`success_rate`, `local_origin_success_rate`).
    pub hosts: Vec<(Rate, Rate)>,
}

impl Published {
    pub(super) fn new(hosts: usize) -> Self {
        Self {
            success_rate_average: Rate::unknown(),
            success_rate_ejection_threshold: Rate::unknown(),
            local_origin_success_rate_average: Rate::unknown(),
            local_origin_success_rate_ejection_threshold: Rate::unknown(),
            hosts: (0..hosts)
                .map(|_| (Rate::unknown(), Rate::unknown()))
                .collect(),
        }
    }
}
