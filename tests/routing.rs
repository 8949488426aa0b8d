//! Routing through hale on real sockets: domains, prefix, path, regex and
//! header matches; direct responses; rewrites; the 404 of no route.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use support::upstream::{Behaviour, Upstream};
use support::{Hale, bootstrap, cluster, get};

fn upstream_name(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("json: {body}"));
    v["upstream"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_domain_prefix_path_regex_and_header() {
    let names = [
        "exact",
        "suffix",
        "prefixdom",
        "any",
        "path",
        "regex",
        "header",
        "fallback",
    ];
    let mut ups = Vec::new();
    for n in names {
        ups.push(Upstream::start(n, Behaviour::Echo).await);
    }
    let clusters: String = ups
        .iter()
        .map(|u| cluster(&u.name, "ROUND_ROBIN", &[(u.addr, 1, 0)], ""))
        .collect();
    let vhosts = r#"            - name: exact
              domains: ["api.example.com"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: exact }
            - name: suffix
              domains: ["*.example.com"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: suffix }
            - name: prefixdom
              domains: ["internal.*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: prefixdom }
            - name: any
              domains: ["*"]
              routes:
              - match: { path: "/exact" }
                route: { cluster: path }
              - match: { safe_regex: { regex: "/v[0-9]+/items" } }
                route: { cluster: regex }
              - match:
                  prefix: "/"
                  headers:
                  - name: x-canary
                    string_match: { prefix: "yes" }
                route: { cluster: header }
              - match: { prefix: "/hale" }
                direct_response: { status: 200, body: { inline_string: "hale is up" } }
              - match: { prefix: "/api" }
                route: { cluster: any }
              - match: { prefix: "/" }
                route: { cluster: fallback }
"#;
    let hale = Hale::start(&bootstrap(vhosts, &clusters));
    let url = hale.url("listener_0");

    let via =
        |host: &'static str, path: &'static str, extra: &'static [(&'static str, &'static str)]| {
            let url = url.clone();
            async move {
                let mut headers = vec![("host", host)];
                headers.extend_from_slice(extra);
                get(&format!("{url}{path}"), &headers).await
            }
        };

    assert_eq!(
        upstream_name(&via("api.example.com", "/x", &[]).await.body),
        "exact"
    );
    assert_eq!(
        upstream_name(&via("www.example.com", "/x", &[]).await.body),
        "suffix"
    );
    assert_eq!(
        upstream_name(&via("internal.corp", "/x", &[]).await.body),
        "prefixdom"
    );
    assert_eq!(
        upstream_name(&via("other", "/exact", &[]).await.body),
        "path"
    );
    assert_eq!(
        upstream_name(&via("other", "/exact?q=1", &[]).await.body),
        "path"
    );
    assert_eq!(
        upstream_name(&via("other", "/v12/items", &[]).await.body),
        "regex"
    );
    assert_eq!(
        upstream_name(&via("other", "/v12/items/3", &[]).await.body),
        "fallback"
    );
    assert_eq!(
        upstream_name(
            &via("other", "/anything", &[("x-canary", "yes-please")])
                .await
                .body
        ),
        "header"
    );
    assert_eq!(
        upstream_name(&via("other", "/api/users", &[]).await.body),
        "any"
    );
    assert_eq!(
        upstream_name(&via("other", "/anything", &[]).await.body),
        "fallback"
    );

    let direct = via("other", "/hale", &[]).await;
    assert_eq!(direct.status, 200);
    assert_eq!(direct.body, "hale is up");
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_and_counted() {
    let up = Upstream::start("only", Behaviour::Echo).await;
    let vhosts = r#"            - name: only
              domains: ["only.example.com"]
              routes:
              - match: { prefix: "/only" }
                route: { cluster: only }
"#;
    let hale = Hale::start(&bootstrap(
        vhosts,
        &cluster("only", "ROUND_ROBIN", &[(up.addr, 1, 0)], ""),
    ));
    let url = hale.url("listener_0");
    assert_eq!(
        get(&format!("{url}/only"), &[("host", "elsewhere")])
            .await
            .status,
        404
    );
    assert_eq!(
        get(&format!("{url}/other"), &[("host", "only.example.com")])
            .await
            .status,
        404
    );
    assert_eq!(
        get(&format!("{url}/only/x"), &[("host", "only.example.com")])
            .await
            .status,
        200
    );
    assert_eq!(hale.stat("http.ingress.no_route"), 2);
    assert_eq!(hale.stat("http.ingress.downstream_rq_404"), 2);
    assert_eq!(up.received(), 1);
    hale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_and_host_rewrite_and_proxy_headers() {
    let up = Upstream::start("app", Behaviour::Echo).await;
    let vhosts = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/api/" }
                route:
                  cluster: app
                  prefix_rewrite: "/"
                  host_rewrite_literal: app.internal
                  timeout: 7s
"#;
    let hale = Hale::start(&bootstrap(
        vhosts,
        &cluster("app", "ROUND_ROBIN", &[(up.addr, 1, 0)], ""),
    ));
    let reply = get(
        &format!("{}/api/users?page=2", hale.url("listener_0")),
        &[("host", "public.example.com"), ("x-request-id", "req-1")],
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(seen["path"], "/users?page=2");
    assert_eq!(seen["headers"]["host"], "app.internal");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert_eq!(seen["headers"]["x-request-id"], "req-1");
    assert_eq!(seen["headers"]["x-envoy-expected-rq-timeout-ms"], "7000");
    // Hop-by-hop headers from the upstream do not reach the client.
    assert!(reply.header("keep-alive").is_none());
    assert!(reply.header("x-envoy-upstream-service-time").is_some());

    // Without an x-request-id, hale makes one.
    let reply = get(&format!("{}/api/x", hale.url("listener_0")), &[]).await;
    let seen: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(seen["headers"]["x-request-id"].as_str().unwrap().len(), 36);
    hale.stop().await;
}
