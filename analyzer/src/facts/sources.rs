//! Data sources a rule can `require`, each backed by one or more bundle artifacts.
//!
//! A source is available when at least one of its artifacts has content. When
//! none has, the reason is taken from the manifest (the first record's error or
//! status), so a rule that needs it is reported *not evaluated, because …*.

use std::collections::BTreeMap;

use netsnap_bundle::{Manifest, layout};

use super::model::SourceStatus;

/// A data source: id, description, and the artifact paths (or path prefixes ending in `/`) backing it.
#[derive(Debug, Clone, Copy)]
pub struct DataSource {
    /// Id used in rule `requires`.
    pub id: &'static str,
    /// What it is.
    pub description: &'static str,
    /// Alternative artifacts; a trailing `*` matches by prefix.
    pub paths: &'static [&'static str],
}

/// Every data source.
pub const DATA_SOURCES: &[DataSource] = &[
    DataSource {
        id: "k8s-pods",
        description: "Pods from the Kubernetes API",
        paths: &[layout::k8s::PODS],
    },
    DataSource {
        id: "k8s-services",
        description: "Services and EndpointSlices from the Kubernetes API",
        paths: &[layout::k8s::SERVICES],
    },
    DataSource {
        id: "k8s-endpointslices",
        description: "EndpointSlices from the Kubernetes API",
        paths: &[layout::k8s::ENDPOINT_SLICES],
    },
    DataSource {
        id: "k8s-nodes",
        description: "Nodes from the Kubernetes API",
        paths: &[layout::k8s::NODES],
    },
    DataSource {
        id: "netns",
        description: "Network namespace index",
        paths: &[layout::NETNS_INDEX],
    },
    DataSource {
        id: "host-netlink",
        description: "Host namespace links, addresses and routes",
        paths: &["netns/host/netlink.json"],
    },
    DataSource {
        id: "pod-correlation",
        description: "Pod to namespace/veth correlation",
        paths: &[layout::correlation::PODS],
    },
    DataSource {
        id: "sysctls",
        description: "Node net sysctls",
        paths: &[layout::node::SYSCTLS],
    },
    DataSource {
        id: "kernel-log",
        description: "Kernel log",
        paths: &[layout::node::KERNEL_LOG],
    },
    DataSource {
        id: "conntrack-table",
        description: "conntrack table listing",
        paths: &[layout::conntrack::TABLE, layout::conntrack::PROC_TABLE],
    },
    DataSource {
        id: "conntrack-stats",
        description: "conntrack statistics",
        paths: &[layout::conntrack::STATS, layout::conntrack::PROC_STAT],
    },
    DataSource {
        id: "conntrack-count",
        description: "conntrack count and max",
        paths: &[layout::conntrack::SYSCTLS, layout::conntrack::COUNT],
    },
    DataSource {
        id: "iptables",
        description: "An iptables-save of any backend",
        paths: &[
            layout::iptables::SAVE,
            layout::iptables::LEGACY_SAVE,
            layout::iptables::NFT_SAVE,
        ],
    },
    DataSource {
        id: "iptables-both-backends",
        description: "iptables-legacy-save and iptables-nft-save",
        paths: &[layout::iptables::LEGACY_SAVE],
    },
    DataSource {
        id: "nft",
        description: "nft list ruleset",
        paths: &[layout::nft::RULESET],
    },
    DataSource {
        id: "netfilter",
        description: "An iptables-save of any backend or nft list ruleset",
        paths: &[
            layout::iptables::SAVE,
            layout::iptables::LEGACY_SAVE,
            layout::iptables::NFT_SAVE,
            layout::nft::RULESET,
        ],
    },
    DataSource {
        id: "ipvs",
        description: "ipvsadm -Ln",
        paths: &[layout::ipvs::LIST, layout::ipvs::PROC],
    },
    DataSource {
        id: "dns-probes",
        description: "DNS probes from pod namespaces",
        paths: &[layout::dns::PROBES],
    },
    DataSource {
        id: "resolv-conf",
        description: "resolv.conf of pod namespaces",
        paths: &["netns/*"],
    },
    DataSource {
        id: "bridge-ports",
        description: "Bridge ports and hairpin modes",
        paths: &[layout::node::BRIDGE_PORTS],
    },
];

/// Looks a source up by id.
pub fn find(id: &str) -> Option<&'static DataSource> {
    DATA_SOURCES.iter().find(|s| s.id == id)
}

fn matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => {
            path.starts_with(prefix)
                && (pattern != "netns/*" || path.ends_with(layout::netns::RESOLV_CONF))
        }
        None => pattern == path,
    }
}

/// Computes the availability of every source from a manifest.
pub fn availability(manifest: &Manifest) -> BTreeMap<String, SourceStatus> {
    let mut out = BTreeMap::new();
    for source in DATA_SOURCES {
        let records: Vec<_> = manifest
            .artifacts
            .iter()
            .filter(|a| source.paths.iter().any(|p| matches(p, &a.path)))
            .collect();
        // A record skipped as the same output as another (`same_as`) has that one's data.
        let available = records.iter().any(|r| {
            manifest
                .resolve(&r.path)
                .is_some_and(|t| t.status.has_content())
        });
        let reason = if available {
            None
        } else if let Some(r) = records.first() {
            let status = format!("{:?}", r.status).to_lowercase();
            Some(match &r.error {
                Some(e) => format!("{} {status}: {e}", r.path),
                None => format!("{} {status}", r.path),
            })
        } else {
            Some(format!("not in the bundle ({})", source.paths.join(" or ")))
        };
        let absent_on_node = !available
            && !records.is_empty()
            && records
                .iter()
                .all(|r| r.status == netsnap_bundle::ArtifactStatus::Unavailable);
        out.insert(
            source.id.to_string(),
            SourceStatus {
                available,
                reason,
                absent_on_node,
            },
        );
    }
    out
}
