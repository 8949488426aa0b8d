//! Which data-path worker the current thread is.
//!
//! Owns: the worker index of each data-path thread, set once when the
//! worker starts. Per-worker state (connection pools) is indexed by it.
//! Threads that are not workers (the control thread, tests) read 0.

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as worker `index`.
pub fn enter(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// The current thread's worker index (0 off the data path).
#[inline]
pub fn current() -> usize {
    WORKER.with(Cell::get)
}
