//! Assembling a running hale: bind, start the data-path runtime and the
//! admin runtime on their own threads, go Live, and on request drain and stop.
//!
//! Owns: threads, runtimes, the shutdown sequence and its bound (the drain
//! time). `main` calls [`start`] and waits; tests do the same with port 0.
//! Must not touch: what requests do (proxy) or what the admin says (admin).

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState, CommandLineOptions};
use crate::config::Bootstrap;
use crate::lifecycle::{Lifecycle, Phase};
use crate::proxy::listener::{self, ListenerShared};
use crate::proxy::snapshot::{Snapshot, World};
use crate::stats::Store;

/// Envoy: `--drain-time-s` defaults to 600.
pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(600);

/// How hale runs, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// `-c` / `--config-path` / `--config`.
    pub config_path: PathBuf,
    /// Data-path worker threads (`--concurrency`; at least 1).
    pub concurrency: usize,
    /// `--log-level`, as given.
    pub log_level: String,
    /// `--drain-time-s`: the longest a shutdown waits for in-flight requests.
    pub drain_time: Duration,
    /// `--admin-address-path`.
    pub admin_address_path: Option<PathBuf>,
    /// `--service-cluster`.
    pub service_cluster: Option<String>,
    /// `--service-node`.
    pub service_node: Option<String>,
}

impl Options {
    /// Options for `config_path` with Envoy's defaults (tests use this).
    pub fn new(config_path: impl Into<PathBuf>) -> Self {
        Self {
            config_path: config_path.into(),
            concurrency: default_concurrency(),
            log_level: "info".to_string(),
            drain_time: DEFAULT_DRAIN_TIME,
            admin_address_path: None,
            service_cluster: None,
            service_node: None,
        }
    }
}

/// The CPUs this process may run on (affinity and cgroup quota aware).
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

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
    shutdown: CancellationToken,
    quit: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Asks hale to stop: stop accepting, finish in-flight requests (at most
    /// the drain time), then stop. Returns at once; see [`Running::wait`].
    pub fn shutdown(&self) {
        self.shutdown.cancel();
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

fn bind(what: String, address: SocketAddr) -> Result<StdListener, StartError> {
    let listener = StdListener::bind(address).map_err(|source| StartError::Bind {
        what: what.clone(),
        address,
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| StartError::Bind {
            what,
            address,
            source,
        })?;
    Ok(listener)
}

/// Binds every socket, starts the runtimes and returns once hale is Live.
pub fn start(bootstrap: Bootstrap, options: &Options) -> Result<Running, StartError> {
    let bootstrap = Arc::new(bootstrap);
    let mut sockets = Vec::with_capacity(bootstrap.listeners.len());
    let mut bound = Vec::with_capacity(bootstrap.listeners.len());
    for l in &bootstrap.listeners {
        let socket = bind(format!("listener {}", l.name), l.address)?;
        let local = socket.local_addr().map_err(|source| StartError::Bind {
            what: format!("listener {}", l.name),
            address: l.address,
            source,
        })?;
        bound.push((l.name.clone(), local));
        sockets.push(socket);
    }
    let admin_socket = match &bootstrap.admin {
        Some(a) => Some(bind("admin".to_string(), a.address)?),
        None => None,
    };
    let admin_addr = admin_socket.as_ref().and_then(|s| s.local_addr().ok());

    let store = Store::new();
    let lifecycle = Lifecycle::new(&store);
    store
        .gauge("server.concurrency")
        .set(i64::try_from(options.concurrency).unwrap_or(i64::MAX));
    let snapshot: Snapshot = Arc::new(ArcSwap::from_pointee(World {
        bootstrap: Arc::clone(&bootstrap),
        clusters: Vec::new(),
        listeners: Vec::new(),
    }));
    let shutdown = CancellationToken::new();
    let quit = CancellationToken::new();
    let admin_stop = CancellationToken::new();
    let mut threads = Vec::new();

    if let Some(socket) = admin_socket {
        let state = AdminState {
            snapshot: snapshot.clone(),
            store: Arc::clone(&store),
            lifecycle: lifecycle.clone(),
            listeners: bound.clone(),
            options: Arc::new(command_line_options(options)),
            started: std::time::SystemTime::now(),
            quit: quit.clone(),
        };
        let stop = admin_stop.clone();
        threads.push(spawn_thread("hale-admin", move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(socket) {
                    Ok(listener) => admin::serve(listener, state, stop).await,
                    Err(e) => tracing::error!(error = %e, "admin listener unusable"),
                }
            });
            Ok(())
        })?);
    }

    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let data = DataPath {
        bootstrap,
        sockets,
        snapshot,
        store: Arc::clone(&store),
        lifecycle: lifecycle.clone(),
        shutdown: shutdown.clone(),
        drain_time: options.drain_time,
        admin_stop: admin_stop.clone(),
    };
    let workers = options.concurrency.max(1);
    threads.push(spawn_thread("hale-main", move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("hale-worker")
            .enable_all()
            .build()?;
        rt.block_on(data.run(ready_tx));
        // Stray connection tasks (idle upstream connections) end with the runtime.
        rt.shutdown_timeout(Duration::from_secs(1));
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
        shutdown,
        quit,
        threads,
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

fn command_line_options(o: &Options) -> CommandLineOptions {
    CommandLineOptions {
        config_path: o.config_path.display().to_string(),
        mode: "Serve".to_string(),
        concurrency: o.concurrency,
        log_level: o.log_level.clone(),
        service_cluster: o.service_cluster.clone().unwrap_or_default(),
        service_node: o.service_node.clone().unwrap_or_default(),
        drain_time: admin::duration_json(o.drain_time),
        admin_address_path: o
            .admin_address_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    }
}

/// The data path's side of startup and shutdown.
struct DataPath {
    bootstrap: Arc<Bootstrap>,
    sockets: Vec<StdListener>,
    snapshot: Snapshot,
    store: Arc<Store>,
    lifecycle: Lifecycle,
    shutdown: CancellationToken,
    drain_time: Duration,
    admin_stop: CancellationToken,
}

impl DataPath {
    async fn run(self, ready: mpsc::Sender<()>) {
        let world = Arc::new(World::build(Arc::clone(&self.bootstrap), &self.store).await);
        self.snapshot.store(Arc::clone(&world));

        let tracker = TaskTracker::new();
        let mut accept_loops = Vec::new();
        for (index, socket) in self.sockets.into_iter().enumerate() {
            let (Some(lw), Ok(listener)) = (
                world.listeners.get(index),
                tokio::net::TcpListener::from_std(socket),
            ) else {
                tracing::error!(index, "listener could not be registered with the runtime");
                self.admin_stop.cancel();
                return;
            };
            let shared = ListenerShared {
                index,
                snapshot: self.snapshot.clone(),
                hcm: Arc::new(lw.config.http.clone()),
                stats: Arc::clone(&lw.stats),
            };
            accept_loops.push(tokio::spawn(listener::serve(
                listener,
                shared,
                self.shutdown.clone(),
                tracker.clone(),
            )));
        }
        drop(world);
        self.lifecycle.advance(Phase::Live);
        tracing::info!("hale is live");
        let _ = ready.send(());

        self.shutdown.cancelled().await;
        self.lifecycle.advance(Phase::Draining);
        tracing::info!(drain_time_s = self.drain_time.as_secs(), "draining");
        for a in accept_loops {
            let _ = a.await;
        }
        tracker.close();
        if tokio::time::timeout(self.drain_time, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("drain time elapsed with requests in flight; closing them");
        }
        self.lifecycle.advance(Phase::Stopped);
        self.admin_stop.cancel();
        tracing::info!("stopped");
    }
}
