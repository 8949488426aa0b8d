//! A route's `direct_response`: the status and an inline body.
//!
//! Owns: Envoy's status range for a direct response, the inline forms of a
//! body (`DataSource`) and Envoy's default limit on its size.
//!
//! Must not touch: matching, and forwarding.

use bytes::Bytes;

use super::super::one_of;
use crate::config::envoy::messages::{DATA_SOURCE, DIRECT_RESPONSE_ACTION};
use crate::config::envoy::reader::{Node, Sink};
use crate::config::model::DirectResponse;

/// Envoy: `max_direct_response_body_size_bytes` defaults to 4096.
const MAX_DIRECT_RESPONSE_BODY: usize = 4096;

/// Decodes a `direct_response`.
pub(super) fn decode(sink: &mut Sink, node: &Node<'_>) -> Option<DirectResponse> {
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
