//! The validated `outlier_detection` of a cluster, with Envoy's defaults
//! (several `enforcing_*` default to 0: detected, not enforced).
//!
//! Owns: the typed shape of `envoy.config.cluster.v3.OutlierDetection`.
//! Must not touch: runtime state; the outlier task reads this.

use std::time::Duration;

/// `outlier_detection`. Every field documents Envoy's default.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    /// `consecutive_5xx`. Default 5.
    pub consecutive_5xx: u32,
    /// `consecutive_gateway_failure` (502, 503, 504). Default 5.
    pub consecutive_gateway_failure: u32,
    /// `consecutive_local_origin_failure` (split mode only). Default 5.
    pub consecutive_local_origin_failure: u32,
    /// `split_external_local_origin_errors`. Default false.
    pub split_external_local_origin_errors: bool,
    /// `interval`: the sweep period. Default 10s.
    pub interval: Duration,
    /// `base_ejection_time`. Default 30s.
    pub base_ejection_time: Duration,
    /// `max_ejection_time`. Default max(300s, base_ejection_time).
    pub max_ejection_time: Duration,
    /// `max_ejection_time_jitter`. Default 0.
    pub max_ejection_time_jitter: Duration,
    /// `max_ejection_percent`. Default 10.
    pub max_ejection_percent: u32,
    /// `always_eject_one_host`. Default false.
    pub always_eject_one_host: bool,
    /// `enforcing_consecutive_5xx` (percent chance). Default 100.
    pub enforcing_consecutive_5xx: u32,
    /// `enforcing_consecutive_gateway_failure`. Default 0.
    pub enforcing_consecutive_gateway_failure: u32,
    /// `enforcing_consecutive_local_origin_failure`. Default 100.
    pub enforcing_consecutive_local_origin_failure: u32,
    /// `enforcing_success_rate`. Default 100.
    pub enforcing_success_rate: u32,
    /// `enforcing_local_origin_success_rate`. Default 100.
    pub enforcing_local_origin_success_rate: u32,
    /// `enforcing_failure_percentage`. Default 0.
    pub enforcing_failure_percentage: u32,
    /// `enforcing_failure_percentage_local_origin`. Default 0.
    pub enforcing_failure_percentage_local_origin: u32,
    /// `success_rate_minimum_hosts`. Default 5.
    pub success_rate_minimum_hosts: u32,
    /// `success_rate_request_volume` (per interval). Default 100.
    pub success_rate_request_volume: u32,
    /// `success_rate_stdev_factor` (÷ 1000). Default 1900.
    pub success_rate_stdev_factor: u32,
    /// `failure_percentage_threshold`. Default 85.
    pub failure_percentage_threshold: u32,
    /// `failure_percentage_minimum_hosts`. Default 5.
    pub failure_percentage_minimum_hosts: u32,
    /// `failure_percentage_request_volume`. Default 50.
    pub failure_percentage_request_volume: u32,
    /// `successful_active_health_check_uneject_host`. Default true.
    pub successful_active_health_check_uneject_host: bool,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_5xx: 5,
            consecutive_gateway_failure: 5,
            consecutive_local_origin_failure: 5,
            split_external_local_origin_errors: false,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_time_jitter: Duration::ZERO,
            max_ejection_percent: 10,
            always_eject_one_host: false,
            enforcing_consecutive_5xx: 100,
            enforcing_consecutive_gateway_failure: 0,
            enforcing_consecutive_local_origin_failure: 100,
            enforcing_success_rate: 100,
            enforcing_local_origin_success_rate: 100,
            enforcing_failure_percentage: 0,
            enforcing_failure_percentage_local_origin: 0,
            success_rate_minimum_hosts: 5,
            success_rate_request_volume: 100,
            success_rate_stdev_factor: 1900,
            failure_percentage_threshold: 85,
            failure_percentage_minimum_hosts: 5,
            failure_percentage_request_volume: 50,
            successful_active_health_check_uneject_host: true,
        }
    }
}
