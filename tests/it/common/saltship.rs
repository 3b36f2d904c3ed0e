//! The one way the tests run the built binary: `Saltship::sync(&jobs).target(..).run()`. A run
//! starts from a clean environment (no `RUST_LOG`, no `JOURNAL_STREAM`, `TZ=UTC`) and gets a
//! state file of its own unless the test names one, so no test sees another's checkpoint.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The master id every test cache is shipped under.
pub const MASTER: &str = "testmaster";

/// How long a run may take before the test fails.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A `saltship` command line, built up and then run once.
pub struct Saltship {
    cmd: Command,
    timeout: Duration,
    own_state: bool,
}

/// What a finished run printed and how it exited.
pub struct Run {
    pub code: i32,
    /// Every stdout line as JSON (empty for [`Saltship::run_text`]).
    pub events: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `event_id` of every event, in order (or as a set).
    pub fn ids<C: FromIterator<String>>(&self) -> C {
        self.events
            .iter()
            .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
            .collect()
    }
}

/// Every line of `text` as a JSON object; a line that is not one fails the test.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .inspect(|v| assert!(v.is_object(), "not an object: {v}"))
        .collect()
}

/// `stderr` without the time that starts each of saltship's lines when stderr is a file or a
/// pipe (as in every test run outside journald); a saltship line without a well-formed
/// RFC 3339 UTC time (`2026-12-03T13:40:00.123Z `) fails the test. Other lines (clap's usage
/// errors, a wrapper's words) pass through.
pub fn unstamp(stderr: &str) -> String {
    let mut out = String::with_capacity(stderr.len());
    for line in stderr.lines() {
        let rest = match line.split_once(' ') {
            Some((time, rest)) if rest.starts_with("saltship:") => {
                let ok = time.len() == "2026-12-03T13:40:00.123Z".len()
                    && time.ends_with('Z')
                    && chrono::DateTime::parse_from_rfc3339(time).is_ok();
                assert!(ok, "not an RFC 3339 UTC time: {line}");
                rest
            }
            _ => {
                assert!(
                    !line.starts_with("saltship:"),
                    "a saltship line without its time: {line}"
                );
                line
            }
        };
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// A path as a command-line argument (the tests' temp dirs are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

impl Saltship {
    /// `saltship <args>`, nothing added.
    pub fn args<I, S>(args: I) -> Saltship
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("saltship"));
        cmd.args(args)
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .env_remove("SALTSHIP_CONFIG")
            .env("TZ", "UTC")
            // A copy of a cache has fresh mtimes, so `auto` would warn on every run; the
            // fixtures' jids are UTC. Tests of `auto` remove this (`tests/it/salt2019.rs`).
            .env("SALTSHIP_JID_TIMEZONE", "utc")
            // A Salt master on the test host must not lend its cluster_id to the tests.
            .env(
                "SALTSHIP_MASTER_CONFIG",
                "/nonexistent/saltship-tests/master",
            );
        Saltship {
            cmd,
            timeout: TIMEOUT,
            own_state: true,
        }
    }

    /// `saltship <command> --cache-dir <jobs> --master-id testmaster`.
    pub fn on(command: &str, jobs: &Path) -> Saltship {
        Saltship::args([command, "--cache-dir", p(jobs), "--master-id", MASTER])
    }

    pub fn sync(jobs: &Path) -> Saltship {
        Saltship::on("sync", jobs)
    }

    pub fn backfill(jobs: &Path) -> Saltship {
        Saltship::on("backfill", jobs)
    }

    pub fn watch(jobs: &Path) -> Saltship {
        Saltship::on("watch", jobs)
    }

    pub fn check(jobs: &Path) -> Saltship {
        Saltship::on("check", jobs)
    }

    /// `saltship backfill --dry-run ...`: the events on stdout.
    pub fn dry_run(jobs: &Path) -> Saltship {
        Saltship::backfill(jobs).arg("--dry-run")
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Saltship {
        self.cmd.arg(arg);
        self
    }

    pub fn more<I, S>(mut self, args: I) -> Saltship
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn sink(self, sink: &str) -> Saltship {
        self.more(["--sink", sink])
    }

    pub fn target(self, target: &str) -> Saltship {
        self.more(["--target", target])
    }

    pub fn state_file(self, state: &Path) -> Saltship {
        self.arg("--state-file").arg(state)
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Saltship {
        self.cmd.env(key, value);
        self
    }

    pub fn envs(mut self, vars: &[(&str, &str)]) -> Saltship {
        self.cmd.envs(vars.iter().copied());
        self
    }

    pub fn env_remove(mut self, key: &str) -> Saltship {
        self.cmd.env_remove(key);
        self
    }

    /// No `SALTSHIP_STATE_FILE` from the test: the run finds its state file its own way.
    pub fn default_state(mut self) -> Saltship {
        self.own_state = false;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Saltship {
        self.timeout = timeout;
        self
    }

    /// Runs to the end; every stdout line must be a JSON object.
    pub fn run(self) -> Run {
        let mut run = self.run_text();
        run.events = json_lines(&run.stdout);
        run
    }

    /// Runs to the end; stdout is whatever text it printed.
    pub fn run_text(self) -> Run {
        let state = tempfile::tempdir().expect("tempdir");
        let Saltship {
            mut cmd,
            timeout,
            own_state,
        } = self;
        if own_state {
            cmd.env("SALTSHIP_STATE_FILE", state.path().join("state"));
        }
        let out = assert_cmd::Command::from_std(cmd)
            .timeout(timeout)
            .output()
            .expect("run saltship");
        Run {
            code: out.status.code().unwrap_or(-1),
            events: Vec::new(),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: unstamp(&String::from_utf8_lossy(&out.stderr)),
        }
    }

    /// Starts it in the background with stdout dropped and stderr to `stderr`. A started run
    /// names its state file (or `--no-checkpoint`): it may outlive a temp dir of ours.
    pub fn spawn(self, stderr: impl Into<Stdio>) -> Child {
        self.command()
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn saltship")
    }

    /// The same run under a wrapper command (`setpriv ... --`, `sh -c 'ulimit ...'`): the
    /// wrapper's words, then the binary and its arguments, with the environment kept.
    pub fn under(self, wrapper: &[&str]) -> Saltship {
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..])
            .arg(self.cmd.get_program())
            .args(self.cmd.get_args());
        for (key, value) in self.cmd.get_envs() {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        Saltship { cmd, ..self }
    }

    /// The command itself, for a test that starts it its own way.
    pub fn command(self) -> Command {
        self.cmd
    }
}
