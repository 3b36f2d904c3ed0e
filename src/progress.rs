//! The one place progress bars are made. They draw on stderr only when it is a terminal, and
//! log lines are printed through them (see [`crate::log_init`]) so the two never mix.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Every bar lives here, so the logger can suspend them while it prints.
pub fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

fn shown(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// A counter for discovery, whose total is not known yet.
pub fn counter(quiet: bool, what: &'static str) -> ProgressBar {
    if !shown(quiet) {
        return ProgressBar::hidden();
    }
    let bar = bars().add(ProgressBar::new_spinner());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {human_pos} {msg}").expect("valid template"),
    );
    bar.set_message(what);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A bar over a known number of returns, with the event count as its message.
pub fn bar(quiet: bool, total: u64) -> ProgressBar {
    if !shown(quiet) {
        return ProgressBar::hidden();
    }
    let bar = bars().add(ProgressBar::new(total));
    let template = "{wide_bar} {human_pos}/{human_len} returns, {msg} [{rate}, ETA {eta}]";
    let style = ProgressStyle::with_template(template)
        .expect("valid template")
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} returns/s", state.per_sec());
            },
        );
    bar.set_style(style);
    bar
}
