//! One reload, start to end: load and validate the file, diff it against
//! the running config, refuse what cannot change live, bind new listeners,
//! hand the state of replaced clusters' hosts to their successors, build
//! the new world aside, let new hosts have their first check, swap, then
//! retire what the old world alone had.
//!
//! Owns: the order of those steps. Nothing is changed before every step
//! that can fail has passed (load, validate, the fixed fields, binding),
//! so a rejected reload leaves the running config untouched.
//! Must not touch: the triggers (`mod.rs`) or how a world is built.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{MAX_WARMING, Outcome, ReloadStats};
use crate::config::model::Bootstrap;
use crate::config::{self, Overrides, diff};
use crate::health::scheduler::Warmup;
use crate::lifecycle::Changes;
use crate::proxy::cluster::{Cluster, HealthRuntime};
use crate::proxy::listeners::{self, ListenerSet};
use crate::proxy::snapshot::{Build, Snapshot, World};
use crate::stats::Store;

/// The config file and what the command line overrides in it.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// The file, read again on each reload.
    pub path: PathBuf,
    /// `--service-node`, `--service-cluster`.
    pub overrides: Overrides,
    /// Remembers the YAML pieces parsed before (see [`config::Loader`]).
    pub loader: config::Loader,
}

/// Everything a reload reads and replaces.
#[derive(Debug)]
pub struct Reloader {
    /// The file, read again on each reload.
    pub path: PathBuf,
    /// What the command line overrides in it.
    pub overrides: Overrides,
    /// Parses only what changed since the last load.
    loader: config::Loader,
    /// The published world.
    pub snapshot: Snapshot,
    /// Where stats live.
    pub store: Arc<Store>,
    /// Stops every health check (new clusters' checks are its children).
    pub health_stop: CancellationToken,
    /// Told after each applied reload (the probe server's Watch).
    pub changes: Changes,
    /// The listeners being served.
    pub listeners: ListenerSet,
    /// Cancelled when hale starts draining: a reload warming new clusters
    /// stops waiting for them and swaps at once.
    pub draining: CancellationToken,
    stats: ReloadStats,
    generation: u64,
}

impl Reloader {
    /// A reloader for a server serving generation 1.
    pub fn new(
        file: ConfigFile,
        snapshot: Snapshot,
        store: Arc<Store>,
        health_stop: CancellationToken,
        changes: Changes,
        listeners: ListenerSet,
        draining: CancellationToken,
    ) -> Self {
        let stats = ReloadStats::new(&store);
        stats.generation.set(1);
        Self {
            path: file.path,
            overrides: file.overrides,
            loader: file.loader,
            snapshot,
            store,
            health_stop,
            changes,
            listeners,
            draining,
            stats,
            generation: 1,
        }
    }

    /// Reads the file again and applies it if it is valid and different.
    pub async fn reload(&mut self) -> Outcome {
        self.stats.attempt.inc();
        let started = Instant::now();
        let outcome = match self.load() {
            Loaded::Same => Outcome::Unchanged {
                generation: self.generation,
            },
            Loaded::Invalid(errors) => self.rejected(errors),
            Loaded::Config(new) => {
                let load = started.elapsed();
                self.apply(*new, started, load).await
            }
        };
        match &outcome {
            Outcome::Applied { .. } => self.stats.success.inc(),
            Outcome::Unchanged { .. } => self.stats.unchanged.inc(),
            Outcome::Rejected { .. } => self.stats.failure.inc(),
        }
        outcome
    }

    /// Reads and validates the file, unless it holds the very bytes
    /// serving now.
    fn load(&self) -> Loaded {
        let path = &self.path;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                return Loaded::Invalid(vec![
                    config::ConfigErrors::whole_file(path, format!("cannot read the file: {e}"))
                        .to_string(),
                ]);
            }
        };
        if config::digest(text.as_bytes()) == self.snapshot.load().bootstrap.digest {
            return Loaded::Same;
        }
        match self.loader.parse(
            &text,
            config::Format::from_path(path),
            path,
            &self.overrides,
        ) {
            Ok(new) => Loaded::Config(Box::new(new)),
            Err(errors) => Loaded::Invalid(errors.iter().map(ToString::to_string).collect()),
        }
    }

    fn rejected(&self, errors: Vec<String>) -> Outcome {
        Outcome::Rejected {
            generation: self.generation,
            errors,
        }
    }

    async fn apply(&mut self, new: Bootstrap, started: Instant, load: Duration) -> Outcome {
        let old = self.snapshot.load_full();
        let diff = diff::diff(&old.bootstrap, &new);
        if !diff.fixed.is_empty() {
            let file = new.source.display().to_string();
            return self.rejected(
                diff.fixed
                    .iter()
                    .map(|f| format!("{file}: {}: {}", f.path, f.message))
                    .collect(),
            );
        }
        if diff.is_empty() {
            return Outcome::Unchanged {
                generation: self.generation,
            };
        }

        // Bind what is new first: a port in use rejects the reload while
        // nothing has changed yet.
        let mut bound = HashMap::new();
        let mut sockets = Vec::new();
        let mut errors = Vec::new();
        for (index, l) in new.listeners.iter().enumerate() {
            if !diff.listeners.added.contains(&l.name) {
                continue;
            }
            match listeners::bind(l.address, self.listeners.workers()) {
                Ok(b) => {
                    bound.insert(l.name.clone(), b.address);
                    sockets.push((l.name.clone(), b));
                }
                Err(e) => errors.push(format!(
                    "{}: static_resources.listeners[{index}].address: cannot bind listener \"{}\" to {}: {e}",
                    new.source.display(),
                    l.name,
                    l.address
                )),
            }
        }
        if !errors.is_empty() {
            // The sockets bound so far close as `sockets` drops.
            return self.rejected(errors);
        }

        // From here nothing fails. First the clusters that are new: built
        // and given their first checks (Envoy's warming) while the old
        // config serves on, untouched.
        let warmup = Warmup::new();
        let health = HealthRuntime {
            warmup: Arc::clone(&warmup),
            stop: self.health_stop.clone(),
            changes: self.changes.clone(),
        };
        let mut ready = HashMap::new();
        for c in &new.clusters {
            if diff.clusters.added.contains(&c.name) {
                let cluster =
                    Cluster::build(c, &self.store, self.listeners.workers(), &health, None).await;
                ready.insert(c.name.clone(), Arc::new(cluster));
            }
        }
        if warmup.pending() > 0 {
            tokio::select! {
                _ = tokio::time::timeout(warming_bound(&new, &diff.clusters.added), warmup.wait()) => {}
                () = self.draining.cancelled() => {}
            }
        }
        for cluster in ready.values() {
            cluster.recount();
        }
        // Then the changed clusters hand their hosts' state over and the
        // world is built and swapped: the old clusters go without checks
        // only for that long (plus the wait below, when a cluster has no
        // host left that is known good). Their new hosts start failed and
        // take traffic once checked, as Envoy's EDS hosts do.
        let mut carried = HashMap::new();
        for name in &diff.clusters.changed {
            if let Some(cluster) = old.cluster(name) {
                carried.insert(name.clone(), cluster.retire().await);
            }
        }
        let changed_warmup = Warmup::new();
        let world = World::build(
            Arc::new(new),
            Build {
                store: &self.store,
                workers: self.listeners.workers(),
                health: &HealthRuntime {
                    warmup: Arc::clone(&changed_warmup),
                    ..health
                },
                bound: &bound,
                previous: Some(&old),
                unchanged: &diff.clusters.unchanged,
                ready,
                carried,
                // The new world's degraded watch starts once the changed
                // clusters' new hosts are checked: until then it would see
                // them failed (and this world may not even serve yet).
                watch_after: Arc::clone(&changed_warmup),
            },
        )
        .await;
        // A changed cluster that had a usable host and has none now (every
        // endpoint moved) would fail its requests until its new hosts are
        // checked: as Envoy warms a cluster CDS replaces, wait for them.
        let cold = diff.clusters.changed.iter().any(|name| {
            old.cluster(name).is_some_and(|c| c.has_usable_host())
                && world.cluster(name).is_some_and(|c| !c.has_usable_host())
        });
        if cold && changed_warmup.pending() > 0 {
            let bound = warming_bound(&world.bootstrap, &diff.clusters.changed);
            tokio::select! {
                _ = tokio::time::timeout(bound, changed_warmup.wait()) => {}
                () = self.draining.cancelled() => {}
            }
        }
        // First checks that passed during the build (which made `cold`
        // false) or during the wait are in the hosts' flags, while the load
        // plan built with the world still counts those hosts failed until
        // the batched recount. Count again now, or the first requests after
        // the swap could see no healthy host and route in panic.
        for name in &diff.clusters.changed {
            if let Some(cluster) = world.cluster(name) {
                cluster.recount();
            }
        }
        for name in &diff.listeners.removed {
            self.listeners
                .retiring(name, old.listener_named(name).cloned());
        }
        let world = Arc::new(world);
        self.snapshot.store(Arc::clone(&world));
        let took = started.elapsed();

        old.retire(&world);
        for name in &diff.clusters.removed {
            if let Some(cluster) = old.cluster(name) {
                cluster.stop();
                self.store.remove_tagged("envoy_cluster_name", name, "");
            }
        }
        // A cluster that lost its checks or its outlier detection loses
        // their stats too, rather than showing their last values for ever.
        for name in &diff.clusters.changed {
            let (Some(before), Some(now)) = (old.cluster(name), world.cluster(name)) else {
                continue;
            };
            let (before, now) = (&before.config, &now.config);
            if !before.health_checks.is_empty() && now.health_checks.is_empty() {
                self.store
                    .remove_tagged("envoy_cluster_name", name, "cluster.health_check.");
            }
            if before.outlier_detection.is_some() && now.outlier_detection.is_none() {
                self.store
                    .remove_tagged("envoy_cluster_name", name, "cluster.outlier_detection.");
            }
        }
        for name in &diff.listeners.removed {
            self.listeners.stop(name);
        }
        for (name, b) in sockets {
            if let Some(l) = world.listener_named(&name) {
                self.listeners.start(&name, l.id, Arc::clone(&l.gate), b);
            }
        }
        self.changes.notify();
        self.generation += 1;
        self.stats
            .generation
            .set(i64::try_from(self.generation).unwrap_or(i64::MAX));
        Outcome::Applied {
            generation: self.generation,
            changes: diff.summary(),
            took_ms: took.as_secs_f64() * 1000.0,
            load_ms: load.as_secs_f64() * 1000.0,
        }
    }
}

/// What reading the file gave.
enum Loaded {
    /// The bytes serving now.
    Same,
    /// A valid config.
    Config(Box<Bootstrap>),
    /// Every error.
    Invalid(Vec<String>),
}

/// How long the hosts of the clusters named may take for their first
/// check: the slowest of their checks (jitter plus timeout), plus a margin.
fn warming_bound(new: &Bootstrap, names: &[String]) -> Duration {
    new.clusters
        .iter()
        .filter(|c| names.contains(&c.name))
        .flat_map(|c| &c.health_checks)
        .map(|hc| hc.initial_jitter + hc.timeout + Duration::from_millis(250))
        .max()
        .unwrap_or(Duration::ZERO)
        .min(MAX_WARMING)
}
