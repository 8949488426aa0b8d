//! The HTTP checker: `health_checks[].http_health_check`.
//!
//! Owns: the request (host, path, method, body, header lists via
//! `headers`), what the response must be (status ranges, body blocks within
//! the response buffer) and the codec, with the rules Envoy checks at load:
//! no CONNECT, a body only with methods that take one, ranges within
//! 100..600, and body blocks that fit the buffer.
//!
//! Must not touch: the fields every checker shares (`health_check`).

use std::ops::Range;
use std::str::FromStr;

use super::super::each;
use super::{headers, payload};
use crate::config::envoy::messages::{HTTP_HEALTH_CHECK, INT64_RANGE};
use crate::config::envoy::reader::{EnumValue, Node, Place, Sink};
use crate::config::model::{CheckCodec, DEFAULT_RESPONSE_BUFFER_SIZE, HttpCheck};

/// Envoy: with no `expected_statuses`, only 200 passes.
const DEFAULT_EXPECTED_STATUSES: Range<u16> = 200..201;

/// Envoy: a status range must satisfy `100 <= start < end <= 600`.
const STATUS_BOUNDS: (i64, i64) = (100, 600);

/// `core.v3.RequestMethod`, less CONNECT, which the proto forbids here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Patch,
}

impl Method {
    fn http(self) -> http::Method {
        match self {
            Method::Get => http::Method::GET,
            Method::Head => http::Method::HEAD,
            Method::Post => http::Method::POST,
            Method::Put => http::Method::PUT,
            Method::Delete => http::Method::DELETE,
            Method::Options => http::Method::OPTIONS,
            Method::Trace => http::Method::TRACE,
            Method::Patch => http::Method::PATCH,
        }
    }

    /// Envoy refuses a `send` body with GET, HEAD, DELETE and TRACE.
    fn takes_body(self) -> bool {
        matches!(
            self,
            Method::Post | Method::Put | Method::Patch | Method::Options
        )
    }
}

const METHODS: &[EnumValue<Method>] = &[
    // Envoy: unset means GET.
    ("METHOD_UNSPECIFIED", 0, Some(Method::Get)),
    ("GET", 1, Some(Method::Get)),
    ("HEAD", 2, Some(Method::Head)),
    ("POST", 3, Some(Method::Post)),
    ("PUT", 4, Some(Method::Put)),
    ("DELETE", 5, Some(Method::Delete)),
    ("OPTIONS", 7, Some(Method::Options)),
    ("TRACE", 8, Some(Method::Trace)),
    ("PATCH", 9, Some(Method::Patch)),
];

const CODECS: &[EnumValue<CheckCodec>] = &[
    ("HTTP1", 0, Some(CheckCodec::Http1)),
    ("HTTP2", 1, Some(CheckCodec::Http2)),
    ("HTTP3", 2, None),
];

/// Decodes `http_health_check`.
pub(super) fn decode(sink: &mut Sink, node: &Node<'_>) -> Option<HttpCheck> {
    let http = node.open(sink, &HTTP_HEALTH_CHECK)?;
    let host = http.optional(sink, "host", None, |node, sink| {
        headers::optional_value(sink, node)
    });
    let path = http
        .require(sink, "path")
        .and_then(|node| request_path(sink, &node));
    let method = http.optional(sink, "method", Method::Get, method);
    let send = http.optional(sink, "send", None, |node, sink| {
        Some(Some((payload(sink, node)?, node.place().clone())))
    });
    let receive = http.optional(sink, "receive", None, |list, sink| {
        let blocks = each(sink, list, payload)?;
        Some(Some((blocks, list.place().clone())))
    });
    let response_buffer_size = http.optional(
        sink,
        "response_buffer_size",
        DEFAULT_RESPONSE_BUFFER_SIZE,
        |node, sink| node.u64_wrapper(sink),
    );
    let request_headers_to_add =
        http.optional(sink, "request_headers_to_add", vec![], |list, sink| {
            headers::to_add(sink, list)
        });
    let request_headers_to_remove =
        http.optional(sink, "request_headers_to_remove", vec![], |list, sink| {
            headers::to_remove(sink, list)
        });
    let expected_statuses = http.optional(sink, "expected_statuses", vec![], |list, sink| {
        each(sink, list, status_range)
    });
    let retriable_statuses = http.optional(sink, "retriable_statuses", vec![], |list, sink| {
        each(sink, list, status_range)
    });
    let codec = http.optional(
        sink,
        "codec_client_type",
        CheckCodec::Http1,
        |node, sink| node.enumeration(sink, CODECS),
    );

    // Each cross-field rule runs when its own fields decoded, so both can
    // be reported at once.
    let send = send.and_then(|send| body_fits_method(sink, method?, send));
    let receive =
        receive.and_then(|receive| receive_fits_buffer(sink, receive, response_buffer_size?));
    let mut expected_statuses = expected_statuses?;
    // proto3 cannot tell an empty list from an unset one: both get Envoy's default.
    if expected_statuses.is_empty() {
        expected_statuses.push(DEFAULT_EXPECTED_STATUSES);
    }
    Some(HttpCheck {
        host: host?,
        path: path?,
        method: method?.http(),
        send: send?,
        receive: receive?,
        response_buffer_size: response_buffer_size?,
        request_headers_to_add: request_headers_to_add?,
        request_headers_to_remove: request_headers_to_remove?,
        expected_statuses,
        retriable_statuses: retriable_statuses?,
        codec: codec?,
    })
}

fn method(node: &Node<'_>, sink: &mut Sink) -> Option<Method> {
    // Envoy's proto forbids CONNECT here (`not_in: [6]`), so it gets its own
    // words rather than "not supported by hale".
    if node.is_enum_value("CONNECT", 6) {
        node.report(
            sink,
            "CONNECT cannot be a health check method (Envoy rejects it too)",
        );
        return None;
    }
    node.enumeration(sink, METHODS)
}

/// `path`: required, non-empty, and a request target hale can send.
fn request_path(sink: &mut Sink, node: &Node<'_>) -> Option<String> {
    let path = node.non_empty_string(sink)?;
    if http::uri::PathAndQuery::from_str(path).is_err() {
        node.report(sink, format!("\"{path}\" is not a valid request path"));
        return None;
    }
    Some(path.to_string())
}

/// A `send` body needs a method that takes one.
fn body_fits_method(
    sink: &mut Sink,
    method: Method,
    send: Option<(Vec<u8>, Place)>,
) -> Option<Option<Vec<u8>>> {
    match send {
        Some((_, at)) if !method.takes_body() => {
            sink.report(
                &at,
                format!(
                    "a request body (send) is not allowed with method {}; \
                     use POST, PUT, PATCH or OPTIONS",
                    method.http()
                ),
            );
            None
        }
        send => Some(send.map(|(body, _)| body)),
    }
}

/// The `receive` blocks must fit in the first `response_buffer_size` bytes
/// (0 means the whole body), as Envoy checks at load.
fn receive_fits_buffer(
    sink: &mut Sink,
    receive: Option<(Vec<Vec<u8>>, Place)>,
    buffer_size: u64,
) -> Option<Vec<Vec<u8>>> {
    let Some((blocks, at)) = receive else {
        return Some(Vec::new());
    };
    let total: u64 = blocks.iter().map(|block| block.len() as u64).sum();
    if buffer_size != 0 && total > buffer_size {
        sink.report(
            &at,
            format!(
                "the receive payloads add up to {total} bytes, more than \
                 response_buffer_size ({buffer_size} bytes) can hold"
            ),
        );
        return None;
    }
    Some(blocks)
}

/// An `Int64Range` of statuses, half-open: `[start, end)`.
fn status_range(sink: &mut Sink, node: &Node<'_>) -> Option<Range<u16>> {
    let range = node.open(sink, &INT64_RANGE)?;
    // proto3: an unset bound is 0, which the bounds check then rejects.
    let start = range.optional(sink, "start", 0, |node, sink| node.i64(sink));
    let end = range.optional(sink, "end", 0, |node, sink| node.i64(sink));
    let (start, end) = (start?, end?);
    let (low, high) = STATUS_BOUNDS;
    match (u16::try_from(start), u16::try_from(end)) {
        (Ok(first), Ok(last)) if low <= start && start < end && end <= high => Some(first..last),
        _ => {
            node.report(
                sink,
                format!(
                    "invalid status range [{start}, {end}): it must satisfy \
                     {low} <= start < end <= {high} (end is excluded)"
                ),
            );
            None
        }
    }
}
