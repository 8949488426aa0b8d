//! The degraded-mode response cache: responses a shared cache may store
//! (RFC 9111, decided by `http-cache-semantics`), kept while they are no
//! older than `max_stale`, bounded by `max_bytes` with byte-weighted
//! eviction (moka), and served only while a route is degraded (or to hide
//! one failed request with `stale_if_error`).
//!
//! Owns: the cache key, what may be stored, `Vary` matching and entry age.
//! Must not touch: when a route is degraded (`mod.rs`) or the data path.
//!
//! Key: scheme, authority (lower-cased) and path with query; GET fills it
//! and GET or HEAD read it. One variant is kept per key: a response whose
//! `Vary` headers differ from the request's is a miss, never a wrong answer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderName, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_cache_semantics::{CacheOptions, CachePolicy};

use crate::config::model::DegradedCache;

/// What the key and bookkeeping of an entry cost beyond its bytes.
const ENTRY_OVERHEAD: u64 = 256;

/// A stored response.
#[derive(Debug)]
pub struct Entry {
    /// Its status.
    pub status: StatusCode,
    /// Its headers, as the upstream sent them.
    pub headers: HeaderMap,
    /// Its whole body.
    pub body: Bytes,
    policy: CachePolicy,
    /// Whether the origin allows serving it once stale (RFC 9111 §4.2.4:
    /// not with `no-cache`, `must-revalidate`, `proxy-revalidate` or
    /// `s-maxage`).
    stale_allowed: bool,
    /// The request headers its `Vary` names, with the values they had.
    vary: Vec<(HeaderName, Option<HeaderValue>)>,
    weight: u32,
}

/// A cache hit: the entry and how old it is (RFC 9111 `Age`).
#[derive(Debug, Clone)]
pub struct Hit {
    /// The stored response.
    pub entry: Arc<Entry>,
    /// Its age now.
    pub age: Duration,
}

/// Why a response was not stored (for stats and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// Not a GET.
    Method,
    /// RFC 9111 forbids it for a shared cache (`no-store`, `private`,
    /// `Authorization` without permission, an uncacheable status).
    Policy,
    /// `Set-Cookie`: one client's state must not reach another.
    SetCookie,
    /// `Vary: *`: no request can be known to match.
    VaryAny,
    /// Larger than `max_entry_bytes`.
    TooLarge,
}

/// A request as the cache needs it.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// Method.
    pub method: &'a Method,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Host or `:authority`.
    pub authority: &'a str,
    /// Path and query.
    pub path_and_query: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
}

impl RequestHead<'_> {
    /// The cache key.
    pub fn key(&self) -> String {
        let mut key = String::with_capacity(
            self.scheme.len() + self.authority.len() + self.path_and_query.len() + 3,
        );
        key.push_str(self.scheme);
        key.push_str("://");
        key.extend(self.authority.chars().map(|c| c.to_ascii_lowercase()));
        key.push_str(self.path_and_query);
        key
    }

    fn as_request(&self) -> http::Request<()> {
        let mut req = http::Request::new(());
        *req.method_mut() = self.method.clone();
        if let Ok(uri) = http::Uri::try_from(self.path_and_query) {
            *req.uri_mut() = uri;
        }
        *req.headers_mut() = detached(self.headers);
        req
    }
}

/// The cache of one filter configuration.
#[derive(Debug, Clone)]
pub struct ResponseCache {
    entries: moka::future::Cache<String, Arc<Entry>>,
    limits: DegradedCache,
}

impl ResponseCache {
    /// An empty cache within `limits`.
    pub fn new(limits: DegradedCache) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(limits.max_bytes)
            .weigher(|_key: &String, entry: &Arc<Entry>| entry.weight)
            // Least recently used goes first. moka's default (TinyLFU)
            // admits a new key only if it was read more than the one it
            // would evict, and entries here are read only while degraded:
            // a full cache would never take a new URL.
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            // Nothing older than max_stale is ever served.
            .time_to_live(limits.max_stale)
            .build();
        Self { entries, limits }
    }

    /// Whether a response with this head may be stored, decided before its
    /// body is read (so a response that cannot be stored is not collected).
    /// `Some(policy)` when it may.
    pub fn storable(
        &self,
        req: &RequestHead<'_>,
        status: StatusCode,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<CachePolicy, NotStored> {
        if req.method != Method::GET {
            return Err(NotStored::Method);
        }
        if headers.contains_key(SET_COOKIE) {
            return Err(NotStored::SetCookie);
        }
        if vary_names(headers).any(|name| name.is_none()) {
            return Err(NotStored::VaryAny);
        }
        let too_large = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|len| len > self.limits.max_entry_bytes);
        if too_large {
            return Err(NotStored::TooLarge);
        }
        let mut resp = http::Response::new(());
        *resp.status_mut() = status;
        *resp.headers_mut() = detached(headers);
        let policy = CachePolicy::new_options(
            &req.as_request(),
            &resp,
            now,
            CacheOptions {
                shared: true,
                ..CacheOptions::default()
            },
        );
        if policy.is_storable() {
            Ok(policy)
        } else {
            Err(NotStored::Policy)
        }
    }

    /// The largest body worth collecting.
    pub fn max_entry_bytes(&self) -> u64 {
        self.limits.max_entry_bytes
    }

    /// Stores a whole response whose head [`storable`](Self::storable) accepted.
    pub async fn store(
        &self,
        req: &RequestHead<'_>,
        policy: CachePolicy,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<(), NotStored> {
        if body.len() as u64 > self.limits.max_entry_bytes {
            return Err(NotStored::TooLarge);
        }
        let headers = detached(&headers);
        let vary = vary_names(&headers)
            .flatten()
            .map(|name| {
                let value = req.headers.get(&name).map(detached_value);
                (name, value)
            })
            .collect();
        let key = req.key();
        let header_bytes: usize = headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        let weight = (key.len() as u64 + header_bytes as u64 + body.len() as u64 + ENTRY_OVERHEAD)
            .min(u64::from(u32::MAX));
        let stale_allowed = !cache_control_has(
            &headers,
            &[
                "no-cache",
                "must-revalidate",
                "proxy-revalidate",
                "s-maxage",
            ],
        );
        let entry = Entry {
            status,
            headers,
            body,
            policy,
            stale_allowed,
            vary,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
        };
        self.entries.insert(key, Arc::new(entry)).await;
        Ok(())
    }

    /// The entry for `req` if one matches its `Vary` headers and is no older
    /// than `max_stale` at `now`.
    pub async fn lookup(&self, req: &RequestHead<'_>, now: SystemTime) -> Option<Hit> {
        if req.method != Method::GET && req.method != Method::HEAD {
            return None;
        }
        let entry = self.entries.get(&req.key()).await?;
        let matches = entry
            .vary
            .iter()
            .all(|(name, value)| req.headers.get(name) == value.as_ref());
        if !matches {
            return None;
        }
        let age = entry.policy.age(now);
        if age > self.limits.max_stale || (!entry.stale_allowed && entry.policy.is_stale(now)) {
            return None;
        }
        Some(Hit { entry, age })
    }

    /// Whether a still-fresh entry answers `req` (a response to it need not
    /// be stored again).
    pub async fn has_fresh(&self, req: &RequestHead<'_>, now: SystemTime) -> bool {
        self.lookup(req, now)
            .await
            .is_some_and(|hit| !hit.entry.policy.is_stale(now))
    }

    /// Bytes held (as weighed), after pending evictions are applied.
    pub async fn bytes(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.weighted_size()
    }

    /// Entries held, after pending evictions are applied.
    pub async fn entries(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.entry_count()
    }
}

/// A copy of `headers` whose values own their bytes.
///
/// hyper parses header values in place: each is a slice of the connection's
/// read buffer, and that buffer often holds the start of the body too. A
/// stored value that shared it would pin the whole buffer (tens of KiB the
/// weigher never sees) for as long as the entry lives.
fn detached(headers: &HeaderMap) -> HeaderMap {
    let mut copy = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        copy.append(name.clone(), detached_value(value));
    }
    copy
}

fn detached_value(value: &HeaderValue) -> HeaderValue {
    let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
    copy.set_sensitive(value.is_sensitive());
    copy
}

/// Whether any `Cache-Control` of `headers` has one of `directives`.
fn cache_control_has(headers: &HeaderMap, directives: &[&str]) -> bool {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| {
            d.split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .any(|d| directives.contains(&d.as_str()))
}

/// The header names a response's `Vary` lists; `None` for `*` or a name
/// that is not a header name (nothing can match those).
fn vary_names(headers: &HeaderMap) -> impl Iterator<Item = Option<HeaderName>> + '_ {
    headers
        .get_all(VARY)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("*").split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            if name == "*" {
                None
            } else {
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()
            }
        })
}

#[cfg(test)]
mod tests;
