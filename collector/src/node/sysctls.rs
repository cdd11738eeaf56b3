//! The node sysctls the analysis needs and the bridge ports' hairpin modes.

use std::collections::BTreeMap;

use netsnap_bundle::native::{BridgePort, BridgePorts};

use crate::sys::fileio::RootDir;

/// Node sysctls the analysis needs (dotted keys), excluding per-interface ones.
pub const NODE_SYSCTLS: &[&str] = &[
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.default.rp_filter",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv4.conf.default.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.ipv4.neigh.default.gc_thresh1",
    "net.ipv4.neigh.default.gc_thresh2",
    "net.ipv4.neigh.default.gc_thresh3",
    "net.ipv6.neigh.default.gc_thresh1",
    "net.ipv6.neigh.default.gc_thresh2",
    "net.ipv6.neigh.default.gc_thresh3",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_count",
    "net.netfilter.nf_conntrack_buckets",
    "net.nf_conntrack_max",
    "net.core.somaxconn",
    "net.ipv4.tcp_tw_reuse",
    "kernel.pid_max",
    "fs.file-max",
];

/// Reads the node sysctls under the node's `/proc/sys`: (present values, absent keys).
pub fn node_sysctls(root: &RootDir) -> (BTreeMap<String, String>, Vec<String>) {
    let mut map = BTreeMap::new();
    let mut absent = Vec::new();
    for k in NODE_SYSCTLS {
        match sysctl_in(root, k) {
            Some(v) => {
                map.insert((*k).to_string(), v);
            }
            None => absent.push((*k).to_string()),
        }
    }
    // Per interface: rp_filter and route_localnet of every interface.
    if let Ok(entries) = root.read_dir("/proc/sys/net/ipv4/conf") {
        for (ifname, is_dir, _) in entries {
            if !is_dir || ifname == "all" || ifname == "default" {
                continue;
            }
            for key in ["rp_filter", "route_localnet", "forwarding"] {
                if let Some(v) = root.read_small(&format!("/proc/sys/net/ipv4/conf/{ifname}/{key}"))
                {
                    map.insert(format!("net.ipv4.conf.{ifname}.{key}"), v);
                }
            }
        }
    }
    (map, absent)
}

/// One sysctl by dotted key under the node's `/proc/sys`.
fn sysctl_in(root: &RootDir, key: &str) -> Option<String> {
    let rel = crate::sys::sysctl::sysctl_rel_path(key);
    root.read_small(&format!("/proc/sys/{}", rel.display()))
        .map(|v| v.replace('\t', " "))
}

/// Bridge ports and hairpin modes from the node's `/sys/class/net`.
pub fn bridge_ports(root: &RootDir) -> BridgePorts {
    let mut ports = Vec::new();
    if let Ok(entries) = root.read_dir("/sys/class/net") {
        for (port, _, _) in entries {
            let brport = format!("/sys/class/net/{port}/brport");
            if !root.is_dir(&brport) {
                continue;
            }
            // `brport/bridge` links to the bridge's device directory, whose uevent names it.
            let bridge = root
                .read_small(&format!("{brport}/bridge/uevent"))
                .and_then(|u| {
                    u.lines()
                        .find_map(|l| l.strip_prefix("INTERFACE="))
                        .map(str::to_string)
                })
                .unwrap_or_default();
            let hairpin = root
                .read_small(&format!("{brport}/hairpin_mode"))
                .map(|v| v == "1");
            ports.push(BridgePort {
                bridge,
                port,
                hairpin,
            });
        }
    }
    ports.sort_by(|a, b| (&a.bridge, &a.port).cmp(&(&b.bridge, &b.port)));
    BridgePorts { ports }
}
