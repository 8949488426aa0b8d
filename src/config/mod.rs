//! Configuration: an Envoy v3 bootstrap (YAML or JSON) in, a validated
//! [`model::Bootstrap`] or every error out.
//!
//! Owns: reading the file, decoding Envoy's field names (`envoy`), checking
//! and defaulting them into the model (`validate`).
//! Must not touch: any other room. `config` imports nothing of hale's but
//! `error`-free plain types, so every room can depend on it.

pub mod diff;
pub mod envoy;
pub mod model;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use model::Bootstrap;

/// One problem in a config file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// The full field path, e.g.
    /// `static_resources.clusters[1].load_assignment.endpoints[0].lb_endpoints[2].endpoint.address.socket_address.port_value`.
    /// Empty for a problem with the whole document (unreadable, not YAML).
    pub path: String,
    /// What is wrong, in a sentence.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.path,
                self.message
            )
        }
    }
}

/// Every problem found in one config file, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// A single error about the whole file.
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Self(vec![ConfigError {
            file: file.to_path_buf(),
            path: String::new(),
            message: message.into(),
        }])
    }

    /// The errors, one per line.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// What the command line may override in the file (Envoy's
/// `--service-node` and `--service-cluster` win over `node.id`/`node.cluster`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--service-node`.
    pub service_node: Option<String>,
    /// `--service-cluster`.
    pub service_cluster: Option<String>,
}

/// The document syntax, chosen from the file name as Envoy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.json`.
    Json,
    /// Anything else (`.yaml`, `.yml`; YAML also reads JSON).
    Yaml,
}

impl Format {
    /// `.json` is JSON; everything else is read as YAML.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// A digest of a config file's bytes (see [`Bootstrap::digest`]).
pub fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// Reads, decodes and validates the bootstrap at `path`.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Bootstrap, ConfigErrors> {
    Loader::default().load(path, overrides)
}

/// Decodes and validates a bootstrap held in memory; `file` names it in errors.
pub fn parse(
    text: &str,
    format: Format,
    file: &Path,
    overrides: &Overrides,
) -> Result<Bootstrap, ConfigErrors> {
    let document = envoy::read_document(text, format, file, None)?;
    validate_document(document, text, file, overrides)
}

/// Loads config files again and again, remembering the YAML pieces it
/// parsed, so that reading an edited file parses only the pieces that
/// changed (a reload of a large config is mostly parsing). Cloning shares
/// the memory: the startup load hands it to the reloads.
#[derive(Debug, Clone, Default)]
pub struct Loader {
    memory: Arc<Mutex<envoy::PieceMemory>>,
}

impl Loader {
    /// [`load`], parsing only the YAML pieces not read before.
    pub fn load(&self, path: &Path, overrides: &Overrides) -> Result<Bootstrap, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::whole_file(path, format!("cannot read the file: {e}")))?;
        self.parse(&text, Format::from_path(path), path, overrides)
    }

    /// [`parse`], parsing only the YAML pieces not read before.
    pub fn parse(
        &self,
        text: &str,
        format: Format,
        file: &Path,
        overrides: &Overrides,
    ) -> Result<Bootstrap, ConfigErrors> {
        let document = {
            // Only loads take the lock, one at a time (reloads are serial);
            // a poisoned memory is still a valid cache of piece values.
            let mut memory = self
                .memory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            envoy::read_document(text, format, file, Some(&mut memory))?
        };
        validate_document(document, text, file, overrides)
    }

    /// How many YAML pieces the last load parsed, and how many it holds.
    pub fn pieces(&self) -> (usize, usize) {
        let memory = self
            .memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (memory.parsed(), memory.len())
    }
}

/// The document read from `text`, validated, with the command line's
/// overrides applied.
fn validate_document(
    document: serde_json::Value,
    text: &str,
    file: &Path,
    overrides: &Overrides,
) -> Result<Bootstrap, ConfigErrors> {
    let mut bootstrap = validate::bootstrap(document, file)?;
    bootstrap.digest = digest(text.as_bytes());
    if let Some(node) = &overrides.service_node {
        bootstrap.node.id = node.clone();
    }
    if let Some(cluster) = &overrides.service_cluster {
        bootstrap.node.cluster = cluster.clone();
    }
    Ok(bootstrap)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quickstart with `n` more clusters, so it is large enough to cut.
    fn quickstart_with(n: usize, port: u16) -> String {
        let mut text = include_str!("../../config/quickstart.yaml").to_string();
        for i in 0..n {
            text.push_str(&format!(
                "  - name: extra{i}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: extra{i}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {} }}\n",
                port + i as u16
            ));
        }
        text
    }

    #[test]
    fn a_loader_reads_what_parse_reads_and_parses_again_only_what_changed() {
        let file = Path::new("quickstart.yaml");
        let overrides = Overrides::default();
        let loader = Loader::default();
        let text = quickstart_with(300, 20000);
        assert!(
            text.contains("clusters:\n  - name: app"),
            "the quickstart's clusters come last"
        );
        let cut = loader.parse(&text, Format::Yaml, file, &overrides);
        let whole = parse(&text, Format::Yaml, file, &overrides);
        let (cut, whole) = (cut.expect("valid"), whole.expect("valid"));
        assert_eq!(cut.raw, whole.raw);
        assert_eq!(cut.clusters.len(), 301);
        let (parsed, remembered) = loader.pieces();
        assert_eq!(parsed, remembered);
        assert!(remembered > 10, "{remembered} pieces");

        // A clone shares the memory (the startup load hands it on).
        let edited = text.replacen("port_value: 20150", "port_value: 30150", 1);
        let again = loader
            .clone()
            .parse(&edited, Format::Yaml, file, &overrides);
        assert_eq!(
            again.expect("valid").raw,
            parse(&edited, Format::Yaml, file, &overrides)
                .expect("valid")
                .raw
        );
        assert_eq!(loader.pieces().0, 1);

        // Errors are the whole-file parse's, with the right line.
        let broken = text.replacen("port_value: 20150", "port_value: [20150", 1);
        let errors = loader
            .parse(&broken, Format::Yaml, file, &overrides)
            .expect_err("broken");
        assert_eq!(
            errors,
            parse(&broken, Format::Yaml, file, &overrides).expect_err("broken")
        );
        assert!(errors.to_string().contains("line"), "{errors}");
    }
}
