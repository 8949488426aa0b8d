//! The admin server, at Envoy's paths, on its own thread and runtime so a
//! saturated data path cannot starve it.
//!
//! Owns: `/ready`, `/server_info`, `/clusters`, `/listeners`, `/stats`,
//! `/stats/prometheus`, `/config_dump`, `/quitquitquit` and the help page.
//! Must not touch: the data path's internals. It reads the published world,
//! the stat store and the lifecycle, and asks for shutdown through a token.

mod clusters;
mod info;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::model::{HttpFilter, TrafficDirection};
use crate::degraded::state::Mode;
use crate::lifecycle::Lifecycle;
use crate::proxy::snapshot::Snapshot;
use crate::reload::ReloadHandle;
use crate::stats::Store;

pub use info::{CommandLineOptions, duration_json};

/// What the admin reads.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The published world.
    pub snapshot: Snapshot,
    /// Every stat.
    pub store: Arc<Store>,
    /// hale's phase.
    pub lifecycle: Lifecycle,
    /// How hale was started (for `/server_info`).
    pub options: Arc<CommandLineOptions>,
    /// When the server started.
    pub started: std::time::SystemTime,
    /// Cancelled by `/quitquitquit`.
    pub quit: CancellationToken,
    /// `--drain-time-s` (a graceful `/drain_listeners` lasts this long).
    pub drain_time: std::time::Duration,
    /// The listeners bound at startup: `/listeners` until the first world
    /// is built (afterwards the world's, which reloads change).
    pub bound: Vec<(String, std::net::SocketAddr)>,
    /// `POST /reload`, and the last reload's outcome for `/config_dump`.
    pub reload: ReloadHandle,
}

/// Serves the admin on `listener` until `stop`.
pub async fn serve(listener: TcpListener, state: AdminState, stop: CancellationToken) {
    let state = Arc::new(state);
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _peer)) = accepted else {
            continue;
        };
        let state = Arc::clone(&state);
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move {
                    if req.uri().path() == "/reload" {
                        return Ok::<_, Infallible>(reload(&state, &req).await);
                    }
                    Ok::<_, Infallible>(route(&state, req))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

type AdminResponse = Response<Full<Bytes>>;

fn route(state: &AdminState, req: Request<Incoming>) -> AdminResponse {
    let query = parse_query(req.uri().query());
    let path = req.uri().path();
    let mutating = matches!(
        path,
        "/quitquitquit"
            | "/healthcheck/fail"
            | "/healthcheck/ok"
            | "/drain_listeners"
            | "/degraded"
    );
    if mutating && req.method() != Method::POST {
        // Envoy: mutating endpoints need POST; a GET does nothing and gets 400.
        return text(StatusCode::BAD_REQUEST, "This endpoint requires POST\n");
    }
    let format = query.get("format").map(String::as_str);
    match path {
        "/ready" => {
            let phase = state.lifecycle.envoy_state();
            let status = if phase == crate::lifecycle::Phase::Live {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, &format!("{}\n", phase.envoy_name()))
        }
        "/server_info" => json(&info::server_info(state)),
        "/clusters" if format == Some("json") => json(&clusters::json(&state.snapshot.load())),
        "/clusters" => text(StatusCode::OK, &clusters::text(&state.snapshot.load())),
        "/listeners" if format == Some("json") => json(&info::listeners_json(state)),
        "/listeners" => text(StatusCode::OK, &info::listeners_text(state)),
        "/stats/prometheus" => stats(state, &query, Some("prometheus")),
        "/stats" => stats(state, &query, format),
        "/config_dump" => json(&info::config_dump(state)),
        "/degraded" => degraded(state, &query),
        "/drain_listeners" => {
            drain_listeners(
                state,
                query.contains_key("graceful"),
                query.contains_key("inboundonly"),
            );
            text(StatusCode::OK, "OK\n")
        }
        "/healthcheck/fail" => {
            state.lifecycle.set_health_check_failed(true);
            text(StatusCode::OK, "OK\n")
        }
        "/healthcheck/ok" => {
            state.lifecycle.set_health_check_failed(false);
            text(StatusCode::OK, "OK\n")
        }
        "/quitquitquit" => {
            state.quit.cancel();
            text(StatusCode::OK, "OK\n")
        }
        "/" | "/help" => text(StatusCode::OK, HELP),
        _ => text(
            StatusCode::NOT_FOUND,
            &format!("invalid path: {path}\n{HELP}"),
        ),
    }
}

/// hale's `POST /reload`: reads the config file again and applies it;
/// answers with the outcome as JSON once the reload is over (200 applied
/// or unchanged, 400 rejected, with every error).
async fn reload(state: &AdminState, req: &Request<Incoming>) -> AdminResponse {
    if req.method() != Method::POST {
        return text(StatusCode::BAD_REQUEST, "This endpoint requires POST\n");
    }
    if state.lifecycle.phase() != crate::lifecycle::Phase::Live {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not reloading: hale is starting or stopping\n",
        );
    }
    let Some(report) = state.reload.reload("admin").await else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not reloading: hale is starting or stopping\n",
        );
    };
    let status = match report.outcome {
        crate::reload::Outcome::Rejected { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let mut resp = json(&serde_json::to_value(&report).unwrap_or_default());
    *resp.status_mut() = status;
    resp
}

/// hale's `POST /degraded?cluster=NAME&mode=on|off|auto`: an operator's
/// degraded-mode setting for one cluster (`auto` follows health).
fn degraded(
    state: &AdminState,
    query: &std::collections::HashMap<String, String>,
) -> AdminResponse {
    let (Some(cluster), Some(mode)) = (query.get("cluster"), query.get("mode")) else {
        return text(
            StatusCode::BAD_REQUEST,
            "usage: POST /degraded?cluster=NAME&mode=on|off|auto\n",
        );
    };
    let Some(mode) = Mode::parse(mode) else {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("unknown mode \"{mode}\": expected on, off or auto\n"),
        );
    };
    let world = state.snapshot.load();
    if !world.degraded_modes.set(cluster, mode) {
        return text(
            StatusCode::NOT_FOUND,
            &format!("unknown cluster \"{cluster}\"\n"),
        );
    }
    tracing::info!(cluster = %cluster, mode = mode.as_str(), "degraded mode set by an operator");
    state.lifecycle.changes().notify();
    let covered = world.listeners.iter().any(|l| {
        l.config
            .http
            .http_filters
            .iter()
            .any(|f| matches!(f, HttpFilter::Degraded(_)))
    });
    if covered {
        text(StatusCode::OK, "OK\n")
    } else {
        text(
            StatusCode::OK,
            "OK (note: no listener runs hale.filters.http.degraded; only the probe \
             server's service for this cluster follows this mode)\n",
        )
    }
}

/// Envoy's `/drain_listeners`: stop accepting on every listener (or only
/// the `INBOUND` ones); with `graceful`, first drain-close their
/// connections over the drain time (Envoy's gradual ramp), then stop.
/// Connections already open are served until they close; hale keeps
/// running.
fn drain_listeners(state: &AdminState, graceful: bool, inbound_only: bool) {
    let drain_time = state.drain_time;
    let world = state.snapshot.load();
    // The direction as the config serving now says (a reload may change it).
    for gate in world
        .listeners
        .iter()
        .filter(|l| !inbound_only || l.config.traffic_direction == TrafficDirection::Inbound)
        .map(|l| &l.gate)
    {
        tracing::info!(
            listener = %gate.name,
            graceful,
            drain_time_s = drain_time.as_secs(),
            "listener drained by /drain_listeners"
        );
        if graceful {
            gate.start_drain(drain_time);
            let gate = Arc::clone(gate);
            tokio::spawn(async move {
                tokio::time::sleep(drain_time).await;
                gate.stop_accepting.cancel();
            });
        } else {
            gate.stop_accepting.cancel();
        }
    }
    state.lifecycle.changes().notify();
}

const HELP: &str = "admin commands are:
  /: this help
  /clusters: upstream cluster status (?format=json)
  /config_dump: dump the running configuration
  /degraded (POST): set a cluster's degraded mode (?cluster=NAME&mode=on|off|auto)
  /drain_listeners (POST): drain listeners (?graceful, ?inboundonly)
  /healthcheck/fail (POST): cause the server to fail health checks
  /healthcheck/ok (POST): cause the server to pass health checks
  /reload (POST): read the config file again and apply it (hale)
  /listeners: print listener info (?format=json)
  /quitquitquit (POST): exit the server
  /ready: print server state, return 200 if LIVE, otherwise return 503
  /server_info: print server version/status information
  /stats: print server stats (?format=json|prometheus, ?filter=REGEX, ?usedonly)
  /stats/prometheus: print server stats in prometheus format
";

fn stats(
    state: &AdminState,
    query: &HashMap<String, String>,
    format: Option<&str>,
) -> AdminResponse {
    info::refresh_server_gauges(state);
    let filter = match query.get("filter").map(|f| regex::Regex::new(f)) {
        None => None,
        Some(Ok(re)) => Some(re),
        Some(Err(e)) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("invalid filter regex: {e}\n"),
            );
        }
    };
    let used_only = query.contains_key("usedonly");
    match format {
        Some("json") => json(&state.store.render_json(filter.as_ref(), used_only)),
        Some("prometheus") => {
            let mut resp = text(
                StatusCode::OK,
                &state.store.render_prometheus(filter.as_ref(), used_only),
            );
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        None | Some("text") => text(
            StatusCode::OK,
            &state.store.render_text(filter.as_ref(), used_only),
        ),
        Some(other) => text(
            StatusCode::BAD_REQUEST,
            &format!("unknown format: {other}\n"),
        ),
    }
}

fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(kv), String::new()),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn text(status: StatusCode, body: &str) -> AdminResponse {
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    resp
}

fn json(value: &serde_json::Value) -> AdminResponse {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_decodes() {
        let q = parse_query(Some("filter=cluster%5C.backend&usedonly&format=json"));
        assert_eq!(q["filter"], "cluster\\.backend");
        assert_eq!(q["usedonly"], "");
        assert_eq!(q["format"], "json");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
