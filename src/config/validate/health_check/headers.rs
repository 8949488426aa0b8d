//! Header lists and values of health check requests:
//! `request_headers_to_add` / `request_headers_to_remove` and `host` of the
//! HTTP checker, `initial_metadata` and `authority` of the gRPC checker.
//!
//! Owns: Envoy's rules for a `HeaderValueOption` as its header parser
//! applies them to health checks: names lower-cased and valid,
//! pseudo-headers and `host` refused, `append` against `append_action`, the
//! `%` escapes of its value formatter, at most 1000 entries, and entries with
//! an empty value dropped.
//!
//! Must not touch: the rest of a checker; callers decide what the list is for.

use super::super::each;
use crate::config::envoy::messages::{HEADER_VALUE, HEADER_VALUE_OPTION};
use crate::config::envoy::reader::{EnumValue, Node, Sink};
use crate::config::model::{AppendAction, HeaderToAdd};

/// Envoy: `request_headers_to_add` and `initial_metadata` have `max_items: 1000`.
const MAX_HEADERS: usize = 1000;

const APPEND_ACTIONS: &[EnumValue<AppendAction>] = &[
    (
        "APPEND_IF_EXISTS_OR_ADD",
        0,
        Some(AppendAction::AppendIfExistsOrAdd),
    ),
    ("ADD_IF_ABSENT", 1, Some(AppendAction::AddIfAbsent)),
    (
        "OVERWRITE_IF_EXISTS_OR_ADD",
        2,
        Some(AppendAction::OverwriteIfExistsOrAdd),
    ),
    (
        "OVERWRITE_IF_EXISTS",
        3,
        Some(AppendAction::OverwriteIfExists),
    ),
];

/// A list of `HeaderValueOption`s, in order.
pub(super) fn to_add(sink: &mut Sink, list: &Node<'_>) -> Option<Vec<HeaderToAdd>> {
    let items = list.list(sink)?;
    if items.len() > MAX_HEADERS {
        let message = format!(
            "at most {MAX_HEADERS} headers (Envoy's limit); found {}",
            items.len()
        );
        list.report(sink, message);
        return None;
    }
    let headers = each(sink, list, header_value_option)?;
    Some(headers.into_iter().flatten().collect())
}

/// `request_headers_to_remove`: names, lower-cased.
pub(super) fn to_remove(sink: &mut Sink, list: &Node<'_>) -> Option<Vec<String>> {
    each(sink, list, |sink, item| header_name(sink, item, "removed"))
}

/// A single header value such as `host` or `authority`; `Some(None)` when
/// empty, which proto3 cannot tell from unset, so the default applies.
pub(super) fn optional_value(sink: &mut Sink, node: &Node<'_>) -> Option<Option<String>> {
    match node.string(sink)? {
        "" => Some(None),
        value => valid_value(sink, node, value.to_string()).map(Some),
    }
}

/// One `HeaderValueOption`; `Some(None)` for an entry Envoy drops because its
/// value is empty (it keeps those only with `keep_empty_value`, which hale
/// does not support).
fn header_value_option(sink: &mut Sink, node: &Node<'_>) -> Option<Option<HeaderToAdd>> {
    let option = node.open(sink, &HEADER_VALUE_OPTION)?;
    let header = option
        .require(sink, "header")
        .and_then(|node| header_value(sink, &node));
    let action = match option.set_among(&["append", "append_action"]).as_slice() {
        [] => Some(AppendAction::default()),
        [("append", node)] => node.bool_wrapper(sink).map(|append| {
            // Envoy maps the deprecated bool onto the two actions it meant.
            if append {
                AppendAction::AppendIfExistsOrAdd
            } else {
                AppendAction::OverwriteIfExistsOrAdd
            }
        }),
        [(_, node)] => node.enumeration(sink, APPEND_ACTIONS),
        [(first, _), (second, node), ..] => {
            let message = format!(
                "\"{second}\" conflicts with \"{first}\": set only append_action \
                 (append is deprecated)"
            );
            node.report(sink, message);
            None
        }
    };
    let (name, value) = header?;
    let action = action?;
    Some((!value.is_empty()).then_some(HeaderToAdd {
        name,
        value,
        action,
    }))
}

/// `header`: `key` and `value`.
fn header_value(sink: &mut Sink, node: &Node<'_>) -> Option<(String, String)> {
    let header = node.open(sink, &HEADER_VALUE)?;
    let name = header
        .require(sink, "key")
        .and_then(|node| header_name(sink, &node, "set"));
    let value = header.optional(sink, "value", String::new(), |node, sink| {
        formatted_value(sink, node)
    });
    Some((name?, value?))
}

/// A header name, lower-cased. `verb` says what the list does with it.
fn header_name(sink: &mut Sink, node: &Node<'_>, verb: &str) -> Option<String> {
    let written = node.non_empty_string(sink)?;
    let name = written.to_ascii_lowercase();
    // Envoy's header parser refuses these: the checker sets the request line
    // and Host itself (from `host`/`authority`).
    if name.starts_with(':') || name == "host" {
        node.report(
            sink,
            format!(
                "\"{written}\" may not be {verb} by a health check: Envoy refuses \
                 pseudo-headers (\":...\") and host here"
            ),
        );
        return None;
    }
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        node.report(sink, format!("invalid header name \"{written}\""));
        return None;
    }
    Some(name)
}

/// A header value as Envoy's formatter reads it: `%%` is a literal `%`, and
/// any other `%` starts a command such as `%UPSTREAM_REMOTE_ADDRESS%`, which
/// hale does not evaluate (sending it as text would differ from Envoy).
fn formatted_value(sink: &mut Sink, node: &Node<'_>) -> Option<String> {
    let written = node.string(sink)?;
    let mut value = String::with_capacity(written.len());
    let mut rest = written;
    while let Some((before, after)) = rest.split_once('%') {
        value.push_str(before);
        let Some(after) = after.strip_prefix('%') else {
            node.report(
                sink,
                "header value formatters (%COMMAND%) are not supported by hale; \
                 write %% for a literal %",
            );
            return None;
        };
        value.push('%');
        rest = after;
    }
    value.push_str(rest);
    valid_value(sink, node, value)
}

fn valid_value(sink: &mut Sink, node: &Node<'_>, value: String) -> Option<String> {
    if http::HeaderValue::from_str(&value).is_err() {
        node.report(
            sink,
            "invalid header value: control characters (other than tab) are not allowed",
        );
        return None;
    }
    Some(value)
}
