//! The Envoy messages of active health checking, with their fields.
//!
//! Owns: `config.core.v3.HealthCheck` and the messages it reaches
//! (`HttpHealthCheck`, `TcpHealthCheck`, `GrpcHealthCheck`, `Payload`,
//! `HeaderValueOption`, `HeaderValue`, `type.v3.Int64Range`,
//! `TypedExtensionConfig` and the file event sink), and passive health
//! checking's `cluster.v3.OutlierDetection`, split out of `messages` to keep
//! each table file short. Field lists are data-plane-api's.
//!
//! Must not touch: behaviour, as for every table in `messages`.

use super::Message;

/// `envoy.config.core.v3.HealthCheck`.
pub(crate) const HEALTH_CHECK: Message = Message {
    name: "HealthCheck",
    supported: "timeout interval initial_jitter interval_jitter interval_jitter_percent \
        unhealthy_threshold healthy_threshold reuse_connection http_health_check \
        tcp_health_check grpc_health_check no_traffic_interval no_traffic_healthy_interval \
        unhealthy_interval unhealthy_edge_interval healthy_edge_interval event_log_path \
        event_logger always_log_health_check_failures always_log_health_check_success",
    unsupported: "alt_port custom_health_check event_service tls_options \
        transport_socket_match_criteria",
    notes: &[(
        "alt_port",
        "; set the endpoint's health_check_config.port_value instead",
    )],
};

/// `envoy.config.core.v3.HealthCheck.HttpHealthCheck`.
pub(crate) const HTTP_HEALTH_CHECK: Message = Message {
    name: "HttpHealthCheck",
    supported: "host path send receive response_buffer_size request_headers_to_add \
        request_headers_to_remove expected_statuses retriable_statuses codec_client_type \
        method",
    unsupported: "service_name_matcher",
    notes: &[("service_name_matcher", " yet")],
};

/// `envoy.config.core.v3.HealthCheck.TcpHealthCheck`.
pub(crate) const TCP_HEALTH_CHECK: Message = Message {
    name: "TcpHealthCheck",
    supported: "send receive",
    unsupported: "proxy_protocol_config",
    notes: &[],
};

/// `envoy.config.core.v3.HealthCheck.GrpcHealthCheck`.
pub(crate) const GRPC_HEALTH_CHECK: Message = Message {
    name: "GrpcHealthCheck",
    supported: "service_name authority initial_metadata",
    unsupported: "",
    notes: &[],
};

/// `envoy.config.core.v3.HealthCheck.Payload`.
pub(crate) const PAYLOAD: Message = Message {
    name: "Payload",
    supported: "text binary",
    unsupported: "",
    notes: &[],
};

/// `envoy.config.core.v3.HeaderValueOption`.
pub(crate) const HEADER_VALUE_OPTION: Message = Message {
    name: "HeaderValueOption",
    supported: "header append append_action",
    unsupported: "keep_empty_value",
    notes: &[],
};

/// `envoy.config.core.v3.HeaderValue`.
pub(crate) const HEADER_VALUE: Message = Message {
    name: "HeaderValue",
    supported: "key value",
    unsupported: "raw_value",
    notes: &[("raw_value", "; use value")],
};

/// `envoy.type.v3.Int64Range`.
pub(crate) const INT64_RANGE: Message = Message {
    name: "Int64Range",
    supported: "start end",
    unsupported: "",
    notes: &[],
};

/// `envoy.config.core.v3.TypedExtensionConfig`.
pub(crate) const TYPED_EXTENSION_CONFIG: Message = Message {
    name: "TypedExtensionConfig",
    supported: "name typed_config",
    unsupported: "",
    notes: &[],
};

/// `envoy.extensions.health_check.event_sinks.file.v3.HealthCheckEventFileSink`.
pub(crate) const HEALTH_CHECK_EVENT_FILE_SINK: Message = Message {
    name: "HealthCheckEventFileSink",
    supported: "event_log_path",
    unsupported: "",
    notes: &[],
};

/// `envoy.config.cluster.v3.OutlierDetection`.
pub(crate) const OUTLIER_DETECTION: Message = Message {
    name: "OutlierDetection",
    supported: "consecutive_5xx interval base_ejection_time max_ejection_percent \
        enforcing_consecutive_5xx enforcing_success_rate success_rate_minimum_hosts \
        success_rate_request_volume success_rate_stdev_factor consecutive_gateway_failure \
        enforcing_consecutive_gateway_failure split_external_local_origin_errors \
        consecutive_local_origin_failure enforcing_consecutive_local_origin_failure \
        enforcing_local_origin_success_rate failure_percentage_threshold \
        enforcing_failure_percentage enforcing_failure_percentage_local_origin \
        failure_percentage_minimum_hosts failure_percentage_request_volume \
        max_ejection_time max_ejection_time_jitter successful_active_health_check_uneject_host \
        always_eject_one_host",
    unsupported: "monitors detect_degraded_hosts",
    notes: &[],
};
