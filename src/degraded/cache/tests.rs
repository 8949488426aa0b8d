//! What the cache stores and serves, against RFC 9111's rules for a shared
//! cache, with time passed in (no sleeps).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

fn limits() -> DegradedCache {
    DegradedCache {
        max_bytes: 1024 * 1024,
        max_entry_bytes: 64 * 1024,
        max_stale: Duration::from_secs(300),
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn head<'a>(method: &'a Method, path: &'a str, h: &'a HeaderMap) -> RequestHead<'a> {
    RequestHead {
        method,
        scheme: "http",
        authority: "Shop.Example",
        path_and_query: path,
        headers: h,
    }
}

async fn put(
    cache: &ResponseCache,
    req: &RequestHead<'_>,
    resp: &HeaderMap,
    body: &str,
    now: SystemTime,
) {
    let policy = cache.storable(req, StatusCode::OK, resp, now).unwrap();
    cache
        .store(
            req,
            policy,
            StatusCode::OK,
            resp.clone(),
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_plain_get_is_stored_and_served_to_get_and_head() {
    let cache = ResponseCache::new(limits());
    let now = SystemTime::now();
    let none = HeaderMap::new();
    put(
        &cache,
        &head(&Method::GET, "/items?page=2", &none),
        &headers(&[("content-type", "text/plain")]),
        "items",
        now,
    )
    .await;
    let later = now + Duration::from_secs(30);
    let hit = cache
        .lookup(&head(&Method::GET, "/items?page=2", &none), later)
        .await
        .unwrap();
    assert_eq!(hit.entry.body, Bytes::from("items"));
    assert_eq!(hit.age, Duration::from_secs(30));
    assert!(
        cache
            .lookup(&head(&Method::HEAD, "/items?page=2", &none), later)
            .await
            .is_some()
    );
    // The query is part of the key; the authority's case is not.
    assert!(
        cache
            .lookup(&head(&Method::GET, "/items?page=3", &none), later)
            .await
            .is_none()
    );
    let other_case = RequestHead {
        authority: "shop.example",
        ..head(&Method::GET, "/items?page=2", &none)
    };
    assert!(cache.lookup(&other_case, later).await.is_some());
    // Writes never read the cache.
    assert!(
        cache
            .lookup(&head(&Method::POST, "/items?page=2", &none), later)
            .await
            .is_none()
    );
}

#[tokio::test]
async fn what_a_shared_cache_must_not_store_is_not_stored() {
    let cache = ResponseCache::new(limits());
    let now = SystemTime::now();
    let none = HeaderMap::new();
    let get = head(&Method::GET, "/", &none);
    let refuse = |resp: &[(&str, &str)]| {
        cache
            .storable(&get, StatusCode::OK, &headers(resp), now)
            .err()
    };
    assert_eq!(
        refuse(&[("cache-control", "no-store")]),
        Some(NotStored::Policy)
    );
    assert_eq!(
        refuse(&[("cache-control", "private, max-age=60")]),
        Some(NotStored::Policy)
    );
    assert_eq!(
        refuse(&[("set-cookie", "session=1")]),
        Some(NotStored::SetCookie)
    );
    assert_eq!(refuse(&[("vary", "*")]), Some(NotStored::VaryAny));
    assert_eq!(
        refuse(&[("content-length", "70000")]),
        Some(NotStored::TooLarge)
    );
    assert_eq!(
        cache
            .storable(
                &head(&Method::POST, "/", &none),
                StatusCode::OK,
                &HeaderMap::new(),
                now
            )
            .err(),
        Some(NotStored::Method)
    );
    // Authorization: only when the response says a shared cache may keep it.
    let auth = headers(&[("authorization", "Bearer x")]);
    let with_auth = head(&Method::GET, "/", &auth);
    assert_eq!(
        cache
            .storable(&with_auth, StatusCode::OK, &HeaderMap::new(), now)
            .err(),
        Some(NotStored::Policy)
    );
    assert!(
        cache
            .storable(
                &with_auth,
                StatusCode::OK,
                &headers(&[("cache-control", "public, max-age=60")]),
                now
            )
            .is_ok()
    );
    // A body found too large only while collecting is refused at store.
    let policy = cache
        .storable(&get, StatusCode::OK, &HeaderMap::new(), now)
        .unwrap();
    let big = Bytes::from(vec![b'x'; 70_000]);
    assert_eq!(
        cache
            .store(&get, policy, StatusCode::OK, HeaderMap::new(), big)
            .await
            .err(),
        Some(NotStored::TooLarge)
    );
}

#[tokio::test]
async fn vary_headers_must_match() {
    let cache = ResponseCache::new(limits());
    let now = SystemTime::now();
    let gzip = headers(&[("accept-encoding", "gzip")]);
    put(
        &cache,
        &head(&Method::GET, "/a", &gzip),
        &headers(&[("vary", "Accept-Encoding")]),
        "zipped",
        now,
    )
    .await;
    assert!(
        cache
            .lookup(&head(&Method::GET, "/a", &gzip), now)
            .await
            .is_some()
    );
    let br = headers(&[("accept-encoding", "br")]);
    assert!(
        cache
            .lookup(&head(&Method::GET, "/a", &br), now)
            .await
            .is_none()
    );
    let none = HeaderMap::new();
    assert!(
        cache
            .lookup(&head(&Method::GET, "/a", &none), now)
            .await
            .is_none()
    );
}

#[tokio::test]
async fn nothing_older_than_max_stale_is_served() {
    let cache = ResponseCache::new(limits());
    let now = SystemTime::now();
    let none = HeaderMap::new();
    // An upstream Age counts too.
    put(
        &cache,
        &head(&Method::GET, "/old", &none),
        &headers(&[("age", "100")]),
        "old",
        now,
    )
    .await;
    let get = head(&Method::GET, "/old", &none);
    assert!(
        cache
            .lookup(&get, now + Duration::from_secs(200))
            .await
            .is_some()
    );
    assert!(
        cache
            .lookup(&get, now + Duration::from_secs(201))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn memory_stays_within_max_bytes() {
    let cache = ResponseCache::new(DegradedCache {
        max_bytes: 64 * 1024,
        max_entry_bytes: 8 * 1024,
        max_stale: Duration::from_secs(300),
    });
    let now = SystemTime::now();
    let none = HeaderMap::new();
    let body = "x".repeat(4 * 1024);
    for i in 0..160 {
        let path = format!("/item/{i}");
        put(
            &cache,
            &head(&Method::GET, &path, &none),
            &HeaderMap::new(),
            &body,
            now,
        )
        .await;
    }
    // Ten times max_bytes written; what stays is within the bound.
    assert!(
        cache.bytes().await <= 64 * 1024,
        "{} bytes",
        cache.bytes().await
    );
    assert!(cache.entries().await < 160);
    // Least recently used goes: the newest entries are the ones kept.
    assert!(
        cache
            .lookup(&head(&Method::GET, "/item/159", &none), now)
            .await
            .is_some()
    );
    assert!(
        cache
            .lookup(&head(&Method::GET, "/item/0", &none), now)
            .await
            .is_none()
    );
}

/// A read buffer as hyper leaves it: header values are slices of it. It
/// holds a clone of a marker `Arc` only so that dropping it is observable.
struct ReadBuffer(#[allow(dead_code)] Arc<()>);

impl AsRef<[u8]> for ReadBuffer {
    fn as_ref(&self) -> &[u8] {
        b"max-age=60Accept-Encodinggzip"
    }
}

#[tokio::test]
async fn a_stored_entry_does_not_pin_the_buffer_its_headers_came_from() {
    let cache = ResponseCache::new(limits());
    let now = SystemTime::now();
    let alive = Arc::new(());
    let buffer = Bytes::from_owner(ReadBuffer(Arc::clone(&alive)));
    let value = |range: std::ops::Range<usize>| {
        HeaderValue::from_maybe_shared(buffer.slice(range)).unwrap()
    };
    let mut resp = HeaderMap::new();
    resp.insert("cache-control", value(0..10));
    resp.insert("vary", value(10..25));
    let mut req_headers = HeaderMap::new();
    req_headers.insert("accept-encoding", value(25..29));
    let req = head(&Method::GET, "/pinned", &req_headers);
    let policy = cache.storable(&req, StatusCode::OK, &resp, now).unwrap();
    cache
        .store(
            &req,
            policy,
            StatusCode::OK,
            resp,
            Bytes::from_static(b"body"),
        )
        .await
        .unwrap();
    drop(req_headers);
    drop(buffer);
    assert_eq!(
        Arc::strong_count(&alive),
        1,
        "the cache still holds the buffer"
    );
    let hit = cache
        .lookup(
            &head(
                &Method::GET,
                "/pinned",
                &headers(&[("accept-encoding", "gzip")]),
            ),
            now,
        )
        .await
        .expect("stored, and the Vary value matches");
    assert_eq!(hit.entry.headers["cache-control"], "max-age=60");
}

#[tokio::test]
async fn an_origin_that_forbids_stale_answers_is_obeyed() {
    let cache = ResponseCache::new(limits());
    let now = SystemTime::now();
    let none = HeaderMap::new();
    let get = head(&Method::GET, "/strict", &none);
    let strict = headers(&[("cache-control", "max-age=10, must-revalidate")]);
    put(&cache, &get, &strict, "strict", now).await;
    // Fresh: served. Stale: must-revalidate forbids it.
    assert!(
        cache
            .lookup(&get, now + Duration::from_secs(5))
            .await
            .is_some()
    );
    assert!(
        cache
            .lookup(&get, now + Duration::from_secs(20))
            .await
            .is_none()
    );
    assert!(cache.has_fresh(&get, now + Duration::from_secs(5)).await);
    assert!(!cache.has_fresh(&get, now + Duration::from_secs(20)).await);
}
