//! The validated `health_checks[]` of a cluster.
//!
//! Owns: the typed shape of Envoy's `config.core.v3.HealthCheck` subset hale
//! implements, with Envoy's defaults applied (each field documents its own).
//! Must not touch: runtime state; the checkers read this, never write it.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

/// Envoy: `no_traffic_interval` defaults to 60s.
pub const DEFAULT_NO_TRAFFIC_INTERVAL: Duration = Duration::from_secs(60);
/// Envoy: `response_buffer_size` defaults to 1024 bytes.
pub const DEFAULT_RESPONSE_BUFFER_SIZE: u64 = 1024;

/// One entry of `health_checks`. hale accepts several per cluster (Envoy
/// rejects a second): a host is healthy only when every check passes.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// `timeout` (required, > 0).
    pub timeout: Duration,
    /// `interval` (required, > 0).
    pub interval: Duration,
    /// `initial_jitter`. Default 0.
    pub initial_jitter: Duration,
    /// `interval_jitter`. Default 0.
    pub interval_jitter: Duration,
    /// `interval_jitter_percent`. Default 0.
    pub interval_jitter_percent: u32,
    /// `unhealthy_threshold` (required).
    pub unhealthy_threshold: u32,
    /// `healthy_threshold` (required).
    pub healthy_threshold: u32,
    /// `reuse_connection`. Default true.
    pub reuse_connection: bool,
    /// `no_traffic_interval`. Default 60s.
    pub no_traffic_interval: Duration,
    /// `no_traffic_healthy_interval`. Default: `no_traffic_interval`.
    pub no_traffic_healthy_interval: Duration,
    /// `unhealthy_interval`. Default: `interval`.
    pub unhealthy_interval: Duration,
    /// `unhealthy_edge_interval`. Default: `unhealthy_interval`.
    pub unhealthy_edge_interval: Duration,
    /// `healthy_edge_interval`. Default: `interval`.
    pub healthy_edge_interval: Duration,
    /// `always_log_health_check_failures`. Default false.
    pub always_log_health_check_failures: bool,
    /// `always_log_health_check_success`. Default false.
    pub always_log_health_check_success: bool,
    /// Where events are written: `event_logger[]` entries of the file sink
    /// (`envoy.health_check.event_sinks.file`, `event_log_path`) and the
    /// deprecated `event_log_path`, in file order. Default none.
    pub event_log_paths: Vec<PathBuf>,
    /// The probe: `http_health_check` | `tcp_health_check` | `grpc_health_check`.
    pub checker: Checker,
}

/// What a health check sends and expects.
#[derive(Debug, Clone, PartialEq)]
pub enum Checker {
    /// `http_health_check`.
    Http(HttpCheck),
    /// `tcp_health_check`.
    Tcp(TcpCheck),
    /// `grpc_health_check`.
    Grpc(GrpcCheck),
}

/// `http_health_check`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    /// `host`: the `Host`/`:authority`. Default: the cluster's name
    /// (Envoy's precedence: endpoint hostname, then this, then the cluster).
    pub host: Option<String>,
    /// `path` (required, non-empty).
    pub path: String,
    /// `method`. Default GET (CONNECT is rejected).
    pub method: http::Method,
    /// `send`: a request body (only with POST, PUT, PATCH, OPTIONS). Default none.
    pub send: Option<Vec<u8>>,
    /// `receive`: blocks the response body must contain, in order, within
    /// the first `response_buffer_size` bytes. Default none.
    pub receive: Vec<Vec<u8>>,
    /// `response_buffer_size`. Default 1024; 0 means the whole body.
    pub response_buffer_size: u64,
    /// `request_headers_to_add`, in order.
    pub request_headers_to_add: Vec<HeaderToAdd>,
    /// `request_headers_to_remove`, lower-cased.
    pub request_headers_to_remove: Vec<String>,
    /// `expected_statuses` as half-open ranges. Default `[200, 201)`.
    pub expected_statuses: Vec<Range<u16>>,
    /// `retriable_statuses` as half-open ranges. Default none.
    pub retriable_statuses: Vec<Range<u16>>,
    /// `codec_client_type`. Default HTTP1.
    pub codec: CheckCodec,
}

/// `codec_client_type` of an HTTP health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckCodec {
    /// HTTP/1.1. The default.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge.
    Http2,
}

/// One `request_headers_to_add` entry (`HeaderValueOption`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderToAdd {
    /// `header.key`, lower-cased.
    pub name: String,
    /// `header.value`.
    pub value: String,
    /// `append_action` (or the deprecated `append`). Default
    /// APPEND_IF_EXISTS_OR_ADD.
    pub action: AppendAction,
}

/// `HeaderValueOption.append_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppendAction {
    /// `APPEND_IF_EXISTS_OR_ADD`. The default.
    #[default]
    AppendIfExistsOrAdd,
    /// `ADD_IF_ABSENT`.
    AddIfAbsent,
    /// `OVERWRITE_IF_EXISTS_OR_ADD`.
    OverwriteIfExistsOrAdd,
    /// `OVERWRITE_IF_EXISTS`.
    OverwriteIfExists,
}

/// `tcp_health_check`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpCheck {
    /// `send` (`text` is hex, `binary` is base64 in JSON). Default none:
    /// connect-only.
    pub send: Option<Vec<u8>>,
    /// `receive`: blocks expected in order. Default none.
    pub receive: Vec<Vec<u8>>,
}

/// `grpc_health_check`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrpcCheck {
    /// `service_name`. Default "" (the server as a whole).
    pub service_name: String,
    /// `authority`. Default: as the HTTP check's host.
    pub authority: Option<String>,
    /// `initial_metadata`, as (lower-cased name, value).
    pub initial_metadata: Vec<(String, String)>,
}
