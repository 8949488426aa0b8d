//! Hot reload on real sockets: new routes and endpoints take effect in the
//! same process, removed endpoints finish what they started, known-bad
//! hosts stay out, and a broken or non-reloadable file changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::upstream::{Behaviour, Upstream};
use support::{Hale, bootstrap, cluster, eventually, get, scratch_path, wait_flags};

/// Virtual hosts routing each `(prefix, cluster)` in order.
fn routes(pairs: &[(&str, &str)]) -> String {
    let mut out = String::from(
        "            - name: all\n              domains: [\"*\"]\n              routes:\n",
    );
    for (prefix, cluster) in pairs {
        out.push_str(&format!(
            "              - match: {{ prefix: \"{prefix}\" }}\n                route: {{ cluster: {cluster} }}\n"
        ));
    }
    out
}

fn endpoints(addrs: &[SocketAddr]) -> Vec<(SocketAddr, u32, u32)> {
    addrs.iter().map(|a| (*a, 1, 0)).collect()
}

/// Two echo upstreams, `a` and `b`, and a cluster of one host for each
/// (answers name their upstream in `x-upstream`).
async fn two_backends() -> (Upstream, Upstream, String) {
    let a = Upstream::start("a", Behaviour::Echo).await;
    let b = Upstream::start("b", Behaviour::Echo).await;
    let clusters = cluster("a", "ROUND_ROBIN", &endpoints(&[a.addr]), "")
        + &cluster("b", "ROUND_ROBIN", &endpoints(&[b.addr]), "");
    (a, b, clusters)
}

fn write(path: &Path, text: &str) {
    // Written aside and renamed over, as editors and tools do, so a watch
    // never reads half a file.
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

fn config_file(text: &str) -> PathBuf {
    let path = scratch_path("hale.yaml");
    write(&path, text);
    path
}

fn outcome(report: &serde_json::Value) -> &str {
    report["outcome"].as_str().unwrap_or("?")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_route_takes_effect_without_a_restart() {
    let (_a, _b, clusters) = two_backends().await;
    let path = config_file(&bootstrap(&routes(&[("/", "a")]), &clusters));
    // One worker: one connection pool per host, so reuse is visible.
    let hale = Hale::start_file(&path, 1, false);
    let url = hale.url("listener_0");
    assert_eq!(
        get(&format!("{url}/b/x"), &[]).await.header("x-upstream"),
        Some("a")
    );
    assert_eq!(hale.stat("server.config_generation"), 1);
    assert_eq!(hale.stat("cluster.a.upstream_cx_total"), 1);

    write(
        &path,
        &bootstrap(&routes(&[("/b/", "b"), ("/", "a")]), &clusters),
    );
    let (status, report) = hale.reload().await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(outcome(&report), "applied", "{report}");
    assert_eq!(report["generation"], 2);
    assert!(
        report["changes"]
            .as_str()
            .unwrap()
            .contains("routes of: listener_0"),
        "{report}"
    );
    // Same process, same listener: the new route answers at once.
    assert_eq!(
        get(&format!("{url}/b/x"), &[]).await.header("x-upstream"),
        Some("b")
    );
    assert_eq!(
        get(&format!("{url}/other"), &[]).await.header("x-upstream"),
        Some("a")
    );
    // Cluster a did not change: the same pool, the same upstream connection.
    assert_eq!(hale.stat("cluster.a.upstream_cx_total"), 1);
    assert_eq!(hale.stat("server.reload.attempt"), 1);
    assert_eq!(hale.stat("server.reload.success"), 1);
    assert_eq!(hale.stat("server.config_generation"), 2);

    // The same file again changes nothing.
    let (status, report) = hale.reload().await;
    assert_eq!((status, outcome(&report)), (200, "unchanged"), "{report}");
    assert_eq!(hale.stat("server.reload.unchanged"), 1);
    assert_eq!(hale.stat("server.config_generation"), 2);
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_endpoint_receives_traffic_and_a_removed_one_finishes_its_request() {
    let old = Upstream::start("old", Behaviour::Slow(Duration::from_millis(800))).await;
    let new = Upstream::start("new", Behaviour::Echo).await;
    let routes = routes(&[("/", "backend")]);
    let path = config_file(&bootstrap(
        &routes,
        &cluster("backend", "ROUND_ROBIN", &endpoints(&[old.addr]), ""),
    ));
    let hale = Hale::start_file(&path, 2, false);
    let url = hale.url("listener_0");

    // A request in flight on the endpoint about to be removed.
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move { get(&format!("{url}/slow"), &[]).await }
    });
    eventually("the request reaching the old endpoint", || {
        let n = old.in_flight();
        async move { (n == 1).then_some(()) }
    })
    .await;

    write(
        &path,
        &bootstrap(
            &routes,
            &cluster("backend", "ROUND_ROBIN", &endpoints(&[new.addr]), ""),
        ),
    );
    let (status, report) = hale.reload().await;
    assert_eq!((status, outcome(&report)), (200, "applied"), "{report}");
    assert!(
        report["changes"]
            .as_str()
            .unwrap()
            .contains("clusters changed: backend"),
        "{report}"
    );

    // New requests go to the added endpoint only.
    for _ in 0..10 {
        let reply = get(&format!("{url}/next"), &[]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-upstream"), Some("new"));
    }
    // The removed endpoint finishes what it started, and gets nothing new.
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-upstream"), Some("old"));
    assert_eq!(old.received(), 1);
    assert_eq!(new.received(), 10);
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_host_stays_out_of_rotation_across_a_reload() {
    let good = Upstream::start("good", Behaviour::Echo).await;
    let bad = Upstream::start("bad", Behaviour::Echo).await;
    let extra = Upstream::start("extra", Behaviour::Echo).await;
    bad.health.set_status(503);
    // Panic routing off: the added host starts failed, and with one healthy
    // host of three Envoy's panic would send to every host, the bad one too.
    let checks = "    common_lb_config: { healthy_panic_threshold: { value: 0 } }
    health_checks:
    - timeout: 1s
      interval: 0.1s
      no_traffic_interval: 0.1s
      unhealthy_threshold: 1
      healthy_threshold: 3
      http_health_check: { path: /healthz }
";
    let routes = routes(&[("/", "backend")]);
    let config = |hosts: &[SocketAddr]| {
        bootstrap(
            &routes,
            &cluster("backend", "ROUND_ROBIN", &endpoints(hosts), checks),
        )
    };
    let path = config_file(&config(&[good.addr, bad.addr]));
    let hale = Hale::start_file(&path, 2, false);
    wait_flags(&hale, "backend", bad.addr, "/failed_active_hc").await;
    let url = hale.url("listener_0");

    // The bad host now answers its checks well, but needs three passes in a
    // row; a reload that forgot it would let the first pass in.
    bad.health.set_status(200);
    let checks_before = bad.health.checks.load(std::sync::atomic::Ordering::SeqCst);
    write(&path, &config(&[good.addr, bad.addr, extra.addr]));
    let (status, report) = hale.reload().await;
    assert_eq!((status, outcome(&report)), (200, "applied"), "{report}");
    let flags = support::flags_of(&hale, "backend", bad.addr).await;
    assert!(flags.contains("failed_active_hc"), "re-warmed: {flags}");
    let sent = bad.received();
    for _ in 0..20 {
        let reply = get(&format!("{url}/x"), &[]).await;
        assert_eq!(reply.status, 200);
        if bad.health.checks.load(std::sync::atomic::Ordering::SeqCst) < checks_before + 2 {
            // Until its second pass at least, the host must get nothing.
            assert_eq!(bad.received(), sent, "a known-bad host got traffic");
        }
    }
    // It comes back by the healthy threshold, as it would have anyway.
    wait_flags(&hale, "backend", bad.addr, "healthy").await;
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_is_rejected_and_the_old_config_serves_until_it_is_fixed() {
    let (_a, _b, clusters) = two_backends().await;
    let path = config_file(&bootstrap(&routes(&[("/", "a")]), &clusters));
    let hale = Hale::start_file(&path, 2, false);
    let url = hale.url("listener_0");

    // Two errors: an unknown field, and a route to a cluster that is not there.
    let broken = bootstrap(&routes(&[("/b/", "missing"), ("/", "b")]), &clusters).replace(
        "connect_timeout: 1s",
        "connect_timeout: 1s\n    bogus_field: 1",
    );
    write(&path, &broken);
    let (status, report) = hale.reload().await;
    assert_eq!((status, outcome(&report)), (400, "rejected"), "{report}");
    let errors: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    let file = path.display().to_string();
    assert!(errors.len() >= 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.starts_with(&file)), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("bogus_field")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("missing")), "{errors:?}");
    assert_eq!(report["generation"], 1);
    // The old config keeps serving.
    assert_eq!(
        get(&format!("{url}/b/x"), &[]).await.header("x-upstream"),
        Some("a")
    );
    assert_eq!(hale.stat("server.reload.failure"), 1);
    let dump: serde_json::Value = serde_json::from_str(
        &get(&format!("{}/config_dump", hale.admin()), &[])
            .await
            .body,
    )
    .unwrap();
    assert_eq!(dump["last_reload"]["outcome"], "rejected");
    assert!(
        dump["last_reload"]["errors"]
            .to_string()
            .contains("bogus_field"),
        "{dump}"
    );

    // Fixed: applied.
    write(&path, &bootstrap(&routes(&[("/", "b")]), &clusters));
    let (status, report) = hale.reload().await;
    assert_eq!((status, outcome(&report)), (200, "applied"), "{report}");
    assert_eq!(
        get(&format!("{url}/b/x"), &[]).await.header("x-upstream"),
        Some("b")
    );
    let dump: serde_json::Value = serde_json::from_str(
        &get(&format!("{}/config_dump", hale.admin()), &[])
            .await
            .body,
    )
    .unwrap();
    assert_eq!(dump["last_reload"]["outcome"], "applied");
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_hale_cannot_apply_live_rejects_the_whole_reload() {
    let (_a, _b, clusters) = two_backends().await;
    let path = config_file(&bootstrap(&routes(&[("/", "a")]), &clusters));
    let hale = Hale::start_file(&path, 2, false);
    let url = hale.url("listener_0");
    let admin = hale.admin();
    let admin_port = admin.rsplit(':').next().unwrap().to_string();

    // A new route and a new admin address: neither is applied.
    let moved = bootstrap(&routes(&[("/", "b")]), &clusters).replacen(
        "port_value: 0",
        &format!("port_value: {}", admin_port.parse::<u16>().unwrap() + 1),
        1,
    );
    write(&path, &moved);
    let (status, report) = hale.reload().await;
    assert_eq!((status, outcome(&report)), (400, "rejected"), "{report}");
    let errors = report["errors"].to_string();
    assert!(errors.contains("admin.address"), "{errors}");
    assert!(errors.contains("restart"), "{errors}");
    assert_eq!(
        get(&format!("{url}/x"), &[]).await.header("x-upstream"),
        Some("a")
    );
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_symlink_swap_is_seen() {
    let (_a, _b, clusters) = two_backends().await;
    // Kubernetes' layout: config.yaml -> ..data/config.yaml, ..data -> ..<stamp>.
    let dir = scratch_path("configmap");
    std::fs::create_dir_all(dir.join("..2026_11_22_a")).unwrap();
    std::fs::write(
        dir.join("..2026_11_22_a/config.yaml"),
        bootstrap(&routes(&[("/", "a")]), &clusters),
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_11_22_a", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/config.yaml", dir.join("config.yaml")).unwrap();
    let hale = Hale::start_file(&dir.join("config.yaml"), 2, true);
    let url = hale.url("listener_0");
    assert_eq!(
        get(&format!("{url}/x"), &[]).await.header("x-upstream"),
        Some("a")
    );

    // The kubelet's update: a new directory, a new ..data link renamed over.
    std::fs::create_dir_all(dir.join("..2026_11_22_b")).unwrap();
    std::fs::write(
        dir.join("..2026_11_22_b/config.yaml"),
        bootstrap(&routes(&[("/", "b")]), &clusters),
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_11_22_b", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_11_22_a")).unwrap();

    eventually("the swapped config to serve", || {
        let url = url.clone();
        async move {
            let reply = get(&format!("{url}/x"), &[]).await;
            (reply.header("x-upstream") == Some("b")).then_some(())
        }
    })
    .await;
    assert_eq!(hale.stat("server.reload.success"), 1);
    hale.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_are_added_and_a_removed_one_drains() {
    let a = Upstream::start("a", Behaviour::Slow(Duration::from_millis(600))).await;
    let clusters = cluster("a", "ROUND_ROBIN", &endpoints(&[a.addr]), "");
    let one = bootstrap(&routes(&[("/", "a")]), &clusters);
    let path = config_file(&one);
    let hale = Hale::start_file(&path, 2, false);
    let first = hale.url("listener_0");

    // A second listener, named listener_1, beside the first.
    let start = one.find("  - name: listener_0").unwrap();
    let end = one.find("  clusters:").unwrap();
    let second = one[start..end]
        .replace("listener_0", "listener_1")
        .replace("stat_prefix: ingress", "stat_prefix: second");
    let two = format!("{}{second}{}", &one[..end], &one[end..]);
    write(&path, &two);
    let (status, report) = hale.reload().await;
    assert_eq!((status, outcome(&report)), (200, "applied"), "{report}");
    let listing = get(&format!("{}/listeners", hale.admin()), &[]).await.body;
    let second_url = listing
        .lines()
        .find_map(|l| l.strip_prefix("listener_1::"))
        .map(|addr| format!("http://{addr}"))
        .unwrap_or_else(|| panic!("no listener_1 in {listing}"));
    assert_eq!(get(&format!("{second_url}/x"), &[]).await.status, 200);

    // Remove the first while a request is in flight on it.
    let in_flight = tokio::spawn({
        let first = first.clone();
        async move { get(&format!("{first}/slow"), &[]).await }
    });
    eventually("the request in flight", || {
        let n = a.in_flight();
        async move { (n >= 1).then_some(()) }
    })
    .await;
    let only_second = two.replacen(&one[start..end], "", 1);
    write(&path, &only_second);
    let (status, report) = hale.reload().await;
    assert_eq!((status, outcome(&report)), (200, "applied"), "{report}");
    assert_eq!(
        in_flight.await.unwrap().status,
        200,
        "the request in flight finished"
    );
    eventually("the removed listener to stop accepting", || {
        let first = first.clone();
        async move {
            let refused = tokio::net::TcpStream::connect(first.trim_start_matches("http://"))
                .await
                .is_err();
            refused.then_some(())
        }
    })
    .await;
    assert_eq!(get(&format!("{second_url}/x"), &[]).await.status, 200);
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_steady_load_fail_no_request() {
    let ups = [
        Upstream::start("u1", Behaviour::Echo).await,
        Upstream::start("u2", Behaviour::Echo).await,
        Upstream::start("u3", Behaviour::Echo).await,
    ];
    // Two configs: the routes and the endpoints behind them both change.
    let config_a = bootstrap(
        &routes(&[("/api/", "api"), ("/", "web")]),
        &(cluster(
            "api",
            "ROUND_ROBIN",
            &endpoints(&[ups[0].addr, ups[1].addr]),
            "",
        ) + &cluster("web", "ROUND_ROBIN", &endpoints(&[ups[2].addr]), "")),
    );
    let config_b = bootstrap(
        &routes(&[("/api/v2/", "web"), ("/api/", "api"), ("/", "web")]),
        &(cluster(
            "api",
            "LEAST_REQUEST",
            &endpoints(&[ups[1].addr, ups[2].addr]),
            "",
        ) + &cluster(
            "web",
            "ROUND_ROBIN",
            &endpoints(&[ups[0].addr, ups[2].addr]),
            "",
        )),
    );
    let path = config_file(&config_a);
    let hale = Hale::start_file(&path, 2, false);
    let url = hale.url("listener_0");

    // The load: eight clients, each on its own keep-alive connections,
    // sending back to back until told to stop.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut clients = Vec::new();
    for n in 0..8 {
        let url = url.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let client = support::h1_client();
            let (mut ok, mut failed) = (0u64, Vec::new());
            let mut i = 0u64;
            while !stop.is_cancelled() {
                i += 1;
                let path = match i % 3 {
                    0 => "/api/v2/x",
                    1 => "/api/x",
                    _ => "/page",
                };
                let req = http::Request::get(format!("{url}{path}?client={n}&i={i}"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                    Ok(Ok(resp)) if resp.status() == 200 => {
                        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                        ok += 1;
                    }
                    Ok(Ok(resp)) => failed.push(format!("{path}: status {}", resp.status())),
                    Ok(Err(e)) => failed.push(format!("{path}: {e}")),
                    Err(_) => failed.push(format!("{path}: no answer in 10 s")),
                }
            }
            (ok, failed)
        }));
    }
    eventually("load to be flowing", || {
        let n = ups.iter().map(Upstream::received).sum::<usize>();
        async move { (n >= 100).then_some(()) }
    })
    .await;

    for round in 0..20 {
        let next = if round % 2 == 0 { &config_b } else { &config_a };
        write(&path, next);
        let (status, report) = hale.reload().await;
        assert_eq!(
            (status, outcome(&report)),
            (200, "applied"),
            "round {round}: {report}"
        );
        // Let some requests run on each world.
        let before: usize = ups.iter().map(Upstream::received).sum();
        eventually("requests on the new config", || {
            let n: usize = ups.iter().map(Upstream::received).sum();
            async move { (n >= before + 50).then_some(()) }
        })
        .await;
    }
    stop.cancel();
    let (mut ok, mut failed) = (0, Vec::new());
    for c in clients {
        let (o, f) = c.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert_eq!(hale.stat("server.reload.success"), 20);
    assert_eq!(hale.stat("server.config_generation"), 21);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(10)]
    );
    assert!(ok >= 1000, "only {ok} requests");
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_degraded_cache_and_operator_modes_outlive_a_reload() {
    let up = Upstream::start("app", Behaviour::Echo).await;
    let filter = "          http_filters:
          - name: hale.filters.http.degraded
            typed_config:
              \"@type\": type.googleapis.com/hale.filters.http.degraded.v1.Degraded
              retry_after: 7s
";
    let config = |prefixes: &[(&str, &str)]| {
        bootstrap(
            &routes(prefixes),
            &cluster("backend", "ROUND_ROBIN", &endpoints(&[up.addr]), ""),
        )
        .replacen("          http_filters:\n", filter, 1)
    };
    let path = config_file(&config(&[("/", "backend")]));
    let hale = Hale::start_file(&path, 2, false);
    let url = hale.url("listener_0");
    let fresh = get(&format!("{url}/items?page=1"), &[]).await;
    assert_eq!(fresh.status, 200);
    eventually("the response to be cached", || async {
        (hale.stat("http.ingress.degraded.cache_entries") >= 1).then_some(())
    })
    .await;
    let set = hale.admin_post("/degraded?cluster=backend&mode=on").await;
    assert_eq!(set.status, 200, "{}", set.body);

    write(&path, &config(&[("/other/", "backend"), ("/", "backend")]));
    let (status, report) = hale.reload().await;
    assert_eq!((status, outcome(&report)), (200, "applied"), "{report}");

    // Still degraded by the operator, and still answered from the cache.
    let stale = get(&format!("{url}/items?page=1"), &[]).await;
    assert_eq!(stale.status, 200, "{}", stale.body);
    assert_eq!(stale.body, fresh.body);
    assert!(stale.header("x-hale-degraded").is_some());
    assert_eq!(hale.stat("http.ingress.degraded.cache_entries"), 1);
    assert_eq!(hale.stat("http.ingress.degraded.active"), 1);
    assert_eq!(
        up.received(),
        1,
        "nothing went to the backend while degraded"
    );
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_servers_readiness_policy_follows_a_reload() {
    let db = support::refused();
    let checks = "    health_checks:
    - timeout: 1s
      interval: 0.1s
      unhealthy_threshold: 1
      healthy_threshold: 1
      tcp_health_check: {}
";
    let config = |policy: &str| {
        bootstrap(
            &routes(&[("/", "db")]),
            &cluster("db", "ROUND_ROBIN", &endpoints(&[db.addr]), checks),
        ) + &support::probe_server(policy)
    };
    let path = config_file(&config(""));
    let hale = Hale::start_file(&path, 1, false);
    let readyz = || async { get(&format!("{}/readyz", hale.probes()), &[]).await };
    // The default policy: a dead cluster does not make hale unready.
    assert_eq!(readyz().await.status, 200);

    write(
        &path,
        &config(
            "    readiness:\n      require_clusters:\n      - { cluster: db, min_healthy_percent: 100 }\n",
        ),
    );
    let (status, report) = hale.reload().await;
    assert_eq!((status, outcome(&report)), (200, "applied"), "{report}");
    assert!(
        report["changes"]
            .as_str()
            .unwrap()
            .contains("probe server policy"),
        "{report}"
    );
    let not_ready = readyz().await;
    assert_eq!(not_ready.status, 503, "{}", not_ready.body);
    assert!(not_ready.body.contains("cluster:db"), "{}", not_ready.body);

    write(&path, &config(""));
    let (status, report) = hale.reload().await;
    assert_eq!((status, outcome(&report)), (200, "applied"), "{report}");
    assert_eq!(readyz().await.status, 200);
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_host_stays_ejected_across_a_reload() {
    let bad = Upstream::start("bad", Behaviour::Status(500)).await;
    let good = Upstream::start("good", Behaviour::Echo).await;
    let extra = Upstream::start("extra", Behaviour::Echo).await;
    let outlier = "    outlier_detection:
      consecutive_5xx: 3
      interval: 0.2s
      base_ejection_time: 30s
      max_ejection_percent: 50
";
    let routes = routes(&[("/", "backend")]);
    let config = |hosts: &[SocketAddr]| {
        bootstrap(
            &routes,
            &cluster("backend", "ROUND_ROBIN", &endpoints(hosts), outlier),
        )
    };
    let path = config_file(&config(&[bad.addr, good.addr]));
    let hale = Hale::start_file(&path, 2, false);
    let url = format!("{}/x", hale.url("listener_0"));
    eventually("the bad host ejected", || async {
        let _ = get(&url, &[]).await;
        (hale.stat("cluster.backend.outlier_detection.ejections_active") == 1).then_some(())
    })
    .await;

    // The cluster changes (a new endpoint): its ejection is kept, for the
    // 30 s it was given, not forgotten with the old detector.
    write(&path, &config(&[bad.addr, good.addr, extra.addr]));
    let (status, report) = hale.reload().await;
    assert_eq!((status, outcome(&report)), (200, "applied"), "{report}");
    let flags = support::flags_of(&hale, "backend", bad.addr).await;
    assert_eq!(flags, "/failed_outlier_check");
    assert_eq!(
        hale.stat("cluster.backend.outlier_detection.ejections_active"),
        1
    );
    let before = bad.received();
    for _ in 0..20 {
        assert_eq!(get(&url, &[]).await.status, 200);
    }
    assert_eq!(
        bad.received(),
        before,
        "an ejected host got traffic after the reload"
    );

    // Without outlier detection, nothing would ever lift the ejection: it
    // goes with the detector, and so do its stats.
    write(
        &path,
        &bootstrap(
            &routes,
            &cluster(
                "backend",
                "ROUND_ROBIN",
                &endpoints(&[bad.addr, good.addr]),
                "",
            ),
        ),
    );
    let (status, report) = hale.reload().await;
    assert_eq!((status, outcome(&report)), (200, "applied"), "{report}");
    assert_eq!(
        support::flags_of(&hale, "backend", bad.addr).await,
        "healthy"
    );
    let stats = get(&format!("{}/stats", hale.admin()), &[]).await.body;
    assert!(
        !stats.contains("cluster.backend.outlier_detection."),
        "{stats}"
    );
    assert!(
        stats.contains("cluster.backend.upstream_rq_total"),
        "{stats}"
    );
    hale.stop().await;
}

/// An HTTP check every 0.2 s, so a new host's first result comes quickly.
const FAST_HTTP_CHECK: &str = "    health_checks:
    - timeout: 1s
      interval: 0.2s
      unhealthy_threshold: 2
      healthy_threshold: 2
      http_health_check: { path: /healthz }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cluster_is_warmed_before_its_routes_serve() {
    let a = Upstream::start("a", Behaviour::Echo).await;
    let fresh = Upstream::start("fresh", Behaviour::Echo).await;
    let checks = FAST_HTTP_CHECK;
    let a_cluster = cluster("a", "ROUND_ROBIN", &endpoints(&[a.addr]), "");
    let path = config_file(&bootstrap(&routes(&[("/", "a")]), &a_cluster));
    let hale = Hale::start_file(&path, 2, false);
    let url = hale.url("listener_0");

    write(
        &path,
        &bootstrap(
            &routes(&[("/fresh/", "fresh"), ("/", "a")]),
            &(a_cluster.clone()
                + &cluster("fresh", "ROUND_ROBIN", &endpoints(&[fresh.addr]), checks)),
        ),
    );
    let (status, report) = hale.reload().await;
    assert_eq!((status, outcome(&report)), (200, "applied"), "{report}");
    // Its host had its first check before the swap: the new route serves
    // from the first request (a cold host would be failed until checked).
    assert!(
        fresh
            .health
            .checks
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    let reply = get(&format!("{url}/fresh/x"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("x-upstream"), Some("fresh"));
    assert_eq!(hale.stat("cluster.fresh.lb_healthy_panic"), 0);
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_that_arrive_during_a_reload_share_the_next_one() {
    let a = Upstream::start("a", Behaviour::Echo).await;
    let slow = Upstream::start("slow", Behaviour::Echo).await;
    // The first reload warms a new cluster whose host holds its check for
    // up to the check's timeout: the reload is busy while others arrive.
    slow.health
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let checks = "    health_checks:
    - timeout: 1.5s
      interval: 5s
      unhealthy_threshold: 1
      healthy_threshold: 1
      http_health_check: { path: /healthz }
";
    let a_cluster = cluster("a", "ROUND_ROBIN", &endpoints(&[a.addr]), "");
    let path = config_file(&bootstrap(&routes(&[("/", "a")]), &a_cluster));
    let hale = Hale::start_file(&path, 1, false);
    write(
        &path,
        &bootstrap(
            &routes(&[("/slow/", "slow"), ("/", "a")]),
            &(a_cluster.clone()
                + &cluster("slow", "ROUND_ROBIN", &endpoints(&[slow.addr]), checks)),
        ),
    );
    let first = tokio::spawn({
        let admin = hale.admin();
        async move { support::post_reload(&admin).await.1 }
    });
    eventually("the first reload to be warming", || async {
        let n = slow.health.checks.load(std::sync::atomic::Ordering::SeqCst);
        (n >= 1).then_some(())
    })
    .await;
    // Five more, from the admin and a signal, while it warms.
    let mut more = Vec::new();
    for _ in 0..4 {
        let admin = hale.admin();
        more.push(tokio::spawn(
            async move { support::post_reload(&admin).await.1 },
        ));
    }
    hale.inner().reload.trigger("SIGHUP");
    eventually("the five triggers to be queued", || async {
        (hale.inner().reload.queued() == 5).then_some(())
    })
    .await;
    assert_eq!(hale.stat("server.reload.attempt"), 1);
    slow.health
        .hang
        .store(false, std::sync::atomic::Ordering::SeqCst);

    let first = first.await.unwrap();
    assert_eq!(first["outcome"], "applied", "{first}");
    let mut seconds = Vec::new();
    for m in more {
        seconds.push(m.await.unwrap());
    }
    // One more reload answered all of them: the file had not changed since.
    for r in &seconds {
        assert_eq!(r["outcome"], "unchanged", "{r}");
        assert_eq!(
            r["at"], seconds[0]["at"],
            "one reload: {r} vs {}",
            seconds[0]
        );
    }
    let sources = seconds[0]["triggers"].to_string();
    assert!(
        sources.contains("admin") && sources.contains("SIGHUP"),
        "{sources}"
    );
    eventually("the coalesced reload to finish", || async {
        (hale.stat("server.reload.unchanged") == 1).then_some(())
    })
    .await;
    assert_eq!(hale.stat("server.reload.attempt"), 2);
    assert_eq!(hale.stat("server.config_generation"), 2);
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_whose_every_endpoint_moves_is_warmed_before_the_swap() {
    let old = Upstream::start("old", Behaviour::Echo).await;
    let new = Upstream::start("new", Behaviour::Echo).await;
    let checks = FAST_HTTP_CHECK;
    let routes = routes(&[("/", "backend")]);
    let config = |host: SocketAddr| {
        bootstrap(
            &routes,
            &cluster("backend", "ROUND_ROBIN", &endpoints(&[host]), checks),
        )
    };
    let path = config_file(&config(old.addr));
    let hale = Hale::start_file(&path, 2, false);
    let url = hale.url("listener_0");
    assert_eq!(
        get(&format!("{url}/x"), &[]).await.header("x-upstream"),
        Some("old")
    );
    // Startup waited for the first check and counted it before serving.
    assert_eq!(hale.stat("cluster.backend.lb_healthy_panic"), 0);

    // No host survives: the new one is checked before it replaces the old.
    write(&path, &config(new.addr));
    let (status, report) = hale.reload().await;
    assert_eq!((status, outcome(&report)), (200, "applied"), "{report}");
    let reply = get(&format!("{url}/x"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("x-upstream"), Some("new"));
    // Served by a checked host, not by panic routing over failed ones.
    assert_eq!(hale.stat("cluster.backend.lb_healthy_panic"), 0);
    hale.stop().await;
}
