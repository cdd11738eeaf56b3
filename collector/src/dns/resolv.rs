//! A source's `resolv.conf`: where it is (the pod's root, beneath its process) and
//! what it says (nameservers, search domains, options).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use netsnap_bundle::layout;

use crate::options::HostPaths;
use crate::sys::fileio::{RESOLV_CONF_CAP, ReadError, RootDir, run_bounded};

use super::ProbeSource;

/// A parsed `resolv.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines.
    pub nameservers: Vec<IpAddr>,
    /// `search` domains (last `search`/`domain` line wins, as in glibc).
    pub search: Vec<String>,
    /// `options` tokens.
    pub options: Vec<String>,
}

/// Parses `resolv.conf` text; unknown lines are ignored, as the libc resolver does.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut rc = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| {
                    // IPv6 link-local nameservers may carry a `%zone`.
                    w.split('%').next().and_then(|a| a.parse().ok())
                }) {
                    rc.nameservers.push(ip);
                }
            }
            Some("search") | Some("domain") => rc.search = words.map(str::to_string).collect(),
            Some("options") => rc.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    rc
}

/// The cluster domain from a pod's search path (`<ns>.svc.cluster.local svc.cluster.local cluster.local`).
pub fn cluster_domain(search: &[String]) -> Option<String> {
    search.iter().find_map(|s| {
        let s = s.trim_end_matches('.');
        s.strip_prefix("svc.")
            .or_else(|| s.split_once(".svc.").map(|(_, d)| d))
            .filter(|d| !d.is_empty())
            .map(str::to_string)
    })
}

/// The path of a source's `/etc/resolv.conf` as shown in messages: through
/// `/proc/<pid>/root` for a pod, the node's own file for the host namespace
/// (it is read with [`read_resolv_conf`], never by opening this path).
pub fn resolv_conf_path(src: &ProbeSource, host_root: Option<&std::path::Path>) -> Option<PathBuf> {
    let rel = match src.pid {
        Some(pid) => format!("proc/{pid}/root/etc/resolv.conf"),
        None if src.netns == layout::HOST_NETNS => "etc/resolv.conf".to_string(),
        None => return None,
    };
    Some(match host_root {
        Some(r) => r.join(rel),
        None => PathBuf::from("/").join(rel),
    })
}

/// Reads a source's `/etc/resolv.conf` inside the right root: the pod's
/// (`/proc/<pid>/root`, where a symlink leaving it is refused) or the node's.
/// Regular files only, at most [`RESOLV_CONF_CAP`] bytes, abandoned after
/// `timeout`. None when the source has no process to read it through.
pub fn read_resolv_conf(
    src: &ProbeSource,
    host_root: Option<&std::path::Path>,
    timeout: Duration,
) -> Option<Result<Vec<u8>, ReadError>> {
    let host = HostPaths::new(host_root.map(std::path::Path::to_path_buf));
    let pid = match src.pid {
        Some(pid) => Some(pid),
        None if src.netns == layout::HOST_NETNS => None,
        None => return None,
    };
    let shown = resolv_conf_path(src, host_root)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Some(run_bounded(&shown, timeout, move || {
        let root = match pid {
            Some(pid) => RootDir::container(&host, pid)?,
            None => RootDir::host(&host)?,
        };
        root.read_capped("/etc/resolv.conf", RESOLV_CONF_CAP)
    }))
}
