//! `/server_info`, `/listeners`, `/config_dump` and the server gauges that
//! are computed when read (`server.uptime`).
//!
//! Owns: those renderings, in Envoy's JSON shapes.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};

use super::AdminState;

/// The command line as `/server_info` reports it (Envoy's
/// `CommandLineOptions` field names).
#[derive(Debug, Clone, Serialize, Default)]
pub struct CommandLineOptions {
    /// `-c` / `--config-path`.
    pub config_path: String,
    /// `--mode` (`Serve` or `Validate`).
    pub mode: String,
    /// `--concurrency`.
    pub concurrency: usize,
    /// `--log-level`.
    pub log_level: String,
    /// `--service-cluster`.
    pub service_cluster: String,
    /// `--service-node`.
    pub service_node: String,
    /// `--drain-time-s`, as a proto JSON duration (`"600s"`).
    pub drain_time: String,
    /// `--admin-address-path`.
    pub admin_address_path: String,
}

/// Envoy's duration JSON: whole seconds as `"600s"`, fractions as `"0.5s"`.
pub fn duration_json(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        let s = format!("{:.9}", d.as_secs_f64());
        format!("{}s", s.trim_end_matches('0'))
    }
}

fn uptime(state: &AdminState) -> Duration {
    SystemTime::now()
        .duration_since(state.started)
        .unwrap_or_default()
}

/// Sets gauges whose value is computed when read.
pub fn refresh_server_gauges(state: &AdminState) {
    let secs = i64::try_from(uptime(state).as_secs()).unwrap_or(i64::MAX);
    state.store.gauge("server.uptime").set(secs);
}

/// `/server_info`.
pub fn server_info(state: &AdminState) -> Value {
    let world = state.snapshot.load();
    let node = &world.bootstrap.node;
    json!({
        "version": format!("hale/{}", env!("CARGO_PKG_VERSION")),
        "state": state.lifecycle.envoy_state().envoy_name(),
        "hot_restart_version": "disabled",
        "uptime_current_epoch": duration_json(Duration::from_secs(uptime(state).as_secs())),
        "uptime_all_epochs": duration_json(Duration::from_secs(uptime(state).as_secs())),
        "command_line_options": &*state.options,
        "node": {"id": node.id, "cluster": node.cluster},
    })
}

/// The listeners and their bound addresses, in config order.
fn listeners(state: &AdminState) -> Vec<(String, std::net::SocketAddr)> {
    let world = state.snapshot.load();
    if state.lifecycle.phase() == crate::lifecycle::Phase::Initializing
        && world.listeners.is_empty()
    {
        return state.bound.clone();
    }
    world
        .listeners
        .iter()
        .map(|l| (l.config.name.clone(), l.address))
        .collect()
}

/// `/listeners` text: `name::address` lines.
pub fn listeners_text(state: &AdminState) -> String {
    listeners(state)
        .iter()
        .map(|(name, addr)| format!("{name}::{addr}\n"))
        .collect()
}

/// `/listeners?format=json`.
pub fn listeners_json(state: &AdminState) -> Value {
    let statuses: Vec<Value> = listeners(state)
        .iter()
        .map(|(name, addr)| {
            json!({
                "name": name,
                "local_address": {"socket_address": {
                    "address": addr.ip().to_string(),
                    "port_value": addr.port(),
                }},
            })
        })
        .collect();
    json!({ "listener_statuses": statuses })
}

/// `/config_dump`: the running bootstrap as read, in Envoy's envelope.
pub fn config_dump(state: &AdminState) -> Value {
    let world = state.snapshot.load();
    json!({
        "configs": [{
            "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
            "bootstrap": world.bootstrap.raw,
            "last_updated": crate::health::events::rfc3339_now(),
        }],
        // hale's: what the last reload did (absent before the first).
        "last_reload": state.reload.last(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_render_like_envoy() {
        assert_eq!(duration_json(Duration::from_secs(600)), "600s");
        assert_eq!(duration_json(Duration::from_millis(250)), "0.25s");
    }
}
