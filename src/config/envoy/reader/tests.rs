//! Tests of the reader: typed reads, their errors, and error order.

use std::path::Path;

use super::*;
use crate::config::envoy::messages::SOCKET_ADDRESS;
use serde_json::json;

fn errors(sink: Sink) -> Vec<(String, String)> {
    match sink.finish() {
        Ok(()) => vec![],
        Err(e) => e.0.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

#[test]
fn object_reports_unsupported_unknown_and_twice_spelled_keys() {
    let value = json!({"address": "::1", "portValue": 1, "port_value": 2,
                       "named_port": "http", "adress": "x"});
    let mut sink = Sink::new(Path::new("t"));
    let root = Node::root(&value);
    let object = root.open(&mut sink, &SOCKET_ADDRESS).unwrap();
    assert!(object.get("port_value").is_some());
    let found = errors(sink);
    assert_eq!(
        found,
        // Document order (serde_json keeps key order: `preserve_order`).
        vec![
            (
                "port_value".into(),
                "\"port_value\" sets the same field as \"portValue\"".into()
            ),
            (
                "named_port".into(),
                "\"named_port\" is an Envoy field that is not supported by hale".into()
            ),
            (
                "adress".into(),
                "unknown field \"adress\" (did you mean \"address\"?)".into()
            ),
        ]
    );
}

#[test]
fn type_errors_name_expected_and_found() {
    let value = json!({"a": "abc", "b": -1, "c": [1], "d": 70000000000u64});
    let mut sink = Sink::new(Path::new("t"));
    let root = Node::root(&value);
    let map = root.map(&mut sink).unwrap();
    assert_eq!(map[0].1.u32(&mut sink), None);
    assert_eq!(map[1].1.u32(&mut sink), None);
    assert_eq!(map[2].1.string(&mut sink), None);
    assert_eq!(map[3].1.u32(&mut sink), None);
    let found = errors(sink);
    assert_eq!(
        found[0].1,
        "expected an unsigned integer, found a string \"abc\""
    );
    assert_eq!(
        found[1].1,
        "expected an unsigned integer, found a negative number -1"
    );
    assert_eq!(found[2].1, "expected a string, found a list");
    assert_eq!(
        found[3].1,
        "70000000000 is out of range: at most 4294967295"
    );
}

#[test]
fn wrappers_take_both_forms() {
    let value = json!([7, {"value": 8}, "9", true, {"value": false}]);
    let mut sink = Sink::new(Path::new("t"));
    let items = Node::root(&value).list(&mut sink).unwrap();
    assert_eq!(items[0].u32_wrapper(&mut sink), Some(7));
    assert_eq!(items[1].u32_wrapper(&mut sink), Some(8));
    assert_eq!(items[2].u32_wrapper(&mut sink), Some(9));
    assert_eq!(items[3].bool_wrapper(&mut sink), Some(true));
    assert_eq!(items[4].bool_wrapper(&mut sink), Some(false));
    assert!(errors(sink).is_empty());
}

#[test]
fn sixty_four_bit_integers_as_numbers_or_strings() {
    let value = json!([18446744073709551615u64, "42", {"value": "7"}, -5, "-9223372036854775808",
                       "9223372036854775808", 9223372036854775808u64, 1.5, "x"]);
    let mut sink = Sink::new(Path::new("t"));
    let items = Node::root(&value).list(&mut sink).unwrap();
    assert_eq!(items[0].u64(&mut sink), Some(u64::MAX));
    assert_eq!(items[1].u64(&mut sink), Some(42));
    assert_eq!(items[2].u64_wrapper(&mut sink), Some(7));
    assert_eq!(items[3].i64(&mut sink), Some(-5));
    assert_eq!(items[4].i64(&mut sink), Some(i64::MIN));
    assert!(errors(sink).is_empty());

    let mut sink = Sink::new(Path::new("t"));
    assert_eq!(items[5].i64(&mut sink), None);
    assert_eq!(items[6].i64(&mut sink), None);
    assert_eq!(items[7].i64(&mut sink), None);
    assert_eq!(items[8].i64(&mut sink), None);
    let messages: Vec<String> = errors(sink).into_iter().map(|(_, m)| m).collect();
    assert!(messages[0].starts_with("\"9223372036854775808\" is out of range"));
    assert!(messages[1].starts_with("9223372036854775808 is out of range"));
    assert_eq!(messages[2], "expected an integer, found a number 1.5");
    assert_eq!(messages[3], "expected an integer, found a string \"x\"");
}

#[test]
fn hex_and_enum_value_checks() {
    let value = json!(["00ff", "0f0", "CONNECT", 6, 7, true]);
    let mut sink = Sink::new(Path::new("t"));
    let items = Node::root(&value).list(&mut sink).unwrap();
    assert_eq!(items[0].hex(&mut sink), Some(vec![0, 0xff]));
    assert_eq!(items[1].hex(&mut sink), None);
    assert!(items[2].is_enum_value("CONNECT", 6));
    assert!(items[3].is_enum_value("CONNECT", 6));
    assert!(!items[4].is_enum_value("CONNECT", 6));
    assert!(!items[5].is_enum_value("CONNECT", 6));
    let found = errors(sink);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "[1]");
    assert!(found[0].1.contains("even number"), "{}", found[0].1);
}

#[test]
fn errors_come_back_in_document_order() {
    let value = json!({"a": [{"x": 1}, {"x": 2}], "b": 1});
    let mut sink = Sink::new(Path::new("t"));
    let root = Node::root(&value);
    let map = root.map(&mut sink).unwrap();
    let items = map[0].1.list(&mut sink).unwrap();
    map[1].1.report(&mut sink, "third");
    items[1].report(&mut sink, "second");
    items[0].report(&mut sink, "first");
    let messages: Vec<String> = errors(sink).into_iter().map(|(_, m)| m).collect();
    assert_eq!(messages, ["first", "second", "third"]);
}
