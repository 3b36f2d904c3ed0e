//! The job census's gauges in the Prometheus text format (0.0.4), written straight into the
//! answer: a few series per minion for thousands of minions, without a registry's copy of
//! each series (the `prometheus` crate keeps a few hundred bytes per series, and the answer
//! was built afresh at every scrape).

use std::fmt::Write;

use super::census::Summary;
use crate::time::SECOND;

/// One family: its `# HELP` and `# TYPE` lines, then its samples; nothing without samples.
pub(crate) struct Family<'o> {
    out: &'o mut String,
    name: &'static str,
    help: &'static str,
    started: bool,
}

impl<'o> Family<'o> {
    pub(crate) fn gauge(out: &'o mut String, name: &'static str, help: &'static str) -> Self {
        Family {
            out,
            name,
            help,
            started: false,
        }
    }

    /// One sample; `labels` as (name, value) pairs, the values escaped here.
    pub(crate) fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        if !self.started {
            self.started = true;
            let _ = writeln!(self.out, "# HELP {} {}", self.name, self.help);
            let _ = writeln!(self.out, "# TYPE {} gauge", self.name);
        }
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape(self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The census's per-minion and per-fun gauges, and the silent minions when the accepted keys
/// could be read (`keys`, sorted).
pub(crate) fn census(out: &mut String, s: &Summary, keys: Option<&[Box<str>]>) {
    let mut last = Family::gauge(
        out,
        "saltship_minion_last_return_timestamp_seconds",
        "When the newest job the minion returned to was published (any function).",
    );
    for m in &s.minions {
        if let Some(t) = m.last_return {
            last.sample(&[("minion", &m.name)], t);
        }
    }
    let mut missed = Family::gauge(
        out,
        "saltship_minion_missed_jobs",
        "Jobs in the cache that targeted the minion and got no return from it (after --return-wait).",
    );
    for m in &s.minions {
        missed.sample(&[("minion", &m.name)], m.missed as f64);
    }
    let mut in_a_row = Family::gauge(
        out,
        "saltship_minion_consecutive_missed_jobs",
        "How many of the latest jobs that targeted the minion it missed in a row.",
    );
    for m in &s.minions {
        in_a_row.sample(&[("minion", &m.name)], m.missed_in_a_row as f64);
    }
    let mut jobs = Family::gauge(
        out,
        "saltship_jobs",
        "Jobs in the cache by function: the 20 most frequent, the rest as other; saltutil.find_job left out.",
    );
    for (fun, n) in &s.jobs {
        jobs.sample(&[("fun", fun)], *n as f64);
    }
    let Some(keys) = keys else { return };
    let mut silent = 0;
    let mut family = Family::gauge(
        out,
        "saltship_minion_silent",
        "1 for a minion with an accepted key and no return in the job cache.",
    );
    for key in keys {
        let returned = s
            .minions
            .binary_search_by(|m| (*m.name).cmp(key))
            .is_ok_and(|i| s.minions[i].returned);
        if !returned {
            family.sample(&[("minion", key)], 1.0);
            silent += 1;
        }
    }
    Family::gauge(
        out,
        "saltship_silent_minions",
        "Minions with an accepted key and no return in the job cache.",
    )
    .sample(&[], f64::from(silent));
    Family::gauge(
        out,
        "saltship_accepted_keys",
        "Minion keys the master accepted (files in <pki_dir>/minions).",
    )
    .sample(&[], keys.len() as f64);
}

/// How far shipping is behind, set against the master's `keep_jobs` (microseconds).
pub(crate) fn shipping(out: &mut String, oldest_unshipped: Option<i64>, keep_jobs: i64, now: i64) {
    let age = oldest_unshipped.map_or(0, |t| (now - t).max(0));
    Family::gauge(
        out,
        "saltship_oldest_unshipped_return_age_seconds",
        "Age of the job of the oldest return not shipped yet (0 when none): lost once past keep_jobs.",
    )
    .sample(&[], age as f64 / SECOND as f64);
    Family::gauge(
        out,
        "saltship_keep_jobs_seconds",
        "The master's keep_jobs as saltship was told (--keep-jobs): jobs older are cleaned up.",
    )
    .sample(&[], keep_jobs as f64 / SECOND as f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::census::Minion;

    #[test]
    fn label_values_are_escaped_and_empty_families_left_out() {
        let mut out = String::new();
        let mut f = Family::gauge(&mut out, "x_gauge", "A gauge.");
        f.sample(&[("minion", "a\"b\\c\nd")], 1.5);
        f.sample(&[], 2.0);
        Family::gauge(&mut out, "x_none", "Nothing.");
        assert_eq!(
            out,
            "# HELP x_gauge A gauge.\n# TYPE x_gauge gauge\nx_gauge{minion=\"a\\\"b\\\\c\\nd\"} 1.5\nx_gauge 2\n"
        );
    }

    #[test]
    fn silent_minions_are_accepted_keys_without_a_return() {
        let row = |name: &str, returned: bool| Minion {
            name: name.into(),
            last_return: returned.then_some(1.0),
            returned,
            missed: 2,
            missed_in_a_row: 2,
        };
        let s = Summary {
            minions: vec![row("down", false), row("web1", true)],
            jobs: vec![("test.ping".into(), 2)],
        };
        let keys: Vec<Box<str>> = vec!["down".into(), "never".into(), "web1".into()];
        let mut out = String::new();
        census(&mut out, &s, Some(&keys));
        for line in [
            "saltship_minion_silent{minion=\"down\"} 1",
            "saltship_minion_silent{minion=\"never\"} 1",
            "saltship_silent_minions 2",
            "saltship_accepted_keys 3",
            "saltship_jobs{fun=\"test.ping\"} 2",
            "saltship_minion_last_return_timestamp_seconds{minion=\"web1\"} 1",
            "saltship_minion_consecutive_missed_jobs{minion=\"down\"} 2",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} not in\n{out}");
        }
        assert!(!out.contains("silent{minion=\"web1\"}"));
        assert!(!out.contains("last_return_timestamp_seconds{minion=\"down\"}"));
        let mut out = String::new();
        census(&mut out, &s, None);
        assert!(!out.contains("silent"), "{out}");
    }
}
