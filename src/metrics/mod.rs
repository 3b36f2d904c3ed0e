//! Prometheus metrics: saltship's own counters and the fleet's health (each minion's latest
//! real state run, every job's returns and misses, the silent minions), kept in one shared
//! [`Metrics`], rendered in the text exposition format (0.0.4) for `--metrics-file` and the
//! `--metrics-listen` endpoint alike.
//!
//! The fleet is rebuilt from the cache at start ([`rebuild`]) and updated as returns are read
//! and job folders change ([`refresh`]); the renderer and the HTTP server only ever hold the
//! lock long enough to copy numbers out.

pub(crate) mod census;
pub(crate) mod file;
pub(crate) mod fleet;
pub(crate) mod rebuild;
mod refresh;
pub(crate) mod serve;
mod text;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, Opts, Registry};

use crate::time::{JidZone, SECOND};
use census::Census;
use fleet::{Fleet, Observed};

/// saltship's own numbers, as the shipping loop last reported them.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Own {
    pub(crate) returns: u64,
    /// Events shipped: sent, and not refused by the receiver.
    pub(crate) events: u64,
    /// Events the receiver refused for good (not sent again).
    pub(crate) rejected: u64,
    pub(crate) failed_files: u64,
    pub(crate) reconnects: u64,
    /// Age of the oldest return sent but not confirmed yet, in seconds.
    pub(crate) lag: f64,
    /// Folders under inotify watch (`watch` only).
    pub(crate) watches: u64,
    /// Checkpoint saves (journal appends and compactions), and the bytes they wrote.
    pub(crate) checkpoint_saves: u64,
    pub(crate) checkpoint_written_bytes: u64,
    /// When the job of the oldest return not shipped yet (sent and not confirmed, or left
    /// by a pass that failed) was published, microseconds since the epoch.
    pub(crate) oldest_unshipped: Option<i64>,
}

/// Where and how the fleet gauges read the cache and the master's keys.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) cache: PathBuf,
    pub(crate) zone: JidZone,
    pub(crate) max_return_bytes: u64,
    /// `--return-wait`, microseconds: a job's misses count once it is over.
    pub(crate) return_wait: i64,
    /// `--keep-jobs`, microseconds.
    pub(crate) keep_jobs: i64,
    /// `--pki-dir`: the accepted keys are the files in its `minions/`.
    pub(crate) pki_dir: PathBuf,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            cache: PathBuf::from("/var/cache/salt/master/jobs"),
            zone: JidZone::Utc,
            max_return_bytes: 64 << 20,
            return_wait: 600 * SECOND,
            keep_jobs: 86_400 * SECOND,
            pki_dir: PathBuf::from("/etc/salt/pki/master"),
        }
    }
}

/// The metrics, shared between the shipping loop and the HTTP server.
#[derive(Clone, Default)]
pub(crate) struct Metrics {
    state: Arc<Mutex<State>>,
    settings: Arc<Settings>,
}

#[derive(Default)]
struct State {
    fleet: Fleet,
    own: Own,
    census: Census,
    /// The accepted keys, sorted; `None` when they could not be read.
    keys: Option<Vec<Box<str>>>,
    keys_warned: bool,
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// One return read: its results counted, its real runs made the minions' latest.
    pub(crate) fn observe(&self, key: &str, jid: &str, seen: Observed) {
        self.lock().fleet.observe(key, jid, seen);
    }

    /// Metrics whose fleet is what the cache shows now (see [`rebuild`]), with the accepted
    /// keys read.
    pub(crate) fn rebuilt(settings: Settings, funs: &[String]) -> Metrics {
        let (fleet, census) = rebuild::rebuild(&settings, funs);
        let metrics = Metrics {
            settings: Arc::new(settings),
            ..Metrics::default()
        };
        {
            let mut state = metrics.lock();
            state.fleet = fleet;
            state.census = census;
        }
        metrics.refresh_keys();
        metrics
    }

    /// Forgets the jobs the master cleaned up, and the minions whose last run was one of them
    /// (`keys`: the jobs in the cache).
    pub(crate) fn retain(&self, keys: &BTreeSet<&str>) -> usize {
        let mut state = self.lock();
        state.census.retain(keys);
        state.fleet.retain(keys)
    }

    pub(crate) fn set_own(&self, own: Own) {
        self.lock().own = own;
    }

    /// Every metric in the Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let registry = self.registry();
        let mut text = String::new();
        // Encoding only fails on a registry that breaks the format's rules, which ours does not.
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut text) {
            log::error!("metrics: {e}");
        }
        let now = chrono::Utc::now().timestamp_micros();
        let s = &self.settings;
        let (summary, keys, own) = {
            let state = self.lock();
            let summary = state.census.summary(now, s.return_wait);
            (summary, state.keys.clone(), state.own)
        };
        text::census(&mut text, &summary, keys.as_deref());
        text::shipping(&mut text, own.oldest_unshipped, s.keep_jobs, now);
        text
    }

    /// A registry filled from the shared state: built afresh for each rendering, so minions
    /// that dropped out leave no series behind.
    fn registry(&self) -> Registry {
        let registry = Registry::new();
        // A copy, so that shipping never waits for the encoding.
        let (own, fleet) = {
            let state = self.lock();
            (state.own, state.fleet.clone())
        };
        let counter = |name: &str, help: &str, value: u64| {
            let c = IntCounter::new(name, help).expect("valid metric name");
            c.inc_by(value);
            register(&registry, c);
        };
        counter(
            "saltship_returns_total",
            "Minion returns read.",
            own.returns,
        );
        counter(
            "saltship_events_total",
            "Events shipped (state, job and no_return), not counting those the receiver rejected.",
            own.events,
        );
        counter(
            "saltship_events_rejected_total",
            "Events the receiver refused for good (not sent again).",
            own.rejected,
        );
        counter(
            "saltship_failed_files_total",
            "Cache files that could not be read.",
            own.failed_files,
        );
        counter(
            "saltship_reconnects_total",
            "Reconnections to a receiver after a failure.",
            own.reconnects,
        );
        let lag = Gauge::new(
            "saltship_lag_seconds",
            "Age of the oldest return sent but not confirmed yet.",
        )
        .expect("valid metric name");
        lag.set(own.lag);
        register(&registry, lag);
        let watches = Gauge::new(
            "saltship_watches",
            "Folders under inotify watch: where returns can still land.",
        )
        .expect("valid metric name");
        watches.set(own.watches as f64);
        register(&registry, watches);
        counter(
            "saltship_checkpoint_saves_total",
            "Checkpoint saves (journal appends and compactions).",
            own.checkpoint_saves,
        );
        counter(
            "saltship_checkpoint_written_bytes_total",
            "Bytes written by checkpoint saves.",
            own.checkpoint_written_bytes,
        );
        fleet_metrics(&registry, &fleet);
        registry
    }
}

fn register<M: prometheus::core::Collector + 'static>(registry: &Registry, m: M) {
    registry
        .register(Box::new(m))
        .expect("each metric registered once");
}

/// The per-minion gauges and the fleet's counters. A few series per minion: see docs/metrics.md.
fn fleet_metrics(registry: &Registry, fleet: &Fleet) {
    let results = IntCounterVec::new(
        Opts::new(
            "saltship_state_results_total",
            "State results read since saltship started, test runs included.",
        ),
        &["result"],
    )
    .expect("valid metric");
    let r = &fleet.results;
    for (label, n) in [
        ("succeeded", r.succeeded),
        ("failed", r.failed),
        ("pending", r.pending),
    ] {
        results.with_label_values(&[label]).inc_by(n);
    }
    register(registry, results);
    let gauge = |name: &str, help: &str, labels: &[&str]| {
        let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
        register(registry, g.clone());
        g
    };
    let when = gauge(
        "saltship_minion_last_state_run_timestamp_seconds",
        "When the minion's latest real state run was published.",
        &["minion"],
    );
    let success = gauge(
        "saltship_minion_last_state_run_success",
        "1 when no state of the minion's latest real state run failed and it was not an error return.",
        &["minion"],
    );
    let states = gauge(
        "saltship_minion_last_state_run_states",
        "States of the minion's latest real state run by result (an error return is one failed).",
        &["minion", "result"],
    );
    let changed = gauge(
        "saltship_minion_last_state_run_changed_states",
        "States of the minion's latest real state run that changed something.",
        &["minion"],
    );
    let duration = gauge(
        "saltship_minion_last_state_run_duration_seconds",
        "Sum of the durations of the states of the minion's latest real state run.",
        &["minion"],
    );
    for (minion, run) in &fleet.minions {
        let s = &run.summary;
        if let Some(t) = run.published {
            when.with_label_values(&[minion]).set(t);
        }
        success
            .with_label_values(&[minion])
            .set(if s.success() { 1.0 } else { 0.0 });
        for (label, n) in [
            ("succeeded", s.succeeded),
            ("failed", s.failed),
            ("pending", s.pending),
        ] {
            states.with_label_values(&[minion, label]).set(n as f64);
        }
        changed.with_label_values(&[minion]).set(s.changed as f64);
        duration.with_label_values(&[minion]).set(s.duration);
    }
}

#[cfg(test)]
mod tests {
    use super::fleet::RunSummary;
    use super::*;

    #[test]
    fn renders_every_series_and_drops_cleaned_up_minions() {
        let metrics = Metrics::default();
        let run = |failed| Observed {
            publish: Some(1_700_000_000_500_000),
            runs: vec![(
                "web \"1\"".into(),
                RunSummary {
                    succeeded: 3,
                    failed,
                    changed: 1,
                    duration: 0.25,
                    ..RunSummary::default()
                },
            )],
            results: RunSummary {
                succeeded: 3,
                failed,
                ..RunSummary::default()
            },
        };
        metrics.observe("ab/cd", "20261123000001000000", run(2));
        metrics.set_own(Own {
            events: 5,
            rejected: 2,
            ..Own::default()
        });
        let text = metrics.render();
        for line in [
            "saltship_events_total 5",
            "saltship_events_rejected_total 2",
            "saltship_state_results_total{result=\"failed\"} 2",
            "saltship_minion_last_state_run_timestamp_seconds{minion=\"web \\\"1\\\"\"} 1700000000.5",
            "saltship_minion_last_state_run_success{minion=\"web \\\"1\\\"\"} 0",
            "saltship_minion_last_state_run_states{minion=\"web \\\"1\\\"\",result=\"failed\"} 2",
            "saltship_minion_last_state_run_duration_seconds{minion=\"web \\\"1\\\"\"} 0.25",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        metrics.retain(&BTreeSet::new());
        let text = metrics.render();
        assert!(!text.contains("minion="), "{text}");
        assert!(text.contains("saltship_state_results_total{result=\"failed\"} 2"));
    }
}
