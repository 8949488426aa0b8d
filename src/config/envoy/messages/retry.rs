//! The Envoy messages of retries, with their fields.
//!
//! Owns: `config.route.v3.RetryPolicy` and the messages it reaches
//! (`RetryBackOff`, `RetryHostPredicate` and the one predicate hale has,
//! `PreviousHostsPredicate`), and a circuit breaker's
//! `Thresholds.RetryBudget`, split out of `messages` to keep each table file
//! short. Field lists are data-plane-api's.
//!
//! Must not touch: behaviour, as for every table in `messages`.

use super::Message;

/// `envoy.config.route.v3.RetryPolicy`.
pub(crate) const RETRY_POLICY: Message = Message {
    name: "RetryPolicy",
    supported: "retry_on num_retries per_try_timeout retry_host_predicate \
        host_selection_retry_max_attempts retriable_status_codes retry_back_off \
        retriable_headers retriable_request_headers",
    unsupported: "per_try_idle_timeout retry_priority retry_options_predicates \
        rate_limited_retry_back_off",
    notes: &[],
};

/// `envoy.config.route.v3.RetryPolicy.RetryBackOff`.
pub(crate) const RETRY_BACK_OFF: Message = Message {
    name: "RetryBackOff",
    supported: "base_interval max_interval",
    unsupported: "",
    notes: &[],
};

/// `envoy.config.route.v3.RetryPolicy.RetryHostPredicate`.
pub(crate) const RETRY_HOST_PREDICATE: Message = Message {
    name: "RetryHostPredicate",
    supported: "name typed_config",
    unsupported: "",
    notes: &[],
};

/// `envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate`,
/// which has no fields.
pub(crate) const PREVIOUS_HOSTS_PREDICATE: Message = Message {
    name: "PreviousHostsPredicate",
    supported: "",
    unsupported: "",
    notes: &[],
};

/// `envoy.config.cluster.v3.CircuitBreakers.Thresholds.RetryBudget`.
pub(crate) const RETRY_BUDGET: Message = Message {
    name: "RetryBudget",
    supported: "budget_percent min_retry_concurrency",
    unsupported: "",
    notes: &[],
};
