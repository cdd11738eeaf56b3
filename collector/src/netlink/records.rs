//! One namespace's netlink dump turned into bundle records: links (with
//! per-interface inet conf), addresses, routes, a neighbour summary, and the
//! namespace-wide net sysctls read by the same thread.

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::TryStreamExt;
use netsnap_bundle::native::{
    AddrRecord, BridgePortInfo, LinkRecord, LinkStats, NeighSummary, NetnsSnapshot, RouteRecord,
    VxlanInfo,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use rtnetlink::packet_route::link::{
    AfSpecInet, AfSpecUnspec, InfoBridgePort, InfoData, InfoPortData, InfoVxlan, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::NeighbourMessage;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};

use crate::sys::sysctl::read_sysctl;

/// Dumps links, addresses, routes (all tables, both families) and neighbours
/// of the calling thread's namespace.
pub async fn dump(id: &str) -> Result<(NetnsSnapshot, BTreeMap<String, String>), String> {
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
    let task = tokio::spawn(conn);
    let res = async {
        let links: Vec<LinkMessage> = handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| format!("link dump: {e}"))?;
        let addrs: Vec<AddressMessage> = handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| format!("address dump: {e}"))?;
        let mut routes: Vec<RouteMessage> = Vec::new();
        for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut m = RouteMessage::default();
            m.header.address_family = fam;
            let part: Vec<RouteMessage> = handle
                .route()
                .get(m)
                .execute()
                .try_collect()
                .await
                .map_err(|e| format!("route dump: {e}"))?;
            routes.extend(part);
        }
        let neigh: Vec<NeighbourMessage> = handle
            .neighbours()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| format!("neighbour dump: {e}"))?;
        Ok::<_, String>((links, addrs, routes, neigh))
    }
    .await;
    task.abort();
    let (links, addrs, routes, neigh) = res?;
    let mut conf = BTreeMap::new();
    for m in &links {
        inet_conf(m, &mut conf);
    }
    let links: Vec<LinkRecord> = links.iter().map(link_record).collect();
    let names: BTreeMap<u32, String> = links.iter().map(|l| (l.index, l.name.clone())).collect();
    Ok((
        NetnsSnapshot {
            netns: id.to_string(),
            addrs: addrs
                .iter()
                .filter_map(|a| addr_record(a, &names))
                .collect(),
            routes: routes.iter().map(|r| route_record(r, &names)).collect(),
            neighbours: neigh_summary(&neigh),
            links,
        },
        conf,
    ))
}

/// Per-interface IPv4 settings from the link dump's `IFLA_INET_CONF`, as
/// `net.ipv4.conf.<ifname>.<key>`: the same values as the sysctl files, without
/// touching `/proc/sys` (whose dentries are per namespace: reading them from many
/// namespaces invalidates the cache each time, which made 500 namespaces cost 20x 50).
fn inet_conf(m: &LinkMessage, out: &mut BTreeMap<String, String>) {
    let Some(name) = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    }) else {
        return;
    };
    for a in &m.attributes {
        let LinkAttribute::AfSpecUnspec(specs) = a else {
            continue;
        };
        for s in specs {
            let AfSpecUnspec::Inet(inet) = s else {
                continue;
            };
            for i in inet {
                let AfSpecInet::DevConf(c) = i else { continue };
                for (k, v) in [
                    ("rp_filter", c.rp_filter),
                    ("forwarding", c.forwarding),
                    ("route_localnet", c.route_localnet),
                    ("proxy_arp", c.proxy_arp),
                    ("arp_ignore", c.arp_ignore),
                    ("arp_announce", c.arp_announce),
                    ("accept_local", c.accept_local),
                ] {
                    out.insert(format!("net.ipv4.conf.{name}.{k}"), v.to_string());
                }
            }
        }
    }
}

fn flag_names(flags: LinkFlags) -> Vec<String> {
    flags
        .iter_names()
        .map(|(name, _)| match name {
            "Controller" => "MASTER".to_string(),
            "Port" => "SLAVE".to_string(),
            other => {
                let mut out = String::new();
                for (i, ch) in other.chars().enumerate() {
                    if ch.is_ascii_uppercase() && i > 0 {
                        out.push('_');
                    }
                    out.push(ch.to_ascii_uppercase());
                }
                out
            }
        })
        .collect()
}

fn mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Converts one RTM_NEWLINK message.
pub fn link_record(m: &LinkMessage) -> LinkRecord {
    let mut l = LinkRecord {
        index: m.header.index,
        flags: flag_names(m.header.flags),
        ..LinkRecord::default()
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(v) => l.mtu = Some(*v),
            LinkAttribute::OperState(s) => l.oper_state = s.to_string(),
            LinkAttribute::Address(b) => l.mac = Some(mac(b)),
            LinkAttribute::Controller(i) => l.master_index = Some(*i),
            LinkAttribute::Link(i) => l.link_index = Some(*i),
            LinkAttribute::LinkNetNsId(i) => l.link_netnsid = Some(*i),
            LinkAttribute::Stats64(s) => {
                l.stats = Some(LinkStats {
                    rx_packets: s.rx_packets,
                    tx_packets: s.tx_packets,
                    rx_bytes: s.rx_bytes,
                    tx_bytes: s.tx_bytes,
                    rx_errors: s.rx_errors,
                    tx_errors: s.tx_errors,
                    rx_dropped: s.rx_dropped,
                    tx_dropped: s.tx_dropped,
                })
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => l.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(v)) => l.vxlan = Some(vxlan_info(v)),
                        LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                            let mut bp = BridgePortInfo::default();
                            for x in p {
                                match x {
                                    InfoBridgePort::HairpinMode(h) => bp.hairpin = Some(*h),
                                    InfoBridgePort::State(s) => {
                                        bp.state = Some(s.to_string().to_ascii_lowercase())
                                    }
                                    _ => {}
                                }
                            }
                            l.bridge_port = Some(bp);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    l
}

fn vxlan_info(v: &[InfoVxlan]) -> VxlanInfo {
    let mut x = VxlanInfo::default();
    for a in v {
        match a {
            InfoVxlan::Id(i) => x.id = Some(*i),
            InfoVxlan::Local(ip) => x.local = Some(IpAddr::V4(*ip)),
            InfoVxlan::Local6(ip) => x.local = Some(IpAddr::V6(*ip)),
            InfoVxlan::Port(p) => x.port = Some(*p),
            InfoVxlan::Link(i) => x.link_index = Some(*i),
            _ => {}
        }
    }
    x
}

fn addr_record(m: &AddressMessage, names: &BTreeMap<u32, String>) -> Option<AddrRecord> {
    let mut address = None;
    let mut local = None;
    let mut label = None;
    let mut broadcast = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Label(s) => label = Some(s.clone()),
            AddressAttribute::Broadcast(b) => broadcast = Some(IpAddr::V4(*b)),
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
    // point-to-point links (what `ip addr` shows first is the local one).
    let address = local.or(address)?;
    Some(AddrRecord {
        ifindex: m.header.index,
        ifname: label.or_else(|| names.get(&m.header.index).cloned()),
        address,
        prefix_len: m.header.prefix_len,
        scope: match m.header.scope {
            AddressScope::Universe => "global".to_string(),
            s => s.to_string(),
        },
        broadcast,
    })
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

fn route_record(m: &RouteMessage, names: &BTreeMap<u32, String>) -> RouteRecord {
    let h = &m.header;
    let mut r = RouteRecord {
        table: u32::from(h.table),
        family: match h.address_family {
            AddressFamily::Inet => "inet".into(),
            AddressFamily::Inet6 => "inet6".into(),
            other => format!("{other:?}").to_ascii_lowercase(),
        },
        dst: "default".into(),
        route_type: format!("{:?}", h.kind).to_ascii_lowercase(),
        protocol: h.protocol.to_string(),
        scope: h.scope.to_string(),
        ..RouteRecord::default()
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => {
                if let Some(ip) = route_addr(d) {
                    r.dst = format!("{ip}/{}", h.destination_prefix_length);
                }
            }
            RouteAttribute::Gateway(g) => r.gateway = route_addr(g),
            RouteAttribute::Oif(i) => {
                r.oif = Some(*i);
                r.dev = names.get(i).cloned();
            }
            RouteAttribute::PrefSource(p) => r.prefsrc = route_addr(p),
            RouteAttribute::Priority(p) => r.metric = Some(*p),
            RouteAttribute::Table(t) => r.table = *t,
            _ => {}
        }
    }
    r
}

fn neigh_summary(msgs: &[NeighbourMessage]) -> NeighSummary {
    let mut s = NeighSummary::default();
    for m in msgs {
        match m.header.family {
            AddressFamily::Inet => s.ipv4 += 1,
            AddressFamily::Inet6 => s.ipv6 += 1,
            _ => continue,
        }
        *s.by_state
            .entry(m.header.state.to_string().to_ascii_uppercase())
            .or_insert(0) += 1;
    }
    s
}

/// Per-interface IPv4 settings kept for every interface.
const CONF_KEYS: &[&str] = &[
    "rp_filter",
    "forwarding",
    "route_localnet",
    "proxy_arp",
    "arp_ignore",
    "arp_announce",
    "accept_local",
];

/// Namespace-wide net sysctls kept.
const NET_KEYS: &[&str] = &[
    "net.ipv4.ip_forward",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.neigh.default.gc_thresh1",
    "net.ipv4.neigh.default.gc_thresh2",
    "net.ipv4.neigh.default.gc_thresh3",
    "net.ipv6.neigh.default.gc_thresh1",
    "net.ipv6.neigh.default.gc_thresh2",
    "net.ipv6.neigh.default.gc_thresh3",
    "net.ipv6.conf.all.forwarding",
    "net.ipv6.conf.all.disable_ipv6",
    "net.ipv6.conf.default.disable_ipv6",
    "net.core.somaxconn",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_count",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
];

/// The calling thread's namespace's net sysctls (present keys only): the
/// namespace-wide ones and `conf.all` / `conf.default`. Per-interface values
/// come from netlink (see `inet_conf`).
pub fn read_net_sysctls() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for k in NET_KEYS {
        if let Some(v) = read_sysctl(k) {
            out.insert((*k).to_string(), v);
        }
    }
    for c in ["all", "default"] {
        for k in CONF_KEYS {
            let key = format!("net.ipv4.conf.{c}.{k}");
            if let Some(v) = read_sysctl(&key) {
                out.insert(key, v);
            }
        }
    }
    out
}
