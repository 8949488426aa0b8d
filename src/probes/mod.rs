//! The probe server (`bootstrap_extensions` `hale.health_server`): one port,
//! on a runtime thread of its own so a saturated data path cannot starve
//! it, answering HTTP `GET /livez`, `/readyz`, `/startupz` (200 or 503 with
//! a JSON body naming every check) and gRPC `grpc.health.v1.Health` (h2c).
//!
//! Owns: the socket, the protocol dispatch, and the task that republishes
//! the gRPC statuses on every change signal (and on a short tick, for
//! liveness, which changes by time passing).
//! Must not touch: the rules (`report.rs`) or anything on the data path.

mod grpc;
pub mod report;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_server::HealthServer;
use tower_service::Service;

pub use report::ProbeState;

use grpc::{HealthService, Statuses};

type Body = tonic::body::Body;

/// Serves probes on `listener` until `stop`; run on the probe runtime.
pub async fn serve(listener: TcpListener, state: Arc<ProbeState>, stop: CancellationToken) {
    let (statuses_tx, statuses) = watch::channel::<Statuses>(Arc::new(state.statuses()));
    tokio::spawn(republish(Arc::clone(&state), statuses_tx, stop.clone()));
    let grpc = HealthServer::new(HealthService::new(Arc::clone(&state), statuses));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _peer)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let grpc = grpc.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let state = Arc::clone(&state);
                let mut grpc = grpc.clone();
                async move {
                    if req.uri().path().starts_with("/grpc.health.v1.Health/") {
                        grpc.call(req).await
                    } else {
                        Ok::<_, Infallible>(http(&state, &req))
                    }
                }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                }
            }
        });
    }
}

/// Republishes the gRPC statuses on every change signal, and on a tick so
/// a liveness failure (silence, not an event) is seen within a tenth of
/// `max_stall`.
async fn republish(
    state: Arc<ProbeState>,
    statuses: watch::Sender<Statuses>,
    stop: CancellationToken,
) {
    let mut changes = state.lifecycle.changes().subscribe();
    loop {
        // Read each time: a reload may change `max_stall`.
        let tick = (state.with_policy(|p| p.max_stall) / 10)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let now = state.statuses();
        statuses.send_if_modified(|published| {
            if **published == now {
                false
            } else {
                *published = Arc::new(now);
                true
            }
        });
        tokio::select! {
            () = stop.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(tick) => {}
        }
    }
}

fn http(state: &ProbeState, req: &Request<Incoming>) -> Response<Body> {
    let report = match req.uri().path() {
        "/livez" => state.liveness(),
        "/readyz" => state.readiness(),
        "/startupz" => state.startup(),
        _ => {
            return plain(
                StatusCode::NOT_FOUND,
                "probe endpoints are /livez, /readyz and /startupz, and grpc.health.v1.Health\n",
            );
        }
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "probes answer GET and HEAD\n",
        );
    }
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    respond(status, "application/json", report.json())
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", text.to_string())
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::new(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache, max-age=0"),
    );
    resp
}

#[cfg(test)]
mod tests;
