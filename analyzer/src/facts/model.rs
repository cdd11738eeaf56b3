//! The fact model's types: the public API rule authors write CEL against.
//!
//! Every struct defaults every field and refuses unknown fields, so a rule
//! test can give a small YAML snippet (typos are errors, not silent misses) and
//! get a complete document. `docs/facts.md` is generated from these types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the fact document layout (bumped on incompatible changes).
pub const FACTS_SCHEMA_VERSION: u32 = 1;

/// Where a fact came from: an artifact path and, for line-oriented artifacts, a 1-based line.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct Source {
    /// Artifact path inside the bundle.
    pub path: String,
    /// 1-based line number; absent for native JSON artifacts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The node whose bundle holds the artifact: set in the cluster fact document only (a
    /// node's own facts point into its own bundle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Source {
    /// A source pointing at a line.
    pub fn line(path: &str, line: u64) -> Self {
        Source {
            path: path.to_string(),
            line: Some(line),
            node: None,
        }
    }

    /// The same source, in `node`'s bundle (for the cluster fact document).
    pub fn on(mut self, node: &str) -> Self {
        self.node = Some(node.to_string());
        self
    }

    /// A source pointing at a whole artifact.
    pub fn file(path: &str) -> Self {
        Source {
            path: path.to_string(),
            line: None,
            node: None,
        }
    }
}

/// The whole fact document built from one bundle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Facts {
    /// Layout version ([`FACTS_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The node: identity, kernel, proxy mode, CNI guess, sysctls.
    pub node: NodeFacts,
    /// What the bundle holds and what is missing, and why.
    pub collection: CollectionFacts,
    /// Pods from the API (all nodes), joined with this node's namespaces and veths.
    pub pods: Vec<PodFacts>,
    /// Services joined with their endpoints and with what each dataplane programs.
    pub services: Vec<ServiceFacts>,
    /// Network namespaces on the node.
    pub netns: Vec<NetnsFacts>,
    /// Interfaces of every namespace.
    pub links: Vec<LinkFacts>,
    /// IP-level joins (duplicates).
    pub ips: IpFacts,
    /// Connection tracking: counters and aggregates (entries are never kept one by one).
    pub conntrack: ConntrackFacts,
    /// iptables summaries per backend.
    pub iptables: IptablesFacts,
    /// nftables summary.
    pub nft: NftFacts,
    /// Source NAT of pod egress: masquerade rules and the judgments over them.
    pub snat: SnatFacts,
    /// IPVS summary.
    pub ipvs: IpvsFacts,
    /// DNS probes and cluster DNS.
    pub dns: DnsFacts,
    /// Known kernel-log messages.
    pub kernel_log: KernelLogFacts,
}

/// Detected kube-proxy dataplane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProxyMode {
    /// `KUBE-SVC-*` DNAT chains.
    Iptables,
    /// IPVS virtual servers for Service IPs (and `kube-ipvs0`).
    Ipvs,
    /// `table ip kube-proxy` / `table ip6 kube-proxy`.
    Nftables,
    /// No kube-proxy dataplane found (or not enough data to tell).
    #[default]
    None,
    /// Service IPs programmed in more than one dataplane.
    Mixed,
}

/// The node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NodeFacts {
    /// Kubernetes node name (falls back to the hostname).
    pub name: String,
    /// `uname -n`.
    pub hostname: String,
    /// `uname -r`.
    pub kernel: String,
    /// Capture time (RFC 3339, the manifest's `finished_at`); ages are relative to it.
    pub captured_at: String,
    /// Detected kube-proxy mode.
    pub proxy_mode: ProxyMode,
    /// Dataplanes that program Service IPs: subset of `iptables`, `ipvs`, `nftables`.
    pub proxy_dataplanes: Vec<String>,
    /// `mode` from the kube-proxy ConfigMap, when collected (empty string means iptables default).
    pub proxy_mode_configured: Option<String>,
    /// A kube-proxy replacement seen on the node (`cilium`, `kube-router`, `antrea`), if any.
    pub proxy_replacement: Option<String>,
    /// True when a kube-proxy pod runs on this node.
    pub kube_proxy_pod: bool,
    /// CNI guess from host links (`flannel`, `calico`, `cilium`, `weave`, `bridge`, …).
    pub cni: Option<String>,
    /// True when host bridges have pod veths enslaved (bridge CNI).
    pub bridge_cni: bool,
    /// This node's `spec.podCIDRs`.
    pub pod_cidrs: Vec<String>,
    /// Pod CIDRs of every node (cluster pod range).
    pub cluster_pod_cidrs: Vec<String>,
    /// `cluster_pod_cidrs` merged into the fewest covering prefixes with no address added
    /// (64 node /24s of one /18 are `10.244.0.0/18`), for messages.
    #[serde(default)]
    pub cluster_pod_cidrs_aggregated: Vec<String>,
    /// Node addresses (`InternalIP`, `ExternalIP`).
    pub addresses: Vec<String>,
    /// Net sysctls of the host namespace (dotted keys), merged with conntrack sysctls.
    pub sysctls: BTreeMap<String, String>,
    /// Ports in `net.ipv4.ip_local_port_range` (high - low + 1): the source ports SNAT has
    /// per destination and node address.
    pub local_port_range_width: Option<u64>,
    /// Where the sysctls came from.
    pub sysctls_source: Option<Source>,
    /// Smallest prefixes covering every Service ClusterIP, per family: a lower bound of the
    /// cluster's Service range (the kube-apiserver flag is not on the node).
    pub service_ranges: Vec<String>,
    /// Address ranges that overlap although they must not: the pod range, the Service range,
    /// the host's own subnets and local bridges such as docker0.
    pub cidr_overlaps: Vec<CidrOverlap>,
    /// How every other node's pod range is routed from this node's host namespace (main
    /// table, longest-prefix match): one entry per other node and pod CIDR, or per group of
    /// its pod IPs when the CNI does not allocate from podCIDRs. Empty without routes.
    pub peer_pod_routes: Vec<PeerPodRoute>,
    /// Set when pod traffic between nodes is routed by the cloud network rather than by
    /// per-node routes on the host (`aws-vpc-cni`, `azure`, `gke`), so the default route
    /// is the right path to other nodes' pods.
    pub cloud_pod_routing: Option<String>,
    /// The uplink (device of the default route in the host namespace).
    pub uplink: Option<UplinkFacts>,
    /// Overlay tunnel devices on the host.
    pub overlays: Vec<OverlayFacts>,
    /// Largest pod MTU the uplink allows through the overlay (uplink MTU minus overhead).
    pub max_pod_mtu: Option<u32>,
    /// Host bridge ports with hairpin off, as `bridge/port`.
    pub hairpin_off_ports: Vec<String>,
    /// IPv4 neighbour entries summed over every namespace (the kernel limit is global).
    pub neighbour_entries: Option<u64>,
}

/// Two address ranges of the node that overlap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CidrOverlap {
    /// First range (CIDR).
    pub a: String,
    /// What it is: `pod-range`, `service-range`, `host-subnet` or `local-bridge`.
    pub a_kind: String,
    /// Its device, for a host subnet or bridge.
    pub a_device: Option<String>,
    /// Second range (CIDR).
    pub b: String,
    /// What it is (as `a_kind`).
    pub b_kind: String,
    /// Its device, for a host subnet or bridge.
    pub b_device: Option<String>,
    /// Evidence: the device's netlink record, when one side is a device.
    pub source: Option<Source>,
}

/// The host route another node's pods are reached by.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PeerPodRoute {
    /// The other node's name.
    pub node: String,
    /// Its pod range looked up: a `spec.podCIDRs` entry, or the covering prefix of a group of
    /// its pod IPs (see `target`).
    pub pod_cidr: String,
    /// `pod-cidr` (from `spec.podCIDRs`) or `pod-ips` (pod IPs, for nodes without podCIDRs or
    /// CNIs whose IPAM ignores them, such as Calico or Cilium cluster-pool).
    pub target: String,
    /// Pod IPs in the group, for `pod-ips` targets.
    pub pod_ip_count: u64,
    /// The node's `InternalIP` addresses.
    pub internal_ips: Vec<String>,
    /// The node's Ready condition (null when it reports none).
    pub node_ready: Option<bool>,
    /// Destination of the longest-prefix match (`default` for the default route), if any.
    pub route_dst: Option<String>,
    /// Output device of the matched route.
    pub dev: Option<String>,
    /// Gateway of the matched route.
    pub gateway: Option<String>,
    /// The node owning the gateway address, when it is a node's address.
    pub gateway_node: Option<String>,
    /// How the match reaches the pods: `tunnel` (overlay or CNI device), `node-gateway` (via
    /// the node's own address: host-gw, BGP), `aggregate` (a route covering more than this
    /// node's pods), `direct` (on-link, no gateway), `other-gateway` (via an address that is
    /// not the node's), `unreachable` (blackhole/unreachable/prohibit), `default`, `none`.
    pub kind: String,
    /// Only the default route, an unreachable route or nothing matches.
    pub missing: bool,
    /// A route specific to this node goes via a gateway that is not the node's address and
    /// not through a tunnel device (stale after a node IP change, or pointing at another node).
    pub stale_gateway: bool,
    /// Evidence: the host netlink snapshot holding the routes.
    pub source: Option<Source>,
    /// Evidence: the node's line in `k8s/nodes.jsonl`.
    pub node_source: Option<Source>,
}

/// The uplink interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UplinkFacts {
    /// Interface name.
    pub name: String,
    /// MTU.
    pub mtu: Option<u32>,
}

/// An overlay tunnel device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OverlayFacts {
    /// Interface name (`flannel.1`, `vxlan.calico`, `tunl0`, …).
    pub name: String,
    /// `vxlan`, `ipip`, `geneve`, `wireguard`.
    pub encapsulation: String,
    /// Device MTU.
    pub mtu: Option<u32>,
    /// Encapsulation overhead in bytes (IPv4 outer header).
    pub overhead: u32,
    /// Evidence.
    pub source: Option<Source>,
}

/// What was collected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CollectionFacts {
    /// `complete`, `deadline_exceeded`, `interrupted`.
    pub outcome: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339), the reference time of all ages.
    pub finished_at: String,
    /// Data sources rules can `require`, by id (see docs/rules.md for the list).
    pub sources: BTreeMap<String, SourceStatus>,
    /// Artifacts without content (failed, skipped, unavailable) and why.
    pub missing: Vec<MissingArtifact>,
    /// Artifacts with incomplete content (truncated, timed out).
    pub partial: Vec<MissingArtifact>,
    /// Collector notes.
    pub notes: Vec<String>,
}

/// Availability of one data source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SourceStatus {
    /// True when rules can use it: every distinct piece of its data has a complete artifact
    /// (or, for a capped list, a sample; see `sample`).
    pub available: bool,
    /// Why it is not available (from the manifest), when it is not.
    pub reason: Option<String>,
    /// Every artifact of the source is `unavailable`: it does not exist on the node (no IPVS
    /// in the kernel, tool not installed), so rules run on the empty data instead of being
    /// reported as not evaluated.
    pub absent_on_node: bool,
    /// Set when only part of a list was collected (the conntrack table cut at its entry
    /// cap): rules run on that sample and say so; the reason from the manifest.
    pub sample: Option<String>,
}

/// An artifact that is missing or partial.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MissingArtifact {
    /// Path.
    pub path: String,
    /// Manifest status.
    pub status: String,
    /// Reason from the manifest.
    pub reason: String,
}

/// A pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PodFacts {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `namespace/name`.
    pub key: String,
    /// UID.
    pub uid: String,
    /// First pod IP.
    pub ip: Option<String>,
    /// All pod IPs.
    pub ips: Vec<String>,
    /// `status.phase`.
    pub phase: String,
    /// Ready condition.
    pub ready: bool,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// `spec.nodeName`.
    pub node_name: Option<String>,
    /// True when the pod runs on this node.
    pub local: bool,
    /// True when the pod is not Succeeded/Failed and not deleted (its IP is in use).
    pub live: bool,
    /// Seconds between creation and capture (negative clock skew clamps to 0).
    pub age_seconds: Option<i64>,
    /// True when a deletion timestamp is set.
    pub terminating: bool,
    /// Namespace holding the pod's network (from correlation), if found.
    pub netns: Option<String>,
    /// Namespaces holding any of the pod's IPs on a non-loopback interface.
    pub ip_netns: Vec<String>,
    /// Pod-side interface MTU.
    pub mtu: Option<u32>,
    /// Host-side veth name.
    pub host_veth: Option<String>,
    /// Host-side veth MTU.
    pub host_veth_mtu: Option<u32>,
    /// Hairpin mode of the host veth's bridge port, when enslaved.
    pub hairpin: Option<bool>,
    /// True when the pod is a ready endpoint of some Service.
    pub is_endpoint: bool,
    /// True when the pod is an endpoint of the cluster DNS Service (CoreDNS; it uses the node resolver).
    pub is_dns_endpoint: bool,
    /// Resolver configuration seen in the pod's namespace.
    pub resolv_conf: Option<ResolvConfFacts>,
    /// Evidence.
    pub source: Option<Source>,
}

/// A parsed `/etc/resolv.conf`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ResolvConfFacts {
    /// Nameservers in order.
    pub nameservers: Vec<String>,
    /// Search domains.
    pub search: Vec<String>,
    /// Options (`ndots:5`, …).
    pub options: Vec<String>,
    /// The Service (`namespace/name`) whose ClusterIP is the first nameserver, if any
    /// (joined once here through an index, so rules need not scan every Service per pod).
    pub nameserver_service: Option<String>,
    /// Evidence (the first nameserver line).
    pub source: Option<Source>,
}

/// A Service with its endpoints and dataplane state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceFacts {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `namespace/name`.
    pub key: String,
    /// `ClusterIP`, `NodePort`, `LoadBalancer`, `ExternalName`.
    #[serde(rename = "type")]
    pub type_: String,
    /// ClusterIPs (empty for headless/ExternalName).
    pub cluster_ips: Vec<String>,
    /// True for `clusterIP: None`.
    pub headless: bool,
    /// True when kube-proxy programs it (has a ClusterIP, not ExternalName, no `service-proxy-name` label).
    pub proxied: bool,
    /// True when it has a selector.
    pub has_selector: bool,
    /// `externalTrafficPolicy`.
    pub external_traffic_policy: Option<String>,
    /// `internalTrafficPolicy`.
    pub internal_traffic_policy: Option<String>,
    /// Seconds between creation and capture.
    pub age_seconds: Option<i64>,
    /// Seconds between the newest EndpointSlice's creation and capture.
    pub endpoints_age_seconds: Option<i64>,
    /// `kube-system/kube-dns` or `default/kubernetes`.
    pub critical: bool,
    /// True for `kube-system/kube-dns`.
    pub is_cluster_dns: bool,
    /// Endpoints from all its EndpointSlices.
    pub endpoints: Vec<EndpointFacts>,
    /// Number of ready endpoints (unique addresses).
    pub ready_endpoint_count: u64,
    /// Number of ready endpoints on this node.
    pub local_ready_endpoint_count: u64,
    /// Ports, one entry per (ClusterIP, port).
    pub ports: Vec<ServicePortFacts>,
    /// Evidence (its line in `k8s/services.jsonl`).
    pub source: Option<Source>,
}

/// An endpoint address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointFacts {
    /// Address.
    pub ip: String,
    /// `conditions.ready` (unset counts as ready).
    pub ready: bool,
    /// `conditions.serving`.
    pub serving: bool,
    /// `conditions.terminating`.
    pub terminating: bool,
    /// `nodeName`.
    pub node_name: Option<String>,
    /// True when on this node.
    pub local: bool,
    /// `namespace/name` of the live pod owning the address, if any.
    pub pod: Option<String>,
    /// Evidence (its slice's line in `k8s/endpointslices.jsonl`).
    pub source: Option<Source>,
}

/// One Service port on one ClusterIP, with what each dataplane programs for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServicePortFacts {
    /// Port name.
    pub name: String,
    /// `TCP`, `UDP`, `SCTP`.
    pub protocol: String,
    /// Service port.
    pub port: i64,
    /// Node port.
    pub node_port: Option<i64>,
    /// The ClusterIP of this entry.
    pub vip: String,
    /// `VIP:port/proto` (lower-case proto), the join key with dataplanes.
    pub key: String,
    /// Ready endpoints as `ip:port`.
    pub ready_endpoints: Vec<String>,
    /// Ready-or-serving endpoint IPs (what kube-proxy may program, incl. terminating fallback).
    pub serving_endpoint_ips: Vec<String>,
    /// iptables state (live backend).
    pub iptables: IptablesServicePort,
    /// IPVS state.
    pub ipvs: IpvsServicePort,
    /// nftables (kube-proxy table) state.
    pub nft: NftServicePort,
}

/// What iptables programs for a Service port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IptablesServicePort {
    /// A `KUBE-SERVICES -d VIP … --dport port -j KUBE-SVC|KUBE-SVL-*` rule exists.
    pub present: bool,
    /// The service chain.
    pub chain: Option<String>,
    /// DNAT targets (`ip:port`) reachable from the service chain.
    pub endpoints: Vec<String>,
    /// DNAT target IPs.
    pub endpoint_ips: Vec<String>,
    /// A `has no endpoints` REJECT exists for it.
    pub reject: bool,
    /// A `has no local endpoints` DROP exists for it.
    pub no_local_endpoints_drop: bool,
    /// Evidence: the service rule, DNAT rules, REJECT rules.
    pub sources: Vec<Source>,
}

/// What IPVS programs for a Service port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IpvsServicePort {
    /// A virtual server exists.
    pub present: bool,
    /// Scheduler.
    pub scheduler: Option<String>,
    /// Real servers.
    pub real_servers: Vec<RealServerFacts>,
    /// The VIP is an address of `kube-ipvs0`.
    pub vip_bound: bool,
    /// Evidence (the virtual server line).
    pub source: Option<Source>,
}

/// An IPVS real server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RealServerFacts {
    /// `ip:port`.
    pub address: String,
    /// IP.
    pub ip: String,
    /// Weight.
    pub weight: i64,
    /// Active connections.
    pub active_conns: i64,
    /// Inactive connections.
    pub inactive_conns: i64,
    /// True when the IP is a ready/serving endpoint of the Service.
    pub is_endpoint: bool,
    /// `namespace/name` of the live pod owning the IP, if any.
    pub pod: Option<String>,
    /// Evidence.
    pub source: Option<Source>,
}

/// What the nftables kube-proxy table programs for a Service port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NftServicePort {
    /// An element in `map service-ips`.
    pub present: bool,
    /// An element in `map no-endpoint-services`.
    pub no_endpoints: bool,
    /// DNAT targets (`ip:port`) of its endpoint chains.
    pub endpoints: Vec<String>,
    /// Evidence.
    pub sources: Vec<Source>,
}

/// A network namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NetnsFacts {
    /// Bundle id (`host`, `ns-<inode>`).
    pub id: String,
    /// Host namespace.
    pub is_host: bool,
    /// Names under `/run/netns`.
    pub names: Vec<String>,
    /// `namespace/name` of the pod owning it, when known.
    pub pod: Option<String>,
    /// A pause process lives in it.
    pub has_pause: bool,
    /// Number of processes.
    pub process_count: u64,
    /// Global addresses on non-loopback interfaces.
    pub addresses: Vec<String>,
    /// Addresses inside the node's pod CIDRs that no live pod owns (leak).
    pub unknown_ips: Vec<String>,
    /// Evidence.
    pub source: Option<Source>,
}

/// An interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LinkFacts {
    /// Namespace id.
    pub netns: String,
    /// Name.
    pub name: String,
    /// Kind (`veth`, `bridge`, `vxlan`, …), empty for physical.
    pub kind: String,
    /// MTU.
    pub mtu: Option<u32>,
    /// Operational state.
    pub oper_state: String,
    /// Master device name (bridge).
    pub master: Option<String>,
    /// For veths: the namespace of the peer, when resolved.
    pub peer_netns: Option<String>,
    /// For host veths: `namespace/name` of the live pod behind it.
    pub pod: Option<String>,
    /// Host veth whose peer is in no namespace owned by a live pod.
    pub orphan: bool,
    /// Bridge-port hairpin mode.
    pub hairpin: Option<bool>,
    /// Addresses (`ip/len`).
    pub addresses: Vec<String>,
    /// Evidence.
    pub source: Option<Source>,
}

/// IP-level joins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IpFacts {
    /// IPs shared by several live non-hostNetwork pods, or configured in several namespaces.
    pub duplicates: Vec<DuplicateIp>,
}

/// A duplicated IP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DuplicateIp {
    /// The address.
    pub ip: String,
    /// Live pods claiming it.
    pub pods: Vec<String>,
    /// Namespaces configuring it.
    pub netns: Vec<String>,
    /// Evidence.
    pub sources: Vec<Source>,
}

/// Connection tracking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConntrackFacts {
    /// `nf_conntrack_count`.
    pub count: Option<u64>,
    /// `nf_conntrack_max`.
    pub max: Option<u64>,
    /// `count / max`.
    pub usage_ratio: Option<f64>,
    /// Evidence for the count: the `nf_conntrack_count` line of the sysctl dump (or the
    /// `/proc` count file).
    pub count_source: Option<Source>,
    /// Evidence for the max: the `nf_conntrack_max` line of the sysctl dump.
    #[serde(default)]
    pub max_source: Option<Source>,
    /// `conntrack -S` counters summed over CPUs.
    pub stats: BTreeMap<String, u64>,
    /// Evidence for the stats.
    pub stats_sources: Vec<Source>,
    /// Counter increase between the two `/proc/net/stat/nf_conntrack` samples, when both exist.
    pub stats_delta: Option<BTreeMap<String, u64>>,
    /// Entries read from the table.
    pub entries: u64,
    /// Entries per protocol.
    pub by_protocol: BTreeMap<String, u64>,
    /// TCP entries per state.
    pub by_state: BTreeMap<String, u64>,
    /// `[UNREPLIED]` entries.
    pub unreplied: u64,
    /// `[UNREPLIED]` entries that expect an answer: UDP, and TCP in `SYN_SENT` (a kernel
    /// never marks an answered connection so; injected or odd entries are left out).
    pub unreplied_expecting_reply: u64,
    /// Top 10 destinations (`proto dst:dport`) by entry count.
    pub top_destinations: Vec<CountedKey>,
    /// UDP entries to a Service IP whose reply source is no live ready/serving endpoint.
    pub stale_udp: Vec<StaleConntrackEntry>,
    /// Total stale UDP entries (the list is capped).
    pub stale_udp_count: u64,
    /// UDP entries to a Service IP never DNATed (reply source is the VIP) while it has endpoints.
    pub not_dnated: Vec<StaleConntrackEntry>,
    /// Total never-DNATed entries (the list is capped).
    pub not_dnated_count: u64,
    /// UDP port-53 entries whose original destination is a cluster DNS VIP.
    pub dns_via_vip: u64,
    /// `[UNREPLIED]` UDP entries per original destination port (key: the port), top 20 by count:
    /// one-way protocols (statsd, syslog) never get replies, so rules discount them.
    pub unreplied_udp_ports: Vec<CountedKey>,
    /// DNATed backends (reply source differing from the original destination) with at least
    /// 10 unreplied TCP `SYN_SENT` or UDP entries: those with no replied entry first, then
    /// by unreplied count (at most 100; the pass tracks at most 10,000 distinct backends).
    pub unreplied_backends: Vec<UnrepliedBackend>,
    /// Destinations (`proto ip:port`, after DNAT) that pod sources reach through SNAT or
    /// masquerade (original source in the cluster pod range, reply destination rewritten)
    /// with at least 100 entries, top 20 by count: each such flow holds one port of the
    /// node's `ip_local_port_range` for that destination.
    pub snat_destinations: Vec<SnatDestination>,
}

/// A DNAT target (Service backend) and how many of this node's connections to it went unanswered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UnrepliedBackend {
    /// Backend IP (the reply source of the entries).
    pub ip: String,
    /// `namespace/name` of the live pod owning the IP, if any.
    pub pod: Option<String>,
    /// `[UNREPLIED]` entries to it: TCP in `SYN_SENT` plus UDP (any port).
    pub unreplied: u64,
    /// Unreplied TCP `SYN_SENT` entries to it.
    pub syn_sent: u64,
    /// Unreplied UDP entries to it sent to port 53 (DNS always expects an answer).
    pub udp_dns: u64,
    /// Entries to it that got a reply (no `[UNREPLIED]` flag, any protocol or state).
    pub replied: u64,
    /// Unreplied `proto/port` pairs (backend side), the 8 lowest.
    pub ports: Vec<String>,
    /// Evidence: the first unreplied entry to it.
    pub source: Option<Source>,
}

/// A destination that many SNATed pod flows go to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SnatDestination {
    /// `proto ip:port` as the node sends it (after DNAT).
    pub key: String,
    /// SNATed entries from pod sources to it.
    pub flows: u64,
    /// Evidence: the first such entry.
    pub source: Option<Source>,
}

/// A key with a count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CountedKey {
    /// Key.
    pub key: String,
    /// Count.
    pub count: u64,
}

/// A conntrack entry that points at the wrong place.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StaleConntrackEntry {
    /// Protocol.
    pub protocol: String,
    /// Original source IP.
    pub src: String,
    /// Original destination (`VIP:port`).
    pub dst: String,
    /// Reply source (the DNAT target).
    pub reply_src: String,
    /// `namespace/name` of the Service.
    pub service: String,
    /// `namespace/name` of the live pod owning `reply_src` now, if any.
    pub reply_src_pod: Option<String>,
    /// `[UNREPLIED]`.
    pub unreplied: bool,
    /// Evidence.
    pub source: Option<Source>,
}

/// iptables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IptablesFacts {
    /// One entry per save collected.
    pub backends: Vec<IptablesBackendFacts>,
    /// Backend kubelet/kube-proxy writes to (`legacy`/`nft`), by the iptables-wrappers heuristic.
    pub live_backend: Option<String>,
    /// Backends holding `KUBE-*` chains.
    pub kube_backends: Vec<String>,
    /// `-A` rules in the live (or default) IPv4 save.
    pub rule_count: u64,
}

/// One iptables save.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IptablesBackendFacts {
    /// `legacy`, `nft`, or `default` (whatever `iptables-save` is).
    pub backend: String,
    /// `4` or `6`.
    pub family: String,
    /// Artifact path.
    pub path: String,
    /// `-A` rules.
    pub rule_count: u64,
    /// `-A` rules per table.
    pub rules_per_table: BTreeMap<String, u64>,
    /// `KUBE-*` chains.
    pub kube_chain_count: u64,
    /// `KUBE-SVC-*`/`KUBE-SVL-*` chains.
    pub kube_svc_chain_count: u64,
    /// `KUBE-SEP-*` chains.
    pub kube_sep_chain_count: u64,
    /// nat PREROUTING or OUTPUT jumps to `KUBE-SERVICES`.
    pub kube_services_hooked: bool,
    /// mangle has `KUBE-IPTABLES-HINT` or `KUBE-KUBELET-CANARY`.
    pub kubelet_hint: bool,
    /// `KUBE-PROXY-CANARY` exists.
    pub proxy_canary: bool,
    /// filter FORWARD policy.
    pub forward_policy: Option<String>,
    /// A FORWARD-path rule accepts pod traffic (KUBE-FORWARD mark, pod-CIDR accept, CNI chain).
    pub forward_accepts_pods: bool,
    /// Evidence for the FORWARD policy.
    pub forward_source: Option<Source>,
    /// How a new TCP connection from a pod to a pod on another node ends in filter
    /// FORWARD, evaluated rule by rule in order (`accept`, `drop`, `reject`, or `mixed`
    /// when it depends on what the save cannot tell: interfaces, marks, ipsets); `null`
    /// when not evaluated (no pod CIDR of this family, no filter table).
    pub forward_pod_verdict: Option<String>,
    /// The rule (or policy) where every such path stops, when all of them stop.
    pub forward_block_rule: Option<String>,
    /// Evidence for `forward_block_rule`.
    pub forward_block_source: Option<Source>,
    /// The KUBE-FIREWALL `block incoming localnet connections` DROP exists.
    pub localnet_drop: bool,
    /// filter `KUBE-FORWARD` drops `--ctstate INVALID` (kube-proxy's guard against
    /// out-of-window packets escaping un-DNAT; kubernetes/kubernetes#74839).
    pub kube_forward_invalid_drop: bool,
    /// Evidence for the INVALID drop rule.
    pub invalid_drop_source: Option<Source>,
    /// `MASQUERADE`/`SNAT` rules reachable from nat `POSTROUTING`.
    pub masquerade_rules: Vec<MasqueradeRule>,
    /// A cloud CNI's or masquerade agent's nat chain (`AWS-SNAT-CHAIN-0`, `IP-MASQ`, …), if any.
    pub cloud_snat_chain: Option<String>,
    /// Evidence: the chain's declaration.
    pub cloud_snat_source: Option<Source>,
    /// Tables printed as `# Table `x' is incompatible`.
    pub incompatible_tables: Vec<String>,
    /// Most repetitions of one identical rule.
    pub max_duplicate_rule: u64,
    /// Evidence for the duplicate.
    pub duplicate_source: Option<Source>,
    /// Evidence: first KUBE-* chain line.
    pub kube_source: Option<Source>,
    /// NAT rules whose target this iptables could not decode (`--to-destination`
    /// followed by an option or `:0`, `[unsupported revision]`): the rules were written
    /// by an iptables of another version (kube-proxy's image vs the node's).
    pub garbled_nat_rules: Vec<GarbledNatRule>,
}

/// A NAT rule printed garbled by `iptables-save`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GarbledNatRule {
    /// Table.
    pub table: String,
    /// Chain.
    pub chain: String,
    /// Target name (`DNAT`, `SNAT`).
    pub target: String,
    /// What is wrong with the target.
    pub reason: String,
    /// Evidence: the rule.
    pub source: Option<Source>,
}

/// nftables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NftFacts {
    /// The ruleset artifact has content.
    pub collected: bool,
    /// Tables as `family name`.
    pub tables: Vec<String>,
    /// `table ip kube-proxy` or `table ip6 kube-proxy` exists.
    pub kube_proxy_table: bool,
    /// Elements in `map service-ips`.
    pub service_ips_count: u64,
    /// Elements in `map no-endpoint-services`.
    pub no_endpoint_services_count: u64,
    /// A kube-proxy table has a `ct state invalid drop` rule (nftables mode's INVALID guard).
    pub kube_proxy_invalid_drop: bool,
    /// Evidence for the INVALID drop rule.
    pub invalid_drop_source: Option<Source>,
    /// `masquerade`/`snat` rules reachable from `type nat hook postrouting` chains (tables
    /// managed by iptables-nft are left out: their iptables save already lists them).
    pub masquerade_rules: Vec<MasqueradeRule>,
    /// Evidence.
    pub source: Option<Source>,
}

/// A source-NAT rule on the nat postrouting path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MasqueradeRule {
    /// Chain holding it (iptables chain, or `family table/chain` for nftables).
    pub chain: String,
    /// `MASQUERADE` or `SNAT`.
    pub target: String,
    /// Applies to pod egress: its source (`-s`/`saddr`) contains or lies in a pod CIDR, is
    /// an ipset/nft set or absent; no positive destination, mark or local-source match; and
    /// the jumps leading to it pass pod traffic too.
    pub pod_egress: bool,
    /// Applies only to marked packets: kube-proxy's `KUBE-POSTROUTING`/`masquerading`,
    /// which SNATs the Service traffic it marked (0x4000), not pod egress.
    pub mark_only: bool,
    /// `--random-fully` (iptables) or `fully-random` (nftables).
    pub random_fully: bool,
    /// Evidence.
    pub source: Option<Source>,
}

/// Source NAT of pod egress, joined over every iptables backend and nftables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SnatFacts {
    /// An iptables save or the nft ruleset was read.
    pub collected: bool,
    /// Some IPv4 rule masquerades pod egress (any backend: legacy, iptables-nft and native
    /// nftables `ip`/`inet` tables all see the packet).
    pub pod_egress_masquerade: bool,
    /// Chains holding any masquerade/SNAT rule, in evidence order, each once (for messages).
    pub masquerade_chains: Vec<String>,
    /// Pod-egress and kube-proxy mark-based rules without `--random-fully`/`fully-random`.
    pub without_random_fully: Vec<MasqueradeRule>,
    /// A CNI or agent whose pod IPs are VPC-routable or that decides itself what to SNAT:
    /// `aws-vpc-cni` (`AWS-SNAT-CHAIN-*`), `ip-masq-agent` (`IP-MASQ`/`IP-MASQ-AGENT`, GKE and AKS).
    pub routable_pod_cni: Option<String>,
    /// Evidence for the CNI hint.
    pub routable_pod_cni_source: Option<Source>,
}

/// IPVS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IpvsFacts {
    /// `ipvsadm -Ln` has content.
    pub collected: bool,
    /// Virtual servers.
    pub virtual_server_count: u64,
    /// Real servers.
    pub real_server_count: u64,
    /// Virtual servers whose IP is a Service ClusterIP.
    pub service_virtual_servers: u64,
    /// `kube-ipvs0` exists in the host namespace.
    pub kube_ipvs0: bool,
    /// Addresses on `kube-ipvs0`.
    pub kube_ipvs0_addresses: Vec<String>,
}

/// DNS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DnsFacts {
    /// Cluster DNS VIPs.
    pub service_ips: Vec<String>,
    /// Cluster DNS endpoint IPs.
    pub endpoint_ips: Vec<String>,
    /// NodeLocal DNSCache address on the host, if any (`169.254.20.10`).
    pub node_local_ip: Option<String>,
    /// Probes through the VIP.
    pub vip: DnsProbeSummary,
    /// Probes to endpoints, per endpoint IP.
    pub endpoints: Vec<DnsServerSummary>,
    /// Every probe.
    pub probes: Vec<DnsProbeFacts>,
}

/// Probe results for a group of servers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DnsProbeSummary {
    /// Probes sent.
    pub total: u64,
    /// Probes that got an answer (any rcode but a timeout/error).
    pub answered: u64,
    /// Probes that timed out or errored.
    pub failed: u64,
    /// Largest latency among answered probes (ms).
    pub max_latency_ms: Option<f64>,
}

/// Probe results for one server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DnsServerSummary {
    /// Server IP.
    pub server: String,
    /// Probes sent.
    pub total: u64,
    /// Answered.
    pub answered: u64,
    /// Failed.
    pub failed: u64,
    /// Largest latency (ms).
    pub max_latency_ms: Option<f64>,
    /// The endpoint is on this node.
    pub local: bool,
}

/// One DNS probe.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DnsProbeFacts {
    /// Namespace sent from.
    pub from_netns: String,
    /// Pod owning that namespace.
    pub from_pod: Option<String>,
    /// Server.
    pub server: String,
    /// `service-vip`, `endpoint`, `nameserver`.
    pub role: String,
    /// `udp`/`tcp`.
    pub transport: String,
    /// Query name.
    pub qname: String,
    /// Outcome (`answer`, `nxdomain`, `servfail`, `timeout`, `error`, …).
    pub outcome: String,
    /// Latency (ms).
    pub latency_ms: Option<f64>,
    /// True unless timeout/error.
    pub answered: bool,
    /// Evidence.
    pub source: Option<Source>,
}

/// Kernel log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KernelLogFacts {
    /// The kernel log was collected.
    pub collected: bool,
    /// Lines read.
    pub lines: u64,
    /// `nf_conntrack: table full, dropping packet`.
    pub conntrack_table_full: LogMatch,
    /// `neighbour: arp_cache|ndisc_cache: neighbor table overflow!`.
    pub neighbour_table_overflow: LogMatch,
    /// `IPVS: … no destination available`.
    pub ipvs_no_destination: LogMatch,
    /// `martian source`.
    pub martian_source: LogMatch,
}

/// Occurrences of one kernel message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogMatch {
    /// Occurrences.
    pub count: u64,
    /// First and last occurrence (evidence), at most 2.
    pub sources: Vec<Source>,
}
