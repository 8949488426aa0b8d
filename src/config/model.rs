//! The validated configuration every other room reads.
//!
//! Owns: the typed, checked shape of a bootstrap after `validate` has turned
//! Envoy's field names and defaults into plain Rust values. Everything here is
//! already consistent (routes name clusters that exist, names are unique,
//! regexes compile), so readers never re-check.
//!
//! Must not touch: runtime state (health, counters, sockets). A reload builds a
//! new `Bootstrap`; nothing here is mutated after validation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

mod degraded;
mod health_check;
mod outlier;
mod probes;
pub use degraded::*;
pub use health_check::*;
pub use outlier::*;
pub use probes::*;

/// Envoy: a route's `timeout` defaults to 15s.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Envoy: a cluster's `connect_timeout` defaults to 5s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy: `common_http_protocol_options.idle_timeout` defaults to 1 hour.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Envoy: `stream_idle_timeout` defaults to 5 minutes.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Envoy: `max_request_headers_kb` defaults to 60.
pub const DEFAULT_MAX_REQUEST_HEADERS_KB: u32 = 60;
/// Envoy: `overprovisioning_factor` defaults to 140 (%).
pub const DEFAULT_OVERPROVISIONING_FACTOR: u32 = 140;
/// Envoy: `healthy_panic_threshold` defaults to 50%.
pub const DEFAULT_PANIC_THRESHOLD_PERCENT: f64 = 50.0;

/// A whole validated bootstrap.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The file this was read from (named in every later error and log line).
    pub source: PathBuf,
    /// `node`; `--service-node` / `--service-cluster` override it.
    pub node: Node,
    /// `admin`; `None` when the bootstrap has no admin block (Envoy: no admin
    /// server is started).
    pub admin: Option<Admin>,
    /// `static_resources.listeners`, in file order.
    pub listeners: Vec<Listener>,
    /// `static_resources.clusters`, in file order.
    pub clusters: Vec<Cluster>,
    /// The `bootstrap_extensions[]` entry `hale.health_server`, if any.
    pub health_server: Option<HealthServer>,
    /// The document as read (YAML turned into JSON), for `/config_dump`.
    pub raw: serde_json::Value,
    /// A digest of the file's bytes: a reload of the very same bytes is
    /// known unchanged without parsing them again.
    pub digest: u64,
}

impl Bootstrap {
    /// The cluster named `name`, if defined.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

/// `node`. Default: empty id and cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// `node.id`.
    pub id: String,
    /// `node.cluster` (echoed later in `x-envoy-upstream-healthchecked-cluster`).
    pub cluster: String,
}

/// `admin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// `admin.address.socket_address` (port 0 picks a free port; see
    /// `--admin-address-path`).
    pub address: SocketAddr,
}

/// One listener: an address and the HTTP connection manager behind it.
#[derive(Debug, Clone)]
pub struct Listener {
    /// `name` (unique).
    pub name: String,
    /// `address.socket_address`; must be an IP literal, as in Envoy.
    pub address: SocketAddr,
    /// The one `envoy.filters.network.http_connection_manager`.
    pub http: HttpConnectionManager,
    /// `drain_type`. Default DEFAULT.
    pub drain_type: DrainType,
    /// `traffic_direction`. Default UNSPECIFIED.
    pub traffic_direction: TrafficDirection,
}

/// `HttpConnectionManager`, the supported subset.
#[derive(Debug, Clone)]
pub struct HttpConnectionManager {
    /// `stat_prefix` (required): stats are `http.<stat_prefix>.*`.
    pub stat_prefix: String,
    /// `codec_type`. Default AUTO.
    pub codec: Codec,
    /// `route_config` (inline; RDS is not supported).
    pub route_config: RouteConfig,
    /// `http_filters`, in order; validation guarantees the last is the router.
    pub http_filters: Vec<HttpFilter>,
    /// `common_http_protocol_options.idle_timeout`. Default 1h; `None` = disabled (0s).
    pub idle_timeout: Option<Duration>,
    /// `stream_idle_timeout`. Default 5m; `None` = disabled (0s).
    pub stream_idle_timeout: Option<Duration>,
    /// `request_timeout`. Default disabled (`None`).
    pub request_timeout: Option<Duration>,
    /// `max_request_headers_kb`. Default 60, at most 8192.
    pub max_request_headers_kb: u32,
    /// `use_remote_address`. Default false.
    pub use_remote_address: bool,
    /// `xff_num_trusted_hops`. Default 0.
    pub xff_num_trusted_hops: u32,
}

/// `codec_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// HTTP/1.1 and HTTP/2 (prior knowledge) on one port. The default.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only (h2c with prior knowledge).
    Http2,
}

/// One entry of `http_filters`.
#[derive(Debug, Clone)]
pub enum HttpFilter {
    /// `envoy.filters.http.health_check`.
    HealthCheck(HealthCheckFilter),
    /// `hale.filters.http.degraded`.
    Degraded(DegradedFilter),
    /// `envoy.filters.http.router`: always last.
    Router,
}

/// `route_config`.
#[derive(Debug, Clone, Default)]
pub struct RouteConfig {
    /// `name`. Default "".
    pub name: String,
    /// `virtual_hosts`, in file order.
    pub virtual_hosts: Vec<VirtualHost>,
}

/// `virtual_hosts[]`.
#[derive(Debug, Clone)]
pub struct VirtualHost {
    /// `name` (required).
    pub name: String,
    /// `domains` (at least one), lower-cased.
    pub domains: Vec<DomainPattern>,
    /// `routes`, first match wins.
    pub routes: Vec<Route>,
}

/// One entry of `domains`, classified as Envoy matches them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    /// `*`: any host.
    Any,
    /// `example.com` (also matches `example.com:port` per Envoy's port stripping).
    Exact(String),
    /// `*.example.com` → the stored suffix is `.example.com`.
    Suffix(String),
    /// `api.*` → the stored prefix is `api.`.
    Prefix(String),
}

/// `routes[]`.
#[derive(Debug, Clone)]
pub struct Route {
    /// `name`. Default "".
    pub name: String,
    /// `match`.
    pub matcher: RouteMatch,
    /// `route` or `direct_response`.
    pub action: RouteAction,
    /// `typed_per_filter_config` for `hale.filters.http.degraded`: the
    /// route's, else its virtual host's. `None`: the listener's filter
    /// applies as configured.
    pub degraded: Option<DegradedPerRoute>,
}

/// `match`.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// `prefix` | `path` | `safe_regex` (exactly one).
    pub path: PathMatch,
    /// `case_sensitive`. Default true. Applies to `prefix` and `path`.
    pub case_sensitive: bool,
    /// `headers`: all must match.
    pub headers: Vec<HeaderMatcher>,
}

/// The path part of a route match.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// `prefix` (matched against the path without the query).
    Prefix(String),
    /// `path`: the whole path, without the query.
    Path(String),
    /// `safe_regex.regex`: must match the whole path (anchored), without the query.
    Regex(regex::Regex),
}

/// `headers[]` of a route match.
#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    /// `name`, lower-cased; pseudo-headers `:path`, `:method`, `:authority`
    /// and `:scheme` are allowed.
    pub name: String,
    /// What the value must satisfy.
    pub rule: HeaderRule,
    /// `invert_match`. Default false.
    pub invert: bool,
}

/// How a header matcher tests the header.
#[derive(Debug, Clone)]
pub enum HeaderRule {
    /// `present_match: true|false`.
    Present(bool),
    /// `string_match`.
    Value(StringMatcher),
}

/// `type.matcher.v3.StringMatcher`.
#[derive(Debug, Clone)]
pub struct StringMatcher {
    /// exact | prefix | suffix | contains | safe_regex.
    pub pattern: StringPattern,
    /// `ignore_case`. Default false (not applied to regex).
    pub ignore_case: bool,
}

/// The one pattern of a `StringMatcher`.
#[derive(Debug, Clone)]
pub enum StringPattern {
    /// `exact`.
    Exact(String),
    /// `prefix`.
    Prefix(String),
    /// `suffix`.
    Suffix(String),
    /// `contains`.
    Contains(String),
    /// `safe_regex.regex`, anchored (whole value).
    Regex(regex::Regex),
}

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// `route`: forward to a cluster.
    Forward(ForwardAction),
    /// `direct_response`: answer here.
    DirectResponse(DirectResponse),
}

/// `route` (RouteAction), the supported subset.
#[derive(Debug, Clone)]
pub struct ForwardAction {
    /// `cluster` (validated to exist).
    pub cluster: String,
    /// `timeout`. Default 15s; `None` when set to 0s (disabled).
    pub timeout: Option<Duration>,
    /// `prefix_rewrite`: replaces the matched prefix (or the whole path for a
    /// `path` match). Not allowed with `safe_regex`.
    pub prefix_rewrite: Option<String>,
    /// `host_rewrite_literal`: the upstream `Host`/`:authority`.
    pub host_rewrite_literal: Option<String>,
    /// `priority`: which circuit-breaker thresholds the route's requests
    /// count against. Default DEFAULT.
    pub priority: RoutingPriority,
    /// `retry_policy` of the route, else of its virtual host. Default none
    /// (no retries).
    pub retry_policy: Option<RetryPolicy>,
    /// How much of a request body is kept so a retry can send it again:
    /// the route's `per_request_buffer_limit_bytes`, else its virtual
    /// host's, but never more than the listener's
    /// `per_connection_buffer_limit_bytes` (default 1 MiB), as Envoy's
    /// router takes the smaller of the two. A listener limit of 0 means no
    /// cap, so with no route or virtual host limit this is `u32::MAX`.
    /// Default 1 MiB. A body larger than this is streamed and its request
    /// is not retried; 0 keeps nothing.
    pub retry_buffer_limit: u32,
}

/// Envoy's default `per_connection_buffer_limit_bytes`: 1 MiB.
pub const DEFAULT_BUFFER_LIMIT_BYTES: u32 = 1024 * 1024;

/// `RoutingPriority` of a route and of a circuit-breaker thresholds entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutingPriority {
    /// `DEFAULT`. The default.
    #[default]
    Default,
    /// `HIGH`.
    High,
}

/// `retry_policy` (`envoy.config.route.v3.RetryPolicy`).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// `retry_on`: the comma-separated conditions, as a set.
    pub retry_on: RetryOn,
    /// `num_retries`. Default 1.
    pub num_retries: u32,
    /// `per_try_timeout`. Default none (each try is bounded only by the
    /// route timeout); `0s` also means none.
    pub per_try_timeout: Option<Duration>,
    /// `retry_back_off.base_interval`. Default 25 ms. Like the maximum, in
    /// whole milliseconds and at least 1 ms, as Envoy reads it.
    pub back_off_base: Duration,
    /// `retry_back_off.max_interval`. Default 10 × the base interval.
    pub back_off_max: Duration,
    /// `retriable_status_codes`, for `retriable-status-codes`.
    pub retriable_status_codes: Vec<u16>,
    /// `retriable_headers`, for `retriable-headers`: a response matching
    /// any of them is retried.
    pub retriable_headers: Vec<HeaderMatcher>,
    /// `retriable_request_headers`: when not empty, only a request matching
    /// one of them is retried.
    pub retriable_request_headers: Vec<HeaderMatcher>,
    /// `retry_host_predicate` has `envoy.retry_host_predicates.previous_hosts`:
    /// a retry avoids the hosts already tried.
    pub previous_hosts: bool,
    /// `host_selection_retry_max_attempts`: how many times a pick rejected by
    /// the host predicate is redone before the last pick is used. Default 1.
    pub host_selection_retry_max_attempts: u32,
}

/// The `retry_on` conditions, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn(pub u32);

impl RetryOn {
    /// `5xx`: any 5xx response, and every condition of `reset` and
    /// `connect-failure`, and a per-try timeout.
    pub const FIVE_XX: Self = Self(1);
    /// `gateway-error`: 502, 503, 504, and no response at all.
    pub const GATEWAY_ERROR: Self = Self(1 << 1);
    /// `reset`: no response (disconnect, reset, per-try timeout).
    pub const RESET: Self = Self(1 << 2);
    /// `connect-failure`: the connection could not be made.
    pub const CONNECT_FAILURE: Self = Self(1 << 3);
    /// `refused-stream`: HTTP/2 REFUSED_STREAM.
    pub const REFUSED_STREAM: Self = Self(1 << 4);
    /// `retriable-4xx`: 409.
    pub const RETRIABLE_4XX: Self = Self(1 << 5);
    /// `retriable-status-codes`: a status in `retriable_status_codes`.
    pub const RETRIABLE_STATUS_CODES: Self = Self(1 << 6);
    /// `retriable-headers`: a response matching `retriable_headers`.
    pub const RETRIABLE_HEADERS: Self = Self(1 << 7);
    /// `envoy-ratelimited`: a response carrying `x-envoy-ratelimited`.
    pub const ENVOY_RATELIMITED: Self = Self(1 << 8);
    /// gRPC `cancelled` (1).
    pub const GRPC_CANCELLED: Self = Self(1 << 9);
    /// gRPC `deadline-exceeded` (4).
    pub const GRPC_DEADLINE_EXCEEDED: Self = Self(1 << 10);
    /// gRPC `resource-exhausted` (8).
    pub const GRPC_RESOURCE_EXHAUSTED: Self = Self(1 << 11);
    /// gRPC `internal` (13).
    pub const GRPC_INTERNAL: Self = Self(1 << 12);
    /// gRPC `unavailable` (14).
    pub const GRPC_UNAVAILABLE: Self = Self(1 << 13);
    /// `http3-post-connect-failure`: accepted; hale never speaks HTTP/3
    /// upstream, so it never applies.
    pub const HTTP3_POST_CONNECT_FAILURE: Self = Self(1 << 14);

    /// Every condition set in `other` is set here.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Any condition set in `other` is set here.
    pub fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// Both sets together.
    #[must_use]
    pub fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// `direct_response`.
#[derive(Debug, Clone)]
pub struct DirectResponse {
    /// `status` (100-599).
    pub status: u16,
    /// `body.inline_string` (or `body.inline_bytes`, base64). Default: no body.
    pub body: Option<Bytes>,
}

/// One upstream cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// `name` (unique).
    pub name: String,
    /// `type`. Default STATIC.
    pub discovery: DiscoveryType,
    /// `connect_timeout`. Default 5s.
    pub connect_timeout: Duration,
    /// `lb_policy`. Default ROUND_ROBIN.
    pub lb_policy: LbPolicy,
    /// `load_assignment.endpoints[].lb_endpoints[]`, flattened, in file order.
    pub endpoints: Vec<Endpoint>,
    /// HTTP/2 upstream when `typed_extension_protocol_options` asks for
    /// `explicit_http_config.http2_protocol_options` or the older
    /// `http2_protocol_options` is present. Default HTTP/1.1.
    pub protocol: UpstreamProtocol,
    /// `common_lb_config.healthy_panic_threshold.value`. Default 50.0; 0 disables.
    pub healthy_panic_threshold: f64,
    /// `circuit_breakers` (parsed now, enforced later).
    pub circuit_breakers: CircuitBreakers,
    /// `health_checks`, in file order. Default none (no active checking).
    pub health_checks: Vec<HealthCheck>,
    /// `common_lb_config.zone_aware_lb_config.fail_traffic_on_panic`: in
    /// panic, answer 503 instead of sending to every host. Default false.
    /// (hale honours it without zone-aware routing; Envoy does not.)
    pub fail_traffic_on_panic: bool,
    /// `load_assignment.policy.overprovisioning_factor` (percent). Default 140.
    pub overprovisioning_factor: u32,
    /// `outlier_detection`; its presence enables passive health checking.
    /// Default none.
    pub outlier_detection: Option<OutlierDetection>,
}

/// `type` of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiscoveryType {
    /// `STATIC`: IP literals only. The default.
    #[default]
    Static,
    /// `STRICT_DNS`: every address a name resolves to is a host.
    StrictDns,
    /// `LOGICAL_DNS`: the first address a name resolves to is the host.
    LogicalDns,
}

/// `lb_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LbPolicy {
    /// `ROUND_ROBIN` (weighted). The default.
    #[default]
    RoundRobin,
    /// `LEAST_REQUEST`: power of two choices over active requests.
    LeastRequest,
    /// `RANDOM` (weighted).
    Random,
}

/// Upstream HTTP protocol of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1. The default.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
}

/// One `lb_endpoints[]` entry with its locality's priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `endpoint.address.socket_address.address`: an IP literal for STATIC,
    /// a DNS name or IP for the DNS types.
    pub host: String,
    /// `endpoint.address.socket_address.port_value`.
    pub port: u16,
    /// `endpoints[].priority` of the enclosing locality. Default 0.
    pub priority: u32,
    /// `load_balancing_weight`. Default 1.
    pub weight: u32,
    /// `health_status`. Default UNKNOWN.
    pub health_status: HealthStatus,
    /// `endpoint.health_check_config.port_value`; `None` = the serving port.
    pub health_check_port: Option<u16>,
}

/// `core.v3.HealthStatus` as set on an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealthStatus {
    /// `UNKNOWN`: healthy. The default.
    #[default]
    Unknown,
    /// `HEALTHY`.
    Healthy,
    /// `UNHEALTHY`: `FAILED_EDS_HEALTH`.
    Unhealthy,
    /// `DRAINING`: `EDS_STATUS_DRAINING` (unhealthy and excluded).
    Draining,
    /// `TIMEOUT`: `FAILED_EDS_HEALTH`.
    Timeout,
    /// `DEGRADED`: `DEGRADED_EDS_HEALTH`.
    Degraded,
}

/// `circuit_breakers`: Envoy's thresholds per routing priority.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CircuitBreakers {
    /// `thresholds[]` with `priority: DEFAULT` (or no priority).
    pub default: Thresholds,
    /// `thresholds[]` with `priority: HIGH`.
    pub high: Thresholds,
}

/// One `thresholds[]` entry. Defaults are Envoy's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// `max_connections`. Default 1024.
    pub max_connections: u32,
    /// `max_pending_requests`. Default 1024.
    pub max_pending_requests: u32,
    /// `max_requests`. Default 1024.
    pub max_requests: u32,
    /// `max_retries`. Default 3. Ignored when `retry_budget` is set.
    pub max_retries: u32,
    /// `retry_budget`. Default none.
    pub retry_budget: Option<RetryBudget>,
}

/// `thresholds[].retry_budget`: retries in flight limited to a share of the
/// requests in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// `budget_percent.value`. Default 20.0.
    pub budget_percent: f64,
    /// `min_retry_concurrency`. Default 3.
    pub min_retry_concurrency: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            budget_percent: 20.0,
            min_retry_concurrency: 3,
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
            retry_budget: None,
        }
    }
}
