//! The one place progress bars are made. They draw on stderr only when it is a terminal, and
//! log lines are printed through them (see [`crate::log_init`]) so the two never mix.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Every bar lives here, so the logger can suspend them while it prints.
pub(crate) fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// On a terminal that can move the cursor: `TERM=dumb` (Emacs shells, some CI logs) would
/// show the bar's redraws as escape codes.
fn shown(quiet: bool) -> bool {
    !quiet
        && std::io::stderr().is_terminal()
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// A counter for discovery, whose total is not known yet.
pub(crate) fn counter(quiet: bool, what: &'static str) -> ProgressBar {
    if !shown(quiet) {
        return ProgressBar::hidden();
    }
    let bar = bars().add(ProgressBar::new_spinner());
    bar.set_style(ProgressStyle::with_template("{spinner} {pos} {msg}").expect("valid template"));
    bar.set_message(what);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A bar over the returns a run ships, with the event count as its message. The rate is the
/// returns done over the time since the bar started (an average: it holds over a run whose
/// speed changes, where indicatif's moving estimate, which starts from zero, showed a quarter
/// of the real one), and the ETA what is left at that rate. While the run waits on the
/// receiver (`blocked`) it says so instead; once finished, the bar stays with the time taken.
pub(crate) fn bar(quiet: bool, total: u64, blocked: Blocked) -> ProgressBar {
    if !shown(quiet) {
        return ProgressBar::hidden();
    }
    let bar = bars().add(ProgressBar::new(total));
    let template = "{wide_bar} {pos}/{len} returns, {msg} [{status}]";
    let style = ProgressStyle::with_template(template)
        .expect("valid template")
        .with_key(
            "status",
            move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write_status(state, blocked.since(), w);
            },
        );
    bar.set_style(style);
    // Redrawn while nothing moves, so a wait shows.
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

/// `N returns/s, ETA T s`, `waiting for the receiver, T s`, or at the end `N returns/s, in T s`.
fn write_status(
    state: &ProgressState,
    waiting: Option<Duration>,
    w: &mut dyn std::fmt::Write,
) -> std::fmt::Result {
    let secs = state.elapsed().as_secs_f64();
    let rate = match secs > 0.0 {
        true => state.pos() as f64 / secs,
        false => 0.0,
    };
    let left = state.len().unwrap_or(0).saturating_sub(state.pos());
    match waiting {
        _ if state.is_finished() => write!(w, "{rate:.0} returns/s, in {secs:.2} s"),
        Some(t) if t >= WAITING_AFTER => {
            write!(w, "waiting for the receiver, {} s", t.as_secs())
        }
        _ if rate > 0.0 => write!(w, "{rate:.0} returns/s, ETA {:.0} s", left as f64 / rate),
        _ => write!(w, "starting"),
    }
}

/// A wait on the receiver longer than this shows on the bar.
const WAITING_AFTER: Duration = Duration::from_secs(1);

/// Since when the run has been waiting on the receiver (sending or confirming), shared with
/// the bar.
#[derive(Debug, Clone, Default)]
pub(crate) struct Blocked(Arc<AtomicU64>);

impl Blocked {
    /// Marks the start of a wait on the receiver.
    pub(crate) fn start(&self) {
        self.0
            .store(epoch().elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
    }

    pub(crate) fn end(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// How long the current wait has lasted, if one is on.
    fn since(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            at => Some(
                epoch()
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at - 1)),
            ),
        }
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_measures_the_current_wait_only() {
        let b = Blocked::default();
        assert_eq!(b.since(), None);
        b.start();
        assert!(b.since().is_some_and(|t| t < Duration::from_secs(60)));
        b.end();
        assert_eq!(b.since(), None);
    }
}
