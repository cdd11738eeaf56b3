//! `netns`, `links`, `addrs`, `routes`: the node's network namespaces and what
//! `ip addr` / `ip route show table all` would print in each, with veth peers resolved.

use netsnap_bundle::native::VethPair;
use netsnap_bundle::{Bundle, layout};
use serde::Serialize;

use super::load::{self, NetnsState, no_data};
use super::table::{Table, opt};
use super::{InspectArgs, InspectError, Outcome, emit};
use crate::parse::ip::Link;

/// One row of the `netns` view.
#[derive(Debug, Serialize)]
pub struct NetnsRow {
    /// Bundle id.
    pub id: String,
    /// Inode.
    pub inode: u64,
    /// Names under /run/netns.
    pub names: Vec<String>,
    /// Number of processes.
    pub processes: u32,
    /// `comm` of the first processes.
    pub comms: Vec<String>,
    /// A pause (sandbox) process lives in it.
    pub has_pause: bool,
    /// Owning pod (`namespace/name`), when correlated.
    pub pod: Option<String>,
    /// The host's id for this namespace (`link-netnsid` of host-side veths).
    pub host_nsid: Option<i32>,
    /// Why some of its data is missing.
    pub error: Option<String>,
}

/// `inspect netns`.
pub fn netns(bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    let Some(index) = load::netns_index(bundle)? else {
        return Ok(Outcome::NoData(no_data(
            "netns",
            bundle,
            layout::NETNS_INDEX,
        )));
    };
    let corr = load::pod_correlation(bundle)?;
    let rows: Vec<NetnsRow> = index
        .namespaces
        .iter()
        .map(|n| {
            let pod = corr.as_ref().and_then(|c| {
                c.pods
                    .iter()
                    .find(|p| p.netns.as_deref() == Some(n.id.as_str()))
                    .map(|p| p.pod.clone())
            });
            let mut comms: Vec<String> = n.processes.iter().map(|p| p.comm.clone()).collect();
            comms.dedup();
            NetnsRow {
                id: n.id.clone(),
                inode: n.inode,
                names: n.names.clone(),
                processes: n.process_count,
                comms,
                has_pause: n.has_pause,
                pod,
                host_nsid: n.host_nsid,
                error: n.error.clone(),
            }
        })
        .collect();
    emit(args, &rows, |rows| {
        let mut t = Table::new(&["NETNS", "NSID", "PROCS", "POD", "NAMES", "COMMANDS"]);
        for r in rows {
            let mut comms = r
                .comms
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(",");
            if r.comms.len() > 3 {
                comms.push_str(",...");
            }
            t.row(vec![
                r.id.clone(),
                opt(r.host_nsid),
                r.processes.to_string(),
                r.pod.clone().unwrap_or_else(|| "-".into()),
                if r.names.is_empty() {
                    "-".into()
                } else {
                    r.names.join(",")
                },
                if comms.is_empty() { "-".into() } else { comms },
            ]);
        }
        t.render()
    })
}

fn states_or_no_data(
    view: &str,
    bundle: &Bundle,
    args: &InspectArgs,
) -> Result<Result<Vec<NetnsState>, Outcome>, InspectError> {
    let states = load::netns_states(bundle, args.netns.as_deref())?;
    if !states.is_empty() {
        return Ok(Ok(states));
    }
    let id = args.netns.as_deref().unwrap_or(layout::HOST_NETNS);
    let path = layout::netns_path(id, layout::netns::NETLINK);
    Ok(Err(Outcome::NoData(no_data(view, bundle, &path))))
}

/// One row of the `links` view.
#[derive(Debug, Serialize)]
pub struct LinkRow {
    /// Namespace id.
    pub netns: String,
    /// The interface, as parsed.
    #[serde(flatten)]
    pub link: LinkSummary,
    /// The other end of a veth: `netns:ifname`, when the bundle correlates it.
    pub peer: Option<String>,
}

/// The fields of a link the view shows.
#[derive(Debug, Serialize)]
pub struct LinkSummary {
    /// Index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: Option<String>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Operational state.
    pub state: Option<String>,
    /// Master device.
    pub master: Option<String>,
    /// MAC address.
    pub mac: Option<String>,
    /// `@ifN` peer index.
    pub peer_index: Option<u32>,
    /// `link-netnsid`.
    pub link_netnsid: Option<i32>,
    /// One-line details (vxlan, bridge port).
    pub detail: Option<String>,
}

fn detail(l: &Link) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(v) = &l.vxlan {
        let mut s = format!("vni {}", opt(v.id));
        if let Some(local) = v.local {
            s.push_str(&format!(" local {local}"));
        }
        if let Some(dev) = &v.dev {
            s.push_str(&format!(" dev {dev}"));
        }
        if let Some(p) = v.dstport {
            s.push_str(&format!(" dstport {p}"));
        }
        parts.push(s);
    }
    if let Some(h) = l.bridge_port.as_ref().and_then(|bp| bp.hairpin) {
        parts.push(format!("hairpin {}", if h { "on" } else { "off" }));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn peer_of(pairs: &[VethPair], netns: &str, l: &Link) -> Option<String> {
    pairs.iter().find_map(|p| {
        if p.netns == netns && p.ifindex == l.index {
            Some(format!("{}:{}", p.peer_netns, p.peer_ifname))
        } else if p.peer_netns == netns && p.peer_ifindex == l.index {
            Some(format!("{}:{}", p.netns, p.ifname))
        } else {
            None
        }
    })
}

/// `inspect links`.
pub fn links(bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    let states = match states_or_no_data("links", bundle, args)? {
        Ok(s) => s,
        Err(o) => return Ok(o),
    };
    let all = args.netns.is_none().then_some(states.as_slice());
    let pairs = load::veth_pairs(bundle, all)?;
    let mut rows = Vec::new();
    for s in &states {
        for l in &s.links.links {
            rows.push(LinkRow {
                netns: s.id.clone(),
                peer: peer_of(&pairs, &s.id, l),
                link: LinkSummary {
                    index: l.index,
                    name: l.name.clone(),
                    kind: l
                        .kind
                        .clone()
                        .or_else(|| l.is_veth().then(|| "veth".into())),
                    mtu: l.mtu,
                    state: l.state.clone(),
                    master: l.master.clone(),
                    mac: l.mac.clone(),
                    peer_index: l.peer_index,
                    link_netnsid: l.link_netnsid,
                    detail: detail(l),
                },
            });
        }
    }
    emit(args, &rows, |rows| {
        let mut t = Table::new(&[
            "NETNS", "IDX", "NAME", "KIND", "MTU", "STATE", "MASTER", "PEER", "DETAIL",
        ]);
        t.drop_first(&["IDX", "STATE"]);
        for r in rows {
            let l = &r.link;
            // Without a correlation, show what `ip` shows: `@ifN` in namespace id N.
            let peer = match (&r.peer, l.peer_index, l.link_netnsid) {
                (Some(p), _, _) => p.clone(),
                (None, Some(i), Some(n)) => format!("if{i} nsid {n}"),
                (None, Some(i), None) => format!("if{i}"),
                _ => "-".into(),
            };
            t.row(vec![
                r.netns.clone(),
                l.index.to_string(),
                l.name.clone(),
                opt(l.kind.as_deref()),
                opt(l.mtu),
                opt(l.state.as_deref()),
                opt(l.master.as_deref()),
                peer,
                opt(l.detail.as_deref()),
            ]);
        }
        t.render()
    })
}

/// One row of the `addrs` view.
#[derive(Debug, Serialize)]
pub struct AddrRow {
    /// Namespace id.
    pub netns: String,
    /// Interface name.
    pub ifname: String,
    /// `inet` / `inet6`.
    pub family: String,
    /// `address/prefix`.
    pub address: String,
    /// Broadcast.
    pub broadcast: Option<String>,
    /// Scope.
    pub scope: Option<String>,
}

/// `inspect addrs`.
pub fn addrs(bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    let states = match states_or_no_data("addrs", bundle, args)? {
        Ok(s) => s,
        Err(o) => return Ok(o),
    };
    let mut rows = Vec::new();
    for s in &states {
        for l in &s.links.links {
            for a in &l.addrs {
                rows.push(AddrRow {
                    netns: s.id.clone(),
                    ifname: l.name.clone(),
                    family: a.family.as_str().into(),
                    address: format!("{}/{}", a.address, a.prefix_len),
                    broadcast: a.broadcast.map(|b| b.to_string()),
                    scope: a.scope.clone(),
                });
            }
        }
    }
    emit(args, &rows, |rows| {
        let mut t = Table::new(&["NETNS", "IFACE", "FAMILY", "ADDRESS", "BRD", "SCOPE"]);
        for r in rows {
            t.row(vec![
                r.netns.clone(),
                r.ifname.clone(),
                r.family.clone(),
                r.address.clone(),
                opt(r.broadcast.as_deref()),
                opt(r.scope.as_deref()),
            ]);
        }
        t.render()
    })
}

/// One row of the `routes` view.
#[derive(Debug, Serialize)]
pub struct RouteRow {
    /// Namespace id.
    pub netns: String,
    /// Table.
    pub table: String,
    /// Type.
    #[serde(rename = "type")]
    pub type_: String,
    /// Destination.
    pub dst: String,
    /// Gateway.
    pub gateway: Option<String>,
    /// Device.
    pub dev: Option<String>,
    /// Protocol.
    pub protocol: Option<String>,
    /// Scope.
    pub scope: Option<String>,
    /// Preferred source.
    pub src: Option<String>,
    /// Metric.
    pub metric: Option<u32>,
}

/// `inspect routes`.
pub fn routes(bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    let states = match states_or_no_data("routes", bundle, args)? {
        Ok(s) => s,
        Err(o) => return Ok(o),
    };
    let mut rows = Vec::new();
    let mut any = false;
    for s in &states {
        let Some(routes) = &s.routes else { continue };
        any = true;
        for r in &routes.routes {
            if args.table.as_deref().is_some_and(|t| t != r.table) {
                continue;
            }
            rows.push(RouteRow {
                netns: s.id.clone(),
                table: r.table.clone(),
                type_: r.route_type.clone(),
                dst: r.dst.clone(),
                gateway: r.gateway.map(|g| g.to_string()),
                dev: r.dev.clone(),
                protocol: r.protocol.clone(),
                scope: r.scope.clone(),
                src: r.src.map(|g| g.to_string()),
                metric: r.metric,
            });
        }
    }
    if !any {
        let id = args.netns.as_deref().unwrap_or(layout::HOST_NETNS);
        let path = layout::netns_path(id, layout::netns::IP_ROUTE);
        return Ok(Outcome::NoData(no_data("routes", bundle, &path)));
    }
    emit(args, &rows, |rows| {
        let mut t = Table::new(&[
            "NETNS", "TABLE", "TYPE", "DST", "GATEWAY", "DEV", "PROTO", "SCOPE", "SRC", "METRIC",
        ]);
        t.drop_first(&["METRIC", "PROTO", "SCOPE", "SRC"]);
        for r in rows {
            t.row(vec![
                r.netns.clone(),
                r.table.clone(),
                r.type_.clone(),
                r.dst.clone(),
                opt(r.gateway.as_deref()),
                opt(r.dev.as_deref()),
                opt(r.protocol.as_deref()),
                opt(r.scope.as_deref()),
                opt(r.src.as_deref()),
                opt(r.metric),
            ]);
        }
        t.render()
    })
}
