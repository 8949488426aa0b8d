//! Hot reload: one path for every trigger (the file changing, SIGHUP,
//! `POST /reload`): load → validate → diff → build the new world aside →
//! swap → report the outcome (applied, rejected, unchanged).
//!
//! Owns: coalescing triggers (one reload at a time; triggers that arrive
//! during one are answered by the next), the outcome and its stats
//! (`server.reload.*`, `server.config_generation`), and the last outcome
//! the admin shows.
//! Must not touch: what a world is made of (`proxy::snapshot`), sockets
//! (`proxy::listeners`), or config decoding (`config`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::stats::{Counter, Gauge, Store};

mod apply;
pub mod watch;

pub use apply::{ConfigFile, Reloader};

/// What a reload did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The new config serves.
    Applied {
        /// The generation now serving (the first config is 1).
        generation: u64,
        /// What changed, in words.
        changes: String,
        /// From the trigger being taken up to the swap, in milliseconds.
        took_ms: f64,
        /// Of which reading, parsing and validating the file.
        load_ms: f64,
    },
    /// The file means what the running config means.
    Unchanged {
        /// The generation still serving.
        generation: u64,
    },
    /// Nothing changed: the running config keeps serving.
    Rejected {
        /// The generation still serving.
        generation: u64,
        /// Every error, each naming its file and field path.
        errors: Vec<String>,
    },
}

/// One reload's outcome, with when and why it ran.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What it did.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What asked for it (`file`, `SIGHUP`, `admin`; several when they
    /// coalesced).
    pub triggers: Vec<&'static str>,
    /// When it finished (RFC 3339).
    pub at: String,
}

/// A request for a reload; `reply` gets its report.
#[derive(Debug)]
struct Trigger {
    source: &'static str,
    reply: Option<oneshot::Sender<Report>>,
}

/// How triggers ask for a reload (cheap to clone; every trigger holds one).
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    tx: mpsc::UnboundedSender<Trigger>,
    last: Arc<Mutex<Option<Report>>>,
    queued: Arc<AtomicUsize>,
}

/// The reload loop's end of the handle.
#[derive(Debug)]
pub struct Triggers {
    rx: mpsc::UnboundedReceiver<Trigger>,
    last: Arc<Mutex<Option<Report>>>,
    queued: Arc<AtomicUsize>,
}

/// A handle and the loop's end of it.
pub fn channel() -> (ReloadHandle, Triggers) {
    let (tx, rx) = mpsc::unbounded_channel();
    let last = Arc::new(Mutex::new(None));
    let queued = Arc::new(AtomicUsize::new(0));
    (
        ReloadHandle {
            tx,
            last: Arc::clone(&last),
            queued: Arc::clone(&queued),
        },
        Triggers { rx, last, queued },
    )
}

impl ReloadHandle {
    /// Asks for a reload and forgets it (the file watch, SIGHUP).
    pub fn trigger(&self, source: &'static str) {
        self.send(Trigger {
            source,
            reply: None,
        });
    }

    fn send(&self, trigger: Trigger) -> bool {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let sent = self.tx.send(trigger).is_ok();
        if !sent {
            self.queued.fetch_sub(1, Ordering::SeqCst);
        }
        sent
    }

    /// Triggers waiting for the next reload (not yet taken up).
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Asks for a reload and waits for its report; `None` when hale is not
    /// reloading (not live yet, or stopping).
    pub async fn reload(&self, source: &'static str) -> Option<Report> {
        let (reply, report) = oneshot::channel();
        if !self.send(Trigger {
            source,
            reply: Some(reply),
        }) {
            return None;
        }
        report.await.ok()
    }

    /// The last reload's report, if there was one.
    pub fn last(&self) -> Option<Report> {
        match self.last.lock() {
            Ok(last) => last.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// `server.reload.*` and `server.config_generation` (hale's names).
#[derive(Debug, Clone)]
pub struct ReloadStats {
    /// Reloads run (coalesced triggers count once).
    pub attempt: Counter,
    /// Reloads applied.
    pub success: Counter,
    /// Reloads rejected.
    pub failure: Counter,
    /// Reloads that found nothing to change.
    pub unchanged: Counter,
    /// The generation serving: 1 for the config hale started with, one
    /// more per applied reload.
    pub generation: Gauge,
}

impl ReloadStats {
    /// Registers the stats.
    pub fn new(store: &Store) -> Self {
        Self {
            attempt: store.counter("server.reload.attempt"),
            success: store.counter("server.reload.success"),
            failure: store.counter("server.reload.failure"),
            unchanged: store.counter("server.reload.unchanged"),
            generation: store.gauge("server.config_generation"),
        }
    }
}

/// Runs reloads as triggers arrive, one at a time, until `stop`.
pub async fn run(mut reloader: Reloader, mut triggers: Triggers, stop: CancellationToken) {
    loop {
        let first = tokio::select! {
            // A drain wins over a queued trigger.
            biased;
            () = stop.cancelled() => return,
            next = triggers.rx.recv() => match next {
                Some(t) => t,
                None => return,
            },
        };
        // Everything queued by now is answered by this one reload.
        let mut batch = vec![first];
        while let Ok(more) = triggers.rx.try_recv() {
            batch.push(more);
        }
        triggers.queued.fetch_sub(batch.len(), Ordering::SeqCst);
        let mut sources: Vec<&'static str> = Vec::new();
        for t in &batch {
            if !sources.contains(&t.source) {
                sources.push(t.source);
            }
        }
        let outcome = reloader.reload().await;
        log(&outcome, &sources);
        let report = Report {
            outcome,
            triggers: sources,
            at: crate::health::events::rfc3339_now(),
        };
        match triggers.last.lock() {
            Ok(mut last) => *last = Some(report.clone()),
            Err(poisoned) => *poisoned.into_inner() = Some(report.clone()),
        }
        for t in batch {
            if let Some(reply) = t.reply {
                let _ = reply.send(report.clone());
            }
        }
    }
}

fn log(outcome: &Outcome, triggers: &[&'static str]) {
    let triggers = triggers.join(", ");
    match outcome {
        Outcome::Applied {
            generation,
            changes,
            took_ms,
            load_ms,
        } => tracing::info!(
            generation,
            took_ms,
            load_ms,
            %triggers,
            "config reloaded: {changes}"
        ),
        Outcome::Unchanged { generation } => {
            tracing::info!(generation, %triggers, "config reload: nothing changed");
        }
        Outcome::Rejected { generation, errors } => tracing::error!(
            generation,
            %triggers,
            "config reload rejected; generation {generation} keeps serving:\n  {}",
            errors.join("\n  ")
        ),
    }
}

/// The longest a reload waits for the first checks of the hosts it adds
/// before swapping anyway (they stay out of rotation until checked).
pub const MAX_WARMING: Duration = Duration::from_secs(30);
