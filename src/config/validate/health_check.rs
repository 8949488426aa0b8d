//! Active health checks: one `clusters[].health_checks[]` entry.
//!
//! Owns: decoding a `HealthCheck` into [`HealthCheck`]: its timings with
//! Envoy's defaults and "more than 0s" rules, the thresholds, the event log
//! destinations (the deprecated `event_log_path` and the file sink of
//! `event_logger[]`), and which checker it holds. The TCP and gRPC checkers
//! and payloads are read here; the HTTP checker is in `http_check`, and the
//! header lists the HTTP and gRPC checkers share are in `headers`.
//!
//! Must not touch: the rest of the cluster, and what the values do at run
//! time (scheduling and thresholds are `health`'s). hale accepts several
//! entries per cluster where Envoy rejects a second, so nothing here counts
//! them: the cluster decoder simply keeps them all.

mod headers;
mod http_check;

use std::path::PathBuf;
use std::time::Duration;

use super::{each, one_of, owned_string};
use crate::config::envoy::messages::{
    GRPC_HEALTH_CHECK, HEALTH_CHECK, HEALTH_CHECK_EVENT_FILE_SINK, PAYLOAD, TCP_HEALTH_CHECK,
    TYPED_EXTENSION_CONFIG,
};
use crate::config::envoy::reader::{Node, Object, Sink};
use crate::config::model::{
    AppendAction, Checker, DEFAULT_NO_TRAFFIC_INTERVAL, GrpcCheck, HeaderToAdd, HealthCheck,
    TcpCheck,
};

const FILE_SINK_NAME: &str = "envoy.health_check.event_sinks.file";
const FILE_SINK_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.health_check.event_sinks.file.v3.HealthCheckEventFileSink";

/// The checker oneof; `custom_health_check` is listed so that setting it
/// next to another one is reported as a conflict too.
const CHECKERS: &[&str] = &[
    "http_health_check",
    "tcp_health_check",
    "grpc_health_check",
    "custom_health_check",
];

/// Decodes one `health_checks[]` entry.
pub(super) fn decode(sink: &mut Sink, node: &Node<'_>) -> Option<HealthCheck> {
    let check = node.open(sink, &HEALTH_CHECK)?;
    let timeout = required_positive(sink, &check, "timeout");
    let interval = required_positive(sink, &check, "interval");
    let initial_jitter = check.optional(sink, "initial_jitter", Duration::ZERO, |node, sink| {
        node.duration(sink)
    });
    let interval_jitter = check.optional(sink, "interval_jitter", Duration::ZERO, |node, sink| {
        node.duration(sink)
    });
    let interval_jitter_percent =
        check.optional(sink, "interval_jitter_percent", 0, |node, sink| {
            node.u32(sink)
        });
    let unhealthy_threshold = threshold(sink, &check, "unhealthy_threshold");
    let healthy_threshold = threshold(sink, &check, "healthy_threshold");
    let reuse_connection = check.optional(sink, "reuse_connection", true, |node, sink| {
        node.bool_wrapper(sink)
    });
    let no_traffic_interval = optional_positive(sink, &check, "no_traffic_interval");
    let no_traffic_healthy_interval =
        optional_positive(sink, &check, "no_traffic_healthy_interval");
    let unhealthy_interval = optional_positive(sink, &check, "unhealthy_interval");
    let unhealthy_edge_interval = optional_positive(sink, &check, "unhealthy_edge_interval");
    let healthy_edge_interval = optional_positive(sink, &check, "healthy_edge_interval");
    let always_log_health_check_failures = check.optional(
        sink,
        "always_log_health_check_failures",
        false,
        |node, sink| node.bool(sink),
    );
    let always_log_health_check_success = check.optional(
        sink,
        "always_log_health_check_success",
        false,
        |node, sink| node.bool(sink),
    );
    let event_log_paths = event_log_paths(sink, &check);
    let missing = "one of http_health_check, tcp_health_check, grpc_health_check is required";
    let checker = match one_of(sink, &check, CHECKERS, missing) {
        Some(("http_health_check", node)) => http_check::decode(sink, &node).map(Checker::Http),
        Some(("tcp_health_check", node)) => tcp(sink, &node).map(Checker::Tcp),
        Some(("grpc_health_check", node)) => grpc(sink, &node).map(Checker::Grpc),
        _ => None, // none set, or custom_health_check (reported as unsupported)
    };

    // Envoy's defaults that follow other fields, resolved once all are read.
    let interval = interval?;
    let no_traffic_interval = no_traffic_interval?.unwrap_or(DEFAULT_NO_TRAFFIC_INTERVAL);
    let unhealthy_interval = unhealthy_interval?.unwrap_or(interval);
    Some(HealthCheck {
        timeout: timeout?,
        interval,
        initial_jitter: initial_jitter?,
        interval_jitter: interval_jitter?,
        interval_jitter_percent: interval_jitter_percent?,
        unhealthy_threshold: unhealthy_threshold?,
        healthy_threshold: healthy_threshold?,
        reuse_connection: reuse_connection?,
        no_traffic_interval,
        no_traffic_healthy_interval: no_traffic_healthy_interval?.unwrap_or(no_traffic_interval),
        unhealthy_interval,
        unhealthy_edge_interval: unhealthy_edge_interval?.unwrap_or(unhealthy_interval),
        healthy_edge_interval: healthy_edge_interval?.unwrap_or(interval),
        always_log_health_check_failures: always_log_health_check_failures?,
        always_log_health_check_success: always_log_health_check_success?,
        event_log_paths: event_log_paths?,
        checker: checker?,
    })
}

/// A required duration that must be more than 0s (`timeout`, `interval`).
fn required_positive(sink: &mut Sink, check: &Object<'_>, name: &str) -> Option<Duration> {
    let node = check.require(sink, name)?;
    positive(sink, &node, name)
}

/// An optional duration that must be more than 0s when set; `Some(None)`
/// when absent, so the caller applies the default Envoy derives.
fn optional_positive(sink: &mut Sink, check: &Object<'_>, name: &str) -> Option<Option<Duration>> {
    check.optional(sink, name, None, |node, sink| {
        positive(sink, node, name).map(Some)
    })
}

fn positive(sink: &mut Sink, node: &Node<'_>, name: &str) -> Option<Duration> {
    let duration = node.duration(sink)?;
    if duration.is_zero() {
        node.report(sink, format!("{name} must be more than 0s"));
        return None;
    }
    Some(duration)
}

/// `unhealthy_threshold` / `healthy_threshold`: required `UInt32Value`s.
///
/// 0 is accepted, as in Envoy, and keeps Envoy's meaning: its counters are
/// compared with `==` after an increment, so 0 never trips by counting (only
/// non-retriable failures, or a host's first check, change its state).
fn threshold(sink: &mut Sink, check: &Object<'_>, name: &str) -> Option<u32> {
    check.require(sink, name)?.u32_wrapper(sink)
}

/// `event_log_path` and `event_logger[]`, in the order they are written.
fn event_log_paths(sink: &mut Sink, check: &Object<'_>) -> Option<Vec<PathBuf>> {
    let mut paths = Vec::new();
    let mut valid = true;
    for (field, node) in check.set_among(&["event_log_path", "event_logger"]) {
        if field == "event_log_path" {
            match node.string(sink) {
                // proto3: an empty string is the unset default (no log).
                Some("") => {}
                Some(path) => paths.push(PathBuf::from(path)),
                None => valid = false,
            }
        } else {
            match each(sink, &node, event_sink) {
                Some(sinks) => paths.extend(sinks),
                None => valid = false,
            }
        }
    }
    valid.then_some(paths)
}

/// One `event_logger[]` entry. Envoy picks the sink by the `@type` of its
/// `typed_config` when there is one, else by its name; hale has only the
/// file sink.
fn event_sink(sink: &mut Sink, node: &Node<'_>) -> Option<PathBuf> {
    let entry = node.open(sink, &TYPED_EXTENSION_CONFIG)?;
    let name = entry
        .require(sink, "name")
        .and_then(|node| Some((node.non_empty_string(sink)?, node)));
    let typed = entry
        .get("typed_config")
        .and_then(|node| Some((node.type_url()?, node.type_url_place())));
    let unsupported = |what: &str| {
        format!(
            "health check event sink \"{what}\" is not supported by hale; \
             hale supports {FILE_SINK_NAME} ({FILE_SINK_TYPE_URL})"
        )
    };
    match (&typed, &name) {
        (Some((FILE_SINK_TYPE_URL, _)), _) => {}
        (Some((other, at)), _) => {
            sink.report(at, unsupported(other));
            return None;
        }
        (None, Some((name, at))) if *name != FILE_SINK_NAME => {
            at.report(sink, unsupported(name));
            return None;
        }
        // The file sink by name (or no usable name, already reported): its
        // typed_config is still needed for event_log_path.
        (None, _) => {}
    }
    let typed_config = entry.require(sink, "typed_config")?;
    let file_sink =
        typed_config.open_any(sink, FILE_SINK_TYPE_URL, &HEALTH_CHECK_EVENT_FILE_SINK)?;
    let path = file_sink
        .require(sink, "event_log_path")?
        .non_empty_string(sink)?;
    name?;
    Some(PathBuf::from(path))
}

/// `tcp_health_check`.
fn tcp(sink: &mut Sink, node: &Node<'_>) -> Option<TcpCheck> {
    let tcp = node.open(sink, &TCP_HEALTH_CHECK)?;
    let send = tcp.optional(sink, "send", None, |node, sink| {
        payload(sink, node).map(Some)
    });
    let receive = tcp.optional(sink, "receive", vec![], |list, sink| {
        each(sink, list, payload)
    });
    Some(TcpCheck {
        send: send?,
        receive: receive?,
    })
}

/// `grpc_health_check`.
fn grpc(sink: &mut Sink, node: &Node<'_>) -> Option<GrpcCheck> {
    let grpc = node.open(sink, &GRPC_HEALTH_CHECK)?;
    let service_name = grpc.optional(sink, "service_name", String::new(), owned_string);
    let authority = grpc.optional(sink, "authority", None, |node, sink| {
        headers::optional_value(sink, node)
    });
    let initial_metadata = grpc.optional(sink, "initial_metadata", vec![], |list, sink| {
        headers::to_add(sink, list).map(metadata)
    });
    Some(GrpcCheck {
        service_name: service_name?,
        authority: authority?,
        initial_metadata: initial_metadata?,
    })
}

/// `initial_metadata` as the (name, value) pairs the model keeps: the append
/// actions applied in order, as Envoy's header parser does, to metadata that
/// starts empty (the gRPC checker's own headers are its business).
fn metadata(headers: Vec<HeaderToAdd>) -> Vec<(String, String)> {
    let mut metadata: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for HeaderToAdd {
        name,
        value,
        action,
    } in headers
    {
        let present = metadata.iter().any(|(seen, _)| *seen == name);
        let (keep_others, add) = match action {
            AppendAction::AppendIfExistsOrAdd => (true, true),
            AppendAction::AddIfAbsent => (true, !present),
            AppendAction::OverwriteIfExistsOrAdd => (false, true),
            AppendAction::OverwriteIfExists => (!present, present),
        };
        if !keep_others {
            metadata.retain(|(seen, _)| *seen != name);
        }
        if add {
            metadata.push((name, value));
        }
    }
    metadata
}

/// A `Payload`: `text` is hex (`"000000FF"`), `binary` is base64.
fn payload(sink: &mut Sink, node: &Node<'_>) -> Option<Vec<u8>> {
    let payload = node.open(sink, &PAYLOAD)?;
    let missing = "a payload needs \"text\" (hex) or \"binary\" (base64)";
    match one_of(sink, &payload, &["text", "binary"], missing)? {
        ("text", node) => node.hex(sink),
        (_, node) => node.base64(sink),
    }
}
