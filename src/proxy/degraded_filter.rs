//! hale's degraded-mode filter (`hale.filters.http.degraded`) on the data
//! path. Per request on a route it covers: if the route is degraded
//! (`degraded::state`), answer here — a cached GET/HEAD marked stale, else
//! 503 with `Retry-After` (gRPC UNAVAILABLE) — and send nothing upstream;
//! otherwise forward, fill the cache from cacheable GET responses, and
//! with `stale_if_error` hide one failed request behind a cached entry.
//!
//! Owns: the filter's runtime per configuration (its cache and stats), the
//! stale response's headers, and the cache fill tap.
//! Must not touch: when a cluster is healthy (`health/`), or what is
//! storable (`degraded::cache`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{AGE, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};

use super::body::{BodyTap, ResponseBody};
use super::cluster::Cluster;
use crate::config::model::DegradedFilter;
use crate::degraded::cache::{Hit, RequestHead, ResponseCache};
use crate::degraded::state::{self, Overrides, Reason};
use crate::error::LocalReply;
use crate::stats::{Counter, Gauge, Scope};

/// Names the reason on every response degraded mode answers.
pub const DEGRADED_HEADER: &str = "x-hale-degraded";

/// `http.<stat_prefix>.degraded.*`.
#[derive(Debug)]
pub struct DegradedStats {
    /// Clusters this listener's filter sees degraded now.
    pub active: Gauge,
    /// Answers from the cache.
    pub stale_served: Counter,
    /// Reads refused for want of a cached entry.
    pub cache_miss: Counter,
    /// Writes refused.
    pub write_rejected: Counter,
    /// gRPC requests refused.
    pub grpc_rejected: Counter,
    /// Bytes held by the cache (updated as entries are stored).
    pub cache_bytes: Gauge,
    /// Entries held by the cache.
    pub cache_entries: Gauge,
}

impl DegradedStats {
    /// The stats of a connection manager's filter.
    pub fn new(scope: &Scope) -> Self {
        Self {
            active: scope.gauge("degraded.active"),
            stale_served: scope.counter("degraded.stale_served"),
            cache_miss: scope.counter("degraded.cache_miss"),
            write_rejected: scope.counter("degraded.write_rejected"),
            grpc_rejected: scope.counter("degraded.grpc_rejected"),
            cache_bytes: scope.gauge("degraded.cache_bytes"),
            cache_entries: scope.gauge("degraded.cache_entries"),
        }
    }
}

/// What a listener's degraded filters share: stats, and which clusters
/// they last saw degraded (so entering and leaving are logged once each,
/// and `active` counts clusters, whatever the number of configurations).
///
/// A reload keeps it (same listener, same `stat_prefix`), so the watches of
/// the old world and the new one, which overlap for a moment, agree.
#[derive(Debug)]
pub struct ListenerDegraded {
    stats: DegradedStats,
    /// The clusters last seen degraded, by name. Touched by the watch task
    /// only, off the data path.
    seen: std::sync::Mutex<Vec<String>>,
}

impl ListenerDegraded {
    /// Shared state with nothing seen yet.
    pub fn new(stats: DegradedStats) -> Self {
        Self {
            stats,
            seen: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A reload kept this state, and its listener's filters now watch the
    /// clusters `watched`: one seen degraded that they no longer watch
    /// leaves the `active` count (by difference: listeners that share a
    /// `stat_prefix` share the gauge).
    pub fn keep_only(&self, watched: &[&str]) {
        let mut seen = self.seen();
        let before = seen.len();
        seen.retain(|name| watched.contains(&name.as_str()));
        let gone = before - seen.len();
        if gone > 0 {
            self.stats
                .active
                .add(-i64::try_from(gone).unwrap_or(i64::MAX));
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        match self.seen.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// What a cache added to its listener's cache gauges. Shared by every
/// runtime that uses the cache (a reload's old and new ones), so the
/// gauges move by differences from one baseline.
#[derive(Debug, Default)]
struct Reported {
    bytes: AtomicI64,
    entries: AtomicI64,
    /// A reload dropped the cache: late fills report nothing.
    released: AtomicBool,
}

/// One filter configuration at run time.
#[derive(Debug)]
pub struct DegradedRuntime {
    config: DegradedFilter,
    cache: ResponseCache,
    retry_after_s: u64,
    shared: Arc<ListenerDegraded>,
    /// The dependencies' clusters, resolved when the world was built.
    dependencies: Vec<Arc<Cluster>>,
    /// What this cache last added to the listener's cache gauges.
    reported: Arc<Reported>,
}

/// How a forwarded route applies the filter.
#[derive(Debug, Clone)]
pub enum RouteDegraded {
    /// No filter on the listener, or disabled for the route.
    Off,
    /// This configuration (the listener's, or the route's own) for the
    /// route's cluster.
    On {
        /// The configuration at run time.
        runtime: Arc<DegradedRuntime>,
        /// The route's cluster's index in the world.
        cluster_slot: usize,
    },
}

/// A GET on a covered route that was forwarded: what the cache needs to
/// fill from its response or to hide its failure.
#[derive(Debug)]
pub struct Capture {
    runtime: Arc<DegradedRuntime>,
    method: Method,
    authority: String,
    path_and_query: String,
    headers: HeaderMap,
}

impl Capture {
    fn head(&self) -> RequestHead<'_> {
        RequestHead {
            method: &self.method,
            scheme: "http",
            authority: &self.authority,
            path_and_query: &self.path_and_query,
            headers: &self.headers,
        }
    }
}

impl DegradedRuntime {
    /// The runtime of `config`, sharing `shared` with the listener's other
    /// configurations, in a world whose clusters are `clusters`. With
    /// `previous` (the runtime of the same configuration before a reload),
    /// its cache carries over, entries and all.
    pub fn new(
        config: DegradedFilter,
        shared: Arc<ListenerDegraded>,
        clusters: &[Arc<Cluster>],
        previous: Option<&DegradedRuntime>,
    ) -> Self {
        let dependencies = config
            .dependencies
            .iter()
            .filter_map(|name| clusters.iter().find(|c| c.name() == name).cloned())
            .collect();
        let (cache, reported) = match previous {
            Some(p) => (p.cache.clone(), Arc::clone(&p.reported)),
            None => (ResponseCache::new(config.cache), Arc::default()),
        };
        Self {
            cache,
            retry_after_s: retry_after_secs(&config),
            config,
            shared,
            dependencies,
            reported,
        }
    }

    /// Whether `other` uses the same cache.
    pub fn shares_cache_with(&self, other: &DegradedRuntime) -> bool {
        Arc::ptr_eq(&self.reported, &other.reported)
    }

    /// A reload dropped this cache (after the swap): it goes, and what it
    /// added to the listener's cache gauges with it.
    pub fn release(&self) {
        let r = &self.reported;
        if r.released.swap(true, Ordering::AcqRel) {
            return;
        }
        let stats = &self.shared.stats;
        stats.cache_bytes.add(-r.bytes.swap(0, Ordering::AcqRel));
        stats
            .cache_entries
            .add(-r.entries.swap(0, Ordering::AcqRel));
    }

    /// The size limits of its cache (a reload keeps a cache whose limits
    /// stay the same).
    pub fn cache_limits(&self) -> crate::config::model::DegradedCache {
        self.config.cache
    }

    /// Whether this runtime runs `config` (routes with equal overrides
    /// share one runtime, and so one cache).
    pub fn runs(&self, config: &DegradedFilter) -> bool {
        self.config == *config
    }

    /// Why a request to `cluster` is degraded now, if it is. Stops at the
    /// first usable host of each cluster.
    pub fn reason(&self, cluster: &Cluster, overrides: &Overrides) -> Option<Reason> {
        let usable = |c: &Cluster| u64::from(c.has_usable_host());
        state::decide(
            cluster.name(),
            usable(cluster),
            self.dependencies.iter().map(|d| (d.name(), usable(d))),
            overrides.get(cluster.name()),
        )
    }

    /// [`reason`](Self::reason), noting a change (the watch task's call).
    fn observe(&self, cluster: &Cluster, overrides: &Overrides) {
        let reason = self.reason(cluster, overrides);
        self.note(cluster.name(), reason.as_ref());
    }

    /// Logs entering and leaving degraded mode, once each, and keeps the
    /// `active` gauge.
    fn note(&self, cluster: &str, reason: Option<&Reason>) {
        let now = reason.is_some();
        {
            let mut seen = self.shared.seen();
            let was = seen.iter().any(|c| c == cluster);
            if was == now {
                return;
            }
            if now {
                seen.push(cluster.to_string());
            } else {
                seen.retain(|c| c != cluster);
            }
        }
        let stats = &self.shared.stats;
        match reason {
            Some(reason) => {
                stats.active.inc();
                tracing::warn!(cluster, %reason, "degraded: reads from the cache, writes refused");
            }
            None => {
                stats.active.dec();
                tracing::info!(cluster, "no longer degraded: requests go upstream again");
            }
        }
    }

    /// Moves the listener's cache gauges by what this cache changed.
    async fn report_size(&self) {
        let bytes = i64::try_from(self.cache.bytes().await).unwrap_or(i64::MAX);
        let entries = i64::try_from(self.cache.entries().await).unwrap_or(i64::MAX);
        let r = &self.reported;
        if r.released.load(Ordering::Acquire) {
            return;
        }
        let stats = &self.shared.stats;
        stats
            .cache_bytes
            .add(bytes - r.bytes.swap(bytes, Ordering::AcqRel));
        stats
            .cache_entries
            .add(entries - r.entries.swap(entries, Ordering::AcqRel));
    }

    /// The answer to a request on a degraded route: nothing goes upstream.
    pub async fn answer<B>(
        &self,
        reason: &Reason,
        req: &Request<B>,
        authority: &str,
        grpc: bool,
    ) -> Response<ResponseBody> {
        if grpc {
            self.shared.stats.grpc_rejected.inc();
            return self.refuse(reason, true);
        }
        let method = req.method();
        if self.config.reject_methods.contains(method) {
            self.shared.stats.write_rejected.inc();
            return self.refuse(reason, false);
        }
        if method == Method::GET || method == Method::HEAD {
            let head = RequestHead {
                method,
                scheme: "http",
                authority,
                path_and_query: req.uri().path_and_query().map_or("/", |p| p.as_str()),
                headers: req.headers(),
            };
            if let Some(hit) = self.cache.lookup(&head, SystemTime::now()).await {
                self.shared.stats.stale_served.inc();
                return stale(&hit, &reason.to_string(), method == Method::HEAD);
            }
            self.shared.stats.cache_miss.inc();
        }
        self.refuse(reason, false)
    }

    fn refuse(&self, reason: &Reason, grpc: bool) -> Response<ResponseBody> {
        let mut resp = LocalReply::Degraded {
            reason: reason.to_string(),
            retry_after_s: self.retry_after_s,
        }
        .into_response(grpc);
        mark(&mut resp, &reason.to_string());
        resp
    }

    /// What to keep of a GET that is forwarded (`None` for other methods).
    pub fn capture<B>(self: &Arc<Self>, req: &Request<B>, authority: &str) -> Option<Capture> {
        (req.method() == Method::GET).then(|| Capture {
            runtime: Arc::clone(self),
            method: Method::GET,
            authority: authority.to_string(),
            path_and_query: req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            headers: req.headers().clone(),
        })
    }
}

impl Capture {
    /// The forwarded GET's response: a failure hidden behind a cached entry
    /// (`stale_if_error`), or a cacheable response filling the cache as it
    /// streams to the client.
    pub async fn after(self, resp: Response<ResponseBody>) -> Response<ResponseBody> {
        let runtime = Arc::clone(&self.runtime);
        let status = resp.status();
        if runtime.config.stale_if_error && is_error(status) {
            if let Some(hit) = runtime.cache.lookup(&self.head(), SystemTime::now()).await {
                runtime.shared.stats.stale_served.inc();
                let why = format!("upstream answered {}", status.as_u16());
                return stale(&hit, &why, false);
            }
            return resp;
        }
        let now = SystemTime::now();
        if runtime.cache.has_fresh(&self.head(), now).await {
            // Stored already and still fresh: no copy, no insert.
            return resp;
        }
        let policy = match runtime
            .cache
            .storable(&self.head(), status, resp.headers(), now)
        {
            Ok(policy) => policy,
            Err(_) => return resp,
        };
        let (parts, body) = resp.into_parts();
        // Sized from Content-Length when there is one, so the stored body
        // holds no spare capacity the cache's weigher would not count.
        let expected = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let fill = CacheFill {
            capture: self,
            policy: Some(policy),
            status,
            headers: parts.headers.clone(),
            body: BytesMut::with_capacity(expected),
            overflowed: false,
        };
        Response::from_parts(parts, body.tapped(Box::new(fill)))
    }
}

/// The routes a world's degraded filters cover: (configuration, cluster,
/// the cluster's index in the world), each pair once.
pub type Watched = Vec<(Arc<DegradedRuntime>, Arc<Cluster>, usize)>;

/// Adds a covered route's pair to `watched` unless it is there already.
pub fn watch_route(
    watched: &mut Watched,
    runtime: &Arc<DegradedRuntime>,
    cluster: &Arc<Cluster>,
    slot: usize,
) {
    if !watched
        .iter()
        .any(|(r, _, s)| Arc::ptr_eq(r, runtime) && *s == slot)
    {
        watched.push((Arc::clone(runtime), Arc::clone(cluster), slot));
    }
}

/// Logs entering and leaving degraded mode (and moves `active`) as health
/// changes, whether or not requests arrive: re-evaluated on every change
/// signal (host health recounts, `POST /degraded`), from the end of the
/// first round of health checks until `stop`.
pub async fn watch(
    watched: Watched,
    modes: Arc<Overrides>,
    warmup: Arc<crate::health::scheduler::Warmup>,
    changes: crate::lifecycle::Changes,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut changed = changes.subscribe();
    tokio::select! {
        () = stop.cancelled() => return,
        () = warmup.wait() => {}
    }
    loop {
        changed.mark_unchanged();
        for (runtime, cluster, _) in &watched {
            runtime.observe(cluster, &modes);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            result = changed.changed() => if result.is_err() { return },
        }
    }
}

/// 500, 502, 503 and 504 are the errors RFC 5861's stale-if-error hides.
fn is_error(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// A cached response answered while degraded (or for a failed request):
/// its status, headers and body, with `Age`, RFC 9211 `Cache-Status` and
/// `x-hale-degraded` naming why.
fn stale(hit: &Hit, why: &str, head_only: bool) -> Response<ResponseBody> {
    let body = if head_only {
        ResponseBody::empty()
    } else {
        ResponseBody::full(hit.entry.body.clone())
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = hit.entry.status;
    *resp.headers_mut() = hit.entry.headers.clone();
    let headers = resp.headers_mut();
    headers.insert(AGE, HeaderValue::from(hit.age.as_secs()));
    let detail = why.replace(['"', '\\'], "'");
    // RFC 9211: each cache appends its entry after the ones before it.
    let ours = format!("hale; hit; detail=\"stale: {detail}\"");
    let value = match headers.get("cache-status").and_then(|v| v.to_str().ok()) {
        Some(upstream) => format!("{upstream}, {ours}"),
        None => ours,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert("cache-status", v);
    }
    mark(&mut resp, why);
    resp
}

fn mark<B>(resp: &mut Response<B>, why: &str) {
    if let Ok(v) = HeaderValue::from_str(why) {
        resp.headers_mut().insert(DEGRADED_HEADER, v);
    }
}

/// Collects a cacheable response's body as it streams to the client and
/// stores it when it ended whole and within `max_entry_bytes`.
struct CacheFill {
    capture: Capture,
    policy: Option<http_cache_semantics::CachePolicy>,
    status: StatusCode,
    headers: HeaderMap,
    body: BytesMut,
    overflowed: bool,
}

impl BodyTap for CacheFill {
    fn data(&mut self, data: &Bytes) {
        if self.overflowed {
            return;
        }
        let max = self.capture.runtime.cache.max_entry_bytes();
        if (self.body.len() + data.len()) as u64 > max {
            self.overflowed = true;
            self.body = BytesMut::new();
            return;
        }
        self.body.extend_from_slice(data);
    }

    fn end(mut self: Box<Self>, completed: bool) {
        let Some(policy) = self.policy.take() else {
            return;
        };
        if !completed || self.overflowed {
            return;
        }
        // The store is off the response's path; it only needs a runtime.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let fill = *self;
            let cache = &fill.capture.runtime.cache;
            // A body grown by doubling may hold twice its length: keep an
            // exact copy instead, so the weighed bytes are the held bytes.
            let body = if fill.body.capacity() > fill.body.len() + fill.body.len() / 8 {
                Bytes::copy_from_slice(&fill.body)
            } else {
                fill.body.freeze()
            };
            if cache
                .store(
                    &fill.capture.head(),
                    policy,
                    fill.status,
                    fill.headers,
                    body,
                )
                .await
                .is_ok()
            {
                // Off the response's path: settle moka's pending work so
                // the gauges say what the caches hold.
                fill.capture.runtime.report_size().await;
            }
        });
    }
}

impl std::fmt::Debug for CacheFill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheFill")
            .field("status", &self.status)
            .field("collected", &self.body.len())
            .finish()
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
fn retry_after_secs(config: &DegradedFilter) -> u64 {
    let d: Duration = config.retry_after;
    d.as_secs_f64().ceil().max(1.0) as u64
}
