//! Diagnostics on stderr: `saltship: <what>: <why>` lines, printed around any progress bar.
//! `-v`/`-q` set saltship's own level (libraries stay at warnings unless `RUST_LOG` asks);
//! control characters are escaped so a name from disk cannot split or forge a line; under
//! systemd each line starts with its syslog priority, for `journalctl -p`; elsewhere, when
//! stderr is a file or a pipe (cron mail, `2>>log`, a supervisor), with its RFC 3339 UTC time.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};

use log::{Level, LevelFilter};

use crate::app::progress;

/// Warnings and the summary by default, `-v` saltship's decisions, `-vv` more detail, `-q`
/// errors only; `RUST_LOG` overrides.
pub(crate) fn init(verbose: u8, quiet: bool) {
    let ours = match (quiet, verbose) {
        (true, _) => LevelFilter::Error,
        (false, 0) => LevelFilter::Info,
        (false, 1) => LevelFilter::Debug,
        (false, _) => LevelFilter::Trace,
    };
    let journal = crate::cli::parse::journal_stream();
    let stamped = stamps_lines(journal, std::io::stderr().is_terminal());
    let inner = env_logger::Builder::new()
        .filter_level(ours.min(LevelFilter::Warn))
        .filter_module("saltship", ours)
        .parse_env("RUST_LOG")
        .format(move |f, record| {
            let prefix = if journal {
                priority(record.level())
            } else {
                ""
            };
            let level = match record.level() {
                Level::Info => "",
                Level::Warn => "warning: ",
                Level::Error => "error: ",
                Level::Debug => "debug: ",
                Level::Trace => "trace: ",
            };
            let text = record.args().to_string();
            if stamped {
                write!(f, "{} ", stamp(chrono::Utc::now()))?;
            }
            writeln!(f, "{prefix}saltship: {level}{}", escape_controls(&text))
        })
        .build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(BarLogger(inner))).is_ok() {
        log::set_max_level(max);
    }
}

/// Whether each line starts with its time: the journal and a person at a terminal have one
/// already; a file or a pipe has none.
fn stamps_lines(journal: bool, terminal: bool) -> bool {
    !journal && !terminal
}

/// A line's time: RFC 3339 in UTC with milliseconds, `2026-12-03T13:40:00.123Z`.
fn stamp(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The `<N>` syslog priority journald reads at the start of a line.
fn priority(level: Level) -> &'static str {
    match level {
        Level::Error => "<3>",
        Level::Warn => "<4>",
        Level::Info => "<6>",
        Level::Debug | Level::Trace => "<7>",
    }
}

/// `text` with every control character (newline, CR, ESC, ...) written as an escape, so that
/// one message stays one line and cannot move the cursor or recolour the terminal.
pub(crate) fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Prints log lines with the progress bars suspended, so the two never mix.
struct BarLogger(env_logger::Logger);

impl log::Log for BarLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        self.0.enabled(m)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.0.matches(record) {
            progress::bars().suspend(|| self.0.log(record));
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain: path"), "plain: path");
        assert_eq!(
            escape_controls("a\nsaltship: error: forged\r\x1b[31m\u{7f}"),
            "a\\nsaltship: error: forged\\r\\u{1b}[31m\\u{7f}"
        );
        assert_eq!(escape_controls("tab\there é"), "tab\\there é");
    }

    #[test]
    fn only_a_file_or_a_pipe_gets_times() {
        assert!(stamps_lines(false, false));
        assert!(!stamps_lines(true, false), "journald stamps lines itself");
        assert!(
            !stamps_lines(false, true),
            "a person at a terminal knows the time"
        );
        assert!(!stamps_lines(true, true));
    }

    #[test]
    fn a_time_is_rfc3339_utc_with_milliseconds() {
        use chrono::TimeZone;
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 12, 3, 13, 40, 0)
            .unwrap()
            + chrono::Duration::microseconds(123_456);
        assert_eq!(stamp(t), "2026-12-03T13:40:00.123Z");
    }

    #[test]
    fn journald_priorities() {
        assert_eq!(priority(Level::Error), "<3>");
        assert_eq!(priority(Level::Warn), "<4>");
        assert_eq!(priority(Level::Info), "<6>");
        assert_eq!(priority(Level::Debug), "<7>");
    }
}
