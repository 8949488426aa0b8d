//! Envoy's per-host health-check state machine, as a pure value: what one
//! probe result does to a host's active-check flags, which events it emits,
//! and when the next probe runs. No sockets, no clocks: the scheduler feeds
//! results in and applies what comes out, and tests drive it directly.
//!
//! Owns: thresholds (`healthy_threshold`, `unhealthy_threshold`), the
//! first-check rule, retriable vs immediate failures, degraded marking, and
//! Envoy's interval selection with jitter (`HealthCheckerImplBase::interval`).
//! Must not touch: the host's shared flags (the scheduler publishes them).

use std::time::Duration;

use super::flags;
use crate::config::model::HealthCheck;

/// The flags one check session owns on its host.
pub const SESSION_FLAGS: u32 = flags::FAILED_ACTIVE_HC
    | flags::DEGRADED_ACTIVE_HC
    | flags::PENDING_ACTIVE_HC
    | flags::EXCLUDED_VIA_IMMEDIATE_HC_FAIL
    | flags::ACTIVE_HC_TIMEOUT;

/// Envoy's `FailureType`: how a check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureType {
    /// The upstream answered, wrongly (status, body, gRPC status).
    Active,
    /// `x-envoy-immediate-health-check-fail` on proxied traffic.
    Passive,
    /// Connect failure, reset, unexpected close.
    Network,
    /// No answer within `timeout`.
    NetworkTimeout,
}

impl FailureType {
    /// The enum name Envoy's event log prints.
    pub fn envoy_name(self) -> &'static str {
        match self {
            FailureType::Active => "ACTIVE",
            FailureType::Passive => "PASSIVE",
            FailureType::Network => "NETWORK",
            FailureType::NetworkTimeout => "NETWORK_TIMEOUT",
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed; `degraded` when the HTTP response said
    /// `x-envoy-degraded`.
    Pass {
        /// `x-envoy-degraded` was present.
        degraded: bool,
    },
    /// The check failed.
    Fail {
        /// How.
        kind: FailureType,
        /// Counts toward `unhealthy_threshold` (an HTTP `retriable_statuses`
        /// answer) even though it is an `Active` failure.
        retriable: bool,
        /// The response carried `x-envoy-immediate-health-check-fail`.
        immediate_fail_header: bool,
        /// The connection was refused: nothing listens on the port (the
        /// process is down). hale watches for the port to open again.
        refused: bool,
        /// What came back, for people: "status 503", "connection refused"…
        reason: String,
    },
}

/// Envoy's `HealthTransition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing a load balancer cares about changed.
    Unchanged,
    /// The host's health flags changed.
    Changed,
    /// A contrary result was counted but the threshold is not reached yet.
    ChangePending,
}

/// A health event, in Envoy's event-log vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `add_healthy_event`.
    AddHealthy {
        /// The host's first check.
        first_check: bool,
    },
    /// `eject_unhealthy_event`.
    EjectUnhealthy {
        /// How the deciding check failed.
        failure_type: FailureType,
    },
    /// `health_check_failure_event`.
    Failure {
        /// How.
        failure_type: FailureType,
        /// The host's first check.
        first_check: bool,
    },
    /// `successful_health_check_event` (only with `always_log_health_check_success`).
    Success,
    /// `degraded_healthy_host`.
    Degraded,
    /// `no_longer_degraded_host`.
    NoLongerDegraded,
}

/// What one result did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// For interval selection and host-set rebuilds.
    pub transition: Transition,
    /// Events to log, in Envoy's order.
    pub events: Vec<Event>,
}

/// One host's state for one check (Envoy's `ActiveHealthCheckSession`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The flags this session sets on its host (a subset of [`SESSION_FLAGS`]).
    pub flags: u32,
    num_healthy: u32,
    num_unhealthy: u32,
    first_check: bool,
}

/// The parts of a check's config the state machine reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// `healthy_threshold`.
    pub healthy: u32,
    /// `unhealthy_threshold`.
    pub unhealthy: u32,
    /// `always_log_health_check_success`.
    pub log_every_success: bool,
    /// `always_log_health_check_failures`.
    pub log_every_failure: bool,
}

impl From<&HealthCheck> for Thresholds {
    fn from(hc: &HealthCheck) -> Self {
        Self {
            healthy: hc.healthy_threshold,
            unhealthy: hc.unhealthy_threshold,
            log_every_success: hc.always_log_health_check_success,
            log_every_failure: hc.always_log_health_check_failures,
        }
    }
}

impl Default for Session {
    fn default() -> Self {
        Self::new(false)
    }
}

impl Session {
    /// A new host: failed until its first check (Envoy), and excluded from
    /// load-balancing arithmetic while `pending`.
    pub fn new(pending: bool) -> Self {
        let pending = if pending { flags::PENDING_ACTIVE_HC } else { 0 };
        Self {
            flags: flags::FAILED_ACTIVE_HC | pending,
            num_healthy: 0,
            num_unhealthy: 0,
            first_check: true,
        }
    }

    /// Whether this session has had a result yet.
    pub fn has_result(&self) -> bool {
        !self.first_check
    }

    /// Applies one probe result.
    pub fn apply(&mut self, outcome: &Outcome, th: Thresholds) -> Step {
        match outcome {
            Outcome::Pass { degraded } => self.on_success(*degraded, th),
            Outcome::Fail {
                kind,
                retriable,
                immediate_fail_header,
                ..
            } => {
                if *immediate_fail_header {
                    self.flags |= flags::EXCLUDED_VIA_IMMEDIATE_HC_FAIL;
                }
                self.on_failure(*kind, *retriable, th)
            }
        }
    }

    fn on_success(&mut self, degraded: bool, th: Thresholds) -> Step {
        let mut events = Vec::new();
        self.num_unhealthy = 0;
        let mut t = Transition::Unchanged;
        if self.flags & flags::FAILED_ACTIVE_HC != 0 {
            // Envoy: the first success counts whatever healthy_threshold
            // says (and, short-circuited, does not bump the counter).
            let tripped = self.first_check || {
                self.num_healthy = self.num_healthy.saturating_add(1);
                self.num_healthy == th.healthy
            };
            if tripped {
                self.flags &= !(flags::FAILED_ACTIVE_HC
                    | flags::ACTIVE_HC_TIMEOUT
                    | flags::EXCLUDED_VIA_IMMEDIATE_HC_FAIL);
                t = Transition::Changed;
                events.push(Event::AddHealthy {
                    first_check: self.first_check,
                });
            } else {
                t = Transition::ChangePending;
            }
        }
        if t != Transition::Changed && th.log_every_success {
            events.push(Event::Success);
        }
        if self.flags & flags::PENDING_ACTIVE_HC != 0 {
            self.flags &= !flags::PENDING_ACTIVE_HC;
            t = Transition::Changed;
        }
        let was_degraded = self.flags & flags::DEGRADED_ACTIVE_HC != 0;
        if degraded != was_degraded {
            // Degraded is not thresholded: every passing check sets or clears it.
            if degraded {
                self.flags |= flags::DEGRADED_ACTIVE_HC;
                events.push(Event::Degraded);
            } else {
                self.flags &= !flags::DEGRADED_ACTIVE_HC;
                events.push(Event::NoLongerDegraded);
            }
            if t == Transition::Unchanged {
                t = Transition::Changed;
            }
        }
        self.first_check = false;
        Step {
            transition: t,
            events,
        }
    }

    fn on_failure(&mut self, kind: FailureType, retriable: bool, th: Thresholds) -> Step {
        let mut events = Vec::new();
        self.num_healthy = 0;
        let mut t = Transition::Unchanged;
        if self.flags & flags::FAILED_ACTIVE_HC == 0 {
            let counted =
                matches!(kind, FailureType::Network | FailureType::NetworkTimeout) || retriable;
            // Envoy compares with ==, so a threshold of 0 never trips by counting.
            let tripped = if counted {
                self.num_unhealthy = self.num_unhealthy.saturating_add(1);
                self.num_unhealthy == th.unhealthy
            } else {
                true
            };
            if tripped {
                self.flags |= flags::FAILED_ACTIVE_HC;
                t = Transition::Changed;
                events.push(Event::EjectUnhealthy { failure_type: kind });
            } else {
                t = Transition::ChangePending;
            }
        }
        if kind == FailureType::NetworkTimeout && self.flags & flags::FAILED_ACTIVE_HC != 0 {
            self.flags |= flags::ACTIVE_HC_TIMEOUT;
        } else {
            self.flags &= !flags::ACTIVE_HC_TIMEOUT;
        }
        if self.flags & flags::PENDING_ACTIVE_HC != 0 {
            self.flags &= !flags::PENDING_ACTIVE_HC;
            t = Transition::Changed;
        }
        if self.first_check || th.log_every_failure {
            events.push(Event::Failure {
                failure_type: kind,
                first_check: self.first_check,
            });
        }
        self.first_check = false;
        Step {
            transition: t,
            events,
        }
    }

    /// `x-envoy-immediate-health-check-fail` seen on proxied traffic: Envoy
    /// excludes the host and runs only the marking part of a failure (no
    /// re-scheduling of the next probe).
    pub fn immediate_fail(&mut self, th: Thresholds) -> Step {
        self.flags |= flags::EXCLUDED_VIA_IMMEDIATE_HC_FAIL;
        let was_first = self.first_check;
        let step = self.on_failure(FailureType::Passive, false, th);
        // A passive failure is not a probe: the first check is still to come.
        self.first_check = was_first;
        step
    }
}

/// How long to wait before the next probe (Envoy's interval selection).
///
/// `healthy` is the result just applied; `traffic_seen` is whether the
/// cluster has ever carried traffic (else the no-traffic intervals apply);
/// `random` returns a uniformly random u64.
pub fn next_interval(
    hc: &HealthCheck,
    healthy: bool,
    transition: Transition,
    traffic_seen: bool,
    mut random: impl FnMut() -> u64,
) -> Duration {
    let pending = transition == Transition::ChangePending;
    let base = match (traffic_seen, healthy, pending) {
        (true, false, true) => hc.unhealthy_edge_interval,
        (true, false, false) => hc.unhealthy_interval,
        (true, true, true) => hc.healthy_edge_interval,
        (true, true, false) => hc.interval,
        (false, true, false) => hc.no_traffic_healthy_interval,
        (false, _, _) => hc.no_traffic_interval,
    };
    let base_ms = millis(base);
    let mut wait = base_ms;
    let percent_span = u64::from(hc.interval_jitter_percent).saturating_mul(base_ms) / 100;
    if percent_span > 0 {
        wait = wait.saturating_add(random() % percent_span);
    }
    let jitter_ms = millis(hc.interval_jitter);
    if jitter_ms > 0 {
        wait = wait.saturating_add(random() % jitter_ms);
    }
    Duration::from_millis(wait.max(1))
}

/// Delay of a session's first probe: `rand % initial_jitter` (at least
/// 1 ms) when `initial_jitter` is set, else none.
pub fn initial_delay(hc: &HealthCheck, mut random: impl FnMut() -> u64) -> Duration {
    let jitter = millis(hc.initial_jitter);
    if jitter == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis((random() % jitter).max(1))
    }
}

/// Delay of the first probe of a session carried over a reload (it has had
/// its first result already): a uniformly random point within `interval`,
/// so the hosts of a reloaded cluster are not all probed at once.
pub fn carried_delay(hc: &HealthCheck, mut random: impl FnMut() -> u64) -> Duration {
    let span = millis(hc.interval);
    if span == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(random() % span)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
pub(crate) mod tests;
