//! TLS peers for the tests: a test PKI made with the `openssl` command line (a CA and the
//! certificates it signs, and a CA nobody trusts), and `openssl s_server` on 127.0.0.1 serving
//! one of them. Without openssl a test skips through `common::have` (a failure under CI).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use super::rsyslog::wait_for_port;
use super::{free_port, have, p};

/// Whether openssl runs; if not, the test skips (fails under CI).
pub fn have_openssl() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    have("openssl", found, "openssl")
}

/// Test certificates, made by the openssl command line in `dir`: a CA, and signed by it a
/// server certificate for localhost and 127.0.0.1, one for another name, an expired one and a
/// client certificate; plus a second, untrusted CA.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// The certificates in `dir/pki`; `None` (the test skips) without openssl.
    pub fn make(dir: &Path) -> Option<Pki> {
        if !have_openssl() {
            return None;
        }
        let pki = Pki {
            dir: dir.join("pki"),
        };
        std::fs::create_dir_all(pki.dir.join("issued")).expect("mkdir pki");
        std::fs::write(pki.dir.join("index.txt"), "").expect("index");
        std::fs::write(pki.dir.join("serial"), "01\n").expect("serial");
        // `openssl ca`, unlike `x509 -req` in OpenSSL 3.0, can set any validity period.
        let conf = "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\n\
                    new_certs_dir = issued\nserial = serial\ndefault_md = sha256\n\
                    policy = any\ncopy_extensions = copy\nunique_subject = no\n\
                    x509_extensions = leaf\n[any]\ncommonName = supplied\n\
                    [leaf]\nbasicConstraints = CA:FALSE\n";
        std::fs::write(pki.dir.join("ca.cnf"), conf).expect("ca.cnf");
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        for ca in ["ca", "other-ca"] {
            pki.openssl(&format!(
                "req -x509 {ec} -keyout {ca}.key -out {ca}.pem -days 2 -subj /CN=test-{ca}"
            ));
        }
        // Each leaf: a key and request, then signed by ca.pem for a validity period.
        let both = "-addext subjectAltName=DNS:localhost,IP:127.0.0.1";
        let other = "-addext subjectAltName=DNS:other.example";
        let (valid, past) = (
            "-days 2",
            "-startdate 20200101000000Z -enddate 20200201000000Z",
        );
        for (name, cn, san, validity) in [
            ("server", "localhost", both, valid),
            ("wrong-name", "other.example", other, valid),
            ("expired", "localhost", both, past),
            ("client", "saltship", "", valid),
        ] {
            pki.openssl(&format!(
                "req {ec} -keyout {name}.key -out {name}.csr -subj /CN={cn} {san}"
            ));
            pki.openssl(&format!(
                "ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in {name}.csr \
                 -out {name}.pem {validity}"
            ));
        }
        Some(pki)
    }

    /// `openssl <command>` in the pki folder (no argument has a space).
    fn openssl(&self, command: &str) {
        let args: Vec<&str> = command.split_whitespace().collect();
        let out = Command::new("openssl")
            .args(&args)
            .current_dir(&self.dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The path of `file` in the pki folder, as an argument.
    pub fn path(&self, file: &str) -> String {
        p(&self.dir.join(file)).to_owned()
    }
}

/// `openssl s_server` of the test's own, writing what it decrypts to a file; stopped (by its
/// PID) when dropped.
pub struct SServer {
    child: Child,
    /// s_server ends a connection when its stdin closes, so it stays open.
    _stdin: ChildStdin,
    pub port: u16,
    out: PathBuf,
}

impl SServer {
    /// Serving `cert` (a name in the pki) with s_server's `extra` options.
    pub fn start(pki: &Pki, cert: &str, extra: &[&str]) -> SServer {
        let port = free_port();
        let out = pki.dir.join(format!("s_server-{port}.out"));
        let err = File::create(pki.dir.join(format!("s_server-{port}.err"))).expect("err file");
        let mut child = Command::new("openssl")
            .args(["s_server", "-quiet", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-cert", &pki.path(&format!("{cert}.pem"))])
            .args(["-key", &pki.path(&format!("{cert}.key"))])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(File::create(&out).expect("out file"))
            .stderr(err)
            .spawn()
            .expect("start openssl s_server");
        let stdin = child.stdin.take().expect("stdin");
        let server = SServer {
            child,
            _stdin: stdin,
            port,
            out,
        };
        wait_for_port(port, "openssl s_server");
        server
    }

    /// `host:port`, for `--target`.
    pub fn target(&self, host: &str) -> String {
        format!("{host}:{}", self.port)
    }

    /// The plaintext it received so far.
    pub fn received(&self) -> Vec<u8> {
        std::fs::read(&self.out).expect("s_server output")
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
