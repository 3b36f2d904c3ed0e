//! `saltship check`: tests a configuration without sending an event, one line per check on
//! stdout (`ok` or `FAIL`, what was found, and for a failure what to do), like `filebeat test
//! output`. The cache folder (a Salt job cache, readable, its jobs and returns), the state file
//! (readable, writable, its lock free), each target (a connection, the TLS handshake with the
//! certificate checked, and the graceful close that confirms delivery; for the HTTP sinks, the
//! endpoint and the token or key accepted; for Kafka, the brokers' metadata of the topic), the
//! inotify watch limit that `watch` needs, and its metrics file when one is given.
//! `--offline` leaves the targets out (parsed, not contacted): a unit's start check.

use std::fs::OpenOptions;
use std::path::Path;

use crate::cache::{self, JobDir};
use crate::checkpoint::{Busy, Checkpoint};
use crate::cli::Config;
use crate::sink;

const MAX_USER_WATCHES: &str = "/proc/sys/fs/inotify/max_user_watches";

/// Runs every check and prints its line; whether all passed (exit 0, else 1). `offline`
/// (`--offline`): the targets were parsed with the options, but are not contacted.
pub(crate) fn run(config: &Config, offline: bool) -> bool {
    let mut lines = Vec::new();
    let dirs = cache_check(config, &mut lines);
    state_check(config, &mut lines);
    target_check(config, offline, &mut lines);
    if let Some(path) = &config.metrics_file {
        lines.push(metrics_check(path));
    }
    if let Some(dirs) = &dirs {
        lines.push(watch_check(
            dirs,
            std::fs::read_to_string(MAX_USER_WATCHES).ok(),
        ));
    }
    for line in &lines {
        let text = crate::logging::escape_controls(&line.text);
        println!("{} {text}", if line.ok { "ok  " } else { "FAIL" });
    }
    lines.iter().all(|l| l.ok)
}

/// One check's outcome.
#[derive(Debug)]
struct Line {
    ok: bool,
    text: String,
}

fn ok(text: String) -> Line {
    Line { ok: true, text }
}

fn fail(text: String) -> Line {
    Line { ok: false, text }
}

/// The cache folder: a Salt job cache, every folder readable; its job folders when it is one.
fn cache_check(config: &Config, lines: &mut Vec<Line>) -> Option<Vec<JobDir>> {
    let root = &config.cache.dir;
    if let Err(e) = cache::verify(root) {
        lines.push(fail(format!("{e:#}")));
        return None;
    }
    let (dirs, problems) = cache::scan(root, |_| {}, |_, _| true);
    if let Some(p) = problems.first() {
        lines.push(fail(format!(
            "cache folder {}: {} folders cannot be read, the first {}: {} (run saltship as a \
             user that can read the master's cache, usually root or salt)",
            root.display(),
            problems.len(),
            p.path.display(),
            p.why
        )));
        return Some(dirs);
    }
    let counts = crate::app::ship::in_cache(&dirs, config.cache.max_return_bytes, |_, _, _| {});
    let range = match (&counts.oldest, &counts.newest) {
        (Some(first), Some(last)) => format!(", oldest jid {first}, newest jid {last}"),
        _ => String::new(),
    };
    lines.push(ok(format!(
        "cache folder {}: a Salt job cache, {} jobs, {} returns{range}",
        root.display(),
        counts.jobs,
        counts.returns
    )));
    Some(dirs)
}

/// The state file: readable and understood, writable (the file and its folder), lock free.
fn state_check(config: &Config, lines: &mut Vec<Line>) {
    let Some(path) = &config.state.file else {
        return;
    };
    let shown = path.display();
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !folder.is_dir() {
        // Nothing to read or lock yet; a run creates the folder if it can.
        let line = match writable_ancestor(folder) {
            Ok(()) => ok(format!(
                "state file {shown}: not there yet; the first run creates it"
            )),
            Err(e) => fail(format!(
                "state file {shown}: its folder does not exist and cannot be made ({e}); \
                 create {} writable by the user saltship runs as",
                folder.display()
            )),
        };
        lines.push(line);
        return;
    }
    // Loads as a run would and tests the lock, without taking it or making a file.
    match Checkpoint::inspect(path) {
        Err(e) if e.is::<Busy>() => {
            // Another master's saltship (its lease names another host): a cluster's standby.
            let host = crate::cli::parse::hostname();
            let other = e
                .downcast_ref::<Busy>()
                .and_then(Busy::holder)
                .filter(|h| h.split(':').next() != Some(host.as_str()));
            if let Some(holder) = other {
                lines.push(ok(format!(
                    "state file {shown}: its lease is held by {holder}, a saltship on another \
                     master: watch stands by until it is free (a master cluster)"
                )));
                return;
            }
            lines.push(fail(format!(
                "{e}: a running watch? sync and watch would do nothing while it runs, and \
                 backfill ships without recording; stop it or give another --state-file"
            )));
            return;
        }
        Err(e) => {
            lines.push(fail(format!("{e:#}")));
            return;
        }
        Ok(_) => {}
    }
    // Opened for appending and closed: neither the contents nor the mtime change.
    let journal = crate::checkpoint::journal_path(path);
    let writable = [path.as_path(), journal.as_path()]
        .into_iter()
        .filter(|f| f.exists())
        .try_for_each(|f| OpenOptions::new().append(true).open(f).map(drop))
        .and_then(|()| try_create(folder));
    lines.push(match writable {
        Ok(()) if path.exists() => ok(format!("state file {shown}: readable, writable, lock free")),
        Ok(()) => ok(format!(
            "state file {shown}: not there yet, its folder is writable, lock free"
        )),
        Err(e) => fail(format!(
            "state file {shown}: cannot be written ({e}); make it and {} writable by the user \
             saltship runs as",
            folder.display()
        )),
    });
}

/// Whether `watch` can write its metrics file (a temp file beside it, renamed over it).
fn metrics_check(path: &Path) -> Line {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match try_create(folder) {
        Ok(()) => ok(format!(
            "metrics file {}: its folder is writable",
            path.display()
        )),
        Err(e) => fail(format!(
            "metrics file {}: cannot write in {} ({e}); give a writable path (the shipped unit \
             may write only under /var/lib/saltship, see ReadWritePaths=)",
            path.display(),
            folder.display()
        )),
    }
}

/// Whether a file can be made in `folder` (a save writes a temp file there). An unnamed file
/// (`O_TMPFILE`) is never linked into the folder, so not even the folder's mtime changes; a
/// file system without it gets a named probe, made and removed.
fn try_create(folder: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .open(folder)
    {
        Ok(_) => return Ok(()),
        Err(e) if !matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
            return Err(e)
        }
        Err(_) => {}
    }
    let probe = folder.join(format!(".saltship-check.{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// Whether the nearest existing folder above `folder` lets a run create it.
fn writable_ancestor(folder: &Path) -> std::io::Result<()> {
    let existing = folder
        .ancestors()
        .find(|a| a.is_dir())
        .unwrap_or(Path::new("/"));
    try_create(existing)
}

/// Each target, as its sink tests it without sending an event: a TCP connection, its TLS
/// handshake and certificate when `--tls`, and a graceful close (the receiver's confirmation
/// that delivery relies on); for the HTTP sinks, the endpoint and the token or key accepted;
/// for Kafka, the topic's metadata from the brokers (credentials and topic).
/// With `offline`, a target given is only reported (its options were parsed); none given still
/// fails, as watch would not start without one.
fn target_check(config: &Config, offline: bool, lines: &mut Vec<Line>) {
    let Some(opts) = &config.delivery else {
        lines.push(fail(
            "targets: none given; give --target (or SALTSHIP_TARGET)".into(),
        ));
        return;
    };
    for (i, target) in opts.targets().iter().enumerate() {
        let target = crate::sink::secret::shown(target);
        if offline {
            lines.push(ok(format!(
                "target {target}: options valid, not contacted (--offline)"
            )));
            continue;
        }
        let tls = match (opts.uses_tls(i), config.tls_insecure) {
            (false, _) => "",
            (true, false) => ", TLS handshake done and certificate verified",
            (true, true) => {
                ", TLS handshake done, certificate NOT checked (--tls-insecure-skip-verify)"
            }
        };
        lines.push(match sink::probe(opts, i) {
            Ok(what) => ok(format!("target {target}: {what}{tls}")),
            Err(e) => fail(format!(
                "target {target}: {}",
                with_hint(e.why(), e.is_permanent())
            )),
        });
    }
}

/// A target's failure with the one hint that fits: none when it already says what to do, a DNS
/// hint for a name that does not resolve, else the permanent or the transient one.
fn with_hint(why: &str, permanent: bool) -> String {
    let lower = why.to_ascii_lowercase();
    let dns = [
        "lookup",
        "resolve",
        "name or service not known",
        "name resolution",
        "no address",
    ];
    let hint = if why.contains(": give ") || why.contains("renew it") || why.contains("--") {
        return why.to_owned();
    } else if dns.iter().any(|d| lower.contains(d)) {
        "the host name does not resolve: check its spelling and the DNS (or /etc/hosts)"
    } else if permanent {
        "check the token, key or credentials, --tls-ca, --tls-server-name, the receiver's \
         certificate, the Kafka topic"
    } else {
        "is the receiver running and listening there, and open in the firewall?"
    };
    format!("{why} ({hint})")
}

/// Whether `fs.inotify.max_user_watches` covers what `watch` needs at most: the cache folder,
/// its two-hex folders and its job folders (it watches settled jobs less, and minion folders
/// only while their return has not landed). The limit is per user, shared with other programs.
fn watch_check(dirs: &[JobDir], limit: Option<String>) -> Line {
    let prefixes: std::collections::BTreeSet<_> =
        dirs.iter().filter_map(|d| d.dir.parent()).collect();
    let need = 1 + prefixes.len() + dirs.len();
    let Some(limit) = limit.and_then(|l| l.trim().parse::<usize>().ok()) else {
        return fail(format!(
            "inotify: cannot read {MAX_USER_WATCHES}; watch needs {need} watches"
        ));
    };
    if limit >= need {
        ok(format!(
            "inotify: max_user_watches {limit}, watch needs {need} now"
        ))
    } else {
        let more = (2 * need).next_power_of_two();
        fail(format!(
            "inotify: max_user_watches {limit}, but watch needs {need} (one per job folder of \
             the cache); raise it: sysctl -w fs.inotify.max_user_watches={more}, and the same in \
             /etc/sysctl.d/ to keep it"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(dir: &str, minions: &[&str]) -> JobDir {
        JobDir {
            dir: dir.into(),
            key: String::new(),
            jid: String::new(),
            nocache: false,
            minions: minions.iter().map(|m| m.to_string()).collect(),
            raw: Vec::new(),
            listed_raw: Default::default(),
            mtime: None,
            subfolders: minions.len(),
        }
    }

    #[test]
    fn watch_limit_counts_the_folders_watch_watches() {
        let dirs = [
            job("/j/ab/cd", &["web1", "web2"]),
            job("/j/ab/ef", &["web1"]),
            job("/j/01/23", &[]),
        ];
        // The root, two prefixes, three jobs; minion folders are watched only while their
        // return has not landed.
        assert!(watch_check(&dirs, Some("6\n".into())).ok);
        let short = watch_check(&dirs, Some("5\n".into()));
        assert!(
            !short.ok && short.text.contains("max_user_watches=16"),
            "{}",
            short.text
        );
        assert!(!watch_check(&dirs, None).ok);
    }

    #[test]
    fn one_hint_that_fits() {
        let dns = with_hint(
            "failed to lookup address information: Name or service not known",
            false,
        );
        assert!(
            dns.contains("does not resolve") && !dns.contains("firewall"),
            "{dns}"
        );
        let precise =
            "the receiver's certificate is not signed by a trusted CA: give its CA with --tls-ca";
        assert_eq!(with_hint(precise, true), precise);
        assert!(with_hint("Connection refused (os error 111)", false).contains("firewall"));
        assert!(with_hint("HTTP 403", true).contains("credentials"));
    }
}
