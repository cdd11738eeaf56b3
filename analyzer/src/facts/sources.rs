//! Data sources a rule can `require`, each backed by one or more bundle artifacts,
//! and which sources each fact comes from ([`FACT_NEEDS`]).
//!
//! A source's artifacts fall into *groups*: artifacts of one group hold the same data
//! (`conntrack -L` or `/proc/net/nf_conntrack`; `iptables-save` or `iptables-nft-save`
//! when `iptables` is the nft variant), different groups hold different data (the legacy
//! and the nft iptables tables, the resolv.conf of each namespace). A source is usable
//! only when every group has one complete artifact (or the thing does not exist on the
//! node): a rule concluding "absent" from a dump that timed out half-way, or from the
//! legacy tables while the nft ones are missing, would be confidently wrong. Otherwise
//! the reason is taken from the manifest, so a rule that needs it is reported
//! *not evaluated, because …*. A capped list (the conntrack table) is usable as a
//! sample: rules run on it and say so.

use std::collections::BTreeMap;

use netsnap_bundle::{ArtifactRecord, ArtifactStatus, Manifest, TruncationReason, layout};

use super::model::SourceStatus;

/// A data source: id, description, and the artifact paths (or path prefixes ending in `/`) backing it.
#[derive(Debug, Clone, Copy)]
pub struct DataSource {
    /// Id used in rule `requires`.
    pub id: &'static str,
    /// What it is.
    pub description: &'static str,
    /// Artifacts backing it; a `*` stands for one path segment (`netns/*` for every
    /// namespace's `resolv.conf`).
    pub paths: &'static [&'static str],
    /// How its artifacts group into distinct pieces of data.
    pub grouping: Grouping,
    /// A partial artifact (a list cut at an entry or size cap) is usable as a sample.
    pub sample_ok: bool,
}

/// How the artifacts of a source group into distinct pieces of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// Every path holds the same data: one complete artifact is enough.
    Alternatives,
    /// Every matching artifact holds its own data (one per namespace): each must be complete.
    Each,
    /// Netfilter dumps: one group per iptables backend and family (`iptables-save` joins
    /// the group of the backend its `backend` attribute names) and one for `nft list ruleset`.
    Netfilter,
}

/// Every data source.
pub const DATA_SOURCES: &[DataSource] = &[
    DataSource {
        id: "k8s-pods",
        description: "Pods from the Kubernetes API",
        paths: &[layout::k8s::PODS],
        grouping: Grouping::Alternatives,
        sample_ok: false,
    },
    DataSource {
        id: "k8s-services",
        description: "Services from the Kubernetes API",
        paths: &[layout::k8s::SERVICES],
        grouping: Grouping::Alternatives,
        sample_ok: false,
    },
    DataSource {
        id: "k8s-endpointslices",
        description: "EndpointSlices from the Kubernetes API",
        paths: &[layout::k8s::ENDPOINT_SLICES],
        grouping: Grouping::Alternatives,
        sample_ok: false,
    },
    DataSource {
        id: "k8s-nodes",
        description: "Nodes from the Kubernetes API (pod CIDRs, addresses)",
        paths: &[layout::k8s::NODES],
        grouping: Grouping::Alternatives,
        sample_ok: false,
    },
    DataSource {
        id: "netns",
        description: "Network namespace index",
        paths: &[layout::NETNS_INDEX],
        grouping: Grouping::Alternatives,
        sample_ok: false,
    },
    DataSource {
        id: "host-netlink",
        description: "Host namespace links, addresses and routes",
        paths: &["netns/host/netlink.json"],
        grouping: Grouping::Alternatives,
        sample_ok: false,
    },
    DataSource {
        id: "netns-netlink",
        description: "Links and addresses of every network namespace (each must be complete)",
        paths: &["netns/*/netlink.json"],
        grouping: Grouping::Each,
        sample_ok: false,
    },
    DataSource {
        id: "pod-correlation",
        description: "Pod to namespace/veth correlation",
        paths: &[layout::correlation::PODS],
        grouping: Grouping::Alternatives,
        sample_ok: false,
    },
    DataSource {
        id: "sysctls",
        description: "Node net sysctls",
        paths: &[layout::node::SYSCTLS],
        grouping: Grouping::Alternatives,
        sample_ok: false,
    },
    DataSource {
        id: "kernel-log",
        description: "Kernel log",
        paths: &[layout::node::KERNEL_LOG],
        grouping: Grouping::Alternatives,
        sample_ok: false,
    },
    DataSource {
        id: "conntrack-table",
        description: "conntrack table listing (a capped listing is a sample)",
        paths: &[layout::conntrack::TABLE, layout::conntrack::PROC_TABLE],
        grouping: Grouping::Alternatives,
        sample_ok: true,
    },
    DataSource {
        id: "conntrack-stats",
        description: "conntrack statistics",
        paths: &[layout::conntrack::STATS, layout::conntrack::PROC_STAT],
        grouping: Grouping::Alternatives,
        sample_ok: false,
    },
    DataSource {
        id: "conntrack-count",
        description: "conntrack count and max",
        paths: &[layout::conntrack::SYSCTLS, layout::conntrack::COUNT],
        grouping: Grouping::Alternatives,
        sample_ok: false,
    },
    DataSource {
        id: "iptables",
        description: "Every iptables backend's IPv4 save (legacy and nft; `iptables-save` stands for the backend it points to)",
        paths: &[
            layout::iptables::SAVE,
            layout::iptables::LEGACY_SAVE,
            layout::iptables::NFT_SAVE,
        ],
        grouping: Grouping::Netfilter,
        sample_ok: false,
    },
    DataSource {
        id: "ip6tables",
        description: "Every iptables backend's IPv6 save",
        paths: &[
            layout::iptables::SAVE6,
            layout::iptables::LEGACY_SAVE6,
            layout::iptables::NFT_SAVE6,
        ],
        grouping: Grouping::Netfilter,
        sample_ok: false,
    },
    DataSource {
        id: "iptables-both-backends",
        description: "iptables-legacy-save and iptables-nft-save (IPv4)",
        paths: &[
            layout::iptables::SAVE,
            layout::iptables::LEGACY_SAVE,
            layout::iptables::NFT_SAVE,
        ],
        grouping: Grouping::Netfilter,
        sample_ok: false,
    },
    DataSource {
        id: "nft",
        description: "nft list ruleset",
        paths: &[layout::nft::RULESET],
        grouping: Grouping::Alternatives,
        sample_ok: false,
    },
    DataSource {
        id: "netfilter",
        description: "Every iptables backend's IPv4 save and nft list ruleset (what an IPv4 packet meets)",
        paths: &[
            layout::iptables::SAVE,
            layout::iptables::LEGACY_SAVE,
            layout::iptables::NFT_SAVE,
            layout::nft::RULESET,
        ],
        grouping: Grouping::Netfilter,
        sample_ok: false,
    },
    DataSource {
        id: "ipvs",
        description: "ipvsadm -Ln",
        paths: &[layout::ipvs::LIST, layout::ipvs::PROC],
        grouping: Grouping::Alternatives,
        sample_ok: false,
    },
    DataSource {
        id: "dns-probes",
        description: "DNS probes from pod namespaces",
        paths: &[layout::dns::PROBES],
        grouping: Grouping::Alternatives,
        sample_ok: false,
    },
    DataSource {
        id: "resolv-conf",
        description: "resolv.conf of every namespace (each must be complete)",
        paths: &["netns/*"],
        grouping: Grouping::Each,
        sample_ok: false,
    },
    DataSource {
        id: "bridge-ports",
        description: "Bridge ports and hairpin modes",
        paths: &[layout::node::BRIDGE_PORTS],
        grouping: Grouping::Alternatives,
        sample_ok: false,
    },
];

/// Looks a source up by id.
pub fn find(id: &str) -> Option<&'static DataSource> {
    DATA_SOURCES.iter().find(|s| s.id == id)
}

fn matches(pattern: &str, path: &str) -> bool {
    if pattern == "netns/*" {
        return path.starts_with("netns/") && path.ends_with(layout::netns::RESOLV_CONF);
    }
    match pattern.split_once('*') {
        // `netns/*/netlink.json`: one path segment in place of the `*`.
        Some((prefix, suffix)) => path
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .is_some_and(|middle| !middle.is_empty() && !middle.contains('/')),
        None => pattern == path,
    }
}

/// The group of `record` in `source`: records of one group hold the same data.
fn group_key(source: &DataSource, record: &ArtifactRecord) -> String {
    match source.grouping {
        Grouping::Alternatives => String::new(),
        Grouping::Each => record.path.clone(),
        Grouping::Netfilter => {
            let path = record.path.as_str();
            if path == layout::nft::RULESET {
                return "nft".into();
            }
            let family = if path.contains("ip6tables") { "6" } else { "4" };
            let backend = if path.contains("-legacy-") {
                "legacy"
            } else if path.contains("-nft-") {
                "nft"
            } else {
                record
                    .attributes
                    .get("backend")
                    .map_or("default", String::as_str)
            };
            format!("iptables-{backend}-{family}")
        }
    }
}

/// The record a skipped duplicate stands for: a producer that runs each distinct dump
/// once records the others as skipped, naming the artifact holding the same bytes in the
/// attribute `same_as` or in its reason (`same as iptables-save`).
fn same_as<'m>(manifest: &'m Manifest, record: &'m ArtifactRecord) -> &'m ArtifactRecord {
    let mut current = record;
    // A few hops at most; a cycle ends where it started.
    for _ in 0..4 {
        if current.status != ArtifactStatus::Skipped {
            break;
        }
        let named = current.attributes.get("same_as").cloned().or_else(|| {
            let e = current.error.as_deref()?;
            let at = e.to_ascii_lowercase().find("same as ")?;
            let token = e[at + "same as ".len()..]
                .split_whitespace()
                .next()?
                .trim_matches(|c: char| "`'\"()[],;:.".contains(c))
                .to_string();
            Some(token)
        });
        let Some(name) = named.filter(|n| !n.is_empty()) else {
            break;
        };
        let target = manifest.artifacts.iter().find(|a| {
            a.path != current.path
                && (a.path == name
                    || a.path.rsplit('/').next() == Some(name.as_str())
                    || a.path
                        .rsplit('/')
                        .next()
                        .and_then(|f| f.rsplit_once('.'))
                        .is_some_and(|(stem, _)| stem == name))
        });
        match target {
            Some(t) if !std::ptr::eq(t, record) => current = t,
            _ => break,
        }
    }
    current
}

/// The cap that cut an artifact, in words (never the enum's name).
pub fn cap_name(reason: TruncationReason) -> &'static str {
    match reason {
        TruncationReason::ArtifactCap => "the per-artifact size cap",
        TruncationReason::TotalCap => "the bundle size cap",
        TruncationReason::EntryCap => "the entry cap",
    }
}

/// `path status: reason` of a record, as the manifest tells it.
fn describe(record: &ArtifactRecord) -> String {
    let status = format!("{:?}", record.status).to_lowercase();
    let why = record.error.clone().or_else(|| {
        record.truncated.as_ref().map(|t| {
            format!(
                "cut at {} ({} bytes kept)",
                cap_name(t.reason),
                t.kept_bytes
            )
        })
    });
    match why {
        Some(e) => format!("{} {status}: {e}", record.path),
        None => format!("{} {status}", record.path),
    }
}

/// What one group of a source holds.
enum GroupState {
    /// One artifact holds the data completely.
    Complete,
    /// The thing does not exist on the node.
    Absent,
    /// Only incomplete content: the reason.
    Partial(String),
    /// No content: the reason.
    Missing(String),
}

fn group_state(manifest: &Manifest, records: &[&ArtifactRecord]) -> GroupState {
    let effective: Vec<(&ArtifactRecord, &ArtifactRecord)> =
        records.iter().map(|r| (*r, same_as(manifest, r))).collect();
    if effective
        .iter()
        .any(|(_, e)| e.status == ArtifactStatus::Ok && e.truncated.is_none())
    {
        return GroupState::Complete;
    }
    if effective
        .iter()
        .all(|(_, e)| e.status == ArtifactStatus::Unavailable)
    {
        return GroupState::Absent;
    }
    if let Some((_, e)) = effective.iter().find(|(_, e)| e.status.has_content()) {
        return GroupState::Partial(describe(e));
    }
    // Prefer the failure over an alternative skipped because another was tried first.
    let (own, e) = effective
        .iter()
        .find(|(own, e)| e.status == ArtifactStatus::Failed && std::ptr::eq(*own, *e))
        .or_else(|| {
            effective
                .iter()
                .find(|(_, e)| e.status == ArtifactStatus::Failed)
        })
        .or_else(|| {
            effective
                .iter()
                .find(|(_, e)| e.status != ArtifactStatus::Unavailable)
        })
        .or(effective.first())
        .copied()
        .unwrap_or((records[0], records[0]));
    if std::ptr::eq(own, e) {
        GroupState::Missing(describe(e))
    } else {
        GroupState::Missing(format!(
            "{} ({} was skipped as the same data)",
            describe(e),
            own.path
        ))
    }
}

/// The availability of one source in a manifest.
pub fn status_of(source: &DataSource, manifest: &Manifest) -> SourceStatus {
    let mut groups: BTreeMap<String, Vec<&ArtifactRecord>> = BTreeMap::new();
    for r in &manifest.artifacts {
        if source.paths.iter().any(|p| matches(p, &r.path)) {
            groups.entry(group_key(source, r)).or_default().push(r);
        }
    }
    if groups.is_empty() {
        return SourceStatus {
            available: false,
            reason: Some(format!("not in the bundle ({})", source.paths.join(" or "))),
            absent_on_node: false,
            sample: None,
        };
    }
    let mut states: BTreeMap<&String, GroupState> = groups
        .iter()
        .map(|(key, records)| (key, group_state(manifest, records)))
        .collect();
    // An `iptables-save` whose backend is unknown (no `backend` attribute, as from an
    // import of hand-collected outputs) stands for the backend saves that were never
    // attempted (all skipped); never for one that failed, timed out or was cut.
    if source.grouping == Grouping::Netfilter {
        for family in ["4", "6"] {
            let default = format!("iptables-default-{family}");
            if !matches!(states.get(&default), Some(GroupState::Complete)) {
                continue;
            }
            for backend in ["legacy", "nft"] {
                let key = format!("iptables-{backend}-{family}");
                let never_tried = groups.get(&key).is_some_and(|records| {
                    records
                        .iter()
                        .all(|r| same_as(manifest, r).status == ArtifactStatus::Skipped)
                });
                if never_tried && let Some(state) = states.get_mut(&key) {
                    *state = GroupState::Complete;
                }
            }
        }
    }
    let states: Vec<GroupState> = states.into_values().collect();
    let missing = states.iter().find_map(|s| match s {
        GroupState::Missing(r) => Some(r.clone()),
        _ => None,
    });
    let partial = states.iter().find_map(|s| match s {
        GroupState::Partial(r) => Some(r.clone()),
        _ => None,
    });
    let all_absent = states.iter().all(|s| matches!(s, GroupState::Absent));
    match (missing, partial) {
        (Some(reason), _) => SourceStatus {
            available: false,
            reason: Some(reason),
            absent_on_node: false,
            sample: None,
        },
        (None, Some(reason)) if !source.sample_ok => SourceStatus {
            available: false,
            reason: Some(reason),
            absent_on_node: false,
            sample: None,
        },
        (None, Some(reason)) => SourceStatus {
            available: true,
            reason: None,
            absent_on_node: false,
            sample: Some(reason),
        },
        (None, None) if all_absent => SourceStatus {
            available: false,
            reason: groups
                .values()
                .next()
                .and_then(|r| r.first())
                .map(|r| describe(r)),
            absent_on_node: true,
            sample: None,
        },
        (None, None) => SourceStatus {
            available: true,
            reason: None,
            absent_on_node: false,
            sample: None,
        },
    }
}

/// Computes the availability of every source from a manifest.
pub fn availability(manifest: &Manifest) -> BTreeMap<String, SourceStatus> {
    DATA_SOURCES
        .iter()
        .map(|s| (s.id.to_string(), status_of(s, manifest)))
        .collect()
}

/// True when requiring `declared` also requires everything `needed` stands for: the
/// same source, or one whose artifacts include all of `needed`'s (`netfilter` covers
/// `iptables` and `nft`).
pub fn covers(declared: &str, needed: &str) -> bool {
    if declared == needed {
        return true;
    }
    let (Some(d), Some(n)) = (find(declared), find(needed)) else {
        return false;
    };
    let same_grouping =
        d.grouping == n.grouping || (n.grouping == Grouping::Alternatives && n.paths.len() == 1);
    same_grouping && n.paths.iter().all(|p| d.paths.contains(p))
}

/// Which data sources each fact comes from, by CEL path (`[]` stands for a list element):
/// a rule reading a fact must `require` these sources (or one covering them), so that
/// a missing artifact makes it *not evaluated* instead of judging empty data. The
/// longest matching prefix decides; paths not listed need nothing (identity, the
/// collection itself) or are optional hints that can only make a rule quieter.
/// (The pod-to-namespace correlation is not listed: without it the namespaces are
/// matched by pod IP from the netlink snapshots.)
pub const FACT_NEEDS: &[(&str, &[&str])] = &[
    // The node: identity from the manifest needs nothing.
    ("node.proxy_mode", &["iptables", "nft", "ipvs"]),
    ("node.proxy_dataplanes", &["iptables", "nft", "ipvs"]),
    // `proxy_mode_configured` (the kube-proxy ConfigMap) is an optional hint: when it is
    // missing the rules using it only apply to fewer nodes.
    ("node.proxy_replacement", &["host-netlink"]),
    ("node.kube_proxy_pod", &["k8s-pods"]),
    ("node.cni", &["host-netlink"]),
    ("node.bridge_cni", &["host-netlink"]),
    ("node.pod_cidrs", &["k8s-nodes"]),
    ("node.cluster_pod_cidrs", &["k8s-nodes"]),
    ("node.cluster_pod_cidrs_aggregated", &["k8s-nodes"]),
    ("node.addresses", &["k8s-nodes"]),
    ("node.sysctls", &["sysctls"]),
    ("node.sysctls_source", &["sysctls"]),
    ("node.local_port_range_width", &["sysctls"]),
    ("node.service_ranges", &["k8s-services"]),
    (
        "node.cidr_overlaps",
        &["host-netlink", "k8s-nodes", "k8s-services"],
    ),
    ("node.peer_pod_routes", &["host-netlink", "k8s-nodes"]),
    ("node.cloud_pod_routing", &["host-netlink", "k8s-nodes"]),
    ("node.uplink", &["host-netlink"]),
    ("node.overlays", &["host-netlink"]),
    ("node.max_pod_mtu", &["host-netlink"]),
    ("node.hairpin_off_ports", &["bridge-ports"]),
    ("node.neighbour_entries", &["netns-netlink"]),
    ("pods", &["k8s-pods"]),
    ("pods[].netns", &["k8s-pods", "netns-netlink"]),
    ("pods[].ip_netns", &["k8s-pods", "netns-netlink"]),
    ("pods[].mtu", &["k8s-pods", "netns-netlink"]),
    ("pods[].host_veth", &["k8s-pods", "netns-netlink"]),
    ("pods[].host_veth_mtu", &["k8s-pods", "netns-netlink"]),
    ("pods[].hairpin", &["k8s-pods", "bridge-ports"]),
    ("pods[].is_endpoint", &["k8s-pods", "k8s-endpointslices"]),
    (
        "pods[].is_dns_endpoint",
        &["k8s-pods", "k8s-endpointslices"],
    ),
    ("pods[].resolv_conf", &["k8s-pods", "resolv-conf"]),
    ("services", &["k8s-services"]),
    (
        "services[].endpoints",
        &["k8s-services", "k8s-endpointslices"],
    ),
    (
        "services[].endpoints_age_seconds",
        &["k8s-services", "k8s-endpointslices"],
    ),
    (
        "services[].ready_endpoint_count",
        &["k8s-services", "k8s-endpointslices"],
    ),
    (
        "services[].local_ready_endpoint_count",
        &["k8s-services", "k8s-endpointslices"],
    ),
    (
        "services[].ports[].ready_endpoints",
        &["k8s-services", "k8s-endpointslices"],
    ),
    (
        "services[].ports[].serving_endpoint_ips",
        &["k8s-services", "k8s-endpointslices"],
    ),
    ("services[].ports[].iptables", &["k8s-services", "iptables"]),
    ("services[].ports[].ipvs", &["k8s-services", "ipvs"]),
    ("services[].ports[].nft", &["k8s-services", "nft"]),
    ("netns", &["netns"]),
    ("netns[].addresses", &["netns", "netns-netlink"]),
    (
        "netns[].unknown_ips",
        &["netns", "netns-netlink", "k8s-pods", "k8s-nodes"],
    ),
    ("links", &["netns-netlink"]),
    ("links[].pod", &["netns-netlink", "k8s-pods"]),
    ("links[].orphan", &["netns-netlink", "netns", "k8s-pods"]),
    ("links[].hairpin", &["netns-netlink", "bridge-ports"]),
    ("ips", &["k8s-pods", "netns-netlink"]),
    ("conntrack.count", &["conntrack-count"]),
    ("conntrack.max", &["conntrack-count"]),
    ("conntrack.usage_ratio", &["conntrack-count"]),
    ("conntrack.count_source", &["conntrack-count"]),
    ("conntrack.max_source", &["conntrack-count"]),
    ("conntrack.stats", &["conntrack-stats"]),
    ("conntrack.stats_sources", &["conntrack-stats"]),
    ("conntrack.stats_delta", &["conntrack-stats"]),
    ("conntrack.entries", &["conntrack-table"]),
    ("conntrack.by_protocol", &["conntrack-table"]),
    ("conntrack.by_state", &["conntrack-table"]),
    ("conntrack.unreplied", &["conntrack-table"]),
    ("conntrack.unreplied_expecting_reply", &["conntrack-table"]),
    ("conntrack.top_destinations", &["conntrack-table"]),
    ("conntrack.unreplied_udp_ports", &["conntrack-table"]),
    (
        "conntrack.stale_udp",
        &["conntrack-table", "k8s-services", "k8s-endpointslices"],
    ),
    (
        "conntrack.stale_udp_count",
        &["conntrack-table", "k8s-services", "k8s-endpointslices"],
    ),
    (
        "conntrack.not_dnated",
        &["conntrack-table", "k8s-services", "k8s-endpointslices"],
    ),
    (
        "conntrack.not_dnated_count",
        &["conntrack-table", "k8s-services", "k8s-endpointslices"],
    ),
    (
        "conntrack.dns_via_vip",
        &["conntrack-table", "k8s-services"],
    ),
    ("conntrack.unreplied_backends", &["conntrack-table"]),
    (
        "conntrack.snat_destinations",
        &["conntrack-table", "k8s-nodes"],
    ),
    ("iptables", &["iptables"]),
    ("nft", &["nft"]),
    ("snat", &["netfilter"]),
    ("ipvs", &["ipvs"]),
    ("ipvs.kube_ipvs0", &["host-netlink"]),
    ("ipvs.kube_ipvs0_addresses", &["host-netlink"]),
    ("dns.service_ips", &["k8s-services"]),
    ("dns.endpoint_ips", &["k8s-services", "k8s-endpointslices"]),
    ("dns.node_local_ip", &["host-netlink"]),
    ("dns.vip", &["dns-probes"]),
    ("dns.endpoints", &["dns-probes"]),
    ("dns.probes", &["dns-probes"]),
    ("kernel_log", &["kernel-log"]),
];

/// The sources a fact path (`services[].ports[].iptables.present`) comes from: those of
/// the longest [`FACT_NEEDS`] prefix of it, none when no prefix is listed.
pub fn needs_of(path: &str) -> &'static [&'static str] {
    FACT_NEEDS
        .iter()
        .filter(|(prefix, _)| {
            path.strip_prefix(prefix).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
            })
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map_or(&[], |(_, needs)| needs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netsnap_bundle::{ArtifactKind, ArtifactSource, Truncation};

    fn record(path: &str, status: ArtifactStatus, backend: Option<&str>) -> ArtifactRecord {
        ArtifactRecord {
            path: path.into(),
            kind: ArtifactKind::Raw,
            content: "x".into(),
            source: ArtifactSource::Command,
            command: None,
            netns: None,
            status,
            exit_status: None,
            duration_ms: 0,
            size: 0,
            sha256: None,
            error: (!status.has_content() || status == ArtifactStatus::Partial)
                .then(|| format!("{path} went wrong")),
            truncated: None,
            stderr: None,
            attributes: backend
                .map(|b| [("backend".to_string(), b.to_string())].into())
                .unwrap_or_default(),
        }
    }

    fn manifest(records: Vec<ArtifactRecord>) -> Manifest {
        let json = serde_json::json!({
            "format_version": "1.1",
            "tool": {"name": "t", "version": "0"},
            "node": {"hostname": "h", "kernel_release": "k"},
            "collection": {"started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z", "outcome": "complete"},
            "artifacts": [],
        });
        let mut m: Manifest = serde_json::from_value(json).expect("manifest");
        m.artifacts = records;
        m
    }

    fn status(id: &str, records: Vec<ArtifactRecord>) -> SourceStatus {
        status_of(find(id).expect("source"), &manifest(records))
    }

    use ArtifactStatus::{Failed, Ok, Partial, Skipped, Unavailable};

    #[test]
    fn each_iptables_backend_must_be_whole() {
        let legacy = || record(layout::iptables::LEGACY_SAVE, Ok, Some("legacy"));
        // The nft tables only in a save that timed out half-way: not usable, although the
        // legacy save (empty tables) is complete.
        let s = status(
            "iptables",
            vec![
                legacy(),
                record(layout::iptables::NFT_SAVE, Partial, Some("nft")),
                record(layout::iptables::SAVE, Failed, Some("nft")),
            ],
        );
        assert!(!s.available && !s.absent_on_node, "{s:?}");
        assert!(
            s.reason
                .as_deref()
                .unwrap_or_default()
                .contains("iptables-nft-save.txt partial"),
            "{s:?}"
        );
        // `iptables-save` pointing at nft stands for `iptables-nft-save`.
        let s = status(
            "iptables",
            vec![
                legacy(),
                record(layout::iptables::NFT_SAVE, Failed, Some("nft")),
                record(layout::iptables::SAVE, Ok, Some("nft")),
            ],
        );
        assert!(s.available, "{s:?}");
        // No legacy tables on the node: the nft save alone is enough.
        let s = status(
            "iptables",
            vec![
                record(layout::iptables::LEGACY_SAVE, Unavailable, None),
                record(layout::iptables::SAVE, Ok, Some("nft")),
            ],
        );
        assert!(s.available, "{s:?}");
        // netfilter also needs the nft ruleset; iptables alone does not.
        let recs = vec![
            record(layout::iptables::SAVE, Ok, Some("nft")),
            record(layout::nft::RULESET, Failed, None),
        ];
        assert!(status("iptables", recs.clone()).available);
        assert!(!status("netfilter", recs).available);
    }

    #[test]
    fn a_save_of_unknown_backend_stands_only_for_saves_never_tried() {
        // An import of hand-collected outputs: `iptables-save` without a backend, the
        // explicit backend saves skipped as not in the directory.
        let unknown = || record(layout::iptables::SAVE, Ok, None);
        let skipped = record(layout::iptables::LEGACY_SAVE, Skipped, None);
        assert!(status("iptables", vec![unknown(), skipped]).available);
        // A backend save that timed out is not covered by a save of unknown backend.
        let failed = record(layout::iptables::NFT_SAVE, Failed, None);
        assert!(!status("iptables", vec![unknown(), failed]).available);
    }

    #[test]
    fn a_skipped_duplicate_follows_the_artifact_it_names() {
        let mut dup = record(layout::iptables::SAVE, Skipped, None);
        dup.error = Some("same as `iptables-nft-save`.".into());
        let whole = record(layout::iptables::NFT_SAVE, Ok, Some("nft"));
        assert!(status("iptables", vec![dup.clone(), whole]).available);
        let broken = record(layout::iptables::NFT_SAVE, Failed, Some("nft"));
        let s = status("iptables", vec![dup, broken]);
        assert!(!s.available, "{s:?}");
        let mut by_attribute = record(layout::iptables::SAVE, Skipped, None);
        by_attribute.error = Some("duplicate".into());
        by_attribute
            .attributes
            .insert("same_as".into(), layout::iptables::NFT_SAVE.into());
        let whole = record(layout::iptables::NFT_SAVE, Ok, Some("nft"));
        assert!(status("iptables", vec![by_attribute, whole]).available);
    }

    #[test]
    fn a_capped_conntrack_listing_is_a_sample_and_absence_is_data() {
        let mut table = record(layout::conntrack::TABLE, Partial, None);
        table.error = None;
        table.truncated = Some(Truncation {
            kept_bytes: 1000,
            reason: TruncationReason::EntryCap,
        });
        let s = status(
            "conntrack-table",
            vec![table, record(layout::conntrack::PROC_TABLE, Skipped, None)],
        );
        assert!(s.available, "{s:?}");
        assert!(
            s.sample
                .as_deref()
                .unwrap_or_default()
                .contains("entry cap"),
            "{s:?}"
        );
        let s = status(
            "ipvs",
            vec![
                record(layout::ipvs::LIST, Unavailable, None),
                record(layout::ipvs::PROC, Unavailable, None),
            ],
        );
        assert!(!s.available && s.absent_on_node, "{s:?}");
        // One namespace's snapshot failed: the per-namespace data is incomplete.
        let s = status(
            "netns-netlink",
            vec![
                record("netns/host/netlink.json", Ok, None),
                record("netns/ns-1/netlink.json", Failed, None),
                record("netns/ns-1/ip-addr.txt", Ok, None),
            ],
        );
        assert!(!s.available, "{s:?}");
        assert!(
            s.reason
                .as_deref()
                .unwrap_or_default()
                .starts_with("netns/ns-1/netlink.json failed")
        );
        assert_eq!(
            status("nft", vec![]).reason.as_deref(),
            Some("not in the bundle (nft/ruleset.txt)")
        );
    }

    #[test]
    fn covering_sources() {
        assert!(covers("netfilter", "iptables"));
        assert!(covers("netfilter", "nft"));
        assert!(covers("iptables", "iptables-both-backends"));
        assert!(!covers("iptables", "nft"));
        assert!(!covers("nft", "netfilter"));
        assert!(covers("k8s-pods", "k8s-pods"));
    }
}
