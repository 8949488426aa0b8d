//! Route configs: virtual hosts and their domains, routes, matchers, actions.
//!
//! Owns: an inline `route_config` of an HTTP connection manager: domain
//! patterns and their uniqueness, path and header matchers (regexes compiled
//! here, anchored), forward and direct-response actions, and the check that
//! a forward names a defined cluster.
//!
//! Must not touch: listeners or clusters themselves.

use bytes::Bytes;

use super::{UniqueNames, each, one_of, owned_string, zero_disables};
use crate::config::envoy::messages::{
    DATA_SOURCE, DIRECT_RESPONSE_ACTION, GOOGLE_RE2, HEADER_MATCHER, REGEX_MATCHER, ROUTE,
    ROUTE_ACTION, ROUTE_CONFIGURATION, ROUTE_MATCH, STRING_MATCHER, VIRTUAL_HOST,
};
use crate::config::envoy::reader::{Node, Place, Sink};
use crate::config::model::{
    DEFAULT_BUFFER_LIMIT_BYTES, DEFAULT_ROUTE_TIMEOUT, DirectResponse, DomainPattern,
    ForwardAction, HeaderMatcher, HeaderRule, PathMatch, Route, RouteAction, RouteConfig,
    RouteMatch, RoutingPriority, StringMatcher, StringPattern, VirtualHost,
};

/// Envoy: `max_direct_response_body_size_bytes` defaults to 4096.
const MAX_DIRECT_RESPONSE_BODY: usize = 4096;

/// A domain claimed by a virtual host, to reject it in another.
struct ClaimedDomain<'a> {
    domain: String,
    virtual_host: &'a str,
    place: Place,
}

/// Decodes an inline `route_config`; `clusters` are the defined cluster names.
pub(super) fn route_config(
    sink: &mut Sink,
    node: &Node<'_>,
    clusters: &UniqueNames<'_>,
) -> Option<RouteConfig> {
    let config = node.open(sink, &ROUTE_CONFIGURATION)?;
    let name = config.optional(sink, "name", String::new(), owned_string);
    let mut names = UniqueNames::new("virtual host");
    let mut domains = Vec::new();
    let virtual_hosts = config.optional(sink, "virtual_hosts", vec![], |list, sink| {
        each(sink, list, |sink, item| {
            virtual_host(sink, item, &mut names, &mut domains, clusters)
        })
    });
    Some(RouteConfig {
        name: name?,
        virtual_hosts: virtual_hosts?,
    })
}

fn virtual_host<'a>(
    sink: &mut Sink,
    node: &Node<'a>,
    names: &mut UniqueNames<'a>,
    claimed: &mut Vec<ClaimedDomain<'a>>,
    clusters: &UniqueNames<'_>,
) -> Option<VirtualHost> {
    let host = node.open(sink, &VIRTUAL_HOST)?;
    let name = host.require(sink, "name").and_then(|node| {
        let name = node.non_empty_string(sink)?;
        names.claim(sink, name, node.place());
        Some(name)
    });
    let domains = host.require(sink, "domains").and_then(|list| {
        let patterns = each(sink, &list, |sink, item| {
            let text = item.string(sink)?;
            let pattern = domain_pattern(sink, item, text)?;
            claim_domain(sink, claimed, name.unwrap_or(""), item.place(), text);
            Some(pattern)
        })?;
        if patterns.is_empty() {
            list.report(sink, "a virtual host needs at least one domain");
            return None;
        }
        Some(patterns)
    });
    let routes = host.optional(sink, "routes", vec![], |list, sink| {
        each(sink, list, |sink, item| route(sink, item, clusters))
    });
    Some(VirtualHost {
        name: name?.to_string(),
        domains: domains?,
        routes: routes?,
    })
}

/// Classifies a domain as Envoy matches it: `*`, `*suffix`, `prefix*`, exact.
fn domain_pattern(sink: &mut Sink, node: &Node<'_>, text: &str) -> Option<DomainPattern> {
    let domain = text.to_ascii_lowercase();
    let pattern = if domain == "*" {
        DomainPattern::Any
    } else if let Some(suffix) = domain.strip_prefix('*') {
        DomainPattern::Suffix(suffix.to_string())
    } else if let Some(prefix) = domain.strip_suffix('*') {
        DomainPattern::Prefix(prefix.to_string())
    } else {
        DomainPattern::Exact(domain.clone())
    };
    let inner = match &pattern {
        DomainPattern::Any => "",
        DomainPattern::Exact(inner)
        | DomainPattern::Suffix(inner)
        | DomainPattern::Prefix(inner) => inner,
    };
    if domain.is_empty() {
        node.report(sink, "a domain must not be empty");
        None
    } else if inner.contains('*') {
        node.report(
            sink,
            format!(
                "invalid domain \"{text}\": a wildcard \"*\" may only be the whole domain, \
                 its first character or its last"
            ),
        );
        None
    } else if inner.chars().any(|c| c.is_whitespace() || c.is_control()) {
        node.report(
            sink,
            format!("invalid domain \"{text}\": contains whitespace"),
        );
        None
    } else {
        Some(pattern)
    }
}

/// Envoy rejects a route config where one domain (compared without case)
/// appears twice, which also allows only one `*` virtual host.
fn claim_domain<'a>(
    sink: &mut Sink,
    claimed: &mut Vec<ClaimedDomain<'a>>,
    virtual_host: &'a str,
    at: &Place,
    text: &str,
) {
    let domain = text.to_ascii_lowercase();
    match claimed.iter().find(|claim| claim.domain == domain) {
        Some(first) if domain == "*" => sink.report(
            at,
            format!(
                "only one virtual host may use the \"*\" wildcard; virtual host \"{}\" \
                 already does at {}",
                first.virtual_host,
                first.place.path()
            ),
        ),
        Some(first) => sink.report(
            at,
            format!(
                "domain \"{text}\" is already used by virtual host \"{}\" at {}; Envoy \
                 rejects a domain used twice in one route_config",
                first.virtual_host,
                first.place.path()
            ),
        ),
        None => claimed.push(ClaimedDomain {
            domain,
            virtual_host,
            place: at.clone(),
        }),
    }
}

fn route(sink: &mut Sink, node: &Node<'_>, clusters: &UniqueNames<'_>) -> Option<Route> {
    let route = node.open(sink, &ROUTE)?;
    let name = route.optional(sink, "name", String::new(), owned_string);
    let matcher = route
        .require(sink, "match")
        .and_then(|node| route_match(sink, &node));
    let regex_path = matches!(
        &matcher,
        Some(RouteMatch {
            path: PathMatch::Regex(_),
            ..
        })
    );
    const ACTIONS: &[&str] = &[
        "route",
        "direct_response",
        "redirect",
        "filter_action",
        "non_forwarding_action",
    ];
    let action = match one_of(
        sink,
        &route,
        ACTIONS,
        "a route needs \"route\" or \"direct_response\"",
    ) {
        Some(("route", node)) => {
            forward(sink, &node, regex_path, clusters).map(RouteAction::Forward)
        }
        Some(("direct_response", node)) => {
            direct_response(sink, &node).map(RouteAction::DirectResponse)
        }
        _ => None, // missing, or an unsupported action (both reported)
    };
    Some(Route {
        name: name?,
        matcher: matcher?,
        action: action?,
    })
}

fn route_match(sink: &mut Sink, node: &Node<'_>) -> Option<RouteMatch> {
    let matcher = node.open(sink, &ROUTE_MATCH)?;
    const PATHS: &[&str] = &[
        "prefix",
        "path",
        "safe_regex",
        "path_separated_prefix",
        "connect_matcher",
        "path_match_policy",
    ];
    let missing = "a route match needs one of \"prefix\", \"path\" or \"safe_regex\"";
    let path = match one_of(sink, &matcher, PATHS, missing) {
        Some(("prefix", node)) => owned_string(&node, sink).map(PathMatch::Prefix),
        Some(("path", node)) => owned_string(&node, sink).map(PathMatch::Path),
        Some(("safe_regex", node)) => regex(sink, &node).map(PathMatch::Regex),
        _ => None,
    };
    let case_sensitive = matcher.optional(sink, "case_sensitive", true, |node, sink| {
        node.bool_wrapper(sink)
    });
    let headers = matcher.optional(sink, "headers", vec![], |list, sink| {
        each(sink, list, header_matcher)
    });
    Some(RouteMatch {
        path: path?,
        case_sensitive: case_sensitive?,
        headers: headers?,
    })
}

/// A `RegexMatcher`, compiled anchored: Envoy matches the whole value.
fn regex(sink: &mut Sink, node: &Node<'_>) -> Option<regex::Regex> {
    let matcher = node.open(sink, &REGEX_MATCHER)?;
    // `google_re2: {}` is the deprecated engine marker; RE2 is the only engine.
    let engine = matcher.optional(sink, "google_re2", (), |node, sink| {
        node.open(sink, &GOOGLE_RE2).map(drop)
    });
    let pattern_node = matcher.require(sink, "regex")?;
    let pattern = pattern_node.non_empty_string(sink)?;
    // Compile as written first so the error points into the user's pattern.
    let compiled =
        regex::Regex::new(pattern).and_then(|_| regex::Regex::new(&format!("^(?:{pattern})$")));
    match compiled {
        Ok(compiled) => engine.map(|()| compiled),
        Err(error) => {
            let reason = error.to_string();
            let reason = reason
                .lines()
                .last()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            pattern_node.report(sink, format!("invalid regex \"{pattern}\": {reason}"));
            None
        }
    }
}

fn header_matcher(sink: &mut Sink, node: &Node<'_>) -> Option<HeaderMatcher> {
    let matcher = node.open(sink, &HEADER_MATCHER)?;
    let name = matcher.require(sink, "name").and_then(|node| {
        let name = node.non_empty_string(sink)?;
        if name
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            node.report(sink, format!("invalid header name \"{name}\""));
            return None;
        }
        Some(name.to_ascii_lowercase())
    });
    const RULES: &[&str] = &[
        "string_match",
        "present_match",
        "exact_match",
        "safe_regex_match",
        "range_match",
        "prefix_match",
        "suffix_match",
        "contains_match",
    ];
    // Envoy: a header matcher with no rule matches when the header is present.
    let rule = if matcher.set_among(RULES).is_empty() {
        Some(HeaderRule::Present(true))
    } else {
        match one_of(sink, &matcher, RULES, "") {
            Some(("string_match", node)) => string_matcher(sink, &node).map(HeaderRule::Value),
            Some(("present_match", node)) => node.bool(sink).map(HeaderRule::Present),
            _ => None, // a deprecated or unsupported rule (reported)
        }
    };
    let invert = matcher.optional(sink, "invert_match", false, |node, sink| node.bool(sink));
    Some(HeaderMatcher {
        name: name?,
        rule: rule?,
        invert: invert?,
    })
}

fn string_matcher(sink: &mut Sink, node: &Node<'_>) -> Option<StringMatcher> {
    let matcher = node.open(sink, &STRING_MATCHER)?;
    const PATTERNS: &[&str] = &[
        "exact",
        "prefix",
        "suffix",
        "contains",
        "safe_regex",
        "custom",
    ];
    let missing = "a string matcher needs one of \"exact\", \"prefix\", \"suffix\", \
                   \"contains\" or \"safe_regex\"";
    // Envoy: prefix, suffix and contains must not be empty; exact may be.
    let pattern = match one_of(sink, &matcher, PATTERNS, missing) {
        Some(("exact", node)) => owned_string(&node, sink).map(StringPattern::Exact),
        Some(("prefix", node)) => non_empty(sink, &node).map(StringPattern::Prefix),
        Some(("suffix", node)) => non_empty(sink, &node).map(StringPattern::Suffix),
        Some(("contains", node)) => non_empty(sink, &node).map(StringPattern::Contains),
        Some(("safe_regex", node)) => regex(sink, &node).map(StringPattern::Regex),
        _ => None,
    };
    let ignore_case = matcher.optional(sink, "ignore_case", false, |node, sink| node.bool(sink));
    Some(StringMatcher {
        pattern: pattern?,
        ignore_case: ignore_case?,
    })
}

fn non_empty(sink: &mut Sink, node: &Node<'_>) -> Option<String> {
    node.non_empty_string(sink).map(str::to_string)
}

fn forward(
    sink: &mut Sink,
    node: &Node<'_>,
    regex_path: bool,
    clusters: &UniqueNames<'_>,
) -> Option<ForwardAction> {
    let action = node.open(sink, &ROUTE_ACTION)?;
    const TARGETS: &[&str] = &[
        "cluster",
        "cluster_header",
        "weighted_clusters",
        "cluster_specifier_plugin",
        "inline_cluster_specifier_plugin",
    ];
    let cluster = if action.set_among(TARGETS).is_empty() {
        sink.report(&action.place().absent("cluster"), "missing required field");
        None
    } else {
        match one_of(sink, &action, TARGETS, "") {
            Some(("cluster", node)) => node.non_empty_string(sink).and_then(|name| {
                if clusters.contains(name) {
                    Some(name.to_string())
                } else {
                    node.report(
                        sink,
                        format!("cluster \"{name}\" is not defined in static_resources.clusters"),
                    );
                    None
                }
            }),
            _ => None,
        }
    };
    let timeout = action.optional(
        sink,
        "timeout",
        Some(DEFAULT_ROUTE_TIMEOUT),
        |node, sink| node.duration(sink).map(zero_disables),
    );
    let prefix_rewrite = action.optional(sink, "prefix_rewrite", None, |node, sink| {
        let rewrite = node.string(sink)?;
        if regex_path {
            node.report(
                sink,
                "prefix_rewrite cannot be used with a safe_regex match (Envoy rejects it)",
            );
            return None;
        }
        Some(Some(rewrite.to_string()))
    });
    let host_rewrite_literal = action.optional(sink, "host_rewrite_literal", None, |node, sink| {
        non_empty(sink, node).map(Some)
    });
    Some(ForwardAction {
        cluster: cluster?,
        timeout: timeout?,
        prefix_rewrite: prefix_rewrite?,
        host_rewrite_literal: host_rewrite_literal?,
        priority: RoutingPriority::Default,
        retry_policy: None,
        retry_buffer_limit: DEFAULT_BUFFER_LIMIT_BYTES,
    })
}

fn direct_response(sink: &mut Sink, node: &Node<'_>) -> Option<DirectResponse> {
    let action = node.open(sink, &DIRECT_RESPONSE_ACTION)?;
    let status = action.require(sink, "status").and_then(|node| {
        let status = node.u32(sink)?;
        // Envoy's DirectResponseAction validation: 200 <= status < 600.
        match u16::try_from(status) {
            Ok(status) if (200..=599).contains(&status) => Some(status),
            _ => {
                node.report(
                    sink,
                    format!("status {status} is out of range: Envoy allows 200 to 599"),
                );
                None
            }
        }
    });
    let body = action.optional(sink, "body", None, |node, sink| body(sink, node).map(Some));
    Some(DirectResponse {
        status: status?,
        body: body?,
    })
}

/// A `DataSource` given inline (files and environment variables are not read).
fn body(sink: &mut Sink, node: &Node<'_>) -> Option<Bytes> {
    let source = node.open(sink, &DATA_SOURCE)?;
    const SPECIFIERS: &[&str] = &[
        "inline_string",
        "inline_bytes",
        "filename",
        "environment_variable",
    ];
    let missing = "a body needs \"inline_string\" or \"inline_bytes\"";
    let (bytes, at) = match one_of(sink, &source, SPECIFIERS, missing) {
        Some(("inline_string", node)) => {
            (Bytes::copy_from_slice(node.string(sink)?.as_bytes()), node)
        }
        Some(("inline_bytes", node)) => (Bytes::from(node.base64(sink)?), node),
        _ => return None,
    };
    if bytes.len() > MAX_DIRECT_RESPONSE_BODY {
        at.report(
            sink,
            format!(
                "the body is {} bytes; Envoy's limit for a direct response body is \
                 {MAX_DIRECT_RESPONSE_BODY} bytes",
                bytes.len()
            ),
        );
        return None;
    }
    Some(bytes)
}
