//! One data-path worker thread: a current-thread runtime that serves the
//! listener sockets the control thread hands it, and stamps its heartbeat.
//!
//! Owns: the worker's runtime and its accept loops.
//! Must not touch: which listeners exist (`proxy::listeners`, the reload).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::lifecycle::Heartbeat;
use crate::proxy::listener;
use crate::proxy::listeners::WorkerCommand;

/// One data-path worker: a single-threaded runtime serving its own socket
/// of every listener (thread per core, as Envoy's workers), told by the
/// control thread which listeners to serve.
pub(super) struct Worker {
    pub(super) index: usize,
    pub(super) commands: tokio::sync::mpsc::UnboundedReceiver<WorkerCommand>,
    pub(super) heartbeat: Arc<Heartbeat>,
    /// Cancelled when the drain is over: end the runtime.
    pub(super) stop: CancellationToken,
    pub(super) tracker: TaskTracker,
}

impl Worker {
    pub(super) fn run(self) {
        crate::proxy::worker::enter(self.index);
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(worker = self.index, error = %e, "cannot start a worker runtime");
                return;
            }
        };
        let Worker {
            index,
            mut commands,
            heartbeat,
            stop,
            tracker,
        } = self;
        rt.block_on(async move {
            {
                let stop = stop.clone();
                tokio::spawn(async move { heartbeat.run(index, stop).await });
            }
            loop {
                let command = tokio::select! {
                    () = stop.cancelled() => break,
                    command = commands.recv() => match command {
                        Some(c) => c,
                        None => {
                            stop.cancelled().await;
                            break;
                        }
                    },
                };
                let WorkerCommand::Serve {
                    socket,
                    shared,
                    stop: listener_stop,
                } = command;
                match tokio::net::TcpListener::from_std(socket) {
                    Ok(listener) => {
                        tracker.spawn(listener::serve(
                            listener,
                            shared,
                            listener_stop,
                            tracker.clone(),
                        ));
                    }
                    Err(e) => {
                        tracing::error!(worker = index, error = %e, "listener unusable on this worker");
                    }
                }
            }
        });
        // Idle upstream connections end with the runtime.
        rt.shutdown_timeout(Duration::from_secs(1));
    }
}
