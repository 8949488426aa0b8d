//! Where a value is, and the sink that collects every error about values.
//!
//! Owns: [`Place`] (a printed path plus a sortable position) and [`Sink`],
//! which collects errors as they are found and hands them back in document
//! order.
//!
//! Must not touch: the document; places are built by the reader.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, ConfigErrors};

/// Where a value is: its printed path, and its position (the index among its
/// parent's keys or items, at every level) so errors can be sorted into
/// document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Place {
    path: String,
    pub(super) order: Vec<u32>,
}

impl Place {
    /// The printed path, e.g. `static_resources.listeners[0].name`.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(super) fn field(&self, key: &str, position: usize) -> Place {
        Place {
            path: self.join(key),
            order: self.deeper(position),
        }
    }

    pub(super) fn item(&self, index: usize) -> Place {
        // Every value of a large file gets a place: built by hand, without
        // the formatting machinery.
        let digits = index.to_string();
        let mut path = String::with_capacity(self.path.len() + digits.len() + 2);
        path.push_str(&self.path);
        path.push('[');
        path.push_str(&digits);
        path.push(']');
        Place {
            path,
            order: self.deeper(index),
        }
    }

    fn deeper(&self, position: usize) -> Vec<u32> {
        let mut order = Vec::with_capacity(self.order.len() + 1);
        order.extend_from_slice(&self.order);
        order.push(u32::try_from(position).unwrap_or(u32::MAX));
        order
    }

    /// Where an absent field would be: printed at its own path, sorted with
    /// its parent (before the parent's present children).
    pub(crate) fn absent(&self, key: &str) -> Place {
        Place {
            path: self.join(key),
            order: self.order.clone(),
        }
    }

    fn join(&self, key: &str) -> String {
        if self.path.is_empty() {
            return key.to_string();
        }
        let mut path = String::with_capacity(self.path.len() + key.len() + 1);
        path.push_str(&self.path);
        path.push('.');
        path.push_str(key);
        path
    }
}

/// Collects every error; [`Sink::finish`] returns them in document order.
#[derive(Debug)]
pub(crate) struct Sink {
    file: PathBuf,
    found: Vec<(Vec<u32>, ConfigError)>,
}

impl Sink {
    /// An empty sink for errors in `file`.
    pub(crate) fn new(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
            found: Vec::new(),
        }
    }

    /// Records that the value at `at` is wrong.
    pub(crate) fn report(&mut self, at: &Place, message: impl Into<String>) {
        self.found.push((
            at.order.clone(),
            ConfigError {
                file: self.file.clone(),
                path: at.path.clone(),
                message: message.into(),
            },
        ));
    }

    /// All errors sorted by where they are in the document (stable, so two
    /// errors at one place keep the order they were found in).
    pub(crate) fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.found.is_empty() {
            return Ok(());
        }
        self.found.sort_by(|a, b| a.0.cmp(&b.0));
        Err(ConfigErrors(
            self.found.into_iter().map(|(_, e)| e).collect(),
        ))
    }
}
