//! Passive health checking: a cluster's `outlier_detection`.
//!
//! Owns: decoding an `OutlierDetection` into [`OutlierDetection`]: each
//! field with Envoy's default (several `enforcing_*` default to 0: detected,
//! not enforced), the bounds Envoy's proto puts on them (percentages at most
//! 100, durations more than 0s), `max_ejection_time`'s default of
//! max(300s, `base_ejection_time`), and Envoy's creation error when it is set
//! below `base_ejection_time`. The block's presence is what enables
//! detection; the cluster decoder calls this only when it is set.
//!
//! Must not touch: the rest of the cluster, the bootstrap's
//! `cluster_manager.outlier_detection` (still unsupported), and what the
//! values do at run time (ejection is `health::outlier`'s).

use std::time::Duration;

use crate::config::envoy::messages::OUTLIER_DETECTION;
use crate::config::envoy::reader::{Node, Object, Sink};
use crate::config::model::OutlierDetection;

/// Envoy's `DEFAULT_MAX_EJECTION_TIME_MS`: the floor of the default
/// `max_ejection_time`.
const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// Decodes `outlier_detection`; `{}` gives Envoy's defaults.
pub(super) fn decode(sink: &mut Sink, node: &Node<'_>) -> Option<OutlierDetection> {
    let od = node.open(sink, &OUTLIER_DETECTION)?;
    let d = OutlierDetection::default();
    let consecutive_5xx = count(sink, &od, "consecutive_5xx", d.consecutive_5xx);
    let consecutive_gateway_failure = count(
        sink,
        &od,
        "consecutive_gateway_failure",
        d.consecutive_gateway_failure,
    );
    let consecutive_local_origin_failure = count(
        sink,
        &od,
        "consecutive_local_origin_failure",
        d.consecutive_local_origin_failure,
    );
    // A plain `bool` in Envoy's proto, not a `BoolValue`.
    let split_external_local_origin_errors = od.optional(
        sink,
        "split_external_local_origin_errors",
        d.split_external_local_origin_errors,
        |node, sink| node.bool(sink),
    );
    let interval = positive(sink, &od, "interval").map(|set| set.unwrap_or(d.interval));
    let base_ejection_time =
        positive(sink, &od, "base_ejection_time").map(|set| set.unwrap_or(d.base_ejection_time));
    let max_ejection_time = positive(sink, &od, "max_ejection_time");
    let max_ejection_time_jitter = od.optional(
        sink,
        "max_ejection_time_jitter",
        d.max_ejection_time_jitter,
        |node, sink| node.duration(sink),
    );
    let max_ejection_percent = percent(sink, &od, "max_ejection_percent", d.max_ejection_percent);
    let always_eject_one_host = flag(sink, &od, "always_eject_one_host", d.always_eject_one_host);
    let enforcing_consecutive_5xx = percent(
        sink,
        &od,
        "enforcing_consecutive_5xx",
        d.enforcing_consecutive_5xx,
    );
    let enforcing_consecutive_gateway_failure = percent(
        sink,
        &od,
        "enforcing_consecutive_gateway_failure",
        d.enforcing_consecutive_gateway_failure,
    );
    let enforcing_consecutive_local_origin_failure = percent(
        sink,
        &od,
        "enforcing_consecutive_local_origin_failure",
        d.enforcing_consecutive_local_origin_failure,
    );
    let enforcing_success_rate = percent(
        sink,
        &od,
        "enforcing_success_rate",
        d.enforcing_success_rate,
    );
    let enforcing_local_origin_success_rate = percent(
        sink,
        &od,
        "enforcing_local_origin_success_rate",
        d.enforcing_local_origin_success_rate,
    );
    let enforcing_failure_percentage = percent(
        sink,
        &od,
        "enforcing_failure_percentage",
        d.enforcing_failure_percentage,
    );
    let enforcing_failure_percentage_local_origin = percent(
        sink,
        &od,
        "enforcing_failure_percentage_local_origin",
        d.enforcing_failure_percentage_local_origin,
    );
    let success_rate_minimum_hosts = count(
        sink,
        &od,
        "success_rate_minimum_hosts",
        d.success_rate_minimum_hosts,
    );
    let success_rate_request_volume = count(
        sink,
        &od,
        "success_rate_request_volume",
        d.success_rate_request_volume,
    );
    let success_rate_stdev_factor = count(
        sink,
        &od,
        "success_rate_stdev_factor",
        d.success_rate_stdev_factor,
    );
    let failure_percentage_threshold = percent(
        sink,
        &od,
        "failure_percentage_threshold",
        d.failure_percentage_threshold,
    );
    let failure_percentage_minimum_hosts = count(
        sink,
        &od,
        "failure_percentage_minimum_hosts",
        d.failure_percentage_minimum_hosts,
    );
    let failure_percentage_request_volume = count(
        sink,
        &od,
        "failure_percentage_request_volume",
        d.failure_percentage_request_volume,
    );
    let successful_active_health_check_uneject_host = flag(
        sink,
        &od,
        "successful_active_health_check_uneject_host",
        d.successful_active_health_check_uneject_host,
    );

    // `max_ejection_time` follows `base_ejection_time`, resolved once both
    // are read. Only an explicit value can be smaller: Envoy refuses that
    // when it creates the detector, so hale refuses the file.
    let base_ejection_time = base_ejection_time?;
    let max_ejection_time = match max_ejection_time? {
        None => DEFAULT_MAX_EJECTION_TIME.max(base_ejection_time),
        Some(max) if max < base_ejection_time => {
            if let Some(node) = od.get("max_ejection_time") {
                node.report(
                    sink,
                    "max_ejection_time cannot be smaller than base_ejection_time",
                );
            }
            return None;
        }
        Some(max) => max,
    };
    Some(OutlierDetection {
        consecutive_5xx: consecutive_5xx?,
        consecutive_gateway_failure: consecutive_gateway_failure?,
        consecutive_local_origin_failure: consecutive_local_origin_failure?,
        split_external_local_origin_errors: split_external_local_origin_errors?,
        interval: interval?,
        base_ejection_time,
        max_ejection_time,
        max_ejection_time_jitter: max_ejection_time_jitter?,
        max_ejection_percent: max_ejection_percent?,
        always_eject_one_host: always_eject_one_host?,
        enforcing_consecutive_5xx: enforcing_consecutive_5xx?,
        enforcing_consecutive_gateway_failure: enforcing_consecutive_gateway_failure?,
        enforcing_consecutive_local_origin_failure: enforcing_consecutive_local_origin_failure?,
        enforcing_success_rate: enforcing_success_rate?,
        enforcing_local_origin_success_rate: enforcing_local_origin_success_rate?,
        enforcing_failure_percentage: enforcing_failure_percentage?,
        enforcing_failure_percentage_local_origin: enforcing_failure_percentage_local_origin?,
        success_rate_minimum_hosts: success_rate_minimum_hosts?,
        success_rate_request_volume: success_rate_request_volume?,
        success_rate_stdev_factor: success_rate_stdev_factor?,
        failure_percentage_threshold: failure_percentage_threshold?,
        failure_percentage_minimum_hosts: failure_percentage_minimum_hosts?,
        failure_percentage_request_volume: failure_percentage_request_volume?,
        successful_active_health_check_uneject_host: successful_active_health_check_uneject_host?,
    })
}

/// A `UInt32Value` with no bound beyond `uint32`'s.
fn count(sink: &mut Sink, od: &Object<'_>, name: &str, default: u32) -> Option<u32> {
    od.optional(sink, name, default, |node, sink| node.u32_wrapper(sink))
}

/// A `UInt32Value` percentage: Envoy's proto bounds it to `lte: 100`.
fn percent(sink: &mut Sink, od: &Object<'_>, name: &str, default: u32) -> Option<u32> {
    od.optional(sink, name, default, |node, sink| {
        let value = node.u32_wrapper(sink)?;
        if value > 100 {
            node.report(
                sink,
                format!("{value} is out of range: a percentage is 0 to 100"),
            );
            return None;
        }
        Some(value)
    })
}

/// A `BoolValue`.
fn flag(sink: &mut Sink, od: &Object<'_>, name: &str, default: bool) -> Option<bool> {
    od.optional(sink, name, default, |node, sink| node.bool_wrapper(sink))
}

/// A duration that must be more than 0s when set; `Some(None)` when absent,
/// so the caller applies the default.
fn positive(sink: &mut Sink, od: &Object<'_>, name: &str) -> Option<Option<Duration>> {
    od.optional(sink, name, None, |node, sink| {
        let duration = node.duration(sink)?;
        if duration.is_zero() {
            node.report(sink, format!("{name} must be more than 0s"));
            return None;
        }
        Some(Some(duration))
    })
}
