//! Native JSON artifacts: typed data the collector produces itself (netlink
//! state, namespace index, correlations, DNS probes).
//!
//! Fields are only ever added (with `#[serde(default)]`) within a major format
//! version, so older bundles keep deserializing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `netns/index.json`: every network namespace found on the node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct NetnsIndex {
    /// The namespaces, host first.
    pub namespaces: Vec<NetnsInfo>,
}

/// One network namespace.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct NetnsInfo {
    /// Bundle id: `host` or `ns-<inode>`.
    pub id: String,
    /// Inode of the namespace (`/proc/<pid>/ns/net` -> `net:[inode]`).
    pub inode: u64,
    /// True for the node's initial namespace.
    pub is_host: bool,
    /// Names under `/run/netns` (or `/var/run/netns`) bound to it.
    #[serde(default)]
    pub names: Vec<String>,
    /// The id the host namespace uses for this one (`link-netnsid` of host-side veths).
    #[serde(default)]
    pub host_nsid: Option<i32>,
    /// Processes living in it (capped; see `process_count`).
    #[serde(default)]
    pub processes: Vec<NetnsProcess>,
    /// Total number of processes in it.
    #[serde(default)]
    pub process_count: u32,
    /// Kubernetes pod UID, when a process's cgroup path names one.
    #[serde(default)]
    pub pod_uid: Option<String>,
    /// True when a pod sandbox (`pause`) process lives in it.
    #[serde(default)]
    pub has_pause: bool,
    /// Why some of this namespace's data could not be read, if any.
    #[serde(default)]
    pub error: Option<String>,
}

/// A process in a network namespace. Only identity, never the full command line (secrets).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct NetnsProcess {
    /// PID as seen by the collector.
    pub pid: u32,
    /// `/proc/<pid>/comm`.
    pub comm: String,
    /// The first cgroup path of the process (`/proc/<pid>/cgroup`).
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Pod UID parsed from the cgroup path.
    #[serde(default)]
    pub pod_uid: Option<String>,
    /// Container id parsed from the cgroup path.
    #[serde(default)]
    pub container_id: Option<String>,
}

/// `netns/<id>/netlink.json`: a namespace's interfaces, addresses, routes and neighbours.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct NetnsSnapshot {
    /// The namespace's bundle id.
    pub netns: String,
    /// RTM_GETLINK dump.
    pub links: Vec<LinkRecord>,
    /// RTM_GETADDR dump.
    pub addrs: Vec<AddrRecord>,
    /// RTM_GETROUTE dump, all tables.
    pub routes: Vec<RouteRecord>,
    /// RTM_GETNEIGH summary.
    #[serde(default)]
    pub neighbours: NeighSummary,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct LinkRecord {
    /// Interface index (unique only within its namespace).
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// `IFLA_INFO_KIND`: `veth`, `bridge`, `vxlan`, `dummy`, … (None for physical/loopback).
    #[serde(default)]
    pub kind: Option<String>,
    /// MTU.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Operational state: `UP`, `DOWN`, `UNKNOWN`, `LOWERLAYERDOWN`, …
    #[serde(default)]
    pub oper_state: String,
    /// Interface flags (`UP`, `BROADCAST`, `LOWER_UP`, `NOARP`, …).
    #[serde(default)]
    pub flags: Vec<String>,
    /// Hardware address, `aa:bb:cc:dd:ee:ff`.
    #[serde(default)]
    pub mac: Option<String>,
    /// Index of the master device (bridge, bond, vrf).
    #[serde(default)]
    pub master_index: Option<u32>,
    /// `IFLA_LINK`: for a veth, the peer's index in the peer's namespace.
    #[serde(default)]
    pub link_index: Option<u32>,
    /// `IFLA_LINK_NETNSID`: this namespace's id for the peer's namespace.
    #[serde(default)]
    pub link_netnsid: Option<i32>,
    /// Counters at capture time.
    #[serde(default)]
    pub stats: Option<LinkStats>,
    /// VXLAN details, for `kind == "vxlan"`.
    #[serde(default)]
    pub vxlan: Option<VxlanInfo>,
    /// Bridge-port details, when the link is enslaved to a bridge.
    #[serde(default)]
    pub bridge_port: Option<BridgePortInfo>,
}

/// Interface counters (`IFLA_STATS64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct LinkStats {
    /// Received packets.
    pub rx_packets: u64,
    /// Transmitted packets.
    pub tx_packets: u64,
    /// Received bytes.
    pub rx_bytes: u64,
    /// Transmitted bytes.
    pub tx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Transmitted packets dropped.
    pub tx_dropped: u64,
}

/// VXLAN device details.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct VxlanInfo {
    /// VNI.
    #[serde(default)]
    pub id: Option<u32>,
    /// Local tunnel address.
    #[serde(default)]
    pub local: Option<IpAddr>,
    /// UDP destination port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Index of the underlay device.
    #[serde(default)]
    pub link_index: Option<u32>,
}

/// Bridge-port details.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct BridgePortInfo {
    /// Hairpin mode (`IFLA_BRPORT_MODE`), needed for a pod to reach itself via its Service.
    #[serde(default)]
    pub hairpin: Option<bool>,
    /// STP state name.
    #[serde(default)]
    pub state: Option<String>,
}

/// One address on an interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AddrRecord {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name (label), when known.
    #[serde(default)]
    pub ifname: Option<String>,
    /// The address.
    pub address: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Scope: `global`, `link`, `host`, …
    #[serde(default)]
    pub scope: String,
    /// Broadcast address (IPv4).
    #[serde(default)]
    pub broadcast: Option<IpAddr>,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct RouteRecord {
    /// Routing table id (254 = main, 255 = local).
    pub table: u32,
    /// `inet` or `inet6`.
    pub family: String,
    /// Destination `addr/len`, or `default`.
    pub dst: String,
    /// Gateway.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    #[serde(default)]
    pub oif: Option<u32>,
    /// Output interface name, when resolved.
    #[serde(default)]
    pub dev: Option<String>,
    /// Route type: `unicast`, `local`, `broadcast`, `blackhole`, …
    #[serde(default)]
    pub route_type: String,
    /// Protocol: `kernel`, `boot`, `static`, `bird`, …
    #[serde(default)]
    pub protocol: String,
    /// Scope: `universe`, `link`, `host`, …
    #[serde(default)]
    pub scope: String,
    /// Preferred source address.
    #[serde(default)]
    pub prefsrc: Option<IpAddr>,
    /// Metric / priority.
    #[serde(default)]
    pub metric: Option<u32>,
}

/// Neighbour table summary (the table itself can be huge; counts are what rules need).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct NeighSummary {
    /// IPv4 entries.
    pub ipv4: u64,
    /// IPv6 entries.
    pub ipv6: u64,
    /// Entries per NUD state name (`REACHABLE`, `STALE`, `FAILED`, …).
    #[serde(default)]
    pub by_state: BTreeMap<String, u64>,
}

/// `netns/<id>/link-stats.2.json`: link counters sampled a second time.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct LinkStatsSample {
    /// Milliseconds between the first and this sample.
    pub interval_ms: u64,
    /// Counters per interface index.
    pub links: Vec<LinkStatsEntry>,
}

/// Counters of one interface in a sample.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct LinkStatsEntry {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Counters.
    pub stats: LinkStats,
}

/// `correlation/veth-pairs.json` entry: the two ends of a veth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VethPair {
    /// Namespace of the pod-side end.
    pub netns: String,
    /// Index of the pod-side end in its namespace.
    pub ifindex: u32,
    /// Name of the pod-side end (`eth0`).
    pub ifname: String,
    /// Namespace of the other end (usually `host`).
    pub peer_netns: String,
    /// Index of the other end in its namespace.
    pub peer_ifindex: u32,
    /// Name of the other end (`veth4f7342d`, `cali…`).
    pub peer_ifname: String,
}

/// `node/tool-versions.json`: the first line of each tool's version output.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ToolVersions {
    /// Tool name -> version line, or None when the tool is missing.
    pub tools: BTreeMap<String, Option<String>>,
}

/// `node/bridge-ports.json`: every bridge port of the host namespace.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct BridgePorts {
    /// The ports.
    pub ports: Vec<BridgePort>,
}

/// A bridge port and its hairpin setting (`/sys/class/net/<if>/brport/hairpin_mode`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct BridgePort {
    /// The bridge.
    pub bridge: String,
    /// The port.
    pub port: String,
    /// Hairpin mode.
    pub hairpin: Option<bool>,
}

/// `node/privileges.json`: what the collector was allowed to do.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Privileges {
    /// Effective uid.
    pub euid: u32,
    /// CAP_NET_ADMIN present.
    pub cap_net_admin: bool,
    /// CAP_SYS_ADMIN present (needed for setns).
    pub cap_sys_admin: bool,
    /// What will be missing because of it, one line each.
    #[serde(default)]
    pub consequences: Vec<String>,
}

/// `correlation/pods.json`: pods placed on this node, matched to namespaces.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PodCorrelation {
    /// The node name the API places these pods on.
    pub node_name: Option<String>,
    /// One entry per non-hostNetwork pod on this node.
    pub pods: Vec<PodNetns>,
    /// Namespaces holding a pod-CIDR address that no pod owns (leaked sandboxes).
    #[serde(default)]
    pub unowned_netns: Vec<UnownedNetns>,
}

/// A pod and where its network lives.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PodNetns {
    /// `namespace/name`.
    pub pod: String,
    /// Pod UID.
    pub uid: String,
    /// Pod IPs from the API.
    pub pod_ips: Vec<String>,
    /// The namespace holding the pod's IP, None when no namespace does.
    pub netns: Option<String>,
    /// How the match was made/confirmed: `ip`, `cgroup-uid`, `runtime`.
    #[serde(default)]
    pub matched_by: Vec<String>,
    /// Pod-side interface name (`eth0`).
    #[serde(default)]
    pub ifname: Option<String>,
    /// Pod-side interface MTU.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Host-side veth name.
    #[serde(default)]
    pub host_veth: Option<String>,
    /// Host-side veth index.
    #[serde(default)]
    pub host_veth_index: Option<u32>,
}

/// A namespace with a pod-CIDR address and no pod.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct UnownedNetns {
    /// Namespace id.
    pub netns: String,
    /// The pod-CIDR addresses it holds.
    pub addresses: Vec<String>,
}

/// `dns/probes.json`: the cluster DNS as found, and every query sent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct DnsProbeReport {
    /// Where cluster DNS is.
    pub cluster_dns: ClusterDns,
    /// Every query, one record per attempt.
    pub probes: Vec<DnsProbe>,
}

/// The cluster DNS service as found by the collector.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ClusterDns {
    /// Service VIPs (kube-dns ClusterIPs).
    pub service_ips: Vec<IpAddr>,
    /// Ready endpoint IPs.
    pub endpoint_ips: Vec<IpAddr>,
    /// Cluster domain (`cluster.local`).
    pub cluster_domain: Option<String>,
    /// How it was found: `api`, `resolv.conf`, `option`.
    pub source: String,
}

/// One DNS query attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DnsProbe {
    /// Namespace the query was sent from.
    pub from_netns: String,
    /// `namespace/name` of the pod owning that namespace, when known.
    #[serde(default)]
    pub from_pod: Option<String>,
    /// Server queried.
    pub server: IpAddr,
    /// `service-vip`, `endpoint` or `nameserver`.
    pub server_role: String,
    /// `udp` or `tcp`.
    pub transport: String,
    /// Query name.
    pub qname: String,
    /// Query type (`A`, `AAAA`).
    pub qtype: String,
    /// `answer`, `nxdomain`, `servfail`, `refused`, `other-rcode`, `timeout`, `error`.
    pub outcome: String,
    /// Response code name, when a response arrived.
    #[serde(default)]
    pub rcode: Option<String>,
    /// Answer records, rendered.
    #[serde(default)]
    pub answers: Vec<String>,
    /// Round-trip time in milliseconds, when a response arrived.
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// TC bit set.
    #[serde(default)]
    pub truncated: bool,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Error text for `timeout`/`error`.
    #[serde(default)]
    pub error: Option<String>,
}
