//! Health events, told once and in every form: Envoy's JSON-lines event
//! log (`event_logger` file sinks / `event_log_path`), and a sentence in
//! hale's own log that says which host, which check, what came back and
//! why that changes its health.
//!
//! Owns: the event-log line format (Envoy's `HealthCheckEvent` as proto
//! JSON: snake_case, primitives always printed, enums by name) and the files.
//! Must not touch: health decisions; it reports what the state machine did.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::checker::{Event, FailureType};

/// Which kind of checker produced an event (`health_checker_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckerType {
    /// HTTP.
    Http,
    /// TCP.
    Tcp,
    /// gRPC.
    Grpc,
}

impl CheckerType {
    fn envoy_name(self) -> &'static str {
        match self {
            CheckerType::Http => "HTTP",
            CheckerType::Tcp => "TCP",
            CheckerType::Grpc => "GRPC",
        }
    }
}

/// The event-log files of one health check (shared by its sessions).
#[derive(Debug)]
pub struct EventLog {
    // Appended from the control thread only; the mutex makes the type
    // shareable, it is never contended.
    files: Vec<(PathBuf, Mutex<File>)>,
}

impl EventLog {
    /// Opens (creating, appending) every path. A path that cannot be opened
    /// is reported and skipped: a missing log must not stop health checking.
    pub fn open(paths: &[PathBuf]) -> Self {
        let files = paths
            .iter()
            .filter_map(|p| {
                match OpenOptions::new().create(true).append(true).open(p) {
                    Ok(f) => Some((p.clone(), Mutex::new(f))),
                    Err(e) => {
                        tracing::error!(path = %p.display(), error = %e, "cannot open the health check event log");
                        None
                    }
                }
            })
            .collect();
        Self { files }
    }

    /// True when there is nowhere to write.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Appends one event line to every file.
    pub fn write(&self, line: &str) {
        for (path, file) in &self.files {
            let mut f = match file.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Err(e) = writeln!(f, "{line}") {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the health check event log");
            }
        }
    }
}

/// Where an event happened.
#[derive(Debug, Clone, Copy)]
pub struct EventSource<'a> {
    /// The cluster.
    pub cluster: &'a str,
    /// The host's address.
    pub host: SocketAddr,
    /// The checker kind.
    pub checker: CheckerType,
    /// Which of the cluster's checks (hale may have several).
    pub check_index: usize,
    /// A short description of the check (`HTTP GET /healthz`).
    pub check: &'a str,
}

/// Envoy's `HealthCheckEvent` JSON for `event`.
pub fn event_json(source: &EventSource<'_>, event: &Event, timestamp: &str) -> Value {
    let (key, body) = match event {
        Event::AddHealthy { first_check } => {
            ("add_healthy_event", json!({ "first_check": first_check }))
        }
        Event::EjectUnhealthy { failure_type } => (
            "eject_unhealthy_event",
            json!({ "failure_type": failure_type.envoy_name() }),
        ),
        Event::Failure {
            failure_type,
            first_check,
        } => (
            "health_check_failure_event",
            json!({ "failure_type": failure_type.envoy_name(), "first_check": first_check }),
        ),
        Event::Success => ("successful_health_check_event", json!({})),
        Event::Degraded => ("degraded_healthy_host", json!({})),
        Event::NoLongerDegraded => ("no_longer_degraded_host", json!({})),
    };
    let mut line = serde_json::Map::new();
    line.insert(
        "health_checker_type".into(),
        json!(source.checker.envoy_name()),
    );
    line.insert(
        "host".into(),
        json!({"socket_address": {
            "protocol": "TCP",
            "address": source.host.ip().to_string(),
            "port_value": source.host.port(),
            "resolver_name": "",
            "ipv4_compat": false,
        }}),
    );
    line.insert("cluster_name".into(), json!(source.cluster));
    line.insert("timestamp".into(), json!(timestamp));
    line.insert(key.into(), body);
    // Envoy's schema has room for metadata; hale says there which of the
    // cluster's checks this was, since it allows more than one.
    line.insert(
        "metadata".into(),
        json!({"filter_metadata": {"hale": {
            "check_index": source.check_index,
            "check": source.check,
        }}}),
    );
    Value::Object(line)
}

/// Tells an event: the event-log line, and a sentence in hale's log.
pub fn tell(log: &EventLog, source: &EventSource<'_>, event: &Event, reason: Option<&str>) {
    let host = source.host;
    let cluster = source.cluster;
    let check = source.check;
    let why = reason.unwrap_or("");
    match event {
        Event::EjectUnhealthy { failure_type } => tracing::warn!(
            cluster, %host, check, reason = why,
            "host is now unhealthy: {}", failure_sentence(*failure_type)
        ),
        Event::AddHealthy { first_check: true } => {
            tracing::info!(cluster, %host, check, "host is healthy (first check passed)");
        }
        Event::AddHealthy { first_check: false } => {
            tracing::info!(cluster, %host, check, "host is healthy again (healthy_threshold passes in a row)");
        }
        Event::Failure {
            failure_type,
            first_check,
        } => tracing::info!(
            cluster, %host, check, reason = why, first_check,
            "health check failed: {}", failure_sentence(*failure_type)
        ),
        Event::Success => tracing::debug!(cluster, %host, check, "health check passed"),
        Event::Degraded => {
            tracing::warn!(cluster, %host, check, "host is degraded (x-envoy-degraded)");
        }
        Event::NoLongerDegraded => {
            tracing::info!(cluster, %host, check, "host is no longer degraded");
        }
    }
    if !log.is_empty() {
        log.write(&event_json(source, event, &rfc3339_now()).to_string());
    }
}

fn failure_sentence(kind: FailureType) -> &'static str {
    match kind {
        FailureType::Active => "the answer was wrong, which fails a host at once",
        FailureType::Passive => {
            "proxied traffic carried x-envoy-immediate-health-check-fail, which fails a host at once"
        }
        FailureType::Network => "the connection failed unhealthy_threshold times in a row",
        FailureType::NetworkTimeout => {
            "no answer within the timeout, unhealthy_threshold times in a row"
        }
    }
}

/// Now as RFC 3339 UTC with milliseconds (`2024-08-20T18:13:47.577Z`).
pub fn rfc3339_now() -> String {
    rfc3339(SystemTime::now())
}

/// `at` as RFC 3339 UTC with milliseconds.
pub fn rfc3339(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_724_177_627_577);
        assert_eq!(rfc3339(t), "2024-08-20T18:13:47.577Z");
    }

    #[test]
    fn event_lines_have_envoys_shape() {
        let source = EventSource {
            cluster: "backend",
            host: "10.0.0.7:8000".parse().unwrap(),
            checker: CheckerType::Http,
            check_index: 0,
            check: "HTTP GET /health",
        };
        let v = event_json(
            &source,
            &Event::Failure {
                failure_type: FailureType::Active,
                first_check: false,
            },
            "2024-08-20T18:13:47.577Z",
        );
        assert_eq!(v["health_checker_type"], "HTTP");
        assert_eq!(v["cluster_name"], "backend");
        assert_eq!(v["host"]["socket_address"]["address"], "10.0.0.7");
        assert_eq!(v["host"]["socket_address"]["port_value"], 8000);
        assert_eq!(v["host"]["socket_address"]["protocol"], "TCP");
        assert_eq!(v["health_check_failure_event"]["failure_type"], "ACTIVE");
        assert_eq!(v["health_check_failure_event"]["first_check"], false);
        let add = event_json(&source, &Event::AddHealthy { first_check: true }, "t");
        assert_eq!(add["add_healthy_event"]["first_check"], true);
        let eject = event_json(
            &source,
            &Event::EjectUnhealthy {
                failure_type: FailureType::NetworkTimeout,
            },
            "t",
        );
        assert_eq!(
            eject["eject_unhealthy_event"]["failure_type"],
            "NETWORK_TIMEOUT"
        );
    }
}
