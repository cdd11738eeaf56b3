//! The cluster fact document: what the node bundles of one analysis say about each other.
//!
//! `netsnap-analyze analyze` over two or more node bundles keeps a small extract of each
//! node's facts ([`NodeInput`], taken before the node's large fact document is freed) and
//! joins them here, once: pod CIDRs overlapping between nodes, a pod IP configured on two
//! nodes, every node's route to every other node's pod CIDR against the addresses that node
//! really holds, kube-proxy mode and version per node, DNS through the VIP per node. Rules
//! with `scope: cluster` are evaluated over it (`docs/facts.md#cluster-fact-document`).
//!
//! Never a finding from missing data: each join runs only over the nodes where every data
//! source it needs is usable, and `collection.sources` says, per source, on how many nodes it
//! was: usable on fewer than two nodes, it is unavailable (a rule requiring it is *not
//! evaluated*); usable on some nodes only, it is a sample (the rule runs over those nodes and
//! its findings say which were left out).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use netsnap_bundle::native::{NetnsSnapshot, RouteRecord};
use netsnap_bundle::{Bundle, layout};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::{DnsProbeSummary, Facts, Source, SourceStatus};
use super::routes::{longest_match, main_routes};
use netsnap_bundle::net::{cidrs_overlap, parse_prefix};

/// Version of the cluster fact document layout.
pub const CLUSTER_FACTS_SCHEMA_VERSION: u32 = 1;

/// Data sources each join of the cluster document needs on a node to include it.
pub const POD_CIDR_SOURCES: &[&str] = &["k8s-nodes"];
/// Sources of [`ClusterFacts::pod_ip_conflicts`].
pub const POD_IP_SOURCES: &[&str] = &["netns-netlink"];
/// Sources of [`ClusterFacts::pod_routes`] (on both ends of a route).
pub const POD_ROUTE_SOURCES: &[&str] = &["host-netlink", "k8s-nodes"];
/// Sources of [`ClusterFacts::proxy_modes`].
pub const PROXY_MODE_SOURCES: &[&str] = &["iptables", "nft", "ipvs"];
/// Sources of [`ClusterFacts::proxy_versions`].
pub const PROXY_VERSION_SOURCES: &[&str] = &["k8s-nodes"];
/// Sources of [`ClusterFacts::dns_vip`].
pub const DNS_SOURCES: &[&str] = &["dns-probes"];

/// Which data sources each cluster fact comes from, by CEL path (as
/// [`super::sources::FACT_NEEDS`] for the node document).
pub const CLUSTER_FACT_NEEDS: &[(&str, &[&str])] = &[
    ("nodes[].pod_cidrs", POD_CIDR_SOURCES),
    ("nodes[].kube_proxy_version", PROXY_VERSION_SOURCES),
    ("nodes[].kubelet_version", PROXY_VERSION_SOURCES),
    ("nodes[].node_source", PROXY_VERSION_SOURCES),
    ("nodes[].addresses", &["host-netlink"]),
    ("nodes[].proxy_mode", PROXY_MODE_SOURCES),
    ("nodes[].proxy_backend", PROXY_MODE_SOURCES),
    ("nodes[].dns_vip", DNS_SOURCES),
    ("pod_cidr_overlaps", POD_CIDR_SOURCES),
    ("pod_ip_conflicts", POD_IP_SOURCES),
    ("pod_routes", POD_ROUTE_SOURCES),
    ("proxy_modes", PROXY_MODE_SOURCES),
    ("proxy_versions", PROXY_VERSION_SOURCES),
    ("dns_vip", DNS_SOURCES),
];

/// Top-level variables of the cluster document (the fields of [`ClusterFacts`]).
pub const CLUSTER_FACT_ROOTS: &[&str] = &[
    "schema_version",
    "nodes",
    "collection",
    "pod_cidr_overlaps",
    "pod_ip_conflicts",
    "pod_routes",
    "proxy_modes",
    "proxy_versions",
    "dns_vip",
];

/// The data sources a cluster fact path comes from (longest matching prefix).
pub fn cluster_needs_of(path: &str) -> &'static [&'static str] {
    CLUSTER_FACT_NEEDS
        .iter()
        .filter(|(prefix, _)| {
            path.strip_prefix(prefix).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
            })
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map_or(&[], |(_, needs)| needs)
}

/// The cluster fact document built from two or more node bundles.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterFacts {
    /// Layout version ([`CLUSTER_FACTS_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// One entry per node bundle, in the order given.
    pub nodes: Vec<ClusterNode>,
    /// Which data sources are usable on how many nodes.
    pub collection: ClusterCollection,
    /// Pod CIDRs (`spec.podCIDRs`, each node's own view) shared by two nodes.
    pub pod_cidr_overlaps: Vec<PodCidrOverlap>,
    /// IPs configured in pod namespaces of more than one node.
    pub pod_ip_conflicts: Vec<PodIpConflict>,
    /// Every node's host route to every other node's pod CIDRs, judged against the
    /// addresses the other node's own bundle shows.
    pub pod_routes: Vec<ClusterPodRoute>,
    /// Nodes grouped by detected kube-proxy mode (one group: no skew).
    pub proxy_modes: Vec<NodeGroup>,
    /// Nodes grouped by kube-proxy minor version (`status.nodeInfo.kubeProxyVersion`); nodes
    /// that report none are left out.
    pub proxy_versions: Vec<NodeGroup>,
    /// DNS through the cluster DNS VIP, node by node.
    pub dns_vip: DnsSplit,
}

/// One node of the cluster document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterNode {
    /// Node name.
    pub name: String,
    /// Bundle path as given.
    pub bundle: String,
    /// Capture time (RFC 3339).
    pub captured_at: String,
    /// Collection outcome (`complete`, `deadline_exceeded`, `interrupted`).
    pub outcome: String,
    /// `uname -r`.
    pub kernel: String,
    /// Detected kube-proxy mode (`iptables`, `ipvs`, `nftables`, `none`, `mixed`).
    pub proxy_mode: String,
    /// iptables backend kube-proxy writes to (`legacy`/`nft`), in iptables mode.
    pub proxy_backend: Option<String>,
    /// `status.nodeInfo.kubeProxyVersion` of the node's own Node object.
    pub kube_proxy_version: Option<String>,
    /// `status.nodeInfo.kubeletVersion`.
    pub kubelet_version: Option<String>,
    /// The node's own `spec.podCIDRs`.
    pub pod_cidrs: Vec<String>,
    /// Addresses on the node's host interfaces (without prefix length).
    pub addresses: Vec<String>,
    /// Probes through the cluster DNS VIP sent on this node.
    pub dns_vip: DnsProbeSummary,
    /// Data sources not usable on this node, with the reason.
    pub unavailable: BTreeMap<String, String>,
    /// Evidence: the node's own line in `k8s/nodes.jsonl`.
    pub node_source: Option<Source>,
}

/// Data sources across the nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterCollection {
    /// Per source id: available when usable on at least two nodes; `sample` names the nodes
    /// left out when some lack it.
    pub sources: BTreeMap<String, SourceStatus>,
}

/// Two nodes whose pod CIDRs overlap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PodCidrOverlap {
    /// First node.
    pub a_node: String,
    /// Its pod CIDR.
    pub a_cidr: String,
    /// Second node.
    pub b_node: String,
    /// Its pod CIDR.
    pub b_cidr: String,
    /// Evidence: both nodes' lines in their `k8s/nodes.jsonl`.
    pub sources: Vec<Source>,
}

/// An IP configured in pod namespaces on several nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PodIpConflict {
    /// The address.
    pub ip: String,
    /// Nodes holding it, sorted.
    pub nodes: Vec<String>,
    /// Holders as `node: pod` (or `node: netns <id>` when no pod owns the namespace).
    pub holders: Vec<String>,
    /// Evidence: each holder's namespace snapshot.
    pub sources: Vec<Source>,
}

/// How one node routes another node's pod CIDR.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterPodRoute {
    /// The node whose routing table is read.
    pub from: String,
    /// The node whose pod CIDR is looked up.
    pub to: String,
    /// The pod CIDR (from `to`'s own Node object).
    pub pod_cidr: String,
    /// Destination of the longest-prefix match in `from`'s main table, if any.
    pub route_dst: Option<String>,
    /// Its device.
    pub dev: Option<String>,
    /// Its gateway.
    pub gateway: Option<String>,
    /// The analyzed node holding the gateway address, if one does.
    pub gateway_node: Option<String>,
    /// `target` (the gateway is an address of `to`), `other-node` (an address of another
    /// analyzed node), `foreign` (an address no analyzed node holds), `local` (an address of
    /// `from` itself: a CNI device such as `cilium_host`), and, not judged here:
    /// `link-local` (an IPv6 link-local next hop no analyzed node holds), `no-gateway` (a
    /// device route), `aggregate` (the route covers more than `to`'s
    /// CIDR), `default`, `unreachable` (blackhole and the like), `none` (no route: see the
    /// node rule `pod-cidr-route-missing`).
    pub verdict: String,
    /// Evidence: `from`'s host netlink snapshot and `to`'s Node line.
    pub sources: Vec<Source>,
}

/// Nodes sharing a value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NodeGroup {
    /// The value (`iptables`, `v1.34`, …).
    pub value: String,
    /// Full values seen in the group (versions: every patch release), sorted.
    pub values: Vec<String>,
    /// Nodes with it, in the order given.
    pub nodes: Vec<String>,
    /// Evidence on those nodes.
    pub sources: Vec<Source>,
}

/// DNS through the cluster DNS VIP across nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DnsSplit {
    /// Nodes where every probe through the VIP was answered.
    pub answering: Vec<String>,
    /// Nodes where no probe through the VIP was answered.
    pub failing: Vec<DnsNode>,
    /// Nodes where some probes were answered and some not.
    pub partial: Vec<DnsNode>,
}

/// One node's probes through the VIP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DnsNode {
    /// Node.
    pub node: String,
    /// Probes sent.
    pub total: u64,
    /// Answered.
    pub answered: u64,
    /// Evidence: the unanswered probes (at most 4).
    pub sources: Vec<Source>,
}

/// What the cluster document needs of one node, taken from its facts and bundle before the
/// (large) fact document is freed.
#[derive(Debug, Clone, Default)]
pub struct NodeInput {
    /// The node's row of the cluster document.
    pub node: ClusterNode,
    /// Its data sources.
    pub sources: BTreeMap<String, SourceStatus>,
    /// IPs in its pod namespaces: (ip, holder, evidence).
    pub pod_ips: Vec<(String, String, Source)>,
    /// Its host main-table routes.
    pub routes: Vec<RouteRecord>,
    /// Its own addresses, parsed.
    pub addresses: BTreeSet<IpAddr>,
    /// Unanswered VIP probes (evidence).
    pub dns_failures: Vec<Source>,
    /// Where its kube-proxy dataplane shows (evidence for the mode).
    pub proxy_source: Option<Source>,
}

fn usable(s: Option<&SourceStatus>) -> bool {
    // A source missing from the map is unknown to the producer: usable, as for node rules.
    s.is_none_or(|s| s.available || s.absent_on_node)
}

impl NodeInput {
    /// Extracts what the cluster document needs from a node's facts and bundle.
    pub fn extract(path: &str, bundle: &Bundle, facts: &Facts) -> NodeInput {
        let name = facts.node.name.clone();
        let on = |s: Source| s.on(&name);
        let mode = serde_json::to_value(facts.node.proxy_mode)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let backend = (mode == "iptables")
            .then(|| facts.iptables.live_backend.clone())
            .flatten();
        let unavailable = facts
            .collection
            .sources
            .iter()
            .filter(|(_, s)| !usable(Some(s)))
            .map(|(id, s)| {
                (
                    id.clone(),
                    s.reason.clone().unwrap_or_else(|| "not collected".into()),
                )
            })
            .collect();
        let host_netlink = layout::netns_path(layout::HOST_NETNS, layout::netns::NETLINK);
        let snapshot: Option<NetnsSnapshot> = bundle
            .read_text(&host_netlink)
            .and_then(Result::ok)
            .and_then(|t| serde_json::from_str(&t).ok());
        let (routes, addresses) = match snapshot {
            Some(s) => (
                s.routes
                    .into_iter()
                    .filter(|r| r.table == 254 || r.table == 0)
                    .collect(),
                s.addrs.iter().map(|a| a.address).collect(),
            ),
            None => (Vec::new(), BTreeSet::new()),
        };
        let (own, node_source) = own_node_record(bundle, &name);
        let mut pod_ips = Vec::new();
        for ns in facts.netns.iter().filter(|n| !n.is_host) {
            let holder = match &ns.pod {
                Some(p) => format!("{name}: {p}"),
                None => format!("{name}: netns {}", ns.id),
            };
            let src = ns.source.clone().unwrap_or_else(|| {
                Source::file(&layout::netns_path(&ns.id, layout::netns::NETLINK))
            });
            for a in &ns.addresses {
                let ip = a.split('/').next().unwrap_or(a);
                let Ok(parsed) = ip.parse::<IpAddr>() else {
                    continue;
                };
                if parsed.is_loopback() || is_link_local(parsed) || parsed.is_unspecified() {
                    continue;
                }
                pod_ips.push((parsed.to_string(), holder.clone(), on(src.clone())));
            }
        }
        let dns_failures = facts
            .dns
            .probes
            .iter()
            .filter(|p| p.role == "service-vip" && !p.answered)
            .filter_map(|p| p.source.clone())
            .take(4)
            .map(on)
            .collect();
        let proxy_source = match mode.as_str() {
            "iptables" | "mixed" => facts
                .iptables
                .backends
                .iter()
                .find_map(|b| b.kube_source.clone()),
            "nftables" => facts.nft.source.clone(),
            _ => None,
        }
        .map(on);
        NodeInput {
            node: ClusterNode {
                name: name.clone(),
                bundle: path.to_string(),
                captured_at: facts.node.captured_at.clone(),
                outcome: facts.collection.outcome.clone(),
                kernel: facts.node.kernel.clone(),
                proxy_mode: mode,
                proxy_backend: backend,
                kube_proxy_version: own.as_ref().and_then(|n| n.kube_proxy_version.clone()),
                kubelet_version: own.as_ref().and_then(|n| n.kubelet_version.clone()),
                pod_cidrs: facts.node.pod_cidrs.clone(),
                // Loopback and link-local addresses identify no node to a reader.
                addresses: addresses
                    .iter()
                    .filter(|a| !a.is_loopback() && !is_link_local(**a))
                    .map(ToString::to_string)
                    .collect(),
                dns_vip: facts.dns.vip.clone(),
                unavailable,
                node_source: node_source.map(on),
            },
            sources: facts.collection.sources.clone(),
            pod_ips,
            routes,
            addresses,
            dns_failures,
            proxy_source,
        }
    }

    /// True when every source in `needs` is usable on this node.
    fn has(&self, needs: &[&str]) -> bool {
        needs.iter().all(|n| usable(self.sources.get(*n)))
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The node's own record in `k8s/nodes.jsonl` and its line.
fn own_node_record(
    bundle: &Bundle,
    name: &str,
) -> (Option<netsnap_bundle::k8s::NodeRecord>, Option<Source>) {
    let Some(Ok(file)) = bundle.open_artifact(layout::k8s::NODES) else {
        return (None, None);
    };
    let mut found = None;
    // A 5,000-node list is read once per bundle: only lines naming the node are parsed.
    let needle = format!("\"{name}\"");
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    let _ = crate::lines::for_each_line(file, crate::lines::MAX_LINE_BYTES, |n, l| {
        if finder.find(l).is_none() {
            return true;
        }
        match serde_json::from_slice::<netsnap_bundle::k8s::NodeRecord>(l) {
            Ok(r) if r.name == name => {
                found = Some((r, n));
                false
            }
            _ => true,
        }
    });
    match found {
        Some((r, n)) => (Some(r), Some(Source::line(layout::k8s::NODES, n))),
        None => (None, None),
    }
}

/// The cluster document of node bundles (each node's facts built in turn and freed).
pub fn from_bundles(bundles: &[(String, &Bundle)]) -> ClusterFacts {
    let inputs: Vec<NodeInput> = bundles
        .iter()
        .map(|(path, b)| NodeInput::extract(path, b, &Facts::from_bundle(b)))
        .collect();
    ClusterFacts::build(&inputs)
}

/// `v1.34.1` -> `v1.34`; anything else as it is.
fn minor_version(v: &str) -> String {
    let parts: Vec<&str> = v.trim_start_matches('v').split('.').collect();
    match parts.as_slice() {
        [major, minor, ..] => format!("v{major}.{minor}"),
        _ => v.to_string(),
    }
}

impl ClusterFacts {
    /// Joins the nodes' extracts into the cluster document.
    pub fn build(inputs: &[NodeInput]) -> ClusterFacts {
        let mut facts = ClusterFacts {
            schema_version: CLUSTER_FACTS_SCHEMA_VERSION,
            nodes: inputs.iter().map(|i| i.node.clone()).collect(),
            ..ClusterFacts::default()
        };
        facts.collection.sources = source_statuses(inputs);
        facts.pod_cidr_overlaps = pod_cidr_overlaps(inputs);
        facts.pod_ip_conflicts = pod_ip_conflicts(inputs);
        facts.pod_routes = pod_routes(inputs);
        facts.proxy_modes = group(inputs, PROXY_MODE_SOURCES, |n| {
            Some((
                n.node.proxy_mode.clone(),
                n.node.proxy_mode.clone(),
                n.proxy_source.clone(),
            ))
        });
        facts.proxy_versions = group(inputs, PROXY_VERSION_SOURCES, |n| {
            n.node
                .kube_proxy_version
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| (minor_version(v), v.to_string(), n.node.node_source.clone()))
        });
        facts.dns_vip = dns_split(inputs);
        facts
    }
}

/// Per source: usable on every node (available), on two or more (a sample naming the others),
/// or on fewer than two (unavailable: there is nothing to compare).
fn source_statuses(inputs: &[NodeInput]) -> BTreeMap<String, SourceStatus> {
    let ids: BTreeSet<&String> = inputs.iter().flat_map(|i| i.sources.keys()).collect();
    let mut out = BTreeMap::new();
    for id in ids {
        let mut without = Vec::new();
        for i in inputs {
            if let Some(s) = i.sources.get(id)
                && !usable(Some(s))
            {
                let reason = s.reason.as_deref().unwrap_or("not collected");
                without.push(format!("{}: {reason}", i.node.name));
            }
        }
        let with = inputs.len() - without.len();
        let status = if without.is_empty() {
            SourceStatus {
                available: true,
                ..SourceStatus::default()
            }
        } else if with >= 2 {
            SourceStatus {
                available: true,
                sample: Some(format!(
                    "{with} of {} nodes have it; without {}",
                    inputs.len(),
                    without.join("; ")
                )),
                ..SourceStatus::default()
            }
        } else {
            SourceStatus {
                available: false,
                reason: Some(format!(
                    "usable on {with} of {} nodes, two are needed to compare; {}",
                    inputs.len(),
                    without.join("; ")
                )),
                ..SourceStatus::default()
            }
        };
        out.insert(id.clone(), status);
    }
    out
}

fn pod_cidr_overlaps(inputs: &[NodeInput]) -> Vec<PodCidrOverlap> {
    let nodes: Vec<&NodeInput> = inputs.iter().filter(|i| i.has(POD_CIDR_SOURCES)).collect();
    let mut out = Vec::new();
    for (k, a) in nodes.iter().enumerate() {
        for b in &nodes[k + 1..] {
            for ca in &a.node.pod_cidrs {
                for cb in &b.node.pod_cidrs {
                    if cidrs_overlap(ca, cb) {
                        out.push(PodCidrOverlap {
                            a_node: a.node.name.clone(),
                            a_cidr: ca.clone(),
                            b_node: b.node.name.clone(),
                            b_cidr: cb.clone(),
                            sources: [&a.node.node_source, &b.node.node_source]
                                .into_iter()
                                .flatten()
                                .cloned()
                                .collect(),
                        });
                    }
                }
            }
        }
    }
    out
}

fn pod_ip_conflicts(inputs: &[NodeInput]) -> Vec<PodIpConflict> {
    let mut by_ip: BTreeMap<&str, Vec<(&str, &str, &Source)>> = BTreeMap::new();
    for i in inputs.iter().filter(|i| i.has(POD_IP_SOURCES)) {
        for (ip, holder, src) in &i.pod_ips {
            by_ip.entry(ip.as_str()).or_default().push((
                i.node.name.as_str(),
                holder.as_str(),
                src,
            ));
        }
    }
    let mut out = Vec::new();
    for (ip, holders) in by_ip {
        let nodes: BTreeSet<&str> = holders.iter().map(|(n, _, _)| *n).collect();
        if nodes.len() < 2 {
            continue;
        }
        out.push(PodIpConflict {
            ip: ip.to_string(),
            nodes: nodes.into_iter().map(str::to_string).collect(),
            holders: holders.iter().map(|(_, h, _)| h.to_string()).collect(),
            sources: holders.iter().map(|(_, _, s)| (*s).clone()).collect(),
        });
    }
    out
}

fn pod_routes(inputs: &[NodeInput]) -> Vec<ClusterPodRoute> {
    let nodes: Vec<&NodeInput> = inputs.iter().filter(|i| i.has(POD_ROUTE_SOURCES)).collect();
    let owner: HashMap<IpAddr, &str> = nodes
        .iter()
        .flat_map(|n| n.addresses.iter().map(move |a| (*a, n.node.name.as_str())))
        .collect();
    let netlink = layout::netns_path(layout::HOST_NETNS, layout::netns::NETLINK);
    let mut out = Vec::new();
    for from in &nodes {
        // A snapshot without a main-table route was not really collected (as for the node
        // rule): judging it would call every route missing.
        if from.routes.is_empty() {
            continue;
        }
        let routes = main_routes(&from.routes);
        for to in nodes.iter().filter(|t| t.node.name != from.node.name) {
            for cidr in &to.node.pod_cidrs {
                let Some(net) = parse_prefix(cidr) else {
                    continue;
                };
                let matched = longest_match(&routes, &net);
                let (verdict, gateway_node) =
                    judge(matched, u32::from(net.prefix_len()), from, to, &owner);
                let r = matched.map(|(r, _)| r);
                let mut sources = vec![Source::file(&netlink).on(&from.node.name)];
                sources.extend(to.node.node_source.clone());
                out.push(ClusterPodRoute {
                    from: from.node.name.clone(),
                    to: to.node.name.clone(),
                    pod_cidr: cidr.clone(),
                    route_dst: r.map(|r| r.dst.clone()),
                    dev: r.and_then(|r| r.dev.clone()),
                    gateway: r.and_then(|r| r.gateway).map(|g| g.to_string()),
                    gateway_node,
                    verdict: verdict.to_string(),
                    sources,
                });
            }
        }
    }
    out
}

/// The verdict of one route (see [`ClusterPodRoute::verdict`]).
fn judge(
    matched: Option<(&RouteRecord, u32)>,
    len: u32,
    from: &NodeInput,
    to: &NodeInput,
    owner: &HashMap<IpAddr, &str>,
) -> (&'static str, Option<String>) {
    let Some((r, rlen)) = matched else {
        return ("none", None);
    };
    if !matches!(r.route_type.as_str(), "" | "unicast") {
        return ("unreachable", None);
    }
    if rlen == 0 {
        return ("default", None);
    }
    if rlen < len {
        return ("aggregate", None);
    }
    let Some(gw) = r.gateway else {
        return ("no-gateway", None);
    };
    let gateway_node = owner.get(&gw).map(|n| n.to_string());
    let verdict = if to.addresses.contains(&gw) {
        "target"
    } else if from.addresses.contains(&gw) {
        "local"
    } else if is_link_local(gw) {
        // An IPv6 router's link-local address names a neighbour on the link, not a node.
        "link-local"
    } else if gateway_node.is_some() {
        "other-node"
    } else {
        "foreign"
    };
    (verdict, gateway_node)
}

/// Groups the nodes that have `needs` by the key `key` gives (nodes it gives none are left out).
fn group(
    inputs: &[NodeInput],
    needs: &[&str],
    key: impl Fn(&NodeInput) -> Option<(String, String, Option<Source>)>,
) -> Vec<NodeGroup> {
    let mut groups: Vec<NodeGroup> = Vec::new();
    for i in inputs.iter().filter(|i| i.has(needs)) {
        let Some((k, full, src)) = key(i) else {
            continue;
        };
        let slot = match groups.iter().position(|g| g.value == k) {
            Some(p) => p,
            None => {
                groups.push(NodeGroup {
                    value: k,
                    ..NodeGroup::default()
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[slot];
        if !g.values.contains(&full) {
            g.values.push(full);
            g.values.sort();
        }
        g.nodes.push(i.node.name.clone());
        g.sources.extend(src);
    }
    groups
}

fn dns_split(inputs: &[NodeInput]) -> DnsSplit {
    let mut out = DnsSplit::default();
    for i in inputs.iter().filter(|i| i.has(DNS_SOURCES)) {
        let v = &i.node.dns_vip;
        if v.total == 0 {
            continue;
        }
        let row = || DnsNode {
            node: i.node.name.clone(),
            total: v.total,
            answered: v.answered,
            sources: i.dns_failures.clone(),
        };
        if v.answered == v.total {
            out.answering.push(i.node.name.clone());
        } else if v.answered == 0 {
            out.failing.push(row());
        } else {
            out.partial.push(row());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, gw: Option<&str>, dev: &str) -> RouteRecord {
        RouteRecord {
            table: 254,
            family: "inet".into(),
            dst: dst.into(),
            gateway: gw.map(|g| g.parse().unwrap()),
            dev: Some(dev.into()),
            route_type: "unicast".into(),
            ..RouteRecord::default()
        }
    }

    fn node(name: &str, cidr: &str, addrs: &[&str], routes: Vec<RouteRecord>) -> NodeInput {
        NodeInput {
            node: ClusterNode {
                name: name.into(),
                pod_cidrs: vec![cidr.into()],
                proxy_mode: "iptables".into(),
                node_source: Some(Source::line("k8s/nodes.jsonl", 1).on(name)),
                ..ClusterNode::default()
            },
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            routes,
            ..NodeInput::default()
        }
    }

    fn flannel_pair(a_gw_to_b: &str) -> Vec<NodeInput> {
        vec![
            node(
                "a",
                "10.244.0.0/24",
                &["172.18.0.10", "10.244.0.0", "10.244.0.1"],
                vec![
                    route("default", Some("172.18.0.1"), "eth0"),
                    route("10.244.1.0/24", Some(a_gw_to_b), "flannel.1"),
                ],
            ),
            node(
                "b",
                "10.244.1.0/24",
                &["172.18.0.11", "10.244.1.0", "10.244.1.1"],
                vec![
                    route("default", Some("172.18.0.1"), "eth0"),
                    route("10.244.0.0/24", Some("10.244.0.0"), "flannel.1"),
                ],
            ),
        ]
    }

    #[test]
    fn routes_to_the_owner_of_the_pod_cidr_are_target() {
        let f = ClusterFacts::build(&flannel_pair("10.244.1.0"));
        let verdicts: Vec<(&str, &str, &str)> = f
            .pod_routes
            .iter()
            .map(|r| (r.from.as_str(), r.to.as_str(), r.verdict.as_str()))
            .collect();
        assert_eq!(verdicts, [("a", "b", "target"), ("b", "a", "target")]);
        assert!(f.pod_cidr_overlaps.is_empty());
    }

    #[test]
    fn a_route_via_an_address_the_target_lacks_is_foreign() {
        let f = ClusterFacts::build(&flannel_pair("10.244.9.0"));
        let r = &f.pod_routes[0];
        assert_eq!((r.from.as_str(), r.verdict.as_str()), ("a", "foreign"));
        assert_eq!(r.gateway.as_deref(), Some("10.244.9.0"));
        assert_eq!(f.pod_routes[1].verdict, "target");
    }

    #[test]
    fn a_route_via_a_third_node_names_it() {
        let mut nodes = flannel_pair("172.18.0.12");
        nodes.push(node("c", "10.244.2.0/24", &["172.18.0.12"], vec![]));
        let f = ClusterFacts::build(&nodes);
        let r = f
            .pod_routes
            .iter()
            .find(|r| r.from == "a" && r.to == "b")
            .unwrap();
        assert_eq!(r.verdict, "other-node");
        assert_eq!(r.gateway_node.as_deref(), Some("c"));
        // c has no routes at all: nothing is judged from it.
        assert!(f.pod_routes.iter().all(|r| r.from != "c"));
        // a's and b's routes to c's CIDR fall to the default route: not judged here.
        let to_c: Vec<&str> = f
            .pod_routes
            .iter()
            .filter(|r| r.to == "c")
            .map(|r| r.verdict.as_str())
            .collect();
        assert_eq!(to_c, ["default", "default"]);
    }

    #[test]
    fn link_local_and_own_next_hops_are_not_judged() {
        let mut nodes = flannel_pair("10.244.1.0");
        nodes[0].routes[1].gateway = Some("fe80::1".parse().unwrap());
        nodes[1].routes[1].gateway = Some("10.244.1.1".parse().unwrap());
        nodes[1].routes[1].dev = Some("cilium_host".into());
        let f = ClusterFacts::build(&nodes);
        let v: Vec<&str> = f.pod_routes.iter().map(|r| r.verdict.as_str()).collect();
        assert_eq!(v, ["link-local", "local"]);
        // Neither is shown as a node's address.
        nodes[0].addresses.insert("fe80::1".parse().unwrap());
        assert!(
            f.nodes
                .iter()
                .all(|n| n.addresses.iter().all(|a| !a.starts_with("fe80")))
        );
    }

    #[test]
    fn overlapping_cidrs_and_shared_pod_ips_are_joined() {
        let mut nodes = flannel_pair("10.244.1.0");
        nodes[1].node.pod_cidrs = vec!["10.244.0.0/23".into()];
        nodes[0].pod_ips = vec![(
            "10.244.0.5".into(),
            "a: default/x".into(),
            Source::file("netns/x/netlink.json").on("a"),
        )];
        nodes[1].pod_ips = vec![(
            "10.244.0.5".into(),
            "b: default/y".into(),
            Source::file("netns/y/netlink.json").on("b"),
        )];
        let f = ClusterFacts::build(&nodes);
        assert_eq!(f.pod_cidr_overlaps.len(), 1);
        assert_eq!(f.pod_cidr_overlaps[0].b_cidr, "10.244.0.0/23");
        assert_eq!(f.pod_ip_conflicts.len(), 1);
        assert_eq!(f.pod_ip_conflicts[0].nodes, ["a", "b"]);
        assert_eq!(f.pod_ip_conflicts[0].sources[1].node.as_deref(), Some("b"));
    }

    #[test]
    fn a_node_without_the_data_is_left_out_and_named() {
        let mut nodes = flannel_pair("10.244.1.0");
        nodes.push(node("c", "10.244.0.0/24", &[], vec![]));
        nodes[2].sources.insert(
            "k8s-nodes".into(),
            SourceStatus {
                available: false,
                reason: Some("failed: timeout".into()),
                ..SourceStatus::default()
            },
        );
        let f = ClusterFacts::build(&nodes);
        // c claims a's CIDR, but its Node list failed: no overlap is concluded from it.
        assert!(f.pod_cidr_overlaps.is_empty());
        let s = &f.collection.sources["k8s-nodes"];
        assert!(s.available);
        assert!(
            s.sample
                .as_deref()
                .is_some_and(|x| x.contains("2 of 3") && x.contains("c: failed: timeout")),
            "{s:?}"
        );
        // With two of three missing there is nothing to compare.
        nodes[1].sources = nodes[2].sources.clone();
        let f = ClusterFacts::build(&nodes);
        assert!(!f.collection.sources["k8s-nodes"].available);
    }

    #[test]
    fn skew_groups_and_dns_split() {
        let mut nodes = flannel_pair("10.244.1.0");
        nodes[1].node.proxy_mode = "ipvs".into();
        nodes[0].node.kube_proxy_version = Some("v1.34.1".into());
        nodes[1].node.kube_proxy_version = Some("v1.34.2".into());
        nodes[0].node.dns_vip = DnsProbeSummary {
            total: 4,
            answered: 4,
            ..DnsProbeSummary::default()
        };
        nodes[1].node.dns_vip = DnsProbeSummary {
            total: 4,
            answered: 0,
            failed: 4,
            ..DnsProbeSummary::default()
        };
        let f = ClusterFacts::build(&nodes);
        assert_eq!(f.proxy_modes.len(), 2);
        // Patch releases of one minor are one group.
        assert_eq!(f.proxy_versions.len(), 1);
        assert_eq!(f.proxy_versions[0].values, ["v1.34.1", "v1.34.2"]);
        assert_eq!(f.dns_vip.answering, ["a"]);
        assert_eq!(f.dns_vip.failing[0].node, "b");
    }
}
