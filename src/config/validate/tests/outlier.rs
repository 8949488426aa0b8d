//! `clusters[].outlier_detection`: a full block decoded field by field, `{}`
//! giving Envoy's defaults, the defaults that follow other fields, and one
//! test per error class with its exact path.

use std::time::Duration;

use super::{BASE, base_with, errors_of, parse_yaml, sorted_errors_of};
use crate::config::model::OutlierDetection;

const OD: &str = "static_resources.clusters[0].outlier_detection";

/// [`BASE`] whose cluster has `outlier_detection:` followed by `block`
/// (flow style, or block lines indented by six spaces).
fn with_outlier(block: &str) -> String {
    base_with(
        "    connect_timeout: 1s\n",
        &format!("    connect_timeout: 1s\n    outlier_detection:{block}\n"),
    )
}

fn outlier_of(text: &str) -> Option<OutlierDetection> {
    let mut bootstrap = parse_yaml(text).unwrap_or_else(|e| panic!("{e}"));
    bootstrap.clusters.remove(0).outlier_detection
}

#[test]
fn absent_block_disables_detection() {
    assert_eq!(outlier_of(BASE), None);
}

#[test]
fn empty_block_enables_detection_with_envoys_defaults() {
    let od = outlier_of(&with_outlier(" {}")).unwrap();
    assert_eq!(od, OutlierDetection::default());
    // Spelled out once, so a changed default in the model shows up here.
    assert_eq!(od.consecutive_5xx, 5);
    assert_eq!(od.interval, Duration::from_secs(10));
    assert_eq!(od.base_ejection_time, Duration::from_secs(30));
    assert_eq!(od.max_ejection_time, Duration::from_secs(300));
    assert_eq!(od.max_ejection_percent, 10);
    assert_eq!(od.enforcing_consecutive_gateway_failure, 0);
    assert_eq!(od.enforcing_failure_percentage, 0);
    assert_eq!(od.enforcing_failure_percentage_local_origin, 0);
    assert_eq!(od.success_rate_stdev_factor, 1900);
    assert!(od.successful_active_health_check_uneject_host);
    assert!(!od.always_eject_one_host);
}

#[test]
fn full_block_decodes_every_field() {
    let text = with_outlier(
        r#"
      consecutive_5xx: 7
      interval: { seconds: 2, nanos: 500000000 }
      base_ejection_time: 15s
      max_ejection_percent: { value: 50 }
      enforcing_consecutive_5xx: 90
      enforcing_success_rate: 80
      success_rate_minimum_hosts: 3
      success_rate_request_volume: "40"
      success_rate_stdev_factor: 1500
      consecutive_gateway_failure: 4
      enforcing_consecutive_gateway_failure: 100
      split_external_local_origin_errors: true
      consecutive_local_origin_failure: 6
      enforcing_consecutive_local_origin_failure: 70
      enforcing_local_origin_success_rate: 60
      failure_percentage_threshold: 75
      enforcing_failure_percentage: 20
      enforcingFailurePercentageLocalOrigin: 30
      failure_percentage_minimum_hosts: 2
      failure_percentage_request_volume: 25
      max_ejection_time: 120s
      max_ejection_time_jitter: 0.25s
      successful_active_health_check_uneject_host: { value: false }
      always_eject_one_host: true"#,
    );
    let expected = OutlierDetection {
        consecutive_5xx: 7,
        consecutive_gateway_failure: 4,
        consecutive_local_origin_failure: 6,
        split_external_local_origin_errors: true,
        interval: Duration::from_millis(2500),
        base_ejection_time: Duration::from_secs(15),
        max_ejection_time: Duration::from_secs(120),
        max_ejection_time_jitter: Duration::from_millis(250),
        max_ejection_percent: 50,
        always_eject_one_host: true,
        enforcing_consecutive_5xx: 90,
        enforcing_consecutive_gateway_failure: 100,
        enforcing_consecutive_local_origin_failure: 70,
        enforcing_success_rate: 80,
        enforcing_local_origin_success_rate: 60,
        enforcing_failure_percentage: 20,
        enforcing_failure_percentage_local_origin: 30,
        success_rate_minimum_hosts: 3,
        success_rate_request_volume: 40,
        success_rate_stdev_factor: 1500,
        failure_percentage_threshold: 75,
        failure_percentage_minimum_hosts: 2,
        failure_percentage_request_volume: 25,
        successful_active_health_check_uneject_host: false,
    };
    assert_eq!(outlier_of(&text), Some(expected));
}

#[test]
fn max_ejection_time_defaults_to_at_least_base_ejection_time() {
    let od = outlier_of(&with_outlier(" { base_ejection_time: 600s }")).unwrap();
    assert_eq!(od.max_ejection_time, Duration::from_secs(600));
    let od = outlier_of(&with_outlier(" { base_ejection_time: 60s }")).unwrap();
    assert_eq!(od.max_ejection_time, Duration::from_secs(300));
    // Equal is allowed: only smaller is Envoy's creation error.
    let od = outlier_of(&with_outlier(
        " { base_ejection_time: 60s, max_ejection_time: 60s }",
    ))
    .unwrap();
    assert_eq!(od.max_ejection_time, Duration::from_secs(60));
}

#[test]
fn percentages_over_100() {
    for field in [
        "max_ejection_percent",
        "enforcing_consecutive_5xx",
        "enforcing_success_rate",
        "enforcing_consecutive_gateway_failure",
        "enforcing_consecutive_local_origin_failure",
        "enforcing_local_origin_success_rate",
        "failure_percentage_threshold",
        "enforcing_failure_percentage",
        "enforcing_failure_percentage_local_origin",
    ] {
        let text = with_outlier(&format!(" {{ {field}: {{ value: 101 }} }}"));
        assert_eq!(
            errors_of(&text),
            vec![(
                format!("{OD}.{field}"),
                "101 is out of range: a percentage is 0 to 100".to_string()
            )]
        );
    }
    // 100 itself is fine, and unbounded counts take any uint32.
    let text = with_outlier(" { max_ejection_percent: 100, consecutive_5xx: 1000 }");
    assert_eq!(outlier_of(&text).unwrap().max_ejection_percent, 100);
}

#[test]
fn zero_durations_where_envoy_wants_more_than_0s() {
    for field in ["interval", "base_ejection_time", "max_ejection_time"] {
        let text = with_outlier(&format!(" {{ {field}: 0s }}"));
        assert_eq!(
            errors_of(&text),
            vec![(
                format!("{OD}.{field}"),
                format!("{field} must be more than 0s")
            )]
        );
    }
    // The jitter may be 0s.
    let od = outlier_of(&with_outlier(" { max_ejection_time_jitter: 0s }")).unwrap();
    assert_eq!(od.max_ejection_time_jitter, Duration::ZERO);
}

#[test]
fn max_ejection_time_smaller_than_base_ejection_time() {
    let expected = vec![(
        format!("{OD}.max_ejection_time"),
        "max_ejection_time cannot be smaller than base_ejection_time".to_string(),
    )];
    let text = with_outlier(" { base_ejection_time: 60s, max_ejection_time: 59s }");
    assert_eq!(errors_of(&text), expected);
    // Against the default base_ejection_time of 30s.
    assert_eq!(
        errors_of(&with_outlier(" { max_ejection_time: 10s }")),
        expected
    );
}

#[test]
fn unknown_and_unsupported_fields() {
    assert_eq!(
        errors_of(&with_outlier(" { consecutive_5x: 3 }")),
        vec![(
            format!("{OD}.consecutive_5x"),
            "unknown field \"consecutive_5x\" (did you mean \"consecutive_5xx\"?)".to_string()
        )]
    );
    for field in ["monitors: []", "detect_degraded_hosts: true"] {
        let name = field.split(':').next().unwrap_or_default();
        assert_eq!(
            errors_of(&with_outlier(&format!(" {{ {field} }}"))),
            vec![(
                format!("{OD}.{name}"),
                format!("\"{name}\" is an Envoy field that is not supported by hale")
            )]
        );
    }
}

#[test]
fn wrong_types() {
    assert_eq!(
        sorted_errors_of(&with_outlier(
            " { split_external_local_origin_errors: { value: true }, interval: 5, \
             always_eject_one_host: yes, consecutive_5xx: -1 }"
        )),
        vec![
            (
                format!("{OD}.always_eject_one_host"),
                "expected true or false, found a string \"yes\"".to_string()
            ),
            (
                format!("{OD}.consecutive_5xx"),
                "expected an unsigned integer, found a negative number -1".to_string()
            ),
            (
                format!("{OD}.interval"),
                "expected a duration like \"5s\" or \"0.25s\", found a number 5".to_string()
            ),
            // A plain bool in Envoy's proto: no `{value: b}` form.
            (
                format!("{OD}.split_external_local_origin_errors"),
                "expected true or false, found an object".to_string()
            ),
        ]
    );
    assert_eq!(
        errors_of(&with_outlier(" []")),
        vec![(
            OD.to_string(),
            "expected an object (Envoy OutlierDetection), found a list".to_string()
        )]
    );
}
