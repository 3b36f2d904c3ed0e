//! One rule for poisoned locks: a lock whose holder panicked is taken as it is.
//!
//! Every `Mutex` in saltship guards data that each critical section leaves whole (counters, a
//! buffer pool, a queue's receiver, delivery reports), and a panicking thread is re-raised by
//! the scope or join that owns it, which ends the run. Taking the lock anyway only keeps a
//! second panic in another thread from burying the first one's message.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, poisoned or not.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `cond`, poisoned or not.
pub(crate) fn wait<'a, T>(cond: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cond.wait(guard).unwrap_or_else(PoisonError::into_inner)
}
