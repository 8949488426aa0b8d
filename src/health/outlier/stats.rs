//! `cluster.<name>.outlier_detection.*` stats.
//!
//! Owns: their registration under the names Envoy's code emits.
//! Must not touch: detection.

use super::Ejection;
use crate::stats::{Counter, Gauge, Scope};

/// `cluster.<name>.outlier_detection.*`, with the names Envoy's code emits.
#[derive(Debug)]
pub struct OutlierStats {
    pub(super) ejections_active: Gauge,
    pub(super) ejections_overflow: Counter,
    pub(super) ejections_enforced_total: Counter,
    pub(super) ejections_total: Counter,
    pub(super) ejections_consecutive_5xx: Counter,
    pub(super) ejections_success_rate: Counter,
    pub(super) detected: [Counter; 7],
    pub(super) enforced: [Counter; 7],
}

impl OutlierStats {
    /// Registers the stats under `cluster.<name>.outlier_detection.`.
    pub fn new(scope: &Scope) -> Self {
        let c = |n: &str| scope.counter(&format!("outlier_detection.{n}"));
        let by = |prefix: &str| Ejection::ALL.map(|e| c(&format!("{prefix}_{}", e.stat_suffix())));
        Self {
            ejections_active: scope.gauge("outlier_detection.ejections_active"),
            ejections_overflow: c("ejections_overflow"),
            ejections_enforced_total: c("ejections_enforced_total"),
            ejections_total: c("ejections_total"),
            ejections_consecutive_5xx: c("ejections_consecutive_5xx"),
            ejections_success_rate: c("ejections_success_rate"),
            detected: by("ejections_detected"),
            enforced: by("ejections_enforced"),
        }
    }
}
