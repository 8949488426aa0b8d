//! YAML text to the JSON value the reader walks: the one parse that whole
//! files and their pieces (`pieces`) both go through, so both give the
//! same value for the same text.
//!
//! Owns: the choice of route (straight into a JSON value, or through
//! `yaml_serde::Value` when merge keys or tags need it) and refusing a key
//! given twice on either route.
//! Must not touch: errors' wording for the operator (`read_document`).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Whether `text` must go through `yaml_serde::Value`: merge keys (`<<`)
/// are applied there, and tags (`!`) are kept as it keeps them. Straight
/// into JSON is about a quarter faster.
pub(crate) fn needs_yaml_value(text: &str) -> bool {
    text.contains("<<") || text.contains('!')
}

/// Why a text is not a JSON value.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Not YAML, or a key given twice.
    Syntax(yaml_serde::Error),
    /// YAML that has no JSON form (a key that is not a string, say).
    NotJson(yaml_serde::Error),
}

/// Parses `text`, through `yaml_serde::Value` when `via_yaml_value`.
pub(crate) fn to_json(text: &str, via_yaml_value: bool) -> Result<Value, Failure> {
    if !via_yaml_value {
        return yaml_serde::from_str::<Strict>(text)
            .map(|strict| strict.0)
            .map_err(Failure::Syntax);
    }
    let mut yaml = yaml_serde::from_str::<yaml_serde::Value>(text).map_err(Failure::Syntax)?;
    yaml.apply_merge().map_err(Failure::Syntax)?;
    yaml_serde::from_value::<Value>(yaml).map_err(Failure::NotJson)
}

/// A JSON value read straight from YAML, refusing a mapping key given
/// twice as `yaml_serde::Value` does (`serde_json::Value` keeps the last).
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        // As serde_json::Value does: JSON has no NaN or infinity.
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Strict::deserialize(deserializer).map(|strict| strict.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(StringKey(key)) = map.next_key()? {
            let Strict(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate entry with key \"{key}\""
                )));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A mapping key, which must be a string (`"1"`, not `1`), as on the
/// `yaml_serde::Value` route: Envoy's JSON form has string keys only.
struct StringKey(String);

impl<'de> Deserialize<'de> for StringKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(StringKeyVisitor)
            .map(StringKey)
    }
}

struct StringKeyVisitor;

impl<'de> Visitor<'de> for StringKeyVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key (Envoy's JSON form has no other; quote it)")
    }

    fn visit_str<E>(self, s: &str) -> Result<String, E> {
        Ok(s.to_owned())
    }

    fn visit_string<E>(self, s: String) -> Result<String, E> {
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(text: &str) -> (Value, Value) {
        let direct = to_json(text, false).unwrap_or_else(|e| panic!("{e:?}"));
        let through = to_json(text, true).unwrap_or_else(|e| panic!("{e:?}"));
        (direct, through)
    }

    #[test]
    fn both_routes_give_the_same_value() {
        let text = "a: 1\nb: -2\nc: 1.5\nd: .inf\ne: ~\nf: [x, 'y', \"z\"]\ng: {h: true}\n\
                    i: |\n  two\n  lines\nj: 18446744073709551615\nk: 0x1f\nl: ''\n";
        let (direct, through) = both(text);
        assert_eq!(direct, through);
        assert_eq!(direct["d"], Value::Null);
        assert_eq!(direct["i"], "two\nlines\n");
    }

    #[test]
    fn a_key_given_twice_is_refused_on_both_routes() {
        for via in [false, true] {
            let Err(Failure::Syntax(e)) = to_json("a: 1\nb:\n  c: 2\n  c: 3\n", via) else {
                panic!("accepted a duplicate key (via_yaml_value {via})");
            };
            assert!(e.to_string().contains("duplicate"), "{e}");
            assert!(e.to_string().contains("line"), "{e}");
        }
    }

    #[test]
    fn keys_that_are_not_strings_are_refused_on_both_routes() {
        for text in [
            "1: a\n",
            "a:\n  true: b\n",
            "~: a\n",
            "1.5: a\n",
            "[a]: b\n",
        ] {
            assert!(to_json(text, false).is_err(), "direct route took {text:?}");
            assert!(
                to_json(text, true).is_err(),
                "yaml value route took {text:?}"
            );
        }
        assert_eq!(
            to_json("'1': a\n", false).ok(),
            to_json("'1': a\n", true).ok()
        );
    }

    #[test]
    fn merge_keys_and_tags_need_the_yaml_value() {
        assert!(needs_yaml_value("a: &x {b: 1}\nc:\n  <<: *x\n"));
        assert!(needs_yaml_value("a: !!str 1\n"));
        assert!(!needs_yaml_value("a: {b: \"c\"}\n"));
    }
}
