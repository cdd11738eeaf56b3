//! Validated collector options (the CLI converts its flags into this once),
//! recorded verbatim in the manifest's `collection.options`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// Everything a run needs to know; no clap types beyond this point.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// Bundle path; None = `netsnap-<node>-<UTC>.tar.zst` in the current directory.
    pub output: Option<PathBuf>,
    /// Do not contact the Kubernetes API.
    pub no_api: bool,
    /// Kubernetes node name (`--node-name` / `$NODE_NAME`).
    pub node_name: Option<String>,
    /// Root of the host filesystem (files and `/proc` are read under it).
    pub host_root: Option<PathBuf>,
    /// Timeout of one unit of work: one command, one namespace's netlink dump, one file.
    #[serde(serialize_with = "ser_secs")]
    pub timeout: Duration,
    /// Deadline of the whole run.
    #[serde(serialize_with = "ser_secs")]
    pub deadline: Duration,
    /// Gap between the first and second sample of counters.
    #[serde(serialize_with = "ser_secs")]
    pub sample_interval: Duration,
    /// Per-artifact cap in bytes.
    pub max_artifact_size: Option<u64>,
    /// Whole-bundle cap in bytes (before compression).
    pub max_bundle_size: Option<u64>,
    /// Cap on conntrack table lines (None = the whole table).
    pub conntrack_max_entries: Option<u64>,
    /// Cap on `ipvsadm -Lnc` / `/proc/net/ip_vs_conn` lines.
    pub ipvs_conn_max_lines: u64,
    /// Threads entering namespaces for netlink dumps.
    pub netns_workers: usize,
    /// Concurrent `ip` commands for the per-namespace raw text.
    pub command_concurrency: usize,
    /// Raw `ip` text is produced for at most this many non-host namespaces (it
    /// costs two processes each; the native `netlink.json` is always complete).
    pub max_ip_text_netns: usize,
    /// Maximum processes listed per namespace in `netns/index.json`.
    pub max_processes_per_netns: usize,
    /// Replace an existing file at `output` (`--force`); otherwise the run refuses it.
    pub force: bool,
    /// Options of plugged-in steps (API, DNS), recorded with the rest in the manifest.
    #[serde(flatten)]
    pub step_options: serde_json::Map<String, serde_json::Value>,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Default for Options {
    fn default() -> Self {
        Options {
            output: None,
            no_api: false,
            node_name: None,
            host_root: None,
            timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
            sample_interval: Duration::from_secs(2),
            max_artifact_size: Some(1 << 30),
            max_bundle_size: Some(4 << 30),
            conntrack_max_entries: None,
            ipvs_conn_max_lines: 100_000,
            netns_workers: 4,
            command_concurrency: 4,
            max_ip_text_netns: 100,
            max_processes_per_netns: 32,
            force: false,
            step_options: serde_json::Map::new(),
        }
    }
}

/// Maps absolute node paths (`/proc/...`, `/etc/...`) under `--host-root`.
#[derive(Debug, Clone, Default)]
pub struct HostPaths {
    root: Option<PathBuf>,
}

impl HostPaths {
    /// Paths under `root` (None = `/`).
    pub fn new(root: Option<PathBuf>) -> Self {
        HostPaths { root }
    }

    /// The node's view of absolute path `abs`.
    pub fn path(&self, abs: &str) -> PathBuf {
        match &self.root {
            Some(r) => r.join(abs.trim_start_matches('/')),
            None => PathBuf::from(abs),
        }
    }

    /// The configured root, if any.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }
}
