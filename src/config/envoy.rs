//! Envoy's side of the config: the document as written.
//!
//! Owns: turning YAML or JSON text into one `serde_json::Value`
//! ([`read_document`]), the path-tracking reader that walks it ([`reader`])
//! and the error sink it reports to ([`sink`]), Envoy's field names per proto
//! message, split into what hale supports and what it knowingly does not
//! ([`messages`], matched by [`fields`]), and the proto3 JSON forms of
//! scalars such as durations and bytes ([`proto_json`]), and the memory of
//! a YAML file's pieces that lets a reload parse only what changed
//! ([`pieces`]).
//!
//! Must not touch: hale's model. What a value means (defaults, ranges,
//! references between resources) is decided in `validate`; this module only
//! says where a value is, what type it has and whether its key is a field.

pub(crate) mod fields;
pub(crate) mod messages;
pub(crate) mod pieces;
pub(crate) mod proto_json;
pub(crate) mod reader;
pub(crate) mod sink;
pub(crate) mod yaml;

use std::path::Path;

use super::{ConfigErrors, Format};
pub use pieces::PieceMemory;

/// Parses `text` as `format` into a JSON value.
///
/// YAML merge keys (`<<: *anchor`) are applied, as Envoy's YAML loader does.
/// A syntax error is one whole-file error whose message gives the line and
/// column. An empty document is an error too: Envoy refuses to start on one.
///
/// With a `memory`, YAML is read in pieces and only the pieces the memory
/// does not hold are parsed (see [`pieces`]); the value is the same.
pub fn read_document(
    text: &str,
    format: Format,
    file: &Path,
    memory: Option<&mut PieceMemory>,
) -> Result<serde_json::Value, ConfigErrors> {
    let document = match format {
        Format::Json => serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| ConfigErrors::whole_file(file, format!("not valid JSON: {e}")))?,
        Format::Yaml => match memory.and_then(|memory| pieces::read(text, memory)) {
            Some(document) => document,
            None => read_yaml(text, file)?,
        },
    };
    if document.is_null() {
        return Err(ConfigErrors::whole_file(
            file,
            "the document is empty; expected an Envoy v3 bootstrap",
        ));
    }
    Ok(document)
}

fn read_yaml(text: &str, file: &Path) -> Result<serde_json::Value, ConfigErrors> {
    yaml::to_json(text, yaml::needs_yaml_value(text)).map_err(|failure| match failure {
        yaml::Failure::Syntax(e) => {
            let mut message = format!("not valid YAML: {e}");
            // Most yaml_serde messages already end in "at line L column C".
            if let Some(at) = e.location().filter(|_| !message.contains(" line ")) {
                message.push_str(&format!(" at line {} column {}", at.line(), at.column()));
            }
            ConfigErrors::whole_file(file, message)
        }
        yaml::Failure::NotJson(e) => ConfigErrors::whole_file(
            file,
            format!("the YAML cannot be read as Envoy's JSON form (are all keys strings?): {e}"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, format: Format) -> Result<serde_json::Value, ConfigErrors> {
        read_document(text, format, Path::new("test.yaml"), None)
    }

    #[test]
    fn yaml_syntax_error_names_line_and_column() {
        let errors = read("a: [1, 2\nb: 3\n", Format::Yaml).unwrap_err();
        assert_eq!(errors.0.len(), 1);
        assert_eq!(errors.0[0].path, "");
        assert!(
            errors.0[0].message.starts_with("not valid YAML"),
            "{errors}"
        );
        assert!(errors.0[0].message.contains("line 2"), "{errors}");
    }

    #[test]
    fn json_syntax_error_names_line_and_column() {
        let errors = read("{\n  \"a\": 1,\n}", Format::Json).unwrap_err();
        assert!(errors.0[0].message.contains("line 3 column 1"), "{errors}");
    }

    #[test]
    fn yaml_merge_keys_are_applied() {
        let value = read("base: &b {x: 1}\nthing:\n  <<: *b\n  y: 2\n", Format::Yaml).unwrap();
        assert_eq!(value["thing"]["x"], 1);
        assert_eq!(value["thing"]["y"], 2);
    }

    #[test]
    fn empty_document_is_an_error() {
        let errors = read("# nothing here\n", Format::Yaml).unwrap_err();
        assert!(errors.0[0].message.contains("empty"), "{errors}");
    }

    #[test]
    fn duplicate_yaml_keys_are_an_error() {
        let errors = read("a: 1\na: 2\n", Format::Yaml).unwrap_err();
        assert!(errors.0[0].message.contains("duplicate"), "{errors}");
    }
}
