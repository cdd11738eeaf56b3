//! The peer pod-route lookup: a pure engine judging, for every other node's pod CIDR,
//! the route this node's main table would use (longest prefix match), and recognising
//! cloud-routed CNIs that need no such routes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use netsnap_bundle::native::{NetnsSnapshot, RouteRecord};

use super::model::*;
use netsnap_bundle::net::{IpNet, covering_prefix, parse_prefix, parse_route_prefix};

/// A node as the pod-route lookup needs it.
pub(crate) struct Peer {
    pub(crate) name: String,
    /// This node (its routes to itself are not judged).
    pub(crate) local: bool,
    /// Every non-`Hostname` address.
    pub(crate) addresses: Vec<String>,
    pub(crate) internal_ips: Vec<String>,
    pub(crate) ready: Option<bool>,
    pub(crate) pod_cidrs: Vec<String>,
    /// IPs of its live non-hostNetwork pods.
    pub(crate) pod_ips: Vec<String>,
    pub(crate) source: Source,
}

/// The route a prefix matches, with the route's prefix length.
pub(crate) type RouteMatch<'r> = Option<(&'r RouteRecord, u32)>;

/// One pod range of another node to look up.
pub(crate) struct Lookup<'r> {
    pub(crate) range: String,
    /// `pod-cidr` or `pod-ips`.
    pub(crate) target: &'static str,
    /// Pod IPs in the range, for `pod-ips`.
    pub(crate) count: u64,
    /// Prefix length looked up (a pod IP's is the full length).
    pub(crate) len: u32,
    pub(crate) matched: RouteMatch<'r>,
}

/// In the main table (id 0 is how an unspecified table is recorded, as `host_links` reads it).
pub(crate) fn main_table(r: &RouteRecord) -> bool {
    r.table == 254 || r.table == 0
}

/// Main-table routes that can carry traffic to other hosts, with their parsed destination.
/// Local, broadcast and multicast routes are not such paths; blackholes and the like are
/// kept because the kernel stops at them.
pub(crate) fn main_routes(routes: &[RouteRecord]) -> Vec<(&RouteRecord, IpNet)> {
    routes
        .iter()
        .filter(|r| main_table(r))
        .filter(|r| {
            matches!(
                r.route_type.as_str(),
                "" | "unicast" | "blackhole" | "unreachable" | "prohibit" | "throw"
            )
        })
        .filter_map(|r| parse_route_prefix(&r.dst, &r.family).map(|n| (r, n)))
        .collect()
}

/// The route the kernel picks for a whole prefix: the longest destination that contains
/// it, ties broken by the lowest metric.
pub(crate) fn longest_match<'r>(
    routes: &[(&'r RouteRecord, IpNet)],
    target: &IpNet,
) -> RouteMatch<'r> {
    routes
        .iter()
        .filter(|(_, rnet)| {
            rnet.prefix_len() <= target.prefix_len() && rnet.contains(&target.addr())
        })
        .map(|(r, rnet)| (*r, u32::from(rnet.prefix_len())))
        .max_by_key(|(r, rlen)| (*rlen, std::cmp::Reverse(r.metric.unwrap_or(0))))
}

/// Devices that carry pod traffic to other nodes themselves (encapsulation, or a CNI's own
/// routing device), so the route's gateway is not a node address to compare.
pub(crate) fn is_tunnel_device(name: &str, kind: Option<&str>) -> bool {
    const PREFIXES: [&str; 11] = [
        "flannel",
        "vxlan.calico",
        "vxlan-v6.calico",
        "wireguard.cali",
        "tunl",
        "cilium_",
        "antrea-",
        "genev_sys",
        "vxlan_sys",
        "ovn-k8s",
        "weave",
    ];
    matches!(
        kind,
        Some("vxlan" | "ipip" | "ip6tnl" | "sit" | "gre" | "gretap" | "geneve" | "wireguard")
    ) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The cloud routes pods between nodes when its CNI runs here (pods get VPC addresses, or
/// the VPC route table carries the pod ranges): AWS VPC CNI names host veths `eni*` and
/// runs `aws-node`; Azure CNI uses `azure0`/`azv*`; GKE names veths `gke*`.
pub(crate) fn cloud_pod_routing(
    host: &NetnsSnapshot,
    labels: Option<&BTreeMap<String, String>>,
    pods: &[PodFacts],
) -> Option<String> {
    let link = |f: &dyn Fn(&str) -> bool| host.links.iter().any(|l| f(&l.name));
    let label = |k: &str| labels.is_some_and(|l| l.contains_key(k));
    let local_pod = |prefix: &str| {
        pods.iter()
            .any(|p| p.local && p.namespace == "kube-system" && p.name.starts_with(prefix))
    };
    if link(&|n| n.starts_with("eni")) || local_pod("aws-node-") {
        Some("aws-vpc-cni".into())
    } else if link(&|n| n == "azure0" || n.starts_with("azv"))
        || label("kubernetes.azure.com/cluster")
    {
        Some("azure".into())
    } else if link(&|n| n.starts_with("gke")) || label("cloud.google.com/gke-nodepool") {
        Some("gke".into())
    } else {
        None
    }
}

/// Every other node's pod range against the host routes. The podCIDRs are looked up unless
/// some pod sits outside its node's podCIDRs (the CNI's IPAM ignores them: Calico, Cilium
/// cluster-pool), in which case, and for nodes without podCIDRs, the pod IPs are, grouped
/// by the route they match.
pub(crate) fn route_peers(peers: &[Peer], host: &NetnsSnapshot, src: &Source) -> Vec<PeerPodRoute> {
    let mut out = Vec::new();
    // A snapshot without one main-table route was not really collected: judging it would
    // report every node unreachable.
    if !host.routes.iter().any(main_table) || !peers.iter().any(|p| !p.local) {
        return out;
    }
    let ips: Vec<Vec<IpAddr>> = peers
        .iter()
        .map(|p| {
            let set: BTreeSet<IpAddr> = p.pod_ips.iter().filter_map(|i| i.parse().ok()).collect();
            set.into_iter().collect()
        })
        .collect();
    let nets: Vec<Vec<IpNet>> = peers
        .iter()
        .map(|p| p.pod_cidrs.iter().filter_map(|c| parse_prefix(c)).collect())
        .collect();
    let cidrs_used = ips.iter().zip(&nets).all(|(ips, nets)| {
        ips.iter().all(|ip| {
            let same: Vec<&IpNet> = nets
                .iter()
                .filter(|n| n.addr().is_ipv4() == ip.is_ipv4())
                .collect();
            same.is_empty() || same.iter().any(|n| n.contains(ip))
        })
    });
    // A family with nothing but link-local routes is not in use on this host (a dual-stack
    // podCIDR the CNI does not route, or IPv6 disabled): its lookups would all fail.
    let table = main_routes(&host.routes);
    let family_routed = |v4: bool| {
        table.iter().any(|(_, n)| {
            n.addr().is_ipv4() == v4
                && match n.addr() {
                    IpAddr::V4(a) => !a.is_link_local() && !a.is_multicast(),
                    IpAddr::V6(a) => (a.segments()[0] & 0xffc0) != 0xfe80 && !a.is_multicast(),
                }
        })
    };
    let routed = [family_routed(false), family_routed(true)];
    let owner: HashMap<IpAddr, &str> = peers
        .iter()
        .flat_map(|p| {
            p.addresses
                .iter()
                .filter_map(|a| a.parse().ok())
                .map(|a| (a, p.name.as_str()))
        })
        .collect();
    let devices: HashMap<&str, Option<&str>> = host
        .links
        .iter()
        .map(|l| (l.name.as_str(), l.kind.as_deref()))
        .collect();
    let dev_name = |r: &RouteRecord| -> Option<String> {
        r.dev.clone().or_else(|| {
            host.links
                .iter()
                .find(|l| Some(l.index) == r.oif)
                .map(|l| l.name.clone())
        })
    };
    // Whether a route also covers pods of a node other than the `i`th.
    let covers_others = |i: usize, rnet: IpNet| {
        (0..peers.len()).filter(|&o| o != i).any(|o| {
            nets[o]
                .iter()
                .any(|n| n.prefix_len() >= rnet.prefix_len() && rnet.contains(&n.addr()))
                || ips[o].iter().any(|ip| rnet.contains(ip))
        })
    };
    for (i, peer) in peers.iter().enumerate().filter(|(_, p)| !p.local) {
        let mut lookups: Vec<Lookup> = Vec::new();
        if cidrs_used && !nets[i].is_empty() {
            for net in nets[i]
                .iter()
                .filter(|n| routed[usize::from(n.addr().is_ipv4())])
            {
                lookups.push(Lookup {
                    range: net.to_string(),
                    target: "pod-cidr",
                    count: 0,
                    len: u32::from(net.prefix_len()),
                    matched: longest_match(&table, net),
                });
            }
        } else {
            // Pod IPs matching the same route make one entry: (is IPv4, route) -> IPs.
            let mut groups: BTreeMap<(bool, String), (Vec<IpAddr>, RouteMatch)> = BTreeMap::new();
            for &ip in ips[i].iter().filter(|ip| routed[usize::from(ip.is_ipv4())]) {
                let m = longest_match(&table, &IpNet::from(ip));
                let route = m
                    .map(|(r, _)| format!("{} {:?} {:?}", r.dst, dev_name(r), r.gateway))
                    .unwrap_or_default();
                groups
                    .entry((ip.is_ipv4(), route))
                    .or_insert_with(|| (Vec::new(), m))
                    .0
                    .push(ip);
            }
            for ((v4, _), (ips, matched)) in groups {
                let Some(range) = covering_prefix(ips.iter()).map(|n| n.to_string()) else {
                    continue;
                };
                lookups.push(Lookup {
                    range,
                    target: "pod-ips",
                    count: ips.len() as u64,
                    len: if v4 { 32 } else { 128 },
                    matched,
                });
            }
        }
        for Lookup {
            range,
            target,
            count,
            len,
            matched,
        } in lookups
        {
            let mut e = PeerPodRoute {
                node: peer.name.clone(),
                pod_cidr: range,
                target: target.to_string(),
                pod_ip_count: count,
                internal_ips: peer.internal_ips.clone(),
                node_ready: peer.ready,
                source: Some(src.clone()),
                node_source: Some(peer.source.clone()),
                ..PeerPodRoute::default()
            };
            let Some((r, rlen)) = matched else {
                e.kind = "none".into();
                e.missing = true;
                out.push(e);
                continue;
            };
            let dev = dev_name(r);
            e.route_dst = Some(r.dst.clone());
            e.dev = dev.clone();
            e.gateway = r.gateway.map(|g| g.to_string());
            e.gateway_node = r.gateway.and_then(|g| owner.get(&g)).map(|n| n.to_string());
            let tunnel = dev
                .as_deref()
                .is_some_and(|d| is_tunnel_device(d, devices.get(d).copied().flatten()));
            let via_peer = r.gateway.is_some_and(|g| {
                peer.addresses
                    .iter()
                    .any(|a| a.parse::<IpAddr>().ok() == Some(g))
            });
            let aggregate = || {
                (target == "pod-cidr" && rlen < len)
                    || parse_route_prefix(&r.dst, &r.family).is_some_and(|n| covers_others(i, n))
            };
            e.kind = if rlen == 0 {
                "default"
            } else if r.route_type != "unicast" && !r.route_type.is_empty() {
                "unreachable"
            } else if tunnel {
                "tunnel"
            } else if via_peer {
                "node-gateway"
            } else if aggregate() {
                "aggregate"
            } else if r.gateway.is_some() {
                "other-gateway"
            } else {
                "direct"
            }
            .to_string();
            e.missing = matches!(e.kind.as_str(), "default" | "unreachable");
            e.stale_gateway = e.kind == "other-gateway";
            out.push(e);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use netsnap_bundle::layout;

    /// A main-table route from `ip route` text (`[type] dst [via gw] [dev d] …`).
    fn route(text: &str) -> RouteRecord {
        let mut w = text.split_whitespace().peekable();
        let mut r = RouteRecord {
            table: 254,
            route_type: "unicast".into(),
            ..RouteRecord::default()
        };
        if let Some(t) = w.next_if(|t| ["blackhole", "unreachable", "prohibit"].contains(t)) {
            r.route_type = t.into();
        }
        r.dst = w.next().unwrap().into();
        let v6 = r.dst.contains(':') || text.contains("via fd") || text.contains("via fe80");
        r.family = if v6 { "inet6" } else { "inet" }.into();
        while let Some(t) = w.next() {
            match t {
                "via" => r.gateway = w.next().map(|g| g.parse().unwrap()),
                "dev" => r.dev = w.next().map(String::from),
                "proto" => r.protocol = w.next().unwrap().into(),
                _ => {}
            }
        }
        r
    }

    fn host(links: &[(&str, Option<&str>)], routes: &[&str]) -> NetnsSnapshot {
        NetnsSnapshot {
            netns: "host".into(),
            links: links
                .iter()
                .enumerate()
                .map(|(i, (name, kind))| netsnap_bundle::native::LinkRecord {
                    index: i as u32 + 1,
                    name: name.to_string(),
                    kind: kind.map(String::from),
                    ..Default::default()
                })
                .collect(),
            routes: routes.iter().map(|r| route(r)).collect(),
            ..NetnsSnapshot::default()
        }
    }

    fn peer(name: &str, ip: &str, cidrs: &[&str], pods: &[&str]) -> Peer {
        Peer {
            name: name.into(),
            local: name == "node-a",
            addresses: vec![ip.into()],
            internal_ips: vec![ip.into()],
            ready: Some(true),
            pod_cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
            pod_ips: pods.iter().map(|c| c.to_string()).collect(),
            source: Source::line(layout::k8s::NODES, 1),
        }
    }

    /// (node, pod range, kind, missing, stale) of every lookup.
    fn judged(peers: &[Peer], h: &NetnsSnapshot) -> Vec<(String, String, String, bool, bool)> {
        route_peers(peers, h, &Source::file("netns/host/netlink.json"))
            .into_iter()
            .map(|e| (e.node, e.pod_cidr, e.kind, e.missing, e.stale_gateway))
            .collect()
    }

    fn row(
        node: &str,
        cidr: &str,
        kind: &str,
        missing: bool,
        stale: bool,
    ) -> (String, String, String, bool, bool) {
        (node.into(), cidr.into(), kind.into(), missing, stale)
    }

    #[test]
    fn peer_pod_routes_by_longest_prefix() {
        let nodes = [
            peer(
                "node-a",
                "192.168.1.10",
                &["10.244.0.0/24"],
                &["10.244.0.5"],
            ),
            peer(
                "node-b",
                "192.168.1.11",
                &["10.244.1.0/24"],
                &["10.244.1.7"],
            ),
            peer("node-c", "192.168.1.12", &["10.244.2.0/24"], &[]),
        ];
        let base = [
            "default via 192.168.1.1 dev eth0",
            "192.168.1.0/24 dev eth0",
            "10.244.0.0/24 dev cni0",
        ];
        fn with<'s>(base: &[&'s str], extra: &[&'s str]) -> Vec<&'s str> {
            base.iter().chain(extra).copied().collect()
        }
        let links = [
            ("eth0", None),
            ("cni0", Some("bridge")),
            ("flannel.1", Some("vxlan")),
            ("tunl0", Some("ipip")),
        ];

        // flannel vxlan: the gateway is the peer's flannel.1 address, not its node IP.
        let h = host(
            &links,
            &with(
                &base,
                &[
                    "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink",
                    "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
                ],
            ),
        );
        assert_eq!(
            judged(&nodes, &h),
            vec![
                row("node-b", "10.244.1.0/24", "tunnel", false, false),
                row("node-c", "10.244.2.0/24", "tunnel", false, false),
            ]
        );

        // node-c's route is gone: only the default route matches.
        let h = host(
            &links,
            &with(
                &base,
                &["10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink"],
            ),
        );
        assert_eq!(
            judged(&nodes, &h)[1],
            row("node-c", "10.244.2.0/24", "default", true, false)
        );

        // host-gw: via the node's InternalIP; node-c's route still names its old address.
        let h = host(
            &links,
            &with(
                &base,
                &[
                    "10.244.1.0/24 via 192.168.1.11 dev eth0",
                    "10.244.2.0/24 via 192.168.1.99 dev eth0",
                ],
            ),
        );
        assert_eq!(
            judged(&nodes, &h),
            vec![
                row("node-b", "10.244.1.0/24", "node-gateway", false, false),
                row("node-c", "10.244.2.0/24", "other-gateway", false, true),
            ]
        );
        // …or another node's address (gateway_node names it).
        let h = host(
            &links,
            &with(&base, &["10.244.2.0/24 via 192.168.1.11 dev eth0"]),
        );
        let e = route_peers(&nodes, &h, &Source::file("x"));
        assert!(e[1].stale_gateway && e[1].gateway_node.as_deref() == Some("node-b"));
        assert!(e[0].missing && e[0].kind == "default");

        // An aggregate through a router covers every node; a blackhole is no path.
        let h = host(
            &links,
            &with(
                &base,
                &[
                    "10.244.0.0/16 via 192.168.1.254 dev eth0",
                    "blackhole 10.244.2.0/24",
                ],
            ),
        );
        assert_eq!(
            judged(&nodes, &h),
            vec![
                row("node-b", "10.244.1.0/24", "aggregate", false, false),
                row("node-c", "10.244.2.0/24", "unreachable", true, false),
            ]
        );

        // No main-table route at all: routes were not collected, nothing is judged.
        assert!(judged(&nodes, &host(&links, &[])).is_empty());
        // A single-node cluster has nothing to look up.
        assert!(judged(&nodes[..1], &host(&links, &base)).is_empty());
    }

    #[test]
    fn peer_pod_routes_skip_families_the_host_does_not_route() {
        let nodes = [
            peer(
                "node-a",
                "192.168.1.10",
                &["10.244.0.0/24", "fd00:10:244::/64"],
                &[],
            ),
            peer(
                "node-b",
                "192.168.1.11",
                &["10.244.1.0/24", "fd00:10:244:1::/64"],
                &[],
            ),
            peer("node-c", "192.168.1.12", &[], &[]),
        ];
        let links = [
            ("eth0", None),
            ("flannel.1", Some("vxlan")),
            ("flannel-v6.1", Some("vxlan")),
        ];
        // IPv6 has only link-local routes: the v6 podCIDR is not judged.
        let v4 = host(
            &links,
            &[
                "default via 192.168.1.1 dev eth0",
                "fe80::/64 dev eth0",
                "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink",
            ],
        );
        assert_eq!(
            judged(&nodes, &v4),
            vec![row("node-b", "10.244.1.0/24", "tunnel", false, false)]
        );
        // Dual-stack routed: the v6 range is looked up too and falls to the v6 default.
        let dual = host(
            &links,
            &[
                "default via 192.168.1.1 dev eth0",
                "default via fd00::1 dev eth0",
                "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink",
            ],
        );
        assert_eq!(
            judged(&nodes, &dual),
            vec![
                row("node-b", "10.244.1.0/24", "tunnel", false, false),
                row("node-b", "fd00:10:244:1::/64", "default", true, false),
            ]
        );
        let dual = host(
            &links,
            &[
                "default via 192.168.1.1 dev eth0",
                "default via fd00::1 dev eth0",
                "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink",
                "fd00:10:244:1::/64 via fd00:10:244:1:: dev flannel-v6.1 onlink",
            ],
        );
        assert!(judged(&nodes, &dual).iter().all(|r| r.2 == "tunnel"));
    }

    #[test]
    fn peer_pod_routes_scale_to_large_clusters() {
        // 1500 nodes with 30 pods each, every route via a gateway no node owns: the worst
        // case, where each lookup scans every other node's pods for an aggregate.
        let nodes: Vec<Peer> = (0..1500u32)
            .map(|i| {
                let (a, b) = (i / 256, i % 256);
                let net = format!("10.{}.{b}", 100 + a);
                let pods: Vec<String> = (1..=30).map(|p| format!("{net}.{p}")).collect();
                let pods: Vec<&str> = pods.iter().map(String::as_str).collect();
                let cidr = format!("{net}.0/24");
                let mut p = peer(
                    &format!("n{i}"),
                    &format!("172.16.{a}.{b}"),
                    &[&cidr],
                    &pods,
                );
                p.local = i == 0;
                p
            })
            .collect();
        let routes: Vec<String> = std::iter::once("default via 172.16.0.1 dev eth0".to_string())
            .chain((1..1500u32).map(|i| {
                let (a, b) = (i / 256, i % 256);
                format!("10.{}.{b}.0/24 via 172.31.{a}.{b} dev eth0", 100 + a)
            }))
            .collect();
        let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
        let h = host(&[("eth0", None)], &routes);
        let start = std::time::Instant::now();
        let e = route_peers(&nodes, &h, &Source::file("x"));
        let took = start.elapsed();
        assert_eq!(e.len(), 1499);
        assert!(e.iter().all(|r| r.stale_gateway), "{:?}", e[0]);
        assert!(took < std::time::Duration::from_secs(30), "{took:?}");
    }

    #[test]
    fn cloud_routed_cnis_are_recognised() {
        let aws = host(&[("ens5", None), ("eni3f2a9c1b7d0", Some("veth"))], &[]);
        assert_eq!(
            cloud_pod_routing(&aws, None, &[]).as_deref(),
            Some("aws-vpc-cni")
        );
        let azure = host(&[("eth0", None), ("azv1a2b3c4d5e", Some("veth"))], &[]);
        assert_eq!(
            cloud_pod_routing(&azure, None, &[]).as_deref(),
            Some("azure")
        );
        let labels: BTreeMap<String, String> = [(
            "cloud.google.com/gke-nodepool".to_string(),
            "default-pool".to_string(),
        )]
        .into();
        let plain = host(
            &[
                ("eth0", None),
                ("cni0", Some("bridge")),
                ("flannel.1", Some("vxlan")),
            ],
            &[],
        );
        assert_eq!(
            cloud_pod_routing(&plain, Some(&labels), &[]).as_deref(),
            Some("gke")
        );
        assert_eq!(cloud_pod_routing(&plain, None, &[]), None);
    }
}
