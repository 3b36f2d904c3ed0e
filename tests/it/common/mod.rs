//! Helpers shared by the integration tests: copies of the caches under `testdata/`, the one
//! command-line builder that runs the built binary (`saltship.rs`), the one skip helper
//! (`skip`, `have`, `root_for`: `SKIPPED` on stderr, a failure under CI), and the receivers a
//! test starts on 127.0.0.1 (rsyslog, Fluent Bit, tansu, openssl s_server, in-test servers).
#![allow(dead_code)]

pub mod fluentbit;
pub mod http_server;
pub mod master;
pub mod receiver;
pub mod relp;
pub mod relp_fault;
pub mod rsyslog;
pub mod saltship;
pub mod tansu;
pub mod tls;
pub mod view;
pub mod watch;

pub use saltship::{json_lines, p, unstamp, Run, Saltship};

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

/// Copies a folder tree, so a test may damage its cache without touching `testdata/`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A port on 127.0.0.1 nothing listens on (taken and let go), for a receiver that starts
/// later or a target that refuses.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A private copy of a cache folder under `testdata/`.
pub fn cache_copy(rel: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let jobs = tmp.path().join("jobs");
    copy_tree(&testdata(rel), &jobs);
    (tmp, jobs)
}

/// The event ids a dry run of `jobs` prints, in its order (or as a set): what a receiver must
/// end up holding.
pub fn dry_run_ids<C: FromIterator<String>>(jobs: &Path) -> C {
    let run = Saltship::dry_run(jobs).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.ids()
}

/// Skips the calling test: `SKIPPED <test>: <why> (<remedy>)` on stderr, or fails it when
/// SALTSHIP_REQUIRE_RECEIVERS is set (CI sets it, so nothing is skipped there unnoticed).
pub fn skip(why: &str, remedy: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    assert!(
        std::env::var_os("SALTSHIP_REQUIRE_RECEIVERS").is_none(),
        "{test}: {why} ({remedy})"
    );
    // Straight to stderr, not eprintln!: the harness hides what a passing test prints
    // through the macros, and a skip must show in plain `cargo test` output.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why} ({remedy})");
}

/// Whether a tool is installed; a missing one skips the test (fails it under CI).
pub fn have(what: &str, found: bool, install: &str) -> bool {
    if !found {
        skip(
            &format!("{what} is not installed"),
            &format!("apt-get install {install}"),
        );
    }
    found
}

/// Whether the test runs as root; if not, it is skipped (fails under CI, which runs as root).
pub fn root_for(what: &str) -> bool {
    let root = nix_is_root();
    if !root {
        skip(&format!("{what} needs root"), "run the tests as root");
    }
    root
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

/// A bigger cache made from the real one: the folders of the jobs that hold state results
/// (but the 100 KB output) are copied `copies` times under new jids, in Salt's `unique_jid`
/// form `<jid>_<n>` (jobs are found by their `jid` file, not by the folder name).
pub fn multiplied_cache(copies: usize) -> (tempfile::TempDir, PathBuf) {
    let cases: Vec<Value> =
        serde_json::from_slice(&std::fs::read(testdata("cases.json")).expect("cases"))
            .expect("JSON");
    let wanted: Vec<String> = cases
        .iter()
        .filter(|c| c["expect"] == "states" && c["case"] != "big-output")
        .map(|c| c["jid"].as_str().expect("jid").to_owned())
        .collect();
    let (tmp, jobs) = cache_copy("jobs");
    let big = tmp.path().join("big");
    for prefix in std::fs::read_dir(&jobs).expect("jobs") {
        for job in std::fs::read_dir(prefix.expect("entry").path()).expect("prefix") {
            let job = job.expect("entry").path();
            let jid = std::fs::read_to_string(job.join("jid")).expect("jid");
            if !wanted.contains(&jid) {
                continue;
            }
            for i in 0..copies {
                let dest = big
                    .join(format!("{:02x}", i % 256))
                    .join(format!("{jid}_{i}"));
                copy_tree(&job, &dest);
                std::fs::write(dest.join("jid"), format!("{jid}_{i}")).expect("jid");
            }
        }
    }
    (tmp, big)
}

/// The folder of the job `jid` in the cache `jobs`.
pub fn job_dir(jobs: &Path, jid: &str) -> PathBuf {
    for prefix in std::fs::read_dir(jobs).expect("jobs") {
        for job in std::fs::read_dir(prefix.expect("entry").path()).expect("prefix") {
            let job = job.expect("entry").path();
            if std::fs::read_to_string(job.join("jid")).is_ok_and(|j| j == jid) {
                return job;
            }
        }
    }
    panic!("no job {jid}");
}

/// The jid of a case of `testdata/cases.json`.
pub fn case_jid(name: &str) -> String {
    let cases: Vec<Value> =
        serde_json::from_slice(&std::fs::read(testdata("cases.json")).expect("cases"))
            .expect("JSON");
    cases.iter().find(|c| c["case"] == name).expect("case")["jid"]
        .as_str()
        .expect("jid")
        .to_owned()
}

/// Sets the mtime of `dir` and every folder under it an hour back.
pub fn age_folders(dir: &Path) {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            age_folders(&path);
        }
    }
    std::fs::File::open(dir)
        .expect("open folder")
        .set_modified(old)
        .expect("set mtime");
}

/// Writes a token, password or header file as the docs ask: mode 0600 (saltship warns about
/// one others may read).
pub fn write_secret(path: &Path, text: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write a secret file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}
