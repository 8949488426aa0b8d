//! Test doubles and helpers on real loopback sockets: upstream servers with
//! named behaviours, hale started in-process on port 0, and HTTP clients.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs
)]

pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The longest any test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A hale started in-process from YAML; stopped when dropped.
pub struct Hale {
    running: Option<hale::Running>,
}

impl Hale {
    /// Starts hale on `yaml` (an Envoy bootstrap; use port 0 everywhere).
    pub fn start(yaml: &str) -> Self {
        Self::start_with_workers(yaml, 2)
    }

    /// [`Hale::start`] with `workers` data-path workers.
    pub fn start_with_workers(yaml: &str, workers: usize) -> Self {
        Self::start_with_settle(yaml, workers, Duration::ZERO)
    }

    /// [`Hale::start`] whose drain first settles for `settle` (listeners
    /// keep accepting while readiness fails).
    pub fn start_with_settle(yaml: &str, workers: usize, settle: Duration) -> Self {
        let bootstrap = hale::config::parse(
            yaml,
            hale::config::Format::Yaml,
            Path::new("test.yaml"),
            &hale::config::Overrides::default(),
        )
        .unwrap_or_else(|e| panic!("test config rejected:\n{e}"));
        let mut options = hale::Options::new("test.yaml");
        options.concurrency = workers;
        // Held in memory: there is no file to watch.
        options.watch_config = false;
        // The settle time is at most half the drain time.
        options.drain_time = Duration::from_secs(5).max(settle * 2);
        options.drain_settle = Some(settle);
        let running = hale::start(bootstrap, &options).expect("hale starts");
        Self {
            running: Some(running),
        }
    }

    /// Starts hale on the config file at `path` (which reloads read
    /// again), watching it for changes when `watch` is set.
    pub fn start_file(path: &Path, workers: usize, watch: bool) -> Self {
        let bootstrap = hale::config::load(path, &hale::config::Overrides::default())
            .unwrap_or_else(|e| panic!("test config rejected:\n{e}"));
        let mut options = hale::Options::new(path);
        options.concurrency = workers;
        options.watch_config = watch;
        options.drain_time = Duration::from_secs(5);
        options.drain_settle = Some(Duration::ZERO);
        let running = hale::start(bootstrap, &options).expect("hale starts");
        Self {
            running: Some(running),
        }
    }

    /// `POST /reload`: the reload's report as JSON, and the status.
    pub async fn reload(&self) -> (u16, serde_json::Value) {
        post_reload(&self.admin()).await
    }

    fn running(&self) -> &hale::Running {
        self.running.as_ref().expect("running")
    }

    /// `http://<addr>` of the listener called `name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "http://{}",
            self.running().listener(name).expect("listener")
        )
    }

    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.running().listeners[0].1
    }

    /// `http://<admin>`.
    pub fn admin(&self) -> String {
        format!("http://{}", self.running().admin.expect("admin configured"))
    }

    /// The stat store.
    pub fn stat(&self, name: &str) -> i64 {
        self.running()
            .store
            .samples()
            .into_iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.value)
    }

    /// `http://<probe server>`.
    pub fn probes(&self) -> String {
        format!(
            "http://{}",
            self.running().probes.expect("probe server configured")
        )
    }

    /// `POST <admin><path>` (the admin's mutating endpoints).
    pub async fn admin_post(&self, path: &str) -> Reply {
        post(&format!("{}{path}", self.admin())).await
    }

    /// Starts the drain (as a SIGTERM does) without waiting for it.
    pub fn begin_shutdown(&self) {
        self.running().shutdown();
    }

    /// The running hale (tests reach its heartbeat and lifecycle).
    pub fn inner(&self) -> &hale::Running {
        self.running()
    }

    /// Whether `/quitquitquit` asked hale to exit.
    pub fn quit_requested(&self) -> bool {
        self.running().quit_requested().is_cancelled()
    }

    /// Stops hale and waits for it (off the async runtime).
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            tokio::task::spawn_blocking(move || r.wait()).await.unwrap();
        }
    }
}

impl Drop for Hale {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            // Joining here could block a runtime thread; the threads end on
            // their own once drained.
            std::thread::spawn(move || r.wait());
        }
    }
}

/// An HTTP/1.1 client.
pub fn h1_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 prior-knowledge (h2c) client.
pub fn h2_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// One HTTP/1.1 connection to `addr`, for tests that count connections:
/// every request on it reaches the same hale worker.
pub async fn one_connection(
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends `req` on a single connection and reads the whole response.
pub async fn send_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Reply {
    sender.ready().await.unwrap();
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("response within the deadline")
        .expect("request succeeds");
    read_reply(resp).await
}

/// Reads a whole response.
pub async fn read_reply(resp: Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A finished response: status, headers, whole body.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `req` and reads the whole response.
pub async fn send(client: &Client<HttpConnector, Full<Bytes>>, req: Request<Full<Bytes>>) -> Reply {
    let resp: Response<hyper::body::Incoming> = tokio::time::timeout(DEADLINE, client.request(req))
        .await
        .expect("response within the deadline")
        .expect("request succeeds at the HTTP level");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// GET `url` with optional extra headers.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(&h1_client(), b.body(Full::new(Bytes::new())).unwrap()).await
}

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Routes for [`bootstrap`]: everything to cluster `backend`.
pub const ALL_TO_BACKEND: &str = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: backend }
"#;

/// The `health_flags` `/clusters` prints for `host` of `cluster`.
pub async fn flags_of(hale: &Hale, cluster: &str, host: SocketAddr) -> String {
    let text = get(&format!("{}/clusters", hale.admin()), &[]).await.body;
    let key = format!("{cluster}::{host}::health_flags::");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {key} in\n{text}"))
        .to_string()
}

/// Waits until `/clusters` prints `want` as the host's `health_flags`.
pub async fn wait_flags(hale: &Hale, cluster: &str, host: SocketAddr, want: &str) {
    eventually(&format!("{host} health_flags {want}"), || async {
        (flags_of(hale, cluster, host).await == want).then_some(())
    })
    .await;
}

/// A tonic `grpc.health.v1` server on 127.0.0.1:0 with `services` set.
pub async fn grpc_health_server(
    services: &[(&str, tonic_health::ServingStatus)],
) -> (SocketAddr, tonic_health::server::HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    for (name, status) in services {
        reporter.set_service_status(*name, *status).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, reporter)
}

/// `POST <url>` with an empty body.
pub async fn post(url: &str) -> Reply {
    let req = Request::post(url).body(Full::new(Bytes::new())).unwrap();
    send(&h1_client(), req).await
}

/// `POST <admin>/reload`: the status and the reload's report as JSON
/// (tasks that cannot borrow a [`Hale`] call this with its admin URL).
pub async fn post_reload(admin: &str) -> (u16, serde_json::Value) {
    let reply = post(&format!("{admin}/reload")).await;
    let report = serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("/reload answered {}: {e}: {:?}", reply.status, reply.body));
    (reply.status, report)
}

/// A unique scratch file path under the system temp dir.
pub fn scratch_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("hale-test-{}-{n}-{name}", std::process::id()))
}

/// An address that refuses connections for as long as the guard lives: a
/// socket bound but never listening keeps the port from being handed to
/// another test's listener (a closed port could be, and then accept).
pub struct Refused {
    pub addr: SocketAddr,
    socket: socket2::Socket,
}

impl Refused {
    /// Starts listening on the port: connections are accepted from now on.
    pub fn listen(self) -> tokio::net::TcpListener {
        self.socket.listen(128).unwrap();
        self.socket.set_nonblocking(true).unwrap();
        tokio::net::TcpListener::from_std(self.socket.into()).unwrap()
    }
}

pub fn refused() -> Refused {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    Refused { addr, socket }
}

/// YAML for one listener (`listener_0`, port 0, stat prefix `ingress`) whose
/// route config is `routes_yaml` (the `virtual_hosts` list, indented by 10),
/// plus `clusters_yaml` (the `clusters` list, indented by 2), with an admin.
pub fn bootstrap(virtual_hosts: &str, clusters: &str) -> String {
    bootstrap_with("", virtual_hosts, clusters)
}

/// [`bootstrap`] with extra connection manager fields (`hcm`, indented by 10).
pub fn bootstrap_with(hcm: &str, virtual_hosts: &str, clusters: &str) -> String {
    format!(
        r#"
admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: 0 }}
static_resources:
  listeners:
  - name: listener_0
    address:
      socket_address: {{ address: 127.0.0.1, port_value: 0 }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          codec_type: AUTO
{hcm}          route_config:
            name: local
            virtual_hosts:
{virtual_hosts}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters}
"#
    )
}

/// A top-level `bootstrap_extensions` entry for the probe server on port 0,
/// with `extra` HealthServer fields (indented by 6); append to a bootstrap.
pub fn probe_server(extra: &str) -> String {
    format!(
        r#"bootstrap_extensions:
- name: hale.health_server
  typed_config:
    "@type": type.googleapis.com/hale.config.health.v1.HealthServer
    address:
      socket_address: {{ address: 127.0.0.1, port_value: 0 }}
{extra}"#
    )
}

/// A cluster (indented for [`bootstrap`]) with the given endpoints
/// (`(addr, weight, priority)`), policy and extra YAML lines (indented by 4).
pub fn cluster(
    name: &str,
    policy: &str,
    endpoints: &[(SocketAddr, u32, u32)],
    extra: &str,
) -> String {
    let mut by_priority: std::collections::BTreeMap<u32, Vec<(SocketAddr, u32)>> =
        std::collections::BTreeMap::new();
    for (addr, weight, priority) in endpoints {
        by_priority
            .entry(*priority)
            .or_default()
            .push((*addr, *weight));
    }
    let mut eps = String::new();
    for (priority, list) in by_priority {
        eps.push_str(&format!(
            "      - priority: {priority}\n        lb_endpoints:\n"
        ));
        for (addr, weight) in list {
            eps.push_str(&format!(
                "        - endpoint:\n            address:\n              socket_address: {{ address: {}, port_value: {} }}\n          load_balancing_weight: {weight}\n",
                addr.ip(),
                addr.port()
            ));
        }
    }
    format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    lb_policy: {policy}\n{extra}    load_assignment:\n      cluster_name: {name}\n      endpoints:\n{eps}"
    )
}
