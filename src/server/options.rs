//! How hale is told to run and to stop: the command line's options with
//! Envoy's defaults, the stop tokens, and what `/server_info` reports of
//! them.
//!
//! Owns: [`Options`], [`Stop`], the drain and settle defaults.
//! Must not touch: threads or sockets (`mod.rs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::admin::{self, CommandLineOptions};

/// Envoy: `--drain-time-s` defaults to 600.
pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(600);

/// The longest hale keeps accepting after a shutdown request while its
/// readiness already fails (Kubernetes needs a moment to take the pod out
/// of its endpoints); a quarter of the drain time when that is shorter.
pub const DEFAULT_DRAIN_SETTLE: Duration = Duration::from_secs(5);

/// How hale runs, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// `-c` / `--config-path` / `--config`.
    pub config_path: PathBuf,
    /// Data-path worker threads (`--concurrency`; at least 1).
    pub concurrency: usize,
    /// `--log-level`, as given.
    pub log_level: String,
    /// `--drain-time-s`: the longest a shutdown takes, settle included.
    pub drain_time: Duration,
    /// `--drain-settle-s`: how long listeners keep accepting after a
    /// shutdown request, with readiness failing. `None`: the smaller of
    /// [`DEFAULT_DRAIN_SETTLE`] and a quarter of the drain time.
    pub drain_settle: Option<Duration>,
    /// `--admin-address-path`.
    pub admin_address_path: Option<PathBuf>,
    /// `--service-cluster`.
    pub service_cluster: Option<String>,
    /// `--service-node`.
    pub service_node: Option<String>,
    /// Reload when the config file changes (`--watch-config`, default on).
    pub watch_config: bool,
    /// What loaded the config at startup; reloads go on with it, so the
    /// first reload already parses only the YAML that changed.
    pub config_loader: crate::config::Loader,
}

impl Options {
    /// Options for `config_path` with Envoy's defaults (tests use this).
    pub fn new(config_path: impl Into<PathBuf>) -> Self {
        Self {
            config_path: config_path.into(),
            concurrency: default_concurrency(),
            log_level: "info".to_string(),
            drain_time: DEFAULT_DRAIN_TIME,
            drain_settle: None,
            admin_address_path: None,
            service_cluster: None,
            service_node: None,
            watch_config: true,
            config_loader: crate::config::Loader::default(),
        }
    }
}

impl Options {
    /// The settle time in effect.
    /// At most half the drain time, so requests in flight keep the rest.
    pub fn settle_time(&self) -> Duration {
        self.drain_settle
            .unwrap_or_else(|| DEFAULT_DRAIN_SETTLE.min(self.drain_time / 4))
            .min(self.drain_time / 2)
    }
}

/// How a caller stops hale: `drain` starts the graceful shutdown (readiness
/// fails, settle, stop accepting, finish in-flight requests); `now` ends
/// it at once (a second SIGTERM).
#[derive(Debug, Clone, Default)]
pub struct Stop {
    /// Starts the drain.
    pub drain: CancellationToken,
    /// Cuts the drain short.
    pub now: CancellationToken,
    /// Why the drain started (set before `drain` is cancelled; logged and
    /// shown by the readiness probe).
    pub reason: Arc<std::sync::OnceLock<&'static str>>,
}

impl Stop {
    /// Starts the drain for `reason` (the first reason given is kept).
    pub fn drain(&self, reason: &'static str) {
        let _ = self.reason.set(reason);
        self.drain.cancel();
    }
}

/// The CPUs this process may run on (affinity and cgroup quota aware).
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The options as `/server_info` reports them (Envoy's field names).
pub(super) fn command_line_options(o: &Options) -> CommandLineOptions {
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
