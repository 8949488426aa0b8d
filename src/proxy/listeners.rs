//! The running listeners: their sockets (one per worker, `SO_REUSEPORT`),
//! which worker serves which, and stopping one (a reload removed it) or all
//! (hale drains).
//!
//! Owns: binding, handing sockets to workers, and each listener's stop
//! token (a child of the one that stops every listener).
//! Must not touch: what a connection does (`listener.rs`), or when a
//! listener is added or removed (the reload path decides).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use arc_swap::ArcSwapOption;

use super::listener::{ListenerGate, ListenerShared};
use super::snapshot::{ListenerWorld, Snapshot};
use crate::lifecycle::ServingFlags;

/// Envoy: listeners use a backlog of 1024 by default.
const LISTEN_BACKLOG: i32 = 1024;

/// What a worker is told to do from the control thread.
#[derive(Debug)]
pub enum WorkerCommand {
    /// Accept on `socket` until `stop`.
    Serve {
        /// This worker's socket of the listener.
        socket: StdListener,
        /// What the listener's connections share.
        shared: ListenerShared,
        /// Stops accepting and closes the connections gracefully.
        stop: CancellationToken,
    },
}

/// A listener's sockets, bound and not yet served.
#[derive(Debug)]
pub struct Bound {
    /// The address bound (port 0 resolved).
    pub address: SocketAddr,
    sockets: Vec<StdListener>,
}

/// Binds `count` sockets to one address with `SO_REUSEPORT`, one per
/// worker, so the kernel spreads connections across workers with no
/// shared accept queue. Port 0 is resolved by the first bind.
pub fn bind(address: SocketAddr, count: usize) -> std::io::Result<Bound> {
    let first = bind_one(address, count > 1)?;
    let actual = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(bind_one(actual, true)?);
    }
    Ok(Bound {
        address: actual,
        sockets,
    })
}

fn bind_one(address: SocketAddr, reuse_port: bool) -> std::io::Result<StdListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A listener being served.
#[derive(Debug)]
struct Running {
    stop: CancellationToken,
    retired: Arc<ArcSwapOption<ListenerWorld>>,
}

/// The listeners being served, by name.
#[derive(Debug)]
pub struct ListenerSet {
    workers: Vec<mpsc::UnboundedSender<WorkerCommand>>,
    running: HashMap<String, Running>,
    all: CancellationToken,
    snapshot: Snapshot,
    serving: Arc<ServingFlags>,
}

impl ListenerSet {
    /// Listeners served by `workers`, all stopped by `all`.
    pub fn new(
        workers: Vec<mpsc::UnboundedSender<WorkerCommand>>,
        all: CancellationToken,
        snapshot: Snapshot,
        serving: Arc<ServingFlags>,
    ) -> Self {
        Self {
            workers,
            running: HashMap::new(),
            all,
            snapshot,
            serving,
        }
    }

    /// How many workers serve each listener.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Starts serving `bound` as the listener `name` (whose id in the
    /// published world is `id`): each worker takes one socket.
    pub fn start(&mut self, name: &str, id: u64, gate: Arc<ListenerGate>, bound: Bound) {
        let stop = self.all.child_token();
        let retired = Arc::new(ArcSwapOption::empty());
        for (worker, socket) in self.workers.iter().zip(bound.sockets) {
            let shared = ListenerShared {
                id,
                snapshot: self.snapshot.clone(),
                serving: Arc::clone(&self.serving),
                gate: Arc::clone(&gate),
                retired: Arc::clone(&retired),
            };
            if worker
                .send(WorkerCommand::Serve {
                    socket,
                    shared,
                    stop: stop.clone(),
                })
                .is_err()
            {
                tracing::warn!(
                    listener = name,
                    "a worker has stopped; it will not serve this listener"
                );
            }
        }
        if let Some(before) = self
            .running
            .insert(name.to_string(), Running { stop, retired })
        {
            before.stop.cancel();
        }
    }

    /// Before a swap that removes the listener `name`: its connections
    /// will route by `last`, the listener as the world before had it (set
    /// ahead, so no request finds it in neither world).
    pub fn retiring(&self, name: &str, last: Option<Arc<ListenerWorld>>) {
        if let Some(running) = self.running.get(name) {
            running.retired.store(last);
        }
    }

    /// Stops accepting on the listener `name` and closes its connections
    /// as their requests finish.
    pub fn stop(&mut self, name: &str) {
        if let Some(running) = self.running.remove(name) {
            running.stop.cancel();
        }
    }
}

impl Bound {
    /// The one socket of a server with one thread (the admin, the probes).
    pub fn into_one(self) -> StdListener {
        let Bound { mut sockets, .. } = self;
        sockets.swap_remove(0)
    }
}
