//! Validated collector options (the CLI converts its flags into this once),
//! recorded verbatim in the manifest's `collection.options`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::dns::DnsOptions;
use crate::kube::KubeOptions;

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
    /// Silence timeout of one unit of work: a command printing nothing for this long
    /// (big dumps: [`crate::sys::exec::DUMP_TIMEOUT_FACTOR`] times it), one namespace's
    /// netlink dump, one file.
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
    /// Big dumps (rulesets, conntrack table) run at once ([`crate::sys::exec::Kind::Dump`]).
    pub dump_slots: usize,
    /// Raw `ip` text is produced for at most this many non-host namespaces (it
    /// costs two processes each; the native `netlink.json` is always complete).
    pub max_ip_text_netns: usize,
    /// Maximum processes listed per namespace in `netns/index.json`.
    pub max_processes_per_netns: usize,
    /// Replace an existing file at `output` (`--force`); otherwise the run refuses it.
    pub force: bool,
    /// Options of the Kubernetes API step (recorded flattened, under the flag names).
    #[serde(flatten)]
    pub kube: KubeOptions,
    /// Options of the DNS probes (recorded flattened, under the flag names).
    #[serde(flatten)]
    pub dns: DnsOptions,
}

/// The longest duration any option accepts (7 days): anything longer is a typo.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses a command-line duration: a number of seconds (`5`, `0.5`, `1e1`) or a
/// number with a unit (`500ms`, `60s`, `2m`, `1h`). Refuses zero, negative, NaN,
/// infinite and anything over [`MAX_DURATION`] with a one-line reason.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit_secs) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| {
        format!("{text:?} is not a duration (seconds, or with a unit: 500ms, 60s, 2m, 1h)")
    })?;
    let secs = value * unit_secs;
    if !secs.is_finite() {
        return Err(format!("{text:?} is not a finite duration"));
    }
    if secs <= 0.0 {
        return Err(format!("{text:?} must be more than zero"));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(format!("{text:?} is too long (at most 7 days)"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"))
}

/// Serializes a duration as seconds (`2.0`, `0.5`), the manifest's unit.
pub(crate) fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
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
            dump_slots: crate::sys::exec::default_dump_slots(),
            max_ip_text_netns: 100,
            max_processes_per_netns: 32,
            force: false,
            kube: KubeOptions::default(),
            dns: DnsOptions::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 1e1 "), Ok(Duration::from_secs(10)));
        for bad in [
            "1.8e19",
            "1e20",
            "1e20s",
            "-1",
            "0",
            "0s",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "",
            "s",
            "5x",
            "2 minutes",
            "8d",
            "169h",
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
        assert_eq!(parse_duration("168h"), Ok(MAX_DURATION));
    }

    /// `collection.options` keeps the flat, flag-named keys it had when the API and
    /// DNS options were an untyped map (the analyzer and `bundle::k8s` read them).
    #[test]
    fn kube_and_dns_options_serialize_under_their_flag_names() {
        let mut o = Options::default();
        o.kube.kubeconfig = Some(PathBuf::from("/k"));
        o.kube.scope = netsnap_bundle::k8s::ApiScope::Node;
        o.kube.run_id = Some("r1".into());
        o.kube.max_bytes = Some(5000);
        o.kube.start_jitter = Duration::from_secs(1);
        o.dns.from = "all".parse().unwrap();
        o.dns.names = vec!["a.example".into()];
        o.dns.timeout = Duration::from_millis(500);
        let v = serde_json::to_value(&o).unwrap();
        let obj = v.as_object().unwrap();
        for (k, want) in [
            ("kubeconfig", serde_json::json!("/k")),
            ("context", serde_json::Value::Null),
            ("api_scope", serde_json::json!("node")),
            ("run_id", serde_json::json!("r1")),
            ("api_qps", serde_json::json!(5.0)),
            ("api_burst", serde_json::json!(10)),
            ("api_max_bytes", serde_json::json!(5000)),
            ("api_max_retries", serde_json::json!(8)),
            ("start_jitter", serde_json::json!(1.0)),
            ("dns_from", serde_json::json!("all")),
            ("dns_names", serde_json::json!(["a.example"])),
            ("dns_timeout", serde_json::json!(0.5)),
        ] {
            assert_eq!(obj.get(k), Some(&want), "{k}");
        }
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 17 + 12, "{keys:?}");
        for inner in ["kube", "dns", "scope", "qps", "from", "names", "page_size"] {
            assert!(!obj.contains_key(inner), "{inner} leaked into the manifest");
        }
        for (text, from) in [("all", "all"), ("7", "7"), ("ns/pod", "ns/pod")] {
            let parsed: crate::dns::DnsFrom = text.parse().unwrap();
            assert_eq!(parsed.to_string(), from);
        }
    }
}
