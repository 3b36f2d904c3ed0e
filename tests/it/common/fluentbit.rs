//! A real Fluent Bit (`../shared/receivers/fluent-bit`) for the HTTP sinks' tests: its `splunk`
//! (HEC), `elasticsearch` (`_bulk`) and `opentelemetry` (OTLP/HTTP) inputs on 127.0.0.1, each
//! written to a file by its `file` output. Stopped by its PID with SIGTERM (it flushes what it holds), also when dropped. Absent,
//! it makes a test skip with a notice, or fail under SALTSHIP_REQUIRE_RECEIVERS (CI).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::rsyslog::wait_for_port;
use super::{have, json_lines};

/// The HEC token the receiver requires.
pub const TOKEN: &str = "TESTTOKEN";

/// The fluent-bit binary, if it is there and runs.
pub fn binary() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/receivers/fluent-bit");
    let runs = Command::new(&path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    have(
        "fluent-bit (../shared/receivers/fluent-bit)",
        runs,
        "libsqlite3-0 libssl3 libyaml-0-2, with ../shared beside the clone",
    )
    .then_some(path)
}

pub struct FluentBit {
    bin: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    pub hec_port: u16,
    pub es_port: u16,
    pub otlp_port: u16,
}

impl FluentBit {
    /// Starts it with its config and output files in `dir`.
    pub fn start(bin: &Path, dir: &Path) -> FluentBit {
        let mut fb = FluentBit {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            child: None,
            hec_port: super::free_port(),
            es_port: super::free_port(),
            otlp_port: super::free_port(),
        };
        let out = dir.display();
        let conf = format!(
            "[SERVICE]\n    flush 0.2\n    log_level warn\n    grace 1\n\
             [INPUT]\n    name splunk\n    listen 127.0.0.1\n    port {}\n    splunk_token {TOKEN}\n    tag hec\n\
             [INPUT]\n    name elasticsearch\n    listen 127.0.0.1\n    port {}\n    tag es\n\
             [INPUT]\n    name opentelemetry\n    listen 127.0.0.1\n    port {}\n    tag otlp\n\
             [OUTPUT]\n    name file\n    match hec\n    path {out}\n    file hec.jsonl\n    format plain\n\
             [OUTPUT]\n    name file\n    match es\n    path {out}\n    file es.jsonl\n    format plain\n\
             [OUTPUT]\n    name file\n    match otlp\n    path {out}\n    file otlp.jsonl\n    format plain\n",
            fb.hec_port, fb.es_port, fb.otlp_port
        );
        std::fs::write(dir.join("fluent-bit.conf"), conf).expect("write fluent-bit.conf");
        fb.run();
        fb
    }

    fn run(&mut self) {
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.join("fluent-bit.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fluent-bit");
        self.child = Some(child);
        wait_for_port(self.hec_port, "fluent-bit");
        wait_for_port(self.es_port, "fluent-bit");
        wait_for_port(self.otlp_port, "fluent-bit");
    }

    /// SIGTERM, and waits (bounded) for it to flush and exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    pub fn hec_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.hec_port)
    }

    pub fn es_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.es_port)
    }

    pub fn otlp_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.otlp_port)
    }

    /// The records of `file` (`hec.jsonl` or `es.jsonl`), once there are `count` (bounded wait:
    /// the output flushes every 0.2 s).
    pub fn records(&self, file: &str, count: usize) -> Vec<Value> {
        let path = self.dir.join(file);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() >= count || Instant::now() > deadline {
                return json_lines(&text);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many lines `file` holds now.
    pub fn lines_now(&self, file: &str) -> usize {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .count()
    }
}

impl Drop for FluentBit {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How many times each `event_id` was stored: in HEC envelopes (`event.event_id`), in bulk
/// documents (ECS `event.id`, or `event_id` for `--format json`), in OTLP log records (the body,
/// written as `log`: the event as encoded).
pub fn id_counts(records: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in records {
        let body: Option<Value> = r["log"]
            .as_str()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("body {l}: {e}")));
        let r = body.as_ref().unwrap_or(r);
        let id = r["event"]["event_id"]
            .as_str()
            .or(r["event"]["id"].as_str())
            .or(r["event_id"].as_str())
            .unwrap_or_else(|| panic!("no event id in {r}"));
        *counts.entry(id.to_owned()).or_insert(0) += 1;
    }
    counts
}
