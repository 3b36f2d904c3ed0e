//! `--metrics-file`: the metrics written for node_exporter's textfile collector, atomically
//! (a temp file beside it, renamed over it, so the collector never reads half a file), and
//! what the operator hears while that fails: one warning when it starts, one line when it
//! works again, never a warning every 10 s, and no temp file left behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use log::{info, warn};

use super::Metrics;

/// The metrics file of a run, and whether its last write failed.
pub(crate) struct MetricsFile {
    path: PathBuf,
    failing: bool,
}

impl MetricsFile {
    pub(crate) fn new(path: PathBuf) -> MetricsFile {
        MetricsFile {
            path,
            failing: false,
        }
    }

    /// Writes every metric; whether it worked. A failure is warned about once, until a
    /// write works again, which says so.
    pub(crate) fn write(&mut self, metrics: &Metrics) -> bool {
        match write_atomically(&self.path, metrics.render().as_bytes()) {
            Ok(()) if self.failing => {
                self.failing = false;
                info!("metrics file {}: written again", self.path.display());
                true
            }
            Ok(()) => true,
            Err(e) if !self.failing => {
                self.failing = true;
                warn!(
                    "metrics file {}: {e}; not written until this is fixed (said once)",
                    self.path.display()
                );
                false
            }
            Err(_) => false,
        }
    }
}

/// `bytes` in a temp file beside `path`, fsynced and renamed over it; the temp file is removed
/// when any step fails.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if path.is_dir() {
        return Err(std::io::Error::other("is a folder, not a file"));
    }
    let tmp = path.with_extension("prom.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    // Readable by node_exporter's own user whatever the umask (the unit's UMask=0077): the
    // numbers are no secret, and this file only.
    use std::os::unix::fs::PermissionsExt;
    let written = file
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("m.prom");
        std::fs::create_dir(&folder).expect("mkdir");
        let err = write_atomically(&folder, b"x 1\n").expect_err("a folder");
        assert_eq!(err.to_string(), "is a folder, not a file");
        let ok = dir.path().join("ok.prom");
        write_atomically(&ok, b"x 1\n").expect("written");
        assert_eq!(std::fs::read_to_string(&ok).expect("read"), "x 1\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temp file: {names:?}");
    }
}
