//! Pod facts: pods, their network namespaces and veth links, peer pod routes, and
//! addresses that overlap the pod or Service ranges.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use netsnap_bundle::k8s::{NodeRecord, PodRecord};
use netsnap_bundle::layout;
use netsnap_bundle::native::{BridgePorts, NetnsIndex, NetnsSnapshot, PodCorrelation, VethPair};

use super::*;
use netsnap_bundle::net;

impl Builder<'_> {
    pub(super) fn pods(&mut self, pods: &[(u64, PodRecord)]) {
        let node = self.facts.node.name.clone();
        let correlation: Option<PodCorrelation> = self.read_json(layout::correlation::PODS);
        let by_pod: HashMap<String, &netsnap_bundle::native::PodNetns> = correlation
            .as_ref()
            .map(|c| c.pods.iter().map(|p| (p.pod.clone(), p)).collect())
            .unwrap_or_default();
        for (line, p) in pods {
            let key = format!("{}/{}", p.namespace, p.name);
            let phase = p.phase.clone().unwrap_or_default();
            let corr = by_pod.get(&key);
            let mut f = PodFacts {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                key: key.clone(),
                uid: p.uid.clone(),
                ip: p.pod_ips.first().cloned(),
                ips: p.pod_ips.clone(),
                phase: phase.clone(),
                ready: p.ready,
                host_network: p.host_network,
                node_name: p.node_name.clone(),
                local: p.node_name.as_deref() == Some(node.as_str()),
                live: phase != "Succeeded" && phase != "Failed" && p.deleted_at.is_none(),
                age_seconds: age(self.now, p.created_at),
                terminating: p.deleted_at.is_some(),
                source: Some(Source::line(layout::k8s::PODS, *line)),
                ..PodFacts::default()
            };
            if let Some(c) = corr {
                f.netns = c.netns.clone();
                f.mtu = c.mtu;
                f.host_veth = c.host_veth.clone();
            }
            if p.namespace == "kube-system" && p.name.starts_with("kube-proxy") && f.local {
                self.facts.node.kube_proxy_pod = true;
            }
            self.facts.pods.push(f);
        }
    }

    /// Compares the pod range, the Service range, the host's subnets and local bridges.
    pub(super) fn cidr_overlaps(&mut self) {
        let n = &self.facts.node;
        let pod_ranges = if n.cluster_pod_cidrs.is_empty() {
            n.pod_cidrs.clone()
        } else {
            n.cluster_pod_cidrs.clone()
        };
        let vips: Vec<IpAddr> = self
            .facts
            .services
            .iter()
            .flat_map(|s| s.cluster_ips.iter())
            .filter_map(|ip| ip.parse().ok())
            .collect();
        let service_ranges: Vec<String> = [
            net::covering_prefix(vips.iter().filter(|a| a.is_ipv4())),
            net::covering_prefix(vips.iter().filter(|a| a.is_ipv6())),
        ]
        .into_iter()
        .flatten()
        .map(|n| n.to_string())
        .collect();
        // (cidr, kind, device, source)
        let mut ranges: Vec<(String, &str, Option<String>, Option<Source>)> = Vec::new();
        ranges.extend(
            pod_ranges
                .iter()
                .map(|c| (c.clone(), "pod-range", None, None)),
        );
        ranges.extend(
            service_ranges
                .iter()
                .map(|c| (c.clone(), "service-range", None, None)),
        );
        // Bridges with pod veths are the CNI's own (their gateway address is in the pod range).
        let cni_bridges: BTreeSet<&str> = self
            .facts
            .links
            .iter()
            .filter(|l| l.netns == layout::HOST_NETNS && l.pod.is_some())
            .filter_map(|l| l.master.as_deref())
            .collect();
        for l in self
            .facts
            .links
            .iter()
            .filter(|l| l.netns == layout::HOST_NETNS)
        {
            if is_cni_device(&l.name, &l.kind) || cni_bridges.contains(l.name.as_str()) {
                continue;
            }
            let kind = if l.kind == "bridge" {
                "local-bridge"
            } else {
                "host-subnet"
            };
            for a in &l.addresses {
                let Some(net) = net::network_of(a).map(|n| n.to_string()) else {
                    continue;
                };
                if net.starts_with("169.254.")
                    || net.starts_with("fe80:")
                    || net.starts_with("127.")
                {
                    continue;
                }
                ranges.push((net, kind, Some(l.name.clone()), l.source.clone()));
            }
        }
        let pairs_that_matter = |a: &str, b: &str| {
            matches!(
                (a, b),
                ("pod-range", "service-range")
                    | ("pod-range", "host-subnet")
                    | ("pod-range", "local-bridge")
                    | ("service-range", "host-subnet")
                    | ("service-range", "local-bridge")
            )
        };
        let mut overlaps = Vec::new();
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if !pairs_that_matter(a.1, b.1) || !cidrs_overlap(&a.0, &b.0) {
                    continue;
                }
                overlaps.push(CidrOverlap {
                    a: a.0.clone(),
                    a_kind: a.1.to_string(),
                    a_device: a.2.clone(),
                    b: b.0.clone(),
                    b_kind: b.1.to_string(),
                    b_device: b.2.clone(),
                    source: a.3.clone().or_else(|| b.3.clone()),
                });
            }
        }
        self.facts.node.service_ranges = service_ranges;
        self.facts.node.cidr_overlaps = overlaps;
    }

    /// Looks up every other node's pod range in the host's main routing table.
    pub(super) fn peer_pod_routes(&mut self, nodes: &[(u64, NodeRecord)], snaps: &[NetnsSnapshot]) {
        let Some(host) = snaps.iter().find(|s| s.netns == layout::HOST_NETNS) else {
            return;
        };
        let me = self.facts.node.name.clone();
        let labels = nodes
            .iter()
            .find(|(_, n)| n.name == me)
            .map(|(_, n)| &n.labels);
        self.facts.node.cloud_pod_routing = cloud_pod_routing(host, labels, &self.facts.pods);
        let host_ips: HashSet<IpAddr> = host.addrs.iter().map(|a| a.address).collect();
        let mut pod_ips: HashMap<&str, Vec<String>> = HashMap::new();
        for p in &self.facts.pods {
            if !p.live || p.host_network {
                continue;
            }
            if let Some(n) = p.node_name.as_deref() {
                pod_ips.entry(n).or_default().extend(p.ips.iter().cloned());
            }
        }
        let peers: Vec<Peer> = nodes
            .iter()
            .map(|(line, n)| {
                let internal_ips: Vec<String> = n
                    .addresses
                    .iter()
                    .filter(|a| a.type_ == "InternalIP")
                    .map(|a| a.address.clone())
                    .collect();
                // The manifest's node name can differ from the Node object's (hostname
                // fallback); an InternalIP configured on the host identifies this node too.
                let local = n.name == me
                    || internal_ips
                        .iter()
                        .filter_map(|ip| ip.parse::<IpAddr>().ok())
                        .any(|ip| host_ips.contains(&ip));
                Peer {
                    name: n.name.clone(),
                    local,
                    addresses: n
                        .addresses
                        .iter()
                        .filter(|a| a.type_ != "Hostname")
                        .map(|a| a.address.clone())
                        .collect(),
                    internal_ips,
                    ready: n
                        .conditions
                        .iter()
                        .find(|c| c.type_ == "Ready")
                        .map(|c| c.status == "True"),
                    pod_cidrs: n.pod_cidrs.clone(),
                    pod_ips: pod_ips.get(n.name.as_str()).cloned().unwrap_or_default(),
                    source: Source::line(layout::k8s::NODES, *line),
                }
            })
            .collect();
        let src = Source::file(&layout::netns_path(
            layout::HOST_NETNS,
            layout::netns::NETLINK,
        ));
        self.facts.node.peer_pod_routes = route_peers(&peers, host, &src);
    }

    pub(super) fn netns_and_links(&mut self, snaps: &[NetnsSnapshot]) {
        let index: NetnsIndex = self.read_json(layout::NETNS_INDEX).unwrap_or_default();
        let veth_pairs: Vec<VethPair> = self
            .read_json(layout::correlation::VETH_PAIRS)
            .unwrap_or_default();
        let bridge_ports: Option<BridgePorts> = self.read_json(layout::node::BRIDGE_PORTS);
        let nsid_to_netns: HashMap<i32, String> = index
            .namespaces
            .iter()
            .filter_map(|n| n.host_nsid.map(|id| (id, n.id.clone())))
            .collect();
        // IP -> namespaces holding it (non-loopback, non-host).
        let mut ip_netns: HashMap<String, BTreeSet<String>> = HashMap::new();
        for s in snaps {
            if s.netns == layout::HOST_NETNS {
                continue;
            }
            for a in &s.addrs {
                if a.address.is_loopback() || a.scope == "host" {
                    continue;
                }
                ip_netns
                    .entry(a.address.to_string())
                    .or_default()
                    .insert(s.netns.clone());
            }
        }
        let pod_cidrs = self.facts.node.pod_cidrs.clone();
        let live_pod_by_ip: HashMap<String, String> = self
            .facts
            .pods
            .iter()
            .filter(|p| p.live && !p.host_network)
            .flat_map(|p| p.ips.iter().map(move |ip| (ip.clone(), p.key.clone())))
            .collect();
        // Pods: fill netns from IP when correlation did not.
        for p in &mut self.facts.pods {
            let mut set = BTreeSet::new();
            for ip in &p.ips {
                if let Some(ns) = ip_netns.get(ip) {
                    set.extend(ns.iter().cloned());
                }
            }
            p.ip_netns = set.into_iter().collect();
            if p.netns.is_none() && p.local && !p.host_network && p.ip_netns.len() == 1 {
                p.netns = p.ip_netns.first().cloned();
            }
        }
        let netns_pod: HashMap<String, String> = self
            .facts
            .pods
            .iter()
            .filter(|p| p.live && p.local && !p.host_network)
            .filter_map(|p| p.netns.clone().map(|n| (n, p.key.clone())))
            .collect();
        let api_pods = self
            .facts
            .collection
            .sources
            .get("k8s-pods")
            .is_none_or(|s| s.available);
        let mut ids: Vec<String> = index.namespaces.iter().map(|n| n.id.clone()).collect();
        for s in snaps {
            if !ids.contains(&s.netns) {
                ids.push(s.netns.clone());
            }
        }
        for id in ids {
            let info = index.namespaces.iter().find(|n| n.id == id);
            let snap = snaps.iter().find(|s| s.netns == id);
            let is_host = info.map(|i| i.is_host).unwrap_or(id == layout::HOST_NETNS);
            let addresses: Vec<String> = snap
                .map(|s| {
                    s.addrs
                        .iter()
                        .filter(|a| {
                            !a.address.is_loopback() && a.scope != "host" && a.scope != "link"
                        })
                        .map(|a| a.address.to_string())
                        .collect()
                })
                .unwrap_or_default();
            let unknown_ips = if is_host || !api_pods {
                Vec::new()
            } else {
                addresses
                    .iter()
                    .filter(|ip| pod_cidrs.iter().any(|c| cidr_contains(c, ip)))
                    .filter(|ip| !live_pod_by_ip.contains_key(*ip))
                    .cloned()
                    .collect()
            };
            self.facts.netns.push(NetnsFacts {
                id: id.clone(),
                is_host,
                names: info.map(|i| i.names.clone()).unwrap_or_default(),
                pod: netns_pod.get(&id).cloned(),
                has_pause: info.is_some_and(|i| i.has_pause),
                process_count: info.map(|i| u64::from(i.process_count)).unwrap_or(0),
                addresses,
                unknown_ips,
                source: Some(Source::file(&layout::netns_path(
                    &id,
                    layout::netns::NETLINK,
                ))),
            });
        }
        // Links.
        let hairpin_by_port: HashMap<String, Option<bool>> = bridge_ports
            .map(|b| b.ports.into_iter().map(|p| (p.port, p.hairpin)).collect())
            .unwrap_or_default();
        // Without any way to map a host veth to its peer namespace, nothing can be called orphan.
        let uplink = self.facts.node.uplink.as_ref().map(|u| u.name.clone());
        let resolvable = !nsid_to_netns.is_empty()
            || !veth_pairs.is_empty()
            || self.facts.pods.iter().any(|p| p.host_veth.is_some());
        for s in snaps {
            let names: HashMap<u32, &str> =
                s.links.iter().map(|l| (l.index, l.name.as_str())).collect();
            for l in &s.links {
                let mut peer_netns = l
                    .link_netnsid
                    .and_then(|id| nsid_to_netns.get(&id).cloned());
                if peer_netns.is_none() {
                    peer_netns = veth_pairs
                        .iter()
                        .find(|v| v.peer_netns == s.netns && v.peer_ifindex == l.index)
                        .map(|v| v.netns.clone());
                }
                let is_host_veth =
                    s.netns == layout::HOST_NETNS && l.kind.as_deref() == Some("veth");
                let pod = if is_host_veth {
                    peer_netns
                        .as_ref()
                        .and_then(|n| netns_pod.get(n).cloned())
                        .or_else(|| {
                            self.facts
                                .pods
                                .iter()
                                .find(|p| p.live && p.host_veth.as_deref() == Some(l.name.as_str()))
                                .map(|p| p.key.clone())
                        })
                } else {
                    None
                };
                let hairpin = l
                    .bridge_port
                    .as_ref()
                    .and_then(|b| b.hairpin)
                    .or_else(|| hairpin_by_port.get(&l.name).copied().flatten());
                let master = l
                    .master_index
                    .and_then(|m| names.get(&m).map(|n| n.to_string()));
                let orphan = is_host_veth
                    && api_pods
                    && resolvable
                    // The node's own uplink can be a veth (kind, containers-as-nodes).
                    && uplink.as_deref() != Some(l.name.as_str())
                    && !s.addrs.iter().any(|a| a.ifindex == l.index && a.scope == "global")
                    && pod.is_none()
                    && master.as_deref() != Some("docker0");
                self.facts.links.push(LinkFacts {
                    netns: s.netns.clone(),
                    name: l.name.clone(),
                    kind: l.kind.clone().unwrap_or_default(),
                    mtu: l.mtu,
                    oper_state: l.oper_state.clone(),
                    master,
                    peer_netns,
                    pod,
                    orphan,
                    hairpin,
                    addresses: s
                        .addrs
                        .iter()
                        .filter(|a| a.ifindex == l.index)
                        .map(|a| format!("{}/{}", a.address, a.prefix_len))
                        .collect(),
                    source: Some(Source::file(&layout::netns_path(
                        &s.netns,
                        layout::netns::NETLINK,
                    ))),
                });
            }
        }
        // Pod veth details.
        let link_by_name: HashMap<String, (Option<u32>, Option<bool>)> = self
            .facts
            .links
            .iter()
            .filter(|l| l.netns == layout::HOST_NETNS)
            .map(|l| (l.name.clone(), (l.mtu, l.hairpin)))
            .collect();
        let pod_links: HashMap<String, String> = self
            .facts
            .links
            .iter()
            .filter_map(|l| l.pod.clone().map(|p| (p, l.name.clone())))
            .collect();
        let mtu_by_netns: HashMap<String, Option<u32>> = self
            .facts
            .links
            .iter()
            .filter(|l| {
                l.netns != layout::HOST_NETNS
                    && l.name != "lo"
                    && (l.name == "eth0" || l.kind == "veth")
            })
            .map(|l| (l.netns.clone(), l.mtu))
            .collect();
        for p in &mut self.facts.pods {
            if p.host_veth.is_none() {
                p.host_veth = pod_links.get(&p.key).cloned();
            }
            if let Some(v) = &p.host_veth
                && let Some((mtu, hairpin)) = link_by_name.get(v)
            {
                p.host_veth_mtu = *mtu;
                p.hairpin = *hairpin;
            }
            if p.mtu.is_none()
                && let Some(ns) = &p.netns
            {
                p.mtu = mtu_by_netns.get(ns).copied().flatten();
            }
        }
        self.facts.node.hairpin_off_ports = self
            .facts
            .links
            .iter()
            .filter(|l| l.hairpin == Some(false))
            .map(|l| format!("{}/{}", l.master.clone().unwrap_or_default(), l.name))
            .collect();
    }
}

/// Devices a CNI, kube-proxy or NodeLocal DNSCache owns: their addresses sit in the pod or
/// Service range on purpose.
pub(crate) fn is_cni_device(name: &str, kind: &str) -> bool {
    const NAMES: [&str; 7] = [
        "lo",
        "kube-ipvs0",
        "nodelocaldns",
        "cni0",
        "cbr0",
        "weave",
        "kube-bridge",
    ];
    const PREFIXES: [&str; 10] = [
        "flannel",
        "cali",
        "tunl",
        "vxlan.calico",
        "cilium_",
        "lxc",
        "antrea-",
        "genev_sys",
        "vxlan_sys",
        "kube-dummy",
    ];
    NAMES.contains(&name)
        || PREFIXES.iter().any(|p| name.starts_with(p))
        || matches!(kind, "vxlan" | "ipip" | "geneve" | "wireguard" | "dummy")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_devices_are_recognised() {
        assert!(is_cni_device("cni0", "bridge") && is_cni_device("flannel.1", "vxlan"));
        assert!(!is_cni_device("eth1", "") && !is_cni_device("docker0", "bridge"));
    }
}
