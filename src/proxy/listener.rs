//! Accepting connections and serving HTTP/1.1 and HTTP/2 on them.
//!
//! Owns: the accept loop, one task per connection, the connection's idle
//! timeout, header size limits, and stopping on shutdown: stop accepting,
//! then ask every connection to finish (HTTP/1.1 `Connection: close` after
//! the in-flight response, HTTP/2 GOAWAY), tracked so the caller can wait.
//! Must not touch: what a request does (that is `proxy::handle`).
//!
//! The accepted stream is generic at the `serve_connection` boundary, so
//! TLS can wrap it later.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::snapshot::{HttpStats, ListenerWorld, Snapshot};
use super::{Downstream, handle};
use crate::config::model::{Codec, HttpConnectionManager};
use crate::lifecycle::ServingFlags;

/// hyper's smallest allowed HTTP/1 read buffer.
const MIN_H1_BUFFER: usize = 8192;

/// How often a busy connection checks that its responses still move.
const STALL_CHECK: Duration = Duration::from_secs(1);

/// In-flight bookkeeping of one downstream connection: its idle timeout,
/// and the deadline of a response that may stall because the client stopped
/// reading (then hyper stops polling the body, so the body cannot enforce
/// its own deadlines; the connection task, always polled, does).
#[derive(Debug)]
pub struct ConnectionState {
    // Requests in flight on this connection: +1 when a request starts,
    // -1 when its response ends (written by request tasks, read by the
    // connection task).
    active: AtomicUsize,
    // Milliseconds since `epoch` when the last response ended.
    last_done_ms: AtomicU64,
    // Milliseconds since `epoch` by which the response streaming now must
    // move or end (u64::MAX: none). Written by response bodies as they
    // stream, read by the connection task. On HTTP/2 the latest stream to
    // write it wins: a stuck stream is caught when it is the one that wrote.
    stall_deadline_ms: AtomicU64,
    epoch: Instant,
    // Asked by a response to close the connection gracefully (HTTP/2
    // GOAWAY while health checks are failed).
    drain: tokio::sync::Notify,
}

impl ConnectionState {
    fn new() -> Self {
        Self {
            active: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            stall_deadline_ms: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            drain: tokio::sync::Notify::new(),
        }
    }

    /// Asks the connection to finish gracefully (GOAWAY on HTTP/2).
    pub fn request_drain(&self) {
        self.drain.notify_one();
    }

    /// Sets (or, with `None`, clears) the deadline of the response streaming now.
    pub fn set_stall_deadline(&self, deadline: Option<Instant>) {
        let ms = deadline.map_or(u64::MAX, |d| {
            u64::try_from(d.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
        });
        self.stall_deadline_ms.store(ms, Ordering::Relaxed);
    }

    fn stall_deadline(&self) -> Option<Instant> {
        match self.stall_deadline_ms.load(Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(self.epoch + Duration::from_millis(ms)),
        }
    }

    /// A request started on this connection.
    pub fn request_started(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// A request's response ended.
    pub fn request_finished(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_done_ms.store(now, Ordering::Relaxed);
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// How long the connection has had nothing in flight; `None` while busy.
    fn idle_for(&self) -> Option<Duration> {
        if self.active.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_done_ms.load(Ordering::Relaxed));
        Some(self.epoch.elapsed().saturating_sub(last))
    }
}

/// One listener's drain state, set by the admin's `/drain_listeners` and
/// read by every worker's accept loop and by each response.
#[derive(Debug)]
pub struct ListenerGate {
    /// The listener's name.
    pub name: String,
    /// Cancelled to stop accepting on every worker.
    pub stop_accepting: CancellationToken,
    epoch: Instant,
    // When a graceful drain started (ms since epoch + 1; 0: none) and how
    // long it lasts (ms).
    drain_started_ms: AtomicU64,
    drain_ms: AtomicU64,
}

impl ListenerGate {
    /// An open gate.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            stop_accepting: CancellationToken::new(),
            epoch: Instant::now(),
            drain_started_ms: AtomicU64::new(0),
            drain_ms: AtomicU64::new(0),
        }
    }

    /// Starts Envoy's gradual drain over `over`: responses close their
    /// connection with a probability growing from 0 to 1.
    pub fn start_drain(&self, over: Duration) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.drain_ms.store(
            u64::try_from(over.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let _ = self.drain_started_ms.compare_exchange(
            0,
            now.saturating_add(1),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Whether the listener was drained or stopped by the admin.
    pub fn drained(&self) -> bool {
        self.stop_accepting.is_cancelled() || self.drain_started_ms.load(Ordering::Acquire) != 0
    }

    /// Envoy's `drainClose()` for a graceful drain: true with probability
    /// elapsed / drain time, always once it is over. One load when not
    /// draining.
    #[inline]
    pub fn drain_close(&self) -> bool {
        let started = self.drain_started_ms.load(Ordering::Acquire);
        if started == 0 {
            return false;
        }
        let elapsed = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_sub(started - 1);
        let over = self.drain_ms.load(Ordering::Relaxed);
        elapsed >= over || rand::random_range(0..over) < elapsed
    }
}

/// Everything a listener's connections share. What may change with a
/// reload (routes, filters, connection settings, stats) is read from the
/// world each new connection finds.
#[derive(Debug, Clone)]
pub struct ListenerShared {
    /// This listener's id in every world that has it.
    pub id: u64,
    /// The published world.
    pub snapshot: Snapshot,
    /// `/healthcheck/fail` and draining.
    pub serving: Arc<ServingFlags>,
    /// The admin's drain state of this listener.
    pub gate: Arc<ListenerGate>,
    /// Set when a reload removes the listener, to the listener as the old
    /// world had it: its connections, draining, route by it (requests that
    /// race the close are served, not refused).
    pub retired: Arc<ArcSwapOption<ListenerWorld>>,
}

/// How a listener serves a connection: HTTP/1.1, HTTP/2 or either, with
/// its header limits.
pub type HttpBuilder = auto::Builder<TokioExecutor>;

/// Accepts until `shutdown` (hale stops, or a reload removed the
/// listener), serving each connection on its own task registered in
/// `tracker`; `shutdown` also closes those connections gracefully.
pub async fn serve(
    listener: TcpListener,
    shared: ListenerShared,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            () = shared.gate.stop_accepting.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                // A connection accepted just as a reload removed the
                // listener is served by the retired one (and closed at once:
                // the stop token is cancelled right after the swap).
                let Some(settings) = ConnectionSettings::now(&shared) else {
                    continue;
                };
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    serve_connection(stream, peer, shared, settings, shutdown).await;
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // rather than spin; the listener itself is still good.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// What a connection keeps for its life from the world it was accepted in.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// The listener's HTTP server settings.
    pub http: Arc<HttpBuilder>,
    /// The listener's stats.
    pub stats: Arc<HttpStats>,
    /// `idle_timeout`.
    pub idle_timeout: Option<Duration>,
}

impl ConnectionSettings {
    /// The settings of `shared`'s listener in the world now; `None` when a
    /// reload removed it.
    pub fn now(shared: &ListenerShared) -> Option<Self> {
        let world = shared.snapshot.load();
        let retired = shared.retired.load();
        let listener = world.listener(shared.id).or(retired.as_ref())?;
        Some(Self {
            http: Arc::clone(&listener.http),
            stats: Arc::clone(&listener.stats),
            idle_timeout: listener.config.http.idle_timeout,
        })
    }
}

/// The HTTP server settings of a connection manager.
pub fn http_builder(hcm: &HttpConnectionManager) -> HttpBuilder {
    let header_bytes = (hcm.max_request_headers_kb as usize).saturating_mul(1024);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        .max_buf_size(header_bytes.max(MIN_H1_BUFFER));
    builder
        .http2()
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX));
    match hcm.codec {
        Codec::Auto => builder,
        Codec::Http1 => builder.http1_only(),
        Codec::Http2 => builder.http2_only(),
    }
}

/// Serves one connection until it closes, idles out or shutdown finishes it.
pub async fn serve_connection<S>(
    stream: S,
    peer: std::net::SocketAddr,
    shared: ListenerShared,
    settings: ConnectionSettings,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ConnectionSettings {
        http: builder,
        stats,
        idle_timeout,
    } = settings;
    stats.downstream_cx_total.inc();
    stats.downstream_cx_active.inc();
    let from = Arc::new(Downstream {
        listener: shared.id,
        retired: Arc::clone(&shared.retired),
        peer,
        connection: ConnectionState::new(),
        snapshot: shared.snapshot.clone(),
        serving: Arc::clone(&shared.serving),
        gate: Arc::clone(&shared.gate),
    });
    let state = Arc::clone(&from);
    let service = service_fn(move |req: http::Request<Incoming>| {
        let from = Arc::clone(&from);
        async move { Ok::<_, Infallible>(handle(from, req).await) }
    });

    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let idle_check = tokio::time::sleep(idle_timeout.unwrap_or(STALL_CHECK).min(STALL_CHECK));
    tokio::pin!(idle_check);
    let mut closing = false;
    loop {
        tokio::select! {
            // The connection first: it is what almost every wake is for.
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "downstream connection ended with an error");
                }
                break;
            }
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = state.connection.drain.notified(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            // Also while closing: a stalled response must still be cut off
            // on a connection that is finishing its last streams.
            () = &mut idle_check => {
                // Checked every STALL_CHECK at most: a request may start at
                // any time, and its response's deadline must be watched.
                let now = Instant::now();
                match state.connection.idle_for() {
                    Some(_) if closing => idle_check.as_mut().reset(now + STALL_CHECK),
                    Some(idle) => match idle_timeout {
                        Some(timeout) if idle >= timeout => {
                            closing = true;
                            stats.downstream_cx_idle_timeout.inc();
                            conn.as_mut().graceful_shutdown();
                        }
                        Some(timeout) => {
                            idle_check.as_mut().reset(now + (timeout - idle).min(STALL_CHECK));
                        }
                        None => idle_check.as_mut().reset(now + STALL_CHECK),
                    },
                    None => {
                        if state.connection.stall_deadline().is_some_and(|d| now >= d) {
                            // A response passed its deadline without hyper
                            // polling it (the client stopped reading): end the
                            // connection, which frees the upstream too.
                            stats.downstream_rq_stalled.inc();
                            tracing::debug!(%peer, "closing a connection whose response stalled past its deadline");
                            break;
                        }
                        idle_check.as_mut().reset(now + STALL_CHECK);
                    }
                }
            }
        }
    }
    stats.downstream_cx_active.dec();
    stats.downstream_cx_destroy.inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_graceful_drain_closes_more_connections_as_it_goes() {
        let gate = ListenerGate::new("l");
        assert!(!gate.drain_close() && !gate.drained());
        gate.start_drain(Duration::from_secs(10));
        assert!(gate.drained());
        let share = |gate: &ListenerGate| (0..2000).filter(|_| gate.drain_close()).count();
        // Envoy's ramp: about elapsed / drain time of responses close.
        tokio::time::advance(Duration::from_secs(2)).await;
        let early = share(&gate);
        tokio::time::advance(Duration::from_secs(6)).await;
        let late = share(&gate);
        assert!((200..=600).contains(&early), "{early}");
        assert!((1400..=1800).contains(&late), "{late}");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(
            share(&gate),
            2000,
            "every response closes once the drain is over"
        );
    }
}
