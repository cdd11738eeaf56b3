//! Addresses and prefixes: netsnap's one CIDR vocabulary, over the `ipnet` crate, IPv4
//! and IPv6 alike. Every crate that compares addresses (the parsers, the collector's
//! correlation, the analyzer's joins and rules) uses these functions instead of masking
//! bits by hand.
//!
//! Bundle fields keep addresses as the strings the tools printed; these functions
//! parse them at the point of comparison, and anything unparsable simply matches
//! nothing (never a panic).

use std::net::IpAddr;

pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// `a.b.c.d/len` or `v6/len` (host bits allowed, as `ip addr` prints interface
/// addresses), or a bare address as a full-length prefix.
pub fn parse_prefix(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Like [`parse_prefix`], plus `default` (the whole address space of `family`: `inet6`
/// for IPv6, anything else for IPv4), as `ip route` prints it.
pub fn parse_route_prefix(s: &str, family: &str) -> Option<IpNet> {
    if s == "default" {
        let any: IpAddr = if family == "inet6" {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        };
        return IpNet::new(any, 0).ok();
    }
    parse_prefix(s)
}

/// `cidr` (which must carry a `/len`) holds the address `ip`; false when either does
/// not parse or the families differ.
pub fn cidr_contains(cidr: &str, ip: &str) -> bool {
    match (cidr.parse::<IpNet>(), ip.parse::<IpAddr>()) {
        (Ok(net), Ok(ip)) => net.contains(&ip),
        _ => false,
    }
}

/// The network of an interface address: `10.1.2.3/24` -> `10.1.2.0/24`.
pub fn network_of(addr: &str) -> Option<IpNet> {
    addr.parse::<IpNet>().ok().map(|n| n.trunc())
}

/// Two prefixes share addresses (one holds the other's network address).
pub fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// [`overlap`] of two CIDR strings (each with a `/len`); false when either does not parse.
pub fn cidrs_overlap(a: &str, b: &str) -> bool {
    match (a.parse::<IpNet>(), b.parse::<IpNet>()) {
        (Ok(a), Ok(b)) => overlap(&a, &b),
        _ => false,
    }
}

/// The fewest prefixes holding exactly the addresses of `nets`: contained prefixes
/// dropped, adjacent halves joined (`10.244.0.0/25` + `10.244.0.128/25` = `10.244.0.0/24`);
/// IPv4 first, each family in address order.
pub fn aggregate(nets: &[IpNet]) -> Vec<IpNet> {
    IpNet::aggregate(&nets.to_vec())
}

/// The smallest single prefix holding every address, or `None` for no address or
/// addresses of both families.
pub fn covering_prefix<'a>(addrs: impl Iterator<Item = &'a IpAddr>) -> Option<IpNet> {
    let mut lo: Option<IpAddr> = None;
    let mut hi: Option<IpAddr> = None;
    for a in addrs {
        lo = Some(lo.map_or(*a, |l| l.min(*a)));
        hi = Some(hi.map_or(*a, |h| h.max(*a)));
    }
    let (lo, hi) = (lo?, hi?);
    let (lo_bits, hi_bits, width) = match (lo, hi) {
        (IpAddr::V4(l), IpAddr::V4(h)) => (u128::from(u32::from(l)), u128::from(u32::from(h)), 32),
        (IpAddr::V6(l), IpAddr::V6(h)) => (u128::from(l), u128::from(h), 128),
        // Mixed families: no one prefix holds both.
        _ => return None,
    };
    // The common leading bits of the lowest and highest address.
    let diff = lo_bits ^ hi_bits;
    let len = if diff == 0 {
        width
    } else {
        width - (128 - diff.leading_zeros())
    };
    IpNet::new(lo, len as u8).ok().map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("a prefix")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn containment_both_families_and_mismatches() {
        assert!(cidr_contains("10.244.0.0/16", "10.244.3.9"));
        assert!(!cidr_contains("10.244.0.0/16", "10.245.0.1"));
        assert!(cidr_contains("0.0.0.0/0", "1.2.3.4"));
        assert!(cidr_contains("10.1.2.3/32", "10.1.2.3"));
        assert!(
            cidr_contains("10.244.7.9/16", "10.244.200.1"),
            "host bits are ignored"
        );
        assert!(cidr_contains("fd00::/64", "fd00::5") && cidr_contains("::/0", "fd00::5"));
        assert!(!cidr_contains("fd00::/64", "10.0.0.1"));
        assert!(!cidr_contains("10.0.0.0/33", "10.0.0.1"));
        assert!(
            !cidr_contains("10.0.0.1", "10.0.0.1"),
            "a CIDR needs its length"
        );
        assert!(!cidr_contains("bad/8", "10.0.0.1") && !cidr_contains("10.0.0.0/8", "bad"));
    }

    #[test]
    fn prefixes_parse_like_the_tools_print_them() {
        assert_eq!(parse_prefix("10.1.2.3"), Some(net("10.1.2.3/32")));
        assert_eq!(parse_prefix("fd00::1"), Some(net("fd00::1/128")));
        assert_eq!(parse_prefix("10.1.2.3/24"), Some(net("10.1.2.3/24")));
        assert_eq!(parse_prefix("10.1.2.3/40"), None);
        assert_eq!(
            parse_route_prefix("default", "inet"),
            Some(net("0.0.0.0/0"))
        );
        assert_eq!(parse_route_prefix("default", "inet6"), Some(net("::/0")));
        assert_eq!(network_of("10.244.7.9/16"), Some(net("10.244.0.0/16")));
        assert_eq!(network_of("10.244.7.9"), None);
    }

    #[test]
    fn overlaps() {
        assert!(overlap(&net("10.244.0.0/16"), &net("10.244.5.0/24")));
        assert!(overlap(&net("10.244.5.3/24"), &net("10.0.0.0/8")));
        assert!(!overlap(&net("10.244.0.0/16"), &net("10.245.0.0/16")));
        assert!(!overlap(&net("10.96.0.0/12"), &net("10.244.0.0/16")));
        assert!(!overlap(&net("10.0.0.0/8"), &net("fd00::/8")));
        assert!(cidrs_overlap("10.244.5.3/24", "10.0.0.0/8"));
        assert!(!cidrs_overlap("10.244.0.0/16", "10.245.0.0/16"));
        assert!(
            !cidrs_overlap("10.244.0.0", "10.244.0.0/16"),
            "a CIDR needs its length"
        );
    }

    #[test]
    fn covering_prefixes() {
        let v4 = [ip("10.96.0.1"), ip("10.96.0.10"), ip("10.100.3.7")];
        assert_eq!(covering_prefix(v4.iter()), Some(net("10.96.0.0/13")));
        assert_eq!(
            covering_prefix([ip("10.96.0.10")].iter()),
            Some(net("10.96.0.10/32"))
        );
        let v6 = [ip("fd00::1"), ip("fd00::ff")];
        assert_eq!(covering_prefix(v6.iter()), Some(net("fd00::/120")));
        assert_eq!(covering_prefix(std::iter::empty()), None);
        assert_eq!(
            covering_prefix([ip("10.0.0.1"), ip("fd00::1")].iter()),
            None
        );
    }

    #[test]
    fn aggregation_adds_no_address() {
        let halves = [
            net("10.244.0.128/25"),
            net("10.244.0.0/25"),
            net("10.244.0.7/32"),
        ];
        assert_eq!(aggregate(&halves), vec![net("10.244.0.0/24")]);
        let gap = [net("10.244.0.0/24"), net("10.244.2.0/24")];
        assert_eq!(aggregate(&gap), gap.to_vec());
        let mixed = [
            net("fd00::/65"),
            net("fd00::8000:0:0:0/65"),
            net("10.0.0.0/8"),
        ];
        assert_eq!(aggregate(&mixed), vec![net("10.0.0.0/8"), net("fd00::/64")]);
    }
}
