//! The timers of one proxied request, as Envoy's connection manager and
//! router define them, armed as ONE tokio timer at the earliest deadline:
//!
//! - route `timeout`: from the end of the request (its last body byte, or
//!   its headers when it has no body), the response must be done in time (504);
//! - retry policy `per_try_timeout`: the same for one attempt, counted from
//!   the later of the attempt's start and the end of the request (504, or a
//!   retry);
//! - HCM `request_timeout`: the whole request must arrive in time (408);
//! - HCM `stream_idle_timeout`: no stream may go this long without a byte
//!   either way (408 before response headers, a reset after).
//!
//! Owns: deadline arithmetic and request-body progress. Must not touch:
//! sockets or responses (callers turn an [`Expired`] into a reply).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How far a request body has come, written by whoever polls the body
/// (the upstream connection) and read by the request's timers.
#[derive(Debug)]
pub struct RequestProgress {
    epoch: Instant,
    // Milliseconds since `epoch` of the last body frame.
    last_activity_ms: AtomicU64,
    // Set once the body's last byte has been read.
    complete: AtomicBool,
}

impl RequestProgress {
    /// Progress of a body that starts now.
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            last_activity_ms: AtomicU64::new(0),
            complete: AtomicBool::new(false),
        }
    }

    /// A frame passed.
    pub fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// The body is over.
    pub fn finish(&self) {
        self.touch();
        self.complete.store(true, Ordering::Relaxed);
    }

    /// Records what polling the downstream body gave: a frame moves the
    /// clock; the end, an error or the last frame (`ended_after`) finish it.
    pub fn record<T, E>(&self, polled: &std::task::Poll<Option<Result<T, E>>>, ended_after: bool) {
        use std::task::Poll;
        match polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Ready(Some(Ok(_))) if ended_after => self.finish(),
            Poll::Ready(Some(Ok(_))) => self.touch(),
            Poll::Pending => {}
        }
    }

    /// Whether the body's last byte has been read.
    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Relaxed)
    }

    fn last_activity(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed))
    }
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// The route timeout (504 `upstream request timeout`).
    Route,
    /// The attempt's `per_try_timeout` (a retry, or 504).
    PerTry,
    /// The request did not arrive in time (408 `request timeout`).
    Request,
    /// Nothing moved for `stream_idle_timeout` (408 `stream timeout`).
    StreamIdle,
}

/// The deadlines of one request while it waits for response headers.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// When the request started.
    pub started: Instant,
    /// Route timeout, counted from the end of the request (Envoy).
    pub route: Option<Duration>,
    /// Request timeout deadline (disarmed once the request is complete).
    pub request: Option<Instant>,
    /// Stream idle timeout.
    pub idle: Option<Duration>,
    /// `per_try_timeout` of the route's retry policy.
    pub per_try: Option<Duration>,
    /// When the current attempt started.
    pub attempt_started: Instant,
}

impl Deadlines {
    fn last_activity(&self, progress: Option<&RequestProgress>) -> Instant {
        progress.map_or(self.started, |p| p.last_activity().max(self.started))
    }

    /// The route deadline, once the request is complete (unarmed before).
    pub fn route_deadline(&self, progress: Option<&RequestProgress>) -> Option<Instant> {
        let timeout = self.route?;
        match progress {
            None => Some(self.started + timeout),
            Some(p) if p.is_complete() => Some(p.last_activity().max(self.started) + timeout),
            Some(_) => None,
        }
    }

    /// The current attempt's deadline, once the request is complete.
    pub fn per_try_deadline(&self, progress: Option<&RequestProgress>) -> Option<Instant> {
        let timeout = self.per_try?;
        match progress {
            None => Some(self.attempt_started + timeout),
            Some(p) if p.is_complete() => {
                Some(p.last_activity().max(self.attempt_started) + timeout)
            }
            Some(_) => None,
        }
    }

    /// The deadline a response body must meet: the route's or the
    /// attempt's, whichever is first.
    pub fn response_deadline(&self, progress: Option<&RequestProgress>) -> Option<Instant> {
        [
            self.route_deadline(progress),
            self.per_try_deadline(progress),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn request_pending(&self, progress: Option<&RequestProgress>) -> Option<Instant> {
        // A request without a body is complete with its headers.
        let complete = progress.is_none_or(RequestProgress::is_complete);
        if complete { None } else { self.request }
    }

    /// The earliest deadline still armed.
    pub fn next(&self, progress: Option<&RequestProgress>) -> Option<Instant> {
        let idle = self.idle.map(|d| self.last_activity(progress) + d);
        [
            self.route_deadline(progress),
            self.per_try_deadline(progress),
            self.request_pending(progress),
            idle,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Which deadline has passed at `now`, if any (the route's first).
    pub fn expired(&self, now: Instant, progress: Option<&RequestProgress>) -> Option<Expired> {
        if self.route_deadline(progress).is_some_and(|d| now >= d) {
            return Some(Expired::Route);
        }
        if self.per_try_deadline(progress).is_some_and(|d| now >= d) {
            return Some(Expired::PerTry);
        }
        if self.request_pending(progress).is_some_and(|d| now >= d) {
            return Some(Expired::Request);
        }
        if self
            .idle
            .is_some_and(|d| now >= self.last_activity(progress) + d)
        {
            return Some(Expired::StreamIdle);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn earliest_deadline_wins_and_activity_defers_idleness() {
        let start = Instant::now();
        let d = Deadlines {
            started: start,
            route: Some(Duration::from_secs(15)),
            request: Some(start + Duration::from_secs(2)),
            idle: Some(Duration::from_secs(5)),
            per_try: None,
            attempt_started: start,
        };
        let progress = RequestProgress::new(start);
        assert_eq!(
            d.next(Some(&progress)),
            Some(start + Duration::from_secs(2))
        );

        tokio::time::advance(Duration::from_secs(1)).await;
        progress.finish();
        // The request is complete: its timer is disarmed; idleness counts
        // from the last byte.
        assert_eq!(
            d.next(Some(&progress)),
            Some(start + Duration::from_secs(6))
        );
        assert_eq!(
            d.expired(start + Duration::from_secs(3), Some(&progress)),
            None
        );
        assert_eq!(
            d.expired(start + Duration::from_secs(6), Some(&progress)),
            Some(Expired::StreamIdle)
        );
        assert_eq!(
            d.expired(start + Duration::from_secs(16), Some(&progress)),
            Some(Expired::Route)
        );
        assert_eq!(
            d.route_deadline(Some(&progress)),
            Some(start + Duration::from_secs(16))
        );
        // A body still arriving does not run the route timeout at all.
        let uploading = RequestProgress::new(start);
        assert_eq!(d.route_deadline(Some(&uploading)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_try_times_out_from_its_start_or_the_end_of_the_request() {
        let start = Instant::now();
        let mut d = Deadlines {
            started: start,
            route: Some(Duration::from_secs(10)),
            request: None,
            idle: None,
            per_try: Some(Duration::from_secs(3)),
            attempt_started: start,
        };
        let progress = RequestProgress::new(start);
        // Still uploading: no try deadline yet.
        assert_eq!(d.per_try_deadline(Some(&progress)), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        progress.finish();
        assert_eq!(
            d.next(Some(&progress)),
            Some(start + Duration::from_secs(4))
        );
        assert_eq!(
            d.expired(start + Duration::from_secs(4), Some(&progress)),
            Some(Expired::PerTry)
        );
        // A retry at 5 s: its own 3 s, within the route's 11 s.
        d.attempt_started = start + Duration::from_secs(5);
        assert_eq!(
            d.next(Some(&progress)),
            Some(start + Duration::from_secs(8))
        );
        assert_eq!(
            d.response_deadline(Some(&progress)),
            Some(start + Duration::from_secs(8))
        );
        // The route timeout wins when both have passed.
        assert_eq!(
            d.expired(start + Duration::from_secs(11), Some(&progress)),
            Some(Expired::Route)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_incomplete_request_times_out() {
        let start = Instant::now();
        let d = Deadlines {
            started: start,
            route: None,
            request: Some(start + Duration::from_secs(2)),
            idle: None,
            per_try: None,
            attempt_started: start,
        };
        let progress = RequestProgress::new(start);
        progress.touch();
        assert_eq!(
            d.expired(start + Duration::from_secs(2), Some(&progress)),
            Some(Expired::Request)
        );
        // No body at all: complete with the headers, nothing to time out.
        assert_eq!(d.expired(start + Duration::from_secs(2), None), None);
    }
}
