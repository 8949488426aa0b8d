//! Envoy's document → hale's model, reporting every error at once.
//!
//! Owns: reading the bootstrap with the `envoy` reader, applying Envoy's
//! defaults, checking values (ranges, IP literals, regexes) and the whole
//! config (unique names, routes naming defined clusters, unique domains), and
//! returning either a [`Bootstrap`] or every error in document order.
//! Decoding is split by area: `listener` (listeners, the HTTP connection
//! manager and its filters), `route` (route configs), `cluster` (clusters
//! and endpoints), `health_check` (a cluster's active health checks),
//! `outlier` (a cluster's outlier detection), `degraded` (hale's
//! degraded-mode filter, on a listener or per route), `health_server` (the
//! `bootstrap_extensions`, whose one kind is hale's probe server); this
//! file holds the bootstrap, node, admin and the pieces they share.
//!
//! Must not touch: runtime state, and the text of the file (that is
//! `envoy::read_document`'s). A decoder that returns `None` has reported why.

mod cluster;
mod degraded;
mod health_check;
mod health_server;
mod listener;
mod outlier;
mod route;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde_json::Value;

use super::ConfigErrors;
use super::envoy::messages::{ADDRESS, ADMIN, BOOTSTRAP, NODE, SOCKET_ADDRESS, STATIC_RESOURCES};
use super::envoy::reader::{EnumValue, Node, Object, Place, Sink};
use super::model::{self, Admin, Bootstrap, Cluster, Listener};

/// Decodes and checks a whole bootstrap document read from `file`.
pub fn bootstrap(document: Value, file: &Path) -> Result<Bootstrap, ConfigErrors> {
    let mut sink = Sink::new(file);
    let parts = decode_bootstrap(&mut sink, &document);
    sink.finish()?;
    let Some(parts) = parts else {
        // Every decoder that gives up reports why, so this is a hale bug.
        return Err(ConfigErrors::whole_file(
            file,
            "the bootstrap was rejected without a reason; please report this as a hale bug",
        ));
    };
    Ok(Bootstrap {
        source: file.to_path_buf(),
        node: parts.node,
        admin: parts.admin,
        listeners: parts.listeners,
        clusters: parts.clusters,
        health_server: parts.health_server,
        raw: document,
        digest: 0,
    })
}

struct Parts {
    node: model::Node,
    admin: Option<Admin>,
    listeners: Vec<Listener>,
    clusters: Vec<Cluster>,
    health_server: Option<model::HealthServer>,
}

/// What `static_resources` defines, with what the checks reaching across the
/// file need even when some of it did not decode.
struct Resources<'a> {
    /// `None`: some listener did not decode (reported).
    listeners: Option<Vec<Listener>>,
    /// `None`: some cluster did not decode (reported).
    clusters: Option<Vec<Cluster>>,
    /// Every cluster name defined, decoded or not.
    cluster_names: UniqueNames<'a>,
    /// The listeners' addresses with a port other than 0, and where.
    listener_addresses: Vec<(SocketAddr, Place)>,
}

fn decode_bootstrap(sink: &mut Sink, document: &Value) -> Option<Parts> {
    let root = Node::root(document);
    let object = root.open(sink, &BOOTSTRAP)?;
    let node = object.optional(sink, "node", model::Node::default(), decode_node);
    let admin = object.optional(sink, "admin", None, decode_admin);
    let resources = match object.get("static_resources") {
        None => Some(Resources {
            listeners: Some(vec![]),
            clusters: Some(vec![]),
            cluster_names: UniqueNames::new("cluster"),
            listener_addresses: vec![],
        }),
        Some(node) => decode_static_resources(sink, &node),
    };
    // The health server is checked against what the rest of the file defines.
    let scope = health_server::Scope {
        clusters: resources.as_ref().map(|r| &r.cluster_names),
        listeners: resources
            .as_ref()
            .map_or(&[][..], |r| r.listener_addresses.as_slice()),
        admin: admin.as_ref().and_then(Option::as_ref).map(|a| a.address),
    };
    let health_server = object.optional(sink, "bootstrap_extensions", None, |list, sink| {
        health_server::decode(sink, list, &scope)
    });
    let resources = resources?;
    Some(Parts {
        node: node?,
        admin: admin?,
        listeners: resources.listeners?,
        clusters: resources.clusters?,
        health_server: health_server?,
    })
}

fn decode_node(node: &Node<'_>, sink: &mut Sink) -> Option<model::Node> {
    let object = node.open(sink, &NODE)?;
    let id = object.optional(sink, "id", String::new(), owned_string);
    let cluster = object.optional(sink, "cluster", String::new(), owned_string);
    Some(model::Node {
        id: id?,
        cluster: cluster?,
    })
}

/// `admin`; `Some(None)` when it has no address (Envoy then runs no admin server).
fn decode_admin(node: &Node<'_>, sink: &mut Sink) -> Option<Option<Admin>> {
    let object = node.open(sink, &ADMIN)?;
    if let Some(log) = object.get("access_log_path") {
        // Older configs send the admin access log to /dev/null; that is what
        // hale does anyway, so only other paths are a feature hale lacks.
        if log.string(sink).is_some_and(|path| path != "/dev/null") {
            log.report(
                sink,
                "\"access_log_path\" is an Envoy field that is not supported by hale \
                 (only \"/dev/null\" is accepted)",
            );
        }
    }
    match object.get("address") {
        None => Some(None),
        Some(address) => {
            let address = ip_socket_address(sink, &address, "the admin address")?;
            Some(Some(Admin { address }))
        }
    }
}

/// `static_resources`; `None` only when it is not an object (reported).
fn decode_static_resources<'a>(sink: &mut Sink, node: &Node<'a>) -> Option<Resources<'a>> {
    let object = node.open(sink, &STATIC_RESOURCES)?;
    // Clusters first, so routes can be checked against the names they define
    // and the degraded filter's dependencies against the clusters checked.
    let mut cluster_names = UniqueNames::new("cluster");
    let mut health_checked = Vec::new();
    let clusters = object.optional(sink, "clusters", vec![], |list, sink| {
        each(sink, list, |sink, item| {
            cluster::decode(sink, item, &mut cluster_names, &mut health_checked)
        })
    });
    let known = KnownClusters {
        names: &cluster_names,
        health_checked: &health_checked,
    };
    let mut listeners_seen = listener::Seen::default();
    let listeners = object.optional(sink, "listeners", vec![], |list, sink| {
        each(sink, list, |sink, item| {
            listener::decode(sink, item, &mut listeners_seen, known)
        })
    });
    Some(Resources {
        listeners,
        clusters,
        cluster_names,
        listener_addresses: listeners_seen.into_addresses(),
    })
}

/// Decodes every item of a list, so each item's errors are reported; `Some`
/// only when all of them decoded.
fn each<'a, T>(
    sink: &mut Sink,
    list: &Node<'a>,
    mut decode: impl FnMut(&mut Sink, &Node<'a>) -> Option<T>,
) -> Option<Vec<T>> {
    let items = list.list(sink)?;
    let mut decoded = Vec::with_capacity(items.len());
    let mut complete = true;
    for item in &items {
        match decode(sink, item) {
            Some(value) => decoded.push(value),
            None => complete = false,
        }
    }
    complete.then_some(decoded)
}

fn owned_string(node: &Node<'_>, sink: &mut Sink) -> Option<String> {
    node.string(sink).map(str::to_string)
}

/// Names that must be unique in one scope (listeners, clusters, virtual
/// hosts of a route config), with where each was first defined.
#[derive(Debug)]
struct UniqueNames<'a> {
    what: &'static str,
    seen: Vec<(&'a str, Place)>,
}

impl<'a> UniqueNames<'a> {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            seen: Vec::new(),
        }
    }

    /// Records `name` defined at `at`; a second definition is an error.
    fn claim(&mut self, sink: &mut Sink, name: &'a str, at: &Place) {
        if let Some((_, first)) = self.seen.iter().find(|(seen, _)| *seen == name) {
            let message = format!(
                "duplicate {} name \"{name}\" (already defined at {})",
                self.what,
                first.path()
            );
            sink.report(at, message);
        } else {
            self.seen.push((name, at.clone()));
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.seen.iter().any(|(seen, _)| *seen == name)
    }

    /// The names claimed, in the order they were first defined.
    fn names(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.seen.iter().map(|(name, _)| *name)
    }
}

/// The clusters `static_resources` defines, as listeners and their routes
/// and filters are checked against them.
#[derive(Debug, Clone, Copy)]
struct KnownClusters<'c, 'n> {
    /// Every cluster name defined, decoded or not.
    names: &'c UniqueNames<'n>,
    /// The clusters whose `health_checks` is a list that is not empty,
    /// decoded or not (an invalid one is reported where it is).
    health_checked: &'c [&'n str],
}

/// Whether `name`, read at `node`, is a cluster defined in
/// `static_resources.clusters`; reports it when not, followed by `why` (a
/// clause saying what the name is for, or "").
fn defined_cluster(
    sink: &mut Sink,
    node: &Node<'_>,
    name: &str,
    clusters: &UniqueNames<'_>,
    why: &str,
) -> bool {
    let defined = clusters.contains(name);
    if !defined {
        node.report(
            sink,
            format!("cluster \"{name}\" is not defined in static_resources.clusters{why}"),
        );
    }
    defined
}

/// A decoded `address.socket_address`, with the places of its parts so
/// callers can report "not an IP" or "port 0" where the value is.
struct SocketAddress<'a> {
    host: &'a str,
    host_place: Place,
    port: u16,
    port_place: Place,
}

const PROTOCOLS: &[EnumValue<()>] = &[("TCP", 0, Some(())), ("UDP", 1, None)];

/// `RoutingPriority`, of a route and of a circuit-breaker thresholds entry.
const ROUTING_PRIORITIES: &[EnumValue<model::RoutingPriority>] = &[
    ("DEFAULT", 0, Some(model::RoutingPriority::Default)),
    ("HIGH", 1, Some(model::RoutingPriority::High)),
];

/// Reads an Envoy `Address` holding a `socket_address` with a `port_value`.
fn socket_address<'a>(sink: &mut Sink, node: &Node<'a>) -> Option<SocketAddress<'a>> {
    let address = node.open(sink, &ADDRESS)?;
    if address.has("pipe") || address.has("envoy_internal_address") {
        return None; // reported as unsupported
    }
    let socket = address.require(sink, "socket_address")?;
    let socket = socket.open(sink, &SOCKET_ADDRESS)?;
    let protocol = socket.optional(sink, "protocol", (), |node, sink| {
        node.enumeration(sink, PROTOCOLS)
    });
    let host = socket
        .require(sink, "address")
        .and_then(|node| Some((node.non_empty_string(sink)?, node.place().clone())));
    let port = if socket.has("named_port") {
        None // reported as unsupported
    } else {
        socket.require(sink, "port_value").and_then(|node| {
            let port = port_number(sink, &node)?;
            Some((port, node.place().clone()))
        })
    };
    protocol?;
    let ((host, host_place), (port, port_place)) = (host?, port?);
    Some(SocketAddress {
        host,
        host_place,
        port,
        port_place,
    })
}

/// A `uint32` port field, which Envoy bounds to 65535.
fn port_number(sink: &mut Sink, node: &Node<'_>) -> Option<u16> {
    let port = node.u32(sink)?;
    match u16::try_from(port) {
        Ok(port) => Some(port),
        Err(_) => {
            node.report(sink, format!("port {port} is out of range: at most 65535"));
            None
        }
    }
}

/// An address hale binds: Envoy requires an IP literal there, not a name.
fn ip_socket_address(sink: &mut Sink, node: &Node<'_>, what: &str) -> Option<SocketAddr> {
    let address = socket_address(sink, node)?;
    match address.host.parse::<IpAddr>() {
        Ok(ip) => Some(SocketAddr::new(ip, address.port)),
        Err(_) => {
            sink.report(
                &address.host_place,
                format!(
                    "\"{}\" is not an IP address; {what} must be an IP literal such as 0.0.0.0 or ::",
                    address.host
                ),
            );
            None
        }
    }
}

/// Which filter an entry configures, decided as Envoy does: by the `@type` of
/// its `typed_config` when it has one, else by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterIdentity<'n> {
    /// An Envoy filter, by its short name (`router` for `envoy.filters.http.router`).
    Envoy(&'n str),
    /// The name says one filter and `@type` configures another.
    Mismatch,
    /// Not an Envoy filter.
    Unknown,
}

/// Identifies a filter of `family` (`http` or `network`).
fn identify_filter<'n>(
    name: &'n str,
    type_url: Option<&'n str>,
    family: &str,
) -> FilterIdentity<'n> {
    let by_name = name.strip_prefix("envoy.filters.").and_then(|rest| {
        rest.strip_prefix(family)
            .and_then(|rest| rest.strip_prefix('.'))
    });
    let by_type = type_url.map(|url| {
        url.strip_prefix("type.googleapis.com/envoy.extensions.filters.")
            .and_then(|rest| rest.strip_prefix(family))
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.split('.').next())
    });
    match (by_name, by_type) {
        (Some(named), Some(Some(typed))) if named != typed => FilterIdentity::Mismatch,
        (Some(_), Some(None)) => FilterIdentity::Mismatch,
        (_, Some(Some(typed))) => FilterIdentity::Envoy(typed),
        (Some(named), None) => FilterIdentity::Envoy(named),
        (None, _) => FilterIdentity::Unknown,
    }
}

/// The error for a `typed_config` whose `@type` is not the named filter's.
fn type_mismatch(sink: &mut Sink, typed_config: &Node<'_>, name: &str, expected: Option<&str>) {
    let found = typed_config.type_url().unwrap_or_default();
    let expected = expected
        .map(|url| format!(" (expected \"{url}\")"))
        .unwrap_or_default();
    sink.report(
        &typed_config.type_url_place(),
        format!("\"@type\" \"{found}\" does not configure filter \"{name}\"{expected}"),
    );
}

/// A oneof: the first member set (in document order), reporting every other
/// member set as a conflict, or `missing` at the object when none is set.
fn one_of<'a>(
    sink: &mut Sink,
    object: &Object<'a>,
    members: &[&'static str],
    missing: &str,
) -> Option<(&'static str, Node<'a>)> {
    let set = object.set_among(members);
    let Some(((first, node), rest)) = set.split_first() else {
        sink.report(object.place(), missing);
        return None;
    };
    for (other, node) in rest {
        node.report(
            sink,
            format!("\"{other}\" conflicts with \"{first}\": only one of them may be set"),
        );
    }
    Some((first, node.clone()))
}

/// Envoy's "0 disables this timeout".
fn zero_disables(duration: std::time::Duration) -> Option<std::time::Duration> {
    (!duration.is_zero()).then_some(duration)
}
