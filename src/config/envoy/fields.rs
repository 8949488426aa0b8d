//! Envoy's field names, per proto message, as hale sees them.
//!
//! Owns: for each Envoy message hale reads, the fields it supports and every
//! other field that message has in Envoy's v3 API (taken from
//! envoyproxy/data-plane-api), so a known Envoy field that hale does not
//! implement is reported as such rather than as a typo. Also the proto3 JSON
//! spelling of a field name (`port_value` is also `portValue`).
//!
//! Must not touch: values. Which value a field may hold is `validate`'s.
//!
//! The tables themselves are in `messages`; names are whitespace-separated in
//! one string per list so the tables stay readable (and short) under rustfmt.

/// One Envoy message: the fields hale reads and the ones it rejects by name.
#[derive(Debug)]
pub(crate) struct Message {
    /// The message's short name, used in type errors (`expected an object (Envoy Cluster)`).
    pub(crate) name: &'static str,
    pub(super) supported: &'static str,
    pub(super) unsupported: &'static str,
    /// Extra words after "... not supported by hale" for some fields.
    pub(super) notes: &'static [(&'static str, &'static str)],
}

/// What a key of an object is, once matched against its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldKind {
    /// A field hale reads; the snake_case name.
    Supported(&'static str),
    /// A real Envoy field hale does not implement; the snake_case name.
    Unsupported(&'static str),
    /// Not a field of this message at all.
    Unknown,
}

impl Message {
    /// Classifies `key`, written in snake_case or in proto3 JSON camelCase.
    pub(crate) fn classify(&self, key: &str) -> FieldKind {
        if let Some(field) = find(self.supported, key) {
            FieldKind::Supported(field)
        } else if let Some(field) = find(self.unsupported, key) {
            FieldKind::Unsupported(field)
        } else {
            FieldKind::Unknown
        }
    }

    /// The fields hale reads, in snake_case.
    pub(crate) fn supported(&self) -> impl Iterator<Item = &'static str> {
        self.supported.split_ascii_whitespace()
    }

    /// What to add after "not supported by hale" for `field` ("" for most).
    pub(crate) fn note(&self, field: &str) -> &'static str {
        self.notes
            .iter()
            .find(|(name, _)| *name == field)
            .map_or("", |(_, note)| note)
    }
}

fn find(names: &'static str, key: &str) -> Option<&'static str> {
    // Every key of a large file is looked up: the plain comparison first,
    // which finds nearly all of them.
    let mut fields = names.split_ascii_whitespace();
    if let Some(field) = fields.clone().find(|field| *field == key) {
        return Some(field);
    }
    // A proto3 JSON name drops the `_`s and upper-cases what follows them,
    // so it has an upper-case letter or a digit where the field has `_`.
    if !key
        .bytes()
        .any(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return None;
    }
    fields.find(|field| spelled_as(field, key))
}

/// Whether `key` names `field` in either of the spellings Envoy accepts:
/// the proto name (`port_value`) or its proto3 JSON name (`portValue`).
pub(crate) fn spelled_as(field: &str, key: &str) -> bool {
    // The JSON name is shorter unless it is the field name itself.
    field == key || (key.len() < field.len() && json_chars(field).eq(key.chars()))
}

/// [`json_name`] without the allocation: every key of a large file is
/// compared with several field names.
fn json_chars(field: &str) -> impl Iterator<Item = char> + '_ {
    let mut upper_next = false;
    field.chars().filter_map(move |c| {
        if c == '_' {
            upper_next = true;
            None
        } else if upper_next {
            upper_next = false;
            Some(c.to_ascii_uppercase())
        } else {
            Some(c)
        }
    })
}

/// protoc's JSON name: drop each `_` and upper-case the character after it.
#[cfg(test)]
pub(crate) fn json_name(field: &str) -> String {
    json_chars(field).collect::<String>()
}

/// The error for a key that is no field of `message`, with a did-you-mean
/// when a supported field is a typo away.
pub(crate) fn unknown_field(key: &str, message: &Message) -> String {
    let snake = snake_case(key);
    let suggestion = message
        .supported()
        .map(|field| (edit_distance(&snake, field), field))
        .filter(|(distance, field)| *distance <= 2 && *distance * 3 < field.len())
        .min_by_key(|(distance, _)| *distance);
    match suggestion {
        Some((_, field)) => format!("unknown field \"{key}\" (did you mean \"{field}\"?)"),
        None => format!("unknown field \"{key}\""),
    }
}

/// `portValue` → `port_value`, so a misspelt camelCase key is compared with
/// the snake_case names.
fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Levenshtein distance, for did-you-mean suggestions on short field names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::envoy::messages::*;

    #[test]
    fn json_names_follow_protoc() {
        assert_eq!(json_name("port_value"), "portValue");
        assert_eq!(json_name("http2_protocol_options"), "http2ProtocolOptions");
        assert_eq!(json_name("consecutive_5xx"), "consecutive5xx");
        assert_eq!(json_name("name"), "name");
    }

    #[test]
    fn classify_accepts_both_spellings() {
        assert_eq!(
            SOCKET_ADDRESS.classify("portValue"),
            FieldKind::Supported("port_value")
        );
        assert_eq!(
            SOCKET_ADDRESS.classify("named_port"),
            FieldKind::Unsupported("named_port")
        );
        assert_eq!(SOCKET_ADDRESS.classify("port"), FieldKind::Unknown);
        assert_eq!(SOCKET_ADDRESS.classify("port_Value"), FieldKind::Unknown);
        // Part of a field's name, or two names, is no field.
        assert_eq!(SOCKET_ADDRESS.classify("value"), FieldKind::Unknown);
        assert_eq!(SOCKET_ADDRESS.classify("port"), FieldKind::Unknown);
        assert_eq!(DURATION.classify("seconds nanos"), FieldKind::Unknown);
        assert_eq!(DURATION.classify(""), FieldKind::Unknown);
        assert_eq!(DURATION.classify("nanos"), FieldKind::Supported("nanos"));
        assert_eq!(
            OUTLIER_DETECTION.classify("consecutive5xx"),
            FieldKind::Supported("consecutive_5xx")
        );
    }

    #[test]
    fn no_field_is_both_supported_and_unsupported() {
        for message in [
            &BOOTSTRAP,
            &CLUSTER,
            &HTTP_CONNECTION_MANAGER,
            &ROUTE_ACTION,
            &ROUTE_MATCH,
            &COMMON_LB_CONFIG,
            &ZONE_AWARE_LB_CONFIG,
            &CLUSTER_LOAD_ASSIGNMENT,
            &LOAD_ASSIGNMENT_POLICY,
            &HEALTH_CHECK,
            &HTTP_HEALTH_CHECK,
            &TCP_HEALTH_CHECK,
            &HEADER_VALUE_OPTION,
            &HEADER_VALUE,
            &OUTLIER_DETECTION,
            &LISTENER,
            &VIRTUAL_HOST,
            &ROUTE,
            &THRESHOLDS,
            &RETRY_POLICY,
            &RETRY_BACK_OFF,
            &RETRY_HOST_PREDICATE,
            &RETRY_BUDGET,
            &HEALTH_SERVER,
            &READINESS,
            &REQUIRED_CLUSTER,
            &LIVENESS,
            &HEALTH_CHECK_FILTER,
            &DEGRADED,
            &DEGRADED_CACHE,
            &FILTER_CONFIG,
        ] {
            for field in message.supported() {
                assert!(
                    !message.unsupported.split_whitespace().any(|f| f == field),
                    "{} {field}",
                    message.name
                );
            }
        }
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("adress", "address"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
