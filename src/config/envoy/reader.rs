//! A path-tracking reader over the document, and the error sink it reports to.
//!
//! Owns: [`Node`] (a value and where it is), [`Object`] (a node checked
//! against an Envoy [`Message`]: every key is a supported field, or an error)
//! and typed reads with "expected X, found Y" errors. Errors go to a [`Sink`].
//!
//! Must not touch: meaning. A read answers "is this a u32 here?"; whether the
//! u32 is a valid port is `validate`'s question.

use std::time::Duration;

use serde_json::{Map, Value};

use super::fields::{FieldKind, Message, spelled_as, unknown_field};
use super::messages::{DURATION, WRAPPER};
use super::proto_json::{self, MAX_DURATION_SECONDS};
pub(crate) use super::sink::{Place, Sink};

/// One value of an enum field: its Envoy name and number, and what it means
/// to hale (`None`: a real Envoy value hale does not support).
pub(crate) type EnumValue<T> = (&'static str, u64, Option<T>);

/// A value in the document and its place.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    value: &'a Value,
    place: Place,
}

impl<'a> Node<'a> {
    /// The whole document.
    pub(crate) fn root(value: &'a Value) -> Self {
        Self {
            value,
            place: Place::default(),
        }
    }

    /// Where this value is.
    pub(crate) fn place(&self) -> &Place {
        &self.place
    }

    /// Records an error about this value.
    pub(crate) fn report(&self, sink: &mut Sink, message: impl Into<String>) {
        sink.report(&self.place, message);
    }

    /// Opens an object whose keys must be fields of `message`: a known Envoy
    /// field hale does not implement, an unknown key, or a field spelled twice
    /// (snake_case and camelCase) is reported; the supported fields are then
    /// readable with [`Object::get`].
    pub(crate) fn open(&self, sink: &mut Sink, message: &'static Message) -> Option<Object<'a>> {
        self.open_checked(sink, message, false)
    }

    /// Opens a `google.protobuf.Any` (a `typed_config`): `@type` must be
    /// `type_url`, the other keys are fields of `message`.
    pub(crate) fn open_any(
        &self,
        sink: &mut Sink,
        type_url: &str,
        message: &'static Message,
    ) -> Option<Object<'a>> {
        self.open_any_of(sink, &[(type_url, message)])
            .map(|(_, object)| object)
    }

    /// Opens a `google.protobuf.Any` that may hold one of several messages:
    /// `@type` must be one of the URLs of `types`, and the other keys are
    /// fields of its message. Gives the index of the one found.
    pub(crate) fn open_any_of(
        &self,
        sink: &mut Sink,
        types: &[(&str, &'static Message)],
    ) -> Option<(usize, Object<'a>)> {
        let (_, first) = types.first()?;
        if !self.value.is_object() {
            // Reported as "expected an object".
            return self
                .open_checked(sink, first, true)
                .map(|object| (0, object));
        }
        let expected = types
            .iter()
            .map(|(url, _)| format!("\"{url}\""))
            .collect::<Vec<_>>()
            .join(" or ");
        // Check `@type` first: the other keys only mean something once the
        // message is known, so a wrong type is one error, not one per key.
        let found = self.value.get("@type");
        let known = types
            .iter()
            .enumerate()
            .find(|(_, (url, _))| found.and_then(Value::as_str) == Some(*url));
        match (found, known) {
            (_, Some((index, (_, message)))) => self
                .open_checked(sink, message, true)
                .map(|object| (index, object)),
            (None, _) => {
                let at = self.place.absent("@type");
                sink.report(&at, format!("missing \"@type\"; expected {expected}"));
                None
            }
            (Some(found), None) => {
                let message = format!("expected {expected}, found {}", describe(found));
                sink.report(&self.type_url_place(), message);
                None
            }
        }
    }

    /// The `@type` of an object, if it is an object with a string `@type`.
    pub(crate) fn type_url(&self) -> Option<&'a str> {
        self.value.get("@type").and_then(Value::as_str)
    }

    /// The place of this object's `@type` key (or where it would be).
    pub(crate) fn type_url_place(&self) -> Place {
        match self.value.as_object() {
            Some(map) if map.contains_key("@type") => {
                self.place.field("@type", key_position(map, "@type"))
            }
            _ => self.place.absent("@type"),
        }
    }

    fn open_checked(
        &self,
        sink: &mut Sink,
        message: &'static Message,
        any: bool,
    ) -> Option<Object<'a>> {
        let Some(map) = self.value.as_object() else {
            return self.expected(sink, &format!("an object (Envoy {})", message.name));
        };
        let mut seen: Vec<(&'static str, &str)> = Vec::new();
        for (position, key) in map.keys().enumerate() {
            if any && key == "@type" {
                continue;
            }
            // Built only for an error: most keys have none.
            let at = || self.place.field(key, position);
            match message.classify(key) {
                FieldKind::Supported(field) => {
                    if let Some((_, first)) = seen.iter().find(|(f, _)| *f == field) {
                        sink.report(
                            &at(),
                            format!("\"{key}\" sets the same field as \"{first}\""),
                        );
                    }
                    seen.push((field, key));
                }
                FieldKind::Unsupported(field) => sink.report(
                    &at(),
                    format!(
                        "\"{field}\" is an Envoy field that is not supported by hale{}",
                        message.note(field)
                    ),
                ),
                FieldKind::Unknown => sink.report(&at(), unknown_field(key, message)),
            }
        }
        Some(Object {
            place: self.place.clone(),
            map,
        })
    }

    /// A string.
    pub(crate) fn string(&self, sink: &mut Sink) -> Option<&'a str> {
        match self.value {
            Value::String(s) => Some(s),
            _ => self.expected(sink, "a string"),
        }
    }

    /// A string that is not empty (Envoy's `min_len: 1`).
    pub(crate) fn non_empty_string(&self, sink: &mut Sink) -> Option<&'a str> {
        match self.string(sink)? {
            "" => {
                self.report(sink, "must not be empty");
                None
            }
            s => Some(s),
        }
    }

    /// A `uint32`: an integer, or a decimal string as proto3 JSON allows.
    pub(crate) fn u32(&self, sink: &mut Sink) -> Option<u32> {
        let wide = self.unsigned(sink, u64::from(u32::MAX))?;
        u32::try_from(wide).ok()
    }

    /// An unsigned integer no larger than `max`.
    pub(crate) fn unsigned(&self, sink: &mut Sink, max: u64) -> Option<u64> {
        let number = match self.value {
            Value::Number(n) => match n.as_u64() {
                Some(u) => u,
                None => return self.expected(sink, "an unsigned integer"),
            },
            Value::String(s) => match s.parse::<u64>() {
                Ok(u) => u,
                Err(_) => return self.expected(sink, "an unsigned integer"),
            },
            _ => return self.expected(sink, "an unsigned integer"),
        };
        if number > max {
            self.report(sink, format!("{number} is out of range: at most {max}"));
            return None;
        }
        Some(number)
    }

    /// A `uint64`: an integer, or a decimal string (proto3 JSON writes 64-bit
    /// integers as strings).
    pub(crate) fn u64(&self, sink: &mut Sink) -> Option<u64> {
        self.unsigned(sink, u64::MAX)
    }

    /// A `google.protobuf.UInt64Value`: a plain integer, or `{value: n}`.
    pub(crate) fn u64_wrapper(&self, sink: &mut Sink) -> Option<u64> {
        if self.value.is_object() {
            self.open(sink, &WRAPPER)?.require(sink, "value")?.u64(sink)
        } else {
            self.u64(sink)
        }
    }

    /// An `int64`: an integer, or a decimal string (proto3 JSON writes 64-bit
    /// integers as strings).
    pub(crate) fn i64(&self, sink: &mut Sink) -> Option<i64> {
        // Both forms as text, so an integer too large for i64 is reported as
        // out of range rather than as the wrong type.
        let text = match self.value {
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            Value::String(s) => s.clone(),
            _ => return self.expected(sink, "an integer"),
        };
        let digits = text.strip_prefix('-').unwrap_or(&text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return self.expected(sink, "an integer");
        }
        match text.parse::<i64>() {
            Ok(number) => Some(number),
            Err(_) => {
                let message = format!(
                    "{} is out of range: an int64 is {} to {}",
                    quoted(self.value),
                    i64::MIN,
                    i64::MAX
                );
                self.report(sink, message);
                None
            }
        }
    }

    /// A `google.protobuf.UInt32Value`: a plain integer, or `{value: n}`.
    pub(crate) fn u32_wrapper(&self, sink: &mut Sink) -> Option<u32> {
        if self.value.is_object() {
            self.open(sink, &WRAPPER)?.require(sink, "value")?.u32(sink)
        } else {
            self.u32(sink)
        }
    }

    /// A `bool`.
    pub(crate) fn bool(&self, sink: &mut Sink) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(*b),
            _ => self.expected(sink, "true or false"),
        }
    }

    /// A `google.protobuf.BoolValue`: `true`/`false`, or `{value: b}`.
    pub(crate) fn bool_wrapper(&self, sink: &mut Sink) -> Option<bool> {
        if self.value.is_object() {
            self.open(sink, &WRAPPER)?
                .require(sink, "value")?
                .bool(sink)
        } else {
            self.bool(sink)
        }
    }

    /// A `double`: a number, or a decimal string as proto3 JSON allows.
    pub(crate) fn f64(&self, sink: &mut Sink) -> Option<f64> {
        match self.value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => match s.parse::<f64>() {
                Ok(f) => Some(f),
                Err(_) => self.expected(sink, "a number"),
            },
            _ => self.expected(sink, "a number"),
        }
    }

    /// A `google.protobuf.Duration`: `"5s"`, `"0.25s"`, or `{seconds, nanos}`.
    pub(crate) fn duration(&self, sink: &mut Sink) -> Option<Duration> {
        match self.value {
            Value::String(text) => match proto_json::parse_duration(text) {
                Ok(duration) => Some(duration),
                Err(message) => {
                    self.report(sink, message);
                    None
                }
            },
            Value::Object(_) => {
                let object = self.open(sink, &DURATION)?;
                let seconds = match object.get("seconds") {
                    Some(node) => node.non_negative(sink, MAX_DURATION_SECONDS)?,
                    None => 0,
                };
                let nanos = match object.get("nanos") {
                    Some(node) => node.non_negative(sink, 999_999_999)?,
                    None => 0,
                };
                Some(Duration::new(seconds, u32::try_from(nanos).ok()?))
            }
            _ => self.expected(sink, "a duration like \"5s\" or \"0.25s\""),
        }
    }

    fn non_negative(&self, sink: &mut Sink, max: u64) -> Option<u64> {
        if self.value.as_i64().is_some_and(|n| n < 0) {
            self.report(sink, "a duration must not be negative");
            return None;
        }
        self.unsigned(sink, max)
    }

    /// A `bytes` field: base64 text.
    pub(crate) fn base64(&self, sink: &mut Sink) -> Option<Vec<u8>> {
        match proto_json::decode_base64(self.string(sink)?) {
            Ok(bytes) => Some(bytes),
            Err(message) => {
                self.report(sink, message);
                None
            }
        }
    }

    /// A `string` that Envoy reads as hex (`HealthCheck.Payload.text`,
    /// e.g. `"000000FF"`): an even number of hex digits, either case.
    pub(crate) fn hex(&self, sink: &mut Sink) -> Option<Vec<u8>> {
        match proto_json::decode_hex(self.string(sink)?) {
            Ok(bytes) => Some(bytes),
            Err(message) => {
                self.report(sink, message);
                None
            }
        }
    }

    /// Whether this is the enum value `name`, written by name or by number;
    /// for values a field forbids outright, to report them in their own words.
    pub(crate) fn is_enum_value(&self, name: &str, number: u64) -> bool {
        match self.value {
            Value::String(s) => s == name,
            Value::Number(n) => n.as_u64() == Some(number),
            _ => false,
        }
    }

    /// A list; each item is a node at `path[i]`.
    pub(crate) fn list(&self, sink: &mut Sink) -> Option<Vec<Node<'a>>> {
        match self.value {
            Value::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, value)| Node {
                        value,
                        place: self.place.item(i),
                    })
                    .collect(),
            ),
            _ => self.expected(sink, "a list"),
        }
    }

    /// A `map<string, _>`; each value is a node at `path.key`.
    pub(crate) fn map(&self, sink: &mut Sink) -> Option<Vec<(&'a str, Node<'a>)>> {
        match self.value {
            Value::Object(map) => Some(
                map.iter()
                    .enumerate()
                    .map(|(position, (key, value))| {
                        let place = self.place.field(key, position);
                        (key.as_str(), Node { value, place })
                    })
                    .collect(),
            ),
            _ => self.expected(sink, "a map"),
        }
    }

    /// An enum, by name or (as proto3 JSON allows) by number.
    pub(crate) fn enumeration<T: Copy>(
        &self,
        sink: &mut Sink,
        values: &[EnumValue<T>],
    ) -> Option<T> {
        let supported: Vec<&str> = values
            .iter()
            .filter(|(_, _, v)| v.is_some())
            .map(|(name, _, _)| *name)
            .collect();
        let supported = supported.join(", ");
        let found = match self.value {
            Value::String(s) => values.iter().find(|(name, _, _)| name == s),
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| values.iter().find(|(_, number, _)| *number == n)),
            _ => return self.expected(sink, &format!("one of {supported}")),
        };
        match found {
            Some((_, _, Some(value))) => Some(*value),
            Some((name, _, None)) => {
                self.report(
                    sink,
                    format!(
                        "{name} is an Envoy value that is not supported by hale; \
                         hale supports {supported}"
                    ),
                );
                None
            }
            None => {
                self.report(
                    sink,
                    format!(
                        "unknown value {}; expected one of {supported}",
                        quoted(self.value)
                    ),
                );
                None
            }
        }
    }

    fn expected<T>(&self, sink: &mut Sink, what: &str) -> Option<T> {
        self.report(
            sink,
            format!("expected {what}, found {}", describe(self.value)),
        );
        None
    }
}

/// An object whose keys have been checked against its Envoy message.
#[derive(Debug, Clone)]
pub(crate) struct Object<'a> {
    place: Place,
    map: &'a Map<String, Value>,
}

impl<'a> Object<'a> {
    /// Where this object is.
    pub(crate) fn place(&self) -> &Place {
        &self.place
    }

    /// The field `name` (snake_case) in whichever spelling the document used.
    /// `null` counts as absent, as in proto3 JSON.
    pub(crate) fn get(&self, name: &str) -> Option<Node<'a>> {
        self.map
            .iter()
            .enumerate()
            .find(|(_, (key, value))| !value.is_null() && spelled_as(name, key))
            .map(|(position, (key, value))| Node {
                value,
                place: self.place.field(key, position),
            })
    }

    /// Reads field `name` with `read`, or gives `default` when it is absent.
    /// `None` means present but invalid (and already reported).
    pub(crate) fn optional<T>(
        &self,
        sink: &mut Sink,
        name: &str,
        default: T,
        read: impl FnOnce(&Node<'a>, &mut Sink) -> Option<T>,
    ) -> Option<T> {
        match self.get(name) {
            None => Some(default),
            Some(node) => read(&node, sink),
        }
    }

    /// Whether field `name` is set, supported or not (for oneof checks).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The field `name`, reporting it as missing when absent.
    pub(crate) fn require(&self, sink: &mut Sink, name: &str) -> Option<Node<'a>> {
        let node = self.get(name);
        if node.is_none() {
            sink.report(&self.place.absent(name), "missing required field");
        }
        node
    }

    /// Of the oneof `members`, the ones set, in document order.
    pub(crate) fn set_among(&self, members: &[&'static str]) -> Vec<(&'static str, Node<'a>)> {
        let mut set: Vec<(&'static str, Node<'a>)> = members
            .iter()
            .filter_map(|member| self.get(member).map(|node| (*member, node)))
            .collect();
        set.sort_by(|a, b| a.1.place.order.cmp(&b.1.place.order));
        set
    }
}

fn key_position(map: &Map<String, Value>, key: &str) -> usize {
    map.keys().position(|k| k == key).unwrap_or(0)
}

/// How a found value is named in "expected X, found Y".
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("a boolean {b}"),
        Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => format!("a negative number {n}"),
        Value::Number(n) => format!("a number {n}"),
        Value::String(_) => format!("a string {}", quoted(value)),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// A scalar as written, strings quoted and cut short.
fn quoted(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() > 120 => {
            format!("\"{}...\"", s.chars().take(120).collect::<String>())
        }
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
