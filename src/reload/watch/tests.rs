//! Tests of the config watcher on real directories and real notify.
//!
//! Every wait has a deadline. A trigger is recognised by the content
//! `on_change` read, so "exactly once" is checked by the next real change:
//! its trigger must be the very next message. The short sleeps before such a
//! change only keep a spurious trigger out of the same debounced batch (they
//! make the test sharper); they never decide a pass.

use std::fs;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use tempfile::TempDir;

use super::*;

const DEBOUNCE: Duration = Duration::from_millis(100);
const DEADLINE: Duration = Duration::from_secs(10);

/// A watch whose `on_change` sends the file's content as it read it.
struct Watched {
    /// Holds the temp directory for the test's duration.
    dir: TempDir,
    config: PathBuf,
    watch: ConfigWatch,
    triggers: Receiver<Vec<u8>>,
}

impl Watched {
    /// Watches `config` (already written under `dir`).
    fn start(dir: TempDir, config: PathBuf) -> Self {
        let (tx, triggers) = mpsc::channel();
        let read = config.clone();
        let watch = watch(&config, DEBOUNCE, move || {
            let _ = tx.send(fs::read(&read).unwrap_or_default());
        })
        .unwrap();
        Self {
            dir,
            config,
            watch,
            triggers,
        }
    }

    /// Watches `dir/config.yaml`, a plain file holding `content`.
    fn plain(content: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yaml");
        fs::write(&config, content).unwrap();
        Self::start(dir, config)
    }

    /// The next trigger must come within the deadline and must have read
    /// `content`: no other trigger came before it.
    fn expect_trigger(&self, content: &str) {
        match self.triggers.recv_timeout(DEADLINE) {
            Ok(read) => assert_eq!(
                String::from_utf8_lossy(&read),
                content,
                "the next trigger was not the one for {content:?}"
            ),
            Err(e) => panic!("no trigger for {content:?} within {DEADLINE:?}: {e}"),
        }
    }

    /// Stops the watch: no trigger may be left over, and `on_change` must be
    /// gone (the channel disconnected) once the drop returned.
    fn finish(self) {
        drop(self.watch);
        match self.triggers.try_recv() {
            Err(TryRecvError::Disconnected) => {}
            Ok(read) => panic!("extra trigger: {:?}", String::from_utf8_lossy(&read)),
            Err(TryRecvError::Empty) => panic!("on_change still alive after drop"),
        }
    }
}

/// Lets a debounced batch go by, so the next change lands in a batch of its own.
fn let_batch_pass() {
    thread::sleep(DEBOUNCE * 3);
}

/// Writes `content` to `dir/name.tmp`, then renames it over `dir/name`.
fn replace_by_rename(config: &Path, content: &str) {
    let tmp = config.with_extension("yaml.tmp");
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, config).unwrap();
}

#[test]
fn in_place_write_triggers_once() {
    let w = Watched::plain("a: 1\n");
    fs::write(&w.config, "a: 2\n").unwrap();
    w.expect_trigger("a: 2\n");

    let_batch_pass();
    fs::write(&w.config, "a: 3\n").unwrap();
    w.expect_trigger("a: 3\n");
    w.finish();
}

#[test]
fn new_file_renamed_over_triggers_every_time() {
    let w = Watched::plain("a: 1\n");
    replace_by_rename(&w.config, "a: 2\n");
    w.expect_trigger("a: 2\n");

    // The file is a new inode now; the directory watch still sees the next one.
    let_batch_pass();
    replace_by_rename(&w.config, "a: 3\n");
    w.expect_trigger("a: 3\n");
    w.finish();
}

/// Kubernetes ConfigMap volume: `config.yaml -> ..data/config.yaml`,
/// `..data -> ..<timestamp>`; an update writes a new timestamped directory,
/// renames a new `..data` symlink over the old one, then removes the old
/// directory.
#[cfg(unix)]
#[test]
fn configmap_symlink_swap_triggers() {
    use std::os::unix::fs::symlink;

    fn publish(dir: &Path, version: &str, content: &str) {
        fs::create_dir(dir.join(version)).unwrap();
        fs::write(dir.join(version).join("config.yaml"), content).unwrap();
        symlink(version, dir.join("..data_tmp")).unwrap();
        fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("..2026_a")).unwrap();
    fs::write(dir.path().join("..2026_a/config.yaml"), "v: a\n").unwrap();
    symlink("..2026_a", dir.path().join("..data")).unwrap();
    symlink("..data/config.yaml", dir.path().join("config.yaml")).unwrap();
    let config = dir.path().join("config.yaml");
    let w = Watched::start(dir, config);

    publish(w.dir.path(), "..2026_b", "v: b\n");
    fs::remove_dir_all(w.dir.path().join("..2026_a")).unwrap();
    w.expect_trigger("v: b\n");

    let_batch_pass();
    publish(w.dir.path(), "..2026_c", "v: c\n");
    fs::remove_dir_all(w.dir.path().join("..2026_b")).unwrap();
    w.expect_trigger("v: c\n");
    w.finish();
}

#[test]
fn identical_rewrite_touch_and_other_files_do_not_trigger() {
    let w = Watched::plain("a: 1\n");

    fs::write(&w.config, "a: 1\n").unwrap();
    replace_by_rename(&w.config, "a: 1\n");
    fs::File::options()
        .write(true)
        .open(&w.config)
        .unwrap()
        .set_modified(SystemTime::now())
        .unwrap();
    fs::write(w.dir.path().join("other.yaml"), "b: 1\n").unwrap();
    fs::read(&w.config).unwrap();

    let_batch_pass();
    fs::write(&w.config, "a: 2\n").unwrap();
    w.expect_trigger("a: 2\n");
    w.finish();
}

#[test]
fn missing_file_neither_triggers_nor_forgets_the_content() {
    let w = Watched::plain("a: 1\n");

    fs::remove_file(&w.config).unwrap();
    let_batch_pass();
    // Back with the content seen before it went missing: nothing changed.
    fs::write(&w.config, "a: 1\n").unwrap();

    let_batch_pass();
    fs::write(&w.config, "a: 2\n").unwrap();
    w.expect_trigger("a: 2\n");
    w.finish();
}

#[test]
fn dropping_the_watch_inside_on_change_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    fs::write(&config, "a: 1\n").unwrap();

    let slot: Arc<Mutex<Option<ConfigWatch>>> = Arc::new(Mutex::new(None));
    let (tx, triggers) = mpsc::channel();
    let in_handler = Arc::clone(&slot);
    let w = watch(&config, DEBOUNCE, move || {
        let taken = in_handler.lock().unwrap().take();
        drop(taken);
        let _ = tx.send(());
    })
    .unwrap();
    *slot.lock().unwrap() = Some(w);

    fs::write(&config, "a: 2\n").unwrap();
    triggers.recv_timeout(DEADLINE).unwrap();
    // The debouncer thread ends without joining itself, dropping `on_change`.
    assert_eq!(
        triggers.recv_timeout(DEADLINE),
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn unreadable_or_parentless_paths_are_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let err = watch(&missing, DEBOUNCE, || {}).unwrap_err();
    assert!(matches!(err, WatchError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.yaml"), "{err}");

    let err = watch(Path::new("/"), DEBOUNCE, || {}).unwrap_err();
    assert!(matches!(err, WatchError::NoParent { .. }), "{err:?}");
}

#[test]
fn reads_do_not_count_as_changes() {
    assert!(!may_change_content(&EventKind::Access(AccessKind::Open(
        AccessMode::Any
    ))));
    assert!(may_change_content(&EventKind::Access(AccessKind::Close(
        AccessMode::Write
    ))));
}
