//! `ip` (iproute2) outputs and the collector's native netlink JSON, read into one
//! typed model: [`Link`] (with its [`Addr`]s), [`Route`], [`Rule`], [`Neigh`].
//!
//! Sources: `ip addr` / `ip -d addr` / `ip link` / `ip -d link` text ([`parse_addr`]),
//! the same as `ip -j` JSON ([`parse_json_links`]), `ip route` text incl.
//! `show table all` and `-6` ([`parse_routes`]) and JSON ([`parse_json_routes`]),
//! `ip rule` ([`parse_rules`]), `ip neigh` ([`parse_neigh`]), and the collector's
//! [`netsnap_bundle::native::NetnsSnapshot`] ([`from_native`]), so the analyzer
//! reads whichever a bundle has. Text items keep their 1-based line; lines not
//! understood are kept as [`Unparsed`]. No input panics.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::Unparsed;

mod json;
mod link;
mod native;
mod route;

pub use json::{parse_json_links, parse_json_routes};
pub use link::parse_addr;
pub use native::{from_native, links_to_native, routes_to_native, to_native_snapshot};
pub use route::{parse_neigh, parse_routes, parse_rules};

/// Errors of the JSON readers (the text parsers never fail, they keep [`Unparsed`] lines).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpError {
    /// The input is not the JSON `ip -j` prints.
    #[error("invalid `ip -j` JSON at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// serde_json's description.
        message: String,
    },
}

impl From<serde_json::Error> for IpError {
    fn from(e: serde_json::Error) -> Self {
        IpError::Json {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }
}

/// Address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// IPv4 (`inet`).
    Inet,
    /// IPv6 (`inet6`).
    Inet6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::Inet
        } else {
            Family::Inet6
        }
    }

    /// `inet` / `inet6`, as `ip` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Inet6 => "inet6",
        }
    }
}

/// Address lifetime (`valid_lft` / `preferred_lft`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifetime {
    /// `forever` (0xffffffff in JSON).
    Forever,
    /// Seconds left (`86391sec`).
    Seconds(u64),
}

/// The output of [`parse_addr`]: interfaces with their addresses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Links {
    /// Interfaces in output order.
    pub links: Vec<Link>,
    /// Lines not understood.
    pub unparsed: Vec<Unparsed>,
}

impl Links {
    /// The interface with this index.
    pub fn by_index(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }

    /// The interface with this name.
    pub fn by_name(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }
}

/// One network interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// 1-based line of the interface's header line (None for JSON and native sources).
    pub line: Option<usize>,
    /// Interface index (unique within its namespace).
    pub index: u32,
    /// Interface name (without the `@…` suffix).
    pub name: String,
    /// `@ifN`: the peer's / lower device's index, often in another namespace (veth).
    pub peer_index: Option<u32>,
    /// `@NAME`: the lower device in the same namespace (vlan, macvlan).
    pub parent: Option<String>,
    /// Flags between `<` and `>`.
    pub flags: Vec<String>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Queueing discipline.
    pub qdisc: Option<String>,
    /// Master device name (bridge, bond, vrf).
    pub master: Option<String>,
    /// Operational state (`UP`, `DOWN`, `UNKNOWN`, `LOWERLAYERDOWN`).
    pub state: Option<String>,
    /// Interface group.
    pub group: Option<String>,
    /// Transmit queue length.
    pub qlen: Option<u32>,
    /// Link-layer type after `link/` (`ether`, `loopback`, `none`).
    pub link_type: Option<String>,
    /// Hardware address.
    pub mac: Option<String>,
    /// `link-netnsid`: this namespace's id of the peer's namespace.
    pub link_netnsid: Option<i32>,
    /// `link-netns`: the peer namespace's name, when `ip` could resolve it.
    pub link_netns: Option<String>,
    /// Device kind from the `-d` detail line or JSON `info_kind` (`veth`, `bridge`, `vxlan`).
    pub kind: Option<String>,
    /// Port kind (`bridge_slave`, `bond_slave`), from `-d` output.
    pub slave_kind: Option<String>,
    /// VXLAN details.
    pub vxlan: Option<Vxlan>,
    /// Bridge-port details.
    pub bridge_port: Option<BridgePort>,
    /// Addresses, in output order.
    pub addrs: Vec<Addr>,
}

impl Link {
    /// True when the interface is administratively up (`UP` flag).
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }

    /// True when the link is a veth (by kind, or by the `@ifN` + `link-netnsid` pattern when `-d` was not used).
    pub fn is_veth(&self) -> bool {
        match &self.kind {
            Some(k) => k == "veth",
            None => {
                self.peer_index.is_some()
                    && (self.link_netnsid.is_some() || self.link_netns.is_some())
            }
        }
    }
}

/// VXLAN device details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Vxlan {
    /// VNI.
    pub id: Option<u32>,
    /// Local tunnel address.
    pub local: Option<IpAddr>,
    /// Remote (unicast) or group (multicast) address.
    pub remote: Option<IpAddr>,
    /// Underlay device.
    pub dev: Option<String>,
    /// UDP destination port.
    pub dstport: Option<u16>,
    /// `learning` / `nolearning`.
    pub learning: Option<bool>,
}

/// Bridge-port details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BridgePort {
    /// STP state (`forwarding`, `disabled`, …).
    pub state: Option<String>,
    /// Hairpin mode.
    pub hairpin: Option<bool>,
}

/// One address on an interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Addr {
    /// 1-based line (None for JSON and native sources).
    pub line: Option<usize>,
    /// Family.
    pub family: Family,
    /// The local address.
    pub address: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Point-to-point peer (`peer X/N`).
    pub peer: Option<IpAddr>,
    /// Broadcast address.
    pub broadcast: Option<IpAddr>,
    /// Scope (`global`, `link`, `host`).
    pub scope: Option<String>,
    /// Label (`eth0`, `eth0:1`), IPv4 only.
    pub label: Option<String>,
    /// Flags (`secondary`, `dynamic`, `noprefixroute`, `nodad`, `tentative`, …).
    pub flags: Vec<String>,
    /// Valid lifetime.
    pub valid_lft: Option<Lifetime>,
    /// Preferred lifetime.
    pub preferred_lft: Option<Lifetime>,
}

/// The output of [`parse_routes`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Routes {
    /// Routes in output order.
    pub routes: Vec<Route>,
    /// Lines not understood.
    pub unparsed: Vec<Unparsed>,
}

/// One route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// 1-based line (None for JSON and native sources).
    pub line: Option<usize>,
    /// Family, when the route says it (a destination, gateway or source address).
    pub family: Option<Family>,
    /// Route type: `unicast` (not printed by `ip`), `local`, `broadcast`, `blackhole`, …
    pub route_type: String,
    /// Destination as printed: `default`, `10.244.3.0/24`, `10.244.3.20` (a host route).
    pub dst: String,
    /// Gateway (`via`).
    pub gateway: Option<IpAddr>,
    /// Output device.
    pub dev: Option<String>,
    /// Table: `main` (not printed by `ip`), `local`, `default` or a number.
    pub table: String,
    /// Protocol (`kernel`, `boot`, `static`, `bird`, …).
    pub protocol: Option<String>,
    /// Scope (`link`, `host`; `universe` is not printed).
    pub scope: Option<String>,
    /// Preferred source (`src`).
    pub src: Option<IpAddr>,
    /// Metric.
    pub metric: Option<u32>,
    /// Next-hop flags (`onlink`, `linkdown`, `dead`).
    pub flags: Vec<String>,
    /// ECMP next hops (`nexthop via … dev … weight …` lines).
    pub nexthops: Vec<Nexthop>,
    /// Tokens not understood, kept in order.
    pub extra: Vec<String>,
}

impl Route {
    /// The destination as `(network, prefix length)`; None for `default`-like or unparsable destinations.
    pub fn dst_net(&self) -> Option<(IpAddr, u8)> {
        parse_prefix(&self.dst)
    }

    /// True for `default` (0.0.0.0/0 or ::/0).
    pub fn is_default(&self) -> bool {
        self.dst == "default" || matches!(self.dst_net(), Some((_, 0)))
    }
}

/// One next hop of a multipath route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Nexthop {
    /// 1-based line.
    pub line: Option<usize>,
    /// Gateway.
    pub gateway: Option<IpAddr>,
    /// Device.
    pub dev: Option<String>,
    /// Weight.
    pub weight: Option<u32>,
    /// Flags (`onlink`, `dead`, `linkdown`).
    pub flags: Vec<String>,
}

/// The output of [`parse_rules`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rules {
    /// Rules in priority order as printed.
    pub rules: Vec<Rule>,
    /// Lines not understood.
    pub unparsed: Vec<Unparsed>,
}

/// One policy-routing rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// 1-based line.
    pub line: usize,
    /// Priority.
    pub priority: u32,
    /// `not` selector.
    pub not: bool,
    /// `from` selector (`all` or a prefix).
    pub from: Option<String>,
    /// `to` selector.
    pub to: Option<String>,
    /// `iif`.
    pub iif: Option<String>,
    /// `oif`.
    pub oif: Option<String>,
    /// `fwmark` as printed (`0x4000/0x4000`).
    pub fwmark: Option<String>,
    /// Table looked up (`local`, `main`, `100`).
    pub lookup: Option<String>,
    /// Other action (`unreachable`, `prohibit`, `blackhole`, `goto N`).
    pub action: Option<String>,
    /// Tokens not understood, kept in order.
    pub extra: Vec<String>,
}

/// The output of [`parse_neigh`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Neighbours {
    /// Entries in output order.
    pub entries: Vec<Neigh>,
    /// Lines not understood.
    pub unparsed: Vec<Unparsed>,
}

/// One neighbour entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neigh {
    /// 1-based line.
    pub line: usize,
    /// Neighbour address.
    pub address: IpAddr,
    /// Device.
    pub dev: Option<String>,
    /// Link-layer address.
    pub lladdr: Option<String>,
    /// NUD states (`REACHABLE`, `STALE`, `FAILED`, `PERMANENT`, …; usually one).
    pub states: Vec<String>,
    /// Lower-case flags (`router`, `proxy`, `extern_learn`).
    pub flags: Vec<String>,
}

/// Parses `a.b.c.d/len`, `a.b.c.d` (host) or an IPv6 equivalent, as (address as
/// printed, prefix length) ([`netsnap_bundle::net::parse_prefix`]).
pub fn parse_prefix(s: &str) -> Option<(IpAddr, u8)> {
    netsnap_bundle::net::parse_prefix(s).map(|n| (n.addr(), n.prefix_len()))
}

/// Table name as `ip` prints it for a numeric id (254 `main`, 255 `local`, 253 `default`).
pub fn table_name(id: u32) -> String {
    match id {
        254 => "main".into(),
        255 => "local".into(),
        253 => "default".into(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            parse_prefix("10.244.3.20"),
            Some(("10.244.3.20".parse().unwrap(), 32))
        );
        assert_eq!(parse_prefix("10.0.0.0/33"), None);
        assert_eq!(
            parse_prefix("10.244.3.7/24"),
            Some(("10.244.3.7".parse().unwrap(), 24)),
            "the address as printed, host bits kept"
        );
        assert_eq!(
            parse_prefix("fd00::/64"),
            Some(("fd00::".parse().unwrap(), 64))
        );
        assert_eq!(parse_prefix("default"), None);
    }
}
