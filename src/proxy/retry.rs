//! Route retries as Envoy's router makes them: which outcomes of an attempt
//! are retried (`retry_on`), how many times (`num_retries`), the jittered
//! exponential back-off between attempts, the hosts a retry avoids
//! (`previous_hosts`), and the `upstream_rq_retry*` accounting.
//!
//! Owns: the retry decision of one request. Must not touch: sending, the
//! request body (the caller knows whether it can be sent again) or the
//! reply.

use std::time::Duration;

use http::HeaderMap;

use super::breaker::{Breakers, Permit};
use super::router::{header_value, matcher_holds};
use crate::config::model::{HeaderMatcher, RetryOn, RetryPolicy, RoutingPriority};
use crate::stats::{Counter, Scope, StatusCounters};

/// How an attempt failed without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection could not be made (refused, timed out).
    ConnectFailed,
    /// The upstream reset or closed the request before answering.
    Reset,
    /// HTTP/2 REFUSED_STREAM: the upstream did not process the request.
    RefusedStream,
    /// The try's `per_try_timeout` passed.
    PerTryTimeout,
}

/// The retry counters of one cluster (Envoy's names).
#[derive(Debug)]
pub struct RetryStats {
    /// `upstream_rq_retry`: retries made.
    pub retry: Counter,
    /// `upstream_rq_retry_success`: retried requests whose last attempt was
    /// not retried again.
    pub success: Counter,
    /// `upstream_rq_retry_limit_exceeded`: a retriable outcome with no
    /// retries left.
    pub limit_exceeded: Counter,
    /// `upstream_rq_retry_backoff_exponential`: back-offs waited.
    pub backoff_exponential: Counter,
    /// `upstream_rq_per_try_timeout`.
    pub per_try_timeout: Counter,
    /// `retry.upstream_rq_<code>` / `_<N>xx`: responses that were retried.
    pub retried_responses: StatusCounters,
}

impl RetryStats {
    /// The counters under `scope`.
    pub fn new(scope: &Scope) -> Self {
        Self {
            retry: scope.counter("upstream_rq_retry"),
            success: scope.counter("upstream_rq_retry_success"),
            limit_exceeded: scope.counter("upstream_rq_retry_limit_exceeded"),
            backoff_exponential: scope.counter("upstream_rq_retry_backoff_exponential"),
            per_try_timeout: scope.counter("upstream_rq_per_try_timeout"),
            retried_responses: StatusCounters::new(scope, "retry.upstream_rq"),
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this back-off.
    Retry(Duration),
    /// Hand the outcome to the client.
    Done,
}

/// The retry state of one request.
#[derive(Debug)]
pub struct Retries<'p> {
    policy: &'p RetryPolicy,
    left: u32,
    // Ceiling of the next back-off draw, doubling up to the maximum.
    next_interval: Duration,
    // Hosts tried so far (by index), for `previous_hosts`.
    tried: Vec<usize>,
    // A retry was made and its attempt is the current one: holds its
    // `max_retries` unit until the attempt's outcome is decided.
    in_flight: Option<Permit>,
}

const X_ENVOY_OVERLOADED: &str = "x-envoy-overloaded";
const X_ENVOY_RATELIMITED: &str = "x-envoy-ratelimited";

impl<'p> Retries<'p> {
    /// A request under `policy`, before its first attempt.
    pub fn new(policy: &'p RetryPolicy) -> Self {
        Self {
            policy,
            left: policy.num_retries,
            next_interval: policy.back_off_base,
            tried: Vec::new(),
            in_flight: None,
        }
    }

    /// Whether the policy lets this request be retried at all: it has
    /// conditions and retries, and it matches `retriable_request_headers`
    /// (when set).
    pub fn applies(
        policy: &RetryPolicy,
        request_matches: impl Fn(&[HeaderMatcher]) -> bool,
    ) -> bool {
        policy.num_retries > 0
            && policy.retry_on != RetryOn::default()
            && (policy.retriable_request_headers.is_empty()
                || request_matches(&policy.retriable_request_headers))
    }

    /// Remembers that an attempt went to host `index`.
    pub fn tried(&mut self, index: usize) {
        if self.policy.previous_hosts && !self.tried.contains(&index) {
            self.tried.push(index);
        }
    }

    /// Whether a pick of host `index` should be redone (`previous_hosts`).
    pub fn avoids(&self, index: usize) -> bool {
        self.tried.contains(&index)
    }

    /// How many times a pick the predicate rejects is redone.
    pub fn reselect_attempts(&self) -> u32 {
        if self.tried.is_empty() {
            0
        } else {
            self.policy.host_selection_retry_max_attempts
        }
    }

    /// Whether `retry_on` covers a response with `status` and `headers`.
    pub fn response_retriable(&self, status: u16, headers: &HeaderMap) -> bool {
        let on = self.policy.retry_on;
        // Envoy never retries a response that says the upstream is
        // overloaded, and retries a rate-limited one only when asked to.
        if headers.contains_key(X_ENVOY_OVERLOADED) {
            return false;
        }
        if headers.contains_key(X_ENVOY_RATELIMITED) {
            return on.contains(RetryOn::ENVOY_RATELIMITED);
        }
        if on.contains(RetryOn::FIVE_XX) && (500..600).contains(&status) {
            return true;
        }
        if on.contains(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504) {
            return true;
        }
        if on.contains(RetryOn::RETRIABLE_4XX) && status == 409 {
            return true;
        }
        if on.contains(RetryOn::RETRIABLE_STATUS_CODES)
            && self.policy.retriable_status_codes.contains(&status)
        {
            return true;
        }
        if on.contains(RetryOn::RETRIABLE_HEADERS)
            && self.policy.retriable_headers.iter().any(|m| {
                let status_text;
                let mut joined = String::new();
                let value = if m.name == ":status" {
                    status_text = status.to_string();
                    Some(status_text.as_str())
                } else {
                    header_value(headers, &m.name, &mut joined)
                };
                matcher_holds(m, value)
            })
        {
            return true;
        }
        grpc_retriable(on, headers)
    }

    /// Whether `retry_on` covers an attempt that failed without a response.
    pub fn failure_retriable(&self, failure: Failure) -> bool {
        let on = self.policy.retry_on;
        let no_response = RetryOn::FIVE_XX
            .with(RetryOn::GATEWAY_ERROR)
            .with(RetryOn::RESET);
        match failure {
            Failure::ConnectFailed => {
                on.contains(RetryOn::CONNECT_FAILURE) || on.intersects(no_response)
            }
            Failure::RefusedStream => {
                on.contains(RetryOn::REFUSED_STREAM) || on.intersects(no_response)
            }
            Failure::Reset | Failure::PerTryTimeout => on.intersects(no_response),
        }
    }

    /// Envoy's `shouldRetry`: given whether the outcome is retriable, counts
    /// and decides. A retry takes a retry unit of the cluster's breakers
    /// (held until the next decision) and draws its back-off.
    pub fn decide(
        &mut self,
        retriable: bool,
        breakers: &std::sync::Arc<Breakers>,
        priority: RoutingPriority,
        stats: &RetryStats,
    ) -> Decision {
        if self.in_flight.take().is_some() && !retriable {
            stats.success.inc();
        }
        if !retriable {
            return Decision::Done;
        }
        if self.left == 0 {
            stats.limit_exceeded.inc();
            return Decision::Done;
        }
        self.left -= 1;
        let Some(permit) = breakers.retry(priority) else {
            return Decision::Done;
        };
        self.in_flight = Some(permit);
        stats.retry.inc();
        stats.backoff_exponential.inc();
        Decision::Retry(self.next_backoff())
    }

    /// Envoy's fully jittered exponential back-off: uniform in
    /// `[0, interval)`, the interval doubling from the base up to the max.
    fn next_backoff(&mut self) -> Duration {
        let interval = self.next_interval;
        self.next_interval = (interval * 2).min(self.policy.back_off_max);
        let ceiling = u64::try_from(interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(rand::random_range(0..ceiling))
    }
}

/// Whether a trailers-only gRPC answer carries a status `retry_on` names.
fn grpc_retriable(on: RetryOn, headers: &HeaderMap) -> bool {
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return false;
    };
    let wanted = match code {
        1 => RetryOn::GRPC_CANCELLED,
        4 => RetryOn::GRPC_DEADLINE_EXCEEDED,
        8 => RetryOn::GRPC_RESOURCE_EXHAUSTED,
        13 => RetryOn::GRPC_INTERNAL,
        14 => RetryOn::GRPC_UNAVAILABLE,
        _ => return false,
    };
    on.contains(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{
        CircuitBreakers, HeaderMatcher, HeaderRule, StringMatcher, StringPattern, Thresholds,
    };
    use crate::stats::Store;

    fn policy(on: RetryOn) -> RetryPolicy {
        RetryPolicy {
            retry_on: on,
            num_retries: 2,
            per_try_timeout: None,
            back_off_base: Duration::from_millis(25),
            back_off_max: Duration::from_millis(250),
            retriable_status_codes: vec![418],
            retriable_headers: vec![HeaderMatcher {
                name: "x-retry-me".into(),
                rule: HeaderRule::Value(StringMatcher {
                    pattern: StringPattern::Exact("yes".into()),
                    ignore_case: false,
                }),
                invert: false,
            }],
            retriable_request_headers: vec![],
            previous_hosts: true,
            host_selection_retry_max_attempts: 3,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn conditions_match_envoys() {
        let none = HeaderMap::new();
        let p = policy(RetryOn::FIVE_XX);
        let r = Retries::new(&p);
        assert!(r.response_retriable(500, &none));
        assert!(r.response_retriable(503, &none));
        assert!(!r.response_retriable(404, &none));
        assert!(!r.response_retriable(503, &headers(&[("x-envoy-overloaded", "true")])));
        assert!(!r.response_retriable(503, &headers(&[("x-envoy-ratelimited", "true")])));
        assert!(r.failure_retriable(Failure::ConnectFailed));
        assert!(r.failure_retriable(Failure::PerTryTimeout));

        let p = policy(RetryOn::GATEWAY_ERROR);
        let r = Retries::new(&p);
        assert!(!r.response_retriable(500, &none));
        assert!(r.response_retriable(502, &none));
        assert!(r.response_retriable(504, &none));
        assert!(r.failure_retriable(Failure::Reset));

        let p = policy(RetryOn::CONNECT_FAILURE);
        let r = Retries::new(&p);
        assert!(r.failure_retriable(Failure::ConnectFailed));
        assert!(!r.failure_retriable(Failure::Reset));
        assert!(!r.failure_retriable(Failure::PerTryTimeout));
        assert!(!r.response_retriable(503, &none));

        let p = policy(RetryOn::REFUSED_STREAM);
        let r = Retries::new(&p);
        assert!(r.failure_retriable(Failure::RefusedStream));
        assert!(!r.failure_retriable(Failure::Reset));

        let p = policy(
            RetryOn::RETRIABLE_4XX
                .with(RetryOn::RETRIABLE_STATUS_CODES)
                .with(RetryOn::RETRIABLE_HEADERS)
                .with(RetryOn::GRPC_UNAVAILABLE),
        );
        let r = Retries::new(&p);
        assert!(r.response_retriable(409, &none));
        assert!(r.response_retriable(418, &none));
        assert!(!r.response_retriable(500, &none));
        assert!(r.response_retriable(200, &headers(&[("x-retry-me", "yes")])));
        assert!(!r.response_retriable(200, &headers(&[("x-retry-me", "no")])));
        assert!(r.response_retriable(200, &headers(&[("grpc-status", "14")])));
        assert!(!r.response_retriable(200, &headers(&[("grpc-status", "13")])));
    }

    #[test]
    fn decisions_count_like_envoy_and_back_off_grows_to_the_max() {
        let store = Store::new();
        let scope =
            crate::stats::Scope::tagged(store.clone(), "cluster", "c", "envoy_cluster_name");
        let breakers = Breakers::new(
            &CircuitBreakers {
                default: Thresholds::default(),
                high: Thresholds::default(),
            },
            &scope,
        );
        let stats = RetryStats::new(&scope);
        let p = policy(RetryOn::FIVE_XX);
        let mut r = Retries::new(&p);
        let prio = RoutingPriority::Default;
        for _ in 0..2 {
            match r.decide(true, &breakers, prio, &stats) {
                Decision::Retry(wait) => assert!(wait < Duration::from_millis(50)),
                Decision::Done => panic!("expected a retry"),
            }
        }
        // num_retries: 2 spent.
        assert_eq!(r.decide(true, &breakers, prio, &stats), Decision::Done);
        let text = store.render_text(None, false);
        assert!(text.contains("cluster.c.upstream_rq_retry: 2\n"), "{text}");
        assert!(
            text.contains("cluster.c.upstream_rq_retry_limit_exceeded: 1\n"),
            "{text}"
        );
        assert!(
            text.contains("cluster.c.upstream_rq_retry_success: 0\n"),
            "{text}"
        );

        let mut r = Retries::new(&p);
        assert!(matches!(
            r.decide(true, &breakers, prio, &stats),
            Decision::Retry(_)
        ));
        assert_eq!(r.decide(false, &breakers, prio, &stats), Decision::Done);
        assert!(
            store
                .render_text(None, false)
                .contains("cluster.c.upstream_rq_retry_success: 1\n")
        );

        let mut p = policy(RetryOn::FIVE_XX);
        p.num_retries = 10;
        let mut r = Retries::new(&p);
        let ceilings: Vec<Duration> = (0..6)
            .map(|_| {
                let ceiling = r.next_interval;
                let wait = r.next_backoff();
                assert!(wait < ceiling);
                ceiling
            })
            .collect();
        let ms: Vec<u128> = ceilings.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![25, 50, 100, 200, 250, 250]);
    }

    #[test]
    fn previous_hosts_are_avoided_after_the_first_attempt() {
        let p = policy(RetryOn::FIVE_XX);
        let mut r = Retries::new(&p);
        assert_eq!(r.reselect_attempts(), 0);
        r.tried(2);
        assert!(r.avoids(2));
        assert!(!r.avoids(1));
        assert_eq!(r.reselect_attempts(), 3);
    }
}
