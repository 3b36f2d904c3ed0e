//! A master publishing a job into a cache the way Salt's `local_cache` writes it, one step at a
//! time, so a test can look (or start saltship) between any two: the folder and its `jid`
//! (and `nocache`), `.load.p`, `.minions.p` (by a `.___atomic_write*` temp file and a rename as
//! 3008 does, or in place as older masters did, where a reader may catch them half written),
//! then each minion's `return.p` by a temp file and a rename, the `jid` file rewritten at each
//! return. The job is a real one of the fixtures, under a new jid;
//! `expected` is what `salt-run jobs.list_job` said of it, less the returns held back.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// Gaps of 0 to 200 ms between the files, the same on every run for the same seed.
pub struct Gaps {
    state: u64,
    /// The longest gap; 0 for a writer that never pauses.
    max_ms: u64,
}

impl Gaps {
    pub fn new(seed: u64) -> Gaps {
        Gaps {
            state: seed.wrapping_mul(6364136223846793005).wrapping_add(1),
            max_ms: 200,
        }
    }

    /// No gaps at all: a job written at once.
    pub fn none() -> Gaps {
        Gaps {
            state: 0,
            max_ms: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.state >> 33
    }

    /// Sleeps the next gap: none, the longest, or a time between.
    pub fn sleep(&mut self) {
        let r = self.next();
        let ms = match r % 8 {
            0 => 0,
            1 => self.max_ms,
            n => (r >> 3) % (self.max_ms + 1) * n / 7,
        };
        std::thread::sleep(Duration::from_millis(ms));
    }

    /// A pause of a few milliseconds, for a file half written.
    fn sleep_short(&mut self) {
        let ms = self.next() % (self.max_ms / 10 + 1);
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// One job being published.
pub struct Publisher {
    /// The fixture job it copies.
    source: PathBuf,
    pub jid: String,
    pub dir: PathBuf,
    /// `.load.p` and `.minions.p` written in place, not renamed into place.
    in_place: bool,
}

impl Publisher {
    /// The real job of fixture case `case` (testdata/cases.json), to be published as `jid`.
    pub fn new(jobs: &Path, case: &str, jid: &str) -> Publisher {
        Publisher {
            source: super::watch::source_job(case),
            jid: jid.to_owned(),
            dir: jobs.join(&jid[jid.len() - 2..]).join(format!("job{jid}")),
            in_place: false,
        }
    }

    /// `.load.p` and `.minions.p` written in place (`fopen(w+b)`), as masters before 3007 did.
    pub fn in_place(self) -> Publisher {
        Publisher {
            in_place: true,
            ..self
        }
    }

    /// `prep_jid`: the folder, its `jid`, and the `nocache` marker of a job that has one.
    pub fn folder(&self) {
        std::fs::create_dir_all(&self.dir).expect("job folder");
        std::fs::write(self.dir.join("jid"), &self.jid).expect("jid");
        if self.source.join("nocache").exists() {
            std::fs::write(self.dir.join("nocache"), "").expect("nocache");
        }
    }

    /// `save_load`'s `.load.p`.
    pub fn load(&self, gaps: &mut Gaps) {
        self.write(".load.p", gaps);
    }

    /// `save_minions`' `.minions.p` (if the job has one).
    pub fn minions(&self, gaps: &mut Gaps) {
        if self.source.join(".minions.p").exists() {
            self.write(".minions.p", gaps);
        }
    }

    /// Each minion's return but those of `silent`, a gap before each.
    pub fn returns(&self, silent: &[&str], gaps: &mut Gaps) {
        for minion in self.minion_folders() {
            if silent.contains(&minion.as_str()) {
                continue;
            }
            gaps.sleep();
            // store_job's prep_jid rewrites `jid` (truncated first) at every return.
            std::fs::write(self.dir.join("jid"), &self.jid).expect("jid");
            let to = self.dir.join(&minion);
            std::fs::create_dir(&to).expect("minion folder");
            for file in ["return.p", "out.p"] {
                let from = self.source.join(&minion).join(file);
                if !from.exists() {
                    continue;
                }
                let tmp = to.join(format!(".___atomic_write{file}"));
                std::fs::copy(&from, &tmp).expect("temp");
                std::fs::rename(&tmp, to.join(file)).expect("rename");
            }
        }
    }

    /// The whole job, a gap before each file (before `.load.p` too).
    pub fn publish(&self, silent: &[&str], gaps: &mut Gaps) {
        self.folder();
        gaps.sleep();
        self.load(gaps);
        gaps.sleep();
        self.minions(gaps);
        self.returns(silent, gaps);
    }

    /// What `list_job` says of the job once final, with the returns of `silent` never come:
    /// (the view, the targeted minions, the minions that returned).
    pub fn expected(&self, silent: &[&str]) -> (Value, BTreeSet<String>, BTreeSet<String>) {
        let jid = std::fs::read_to_string(self.source.join("jid")).expect("source jid");
        let path = super::testdata("expected").join(format!("{jid}.json"));
        let view: Value =
            serde_json::from_slice(&std::fs::read(path).expect("list_job view")).expect("JSON");
        let returned: BTreeSet<String> = view["Result"]
            .as_object()
            .map(|r| r.keys().filter(|m| !silent.contains(&m.as_str())).cloned())
            .into_iter()
            .flatten()
            .collect();
        let all: BTreeSet<String> = view["Result"]
            .as_object()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        // An orchestration has no Minions: its master is its one minion.
        let targeted = match view.get("Minions") {
            Some(Value::Array(m)) => m
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => all,
        };
        (view, targeted, returned)
    }

    fn minion_folders(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.source)
            .expect("source")
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Writes `name` by a temp file and a rename (`atomic_open`), or in place as `fopen(w+b)`
    /// and a dump do: created empty, then filled, here in two writes a moment apart.
    fn write(&self, name: &str, gaps: &mut Gaps) {
        let mut bytes = std::fs::read(self.source.join(name)).expect("source file");
        if name == ".load.p" {
            bytes = self.with_jid(&bytes);
        }
        if !self.in_place {
            let tmp = self.dir.join(format!(".___atomic_write{name}"));
            std::fs::write(&tmp, &bytes).expect("temp");
            return std::fs::rename(&tmp, self.dir.join(name)).expect("rename");
        }
        let (head, tail) = bytes.split_at(bytes.len() / 2);
        let mut file = std::fs::File::create(self.dir.join(name)).expect("create");
        file.write_all(head).expect("head");
        file.flush().expect("flush");
        gaps.sleep_short();
        file.write_all(tail).expect("tail");
    }
}

impl Publisher {
    /// The source's `.load.p` with this job's jid: saltship reads the jid from it when it
    /// catches the `jid` file empty (rewritten at each return).
    fn with_jid(&self, load: &[u8]) -> Vec<u8> {
        let mut value = rmpv::decode::read_value(&mut &load[..]).expect("a .load.p");
        if let rmpv::Value::Map(entries) = &mut value {
            for (k, v) in entries.iter_mut() {
                if k.as_str() == Some("jid") {
                    *v = self.jid.as_str().into();
                }
            }
        }
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &value).expect("encode to a Vec");
        out
    }
}

/// A jid for now, as Salt 3000+ makes them (UTC), made unique by `n` in its last digits.
pub fn jid_now(n: u32) -> String {
    let now = chrono::Utc::now().format("%Y%m%d%H%M%S%6f").to_string();
    format!("{}{:02}", &now[..now.len() - 2], n % 100)
}
