//! Real receivers: rsyslog (imtcp) started by the test on 127.0.0.1, writing what it receives
//! to a file. Every event must arrive intact and parse back. CI installs rsyslog and sets
//! SALTSHIP_REQUIRE_RECEIVERS=1, so there a missing rsyslogd fails instead of skipping.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{backfill, cache_copy, saltship};
use serde_json::Value;

fn rsyslogd() -> Option<PathBuf> {
    let found = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("SALTSHIP_REQUIRE_RECEIVERS").is_none(),
            "rsyslogd is not installed"
        );
        eprintln!("SKIPPED: rsyslogd is not installed (apt-get install rsyslog)");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// An rsyslogd of the test's own, stopped (by its PID) when dropped.
struct Rsyslog {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Rsyslog {
    /// `template` is an rsyslog string template for each received message.
    fn start(bin: &Path, dir: &Path, template: &str) -> Rsyslog {
        let port = free_port();
        let out = dir.join("received.log");
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{dir}" maxMessageSize="64k")
module(load="imtcp")
template(name="out" type="string" string="{template}")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="saltship")
ruleset(name="saltship") {{ action(type="omfile" file="{out}" template="out") }}
"#,
                dir = dir.display(),
                out = out.display(),
            ),
        )
        .expect("write rsyslog.conf");
        let child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Rsyslog { child, port, out }
    }

    /// The lines written, once there are `want` of them (bounded wait: omfile writes async).
    fn lines(&self, want: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= want || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ids(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

#[test]
fn rsyslog_receives_every_json_line_intact() {
    let Some(bin) = rsyslogd() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    // What is sent: events cut to the default 10,000 bytes (the dry-run prints them whole).
    let want = backfill(&jobs, &["--max-event-bytes", "10000"]);
    assert!(
        want.events.iter().any(|e| e["truncated"] == true),
        "no event big enough to be cut"
    );
    let rsyslog = Rsyslog::start(&bin, tmp.path(), "%rawmsg%\\n");
    let target = format!("127.0.0.1:{}", rsyslog.port);
    let run = saltship(&[
        "backfill",
        "--cache-dir",
        jobs.to_str().expect("UTF-8"),
        "--master-id",
        "testmaster",
        "--target",
        &target,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = rsyslog.lines(want.events.len());
    let got: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // Intact: the same objects as the dry-run, byte for byte once parsed.
    assert_eq!(ids(&got), ids(&want.events));
    for ev in &want.events {
        assert!(got.contains(ev), "changed in transit: {ev}");
    }
}
