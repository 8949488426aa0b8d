//! Outlier detection on real traffic: a host answering 5xx is ejected
//! after `consecutive_5xx`, traffic goes elsewhere, and a passing active
//! check lets it back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use support::upstream::{Behaviour, Upstream};
use support::{ALL_TO_BACKEND, Hale, bootstrap, cluster, eventually, get, wait_flags};

const OUTLIER: &str = "    outlier_detection:
      consecutive_5xx: 3
      interval: 0.2s
      base_ejection_time: 30s
      max_ejection_percent: 50
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_5xx_eject_the_host_and_traffic_moves_away() {
    let bad = Upstream::start("bad", Behaviour::Status(500)).await;
    let good = Upstream::start("good", Behaviour::Echo).await;
    let clusters = cluster(
        "backend",
        "ROUND_ROBIN",
        &[(bad.addr, 1, 0), (good.addr, 1, 0)],
        OUTLIER,
    );
    let hale = Hale::start(&bootstrap(ALL_TO_BACKEND, &clusters));
    let url = format!("{}/x", hale.url("listener_0"));
    eventually("the bad host ejected", || async {
        let _ = get(&url, &[]).await;
        (hale.stat("cluster.backend.outlier_detection.ejections_active") == 1).then_some(())
    })
    .await;
    wait_flags(&hale, "backend", bad.addr, "/failed_outlier_check").await;
    let before = bad.received();
    for _ in 0..20 {
        assert_eq!(get(&url, &[]).await.status, 200);
    }
    assert_eq!(bad.received(), before, "nothing goes to an ejected host");
    let text = get(&format!("{}/clusters", hale.admin()), &[]).await.body;
    for line in [
        "backend::outlier::success_rate_average::",
        "backend::outlier::success_rate_ejection_threshold::",
        "backend::outlier::local_origin_success_rate_average::",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    for name in [
        "ejections_enforced_consecutive_5xx",
        "ejections_detected_consecutive_5xx",
        "ejections_enforced_total",
    ] {
        assert_eq!(
            hale.stat(&format!("cluster.backend.outlier_detection.{name}")),
            1,
            "{name}"
        );
    }
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_active_check_lets_an_ejected_host_back() {
    // Answers 500 to traffic, 200 to its health checks.
    let flaky = Upstream::start("flaky", Behaviour::Status(500)).await;
    let good = Upstream::start("good", Behaviour::Echo).await;
    let checks = "    health_checks:
    - timeout: 0.5s
      interval: 0.3s
      no_traffic_interval: 0.3s
      unhealthy_threshold: 2
      healthy_threshold: 1
      http_health_check: { path: /healthz }
";
    let clusters = cluster(
        "backend",
        "ROUND_ROBIN",
        &[(flaky.addr, 1, 0), (good.addr, 1, 0)],
        &format!("{OUTLIER}{checks}"),
    );
    let hale = Hale::start(&bootstrap(ALL_TO_BACKEND, &clusters));
    let url = format!("{}/x", hale.url("listener_0"));
    eventually("an ejection", || async {
        let _ = get(&url, &[]).await;
        (hale.stat("cluster.backend.outlier_detection.ejections_enforced_total") >= 1).then_some(())
    })
    .await;
    // The next passing check (not the 30 s ejection time) brings it back.
    wait_flags(&hale, "backend", flaky.addr, "healthy").await;
    assert_eq!(
        hale.stat("cluster.backend.outlier_detection.ejections_active"),
        0
    );
    hale.stop().await;
}
