//! A real Kafka-protocol broker for the Kafka sink's tests: tansu
//! (`../shared/receivers/tansu`) on 127.0.0.1 with SQLite storage in the test's temp dir, so
//! what it acknowledged survives a restart; records are read back with rdkafka's
//! `BaseConsumer`. Stopped by its PID, also when dropped. Absent, it makes a test skip with a
//! notice, or fail under SALTSHIP_REQUIRE_RECEIVERS (CI).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use super::have;
use super::rsyslog::wait_for_port;

/// The tansu binary, if it is there and runs.
pub fn binary() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/receivers/tansu");
    let runs = Command::new(&path)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    have(
        "tansu (../shared/receivers/tansu)",
        runs,
        "nothing: it needs only libc, with ../shared beside the clone",
    )
    .then_some(path)
}

pub struct Tansu {
    bin: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    pub port: u16,
    /// Clients must authenticate (SASL SCRAM).
    auth: bool,
}

/// One record read back.
#[derive(Debug)]
pub struct Record {
    pub partition: i32,
    pub key: Option<String>,
    pub value: Value,
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, String)>,
}

impl Tansu {
    /// Starts it with its database in `dir`.
    pub fn start(bin: &Path, dir: &Path) -> Tansu {
        let mut t = Tansu {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            child: None,
            port: super::free_port(),
            auth: false,
        };
        t.run();
        t
    }

    /// `host:port`, the --target.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("tcp://{}", self.target())
    }

    fn run(&mut self) {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("broker")
            .args(["--listener-url", &self.url()])
            .args(["--advertised-listener-url", &self.url()])
            .args(["--storage-engine", "sqlite://broker.db"])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.auth {
            cmd.arg("--authentication");
        }
        self.child = Some(cmd.spawn().expect("start tansu"));
        wait_for_port(self.port, "tansu");
    }

    /// Kills it (SIGKILL: what it acknowledged is in its database already) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Requires SASL SCRAM from now on, with `user`'s password (created while it is open).
    pub fn require_auth(&mut self, user: &str, password: &str) {
        self.tool(&["user", "create", user, password, "--mechanism", "scram256"]);
        self.auth = true;
        self.restart();
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        self.tool(&[
            "topic",
            "create",
            name,
            "--partitions",
            &partitions.to_string(),
        ]);
    }

    fn tool(&self, args: &[&str]) {
        let out = Command::new(&self.bin)
            .args(args)
            .args(["--broker", &self.url()])
            .output()
            .expect("run tansu");
        assert!(
            out.status.success(),
            "tansu {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every record of `topic`, from the start, once at least `want` arrived (or 30 s passed).
    pub fn records(&self, topic: &str, want: usize) -> Vec<Record> {
        self.records_until(topic, |got| got.len() >= want)
    }

    /// The records of `topic` from the start, read until `done` says so (or 30 s passed): a
    /// run with duplicates needs more records than events.
    pub fn records_until(&self, topic: &str, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.target())
            .set("group.id", "saltship-test")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let mut list = TopicPartitionList::new();
        for p in metadata.topics()[0].partitions() {
            list.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("offset");
        }
        consumer.assign(&list).expect("assign");
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(&got) && Instant::now() < deadline {
            let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let m = m.expect("consume");
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            got.push(Record {
                partition: m.partition(),
                key: m.key().map(text),
                value: serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON"),
                timestamp: m.timestamp().to_millis(),
                headers: m.headers().map_or_else(Vec::new, |h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(text).unwrap_or_default()))
                        .collect()
                }),
            });
        }
        got
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}
