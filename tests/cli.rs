//! The `hale` binary: flags, `--mode validate`, the quickstart config,
//! SIGTERM with a request in flight, `/quitquitquit`, and memory staying
//! bounded while a large body streams through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;
use support::upstream::{Behaviour, Upload, Upstream};
use support::{DEADLINE, bootstrap, cluster, eventually, get, scratch_path};

const HALE: &str = env!("CARGO_BIN_EXE_hale");

/// A hale process; killed if the test ends without stopping it.
struct Proc {
    child: Child,
    admin: String,
    stderr_path: std::path::PathBuf,
    config: std::path::PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    async fn start(yaml: &str, extra: &[&str]) -> Self {
        let config = scratch_path("config.yaml");
        std::fs::write(&config, yaml).unwrap();
        let admin_file = scratch_path("admin-address");
        let stderr_path = scratch_path("stderr");
        let child = Command::new(HALE)
            .arg("-c")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args(["--concurrency", "1", "--log-level", "info"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let mut proc = Self {
            child,
            admin: String::new(),
            stderr_path,
            config,
        };
        let admin = eventually("the admin address file", || {
            let text = std::fs::read_to_string(&admin_file).ok();
            async move { text.filter(|t| !t.is_empty()) }
        })
        .await;
        proc.admin = format!("http://{admin}");
        proc
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn listener_url(&self) -> String {
        let text = get(&format!("{}/listeners", self.admin), &[]).await.body;
        let addr = text
            .lines()
            .next()
            .unwrap()
            .split("::")
            .nth(1)
            .unwrap()
            .to_string();
        format!("http://{addr}")
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    async fn exit_code(&mut self) -> i32 {
        let start = tokio::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                start.elapsed() < DEADLINE,
                "hale did not exit; stderr:\n{}",
                std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap())
            .unwrap()
    }
}

/// Routes for [`bootstrap`]: everything to `target` (a cluster name, with
/// any more `route` fields after it).
fn all_to(target: &str) -> String {
    format!(
        "            - name: all
              domains: [\"*\"]
              routes:
              - match: {{ prefix: \"/\" }}
                route: {{ cluster: {target} }}
"
    )
}

fn quickstart() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/quickstart.yaml"))
        .unwrap()
}

#[test]
fn version_and_help() {
    let out = Command::new(HALE).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = Command::new(HALE).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config-path",
        "--mode",
        "--concurrency",
        "--log-level",
        "--drain-time-s",
        "--drain-settle-s",
        "--admin-address-path",
        "--service-cluster",
        "--service-node",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

#[test]
fn validate_accepts_the_quickstart() {
    let out = Command::new(HALE)
        .args(["--mode", "validate", "-c"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/quickstart.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn validate_prints_every_error_and_exits_1() {
    let path = scratch_path("bad.yaml");
    std::fs::write(
        &path,
        r#"
static_resources:
  clusters:
  - name: a
    connect_timeout: 5ms
    load_assignment:
      cluster_name: a
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: 70000 }
  - name: a
    bogus_field: 1
"#,
    )
    .unwrap();
    let out = Command::new(HALE)
        .args(["--mode", "validate", "--config-path"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    for fragment in [
        "static_resources.clusters[0].connect_timeout",
        "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value",
        "static_resources.clusters[1].bogus_field",
    ] {
        assert!(
            err.contains(&format!("{file}: {fragment}")),
            "{fragment} missing in:\n{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_serves_hale_and_a_clear_503_without_an_app() {
    // The quickstart's fixed ports, moved to 0 so tests never collide.
    let app_port = support::refused();
    let yaml = quickstart()
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 9901", "port_value: 0")
        .replace(
            "port_value: 8080",
            &format!("port_value: {}", app_port.addr.port()),
        );
    let mut hale = Proc::start(&yaml, &["--drain-settle-s", "0"]).await;
    let url = hale.listener_url().await;
    let up = get(&format!("{url}/hale"), &[]).await;
    assert_eq!(up.status, 200);
    assert!(up.body.contains("hale"), "{}", up.body);
    let no_app = get(&format!("{url}/"), &[]).await;
    assert_eq!(no_app.status, 503);
    assert!(
        no_app.body.contains("upstream connect error"),
        "{}",
        no_app.body
    );
    hale.signal("-TERM");
    assert_eq!(hale.exit_code().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let slow = Upstream::start("slow", Behaviour::Slow(Duration::from_millis(1500))).await;
    let routes = &all_to("slow");
    let mut hale = Proc::start(
        &bootstrap(
            routes,
            &cluster("slow", "ROUND_ROBIN", &[(slow.addr, 1, 0)], ""),
        ),
        &["--drain-time-s", "30"],
    )
    .await;
    let url = hale.listener_url().await;
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move { get(&format!("{url}/work"), &[]).await }
    });
    eventually("the request to reach the upstream", || async {
        (slow.in_flight() == 1).then_some(())
    })
    .await;
    hale.signal("-TERM");
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(hale.exit_code().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_steady_load_fails_no_request_sent_before_it() {
    let app = Upstream::start("app", Behaviour::Slow(Duration::from_millis(20))).await;
    let routes = &all_to("app");
    let mut hale = Proc::start(
        &bootstrap(
            routes,
            &cluster("app", "ROUND_ROBIN", &[(app.addr, 1, 0)], ""),
        ),
        &["--drain-time-s", "5", "--drain-settle-s", "1"],
    )
    .await;
    let url = hale.listener_url().await;
    let started = tokio::time::Instant::now();
    // (sent at, status or 0 for a failed request), from 4 keep-alive loops.
    let results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (url, results, stop) = (url.clone(), Arc::clone(&results), stop.clone());
        loops.push(tokio::spawn(async move {
            let client = support::h1_client();
            while !stop.is_cancelled() {
                let sent = started.elapsed();
                let req = Request::get(format!("{url}/load"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                let status = match tokio::time::timeout(DEADLINE, client.request(req)).await {
                    Ok(Ok(resp)) => {
                        let status = resp.status().as_u16();
                        match resp.into_body().collect().await {
                            Ok(_) => status,
                            Err(_) => 0,
                        }
                    }
                    _ => 0,
                };
                results.lock().unwrap().push((sent, status));
                if status == 0 {
                    // Refused after the listeners closed: back off a little.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    eventually("steady load", || async {
        (results.lock().unwrap().len() >= 40).then_some(())
    })
    .await;
    let sigterm_at = started.elapsed();
    hale.signal("-TERM");
    let code = hale.exit_code().await;
    let exited_after = started.elapsed() - sigterm_at;
    stop.cancel();
    for l in loops {
        l.await.unwrap();
    }
    assert_eq!(code, 0);
    assert!(
        exited_after < Duration::from_secs(5 + 3),
        "exit {exited_after:?} after SIGTERM, drain time 5 s"
    );
    let results = results.lock().unwrap();
    let before: Vec<_> = results
        .iter()
        .filter(|(sent, _)| *sent < sigterm_at)
        .collect();
    assert!(before.len() >= 40);
    assert!(
        before.iter().all(|(_, status)| *status == 200),
        "a request sent before SIGTERM failed: {:?}",
        before.iter().filter(|(_, s)| *s != 200).collect::<Vec<_>>()
    );
    // The listeners keep serving during the settle time (1 s): requests
    // sent in its first half all succeed, on connections hale closes after
    // each response so none is cut when it stops accepting.
    let settle = sigterm_at..sigterm_at + Duration::from_millis(500);
    let settling: Vec<_> = results
        .iter()
        .filter(|(sent, _)| settle.contains(sent))
        .collect();
    assert!(
        !settling.is_empty(),
        "no request sent during the settle time"
    );
    assert!(
        settling.iter().all(|(_, status)| *status == 200),
        "a request sent during the settle time failed: {settling:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_ends_the_drain_at_once() {
    // A request that would hold the drain for a minute.
    let stuck = Upstream::start("stuck", Behaviour::Hang).await;
    let routes = &all_to("stuck, timeout: 120s");
    let mut hale = Proc::start(
        &bootstrap(
            routes,
            &cluster("stuck", "ROUND_ROBIN", &[(stuck.addr, 1, 0)], ""),
        ),
        &["--drain-time-s", "60", "--drain-settle-s", "0"],
    )
    .await;
    let url = hale.listener_url().await;
    let in_flight = tokio::spawn(async move { get(&format!("{url}/work"), &[]).await });
    eventually("the request to reach the upstream", || async {
        (stuck.in_flight() == 1).then_some(())
    })
    .await;
    hale.signal("-TERM");
    // Draining: the request holds the drain open, hale has not exited.
    eventually("the drain to start", || async {
        let ready = get(&format!("{}/ready", hale.admin), &[]).await;
        (ready.status == 503).then_some(())
    })
    .await;
    assert!(
        hale.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    hale.signal("-TERM");
    // Well before the 60 s drain time (exit_code waits at most DEADLINE).
    assert_eq!(hale.exit_code().await, 0);
    in_flight.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_says_initializing_until_every_host_had_its_first_check() {
    let app = Upstream::start("app", Behaviour::Echo).await;
    app.health
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let routes = &all_to("app");
    let checks = "    health_checks:
    - timeout: 30s
      interval: 0.05s
      no_traffic_interval: 0.05s
      unhealthy_threshold: 1
      healthy_threshold: 1
      http_health_check: { path: /healthz }
";
    let mut hale = Proc::start(
        &bootstrap(
            routes,
            &cluster("app", "ROUND_ROBIN", &[(app.addr, 1, 0)], checks),
        ),
        &[],
    )
    .await;
    // The first check cannot finish while the upstream holds it.
    eventually("the first check to be in flight", || async {
        (app.health.checks.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    let ready = get(&format!("{}/ready", hale.admin), &[]).await;
    assert_eq!((ready.status, ready.body.as_str()), (503, "INITIALIZING\n"));
    let info = get(&format!("{}/server_info", hale.admin), &[]).await.body;
    assert!(info.contains("\"state\": \"INITIALIZING\""), "{info}");

    app.health
        .hang
        .store(false, std::sync::atomic::Ordering::SeqCst);
    eventually("LIVE", || async {
        let ready = get(&format!("{}/ready", hale.admin), &[]).await;
        (ready.status == 200 && ready.body == "LIVE\n").then_some(())
    })
    .await;
    let url = hale.listener_url().await;
    assert_eq!(get(&format!("{url}/x"), &[]).await.status, 200);
    hale.signal("-TERM");
    assert_eq!(hale.exit_code().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitquitquit_exits_0() {
    let mut hale = Proc::start(&quickstart_on_port_zero(), &[]).await;
    let req = Request::post(format!("{}/quitquitquit", hale.admin))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(support::send(&support::h1_client(), req).await.status, 200);
    assert_eq!(hale.exit_code().await, 0);
}

fn quickstart_on_port_zero() -> String {
    quickstart()
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 9901", "port_value: 0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_with_bounded_memory() {
    const GIB: u64 = 1 << 30;
    let download = Upstream::start("download", Behaviour::Stream(GIB)).await;
    let upload = Upstream::start("upload", Behaviour::Sink).await;
    let routes = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/down" }
                route: { cluster: download, timeout: 0s }
              - match: { prefix: "/up" }
                route: { cluster: upload, timeout: 0s }
"#;
    let clusters = format!(
        "{}{}",
        cluster("download", "ROUND_ROBIN", &[(download.addr, 1, 0)], ""),
        cluster("upload", "ROUND_ROBIN", &[(upload.addr, 1, 0)], ""),
    );
    let hale = Proc::start(&bootstrap(routes, &clusters), &[]).await;
    let url = hale.listener_url().await;
    let baseline = hale.peak_rss_kib();

    // Download 1 GiB, reading it as it comes.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let resp = client
        .request(
            Request::get(format!("{url}/down"))
                .body(http_body_util::Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.unwrap().data_ref() {
            received += d.len() as u64;
        }
    }
    assert_eq!(received, GIB);

    // Upload 1 GiB, generated as it is sent.
    let sent = Arc::new(AtomicU64::new(0));
    let up_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Upload>();
    let resp = up_client
        .request(
            Request::post(format!("{url}/up"))
                .body(Upload {
                    left: GIB,
                    sent: sent.clone(),
                })
                .unwrap(),
        )
        .await
        .unwrap();
    let counted = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&counted), GIB.to_string());

    let peak = hale.peak_rss_kib();
    // Peak resident memory may grow by buffers, never by the bodies.
    assert!(
        peak < baseline + 64 * 1024,
        "peak RSS grew from {baseline} KiB to {peak} KiB while streaming 2 GiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file_in_the_same_process() {
    let a = Upstream::start("a", Behaviour::Echo).await;
    let b = Upstream::start("b", Behaviour::Echo).await;
    let clusters = cluster("a", "ROUND_ROBIN", &[(a.addr, 1, 0)], "")
        + &cluster("b", "ROUND_ROBIN", &[(b.addr, 1, 0)], "");
    // Only the signal reloads: the file watch is off.
    let mut hale = Proc::start(&bootstrap(&all_to("a"), &clusters), &["--no-watch-config"]).await;
    let pid = hale.pid();
    let url = hale.listener_url().await;
    assert_eq!(
        get(&format!("{url}/x"), &[]).await.header("x-upstream"),
        Some("a")
    );

    std::fs::write(&hale.config, bootstrap(&all_to("b"), &clusters)).unwrap();
    hale.signal("-HUP");
    eventually("the reloaded route", || {
        let url = url.clone();
        async move {
            let reply = get(&format!("{url}/x"), &[]).await;
            (reply.header("x-upstream") == Some("b")).then_some(())
        }
    })
    .await;
    assert!(hale.child.try_wait().unwrap().is_none(), "hale exited");
    assert_eq!(hale.pid(), pid);
    let stats = get(&format!("{}/stats?filter=server.reload", hale.admin), &[])
        .await
        .body;
    assert!(stats.contains("server.reload.success: 1"), "{stats}");
    let stderr = std::fs::read_to_string(&hale.stderr_path).unwrap();
    assert!(
        stderr.contains("SIGHUP"),
        "the log names the trigger:\n{stderr}"
    );
    hale.signal("-TERM");
    assert_eq!(hale.exit_code().await, 0);
}
