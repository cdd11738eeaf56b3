//! The fixed directory layout of a bundle, and the `content` identifiers that
//! tell a reader which parser applies to an artifact.
//!
//! Producers and consumers both use these constants, so a path is spelled once.
//! `docs/bundle-format.md` lists the same table for humans.

/// The manifest, always the first tar entry.
pub const MANIFEST: &str = "manifest.json";

/// Id of the node's own (initial) network namespace.
pub const HOST_NETNS: &str = "host";

/// Id of a non-host network namespace, derived from its inode (stable for its lifetime).
pub fn netns_id(inode: u64) -> String {
    format!("ns-{inode}")
}

/// Directory holding one network namespace's artifacts.
pub fn netns_dir(id: &str) -> String {
    format!("netns/{id}")
}

/// Path of an artifact inside one namespace's directory.
pub fn netns_path(id: &str, file: &str) -> String {
    format!("netns/{id}/{file}")
}

/// Per-namespace file names (join with [`netns_path`]).
pub mod netns {
    /// Native [`crate::native::NetnsSnapshot`]: links, addresses, routes, neighbour summary.
    pub const NETLINK: &str = "netlink.json";
    /// Native second sample of link counters ([`crate::native::LinkStatsSample`]).
    pub const LINK_STATS_2: &str = "link-stats.2.json";
    /// Native `BTreeMap<String, String>` of the namespace's own net sysctls.
    pub const SYSCTLS: &str = "sysctls.json";
    /// Raw `ip -d addr show`.
    pub const IP_ADDR: &str = "ip-addr.txt";
    /// Raw `ip route show table all`.
    pub const IP_ROUTE: &str = "ip-route.txt";
    /// Raw `/etc/resolv.conf` as seen by the namespace's processes.
    pub const RESOLV_CONF: &str = "resolv.conf";
}

/// Native [`crate::native::NetnsIndex`]: every namespace, its processes and identity.
pub const NETNS_INDEX: &str = "netns/index.json";

/// Node-level artifacts.
pub mod node {
    /// Raw `uname -a`.
    pub const UNAME: &str = "node/uname.txt";
    /// Raw `/etc/os-release`.
    pub const OS_RELEASE: &str = "node/os-release";
    /// Native `BTreeMap<String, String>` of the sysctls the analysis needs (dotted keys).
    pub const SYSCTLS: &str = "node/sysctls.json";
    /// Raw kernel log (`/dev/kmsg` rendered like `dmesg`, or `dmesg` output).
    pub const KERNEL_LOG: &str = "node/kernel-log.txt";
    /// Raw `ip rule show`.
    pub const IP_RULE: &str = "node/ip-rule.txt";
    /// Raw `ip -6 rule show`.
    pub const IP6_RULE: &str = "node/ip6-rule.txt";
    /// Raw `ip neigh show`.
    pub const IP_NEIGH: &str = "node/ip-neigh.txt";
    /// Native [`crate::native::ToolVersions`].
    pub const TOOL_VERSIONS: &str = "node/tool-versions.json";
    /// Native [`crate::native::BridgePorts`]: bridge ports and their hairpin mode.
    pub const BRIDGE_PORTS: &str = "node/bridge-ports.json";
    /// Native [`crate::native::Privileges`]: what the collector could and could not do.
    pub const PRIVILEGES: &str = "node/privileges.json";
}

/// conntrack artifacts.
pub mod conntrack {
    /// Raw `conntrack -L -o extended` (or `conntrack -L`).
    pub const TABLE: &str = "conntrack/conntrack-L.txt";
    /// Raw `/proc/net/nf_conntrack` (fallback when the program is missing).
    pub const PROC_TABLE: &str = "conntrack/proc-nf_conntrack.txt";
    /// Raw `conntrack -S`.
    pub const STATS: &str = "conntrack/conntrack-S.txt";
    /// Raw `conntrack -C`.
    pub const COUNT: &str = "conntrack/conntrack-C.txt";
    /// Raw `/proc/net/stat/nf_conntrack`, first sample.
    pub const PROC_STAT: &str = "conntrack/proc-stat-nf_conntrack.txt";
    /// Raw `/proc/net/stat/nf_conntrack`, second sample (`--sample-interval` later).
    pub const PROC_STAT_2: &str = "conntrack/proc-stat-nf_conntrack.2.txt";
    /// Native `BTreeMap<String, String>`: count, max, buckets and timeouts (`/proc/sys/net/netfilter`).
    pub const SYSCTLS: &str = "conntrack/sysctls.json";
}

/// iptables artifacts. The attribute `backend` of each record says `legacy` or `nft`.
pub mod iptables {
    /// Raw `iptables-save -c` of whatever `iptables-save` points to.
    pub const SAVE: &str = "iptables/iptables-save.txt";
    /// Raw `ip6tables-save -c` of whatever `ip6tables-save` points to.
    pub const SAVE6: &str = "iptables/ip6tables-save.txt";
    /// Raw `iptables-legacy-save -c`.
    pub const LEGACY_SAVE: &str = "iptables/iptables-legacy-save.txt";
    /// Raw `ip6tables-legacy-save -c`.
    pub const LEGACY_SAVE6: &str = "iptables/ip6tables-legacy-save.txt";
    /// Raw `iptables-nft-save -c`.
    pub const NFT_SAVE: &str = "iptables/iptables-nft-save.txt";
    /// Raw `ip6tables-nft-save -c`.
    pub const NFT_SAVE6: &str = "iptables/ip6tables-nft-save.txt";
    /// Raw `iptables -V`.
    pub const VERSION: &str = "iptables/iptables-V.txt";
    /// Raw `ipset list`.
    pub const IPSET: &str = "iptables/ipset-list.txt";
}

/// nftables artifacts.
pub mod nft {
    /// Raw `nft list ruleset`.
    pub const RULESET: &str = "nft/ruleset.txt";
}

/// IPVS artifacts.
pub mod ipvs {
    /// Raw `ipvsadm -Ln`.
    pub const LIST: &str = "ipvs/ipvsadm-Ln.txt";
    /// Raw `ipvsadm -Ln --stats`.
    pub const STATS: &str = "ipvs/ipvsadm-Ln-stats.txt";
    /// Raw `ipvsadm -Ln --rate`.
    pub const RATE: &str = "ipvs/ipvsadm-Ln-rate.txt";
    /// Raw `ipvsadm -Lnc` (capped).
    pub const CONNECTIONS: &str = "ipvs/ipvsadm-Lnc.txt";
    /// Raw `/proc/net/ip_vs`.
    pub const PROC: &str = "ipvs/proc-ip_vs.txt";
    /// Raw `/proc/net/ip_vs_conn` (capped).
    pub const PROC_CONN: &str = "ipvs/proc-ip_vs_conn.txt";
}

/// Kubernetes API artifacts (native JSON Lines, one object per line; see [`crate::k8s`]).
pub mod k8s {
    /// [`crate::k8s::PodRecord`] per line.
    pub const PODS: &str = "k8s/pods.jsonl";
    /// [`crate::k8s::ServiceRecord`] per line.
    pub const SERVICES: &str = "k8s/services.jsonl";
    /// [`crate::k8s::EndpointSliceRecord`] per line.
    pub const ENDPOINT_SLICES: &str = "k8s/endpointslices.jsonl";
    /// [`crate::k8s::NodeRecord`] per line.
    pub const NODES: &str = "k8s/nodes.jsonl";
    /// [`crate::k8s::EventRecord`] per line.
    pub const EVENTS: &str = "k8s/events.jsonl";
    /// [`crate::k8s::ConfigMapRecord`] of `kube-system/kube-proxy` (single JSON object).
    pub const KUBE_PROXY_CONFIG: &str = "k8s/kube-proxy-configmap.json";
    /// Raw `/version` of the API server.
    pub const VERSION: &str = "k8s/version.json";
    /// [`crate::k8s::RuntimePod`] per line, from crictl or docker.
    pub const RUNTIME_PODS: &str = "k8s/runtime-pods.jsonl";
    /// [`crate::k8s::PodRecord`] per line: only this node's pods (`--api-scope node`,
    /// listed with `fieldSelector=spec.nodeName=<node>`).
    pub const NODE_PODS: &str = "k8s/node-pods.jsonl";
    /// [`crate::k8s::NodeRecord`] of this node only (`--api-scope node`, one `GET`).
    pub const NODE: &str = "k8s/node.json";
    /// [`crate::k8s::ApiClientReport`]: scope, read mode, politeness limits and the
    /// requests and bytes the collection cost the API server.
    pub const API_CLIENT: &str = "k8s/api-client.json";
}

/// Correlations the collector computed (recomputable by the analyzer).
pub mod correlation {
    /// Native `Vec<`[`crate::native::VethPair`]`>`.
    pub const VETH_PAIRS: &str = "correlation/veth-pairs.json";
    /// Native [`crate::native::PodCorrelation`].
    pub const PODS: &str = "correlation/pods.json";
}

/// DNS probe artifacts.
pub mod dns {
    /// Native [`crate::native::DnsProbeReport`].
    pub const PROBES: &str = "dns/probes.json";
}

/// CNI and kubelet configuration files, copied verbatim under these prefixes.
pub mod config {
    /// `/etc/cni/net.d/<file>` is stored as `cni/net.d/<file>`.
    pub const CNI_NET_D: &str = "cni/net.d";
    /// `/var/lib/cni/networks/<net>/<file>` is stored as `cni/networks/<net>/<file>`.
    pub const CNI_NETWORKS: &str = "cni/networks";
    /// `/run/flannel/subnet.env`.
    pub const FLANNEL_SUBNET: &str = "cni/flannel-subnet.env";
    /// `/var/lib/kubelet/config.yaml`.
    pub const KUBELET_CONFIG: &str = "kubelet/config.yaml";
}

/// `content` identifiers: which parser reads an artifact.
pub mod content {
    /// `iptables-save` / `ip6tables-save` output (any backend).
    pub const IPTABLES_SAVE: &str = "iptables-save";
    /// `nft list ruleset` output.
    pub const NFT_RULESET: &str = "nft-ruleset";
    /// `ipset list` output.
    pub const IPSET_LIST: &str = "ipset-list";
    /// `ipvsadm -Ln` (also `--stats`, `--rate`; the header line tells which).
    pub const IPVSADM_LIST: &str = "ipvsadm-list";
    /// `ipvsadm -Lnc`.
    pub const IPVSADM_CONNECTIONS: &str = "ipvsadm-connections";
    /// `/proc/net/ip_vs`.
    pub const PROC_IP_VS: &str = "proc-ip_vs";
    /// `/proc/net/ip_vs_conn`.
    pub const PROC_IP_VS_CONN: &str = "proc-ip_vs_conn";
    /// `conntrack -L` (plain or `-o extended`).
    pub const CONNTRACK_LIST: &str = "conntrack-list";
    /// `/proc/net/nf_conntrack`.
    pub const PROC_NF_CONNTRACK: &str = "proc-nf_conntrack";
    /// `conntrack -S`.
    pub const CONNTRACK_STATS: &str = "conntrack-stats";
    /// `conntrack -C`.
    pub const CONNTRACK_COUNT: &str = "conntrack-count";
    /// `/proc/net/stat/nf_conntrack`.
    pub const PROC_STAT_NF_CONNTRACK: &str = "proc-stat-nf_conntrack";
    /// `ip addr` text output.
    pub const IP_ADDR: &str = "ip-addr";
    /// `ip route` text output.
    pub const IP_ROUTE: &str = "ip-route";
    /// `ip rule` text output.
    pub const IP_RULE: &str = "ip-rule";
    /// `ip neigh` text output.
    pub const IP_NEIGH: &str = "ip-neigh";
    /// `/etc/resolv.conf`.
    pub const RESOLV_CONF: &str = "resolv-conf";
    /// Kernel log lines.
    pub const KERNEL_LOG: &str = "kernel-log";
    /// A tool's `--version` output.
    pub const VERSION_TEXT: &str = "version-text";
    /// Any other verbatim file.
    pub const FILE: &str = "file";
    /// Native JSON typed in this crate; the path says which type.
    pub const NATIVE_JSON: &str = "native-json";
    /// Native JSON Lines typed in this crate; the path says which type.
    pub const NATIVE_JSONL: &str = "native-jsonl";
}

/// The default file name: `netsnap-<node>-<UTC yyyymmddThhmmssZ>.tar.zst`.
///
/// The node name is reduced to `[A-Za-z0-9._-]` so it is a safe file name everywhere.
pub fn default_bundle_name(node: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    let safe: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = if safe.is_empty() { "node".into() } else { safe };
    format!("netsnap-{safe}-{}.tar.zst", at.format("%Y%m%dT%H%M%SZ"))
}

/// Checks that `path` is a relative, normalized bundle path (`a/b/c`): no empty,
/// `.` or `..` component, no leading `/`, no backslash, no NUL, at most 255 bytes.
pub fn validate_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.len() > 255 {
        return Err("path longer than 255 bytes");
    }
    if path.starts_with('/') {
        return Err("absolute path");
    }
    if path.contains('\\') || path.contains('\0') {
        return Err("backslash or NUL in path");
    }
    for comp in path.split('/') {
        match comp {
            "" => return Err("empty path component"),
            "." => return Err("'.' component"),
            ".." => return Err("'..' component"),
            _ => {}
        }
    }
    if path.len() >= 2 && path.as_bytes()[1] == b':' {
        return Err("drive-letter path");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_name_is_sanitized_and_utc() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-28T03:04:05+01:00")
            .expect("valid time")
            .with_timezone(&chrono::Utc);
        assert_eq!(
            default_bundle_name("node/one:a", at),
            "netsnap-node_one_a-20261128T020405Z.tar.zst"
        );
        assert_eq!(
            default_bundle_name("", at),
            "netsnap-node-20261128T020405Z.tar.zst"
        );
    }

    #[test]
    fn path_validation_rejects_escapes() {
        assert!(validate_path("netns/host/netlink.json").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a\\b",
            "C:x",
        ] {
            assert!(validate_path(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
