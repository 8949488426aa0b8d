//! What a reload adds, changes and removes, and what it may not change.
//!
//! Owns: comparing two validated bootstraps by the documents they were read
//! from (a listener or cluster is unchanged when its part of the file is
//! the same JSON value), and the list of changes hale cannot apply while
//! running, each with the field path an operator must look at.
//! Must not touch: building or swapping anything (the reload path does).

use std::collections::HashMap;

use serde_json::Value;

use super::model::Bootstrap;

/// Names added, changed and removed, in file order (removed: the old file's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// In the new file only.
    pub added: Vec<String>,
    /// In both, with a different definition.
    pub changed: Vec<String>,
    /// In the old file only.
    pub removed: Vec<String>,
    /// In both, the same.
    pub unchanged: Vec<String>,
}

impl Changes {
    /// Whether nothing was added, changed or removed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }

    fn between<'a>(old: &[(&'a str, &'a Value)], new: &[(&'a str, &'a Value)]) -> Self {
        // By name: a file of thousands of clusters is compared in one pass.
        let before: HashMap<&str, &Value> = old.iter().copied().collect();
        let after: HashMap<&str, &Value> = new.iter().copied().collect();
        let mut changes = Self::default();
        for (name, value) in new {
            match before.get(name) {
                None => changes.added.push((*name).to_string()),
                Some(was) if !same_json(was, value) => changes.changed.push((*name).to_string()),
                Some(_) => changes.unchanged.push((*name).to_string()),
            }
        }
        for (name, _) in old {
            if !after.contains_key(name) {
                changes.removed.push((*name).to_string());
            }
        }
        changes
    }
}

/// A change hale cannot apply without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixed {
    /// Where, as a path into the new file (`admin.address`).
    pub path: String,
    /// What changed and why it needs a restart.
    pub message: String,
}

/// How a new bootstrap differs from the running one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// `static_resources.listeners`, by name.
    pub listeners: Changes,
    /// `static_resources.clusters`, by name.
    pub clusters: Changes,
    /// Changed listeners whose routes changed (a subset of `listeners.changed`).
    pub routes_changed: Vec<String>,
    /// Changed listeners whose `http_filters` changed.
    pub filters_changed: Vec<String>,
    /// The probe server's policy (`hale.health_server`) changed.
    pub probe_policy_changed: bool,
    /// `node` changed.
    pub node_changed: bool,
    /// Changes that need a restart: any of them rejects the whole reload.
    pub fixed: Vec<Fixed>,
}

impl Diff {
    /// Whether the new file means the same as the running one.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
            && self.clusters.is_empty()
            && !self.probe_policy_changed
            && !self.node_changed
            && self.fixed.is_empty()
    }

    /// One line for logs and the admin: what the reload does.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (what, c) in [("listeners", &self.listeners), ("clusters", &self.clusters)] {
            for (verb, names) in [
                ("added", &c.added),
                ("changed", &c.changed),
                ("removed", &c.removed),
            ] {
                if !names.is_empty() {
                    parts.push(format!("{what} {verb}: {}", names.join(", ")));
                }
            }
        }
        if !self.routes_changed.is_empty() {
            parts.push(format!("routes of: {}", self.routes_changed.join(", ")));
        }
        if !self.filters_changed.is_empty() {
            parts.push(format!(
                "http_filters of: {}",
                self.filters_changed.join(", ")
            ));
        }
        if self.probe_policy_changed {
            parts.push("probe server policy".to_string());
        }
        if self.node_changed {
            parts.push("node".to_string());
        }
        if parts.is_empty() {
            "nothing".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// `a == b`, faster for the common case of the same keys in the same
/// order: `serde_json`'s map equality looks every key up by hash, and a
/// reload compares every cluster of the file.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && (x
                    .iter()
                    .zip(y.iter())
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_json(vx, vy))
                    || x == y)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(vx, vy)| same_json(vx, vy))
        }
        _ => a == b,
    }
}

/// How `new` differs from `old`.
pub fn diff(old: &Bootstrap, new: &Bootstrap) -> Diff {
    let old_listeners = named(&old.raw, "listeners");
    let new_listeners = named(&new.raw, "listeners");
    let listeners = Changes::between(&old_listeners, &new_listeners);
    let clusters = Changes::between(&named(&old.raw, "clusters"), &named(&new.raw, "clusters"));
    fn part<'a>(list: &[(&str, &'a Value)], name: &str, pointer: &str) -> Option<&'a Value> {
        list.iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| http_manager(v))
            .and_then(|hcm| hcm.pointer(pointer))
    }
    let same_part = |name: &str, pointer: &str| match (
        part(&old_listeners, name, pointer),
        part(&new_listeners, name, pointer),
    ) {
        (Some(a), Some(b)) => same_json(a, b),
        (a, b) => a.is_none() && b.is_none(),
    };
    let mut routes_changed = Vec::new();
    let mut filters_changed = Vec::new();
    for name in &listeners.changed {
        if !same_part(name, "/route_config") {
            routes_changed.push(name.clone());
        }
        if !same_part(name, "/http_filters") {
            filters_changed.push(name.clone());
        }
    }

    let mut fixed = Vec::new();
    if old.admin != new.admin {
        let describe = |a: &Option<super::model::Admin>| {
            a.as_ref()
                .map_or_else(|| "none".to_string(), |a| a.address.to_string())
        };
        fixed.push(Fixed {
            path: "admin.address".to_string(),
            message: format!(
                "the admin address cannot change while hale runs ({} → {}); restart hale to apply it",
                describe(&old.admin),
                describe(&new.admin)
            ),
        });
    }
    for (index, listener) in new.listeners.iter().enumerate() {
        if let Some(before) = old.listeners.iter().find(|l| l.name == listener.name)
            && before.address != listener.address
        {
            // Envoy's LDS refuses this too: a listener keeps its address for
            // life; a new address is a new listener under a new name.
            fixed.push(Fixed {
                path: format!("static_resources.listeners[{index}].address"),
                message: format!(
                    "listener \"{}\" cannot move from {} to {} while hale runs; give the new \
                     address a new listener name (the old one drains), or restart hale",
                    listener.name, before.address, listener.address
                ),
            });
        }
    }
    let old_probe_address = old.health_server.as_ref().map(|p| p.address);
    let new_probe_address = new.health_server.as_ref().map(|p| p.address);
    if old_probe_address != new_probe_address {
        let describe = |a: Option<std::net::SocketAddr>| {
            a.map_or_else(|| "none".to_string(), |a| a.to_string())
        };
        fixed.push(Fixed {
            path: "bootstrap_extensions[hale.health_server].address".to_string(),
            message: format!(
                "the probe server cannot be added, removed or moved while hale runs ({} → {}); \
                 restart hale to apply it",
                describe(old_probe_address),
                describe(new_probe_address)
            ),
        });
    }
    let probe_policy_changed = old.raw.get("bootstrap_extensions")
        != new.raw.get("bootstrap_extensions")
        && old_probe_address == new_probe_address;

    Diff {
        listeners,
        clusters,
        routes_changed,
        filters_changed,
        probe_policy_changed,
        node_changed: old.node != new.node,
        fixed,
    }
}

/// `static_resources.<list>` as (name, definition) pairs, in file order.
fn named<'a>(raw: &'a Value, list: &str) -> Vec<(&'a str, &'a Value)> {
    raw.get("static_resources")
        .and_then(|r| r.get(list))
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|v| Some((v.get("name")?.as_str()?, v)))
                .collect()
        })
        .unwrap_or_default()
}

/// A listener's HTTP connection manager config, as written.
fn http_manager(listener: &Value) -> Option<&Value> {
    listener
        .get("filter_chains")?
        .as_array()?
        .iter()
        .filter_map(|chain| chain.get("filters")?.as_array())
        .flatten()
        .find_map(|f| f.get("typed_config"))
}

#[cfg(test)]
mod tests;
