//! The data path. One request, in phase order:
//!
//! ```text
//!  accept ─▶ route ─▶ (filters) ─▶ pick ─▶ forward ─▶ observe ─▶ log
//!  listener  router    later       cluster  pool       stats      tracing
//!            │ direct_response / no route: local reply (error.rs)
//!            └ no usable host: 503 "no healthy upstream"
//! ```
//!
//! Owns: the order of those phases and the header rules of a proxy hop
//! (hop-by-hop removal, `x-forwarded-*`, `x-request-id`,
//! `x-envoy-upstream-service-time`).
//! Must not touch: the control plane (admin, reload): it only loads the
//! published snapshot, once per request.

pub mod balancer;
pub mod body;
pub mod breaker;
pub mod cluster;
pub mod degraded_filter;
mod forward;
pub mod headers;
pub mod health_filter;
pub mod listener;
pub mod listeners;
pub mod pool;
pub mod priority;
pub mod replay;
pub mod retry;
pub mod router;
pub mod snapshot;
pub mod timeouts;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::header::HOST;
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::config::model::DrainType;
use crate::error::{LocalReply, is_grpc};
use crate::lifecycle::ServingFlags;
use body::{RequestBody, ResponseBody, ResponseDone};
use cluster::{Cluster, Host};
use degraded_filter::RouteDegraded;
use health_filter::{Decision, HealthFilter};
use listener::ConnectionState;
use router::RequestView;
use snapshot::{ForwardRoute, HttpStats, RouteTarget, Snapshot};
use timeouts::RequestProgress;

/// One downstream connection, as its requests see it (shared by them).
#[derive(Debug)]
pub struct Downstream {
    /// The listener's id in the world.
    pub listener: u64,
    /// The listener as the world had it when a reload removed it (set
    /// then): the connection's requests route by it while it drains.
    pub retired: Arc<arc_swap::ArcSwapOption<snapshot::ListenerWorld>>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The connection's idle/active bookkeeping.
    pub connection: ConnectionState,
    /// The published world.
    pub snapshot: Snapshot,
    /// `/healthcheck/fail` and draining, read per request.
    pub serving: Arc<ServingFlags>,
    /// The listener's drain state (`/drain_listeners`).
    pub gate: Arc<listener::ListenerGate>,
}

/// What happens to a response on its way out, decided when its head is
/// sent (as Envoy decides at encode time): marks for health checks and
/// load balancers, and whether the connection closes after it.
#[derive(Debug)]
struct Outbound {
    from: Arc<Downstream>,
    /// The health-check filter that passed this request through.
    passed_through: Option<Arc<HealthFilter>>,
    /// The listener has a health-check filter and this request is not a
    /// health check: while failing, the response is marked
    /// `x-envoy-immediate-health-check-fail`.
    mark_when_failing: bool,
    /// The listener's `drain_type` is DEFAULT (`/healthcheck/fail` drains it).
    drained_by_fail: bool,
}

impl Outbound {
    fn apply(self, resp: &mut Response<ResponseBody>, version: Version) {
        let serving = self.from.serving.load();
        if let Some(filter) = &self.passed_through {
            let status = resp.status();
            filter.passed_through(status, resp.headers_mut());
        } else if self.mark_when_failing && serving.failing() {
            health_filter::mark_immediate_fail(resp.headers_mut());
        }
        let close = (serving.health_check_failed && self.drained_by_fail)
            || serving.draining
            || self.from.gate.drain_close();
        if !close {
            return;
        }
        let world = self.from.snapshot.load();
        let retired = self.from.retired.load();
        if let Some(listener) = world.listener(self.from.listener).or(retired.as_ref()) {
            listener.stats.downstream_cx_drain_close.inc();
        }
        if version == Version::HTTP_2 {
            // GOAWAY: streams in flight finish, new ones go elsewhere.
            self.from.connection.request_drain();
        } else {
            resp.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// Handles one request end to end and returns what the client gets.
pub async fn handle(from: Arc<Downstream>, req: Request<Incoming>) -> Response<ResponseBody> {
    let received = Instant::now();
    // Route: one snapshot load; keep only the handles the request needs.
    let failed = from.serving.load().failing();
    let (target, stats, hcm, outbound, degraded) = {
        let world = from.snapshot.load();
        // The retired listener is read only when the world lacks it.
        let retired;
        let listener = match world.listener(from.listener) {
            Some(l) => l,
            None => {
                retired = from.retired.load();
                match retired.as_ref() {
                    Some(l) => l,
                    None => return LocalReply::NoRoute.into_response(is_grpc(req.headers())),
                }
            }
        };
        let stats = Arc::clone(&listener.stats);
        let http = &listener.config.http;
        let hcm = HopSettings {
            use_remote_address: http.use_remote_address,
            xff_num_trusted_hops: http.xff_num_trusted_hops,
            request_timeout: http.request_timeout,
            stream_idle_timeout: http.stream_idle_timeout,
        };
        let authority = authority_of(&req);
        let view = RequestView {
            authority,
            path: req.uri().path(),
            path_and_query: req.uri().path_and_query().map_or("/", |p| p.as_str()),
            method: req.method(),
            scheme: "http",
            headers: req.headers(),
        };
        let mut outbound = Outbound {
            from: Arc::clone(&from),
            passed_through: None,
            mark_when_failing: false,
            drained_by_fail: listener.config.drain_type == DrainType::Default,
        };
        let mut health_answer = None;
        if let Some(filter) = listener.health_filters.iter().find(|f| f.matches(&view)) {
            match filter.decide(&world, failed) {
                Decision::Answer(resp) => health_answer = Some(resp),
                Decision::PassThrough => outbound.passed_through = Some(Arc::clone(filter)),
            }
        } else {
            outbound.mark_when_failing = !listener.health_filters.is_empty();
        }
        let target = match health_answer {
            Some(resp) => Some(Target::Health(resp)),
            None => listener.router.route(&view).map(|m| match m.target {
                RouteTarget::Forward(f) => Target::Forward(Arc::clone(f)),
                RouteTarget::Direct(d) => Target::Direct(LocalReply::Direct {
                    status: d.status,
                    body: d.body.clone(),
                }),
            }),
        };
        // Degraded mode, decided with the same world as the route.
        let degraded = match &target {
            Some(Target::Forward(route)) => match &route.degraded {
                RouteDegraded::On { runtime, .. } => Some((
                    Arc::clone(runtime),
                    runtime.reason(&route.cluster, &world.degraded_modes),
                    authority.to_string(),
                )),
                RouteDegraded::Off => None,
            },
            _ => None,
        };
        (target, stats, hcm, outbound, degraded)
    };

    stats.downstream_rq_total.inc();
    stats.downstream_rq_active.inc();
    match req.version() {
        Version::HTTP_2 => stats.downstream_rq_http2_total.inc(),
        _ => stats.downstream_rq_http1_total.inc(),
    }
    from.connection.request_started();
    let end = RequestEnd::new(stats, from);

    let grpc = is_grpc(req.headers());
    let version = req.version();
    let reply = match target {
        None => {
            end.stats.no_route.inc();
            LocalReply::NoRoute
        }
        Some(Target::Direct(reply)) => {
            end.stats.rq_direct_response.inc();
            reply
        }
        Some(Target::Health(resp)) => {
            let mut resp = end.finish_local(*resp);
            outbound.apply(&mut resp, version);
            return resp;
        }
        Some(Target::Forward(route)) => {
            let mut capture = None;
            if let Some((runtime, reason, authority)) = degraded {
                if let Some(reason) = reason {
                    // Nothing goes upstream while degraded.
                    let resp = runtime.answer(&reason, &req, &authority, grpc).await;
                    let mut resp = end.finish_local(resp);
                    outbound.apply(&mut resp, version);
                    return resp;
                }
                capture = runtime.capture(&req, &authority);
            }
            let mut resp = forward::forward(route, hcm, received, req, end).await;
            if let Some(capture) = capture {
                resp = capture.after(resp).await;
            }
            outbound.apply(&mut resp, version);
            return resp;
        }
    };
    let mut resp = end.finish_local(reply.into_response(grpc));
    outbound.apply(&mut resp, version);
    resp
}

enum Target {
    Forward(Arc<ForwardRoute>),
    Direct(LocalReply),
    /// Answered by a health-check filter.
    Health(Box<Response<ResponseBody>>),
}

/// The connection manager settings a forwarded request needs.
#[derive(Debug, Clone, Copy)]
struct HopSettings {
    use_remote_address: bool,
    xff_num_trusted_hops: u32,
    request_timeout: Option<std::time::Duration>,
    stream_idle_timeout: Option<std::time::Duration>,
}

/// The upstream request's head (rewritten path, authority, proxy headers)
/// and the downstream body.
fn upstream_head(
    route: &ForwardRoute,
    peer: SocketAddr,
    hop: HopSettings,
    protocol: crate::config::model::UpstreamProtocol,
    req: Request<Incoming>,
) -> (http::request::Parts, Incoming) {
    let (mut parts, body) = req.into_parts();
    let authority: Option<HeaderValue> = match &route.action.host_rewrite_literal {
        Some(literal) => HeaderValue::from_str(literal).ok(),
        None => parts.headers.get(HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        }),
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let rewritten = route
        .action
        .prefix_rewrite
        .as_deref()
        .map(|rw| router::rewrite_path(&route.matcher, rw, path_and_query));
    let path = rewritten.as_deref().unwrap_or(path_and_query);

    headers::strip_hop_by_hop(&mut parts.headers);
    headers::set_forwarding(
        &mut parts.headers,
        peer,
        hop.use_remote_address,
        hop.xff_num_trusted_hops,
    );
    if let Some(timeout) = &route.expected_timeout_header {
        parts
            .headers
            .insert("x-envoy-expected-rq-timeout-ms", timeout.clone());
    }

    match protocol {
        crate::config::model::UpstreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            parts.uri = Uri::try_from(path).unwrap_or_else(|_| Uri::from_static("/"));
            if let Some(a) = authority {
                parts.headers.insert(HOST, a);
            }
        }
        crate::config::model::UpstreamProtocol::Http2 => {
            parts.version = Version::HTTP_2;
            parts.headers.remove(HOST);
            let auth = authority
                .as_ref()
                .and_then(|a| a.to_str().ok())
                .unwrap_or("localhost");
            parts.uri = Uri::builder()
                .scheme("http")
                .authority(auth)
                .path_and_query(path)
                .build()
                .unwrap_or_else(|_| Uri::from_static("/"));
        }
    }
    (parts, body)
}

/// The request's host: `:authority` for HTTP/2, `Host` for HTTP/1.1.
fn authority_of<B>(req: &Request<B>) -> &str {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("")
}

/// The accounting that ends with the response: downstream gauges, the
/// connection's idle clock and, for a forwarded request, the upstream's
/// in-flight counts and the HTTP/1.1 connection's return to its pool.
///
/// Runs exactly once: through a `finish_*` call, the response body's end
/// hook, or, when hyper drops the request (the client went away while
/// hale waited for the upstream), its `Drop`.
struct RequestEnd {
    stats: Arc<HttpStats>,
    downstream: Arc<Downstream>,
    /// The current attempt.
    upstream: Option<UpstreamEnd>,
    /// The request's `max_requests` circuit-breaker unit, released with it.
    request_permit: Option<breaker::Permit>,
    finished: bool,
}

struct UpstreamEnd {
    cluster: Arc<Cluster>,
    host: Arc<Host>,
    sender: Option<hyper::client::conn::http1::SendRequest<RequestBody>>,
    /// The request body's progress (`None`: there was no body).
    progress: Option<Arc<RequestProgress>>,
}

impl RequestEnd {
    fn new(stats: Arc<HttpStats>, downstream: Arc<Downstream>) -> Self {
        Self {
            stats,
            downstream,
            upstream: None,
            request_permit: None,
            finished: false,
        }
    }

    /// An attempt on `host` starts: counted in flight until it ends.
    fn begin_attempt(
        &mut self,
        cluster: &Arc<Cluster>,
        host: &Arc<Host>,
        progress: Option<&Arc<RequestProgress>>,
    ) {
        cluster.stats.upstream_rq_total.inc();
        cluster.stats.upstream_rq_active.inc();
        host.stats.rq_total.fetch_add(1, Ordering::Relaxed);
        host.stats.rq_active.fetch_add(1, Ordering::Relaxed);
        self.upstream = Some(UpstreamEnd {
            cluster: Arc::clone(cluster),
            host: Arc::clone(host),
            sender: None,
            progress: progress.cloned(),
        });
    }

    /// The current attempt is given up for a retry; its connection is not
    /// reused (its exchange did not finish).
    fn abandon_attempt(&mut self) {
        if let Some(u) = self.upstream.take() {
            u.end(false);
        }
    }

    /// Ends a request answered locally.
    fn finish_local(mut self, resp: Response<ResponseBody>) -> Response<ResponseBody> {
        self.stats.downstream_rq.record(resp.status().as_u16());
        self.complete(true);
        resp
    }

    /// Ends a request whose upstream attempt failed: the host and cluster
    /// are charged with the reply's status, as Envoy charges them.
    fn finish_failed(self, reply: LocalReply, grpc: bool) -> Response<ResponseBody> {
        if let Some(u) = &self.upstream {
            u.cluster.stats.upstream_rq.record(reply.status().as_u16());
            u.host.stats.rq_error.fetch_add(1, Ordering::Relaxed);
        }
        self.finish_local(reply.into_response(grpc))
    }

    fn complete(&mut self, completed: bool) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.stats.downstream_rq_active.dec();
        self.downstream.connection.set_stall_deadline(None);
        self.downstream.connection.request_finished();
        if let Some(u) = self.upstream.take() {
            u.end(completed);
        }
        self.request_permit = None;
    }
}

impl UpstreamEnd {
    fn end(self, completed: bool) {
        self.cluster.stats.upstream_rq_active.dec();
        self.cluster.stats.upstream_rq_completed.inc();
        self.host.stats.rq_active.fetch_sub(1, Ordering::Relaxed);
        // An HTTP/1.1 connection is reusable only when the whole exchange
        // is over: the response ended cleanly and the request body was sent
        // whole (an upstream may answer an upload early).
        let request_sent = self.progress.as_ref().is_none_or(|p| p.is_complete());
        if completed
            && request_sent
            && let Some(sender) = self.sender
        {
            self.host.pool.give_back(sender);
        }
    }
}

impl Drop for RequestEnd {
    fn drop(&mut self) {
        self.complete(false);
    }
}

impl ResponseDone for RequestEnd {
    fn done(mut self: Box<Self>, completed: bool) {
        self.complete(completed);
    }
}
