//! Counters and gauges under Envoy's stat names, and their renderings.
//!
//! Owns: the stat store (name → atomic cell), the handles the data path bumps
//! (`Counter`, `Gauge`, `StatusCounters`), and the text, JSON and Prometheus
//! renderings the admin serves.
//! Must not touch: any other room. Registration takes a lock; bumping a handle
//! never does (one relaxed atomic add).
//!
//! Every stat is registered with its full Envoy name (`cluster.backend.upstream_rq_503`)
//! and, alongside, the tag-extracted form Prometheus needs
//! (`cluster.upstream_rq` with `envoy_response_code="503"`, `envoy_cluster_name="backend"`).
//! The registering code knows the tags, so no regex runs over names (Envoy's
//! regex extraction breaks on cluster names with dots; ours does not).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A monotonically increasing count.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one.
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Adds `delta` (which may be negative).
    #[inline]
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }

    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// The current value.
    pub fn value(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One Prometheus label: (sanitised tag name, value).
pub type Tag = (&'static str, String);

#[derive(Debug, Clone)]
enum Cell {
    Counter(Counter),
    Gauge(Gauge),
}

impl Cell {
    /// The current value, and whether it is a counter.
    fn read(&self) -> (i64, bool) {
        match self {
            Cell::Counter(c) => (i64::try_from(c.value()).unwrap_or(i64::MAX), true),
            Cell::Gauge(g) => (g.value(), false),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    cell: Cell,
    /// The tag-extracted name (`cluster.upstream_rq_total`).
    extracted: String,
    tags: Vec<Tag>,
}

/// One stat's value as read for rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Full Envoy name.
    pub name: String,
    /// Counter or gauge value (gauges may be negative only transiently).
    pub value: i64,
    /// True for counters.
    pub is_counter: bool,
}

/// The registry of every stat. Registration locks; reading handles does not.
#[derive(Debug, Default)]
pub struct Store {
    // Written by registration (startup, first use of a status code), read by
    // the admin renderers. Never touched per request once a handle exists.
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl Store {
    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn register(&self, name: String, extracted: String, tags: Vec<Tag>, make: Cell) -> Cell {
        let mut entries = match self.entries.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries
            .entry(name)
            .or_insert(Entry {
                cell: make,
                extracted,
                tags,
            })
            .cell
            .clone()
    }

    /// The counter called `name`, created on first use; no tags.
    pub fn counter(&self, name: &str) -> Counter {
        self.counter_tagged(name.to_string(), name.to_string(), Vec::new())
    }

    /// The gauge called `name`, created on first use; no tags.
    pub fn gauge(&self, name: &str) -> Gauge {
        self.gauge_tagged(name.to_string(), name.to_string(), Vec::new())
    }

    /// A counter with its tag-extracted name and tags.
    pub fn counter_tagged(&self, name: String, extracted: String, tags: Vec<Tag>) -> Counter {
        match self.register(name, extracted, tags, Cell::Counter(Counter::default())) {
            Cell::Counter(c) => c,
            // The name was registered as a gauge: hand out a detached counter
            // rather than fail; names are fixed in code, so this is a bug
            // that shows as a missing stat, not a crash.
            Cell::Gauge(_) => Counter::default(),
        }
    }

    /// A gauge with its tag-extracted name and tags.
    pub fn gauge_tagged(&self, name: String, extracted: String, tags: Vec<Tag>) -> Gauge {
        match self.register(name, extracted, tags, Cell::Gauge(Gauge::default())) {
            Cell::Gauge(g) => g,
            Cell::Counter(_) => Gauge::default(),
        }
    }

    /// Drops every stat tagged `tag` = `value` whose tag-extracted name
    /// starts with `extracted` ("" for all): a removed cluster's stats by
    /// its `envoy_cluster_name` (a name prefix would also match cluster
    /// `a.b` when `a` goes), or the `cluster.health_check.` ones of a
    /// cluster that no longer has checks.
    pub fn remove_tagged(&self, tag: &str, value: &str, extracted: &str) {
        let mut entries = match self.entries.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries.retain(|_, e| {
            !(e.extracted.starts_with(extracted)
                && e.tags.iter().any(|(k, v)| *k == tag && v == value))
        });
    }

    fn read(&self) -> Vec<(String, Entry)> {
        let entries = match self.entries.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Every stat, sorted by name.
    pub fn samples(&self) -> Vec<Sample> {
        self.read()
            .into_iter()
            .map(|(name, e)| {
                let (value, is_counter) = e.cell.read();
                Sample {
                    name,
                    value,
                    is_counter,
                }
            })
            .collect()
    }

    /// Envoy's `/stats` text: `name: value` lines sorted by name.
    /// `filter` keeps names it matches anywhere; `used_only` drops zeros.
    pub fn render_text(&self, filter: Option<&regex::Regex>, used_only: bool) -> String {
        let mut out = String::new();
        for s in self.samples() {
            if !keep(&s, filter, used_only) {
                continue;
            }
            let _ = writeln!(out, "{}: {}", s.name, s.value);
        }
        out
    }

    /// Envoy's `/stats?format=json`: `{"stats":[{"name":..,"value":..}]}`.
    pub fn render_json(&self, filter: Option<&regex::Regex>, used_only: bool) -> serde_json::Value {
        let stats: Vec<serde_json::Value> = self
            .samples()
            .into_iter()
            .filter(|s| keep(s, filter, used_only))
            .map(|s| serde_json::json!({ "name": s.name, "value": s.value }))
            .collect();
        serde_json::json!({ "stats": stats })
    }

    /// Envoy's `/stats/prometheus`: exposition format 0.0.4, names prefixed
    /// `envoy_` and sanitised, tags as labels, one `# TYPE` per metric family.
    pub fn render_prometheus(&self, filter: Option<&regex::Regex>, used_only: bool) -> String {
        // family name -> (is_counter, lines)
        let mut families: BTreeMap<String, (bool, Vec<String>)> = BTreeMap::new();
        for (name, e) in self.read() {
            let (value, is_counter) = e.cell.read();
            let sample = Sample {
                name,
                value,
                is_counter,
            };
            if !keep(&sample, filter, used_only) {
                continue;
            }
            let family = prometheus_name(&e.extracted);
            let mut line = family.clone();
            if !e.tags.is_empty() {
                line.push('{');
                for (i, (k, v)) in e.tags.iter().enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    let _ = write!(line, "{k}=\"{}\"", escape_label(v));
                }
                line.push('}');
            }
            let _ = write!(line, " {value}");
            families
                .entry(family)
                .or_insert_with(|| (is_counter, Vec::new()))
                .1
                .push(line);
        }
        let mut out = String::new();
        for (family, (is_counter, lines)) in families {
            let kind = if is_counter { "counter" } else { "gauge" };
            let _ = writeln!(out, "# TYPE {family} {kind}");
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        }
        out
    }
}

fn keep(s: &Sample, filter: Option<&regex::Regex>, used_only: bool) -> bool {
    if used_only && s.value == 0 {
        return false;
    }
    filter.is_none_or(|re| re.is_match(&s.name))
}

/// Envoy's Prometheus name: `envoy_` + the extracted name with every
/// character outside `[a-zA-Z0-9_]` turned into `_`.
pub fn prometheus_name(extracted: &str) -> String {
    let mut out = String::with_capacity(extracted.len() + 6);
    out.push_str("envoy_");
    for ch in extracted.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            out.push(ch);
        } else {
            out.push('_');
        }
    }
    out
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A naming scope: `cluster.backend.` with tag `envoy_cluster_name="backend"`.
#[derive(Debug, Clone)]
pub struct Scope {
    store: Arc<Store>,
    /// Full-name prefix, with the trailing dot.
    full_prefix: String,
    /// Extracted-name prefix, with the trailing dot.
    extracted_prefix: String,
    tags: Vec<Tag>,
}

impl Scope {
    /// The root scope (names used as given, no tags).
    pub fn root(store: Arc<Store>) -> Self {
        Self {
            store,
            full_prefix: String::new(),
            extracted_prefix: String::new(),
            tags: Vec::new(),
        }
    }

    /// A scope for `<kind>.<name>.` whose name becomes the tag `tag_name`,
    /// e.g. `scoped("cluster", "backend", "envoy_cluster_name")`.
    pub fn tagged(store: Arc<Store>, kind: &str, name: &str, tag_name: &'static str) -> Self {
        Self {
            store,
            full_prefix: format!("{kind}.{name}."),
            extracted_prefix: format!("{kind}."),
            tags: vec![(tag_name, name.to_string())],
        }
    }

    /// The store this scope registers in.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The full-name prefix (`cluster.backend.`).
    pub fn prefix(&self) -> &str {
        &self.full_prefix
    }

    /// A counter `<prefix><name>`.
    pub fn counter(&self, name: &str) -> Counter {
        self.store.counter_tagged(
            format!("{}{name}", self.full_prefix),
            format!("{}{name}", self.extracted_prefix),
            self.tags.clone(),
        )
    }

    /// A gauge `<prefix><name>`.
    pub fn gauge(&self, name: &str) -> Gauge {
        self.store.gauge_tagged(
            format!("{}{name}", self.full_prefix),
            format!("{}{name}", self.extracted_prefix),
            self.tags.clone(),
        )
    }

    /// A counter whose name carries one more tag, e.g. `upstream_rq_503`
    /// extracted as `upstream_rq` with `envoy_response_code="503"`.
    pub fn counter_with_tag(
        &self,
        name: &str,
        extracted: &str,
        tag: &'static str,
        value: String,
    ) -> Counter {
        let mut tags = Vec::with_capacity(self.tags.len() + 1);
        tags.push((tag, value));
        tags.extend(self.tags.iter().cloned());
        self.store.counter_tagged(
            format!("{}{name}", self.full_prefix),
            format!("{}{extracted}", self.extracted_prefix),
            tags,
        )
    }
}

/// `<base>_1xx` … `<base>_5xx` and `<base>_<code>` counters, created on first
/// use of each code (Envoy creates them lazily too).
#[derive(Debug)]
pub struct StatusCounters {
    scope: Scope,
    base: &'static str,
    classes: [Counter; 5],
    // One slot per status 100..=599; a slot is filled (under the store's
    // lock) the first time that code is seen, then read lock-free.
    codes: Box<[OnceLock<Counter>]>,
}

impl StatusCounters {
    /// Counters `<scope><base>_Nxx` (registered now) and `<scope><base>_NNN`
    /// (registered on first use).
    pub fn new(scope: &Scope, base: &'static str) -> Self {
        let class = |d: u8| {
            scope.counter_with_tag(
                &format!("{base}_{d}xx"),
                &format!("{base}_xx"),
                "envoy_response_code_class",
                d.to_string(),
            )
        };
        Self {
            scope: scope.clone(),
            base,
            classes: [class(1), class(2), class(3), class(4), class(5)],
            codes: (100..600).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Counts one response with `status`.
    #[inline]
    pub fn record(&self, status: u16) {
        if !(100..600).contains(&status) {
            return;
        }
        self.classes[usize::from(status / 100 - 1)].inc();
        let slot = &self.codes[usize::from(status - 100)];
        slot.get_or_init(|| {
            self.scope.counter_with_tag(
                &format!("{}_{status}", self.base),
                self.base,
                "envoy_response_code",
                status.to_string(),
            )
        })
        .inc();
    }

    /// The `<base>_Nxx` counter for a status class digit 1..=5.
    pub fn class(&self, digit: u8) -> Option<&Counter> {
        self.classes.get(usize::from(digit.checked_sub(1)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_clusters_stats_go_and_a_dotted_namesake_keeps_its_own() {
        let store = Store::new();
        let a = Scope::tagged(store.clone(), "cluster", "a", "envoy_cluster_name");
        let ab = Scope::tagged(store.clone(), "cluster", "a.b", "envoy_cluster_name");
        a.counter("upstream_rq_total").inc();
        ab.counter("upstream_rq_total").inc();
        store.remove_tagged("envoy_cluster_name", "a", "");
        let text = store.render_text(None, false);
        assert!(!text.contains("cluster.a.upstream_rq_total"), "{text}");
        assert!(text.contains("cluster.a.b.upstream_rq_total: 1"), "{text}");
    }

    #[test]
    fn status_counters_use_envoy_names_and_tags() {
        let store = Store::new();
        let scope = Scope::tagged(store.clone(), "cluster", "backend", "envoy_cluster_name");
        let total = scope.counter("upstream_rq_total");
        let codes = StatusCounters::new(&scope, "upstream_rq");
        total.inc();
        codes.record(503);
        codes.record(200);
        codes.record(200);

        let text = store.render_text(None, false);
        assert!(
            text.contains("cluster.backend.upstream_rq_total: 1\n"),
            "{text}"
        );
        assert!(
            text.contains("cluster.backend.upstream_rq_503: 1\n"),
            "{text}"
        );
        assert!(
            text.contains("cluster.backend.upstream_rq_5xx: 1\n"),
            "{text}"
        );
        assert!(
            text.contains("cluster.backend.upstream_rq_2xx: 2\n"),
            "{text}"
        );

        let prom = store.render_prometheus(None, false);
        assert!(
            prom.contains("# TYPE envoy_cluster_upstream_rq_total counter\n"),
            "{prom}"
        );
        assert!(
            prom.contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"backend\"} 1\n"),
            "{prom}"
        );
        assert!(
            prom.contains(
                "envoy_cluster_upstream_rq{envoy_response_code=\"503\",envoy_cluster_name=\"backend\"} 1\n"
            ),
            "{prom}"
        );
        assert!(
            prom.contains(
                "envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"2\",envoy_cluster_name=\"backend\"} 2\n"
            ),
            "{prom}"
        );
    }

    #[test]
    fn filter_and_used_only() {
        let store = Store::new();
        store.counter("server.a").inc();
        store.counter("server.b");
        let re = regex::Regex::new("a$").unwrap();
        assert_eq!(store.render_text(Some(&re), false), "server.a: 1\n");
        assert_eq!(store.render_text(None, true), "server.a: 1\n");
    }

    #[test]
    fn cluster_names_with_dots_keep_their_tag() {
        let store = Store::new();
        let scope = Scope::tagged(store.clone(), "cluster", "svc.ns", "envoy_cluster_name");
        scope.gauge("upstream_cx_active").set(3);
        let prom = store.render_prometheus(None, false);
        assert!(
            prom.contains("envoy_cluster_upstream_cx_active{envoy_cluster_name=\"svc.ns\"} 3\n"),
            "{prom}"
        );
    }
}
