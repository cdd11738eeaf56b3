//! Adapters between the collector's native netlink JSON
//! ([`netsnap_bundle::native::NetnsSnapshot`]) and the `ip` model, both ways: the
//! analyzer reads either source the same way, and tests build native artifacts
//! from real `ip -j` captures.

use netsnap_bundle::native::{
    AddrRecord, BridgePortInfo, LinkRecord, NetnsSnapshot, RouteRecord, VxlanInfo,
};

use super::{
    Addr, BridgePort, Family, Link, Links, Route, Routes, Vxlan, parse_prefix, table_name,
};

/// Reads a native snapshot into the `ip` model: links (addresses attached by index) and routes.
pub fn from_native(snap: &NetnsSnapshot) -> (Links, Routes) {
    let name_of = |idx: u32| {
        snap.links
            .iter()
            .find(|l| l.index == idx)
            .map(|l| l.name.clone())
    };
    let links = snap
        .links
        .iter()
        .map(|l| {
            let addrs = snap
                .addrs
                .iter()
                .filter(|a| a.ifindex == l.index)
                .map(|a| Addr {
                    line: None,
                    family: Family::of(&a.address),
                    address: a.address,
                    prefix_len: a.prefix_len,
                    peer: None,
                    broadcast: a.broadcast,
                    scope: (!a.scope.is_empty()).then(|| a.scope.clone()),
                    label: a.ifname.clone().filter(|_| a.address.is_ipv4()),
                    flags: Vec::new(),
                    valid_lft: None,
                    preferred_lft: None,
                })
                .collect();
            // For a veth the kernel's IFLA_LINK is the peer's index; for a vlan it
            // is the parent in this namespace (no link-netnsid), which `ip` prints by name.
            let (peer_index, parent) = match (l.link_index, l.link_netnsid) {
                (Some(i), Some(_)) => (Some(i), None),
                (Some(i), None) if l.kind.as_deref() == Some("veth") => (Some(i), None),
                (Some(i), None) => match name_of(i) {
                    Some(n) if i != l.index => (None, Some(n)),
                    _ => (Some(i), None),
                },
                (None, _) => (None, None),
            };
            Link {
                line: None,
                index: l.index,
                name: l.name.clone(),
                peer_index,
                parent,
                flags: l.flags.clone(),
                mtu: l.mtu,
                qdisc: None,
                master: l.master_index.and_then(name_of),
                state: (!l.oper_state.is_empty()).then(|| l.oper_state.clone()),
                group: None,
                qlen: None,
                link_type: None,
                mac: l.mac.clone(),
                link_netnsid: l.link_netnsid,
                link_netns: None,
                kind: l.kind.clone(),
                slave_kind: l.bridge_port.as_ref().map(|_| "bridge_slave".to_string()),
                vxlan: l.vxlan.as_ref().map(|v| Vxlan {
                    id: v.id,
                    local: v.local,
                    remote: None,
                    dev: v.link_index.and_then(name_of),
                    dstport: v.port,
                    learning: None,
                }),
                bridge_port: l.bridge_port.as_ref().map(|b| BridgePort {
                    state: b.state.clone(),
                    hairpin: b.hairpin,
                }),
                addrs,
            }
        })
        .collect();
    let routes = snap
        .routes
        .iter()
        .map(|r| Route {
            line: None,
            family: match r.family.as_str() {
                "inet" => Some(Family::Inet),
                "inet6" => Some(Family::Inet6),
                _ => None,
            },
            route_type: if r.route_type.is_empty() {
                "unicast".into()
            } else {
                r.route_type.clone()
            },
            dst: r.dst.clone(),
            gateway: r.gateway,
            dev: r.dev.clone().or_else(|| r.oif.and_then(name_of)),
            table: table_name(r.table),
            protocol: (!r.protocol.is_empty()).then(|| r.protocol.clone()),
            // `ip` omits the default scope; do the same so both sources read alike.
            scope: (!r.scope.is_empty() && r.scope != "universe" && r.scope != "global")
                .then(|| r.scope.clone()),
            src: r.prefsrc,
            metric: r.metric,
            ..Route::default()
        })
        .collect();
    (
        Links {
            links,
            unparsed: Vec::new(),
        },
        Routes {
            routes,
            unparsed: Vec::new(),
        },
    )
}

/// Converts `ip` links (best from `ip -j -d link` + `ip -j addr`) into native records.
pub fn links_to_native(links: &Links) -> (Vec<LinkRecord>, Vec<AddrRecord>) {
    let index_of = |name: &str| links.by_name(name).map(|l| l.index);
    let mut recs = Vec::new();
    let mut addrs = Vec::new();
    for l in &links.links {
        recs.push(LinkRecord {
            index: l.index,
            name: l.name.clone(),
            kind: l.kind.clone(),
            mtu: l.mtu,
            oper_state: l.state.clone().unwrap_or_default(),
            flags: l.flags.clone(),
            mac: l.mac.clone(),
            master_index: l.master.as_deref().and_then(index_of),
            link_index: l
                .peer_index
                .or_else(|| l.parent.as_deref().and_then(index_of)),
            link_netnsid: l.link_netnsid,
            stats: None,
            vxlan: l.vxlan.as_ref().map(|v| VxlanInfo {
                id: v.id,
                local: v.local,
                port: v.dstport,
                link_index: v.dev.as_deref().and_then(index_of),
            }),
            bridge_port: l.bridge_port.as_ref().map(|b| BridgePortInfo {
                hairpin: b.hairpin,
                state: b.state.clone(),
            }),
        });
        for a in &l.addrs {
            addrs.push(AddrRecord {
                ifindex: l.index,
                ifname: Some(l.name.clone()),
                address: a.address,
                prefix_len: a.prefix_len,
                scope: a.scope.clone().unwrap_or_default(),
                broadcast: a.broadcast,
            });
        }
    }
    (recs, addrs)
}

/// Converts `ip` routes into native records (`links` resolves device names to indexes).
pub fn routes_to_native(routes: &Routes, links: &Links) -> Vec<RouteRecord> {
    routes
        .routes
        .iter()
        .map(|r| {
            let family = r
                .family
                .or_else(|| parse_prefix(&r.dst).map(|(a, _)| Family::of(&a)))
                .unwrap_or(Family::Inet);
            RouteRecord {
                table: match r.table.as_str() {
                    "main" => 254,
                    "local" => 255,
                    "default" => 253,
                    n => n.parse().unwrap_or(0),
                },
                family: family.as_str().to_string(),
                dst: r.dst.clone(),
                gateway: r.gateway,
                oif: r
                    .dev
                    .as_deref()
                    .and_then(|d| links.by_name(d))
                    .map(|l| l.index),
                dev: r.dev.clone(),
                route_type: r.route_type.clone(),
                protocol: r.protocol.clone().unwrap_or_else(|| "boot".into()),
                scope: r.scope.clone().unwrap_or_else(|| "universe".into()),
                prefsrc: r.src,
                metric: r.metric,
            }
        })
        .collect()
}

/// Builds a whole native snapshot from `ip` outputs (used to make test bundles from real captures).
pub fn to_native_snapshot(netns: &str, links: &Links, routes: &Routes) -> NetnsSnapshot {
    let (l, a) = links_to_native(links);
    NetnsSnapshot {
        netns: netns.to_string(),
        links: l,
        addrs: a,
        routes: routes_to_native(routes, links),
        neighbours: Default::default(),
    }
}
