//! What each probe says and why: liveness, readiness, startup and the
//! per-cluster gRPC services, evaluated from hale's published state on
//! demand (each probe reads the current truth; nothing is cached).
//!
//! Owns: the rules (docs/probes.md) and the words of every check.
//! Must not touch: sockets or protocols (`mod.rs`, `grpc.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::model::HealthServer;
use crate::degraded::state::Mode;
use crate::health::scheduler::Warmup;
use crate::lifecycle::{Heartbeat, Lifecycle, Phase};
use crate::proxy::snapshot::Snapshot;

/// gRPC service names for hale's own states.
pub const READINESS: &str = "readiness";
/// See [`READINESS`].
pub const LIVENESS: &str = "liveness";
/// See [`READINESS`].
pub const STARTUP: &str = "startup";

/// Everything the probes read.
#[derive(Debug)]
pub struct ProbeState {
    /// The `hale.health_server` settings hale started with (the running
    /// world's, which a reload may change, are read first).
    pub config: HealthServer,
    /// hale's phase and the `/healthcheck/fail` flag.
    pub lifecycle: Lifecycle,
    /// The data path's heartbeat.
    pub heartbeat: Arc<Heartbeat>,
    /// The running world (clusters and their host health).
    pub snapshot: Snapshot,
    /// The first round of active health checks.
    pub warmup: Arc<Warmup>,
}

/// One probe's answer: pass or fail, and every check with its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Whether the probe passes.
    pub ok: bool,
    /// `live`/`not_live`, `ready`/`not_ready`, `started`/`starting`.
    pub status: &'static str,
    /// Check name → state and why, in a stable order.
    pub checks: Vec<(String, String)>,
}

impl Report {
    fn new(
        ok: bool,
        pass: &'static str,
        fail: &'static str,
        checks: Vec<(String, String)>,
    ) -> Self {
        Self {
            ok,
            status: if ok { pass } else { fail },
            checks,
        }
    }

    /// `{"status": …, "checks": {name: state, …}}`.
    pub fn json(&self) -> String {
        let checks: serde_json::Map<String, serde_json::Value> = self
            .checks
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let body = serde_json::json!({ "status": self.status, "checks": checks });
        format!("{body}\n")
    }
}

impl ProbeState {
    /// Liveness: the data path makes progress. Nothing else can fail it.
    pub fn liveness(&self) -> Report {
        let max = self.with_policy(|p| p.max_stall);
        let (ok, state) = match self.lifecycle.phase() {
            Phase::Initializing => (true, "ok: workers not started yet".to_string()),
            Phase::Stopped => (true, "ok: stopped".to_string()),
            Phase::Live | Phase::Draining => {
                let oldest = self.heartbeat.oldest();
                if oldest.silent_for > max {
                    (
                        false,
                        format!(
                            "stalled: worker {} has not run for {:.1}s (max_stall {:.1}s)",
                            oldest.worker,
                            oldest.silent_for.as_secs_f64(),
                            max.as_secs_f64()
                        ),
                    )
                } else {
                    (
                        true,
                        format!(
                            "ok: every worker ran within {} ms",
                            oldest.silent_for.as_millis()
                        ),
                    )
                }
            }
        };
        Report::new(ok, "live", "not_live", vec![("data_path".into(), state)])
    }

    /// Startup: past the Initializing phase (once passed, it stays passed).
    pub fn startup(&self) -> Report {
        let phase = self.lifecycle.phase();
        let ok = phase != Phase::Initializing;
        let checks = vec![
            ("phase".into(), phase.envoy_name().to_string()),
            ("initial_health_checks".into(), self.initial_checks().1),
        ];
        Report::new(ok, "started", "starting", checks)
    }

    /// Readiness: serving, first checks done, not draining, and every
    /// cluster the policy names at its minimum.
    pub fn readiness(&self) -> Report {
        let phase = self.lifecycle.phase();
        let mut ok = true;
        let mut checks = Vec::new();
        checks.push((
            "config".to_string(),
            format!("ok: {}", self.snapshot.load().bootstrap.source.display()),
        ));
        let world = self.snapshot.load();
        let drained: Vec<&str> = world
            .listeners
            .iter()
            .filter(|l| l.gate.drained())
            .map(|l| l.gate.name.as_str())
            .collect();
        let listeners = if phase == Phase::Initializing {
            "pending: not serving yet".to_string()
        } else if !drained.is_empty() {
            format!("drained by /drain_listeners: {}", drained.join(", "))
        } else {
            "ok".to_string()
        };
        ok &= listeners == "ok";
        checks.push(("listeners".to_string(), listeners));
        let (checked, initial) = self.initial_checks();
        ok &= checked;
        checks.push(("initial_health_checks".to_string(), initial));
        let draining = match (self.lifecycle.drain_reason(), phase) {
            (Some(reason), _) => Some(format!("yes: {reason}")),
            (None, Phase::Draining | Phase::Stopped) => Some("yes".to_string()),
            (None, _) if self.lifecycle.health_check_failed() => {
                Some("yes: /healthcheck/fail".to_string())
            }
            (None, _) => None,
        };
        ok &= draining.is_none();
        checks.push((
            "draining".to_string(),
            draining.unwrap_or_else(|| "no".to_string()),
        ));
        let policy = world
            .bootstrap
            .health_server
            .as_ref()
            .unwrap_or(&self.config);
        for required in &policy.require_clusters {
            let need = required.min_healthy_percent;
            let state = match world.cluster(&required.cluster) {
                None => {
                    ok = false;
                    "not built yet".to_string()
                }
                Some(cluster) => {
                    let m = cluster.membership();
                    let enough = m.meets(need);
                    ok &= enough;
                    let counts = format!("{}/{} healthy, need {need}%", m.usable(), m.total);
                    if enough {
                        format!("ok: {counts}")
                    } else {
                        counts
                    }
                }
            };
            checks.push((format!("cluster:{}", required.cluster), state));
        }
        Report::new(ok, "ready", "not_ready", checks)
    }

    /// Whether the first round of active checks is over, and in words.
    fn initial_checks(&self) -> (bool, String) {
        let total = self.warmup.total();
        let pending = self.warmup.pending();
        if self.lifecycle.phase() != Phase::Initializing && pending == 0 {
            return (true, "ok".to_string());
        }
        if total == 0 {
            return (false, "pending: clusters not built yet".to_string());
        }
        let waiting: Vec<String> = self
            .snapshot
            .load()
            .clusters
            .iter()
            .filter_map(|c| {
                let (checked, hosts) = c.hosts_checked()?;
                (checked < hosts).then(|| format!("{} {checked}/{hosts} hosts checked", c.name()))
            })
            .collect();
        if pending == 0 {
            return (true, "ok".to_string());
        }
        if waiting.is_empty() {
            return (
                false,
                format!("pending: {pending} checks have no result yet"),
            );
        }
        (false, format!("pending: {}", waiting.join(", ")))
    }

    /// Whether a cluster serves: it has at least one usable host, and an
    /// operator has not set it degraded (`POST /degraded`).
    fn cluster_serving(&self, cluster: &str) -> bool {
        let world = self.snapshot.load();
        world.degraded_modes.get(cluster) != Mode::On
            && world.cluster(cluster).is_some_and(|c| c.has_usable_host())
    }

    /// The status of one gRPC service name; `None` when unknown.
    pub fn service(&self, name: &str) -> Option<bool> {
        match name {
            "" | READINESS => Some(self.readiness().ok),
            LIVENESS => Some(self.liveness().ok),
            STARTUP => Some(self.startup().ok),
            other => self
                .cluster_for(other)
                .map(|cluster| self.cluster_serving(&cluster)),
        }
    }

    fn cluster_for(&self, service: &str) -> Option<String> {
        self.with_policy(|p| {
            p.grpc_services
                .binary_search_by(|(name, _)| name.as_str().cmp(service))
                .ok()
                .and_then(|i| p.grpc_services.get(i))
                .map(|(_, cluster)| cluster.clone())
        })
    }

    /// Runs `f` on the policy in force: the running world's (a reload may
    /// have changed it), else the one hale started with.
    pub fn with_policy<R>(&self, f: impl FnOnce(&HealthServer) -> R) -> R {
        let world = self.snapshot.load();
        f(world
            .bootstrap
            .health_server
            .as_ref()
            .unwrap_or(&self.config))
    }

    /// Every known service name and whether it serves (for Watch).
    pub fn statuses(&self) -> BTreeMap<String, bool> {
        let readiness = self.readiness().ok;
        let mut all = BTreeMap::new();
        all.insert(String::new(), readiness);
        all.insert(READINESS.to_string(), readiness);
        all.insert(LIVENESS.to_string(), self.liveness().ok);
        all.insert(STARTUP.to_string(), self.startup().ok);
        for (service, cluster) in self.with_policy(|p| p.grpc_services.clone()) {
            let serving = self.cluster_serving(&cluster);
            all.insert(service, serving);
        }
        all
    }
}
