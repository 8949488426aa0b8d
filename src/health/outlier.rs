//! Envoy's outlier detection (passive health) for one cluster, as a value
//! that one task owns: results of real requests go in, ejections and
//! un-ejections come out (`outlier_detection_impl.cc`, envoy-health.md §2).
//!
//! Owns: consecutive 5xx / gateway / local-origin counters, success-rate
//! and failure-percentage sweeps, ejection admission (`max_ejection_percent`,
//! `always_eject_one_host`, `enforcing_*`), ejection time growth and decay,
//! `cluster.<name>.outlier_detection.*` stats, and the hosts' state handed
//! over a reload to the detector of the cluster that replaces this one
//! ([`OutlierCarry`], in `outlier/carry.rs`).
//! Must not touch: host flags or the data path. The owning task applies the
//! [`Action`]s; the data path only reports results.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::model::OutlierDetection;

/// What one upstream attempt told about its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// The upstream answered with this status (gRPC: its HTTP mapping).
    Status(u16),
    /// The attempt timed out (Envoy: `LocalOriginTimeout`).
    Timeout,
    /// The connection failed or was reset (`LocalOriginConnectFailed`).
    ConnectFailed,
    /// A connection was established (`LocalOriginConnectSuccess`).
    ConnectSuccess,
}

/// Why a host was ejected (Envoy's `EjectionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ejection {
    /// `CONSECUTIVE_5XX`.
    Consecutive5xx,
    /// `CONSECUTIVE_GATEWAY_FAILURE`.
    ConsecutiveGatewayFailure,
    /// `CONSECUTIVE_LOCAL_ORIGIN_FAILURE`.
    ConsecutiveLocalOriginFailure,
    /// `SUCCESS_RATE`.
    SuccessRate,
    /// `SUCCESS_RATE_LOCAL_ORIGIN`.
    SuccessRateLocalOrigin,
    /// `FAILURE_PERCENTAGE`.
    FailurePercentage,
    /// `FAILURE_PERCENTAGE_LOCAL_ORIGIN`.
    FailurePercentageLocalOrigin,
}

impl Ejection {
    /// The name Envoy's event log prints.
    pub fn envoy_name(self) -> &'static str {
        match self {
            Ejection::Consecutive5xx => "CONSECUTIVE_5XX",
            Ejection::ConsecutiveGatewayFailure => "CONSECUTIVE_GATEWAY_FAILURE",
            Ejection::ConsecutiveLocalOriginFailure => "CONSECUTIVE_LOCAL_ORIGIN_FAILURE",
            Ejection::SuccessRate => "SUCCESS_RATE",
            Ejection::SuccessRateLocalOrigin => "SUCCESS_RATE_LOCAL_ORIGIN",
            Ejection::FailurePercentage => "FAILURE_PERCENTAGE",
            Ejection::FailurePercentageLocalOrigin => "FAILURE_PERCENTAGE_LOCAL_ORIGIN",
        }
    }

    /// The stat-name suffix Envoy's code uses (`ejections_enforced_<suffix>`).
    pub(super) fn stat_suffix(self) -> &'static str {
        match self {
            Ejection::Consecutive5xx => "consecutive_5xx",
            Ejection::ConsecutiveGatewayFailure => "consecutive_gateway_failure",
            Ejection::ConsecutiveLocalOriginFailure => "consecutive_local_origin_failure",
            Ejection::SuccessRate => "success_rate",
            Ejection::SuccessRateLocalOrigin => "local_origin_success_rate",
            Ejection::FailurePercentage => "failure_percentage",
            Ejection::FailurePercentageLocalOrigin => "local_origin_failure_percentage",
        }
    }

    pub(super) const ALL: [Ejection; 7] = [
        Ejection::Consecutive5xx,
        Ejection::ConsecutiveGatewayFailure,
        Ejection::ConsecutiveLocalOriginFailure,
        Ejection::SuccessRate,
        Ejection::SuccessRateLocalOrigin,
        Ejection::FailurePercentage,
        Ejection::FailurePercentageLocalOrigin,
    ];

    pub(super) fn index(self) -> usize {
        Self::ALL.iter().position(|e| *e == self).unwrap_or(0)
    }
}

/// What the owning task must do to host flags (and tell).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set `FAILED_OUTLIER_CHECK` on `host`.
    Eject {
        /// Host index.
        host: usize,
        /// Why.
        kind: Ejection,
        /// How long, before the sweep that lets it back.
        duration: Duration,
        /// The numbers that tripped it, for people.
        reason: String,
    },
    /// Detected, but `enforcing_*` said not this time (logged only).
    Detected {
        /// Host index.
        host: usize,
        /// Why.
        kind: Ejection,
    },
    /// Clear `FAILED_OUTLIER_CHECK` on `host`.
    Uneject {
        /// Host index.
        host: usize,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    success: u64,
    total: u64,
}

#[derive(Debug, Clone, Default)]
struct HostState {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local: u32,
    ejected: bool,
    multiplier: u32,
    jitter: Duration,
    last_ejection: Option<Instant>,
    last_unejection: Option<Instant>,
    num_ejections: u32,
    // Buckets of the interval being filled, and of the last full one.
    external: Bucket,
    local: Bucket,
    last_external: Bucket,
    last_local: Bucket,
}

/// The detector of one cluster.
#[derive(Debug)]
pub struct Detector {
    cfg: OutlierDetection,
    hosts: Vec<HostState>,
    active: u32,
    stats: OutlierStats,
    published: Arc<Published>,
}

impl Detector {
    /// A detector over `hosts` hosts.
    pub fn new(cfg: OutlierDetection, hosts: usize, stats: OutlierStats) -> Self {
        Self {
            cfg,
            hosts: (0..hosts).map(|_| HostState::default()).collect(),
            active: 0,
            stats,
            published: Arc::new(Published::new(hosts)),
        }
    }

    /// What the sweeps publish for `/clusters`.
    pub fn published(&self) -> Arc<Published> {
        Arc::clone(&self.published)
    }

    /// Whether `host` is ejected now.
    pub fn is_ejected(&self, host: usize) -> bool {
        self.hosts.get(host).is_some_and(|h| h.ejected)
    }

    /// Takes in one attempt's result. `random` draws uniform u64s (for the
    /// `enforcing_*` chances and the ejection jitter).
    pub fn observe(
        &mut self,
        host: usize,
        what: Observation,
        now: Instant,
        random: &mut impl FnMut() -> u64,
    ) -> Vec<Action> {
        let split = self.cfg.split_external_local_origin_errors;
        match what {
            Observation::Status(code) => self.put_status(host, code, now, random),
            // Non-split mode maps local-origin errors to HTTP codes (Envoy):
            // a timeout counts as 504, a failed connection as 503.
            Observation::Timeout if !split => self.put_status(host, 504, now, random),
            Observation::ConnectFailed if !split => self.put_status(host, 503, now, random),
            Observation::ConnectSuccess if !split => Vec::new(),
            Observation::Timeout | Observation::ConnectFailed => {
                let Some(h) = self.hosts.get_mut(host) else {
                    return Vec::new();
                };
                h.local.total += 1;
                h.consecutive_local += 1;
                if h.consecutive_local == self.cfg.consecutive_local_origin_failure {
                    let n = h.consecutive_local;
                    return self.detect(
                        host,
                        Ejection::ConsecutiveLocalOriginFailure,
                        format!(
                            "{n} consecutive local-origin failures (timeouts or connect failures)"
                        ),
                        now,
                        random,
                    );
                }
                Vec::new()
            }
            Observation::ConnectSuccess => {
                if let Some(h) = self.hosts.get_mut(host) {
                    h.consecutive_local = 0;
                    h.local.total += 1;
                    h.local.success += 1;
                }
                Vec::new()
            }
        }
    }

    fn put_status(
        &mut self,
        host: usize,
        code: u16,
        now: Instant,
        random: &mut impl FnMut() -> u64,
    ) -> Vec<Action> {
        let cfg_gateway = self.cfg.consecutive_gateway_failure;
        let cfg_5xx = self.cfg.consecutive_5xx;
        let Some(h) = self.hosts.get_mut(host) else {
            return Vec::new();
        };
        h.external.total += 1;
        if !(500..600).contains(&code) {
            h.external.success += 1;
            h.consecutive_5xx = 0;
            h.consecutive_gateway = 0;
            return Vec::new();
        }
        let mut found = Vec::new();
        if matches!(code, 502..=504) {
            h.consecutive_gateway += 1;
            if h.consecutive_gateway == cfg_gateway {
                found.push((
                    Ejection::ConsecutiveGatewayFailure,
                    format!(
                        "{} consecutive gateway failures (502/503/504), last {code}",
                        h.consecutive_gateway
                    ),
                ));
            }
        } else {
            h.consecutive_gateway = 0;
        }
        h.consecutive_5xx += 1;
        if h.consecutive_5xx == cfg_5xx {
            found.push((
                Ejection::Consecutive5xx,
                format!("{} consecutive 5xx, last {code}", h.consecutive_5xx),
            ));
        }
        let mut actions = Vec::new();
        for (kind, reason) in found {
            actions.extend(self.detect(host, kind, reason, now, random));
        }
        actions
    }

    /// A detection: counted, then admitted or not, then the counter reset.
    fn detect(
        &mut self,
        host: usize,
        kind: Ejection,
        reason: String,
        now: Instant,
        random: &mut impl FnMut() -> u64,
    ) -> Vec<Action> {
        if self.is_ejected(host) {
            return Vec::new();
        }
        self.stats.detected[kind.index()].inc();
        let actions = self.eject(host, kind, reason, now, random);
        if let Some(h) = self.hosts.get_mut(host) {
            match kind {
                Ejection::Consecutive5xx => h.consecutive_5xx = 0,
                Ejection::ConsecutiveGatewayFailure => h.consecutive_gateway = 0,
                Ejection::ConsecutiveLocalOriginFailure => h.consecutive_local = 0,
                _ => {}
            }
        }
        actions
    }

    fn enforcing(&self, kind: Ejection) -> u32 {
        let c = &self.cfg;
        match kind {
            Ejection::Consecutive5xx => c.enforcing_consecutive_5xx,
            Ejection::ConsecutiveGatewayFailure => c.enforcing_consecutive_gateway_failure,
            Ejection::ConsecutiveLocalOriginFailure => c.enforcing_consecutive_local_origin_failure,
            Ejection::SuccessRate => c.enforcing_success_rate,
            Ejection::SuccessRateLocalOrigin => c.enforcing_local_origin_success_rate,
            Ejection::FailurePercentage => c.enforcing_failure_percentage,
            Ejection::FailurePercentageLocalOrigin => c.enforcing_failure_percentage_local_origin,
        }
    }

    fn eject(
        &mut self,
        host: usize,
        kind: Ejection,
        reason: String,
        now: Instant,
        random: &mut impl FnMut() -> u64,
    ) -> Vec<Action> {
        // Envoy counts the would-be ejection, cluster-wide.
        let total = self.hosts.len().max(1) as u64;
        let would_be = 100 * (u64::from(self.active) + 1) / total;
        let max = u64::from(self.cfg.max_ejection_percent.min(100));
        let admitted = would_be <= max || (self.cfg.always_eject_one_host && self.active == 0);
        if !admitted {
            self.stats.ejections_overflow.inc();
            return Vec::new();
        }
        if matches!(kind, Ejection::Consecutive5xx | Ejection::SuccessRate) {
            // Envoy's deprecated counters.
            self.stats.ejections_total.inc();
            match kind {
                Ejection::Consecutive5xx => self.stats.ejections_consecutive_5xx.inc(),
                _ => self.stats.ejections_success_rate.inc(),
            }
        }
        if random() % 100 >= u64::from(self.enforcing(kind)) {
            return vec![Action::Detected { host, kind }];
        }
        let base = self.cfg.base_ejection_time;
        let max_time = self.cfg.max_ejection_time;
        let jitter_ms =
            u64::try_from(self.cfg.max_ejection_time_jitter.as_millis()).unwrap_or(u64::MAX);
        let Some(h) = self.hosts.get_mut(host) else {
            return Vec::new();
        };
        h.ejected = true;
        h.num_ejections += 1;
        h.last_ejection = Some(now);
        h.jitter = Duration::from_millis(random() % jitter_ms.saturating_add(1));
        // The multiplier grows while base × multiplier < max + base.
        if base.saturating_mul(h.multiplier) < max_time.saturating_add(base) {
            h.multiplier += 1;
        }
        let duration = base.saturating_mul(h.multiplier).min(max_time) + h.jitter;
        self.active += 1;
        self.stats.ejections_active.set(i64::from(self.active));
        self.stats.ejections_enforced_total.inc();
        self.stats.enforced[kind.index()].inc();
        vec![Action::Eject {
            host,
            kind,
            duration,
            reason,
        }]
    }

    fn uneject(&mut self, host: usize, now: Instant) -> Option<Action> {
        let h = self.hosts.get_mut(host)?;
        if !h.ejected {
            return None;
        }
        h.ejected = false;
        h.consecutive_5xx = 0;
        h.consecutive_gateway = 0;
        h.consecutive_local = 0;
        h.last_unejection = Some(now);
        self.active = self.active.saturating_sub(1);
        self.stats.ejections_active.set(i64::from(self.active));
        Some(Action::Uneject { host })
    }

    /// An active health check passed for `host`: with
    /// `successful_active_health_check_uneject_host`, an ejected host that
    /// is not failing active checks comes back at once (Envoy).
    pub fn active_check_passed(&mut self, host: usize, now: Instant) -> Option<Action> {
        if self.cfg.successful_active_health_check_uneject_host {
            self.uneject(host, now)
        } else {
            None
        }
    }

    /// The sweep Envoy runs every `interval`: let ejected hosts back whose
    /// time is up, evaluate success rate and failure percentage over the
    /// interval that just ended, and decay the multipliers of hosts that
    /// have stayed back for an interval.
    pub fn sweep(&mut self, now: Instant, random: &mut impl FnMut() -> u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let (base, max_time) = (self.cfg.base_ejection_time, self.cfg.max_ejection_time);
        for host in 0..self.hosts.len() {
            let h = &mut self.hosts[host];
            if h.ejected
                && let Some(at) = h.last_ejection
                && base.saturating_mul(h.multiplier).min(max_time) + h.jitter
                    <= now.saturating_duration_since(at)
            {
                actions.extend(self.uneject(host, now));
            }
            let h = &mut self.hosts[host];
            h.last_external = std::mem::take(&mut h.external);
            h.last_local = std::mem::take(&mut h.local);
        }
        actions.extend(self.rates(now, false, random));
        if self.cfg.split_external_local_origin_errors {
            actions.extend(self.rates(now, true, random));
        }
        let interval = self.cfg.interval;
        for h in &mut self.hosts {
            if !h.ejected
                && let Some(back) = h.last_unejection
                && now.saturating_duration_since(back) >= interval
            {
                h.multiplier = h.multiplier.saturating_sub(1);
            }
        }
        actions
    }

    /// Success-rate and failure-percentage ejections over the last interval.
    fn rates(
        &mut self,
        now: Instant,
        local: bool,
        random: &mut impl FnMut() -> u64,
    ) -> Vec<Action> {
        let c = &self.cfg;
        let p = &self.published;
        let (average, threshold_out) = if local {
            (
                &p.local_origin_success_rate_average,
                &p.local_origin_success_rate_ejection_threshold,
            )
        } else {
            (&p.success_rate_average, &p.success_rate_ejection_threshold)
        };
        // Envoy publishes -1 unless this sweep computes a value.
        average.set(-1.0);
        threshold_out.set(-1.0);
        for rates in &p.hosts {
            if local { &rates.1 } else { &rates.0 }.set(-1.0);
        }
        let hosts = self.hosts.len() as u64;
        let sr_min = u64::from(c.success_rate_minimum_hosts);
        let fp_min = u64::from(c.failure_percentage_minimum_hosts);
        if hosts < sr_min && hosts < fp_min {
            return Vec::new();
        }
        let sr_volume = u64::from(c.success_rate_request_volume);
        let fp_volume = u64::from(c.failure_percentage_request_volume);
        let mut sr_candidates = Vec::new();
        let mut fp_candidates = Vec::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let b = if local { h.last_local } else { h.last_external };
            if h.ejected || b.total == 0 {
                continue;
            }
            let rate = 100.0 * b.success as f64 / b.total as f64;
            if b.total >= sr_volume.min(fp_volume)
                && let Some(rates) = p.hosts.get(i)
            {
                if local { &rates.1 } else { &rates.0 }.set(rate);
            }
            if b.total >= sr_volume {
                sr_candidates.push((i, rate));
            }
            if b.total >= fp_volume {
                fp_candidates.push((i, rate));
            }
        }
        let (sr_kind, fp_kind) = if local {
            (
                Ejection::SuccessRateLocalOrigin,
                Ejection::FailurePercentageLocalOrigin,
            )
        } else {
            (Ejection::SuccessRate, Ejection::FailurePercentage)
        };
        let mut found = Vec::new();
        if sr_candidates.len() as u64 >= sr_min && !sr_candidates.is_empty() {
            let n = sr_candidates.len() as f64;
            let mean = sr_candidates.iter().map(|(_, r)| r).sum::<f64>() / n;
            let variance = sr_candidates
                .iter()
                .map(|(_, r)| (r - mean).powi(2))
                .sum::<f64>()
                / n;
            let threshold =
                mean - f64::from(c.success_rate_stdev_factor) / 1000.0 * variance.sqrt();
            average.set(mean);
            threshold_out.set(threshold);
            for (i, rate) in &sr_candidates {
                if *rate < threshold {
                    found.push((
                        *i,
                        sr_kind,
                        format!(
                            "success rate {rate:.1}% below the cluster's threshold {threshold:.1}% (mean {mean:.1}%)"
                        ),
                    ));
                }
            }
        }
        if fp_candidates.len() as u64 >= fp_min {
            let limit = f64::from(c.failure_percentage_threshold);
            for (i, rate) in &fp_candidates {
                if 100.0 - rate >= limit {
                    found.push((
                        *i,
                        fp_kind,
                        format!(
                            "{:.1}% of requests failed (threshold {limit}%)",
                            100.0 - rate
                        ),
                    ));
                }
            }
        }
        let mut actions = Vec::new();
        for (host, kind, reason) in found {
            actions.extend(self.detect(host, kind, reason, now, random));
        }
        actions
    }
}

mod carry;
mod published;
mod stats;
mod task;
pub use carry::OutlierCarry;
pub use published::{Published, Rate};
pub use stats::OutlierStats;
pub use task::{Passive, WatchedHost, start};

#[cfg(test)]
mod tests;
