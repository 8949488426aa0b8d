//! Upstream connections of one host: dial with the cluster's connect
//! timeout, keep HTTP/1.1 connections idle for reuse, share one HTTP/2
//! connection among streams, and count every connection.
//!
//! Each data-path worker has its own pool per host (Envoy's model): a
//! connection is driven by the worker that opened it and only that worker
//! sends on it, so no request crosses threads and the pool's locks are
//! never contended.
//!
//! Owns: connection lifetime and the per-host/per-cluster connection stats
//! (`cx_total`, `cx_active`, `cx_connect_fail`). The only locks on the data
//! path live here, held for a push or a pop, never across an `.await`.
//! Must not touch: routing, balancing or health decisions.
//!
//! The dialer is generic (`Dial`), so upstream TLS can wrap the TCP stream
//! later without touching the pool.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use tokio::sync::Notify;

use super::body::RequestBody;
use super::breaker::{Breakers, Permit};
use crate::config::model::{RoutingPriority, UpstreamProtocol};
use crate::stats::{Counter, Gauge};

/// How long a parked HTTP/1.1 connection may take to be ready again.
const PARKED_READY_WAIT: Duration = Duration::from_millis(50);

/// How many idle HTTP/1.1 connections one host keeps at most.
const MAX_IDLE_PER_HOST: usize = 256;

/// Why a request could not be handed to the upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Dialing timed out (`connect_timeout`).
    #[error("connection timeout")]
    ConnectTimeout,
    /// Dialing failed (refused, unreachable…).
    #[error("connection failure, transport failure reason: {0}")]
    Connect(io::Error),
    /// The HTTP handshake or exchange failed before response headers.
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// A circuit breaker (`max_connections` with `max_pending_requests`
    /// exhausted) refused the request; nothing was sent.
    #[error("overflow")]
    Overflow,
}

/// A send that failed, with the request handed back when not a byte of it
/// was written (no connection could be had), so it may go elsewhere.
pub struct Failed {
    /// Why.
    pub error: SendError,
    /// The request, if it was never sent.
    pub unsent: Option<Request<RequestBody>>,
}

impl Failed {
    fn unsent(error: SendError, req: Request<RequestBody>) -> Self {
        Self {
            error,
            unsent: Some(req),
        }
    }

    fn sent(error: hyper::Error) -> Self {
        Self {
            error: SendError::Http(error),
            unsent: None,
        }
    }
}

impl SendError {
    /// True when no connection was made (the request never left hale).
    pub fn is_connect_failure(&self) -> bool {
        matches!(self, SendError::ConnectTimeout | SendError::Connect(_))
    }
}

/// Connection counters of one host and of its cluster, bumped together.
#[derive(Debug, Clone)]
pub struct ConnStats {
    /// Per-host `cx_total`.
    pub host_cx_total: Arc<std::sync::atomic::AtomicU64>,
    /// Per-host `cx_active`.
    pub host_cx_active: Arc<std::sync::atomic::AtomicI64>,
    /// Per-host `cx_connect_fail`.
    pub host_cx_connect_fail: Arc<std::sync::atomic::AtomicU64>,
    /// `cluster.<name>.upstream_cx_total`.
    pub cx_total: Counter,
    /// `cluster.<name>.upstream_cx_active`.
    pub cx_active: Gauge,
    /// `cluster.<name>.upstream_cx_connect_fail`.
    pub cx_connect_fail: Counter,
    /// `cluster.<name>.upstream_cx_connect_timeout`.
    pub cx_connect_timeout: Counter,
    /// `cluster.<name>.upstream_cx_http1_total` / `upstream_cx_http2_total`.
    pub cx_protocol_total: Counter,
    /// The cluster's first-traffic signal for its health checks.
    pub traffic: Arc<crate::health::scheduler::FirstTraffic>,
}

/// Ends a connection's accounting when the connection task ends: stats,
/// its `max_connections` permit, and a wake-up for a request waiting for a
/// connection.
struct LiveConnection {
    stats: ConnStats,
    _permit: Permit,
    freed: Arc<Notify>,
}

impl Drop for LiveConnection {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.host_cx_active.fetch_sub(1, Relaxed);
        self.stats.cx_active.dec();
        self.freed.notify_one();
    }
}

/// The pools of one host, one per data-path worker.
#[derive(Debug)]
pub struct HostPool {
    protocol: UpstreamProtocol,
    workers: Box<[WorkerPool]>,
}

impl HostPool {
    /// Empty pools for `address`, one for each of `workers` workers.
    pub fn new(
        address: SocketAddr,
        protocol: UpstreamProtocol,
        connect_timeout: Duration,
        stats: ConnStats,
        breakers: &Arc<Breakers>,
        workers: usize,
    ) -> Self {
        Self {
            protocol,
            workers: (0..workers.max(1))
                .map(|_| {
                    WorkerPool::new(
                        address,
                        protocol,
                        connect_timeout,
                        stats.clone(),
                        Arc::clone(breakers),
                    )
                })
                .collect(),
        }
    }

    /// The upstream protocol.
    pub fn protocol(&self) -> UpstreamProtocol {
        self.protocol
    }

    fn mine(&self) -> &WorkerPool {
        let index = super::worker::current() % self.workers.len();
        &self.workers[index]
    }

    /// Sends `req` on this worker's pooled or new connection and waits for
    /// the response headers. Returns the HTTP/1.1 sender to hand back (on
    /// the same worker) when the response body ends.
    pub async fn send(
        &self,
        req: Request<RequestBody>,
        priority: RoutingPriority,
    ) -> Result<(Response<Incoming>, Option<http1::SendRequest<RequestBody>>), Failed> {
        self.mine().send(req, priority).await
    }

    /// Parks an HTTP/1.1 sender whose response ended cleanly.
    pub fn give_back(&self, sender: http1::SendRequest<RequestBody>) {
        self.mine().give_back(sender);
    }
}

/// One worker's connections to one host.
#[derive(Debug)]
struct WorkerPool {
    address: SocketAddr,
    protocol: UpstreamProtocol,
    connect_timeout: Duration,
    stats: ConnStats,
    // Idle HTTP/1.1 senders, most recently used last (LIFO keeps warm
    // connections warm). Pushed when a response ends, popped per request.
    idle: Mutex<Vec<http1::SendRequest<RequestBody>>>,
    // The shared HTTP/2 connection, replaced when it closes.
    shared_h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
    // Serialises HTTP/2 dials so a burst does not open one per request.
    h2_dial: tokio::sync::Mutex<()>,
    // The cluster's circuit breakers (shared by every host and worker).
    breakers: Arc<Breakers>,
    // Woken when a connection is parked or closes: a request waiting
    // because of max_connections may go on.
    freed: Arc<Notify>,
}

impl WorkerPool {
    fn new(
        address: SocketAddr,
        protocol: UpstreamProtocol,
        connect_timeout: Duration,
        stats: ConnStats,
        breakers: Arc<Breakers>,
    ) -> Self {
        Self {
            breakers,
            freed: Arc::new(Notify::new()),
            address,
            protocol,
            connect_timeout,
            stats,
            idle: Mutex::new(Vec::new()),
            shared_h2: Mutex::new(None),
            h2_dial: tokio::sync::Mutex::new(()),
        }
    }

    async fn send(
        &self,
        req: Request<RequestBody>,
        priority: RoutingPriority,
    ) -> Result<(Response<Incoming>, Option<http1::SendRequest<RequestBody>>), Failed> {
        match self.protocol {
            UpstreamProtocol::Http1 => self.send_h1(req, priority).await,
            UpstreamProtocol::Http2 => {
                let mut sender = match self.h2_sender(priority).await {
                    Ok(sender) => sender,
                    Err(error) => return Err(Failed::unsent(error, req)),
                };
                let resp = sender.send_request(req).await.map_err(Failed::sent)?;
                Ok((resp, None))
            }
        }
    }

    async fn send_h1(
        &self,
        mut req: Request<RequestBody>,
        priority: RoutingPriority,
    ) -> Result<(Response<Incoming>, Option<http1::SendRequest<RequestBody>>), Failed> {
        // Held while this request waits for a connection (max_connections).
        let mut pending = None;
        loop {
            // Registered before looking, so a connection parked or closed
            // between the look and the wait still wakes this request.
            let freed = self.freed.notified();
            // Idle connections may have been closed by the upstream since
            // they were parked; a request that was not written is tried on
            // the next.
            while let Some(mut sender) = self.pop_idle() {
                // A parked connection finished its exchange and is ready at
                // once; one that is not within a moment is not worth waiting for.
                if !sender.is_ready()
                    && !matches!(
                        tokio::time::timeout(PARKED_READY_WAIT, sender.ready()).await,
                        Ok(Ok(()))
                    )
                {
                    continue;
                }
                match sender.try_send_request(req).await {
                    Ok(resp) => return Ok((resp, Some(sender))),
                    Err(mut e) => match e.take_message() {
                        Some(unsent) => req = unsent,
                        None => return Err(Failed::sent(e.into_error())),
                    },
                }
            }
            let permit = match self.connection_or_pending(&mut pending, priority) {
                Ok(permit) => permit,
                Err(error) => return Err(Failed::unsent(error, req)),
            };
            if let Some(permit) = permit {
                let mut sender = match self.dial_h1(permit).await {
                    Ok(sender) => sender,
                    Err(error) => return Err(Failed::unsent(error, req)),
                };
                let resp = sender.send_request(req).await.map_err(Failed::sent)?;
                return Ok((resp, Some(sender)));
            }
            freed.await;
        }
    }

    /// A `max_connections` permit for a new HTTP/2 connection, waiting as a
    /// pending request while the cluster is at the limit.
    async fn connection_permit(&self, priority: RoutingPriority) -> Result<Permit, SendError> {
        let mut pending = None;
        loop {
            let freed = self.freed.notified();
            if let Some(permit) = self.connection_or_pending(&mut pending, priority)? {
                return Ok(permit);
            }
            freed.await;
        }
    }

    /// A `max_connections` permit if there is one. Otherwise the request
    /// becomes a pending one (taking a `max_pending_requests` unit the first
    /// time, or overflowing) and the caller waits for a connection to be
    /// parked or to close; the route's timers bound the wait.
    fn connection_or_pending(
        &self,
        pending: &mut Option<Permit>,
        priority: RoutingPriority,
    ) -> Result<Option<Permit>, SendError> {
        if let Some(permit) = self.breakers.connection(priority) {
            *pending = None;
            return Ok(Some(permit));
        }
        if pending.is_none() {
            *pending = Some(self.breakers.pending(priority).ok_or(SendError::Overflow)?);
        }
        Ok(None)
    }

    fn pop_idle(&self) -> Option<http1::SendRequest<RequestBody>> {
        let mut idle = match self.idle.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn give_back(&self, sender: http1::SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = match self.idle.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if idle.len() < MAX_IDLE_PER_HOST {
            idle.push(sender);
            drop(idle);
            self.freed.notify_one();
        }
    }

    async fn h2_sender(
        &self,
        priority: RoutingPriority,
    ) -> Result<http2::SendRequest<RequestBody>, SendError> {
        if let Some(s) = self.current_h2() {
            return Ok(s);
        }
        let _dialing = self.h2_dial.lock().await;
        if let Some(s) = self.current_h2() {
            return Ok(s);
        }
        let permit = self.connection_permit(priority).await?;
        let io = self.dial().await?;
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| self.handshake_failed(e))?;
        let live = self.connection_opened(permit);
        tokio::spawn(async move {
            let _live = live;
            let _ = conn.await;
        });
        let mut shared = match self.shared_h2.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *shared = Some(sender.clone());
        Ok(sender)
    }

    fn current_h2(&self) -> Option<http2::SendRequest<RequestBody>> {
        let shared = match self.shared_h2.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        shared.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    async fn dial_h1(&self, permit: Permit) -> Result<http1::SendRequest<RequestBody>, SendError> {
        let io = self.dial().await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| self.handshake_failed(e))?;
        let live = self.connection_opened(permit);
        tokio::spawn(async move {
            let _live = live;
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn dial(&self) -> Result<TokioIo<TcpStream>, SendError> {
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(self.address),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                self.connect_failed();
                return Err(SendError::Connect(e));
            }
            Err(_elapsed) => {
                self.connect_failed();
                self.stats.cx_connect_timeout.inc();
                return Err(SendError::ConnectTimeout);
            }
        };
        // Requests are small and latency-bound; Nagle only adds delay.
        let _ = stream.set_nodelay(true);
        Ok(TokioIo::new(stream))
    }

    fn connect_failed(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.host_cx_connect_fail.fetch_add(1, Relaxed);
        self.stats.cx_connect_fail.inc();
        self.stats.host_cx_total.fetch_add(1, Relaxed);
        self.stats.cx_total.inc();
        self.stats.traffic.mark();
    }

    fn handshake_failed(&self, e: hyper::Error) -> SendError {
        self.connect_failed();
        SendError::Http(e)
    }

    fn connection_opened(&self, permit: Permit) -> LiveConnection {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.host_cx_total.fetch_add(1, Relaxed);
        self.stats.host_cx_active.fetch_add(1, Relaxed);
        self.stats.cx_total.inc();
        self.stats.traffic.mark();
        self.stats.cx_active.inc();
        self.stats.cx_protocol_total.inc();
        LiveConnection {
            stats: self.stats.clone(),
            _permit: permit,
            freed: Arc::clone(&self.freed),
        }
    }
}
