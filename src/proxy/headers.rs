//! Header rules of one proxy hop, as Envoy applies them.
//!
//! Owns: hop-by-hop removal and the forwarding headers
//! (`x-forwarded-for`, `x-forwarded-proto`, `x-request-id`).
//! Must not touch: routing or bodies.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::{CONNECTION, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// True for a header that belongs to one hop only.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name == TE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || name == HTTP2_SETTINGS
}

/// Removes hop-by-hop headers: those RFC 9110 names, and any header the
/// `Connection` header lists. `te: trailers` is kept (gRPC needs it).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass of cheap comparisons instead of a
    // hashed removal per name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if let Some(connection) = headers.remove(CONNECTION)
        && let Ok(list) = connection.to_str()
    {
        for name in list.split(',') {
            let name = name.trim();
            if !name.is_empty() && !name.eq_ignore_ascii_case("te") {
                headers.remove(name);
            }
        }
    }
    for name in [
        KEEP_ALIVE,
        PROXY_CONNECTION,
        HTTP2_SETTINGS,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        headers.remove(name);
    }
    let keep_te = headers
        .get(TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !keep_te {
        headers.remove(TE);
    }
}

/// A header value for a small count of milliseconds, without allocating
/// for the common values (`x-envoy-upstream-service-time`).
pub fn millis_value(ms: u64) -> HeaderValue {
    static SMALL: std::sync::OnceLock<Vec<HeaderValue>> = std::sync::OnceLock::new();
    const CACHED: u64 = 1000;
    if ms < CACHED {
        let table = SMALL.get_or_init(|| (0..CACHED).map(HeaderValue::from).collect());
        if let Some(v) = table.get(ms as usize) {
            return v.clone();
        }
    }
    HeaderValue::from(ms)
}

const X_ENVOY_EXTERNAL_ADDRESS: HeaderName = HeaderName::from_static("x-envoy-external-address");

/// Sets the forwarding headers as Envoy's connection manager does on a
/// plaintext listener.
///
/// With `use_remote_address: true` hale is the edge: the client's address
/// is the peer's (or, with `xff_num_trusted_hops: N`, the Nth address from
/// the right of the `x-forwarded-for` it was sent), the peer is appended to
/// `x-forwarded-for`, `x-forwarded-proto` is overwritten, and a request
/// from an external client gets a fresh `x-request-id` and
/// `x-envoy-external-address`. Otherwise both headers are left as sent
/// (`x-forwarded-proto` filled in if absent). `x-request-id` is generated
/// when absent.
pub fn set_forwarding(
    headers: &mut HeaderMap,
    peer: SocketAddr,
    use_remote_address: bool,
    xff_num_trusted_hops: u32,
) {
    let mut external = None;
    if use_remote_address {
        let sent = headers
            .get(&X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        let client = match (&sent, xff_num_trusted_hops) {
            (Some(xff), n) if n > 0 => nth_from_right(xff, n).unwrap_or(peer.ip()),
            _ => peer.ip(),
        };
        let ip = peer.ip().to_string();
        let value = match sent {
            Some(existing) => format!("{existing},{ip}"),
            None => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(X_FORWARDED_FOR, v);
        }
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        if !is_internal(client) {
            external = Some(client);
        }
    } else if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }

    if let Some(client) = external
        && let Ok(v) = HeaderValue::from_str(&client.to_string())
    {
        headers.insert(X_ENVOY_EXTERNAL_ADDRESS, v);
    }
    if external.is_some() || !headers.contains_key(&X_REQUEST_ID) {
        let id = uuid::Uuid::new_v4();
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = id.hyphenated().encode_lower(&mut buf);
        if let Ok(v) = HeaderValue::from_str(text) {
            headers.insert(X_REQUEST_ID, v);
        }
    }
}

/// The `n`th address from the right of an `x-forwarded-for` list (1 = last).
fn nth_from_right(xff: &str, n: u32) -> Option<IpAddr> {
    let index = usize::try_from(n).ok()?.checked_sub(1)?;
    xff.rsplit(',').nth(index)?.trim().parse().ok()
}

/// Envoy's "internal address": RFC 1918, loopback, and IPv6 unique-local.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_private() || v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_te_trailers_stays() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "keep-alive, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(TE, "trailers".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(!h.contains_key("x-private"));
        assert!(!h.contains_key("keep-alive"));
        assert!(!h.contains_key(CONNECTION));
        assert_eq!(h[TE], "trailers");
        assert_eq!(h["x-kept"], "1");
    }

    #[test]
    fn forwarding_headers_follow_use_remote_address() {
        let peer: SocketAddr = "203.0.113.9:5555".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, "198.51.100.1".parse().unwrap());
        h.insert(X_REQUEST_ID, "abc".parse().unwrap());
        set_forwarding(&mut h, peer, false, 0);
        assert_eq!(h[&X_FORWARDED_FOR], "198.51.100.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_REQUEST_ID], "abc");

        set_forwarding(&mut h, peer, true, 0);
        assert_eq!(h[&X_FORWARDED_FOR], "198.51.100.1,203.0.113.9");
        // An external client's request id is not trusted.
        assert_ne!(h[&X_REQUEST_ID], "abc");
        assert_eq!(h[&X_REQUEST_ID].len(), 36);

        let mut internal = HeaderMap::new();
        internal.insert(X_REQUEST_ID, "keep-me".parse().unwrap());
        set_forwarding(&mut internal, "10.1.2.3:1".parse().unwrap(), true, 0);
        assert_eq!(internal[&X_REQUEST_ID], "keep-me");
        assert!(!internal.contains_key(&X_ENVOY_EXTERNAL_ADDRESS));
    }

    #[test]
    fn trusted_hops_pick_the_client_from_x_forwarded_for() {
        // An internal load balancer (10.0.0.5) in front of hale forwarded a
        // request from 198.51.100.7; with one trusted hop that is the client.
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, "198.51.100.7".parse().unwrap());
        h.insert(X_REQUEST_ID, "from-client".parse().unwrap());
        set_forwarding(&mut h, "10.0.0.5:4000".parse().unwrap(), true, 1);
        assert_eq!(h[&X_FORWARDED_FOR], "198.51.100.7,10.0.0.5");
        assert_eq!(h[&X_ENVOY_EXTERNAL_ADDRESS], "198.51.100.7");
        assert_ne!(h[&X_REQUEST_ID], "from-client");
        assert_eq!(
            nth_from_right("a, 1.2.3.4 , 5.6.7.8", 2),
            Some("1.2.3.4".parse().unwrap())
        );
        assert_eq!(nth_from_right("1.2.3.4", 3), None);
    }
}
