//! Network namespace discovery: every netns on the node, from
//! `/proc/<pid>/ns/net` of all processes (deduplicated by inode) and from the
//! named ones under `/run/netns` and `/var/run/netns`.
//!
//! Per process it keeps only identity (pid, `comm`, cgroup path, pod UID and
//! container id parsed from the cgroup), never command lines (secrets). The
//! host namespace is the collector's own initial one (`/proc/self/ns/net`,
//! read before any thread enters another namespace).
//!
//! Read-only: it opens nothing but `/proc` and the netns directories.

pub mod step;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::OnceLock;

use netsnap_bundle::layout;
use netsnap_bundle::native::{NetnsInfo, NetnsProcess};
use regex::Regex;

use crate::options::HostPaths;
pub use crate::step::Netns;

/// Discovers namespaces under `host` (`/proc`, `/run/netns`, `/var/run/netns`).
///
/// `self_netns` is the path of the collector's own namespace (normally
/// `/proc/self/ns/net`): its inode marks the host entry, which is always first.
pub fn discover(host: &HostPaths, self_netns: &Path, max_procs: usize) -> Vec<Netns> {
    let host_inode = fs::metadata(self_netns).map(|m| m.ino()).ok();
    let mut map: BTreeMap<u64, Netns> = BTreeMap::new();
    let new_entry = |inode: u64| Netns {
        info: NetnsInfo {
            id: if Some(inode) == host_inode {
                layout::HOST_NETNS.to_string()
            } else {
                layout::netns_id(inode)
            },
            inode,
            is_host: Some(inode) == host_inode,
            ..NetnsInfo::default()
        },
        paths: Vec::new(),
    };

    // Named namespaces (ip netns add, CNI plugins that pin them).
    for dir in ["/run/netns", "/var/run/netns"] {
        let dir = host.path(dir);
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = fs::metadata(&p) else { continue };
            // A netns bind mount is an nsfs inode; an unmounted placeholder is a
            // plain empty file on tmpfs, which is not a namespace.
            if !is_nsfs(&p) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let ns = map.entry(md.ino()).or_insert_with(|| new_entry(md.ino()));
            if !ns.info.names.contains(&name) {
                ns.info.names.push(name);
            }
            if !ns.paths.contains(&p) {
                ns.paths.push(p);
            }
        }
    }

    // Every process's namespace.
    let proc_dir = host.path("/proc");
    if let Ok(rd) = fs::read_dir(&proc_dir) {
        let mut pids: Vec<u32> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        for pid in pids {
            let ns_path = proc_dir.join(pid.to_string()).join("ns/net");
            let Ok(md) = fs::metadata(&ns_path) else {
                continue;
            };
            let ns = map.entry(md.ino()).or_insert_with(|| new_entry(md.ino()));
            ns.info.process_count += 1;
            if ns.paths.len() < 4 {
                ns.paths.push(ns_path);
            }
            let proc_info = read_process(&proc_dir, pid);
            if proc_info.comm == "pause" {
                ns.info.has_pause = true;
            }
            if ns.info.pod_uid.is_none() {
                ns.info.pod_uid = proc_info.pod_uid.clone();
            }
            if ns.info.processes.len() < max_procs {
                ns.info.processes.push(proc_info);
            }
        }
    }

    // The host is always present (even if /proc is not ours, e.g. in a test).
    if let Some(ino) = host_inode {
        let ns = map.entry(ino).or_insert_with(|| new_entry(ino));
        if !ns.paths.iter().any(|p| p == self_netns) {
            ns.paths.insert(0, self_netns.to_path_buf());
        }
    }
    let mut list: Vec<Netns> = map.into_values().collect();
    list.sort_by_key(|n| (!n.info.is_host, n.info.inode));
    list
}

fn is_nsfs(p: &Path) -> bool {
    // NSFS_MAGIC: only real namespace files carry it. nix's FsType wraps an
    // i64 on glibc and a u64 on musl, so compare through nix's own constant
    // rather than a literal of one libc's type.
    nix::sys::statfs::statfs(p)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

fn read_process(proc_dir: &Path, pid: u32) -> NetnsProcess {
    let base = proc_dir.join(pid.to_string());
    // Capped, non-blocking, regular files only (see `fileio`).
    let comm = crate::sys::fileio::read_small(&base.join("comm")).unwrap_or_default();
    let cgroup = crate::sys::fileio::read_small(&base.join("cgroup")).and_then(|s| pick_cgroup(&s));
    let (pod_uid, container_id) = cgroup
        .as_deref()
        .map(|c| (pod_uid_from_cgroup(c), container_id_from_cgroup(c)))
        .unwrap_or((None, None));
    NetnsProcess {
        pid,
        comm,
        cgroup,
        pod_uid,
        container_id,
    }
}

/// The cgroup path to keep from `/proc/<pid>/cgroup`: the first line naming a
/// Kubernetes pod, else the first line (cgroup v2 has a single `0::/path` line).
pub fn pick_cgroup(content: &str) -> Option<String> {
    let paths: Vec<&str> = content
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .collect();
    paths
        .iter()
        .find(|p| p.contains("kubepods"))
        .or_else(|| paths.first())
        .map(|p| p.to_string())
}

fn pod_re() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"pod([0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{12})",
        )
        .ok()
    })
    .as_ref()
}

fn container_re() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^(?:cri-containerd-|crio-|docker-|containerd-|libpod-)?([0-9a-f]{64})(?:\.scope)?$",
        )
        .ok()
    })
    .as_ref()
}

/// Pod UID from a kubepods cgroup path, in the API's dashed form. Handles the
/// cgroupfs driver (`/kubepods/burstable/pod<uid>/…`) and the systemd driver
/// (`…-pod<uid_with_underscores>.slice`).
pub fn pod_uid_from_cgroup(path: &str) -> Option<String> {
    if !path.contains("kubepods") {
        return None;
    }
    pod_re()?
        .captures(path)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str().replace('_', "-").to_ascii_lowercase())
}

/// Container id from the last cgroup component (containerd, CRI-O, docker, or a bare id).
pub fn container_id_from_cgroup(path: &str) -> Option<String> {
    let last = path.trim_end_matches('/').rsplit('/').next()?;
    container_re()?
        .captures(last)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_uid_variants() {
        assert_eq!(
            pod_uid_from_cgroup("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1a2b3c_1111_2222_3333_444455556666.slice/cri-containerd-aaaa.scope").as_deref(),
            Some("3f1a2b3c-1111-2222-3333-444455556666")
        );
        assert_eq!(
            pod_uid_from_cgroup(
                "/kubepods/besteffort/pod3F1A2B3C-1111-2222-3333-444455556666/0123"
            )
            .as_deref(),
            Some("3f1a2b3c-1111-2222-3333-444455556666")
        );
        assert_eq!(
            pod_uid_from_cgroup("/system.slice/pod3f1a2b3c-1111-2222-3333-444455556666"),
            None
        );
        assert_eq!(pod_uid_from_cgroup("/kubepods/burstable"), None);
    }

    #[test]
    fn container_ids() {
        let id = "a".repeat(64);
        for p in [
            format!("/kubepods.slice/x.slice/cri-containerd-{id}.scope"),
            format!("/kubepods.slice/x.slice/crio-{id}.scope"),
            format!("/kubepods.slice/x.slice/docker-{id}.scope"),
            format!("/kubepods/burstable/podx/{id}"),
        ] {
            assert_eq!(
                container_id_from_cgroup(&p).as_deref(),
                Some(id.as_str()),
                "{p}"
            );
        }
        assert_eq!(
            container_id_from_cgroup("/user.slice/session-1.scope"),
            None
        );
    }

    #[test]
    fn cgroup_pick() {
        let v1 = "12:pids:/user.slice\n11:cpu:/kubepods/pod1/abc\n";
        assert_eq!(pick_cgroup(v1).as_deref(), Some("/kubepods/pod1/abc"));
        assert_eq!(
            pick_cgroup("0::/init.scope\n").as_deref(),
            Some("/init.scope")
        );
        assert_eq!(pick_cgroup(""), None);
    }
}
