//! The join-key and address vocabulary shared by the fact passes, the netfilter scans,
//! the cluster joins and `trace`: CIDR containment and overlap, `ip:port` and Service keys,
//! conntrack destination keys. A leaf: it imports nothing else from `facts`.

use std::net::IpAddr;

use netsnap_bundle::net::{self, IpNet};
pub use netsnap_bundle::net::{cidr_contains, cidrs_overlap};

use crate::parse;

/// Merges CIDRs into the fewest prefixes covering exactly the same addresses
/// ([`net::aggregate`]: contained ranges dropped, sibling halves joined), IPv4 then IPv6;
/// anything unparsable is kept as is, after them.
pub fn aggregate_cidrs(cidrs: &[String]) -> Vec<String> {
    let mut nets = Vec::new();
    let mut other = Vec::new();
    for c in cidrs {
        match c.parse::<IpNet>() {
            Ok(n) => nets.push(n),
            Err(_) => other.push(c.clone()),
        }
    }
    let mut out: Vec<String> = net::aggregate(&nets).iter().map(IpNet::to_string).collect();
    out.extend(other);
    out
}

/// Joins an IP and a port the way the dataplanes print it (`[v6]:port`).
pub fn ip_port(ip: &str, port: impl std::fmt::Display) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The join key of a Service port: `VIP:port/proto` with a lower-case protocol.
pub fn service_key(ip: &str, port: impl std::fmt::Display, proto: &str) -> String {
    format!("{}/{}", ip_port(ip, port), proto.to_ascii_lowercase())
}

/// Most distinct destinations counted for `top_destinations` (a memory bound).
pub const CONNTRACK_DEST_CAP: usize = 100_000;

/// `proto ip:port` (`[ip]:port` for IPv6), the key of a destination tally.
pub(crate) fn destination_key(proto: parse::conntrack::Protocol, ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{} {a}:{port}", proto.as_str()),
        IpAddr::V6(a) => format!("{} [{a}]:{port}", proto.as_str()),
    }
}

/// The IPv4 CIDRs among `cidrs` as (network, mask), the numeric form the conntrack pass
/// tests a million addresses against.
pub(crate) fn ipv4_nets(cidrs: &[String]) -> Vec<(u32, u32)> {
    cidrs
        .iter()
        .filter_map(|c| match c.parse::<IpNet>().ok()? {
            IpNet::V4(n) => Some((u32::from(n.network()), u32::from(n.netmask()))),
            IpNet::V6(_) => None,
        })
        .collect()
}

/// Ports in an `ip_local_port_range` value (`32768\t60999`).
pub(crate) fn port_range_width(v: &str) -> Option<u64> {
    let mut it = v.split_whitespace().map(|p| p.parse::<u64>().ok());
    let (lo, hi) = (it.next()??, it.next()??);
    (hi >= lo).then(|| hi - lo + 1)
}

pub(crate) fn strip_port(target: &str) -> String {
    if let Some(rest) = target.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    target
        .rsplit_once(':')
        .map(|(ip, _)| ip.to_string())
        .unwrap_or_else(|| target.to_string())
}

pub(crate) fn strip_prefix_len(a: &str) -> String {
    a.split('/').next().unwrap_or(a).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_range_and_pod_networks() {
        assert_eq!(port_range_width("32768\t60999"), Some(28232));
        assert_eq!(port_range_width("1024 65535"), Some(64512));
        assert_eq!(port_range_width("60999 32768"), None);
        assert_eq!(port_range_width("32768"), None);
        assert_eq!(
            ipv4_nets(&[
                "10.244.0.0/16".into(),
                "fd00::/64".into(),
                "0.0.0.0/0".into(),
                "bad".into()
            ]),
            [(0x0af4_0000, 0xffff_0000), (0, 0)]
        );
    }

    #[test]
    fn cidrs_aggregate_without_adding_addresses() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // 64 node /24s of 10.244.0.0/18 are that /18.
        let all: Vec<String> = (0..64).map(|i| format!("10.244.{i}.0/24")).collect();
        assert_eq!(aggregate_cidrs(&all), s(&["10.244.0.0/18"]));
        // 62 of them (two missing): no address is added, so several prefixes remain.
        let some: Vec<String> = (0..64)
            .filter(|i| *i != 5 && *i != 40)
            .map(|i| format!("10.244.{i}.0/24"))
            .collect();
        let agg = aggregate_cidrs(&some);
        assert!(agg.len() <= 12, "62 ranges become a handful: {agg:?}");
        let covered: u64 = agg
            .iter()
            .map(|c| 1u64 << (32 - c.split_once('/').unwrap().1.parse::<u32>().unwrap()))
            .sum();
        assert_eq!(covered, 62 * 256, "{agg:?}");
        for c in &some {
            let ip = c.split_once('/').unwrap().0;
            assert!(agg.iter().any(|a| cidr_contains(a, ip)), "{c} lost");
        }
        assert!(
            !agg.iter().any(|a| cidr_contains(a, "10.244.5.1")),
            "{agg:?}"
        );
        // Contained ranges go, unrelated and IPv6 ones stay, garbage is kept as is.
        assert_eq!(
            aggregate_cidrs(&s(&[
                "10.0.0.0/8",
                "10.1.0.0/16",
                "192.168.0.0/24",
                "fd00::/65",
                "fd00:0:0:0:8000::/65",
                "x"
            ])),
            s(&["10.0.0.0/8", "192.168.0.0/24", "fd00::/64", "x"])
        );
    }

    #[test]
    fn keys_and_ports() {
        assert_eq!(service_key("10.96.0.10", 53, "UDP"), "10.96.0.10:53/udp");
        assert_eq!(service_key("fd00::a", 53, "TCP"), "[fd00::a]:53/tcp");
        assert_eq!(strip_port("[fd00::a]:53"), "fd00::a");
        assert_eq!(strip_port("10.1.2.3:80"), "10.1.2.3");
    }
}
