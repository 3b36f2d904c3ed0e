//! A `saltship watch` run by a test, and real jobs landed under it the way a master writes them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Saltship;

/// A running `saltship watch`, stopped with SIGTERM.
pub struct Watch {
    child: Child,
    log: PathBuf,
}

impl Watch {
    /// Rescans every 60 s unless `env` sets `SALTSHIP_RESCAN_INTERVAL`.
    pub fn start(jobs: &Path, state: &Path, target: &str, env: &[(&str, &str)]) -> Watch {
        let log = state.with_extension("log");
        let child = Saltship::watch(jobs)
            .state_file(state)
            .target(target)
            .env("SALTSHIP_RESCAN_INTERVAL", "60s")
            .envs(env)
            .spawn(std::fs::File::create(&log).expect("log"));
        Watch { child, log }
    }

    /// A watch the test started its own way (under a umask, say), logging to `log`.
    pub fn spawned(child: Child, log: PathBuf) -> Watch {
        Watch { child, log }
    }

    /// Its process id, for a signal.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        super::unstamp(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// SIGTERM; the exit status and how long it took to exit.
    pub fn stop(mut self) -> (i32, Duration, String) {
        let t = Instant::now();
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let deadline = t + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "watch did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        (
            status.code().unwrap_or(-1),
            t.elapsed(),
            super::unstamp(&std::fs::read_to_string(&self.log).unwrap_or_default()),
        )
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn cases() -> Vec<Value> {
    serde_json::from_slice(&std::fs::read(super::testdata("cases.json")).expect("cases"))
        .expect("JSON")
}

/// The folder of the real job `case` in the fixture cache.
pub fn source_job(case: &str) -> PathBuf {
    let jid = cases()
        .into_iter()
        .find(|c| c["case"] == case)
        .expect("case")["jid"]
        .as_str()
        .expect("jid")
        .to_owned();
    let jobs = super::testdata("jobs");
    for prefix in std::fs::read_dir(&jobs).expect("jobs") {
        for job in std::fs::read_dir(prefix.expect("entry").path()).expect("prefix") {
            let job = job.expect("entry").path();
            if std::fs::read_to_string(job.join("jid")).is_ok_and(|j| j == jid) {
                return job;
            }
        }
    }
    panic!("no job {jid}");
}

/// Lands a copy of the real job `source` under `jid` the way a master writes a job: folder,
/// `jid`, `.load.p` in place (in two writes, as a slow writer would), then each minion's
/// `return.p` by a temp file and a rename, a little apart.
pub fn land_job(jobs: &Path, source: &Path, jid: &str, gap: Duration) {
    let dir = jobs.join(&jid[jid.len() - 2..]).join(format!("job{jid}"));
    std::fs::create_dir_all(&dir).expect("job folder");
    std::fs::write(dir.join("jid"), jid).expect("jid");
    let load = std::fs::read(source.join(".load.p")).expect("load");
    let (head, tail) = load.split_at(load.len() / 2);
    std::fs::write(dir.join(".load.p"), head).expect("load head");
    std::thread::sleep(gap);
    let mut all = head.to_vec();
    all.extend_from_slice(tail);
    std::fs::write(dir.join(".load.p"), all).expect("load");
    for minion in std::fs::read_dir(source).expect("source") {
        let minion = minion.expect("entry");
        if !minion.file_type().expect("type").is_dir() {
            continue;
        }
        let to = dir.join(minion.file_name());
        std::fs::create_dir_all(&to).expect("minion folder");
        let tmp = to.join(".___atomic_write_return");
        std::fs::copy(minion.path().join("return.p"), &tmp).expect("temp");
        std::fs::rename(&tmp, to.join("return.p")).expect("rename");
        std::thread::sleep(gap);
    }
}
