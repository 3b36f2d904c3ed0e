//! The two keys of the Salt master's own config that saltship reads, for a master cluster:
//! `cluster_id` (job and no_return ids per cluster) and `cluster_isolated_filesystem` (each
//! master keeps its own cache, with every job and return mirrored into it).
//!
//! Only top-level `key: value` lines are read, from the file and then its `master.d/*.conf`
//! (in name order, later wins, as Salt's `default_include` loads them): a whole YAML parser
//! for two scalars is not worth its weight. A file that is not there sets nothing.

use std::path::Path;

/// What the master's config says of its cluster.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct MasterConf {
    pub(crate) cluster_id: Option<String>,
    pub(crate) isolated: bool,
}

/// Reads the master config at `path` and the `master.d/*.conf` beside it.
pub(crate) fn read(path: &Path) -> MasterConf {
    let mut conf = MasterConf::default();
    let mut files = vec![path.to_owned()];
    if let Some(dir) = path.parent() {
        let mut more: Vec<_> = std::fs::read_dir(dir.join("master.d"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        if let Ok(text) = std::fs::read_to_string(&file) {
            conf.apply(&text);
        }
    }
    conf
}

impl MasterConf {
    fn apply(&mut self, text: &str) {
        for line in text.lines() {
            if line.starts_with([' ', '\t', '#', '-']) {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.split(" #").next().unwrap_or("").trim();
            let value = value.trim_matches(|c| c == '"' || c == '\'');
            match key.trim() {
                "cluster_id" if value.is_empty() || value == "null" || value == "~" => {
                    self.cluster_id = None
                }
                "cluster_id" => self.cluster_id = Some(value.to_owned()),
                "cluster_isolated_filesystem" => {
                    self.isolated =
                        matches!(value.to_ascii_lowercase().as_str(), "true" | "yes" | "on")
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_keys_are_read_from_the_file_then_master_d() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let master = tmp.path().join("master");
        std::fs::write(
            &master,
            "interface: 0.0.0.0\ncluster_id: 'prod' # the cluster\ncluster_peers:\n  - 10.0.0.2\n",
        )
        .expect("write");
        assert_eq!(read(&master).cluster_id.as_deref(), Some("prod"));
        assert!(!read(&master).isolated);
        std::fs::create_dir(tmp.path().join("master.d")).expect("dir");
        std::fs::write(
            tmp.path().join("master.d/cluster.conf"),
            "cluster_id: edge\ncluster_isolated_filesystem: True\n",
        )
        .expect("write");
        let conf = read(&master);
        assert_eq!(conf.cluster_id.as_deref(), Some("edge"));
        assert!(conf.isolated);
        let elsewhere = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            read(&elsewhere.path().join("master")),
            MasterConf::default()
        );
    }
}
