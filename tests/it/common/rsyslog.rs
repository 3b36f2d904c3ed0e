//! A real rsyslogd for the tests, on 127.0.0.1, with a config of the test's own (often the
//! README's `contrib/rsyslog/saltship.conf`), stopped by its PID when dropped. Tools that are
//! not installed skip the test through `common::have` (a failure under CI).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::have;

/// The rsyslogd binary, if installed.
pub fn rsyslogd() -> Option<PathBuf> {
    let found = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    have("rsyslogd", found.is_some(), "rsyslog");
    found
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `contrib/rsyslog/saltship.conf` listening on 127.0.0.1 at `json_port` (json lines) and
/// `syslog_port` (RFC 5424), writing into `out` instead of /var/log/saltship.
pub fn contrib_conf(json_port: u16, syslog_port: u16, out: &Path) -> String {
    let conf = std::fs::read_to_string(super::testdata("../contrib/rsyslog/saltship.conf"))
        .expect("contrib config");
    conf.replace(
        r#"port="6000""#,
        &format!(r#"port="{json_port}" address="127.0.0.1""#),
    )
    .replace(
        r#"port="6514""#,
        &format!(r#"port="{syslog_port}" address="127.0.0.1""#),
    )
    .replace("/var/log/saltship", super::p(out))
}

pub struct Rsyslog {
    child: Child,
    dir: PathBuf,
}

impl Rsyslog {
    /// Runs rsyslogd on `conf`, with its work directory in `dir`, until it listens on `ports`.
    pub fn start(bin: &Path, dir: &Path, conf: &str, ports: &[u16]) -> Rsyslog {
        let path = dir.join("rsyslog.conf");
        std::fs::write(
            &path,
            format!("global(workDirectory=\"{}\")\n{conf}", dir.display()),
        )
        .expect("write rsyslog.conf");
        let child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(&path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        let rsyslog = Rsyslog {
            child,
            dir: dir.to_owned(),
        };
        for port in ports {
            wait_for_port(*port, "rsyslogd");
        }
        rsyslog
    }

    /// What rsyslog wrote to `file` (in its directory), once `done` says it is all there
    /// (bounded wait: omfile writes asynchronously).
    pub fn output(&self, file: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
            if done(&text) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The JSON lines rsyslog wrote to `file`, once there are `count` of them.
    pub fn events(&self, file: &str, count: usize) -> Vec<Value> {
        let text = self.output(file, |t| t.lines().count() >= count);
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}: {e}: {l}")))
            .collect()
    }
}

impl Rsyslog {
    /// Both outputs of `contrib_conf` hold every event of `want`, each unchanged unless cut.
    pub fn assert_contrib_outputs(&self, want: &[Value]) {
        for file in ["events.json", "events-syslog.json"] {
            let got = self.events(file, want.len());
            assert_eq!(ids(&got), ids(want), "{file}");
            for ev in want.iter().filter(|e| e["truncated"] != true) {
                assert!(got.contains(ev), "{file}: changed in transit: {ev}");
            }
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn ids(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

/// `contrib_conf` on free ports in `dir`: the rsyslogd and the json target (`HOST:PORT`), or
/// `None` (the test skipped) without rsyslog.
pub fn json_receiver(dir: &Path) -> Option<(Rsyslog, String)> {
    let bin = rsyslogd()?;
    let (json_port, syslog_port) = (super::free_port(), super::free_port());
    let conf = contrib_conf(json_port, syslog_port, dir);
    let rsyslog = Rsyslog::start(&bin, dir, &conf, &[json_port, syslog_port]);
    Some((rsyslog, format!("127.0.0.1:{json_port}")))
}

/// The events a [`json_receiver`] in `dir` wrote so far (a line still being written left out).
pub fn received(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("events.json")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}
