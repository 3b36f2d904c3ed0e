//! rsyslog's imrelp (or imtcp, to compare) as a receiver for the tests, and HAProxy (tcp mode) to put in front
//! of a receiver. Each runs as a process of its own, with its files in the test's temp dir
//! and a free port on 127.0.0.1, and is stopped by its PID (SIGKILL: rsyslog's Direct main
//! queue has written every line it answered `rsp 200` for, so a kill loses nothing it
//! acknowledged). Missing tools skip the test, or fail it under SALTSHIP_REQUIRE_RECEIVERS.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::have;
use super::rsyslog::wait_for_port;

/// rsyslogd, if installed with imrelp (Debian's `rsyslog-relp`).
pub fn rsyslogd_with_relp() -> Option<PathBuf> {
    let bin = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let module = ["/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/rsyslog"]
        .iter()
        .any(|d| Path::new(d).join("imrelp.so").exists());
    have(
        "rsyslogd with imrelp",
        bin.is_some() && module,
        "rsyslog rsyslog-relp",
    )
    .then_some(bin)
    .flatten()
}

/// HAProxy, if installed.
pub fn haproxy() -> Option<PathBuf> {
    let bin = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    have("haproxy", bin.is_some(), "haproxy")
        .then_some(bin)
        .flatten()
}

/// Files for imrelp's TLS (`tls="on"`): a CA and the server's certificate and key.
pub struct RelpTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The input a [`Rsyslogd`] listens with.
pub enum Input<'a> {
    /// imrelp, with TLS when given files for it (and room for 128 KiB messages).
    Relp(Option<&'a RelpTls>),
    /// imrelp as rsyslog ships it: `maxDataSize` 8096, `oversizeMode` truncate.
    RelpStock,
    /// imtcp, one message per line: what `--sink tcp` speaks.
    Tcp,
}

/// rsyslogd with one input whose every message goes, as received (`%rawmsg%`), to
/// `relp.log`, before imrelp answers (`main_queue(queue.type="Direct")`).
pub struct Rsyslogd {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
    pub starts: usize,
}

impl Rsyslogd {
    /// Starts it in `dir` on a free port and waits until it listens.
    pub fn start(bin: &Path, dir: &Path, input: Input) -> Rsyslogd {
        let port = super::free_port();
        let room = !matches!(input, Input::RelpStock);
        let input = match input {
            Input::RelpStock => format!(
                "module(load=\"imrelp\")\ninput(type=\"imrelp\" address=\"127.0.0.1\" port=\"{port}\")"
            ),
            Input::Relp(tls) => {
                // imrelp checks the client's certificate: `certvalid` takes any the CA signed.
                let tls = tls.map_or(String::new(), |t| {
                    format!(
                        r#" tls="on" tls.cacert="{}" tls.mycert="{}" tls.myprivkey="{}" tls.authmode="certvalid""#,
                        t.ca.display(),
                        t.cert.display(),
                        t.key.display()
                    )
                });
                format!(
                    "module(load=\"imrelp\")\ninput(type=\"imrelp\" address=\"127.0.0.1\" \
                     port=\"{port}\" maxDataSize=\"128k\"{tls})"
                )
            }
            Input::Tcp => format!(
                "module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")"
            ),
        };
        let d = dir.display();
        let room = if room {
            r#" maxMessageSize="128k""#
        } else {
            ""
        };
        let conf = format!(
            r#"global(workDirectory="{d}"{room})
main_queue(queue.type="Direct")
{input}
template(name="raw" type="string" string="%rawmsg%\n")
action(type="omfile" file="{d}/relp.log" template="raw")
"#
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).expect("write rsyslog.conf");
        let mut me = Rsyslogd {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            port,
            child: None,
            starts: 0,
        };
        me.restart();
        me
    }

    /// `127.0.0.1:PORT`.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and wait for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again (after [`Rsyslogd::kill`]) on the same port, and waits until it listens.
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("rsyslogd.stderr"))
            .expect("rsyslogd.stderr");
        let child = Command::new(&self.bin)
            .args(["-n", "-f"])
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        self.starts += 1;
        wait_for_port(self.port, "rsyslogd");
    }

    /// The lines in `relp.log` so far.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("relp.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// How often each event id is in `relp.log`, once `want` ids are there (bounded wait).
    pub fn id_counts(&self, want: usize) -> HashMap<String, usize> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let counts = id_counts(&self.lines());
            if counts.len() >= want || Instant::now() > deadline {
                return counts;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What rsyslogd said on stderr (for failed asserts).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("rsyslogd.stderr")).unwrap_or_default()
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How often each `"event_id":"…"` occurs in `lines` (a JSON line, or the JSON message of
/// an RFC 5424 line).
pub fn id_counts(lines: &[String]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in lines {
        let mut rest = line.as_str();
        while let Some(at) = rest.find("\"event_id\":\"") {
            rest = &rest[at + 12..];
            let id = rest.split('"').next().unwrap_or_default();
            *counts.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// HAProxy in tcp mode on a free port, forwarding every connection to `backend`.
pub struct HaProxy {
    child: Child,
    pub port: u16,
}

impl HaProxy {
    pub fn start(bin: &Path, dir: &Path, backend: &str) -> HaProxy {
        HaProxy::with_idle_timeout(bin, dir, backend, "60s")
    }

    /// Closing a connection idle for `idle` (HAProxy's `timeout client` and `server`).
    pub fn with_idle_timeout(bin: &Path, dir: &Path, backend: &str, idle: &str) -> HaProxy {
        HaProxy::launch(bin, dir, backend, idle, "")
    }

    /// With health checks of the backend every 100 ms, as a load balancer runs: once they
    /// failed, a client is accepted and closed at once (no server available).
    pub fn health_checked(bin: &Path, dir: &Path, backend: &str) -> HaProxy {
        HaProxy::launch(bin, dir, backend, "60s", " check inter 100ms fall 2")
    }

    fn launch(bin: &Path, dir: &Path, backend: &str, idle: &str, server: &str) -> HaProxy {
        let port = super::free_port();
        let conf = format!(
            "global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 1s\n  \
             timeout client {idle}\n  timeout server {idle}\nfrontend fe\n  bind 127.0.0.1:{port}\n  \
             default_backend be\nbackend be\n  server s1 {backend}{server}\n"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, conf).expect("write haproxy.cfg");
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        wait_for_port(port, "haproxy");
        HaProxy { child, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
