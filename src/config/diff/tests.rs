//! The diff between two bootstraps, read from YAML.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use super::*;
use crate::config::{Format, Overrides, parse};

fn bootstrap(admin_port: u16, listeners: &str, clusters: &str) -> Bootstrap {
    let yaml = format!(
        "admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }}\n\
         static_resources:\n  listeners:\n{listeners}  clusters:\n{clusters}"
    );
    parse(
        &yaml,
        Format::Yaml,
        Path::new("hale.yaml"),
        &Overrides::default(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn listener(name: &str, port: u16, prefix: &str, cluster: &str) -> String {
    format!(
        "  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: all
              domains: [\"*\"]
              routes:
              - match: {{ prefix: \"{prefix}\" }}
                route: {{ cluster: {cluster} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"
    )
}

fn cluster(name: &str, ports: &[u16]) -> String {
    let endpoints: String = ports
        .iter()
        .map(|p| {
            format!(
                "        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {p} }} }} }}\n"
            )
        })
        .collect();
    format!(
        "  - name: {name}
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
{endpoints}"
    )
}

#[test]
fn the_same_file_is_no_change() {
    let a = bootstrap(
        9901,
        &listener("main", 8080, "/", "a"),
        &cluster("a", &[1001]),
    );
    let b = bootstrap(
        9901,
        &listener("main", 8080, "/", "a"),
        &cluster("a", &[1001]),
    );
    let d = diff(&a, &b);
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(d.clusters.unchanged, vec!["a"]);
    assert_eq!(d.summary(), "nothing");
}

#[test]
fn routes_endpoints_and_listeners_are_told_apart() {
    let a = bootstrap(
        9901,
        &(listener("main", 8080, "/", "a") + &listener("old", 8081, "/", "a")),
        &(cluster("a", &[1001]) + &cluster("b", &[1002]) + &cluster("gone", &[1003])),
    );
    let b = bootstrap(
        9901,
        &(listener("main", 8080, "/v2", "b") + &listener("new", 8082, "/", "a")),
        &(cluster("a", &[1001]) + &cluster("b", &[1002, 1004]) + &cluster("c", &[1005])),
    );
    let d = diff(&a, &b);
    assert_eq!(d.listeners.added, vec!["new"]);
    assert_eq!(d.listeners.changed, vec!["main"]);
    assert_eq!(d.listeners.removed, vec!["old"]);
    assert_eq!(d.routes_changed, vec!["main"]);
    assert!(d.filters_changed.is_empty());
    assert_eq!(d.clusters.added, vec!["c"]);
    assert_eq!(d.clusters.changed, vec!["b"]);
    assert_eq!(d.clusters.removed, vec!["gone"]);
    assert_eq!(d.clusters.unchanged, vec!["a"]);
    assert!(d.fixed.is_empty());
    assert!(!d.is_empty());
    assert!(
        d.summary().contains("clusters changed: b"),
        "{}",
        d.summary()
    );
}

#[test]
fn what_needs_a_restart_is_named_by_its_path() {
    let a = bootstrap(
        9901,
        &listener("main", 8080, "/", "a"),
        &cluster("a", &[1001]),
    );
    let b = bootstrap(
        9902,
        &listener("main", 8090, "/", "a"),
        &cluster("a", &[1001]),
    );
    let d = diff(&a, &b);
    let paths: Vec<&str> = d.fixed.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["admin.address", "static_resources.listeners[0].address"]
    );
    assert!(
        d.fixed[0]
            .message
            .contains("127.0.0.1:9901 → 127.0.0.1:9902")
    );
    assert!(d.fixed[1].message.contains("\"main\""));
}

#[test]
fn json_values_compare_as_equal_whatever_the_key_order() {
    let a: Value = serde_json::json!({"name": "c", "lb": {"x": 1, "y": [1, {"p": 2, "q": 3}]}});
    let reordered: Value =
        serde_json::json!({"lb": {"y": [1, {"q": 3, "p": 2}], "x": 1}, "name": "c"});
    let changed: Value =
        serde_json::json!({"name": "c", "lb": {"x": 1, "y": [1, {"p": 2, "q": 4}]}});
    let longer: Value =
        serde_json::json!({"name": "c", "lb": {"x": 1, "y": [1, {"p": 2, "q": 3}, 5]}});
    assert!(same_json(&a, &a.clone()));
    assert!(same_json(&a, &reordered));
    assert!(!same_json(&a, &changed));
    assert!(!same_json(&a, &longer));
    assert!(!same_json(&serde_json::json!(1), &serde_json::json!(1.0)));
    for (x, y) in [(&a, &reordered), (&a, &changed), (&a, &longer)] {
        assert_eq!(same_json(x, y), x == y);
    }
}
