//! Unresponsive hosts (hale's own): a host with requests waiting that
//! answers none of them while its peers answer gets no new requests, and
//! gets a trial once nothing waits on it and its hold time is over.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use support::upstream::{Behaviour, Upstream};
use support::{ALL_TO_BACKEND, Hale, bootstrap, cluster, eventually, get, wait_flags};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_host_is_taken_out_until_its_trial() {
    let hung = Upstream::start("hung", Behaviour::Hang).await;
    let good = Upstream::start("good", Behaviour::Echo).await;
    let clusters = cluster(
        "backend",
        "ROUND_ROBIN",
        &[(hung.addr, 1, 0), (good.addr, 1, 0)],
        "",
    );
    let hale = Hale::start(&bootstrap(ALL_TO_BACKEND, &clusters));
    let url = format!("{}/x", hale.url("listener_0"));
    // Requests until one waits on the hung host (the others answer).
    let mut waiting = Vec::new();
    eventually("a request waiting on the hung host", || {
        let url = url.clone();
        waiting.push(tokio::spawn(async move { get(&url, &[]).await }));
        async { (hung.in_flight() >= 1).then_some(()) }
    })
    .await;
    // Its peer keeps answering while it does not: flagged. (Until then
    // round robin still sends it some of these.)
    let key = format!("backend::{}::health_flags::/hale_unresponsive", hung.addr);
    eventually("the hung host flagged", || {
        let url = url.clone();
        waiting.push(tokio::spawn(async move { get(&url, &[]).await }));
        let clusters = format!("{}/clusters", hale.admin());
        let key = key.clone();
        async move { get(&clusters, &[]).await.body.contains(&key).then_some(()) }
    })
    .await;
    let before = hung.received();
    for _ in 0..10 {
        let reply = get(&url, &[]).await;
        assert_eq!(reply.header("x-upstream"), Some("good"));
    }
    assert_eq!(hung.received(), before, "no new request goes to it");

    // The clients give up: nothing waits on it; after its hold (1 s) it is
    // back in rotation on trial.
    for w in waiting {
        w.abort();
    }
    wait_flags(&hale, "backend", hung.addr, "healthy").await;
    hale.stop().await;
}
