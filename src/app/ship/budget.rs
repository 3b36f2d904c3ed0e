//! Memory for the returns in flight, counted in bytes across the workers: a hand-off waits
//! until what is in flight leaves room for it, and one bigger than the whole budget waits until
//! nothing else is in flight, then goes alone.

use std::path::Path;
use std::sync::{Condvar, Mutex};

use crate::sync::{lock, wait};

/// What a return holds at its peak, per byte of its file: the file, its decoded values, its
/// events and their encoding. Measured at 6.8 on the benchmark corpus's 28 MB returns (100,000
/// states each), with some room.
const PER_FILE_BYTE: u64 = 8;
/// What any return holds, however small: its buffers and bookkeeping.
const PER_RETURN: u64 = 4 << 10;

/// A byte budget shared by the producer (which takes from it) and the consumer (which gives
/// back once a return's events are sent).
pub(super) struct Budget {
    limit: u64,
    /// Bytes in flight, and whether the pass ended (nothing waits any more).
    state: Mutex<(u64, bool)>,
    freed: Condvar,
}

impl Budget {
    pub(super) fn new(limit: u64) -> Budget {
        Budget {
            limit,
            state: Mutex::new((0, false)),
            freed: Condvar::new(),
        }
    }

    /// Waits until `n` bytes fit, or nothing else is in flight, or the pass ended.
    pub(super) fn take(&self, n: u64) {
        let mut state = lock(&self.state);
        while state.0 > 0 && state.0 + n > self.limit && !state.1 {
            state = wait(&self.freed, state);
        }
        state.0 += n;
    }

    pub(super) fn give(&self, n: u64) {
        let mut state = lock(&self.state);
        state.0 = state.0.saturating_sub(n);
        self.freed.notify_all();
    }

    /// The pass ended (delivery failed, or a stop): whoever waits goes on, and finds the
    /// pipeline closed.
    pub(super) fn close(&self) {
        lock(&self.state).1 = true;
        self.freed.notify_all();
    }

    /// Whether a hand-off of `n` bytes goes alone: it is bigger than the whole budget.
    pub(super) fn alone(&self, n: u64) -> bool {
        n > self.limit
    }

    /// The share of the budget one hand-off between threads should stay under, with `window`
    /// hand-offs in flight.
    pub(super) fn share(&self, window: usize) -> u64 {
        self.limit / window.max(1) as u64
    }
}

/// What reading the return at `path` will hold, from its size now: a file that will not be
/// read (missing, not regular, over `max`) costs next to nothing.
pub(super) fn cost(path: &Path, max: u64) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() <= max => PER_RETURN + m.len() * PER_FILE_BYTE,
        _ => PER_RETURN,
    }
}

/// Whether what a return of `size` bytes (already read) will hold beyond its file can be
/// allocated now. Checked before decoding it, so that a return too big for the memory left
/// (a `ulimit -v`, no more address space) is a failed file for this run, not an abort
/// halfway through it. The check gives the memory back at once: it only asks.
pub(super) fn fits(size: usize) -> bool {
    let beyond = (size as u64).saturating_mul(PER_FILE_BYTE - 1);
    usize::try_from(beyond).is_ok_and(|n| Vec::<u8>::new().try_reserve_exact(n).is_ok())
}

/// Splits `costs` into runs of at most `count` items whose costs add up to at most `share`,
/// an item costlier than `share` alone: (start, end, cost) of each.
pub(super) fn runs(costs: &[u64], count: usize, share: u64) -> Vec<(usize, usize, u64)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < costs.len() {
        let (mut end, mut sum) = (start, 0);
        while end < costs.len()
            && end - start < count
            && (end == start || sum + costs[end] <= share)
        {
            sum += costs[end];
            end += 1;
        }
        out.push((start, end, sum));
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn runs_are_bounded_by_count_and_bytes() {
        assert_eq!(runs(&[], 16, 100), vec![]);
        assert_eq!(
            runs(&[10, 10, 10, 10, 10], 2, 100),
            vec![(0, 2, 20), (2, 4, 20), (4, 5, 10)]
        );
        assert_eq!(
            runs(&[40, 40, 40, 500, 10], 16, 100),
            vec![(0, 2, 80), (2, 3, 40), (3, 4, 500), (4, 5, 10)]
        );
    }

    /// Many takers at once: what is in flight never exceeds the budget, except one big taker
    /// that goes alone.
    #[test]
    fn in_flight_stays_in_the_budget_and_a_big_one_goes_alone() {
        let budget = Arc::new(Budget::new(100));
        let in_flight = Arc::new(AtomicU64::new(0));
        let worst = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = [30, 30, 30, 30, 250, 30, 60, 30]
            .into_iter()
            .map(|n| {
                let (budget, in_flight, worst) = (budget.clone(), in_flight.clone(), worst.clone());
                std::thread::spawn(move || {
                    budget.take(n);
                    let now = in_flight.fetch_add(n, Ordering::SeqCst) + n;
                    // A big one must be alone; the others within the budget.
                    assert!(now <= 100 || now == n, "{now} in flight");
                    worst.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    in_flight.fetch_sub(n, Ordering::SeqCst);
                    budget.give(n);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        assert_eq!(worst.load(Ordering::SeqCst), 250);
    }

    #[test]
    fn close_lets_a_waiting_taker_go() {
        let budget = Arc::new(Budget::new(10));
        budget.take(10);
        let b = budget.clone();
        let waiter = std::thread::spawn(move || b.take(5));
        std::thread::sleep(Duration::from_millis(20));
        budget.close();
        waiter.join().expect("no panic");
    }
}
