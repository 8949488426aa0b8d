//! Where a cluster's hosts come from: resolving endpoint names, and the
//! flags a host starts with (carried over a reload, or new).
//!
//! Owns: DNS resolution at build time and the carried-flags rule.
//! Must not touch: the checks that own the flags afterwards.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Carried;
use crate::config::model::{self, DiscoveryType};
use crate::health::checker::SESSION_FLAGS;
use crate::health::{self, HostHealth, flags};

/// A host's flags: those it had before a reload (its EDS status as the new
/// file says), else new ones from its status.
pub(super) fn host_health(
    carried: &Carried,
    address: SocketAddr,
    status: model::HealthStatus,
    config: &model::Cluster,
) -> Arc<HostHealth> {
    match carried.health.get(&address) {
        Some(health) => {
            health.replace(flags::EDS, health::status_flags(status));
            // Nothing would ever clear what a check or ejection the new
            // config no longer has set.
            if config.health_checks.is_empty() {
                health.clear(SESSION_FLAGS);
            }
            if config.outlier_detection.is_none() {
                health.clear(flags::FAILED_OUTLIER_CHECK);
            }
            // The unresponsive watch starts afresh with the new cluster and
            // would never clear a mark the old one set.
            health.clear(flags::UNRESPONSIVE);
            Arc::clone(health)
        }
        None => Arc::new(HostHealth::from_status(status)),
    }
}

pub(super) async fn resolve(
    discovery: DiscoveryType,
    endpoint: &model::Endpoint,
    cluster: &str,
) -> Vec<SocketAddr> {
    if let Ok(ip) = endpoint.host.parse::<std::net::IpAddr>() {
        return vec![SocketAddr::new(ip, endpoint.port)];
    }
    match tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port)).await {
        Ok(addrs) => {
            let mut addrs: Vec<SocketAddr> = addrs.collect();
            addrs.dedup();
            if discovery == DiscoveryType::LogicalDns {
                addrs.truncate(1);
            }
            addrs
        }
        Err(e) => {
            tracing::warn!(cluster, host = %endpoint.host, error = %e, "DNS resolution failed; the endpoint has no hosts");
            Vec::new()
        }
    }
}
