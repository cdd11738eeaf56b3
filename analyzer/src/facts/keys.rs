//! The join-key and address vocabulary shared by the fact passes, the netfilter scans,
//! the cluster joins and `trace`: CIDR containment and overlap, `ip:port` and Service keys,
//! conntrack destination keys. A leaf: it imports nothing else from `facts`.

use std::net::IpAddr;

use crate::parse;

/// Merges CIDRs into the fewest prefixes covering exactly the same addresses: contained
/// ranges dropped, sibling halves joined (`10.244.0.0/25` + `10.244.0.128/25` =
/// `10.244.0.0/24`), repeatedly. IPv4 and IPv6 alike; anything unparsable is kept as is.
pub fn aggregate_cidrs(cidrs: &[String]) -> Vec<String> {
    let mut v4: Vec<(u128, u32)> = Vec::new();
    let mut v6: Vec<(u128, u32)> = Vec::new();
    let mut other: Vec<String> = Vec::new();
    for c in cidrs {
        let parsed = c
            .split_once('/')
            .and_then(|(n, l)| Some((n.parse::<IpAddr>().ok()?, l.parse::<u32>().ok()?)));
        match parsed {
            Some((IpAddr::V4(n), l)) if l <= 32 => v4.push((u128::from(u32::from(n)), l)),
            Some((IpAddr::V6(n), l)) if l <= 128 => v6.push((u128::from(n), l)),
            _ => other.push(c.clone()),
        }
    }
    pub(crate) fn merge(mut nets: Vec<(u128, u32)>, bits: u32) -> Vec<(u128, u32)> {
        let mask = |l: u32| -> u128 {
            if l == 0 {
                0
            } else {
                (u128::MAX << (128 - l)) >> (128 - bits)
            }
        };
        for n in nets.iter_mut() {
            n.0 &= mask(n.1);
        }
        loop {
            nets.sort_unstable();
            nets.dedup();
            let mut out: Vec<(u128, u32)> = Vec::with_capacity(nets.len());
            let mut changed = false;
            for (net, len) in nets.iter().copied() {
                // Drop a range inside the previous one (sorted by address, wider first).
                if let Some(&(pn, pl)) = out.last()
                    && pl <= len
                    && net & mask(pl) == pn
                {
                    changed = true;
                    continue;
                }
                // Join with the previous range when they are the two halves of one prefix.
                if let Some(&(pn, pl)) = out.last()
                    && pl == len
                    && len > 0
                    && pn & mask(len - 1) == net & mask(len - 1)
                    && pn != net
                {
                    out.pop();
                    out.push((pn & mask(len - 1), len - 1));
                    changed = true;
                    continue;
                }
                out.push((net, len));
            }
            nets = out;
            if !changed {
                return nets;
            }
        }
    }
    let mut out: Vec<String> = merge(v4, 32)
        .into_iter()
        .map(|(n, l)| format!("{}/{l}", std::net::Ipv4Addr::from(n as u32)))
        .collect();
    out.extend(
        merge(v6, 128)
            .into_iter()
            .map(|(n, l)| format!("{}/{l}", std::net::Ipv6Addr::from(n))),
    );
    out.extend(other);
    out
}

/// Parses `a.b.c.d/len` or `v6/len` and tests containment.
pub fn cidr_contains(cidr: &str, ip: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len), Ok(ip)) = (
        net.parse::<IpAddr>(),
        len.parse::<u32>(),
        ip.parse::<IpAddr>(),
    ) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (u32::from(n) & mask) == (u32::from(i) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            (u128::from(n) & mask) == (u128::from(i) & mask)
        }
        _ => false,
    }
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

/// The IPv4 CIDRs among `cidrs` as (network, mask).
pub(crate) fn ipv4_nets(cidrs: &[String]) -> Vec<(u32, u32)> {
    cidrs
        .iter()
        .filter_map(|c| {
            let (addr, len) = c.split_once('/')?;
            let addr: std::net::Ipv4Addr = addr.parse().ok()?;
            let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            Some((u32::from(addr) & mask, mask))
        })
        .collect()
}

/// Ports in an `ip_local_port_range` value (`32768\t60999`).
pub(crate) fn port_range_width(v: &str) -> Option<u64> {
    let mut it = v.split_whitespace().map(|p| p.parse::<u64>().ok());
    let (lo, hi) = (it.next()??, it.next()??);
    (hi >= lo).then(|| hi - lo + 1)
}

/// `a.b.c.d/len`, `v6/len`, a bare address (full length) or `default` (of `family`).
pub(crate) fn parse_prefix(s: &str, family: &str) -> Option<(IpAddr, u32)> {
    if s == "default" {
        let any: IpAddr = if family == "inet6" {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        };
        return Some((any, 0));
    }
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip.parse::<IpAddr>().ok()?, len.parse::<u32>().ok()?),
        None => {
            let ip: IpAddr = s.parse().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// `net/len` holds `ip` (numeric: the pod-route join runs it nodes × nodes times).
pub(crate) fn prefix_holds(net: IpAddr, len: u32, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            (u32::from(n) & mask) == (u32::from(i) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            (u128::from(n) & mask) == (u128::from(i) & mask)
        }
        _ => false,
    }
}

/// `10.1.2.3/24` -> `10.1.2.0/24`.
pub(crate) fn network_of(addr: &str) -> Option<String> {
    let (ip, len) = addr.split_once('/')?;
    let len: u32 = len.parse().ok()?;
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Some(format!(
                "{}/{len}",
                std::net::Ipv4Addr::from(u32::from(a) & mask)
            ))
        }
        IpAddr::V6(a) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            Some(format!(
                "{}/{len}",
                std::net::Ipv6Addr::from(u128::from(a) & mask)
            ))
        }
        _ => None,
    }
}

/// Two CIDRs share addresses exactly when one contains the other's network address.
pub(crate) fn cidrs_overlap(a: &str, b: &str) -> bool {
    let (Some(na), Some(nb)) = (network_of(a), network_of(b)) else {
        return false;
    };
    let host = |c: &str| c.split('/').next().unwrap_or_default().to_string();
    cidr_contains(&na, &host(&nb)) || cidr_contains(&nb, &host(&na))
}

/// The smallest prefix holding every address (one family), or `None` for none.
pub(crate) fn covering_prefix<'a>(addrs: impl Iterator<Item = &'a IpAddr>) -> Option<String> {
    let mut lo: Option<u128> = None;
    let mut hi: Option<u128> = None;
    let mut v4 = true;
    for a in addrs {
        let (x, is_v4) = match a {
            IpAddr::V4(a) => (u128::from(u32::from(*a)), true),
            IpAddr::V6(a) => (u128::from(*a), false),
        };
        v4 = is_v4;
        lo = Some(lo.map_or(x, |l| l.min(x)));
        hi = Some(hi.map_or(x, |h| h.max(x)));
    }
    let (lo, hi) = (lo?, hi?);
    let bits = if v4 { 32 } else { 128 };
    // Common leading bits of the lowest and highest address.
    let diff = lo ^ hi;
    let len = if diff == 0 {
        bits
    } else {
        bits - (128 - diff.leading_zeros())
    };
    let mask = if len == 0 {
        0
    } else {
        (u128::MAX << (128 - len)) >> (128 - bits)
    };
    let net = lo & mask;
    Some(if v4 {
        format!("{}/{len}", std::net::Ipv4Addr::from(net as u32))
    } else {
        format!("{}/{len}", std::net::Ipv6Addr::from(net))
    })
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
    fn service_range_and_overlaps() {
        let ips: Vec<IpAddr> = ["10.96.0.1", "10.96.0.10", "10.100.3.7"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(covering_prefix(ips.iter()).as_deref(), Some("10.96.0.0/13"));
        let one: Vec<IpAddr> = vec!["10.96.0.10".parse().unwrap()];
        assert_eq!(
            covering_prefix(one.iter()).as_deref(),
            Some("10.96.0.10/32")
        );
        let v6: Vec<IpAddr> = vec!["fd00::1".parse().unwrap(), "fd00::ff".parse().unwrap()];
        assert_eq!(covering_prefix(v6.iter()).as_deref(), Some("fd00::/120"));
        assert_eq!(covering_prefix(std::iter::empty()), None);
        assert_eq!(
            network_of("10.244.7.9/16").as_deref(),
            Some("10.244.0.0/16")
        );
        assert!(cidrs_overlap("10.244.0.0/16", "10.244.5.0/24"));
        assert!(cidrs_overlap("10.244.5.3/24", "10.0.0.0/8"));
        assert!(!cidrs_overlap("10.244.0.0/16", "10.245.0.0/16"));
        assert!(!cidrs_overlap("10.96.0.0/12", "10.244.0.0/16"));
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
    fn cidr_containment() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(prefix_holds(ip("10.244.0.0"), 16, ip("10.244.3.9")));
        assert!(!prefix_holds(ip("10.244.0.0"), 16, ip("10.245.0.1")));
        assert!(prefix_holds(ip("0.0.0.0"), 0, ip("1.2.3.4")));
        assert!(prefix_holds(ip("10.1.2.3"), 32, ip("10.1.2.3")));
        assert!(
            prefix_holds(ip("::"), 0, ip("fd00::5"))
                && prefix_holds(ip("fd00::"), 64, ip("fd00::5"))
        );
        assert!(
            !prefix_holds(ip("fd00::"), 64, ip("10.0.0.1"))
                && !prefix_holds(ip("10.0.0.0"), 33, ip("10.0.0.1"))
        );
        assert!(cidr_contains("10.244.0.0/16", "10.244.3.9"));
        assert!(!cidr_contains("10.244.0.0/16", "10.245.0.1"));
        assert!(cidr_contains("0.0.0.0/0", "1.2.3.4"));
        assert!(cidr_contains("fd00::/64", "fd00::5"));
        assert!(!cidr_contains("fd00::/64", "10.0.0.1"));
        assert!(!cidr_contains("garbage", "10.0.0.1"));
    }

    #[test]
    fn keys_and_ports() {
        assert_eq!(service_key("10.96.0.10", 53, "UDP"), "10.96.0.10:53/udp");
        assert_eq!(service_key("fd00::a", 53, "TCP"), "[fd00::a]:53/tcp");
        assert_eq!(strip_port("[fd00::a]:53"), "fd00::a");
        assert_eq!(strip_port("10.1.2.3:80"), "10.1.2.3");
    }
}
