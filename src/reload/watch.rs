//! Noticing that the config file changed, for hot reload.
//!
//! Owns: one non-recursive watch on the config file's PARENT DIRECTORY,
//! debounced by notify-debouncer-full, and the bytes of the file as last
//! read (through symlinks), so `on_change` runs only when the content really
//! differs. The directory and not the file, because the file is replaced
//! rather than written: editors write a new file and rename it over the old
//! one, and Kubernetes ConfigMap volumes atomically rename a new `..data`
//! symlink over the old one (`config.yaml -> ..data/config.yaml`,
//! `..data -> ..2026_11_22_05_00_00.123`). A watch on the file itself would
//! follow the old inode and go quiet after the first such update.
//!
//! Every event in the directory (except reads, including our own) leads to a
//! re-read; comparing the bytes is what filters out `touch`, attribute
//! changes, identical rewrites and unrelated files. A file that cannot be read
//! (missing mid-rename) is logged and retried on the next event; it neither
//! triggers nor replaces the remembered content.
//!
//! Must not touch: loading, validating, diffing or applying the config. Equal
//! bytes here only save a pointless reload; whether a change means anything is
//! the reload path's question, answered on the parsed model.

use std::fmt;
use std::fs;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, ThreadId};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

/// Why the config file could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The file could not be read when the watch started (its content is the
    /// baseline that later content is compared with).
    #[error("cannot watch config file {path}: reading it failed: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The path has no parent directory to watch.
    #[error("cannot watch config file {path}: it has no parent directory")]
    NoParent {
        /// The config file.
        path: PathBuf,
    },
    /// notify could not start a watcher, or could not watch the directory.
    #[error("cannot watch config file {path}: watching directory {dir} failed: {source}")]
    Notify {
        /// The config file.
        path: PathBuf,
        /// The directory that was to be watched.
        dir: PathBuf,
        /// Why.
        source: notify::Error,
    },
}

/// A running watch on the config file. Dropping it stops the watch: once
/// `drop` returns, `on_change` is not running and will not be called again
/// (dropping may block for a quarter of the debounce, or for the duration of
/// a running `on_change`). Dropped from inside `on_change` itself, it only
/// stops later calls.
pub struct ConfigWatch {
    /// The config file, absolute.
    path: PathBuf,
    /// Taken (and stopped) by `Drop`.
    debouncer: Option<Debouncer<RecommendedWatcher, RecommendedCache>>,
    /// Written by `Drop` (to true, once); read by the debouncer thread before
    /// each `on_change`.
    stopped: Arc<AtomicBool>,
    /// Written by the debouncer thread (its own id, before its first
    /// `on_change`); read by `Drop`, which must not join the thread it runs on.
    handler_thread: Arc<OnceLock<ThreadId>>,
}

/// Watches `path` (the config file) and calls `on_change` after the file's
/// content changed, debounced by `debounce`. Returned guard stops watching on drop.
///
/// `on_change` runs on the debouncer's thread, one call at a time; it should
/// hand the work off (e.g. send on a channel) rather than reload in place.
/// The baseline is the content at the time of this call.
pub fn watch(
    path: &Path,
    debounce: Duration,
    on_change: impl Fn() + Send + 'static,
) -> Result<ConfigWatch, WatchError> {
    let read_error = |source| WatchError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Absolute, so a later change of the working directory changes nothing;
    // symlinks are left in place, to be followed afresh at every read.
    let path = std::path::absolute(path).map_err(read_error)?;
    let dir = match path.parent() {
        Some(dir) => dir.to_path_buf(),
        None => return Err(WatchError::NoParent { path }),
    };
    let last = fs::read(&path).map_err(read_error)?;

    let stopped = Arc::new(AtomicBool::new(false));
    let handler_thread = Arc::new(OnceLock::new());
    let mut trigger = Trigger {
        path: path.clone(),
        last,
        on_change,
        stopped: Arc::clone(&stopped),
        thread: Arc::clone(&handler_thread),
    };
    let notify_error = |source| WatchError::Notify {
        path: path.clone(),
        dir: dir.clone(),
        source,
    };
    let mut debouncer = new_debouncer(debounce, None, move |result| trigger.handle(result))
        .map_err(notify_error)?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(notify_error)?;
    tracing::debug!(path = %path.display(), dir = %dir.display(), "watching the config file");

    Ok(ConfigWatch {
        path,
        debouncer: Some(debouncer),
        stopped,
        handler_thread,
    })
}

impl ConfigWatch {
    /// The watched config file, made absolute.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for ConfigWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigWatch")
            .field("path", &self.path)
            .field("stopped", &self.stopped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Release);
        if let Some(debouncer) = self.debouncer.take() {
            if self.handler_thread.get() == Some(&thread::current().id()) {
                // Dropped from inside `on_change`: joining would wait for ourselves.
                debouncer.stop_nonblocking();
            } else {
                // Joins the debouncer thread: no `on_change` after this returns.
                debouncer.stop();
            }
        }
    }
}

/// The debouncer thread's state: the only place `on_change` is called from.
struct Trigger<F> {
    /// The config file, absolute; read through symlinks each time.
    path: PathBuf,
    /// The content last read successfully (at first, at `watch()` time).
    last: Vec<u8>,
    on_change: F,
    stopped: Arc<AtomicBool>,
    thread: Arc<OnceLock<ThreadId>>,
}

impl<F: Fn()> Trigger<F> {
    /// One debounced batch: re-read the file if anything but a read happened.
    fn handle(&mut self, result: DebounceEventResult) {
        self.thread.get_or_init(|| thread::current().id());
        match result {
            Ok(events) => {
                if events.iter().any(|e| may_change_content(&e.event.kind)) {
                    self.check();
                }
            }
            Err(errors) => {
                for error in &errors {
                    tracing::warn!(path = %self.path.display(), %error, "config file watch error");
                }
                // An error may have cost us events: look at the file anyway.
                self.check();
            }
        }
    }

    /// Calls `on_change` if the file's content differs from the last seen.
    fn check(&mut self) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let content = match fs::read(&self.path) {
            Ok(content) => content,
            Err(error) => {
                tracing::warn!(
                    path = %self.path.display(), %error,
                    "config file unreadable; keeping its last content, retrying on the next change"
                );
                return;
            }
        };
        if content == self.last {
            tracing::debug!(path = %self.path.display(), "config file event, content unchanged");
            return;
        }
        self.last = content;
        tracing::debug!(path = %self.path.display(), "config file content changed");
        // A panic here would end the debouncer thread, and with it hot reload,
        // while notify kept queueing events nobody drains. Log it instead.
        if catch_unwind(AssertUnwindSafe(|| (self.on_change)())).is_err() {
            tracing::error!(path = %self.path.display(), "config change handler panicked");
        }
    }
}

/// Whether an event can mean new content. Reads cannot, and inotify reports
/// opens: without this filter our own read would schedule the next one,
/// forever. A close after writing is kept: it is how a write ends.
fn may_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests;
