//! Reading sysctls by their dotted names (`net.ipv4.conf.eth0.100.rp_filter`)
//! under a `/proc/sys` directory, through [`crate::sys::fileio`].

use std::path::PathBuf;

/// Reads one sysctl by dotted key from the calling thread's namespace.
pub fn read_sysctl(key: &str) -> Option<String> {
    read_sysctl_under(&PathBuf::from("/proc/sys"), key)
}

/// Reads dotted `key` under a `/proc/sys` directory (`--host-root` aware callers
/// pass their own). Interface names keep their dots: only the first components
/// are split, as the kernel's `conf/<ifname>/<key>` layout requires.
pub fn read_sysctl_under(base: &std::path::Path, key: &str) -> Option<String> {
    let rel = sysctl_rel_path(key);
    // Non-blocking, regular files only, capped (see `fileio`).
    crate::sys::fileio::read_small(&base.join(rel)).map(|s| s.replace('\t', " "))
}

/// The path of dotted sysctl `key` relative to `/proc/sys`.
pub fn sysctl_rel_path(key: &str) -> PathBuf {
    // net.ipv4.conf.<ifname>.<key>: the interface name may contain dots.
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() >= 5 && parts[0] == "net" && (parts[2] == "conf" || parts[2] == "neigh") {
        let ifname = parts[3..parts.len() - 1].join(".");
        let mut p = PathBuf::from(parts[0]);
        p.push(parts[1]);
        p.push(parts[2]);
        p.push(ifname);
        p.push(parts[parts.len() - 1]);
        return p;
    }
    key.split('.').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_paths_keep_dotted_ifnames() {
        assert_eq!(
            sysctl_rel_path("net.ipv4.conf.eth0.100.rp_filter"),
            PathBuf::from("net/ipv4/conf/eth0.100/rp_filter")
        );
        assert_eq!(
            sysctl_rel_path("net.ipv4.ip_forward"),
            PathBuf::from("net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_rel_path("net.ipv4.neigh.default.gc_thresh1"),
            PathBuf::from("net/ipv4/neigh/default/gc_thresh1")
        );
    }
}
