//! Assembling a running hale: bind, start the data-path runtime and the
//! admin runtime on their own threads, go Live, and on request drain and stop.
//!
//! Owns: threads, runtimes, the shutdown sequence and its bound (the drain
//! time). `main` calls [`start`] and waits; tests do the same with port 0.
//! Must not touch: what requests do (proxy) or what the admin says (admin).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::config::Bootstrap;
use crate::health::scheduler::Warmup;
use crate::lifecycle::{Heartbeat, Lifecycle, Phase};
use crate::proxy::cluster::HealthRuntime;
use crate::proxy::listeners::{self, Bound, ListenerSet};
use crate::proxy::snapshot::{Build, Snapshot, World};
use crate::reload::{self, ReloadHandle, Reloader, Triggers};
use crate::stats::Store;

mod options;
mod worker;

use worker::Worker;

use options::command_line_options;

pub use options::{DEFAULT_DRAIN_SETTLE, DEFAULT_DRAIN_TIME, Options, Stop, default_concurrency};

/// Why hale could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener or the admin could not bind.
    #[error("cannot bind {what} to {address}: {source}")]
    Bind {
        /// Which socket.
        what: String,
        /// Where.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A runtime or thread could not be created.
    #[error("cannot start {what}: {source}")]
    Runtime {
        /// Which one.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// `--admin-address-path` could not be written.
    #[error("cannot write the admin address to {path}: {source}")]
    AdminAddressPath {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The data path stopped before it was serving.
    #[error("the data path stopped during startup")]
    Aborted,
}

/// A running hale.
#[derive(Debug)]
pub struct Running {
    /// Listener name → bound address, in config order.
    pub listeners: Vec<(String, SocketAddr)>,
    /// The admin's bound address, if the config has an admin.
    pub admin: Option<SocketAddr>,
    /// The stat store (tests read it directly).
    pub store: Arc<Store>,
    /// hale's phase.
    pub lifecycle: Lifecycle,
    /// The probe server's bound address, if configured.
    pub probes: Option<SocketAddr>,
    /// The data path's heartbeat (tests stall it).
    pub heartbeat: Arc<Heartbeat>,
    /// Asks for a reload (SIGHUP; tests).
    pub reload: ReloadHandle,
    shutdown: CancellationToken,
    // Stops watching the config file when hale stops.
    _watch: Option<reload::watch::ConfigWatch>,
    stop_now: CancellationToken,
    quit: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Asks hale to stop: stop accepting, finish in-flight requests (at most
    /// the drain time), then stop. Returns at once; see [`Running::wait`].
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Cuts a drain short (what a second SIGTERM does).
    pub fn stop_now(&self) {
        self.stop_now.cancel();
    }

    /// Cancelled when the admin's `/quitquitquit` asks hale to exit.
    pub fn quit_requested(&self) -> CancellationToken {
        self.quit.clone()
    }

    /// Blocks until every thread has stopped (call after `shutdown`).
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// The address of the listener called `name`.
    pub fn listener(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }
}

/// Binds `count` sockets of `what` (see [`listeners::bind`]).
fn bind(what: &str, address: SocketAddr, count: usize) -> Result<Bound, StartError> {
    listeners::bind(address, count).map_err(|source| StartError::Bind {
        what: what.to_string(),
        address,
        source,
    })
}

/// Binds every socket, starts the runtimes and returns once hale is Live.
pub fn start(bootstrap: Bootstrap, options: &Options) -> Result<Running, StartError> {
    start_with_shutdown(bootstrap, options, CancellationToken::new())
}

/// [`start`] with a shutdown token the caller already holds, so a signal
/// that arrives while hale is still warming up drains it too.
pub fn start_with_shutdown(
    bootstrap: Bootstrap,
    options: &Options,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    start_with_stop(
        bootstrap,
        options,
        Stop {
            drain: shutdown,
            ..Stop::default()
        },
    )
}

/// [`start`] with both stop tokens held by the caller.
pub fn start_with_stop(
    bootstrap: Bootstrap,
    options: &Options,
    stop: Stop,
) -> Result<Running, StartError> {
    let shutdown = stop.drain.clone();
    let loaded_digest = bootstrap.digest;
    let bootstrap = Arc::new(bootstrap);
    let workers = options.concurrency.max(1);
    // In config order: (name, sockets, one per worker).
    let mut sockets = Vec::with_capacity(bootstrap.listeners.len());
    let mut bound = Vec::with_capacity(bootstrap.listeners.len());
    for l in &bootstrap.listeners {
        let b = bind(&format!("listener {}", l.name), l.address, workers)?;
        bound.push((l.name.clone(), b.address));
        sockets.push((l.name.clone(), b));
    }
    let admin_socket = match &bootstrap.admin {
        Some(a) => Some(bind("admin", a.address, 1)?),
        None => None,
    };
    let admin_addr = admin_socket.as_ref().map(|s| s.address);
    let probe_socket = match &bootstrap.health_server {
        Some(p) => Some(bind("the probe server", p.address, 1)?),
        None => None,
    };
    let probe_addr = probe_socket.as_ref().map(|s| s.address);
    // Written as soon as the admin is bound, before health checks warm up,
    // so a supervisor can watch /ready go from INITIALIZING to LIVE.
    if let (Some(path), Some(addr)) = (&options.admin_address_path, admin_addr) {
        std::fs::write(path, addr.to_string()).map_err(|source| StartError::AdminAddressPath {
            path: path.clone(),
            source,
        })?;
    }

    let store = Store::new();
    let lifecycle = Lifecycle::new(&store);
    store
        .gauge("server.concurrency")
        .set(i64::try_from(options.concurrency).unwrap_or(i64::MAX));
    let snapshot: Snapshot = Arc::new(ArcSwap::from_pointee(World::empty(Arc::clone(&bootstrap))));
    let (reload, triggers) = reload::channel();
    let quit = CancellationToken::new();
    let admin_stop = CancellationToken::new();
    let mut threads = Vec::new();
    let heartbeat = Arc::new(Heartbeat::new(workers));
    let warmup = Warmup::new();

    if let (Some(socket), Some(config)) = (probe_socket, bootstrap.health_server.clone()) {
        let state = Arc::new(crate::probes::ProbeState {
            config,
            lifecycle: lifecycle.clone(),
            heartbeat: Arc::clone(&heartbeat),
            snapshot: snapshot.clone(),
            warmup: Arc::clone(&warmup),
        });
        let stop = admin_stop.clone();
        threads.push(serve_on_own_thread(
            "hale-probes",
            socket.into_one(),
            move |listener| crate::probes::serve(listener, state, stop),
        )?);
    }

    if let Some(socket) = admin_socket {
        let state = AdminState {
            snapshot: snapshot.clone(),
            store: Arc::clone(&store),
            lifecycle: lifecycle.clone(),
            options: Arc::new(command_line_options(options)),
            started: std::time::SystemTime::now(),
            quit: quit.clone(),
            drain_time: options.drain_time,
            bound: bound.clone(),
            reload: reload.clone(),
        };
        let stop = admin_stop.clone();
        threads.push(serve_on_own_thread(
            "hale-admin",
            socket.into_one(),
            move |listener| admin::serve(listener, state, stop),
        )?);
    }

    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let data = DataPath {
        bootstrap,
        sockets,
        workers,
        snapshot,
        store: Arc::clone(&store),
        lifecycle: lifecycle.clone(),
        shutdown: shutdown.clone(),
        stop_now: stop.now.clone(),
        stop_reason: Arc::clone(&stop.reason),
        drain_time: options.drain_time,
        settle_time: options.settle_time(),
        admin_stop: admin_stop.clone(),
        heartbeat: Arc::clone(&heartbeat),
        warmup,
        triggers,
        config_path: options.config_path.clone(),
        overrides: crate::config::Overrides {
            service_node: options.service_node.clone(),
            service_cluster: options.service_cluster.clone(),
        },
        loader: options.config_loader.clone(),
    };
    threads.push(spawn_thread("hale-main", move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let worker_threads = rt.block_on(data.run(ready_tx));
        for t in worker_threads {
            let _ = t.join();
        }
        Ok(())
    })?);

    if ready_rx.recv().is_err() {
        admin_stop.cancel();
        for t in threads {
            let _ = t.join();
        }
        return Err(StartError::Aborted);
    }
    Ok(Running {
        listeners: bound,
        admin: admin_addr,
        store,
        lifecycle,
        probes: probe_addr,
        heartbeat,
        _watch: watch_config(options, &reload, loaded_digest),
        reload,
        shutdown,
        stop_now: stop.now,
        quit,
        threads,
    })
}

/// Runs `serve` on `socket` on a thread with its own current-thread
/// runtime (the admin and the probe server: a busy data path never delays
/// them).
fn serve_on_own_thread<F, Fut>(
    name: &'static str,
    socket: StdListener,
    serve: F,
) -> Result<JoinHandle<()>, StartError>
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    spawn_thread(name, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            match tokio::net::TcpListener::from_std(socket) {
                Ok(listener) => serve(listener).await,
                Err(e) => tracing::error!(thread = name, error = %e, "listener unusable"),
            }
        });
        Ok(())
    })
}

fn spawn_thread(
    name: &'static str,
    body: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> Result<JoinHandle<()>, StartError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            if let Err(e) = body() {
                tracing::error!(thread = name, error = %e, "runtime failed");
            }
        })
        .map_err(|source| StartError::Runtime { what: name, source })
}

/// The data path's side of startup and shutdown, driven from the control
/// thread (`hale-main`); requests are served by the worker threads.
struct DataPath {
    bootstrap: Arc<Bootstrap>,
    /// Each listener's name and sockets, in config order.
    sockets: Vec<(String, Bound)>,
    workers: usize,
    snapshot: Snapshot,
    store: Arc<Store>,
    lifecycle: Lifecycle,
    shutdown: CancellationToken,
    stop_now: CancellationToken,
    stop_reason: Arc<std::sync::OnceLock<&'static str>>,
    drain_time: Duration,
    settle_time: Duration,
    admin_stop: CancellationToken,
    heartbeat: Arc<Heartbeat>,
    warmup: Arc<Warmup>,
    /// Reload requests, taken up once hale is live.
    triggers: Triggers,
    config_path: PathBuf,
    overrides: crate::config::Overrides,
    loader: crate::config::Loader,
}

impl DataPath {
    /// Builds the world, starts the workers, goes Live, reloads when asked,
    /// and on shutdown drains; returns the worker threads to join.
    async fn run(self, ready: mpsc::Sender<()>) -> Vec<JoinHandle<()>> {
        // Health checks go on while draining (as in Envoy) and stop with hale.
        let health = HealthRuntime {
            warmup: Arc::clone(&self.warmup),
            stop: CancellationToken::new(),
            changes: self.lifecycle.changes().clone(),
        };
        let bound: HashMap<String, SocketAddr> = self
            .sockets
            .iter()
            .map(|(name, b)| (name.clone(), b.address))
            .collect();
        let world = Arc::new(
            World::build(
                Arc::clone(&self.bootstrap),
                Build::fresh(&self.store, self.workers, &health, &bound),
            )
            .await,
        );
        self.snapshot.store(Arc::clone(&world));
        // Envoy's cluster warming: serve only once every health-checked
        // host has had its first result (bounded by the checks' timeouts).
        if health.warmup.pending() > 0 {
            tracing::info!(
                pending = health.warmup.pending(),
                "waiting for the first round of health checks"
            );
            tokio::select! {
                () = health.warmup.wait() => {}
                () = self.shutdown.cancelled() => {}
            }
            // The load plans were built before these results: count them
            // again now, not after the batched recount, or the first
            // requests could find no healthy host and route in panic.
            for cluster in &world.clusters {
                cluster.recount();
            }
        }
        if self.shutdown.is_cancelled() {
            // Asked to stop before serving: never go LIVE, nothing to drain.
            tracing::info!("stopping before serving");
            self.lifecycle.drain(
                self.stop_reason
                    .get()
                    .copied()
                    .unwrap_or("shutdown requested"),
            );
            self.lifecycle.advance(Phase::Stopped);
            health.stop.cancel();
            self.admin_stop.cancel();
            let _ = ready.send(());
            return Vec::new();
        }

        let tracker = TaskTracker::new();
        let stop_workers = CancellationToken::new();
        // Cancelled after the settle time: workers stop accepting and close
        // their connections gracefully.
        let stop_accepting = CancellationToken::new();
        self.heartbeat.reset();
        let mut threads = Vec::with_capacity(self.workers);
        let mut commands = Vec::with_capacity(self.workers);
        for index in 0..self.workers {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            commands.push(tx);
            let worker = Worker {
                index,
                commands: rx,
                heartbeat: Arc::clone(&self.heartbeat),
                stop: stop_workers.clone(),
                tracker: tracker.clone(),
            };
            match std::thread::Builder::new()
                .name(format!("hale-worker-{index}"))
                .spawn(move || worker.run())
            {
                Ok(t) => threads.push(t),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a worker thread");
                    self.shutdown.cancel();
                    stop_workers.cancel();
                    self.admin_stop.cancel();
                    return threads;
                }
            }
        }
        let mut listeners = ListenerSet::new(
            commands,
            stop_accepting.clone(),
            self.snapshot.clone(),
            self.lifecycle.serving(),
        );
        for (name, sockets) in self.sockets {
            if let Some(l) = world.listener_named(&name) {
                listeners.start(&name, l.id, Arc::clone(&l.gate), sockets);
            }
        }
        drop(world);
        self.lifecycle.advance(Phase::Live);
        tracing::info!(workers = self.workers, "hale is live");
        let _ = ready.send(());

        // Reloads run until the drain starts.
        let reloader = Reloader::new(
            reload::ConfigFile {
                path: self.config_path,
                overrides: self.overrides,
                loader: self.loader,
            },
            self.snapshot.clone(),
            Arc::clone(&self.store),
            health.stop.clone(),
            self.lifecycle.changes().clone(),
            listeners,
            self.shutdown.clone(),
        );
        let reloading = tokio::spawn(reload::run(reloader, self.triggers, self.shutdown.clone()));

        self.shutdown.cancelled().await;
        // A reload in progress finishes first: nothing is half-applied.
        let _ = reloading.await;
        let deadline = tokio::time::Instant::now() + self.drain_time;
        self.lifecycle.drain(
            self.stop_reason
                .get()
                .copied()
                .unwrap_or("shutdown requested"),
        );
        // Readiness fails from here; listeners keep accepting while load
        // balancers take hale out of their endpoints.
        tracing::info!(
            settle_ms = self.settle_time.as_millis(),
            drain_time_s = self.drain_time.as_secs(),
            "draining: not ready; still accepting for the settle time"
        );
        tokio::select! {
            () = tokio::time::sleep(self.settle_time) => {}
            () = self.stop_now.cancelled() => {}
        }
        tracing::info!("draining: stopped accepting; closing connections as their requests finish");
        stop_accepting.cancel();
        tracker.close();
        tokio::select! {
            () = tracker.wait() => tracing::info!("drained: no request in flight"),
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!("drain time elapsed with requests in flight; closing them");
            }
            () = self.stop_now.cancelled() => {
                tracing::warn!("asked to stop at once; closing requests in flight");
            }
        }
        self.lifecycle.advance(Phase::Stopped);
        health.stop.cancel();
        stop_workers.cancel();
        self.admin_stop.cancel();
        tracing::info!("stopped");
        threads
    }
}

/// Watches the config file and reloads when it changes (unless turned off).
/// The watch compares with what the file holds when it starts; a change
/// made since hale read it (during a long warm-up) is reloaded at once.
fn watch_config(
    options: &Options,
    reload: &ReloadHandle,
    loaded: u64,
) -> Option<reload::watch::ConfigWatch> {
    if !options.watch_config {
        return None;
    }
    let handle = reload.clone();
    match reload::watch::watch(&options.config_path, WATCH_DEBOUNCE, move || {
        handle.trigger("file");
    }) {
        Ok(w) => {
            let now = std::fs::read(&options.config_path).map(|b| crate::config::digest(&b));
            if now.is_ok_and(|d| d != loaded) {
                reload.trigger("file");
            }
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "not watching the config file; SIGHUP and POST /reload still reload it");
            None
        }
    }
}

/// Editors and ConfigMap updates write in several steps; one reload follows.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(200);
