//! Address anonymization with the special ranges kept.
//!
//! Three classes of addresses (`docs/redaction.md`):
//! - **kept as they are**: unspecified, loopback, link-local IPv4, multicast,
//!   reserved/broadcast, the documentation ranges, and a short list of public
//!   resolvers (8.8.8.8, 1.1.1.1, …): they identify nobody and rules read them.
//! - **range kept, host part anonymized**: the private ranges (10/8,
//!   172.16/12, 192.168/16, 100.64/10, fc00::/7) and IPv6 link-local
//!   (fe80::/64): the result stays in the same range, and inside it Crypto-PAn
//!   keeps every prefix relation.
//! - **anything else** (public addresses): Crypto-PAn over the whole address,
//!   re-applied while the result lands in a special or private range (cycle
//!   walking keeps it a bijection on the public space; prefix relations hold
//!   except for the rare addresses that needed a walk).
//!
//! A network written `a.b.c.d/N` whose host bits are zero is anonymized to the
//! anonymized address with its host bits cleared, so `10.244.0.0/16` stays a
//! canonical network that contains every anonymized address of that subnet.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cryptopan::CryptoPan;

/// How an address is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    /// Left as it is.
    Kept,
    /// The first `n` bits are kept, the rest anonymized.
    RangeKept(u32),
    /// Anonymized entirely.
    Anonymized,
}

const V4_KEPT: &[(u32, u32)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
    (0x7f00_0000, 8),  // 127/8 loopback
    (0xa9fe_0000, 16), // 169.254/16 link-local (node-local DNS, metadata)
    (0xc000_0000, 24), // 192.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2/24 TEST-NET-1
    (0xc633_6400, 24), // 198.51.100/24 TEST-NET-2
    (0xcb00_7100, 24), // 203.0.113/24 TEST-NET-3
    (0xc612_0000, 15), // 198.18/15 benchmarking
    (0xe000_0000, 4),  // 224/4 multicast
    (0xf000_0000, 4),  // 240/4 reserved, 255.255.255.255
    // Well-known public resolvers: they say which upstream DNS a node uses and
    // identify no one.
    (0x0808_0808, 32), // 8.8.8.8
    (0x0808_0404, 32), // 8.8.4.4
    (0x0101_0101, 32), // 1.1.1.1
    (0x0100_0001, 32), // 1.0.0.1
    (0x0909_0909, 32), // 9.9.9.9
    (0x9570_7070, 32), // 149.112.112.112
    (0xd043_dede, 32), // 208.67.222.222
    (0xd043_dcdc, 32), // 208.67.220.220
];

const V4_RANGE_KEPT: &[(u32, u32)] = &[
    (0x0a00_0000, 8),  // 10/8
    (0xac10_0000, 12), // 172.16/12
    (0xc0a8_0000, 16), // 192.168/16
    (0x6440_0000, 10), // 100.64/10 shared address space
];

const V6_KEPT: &[(u128, u32)] = &[
    (0, 128),                                         // ::
    (1, 128),                                         // ::1
    (0xff00 << 112, 8),                               // ff00::/8 multicast
    (0x2001_0db8 << 96, 32),                          // 2001:db8::/32 documentation
    (0x2001_4860_4860_0000_0000_0000_0000_8888, 128), // Google
    (0x2001_4860_4860_0000_0000_0000_0000_8844, 128), // Google
    (0x2606_4700_4700_0000_0000_0000_0000_1111, 128), // Cloudflare
    (0x2606_4700_4700_0000_0000_0000_0000_1001, 128), // Cloudflare
    (0x2620_00fe_0000_0000_0000_0000_0000_00fe, 128), // Quad9
];

const V6_RANGE_KEPT: &[(u128, u32)] = &[
    (0xfe80 << 112, 64), // fe80::/64 link-local: keep the /64, hide the interface id
    (0xfe80 << 112, 10), // the rest of fe80::/10
    (0xfd00 << 112, 8),  // fd00::/8 unique local (locally assigned: stays fd…)
    (0xfc00 << 112, 7),  // the rest of fc00::/7
];

fn in_v4(addr: u32, net: u32, len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    addr & mask == net & mask
}

fn in_v6(addr: u128, net: u128, len: u32) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    addr & mask == net & mask
}

/// The class of an IPv4 address.
pub fn class_v4(addr: u32) -> AddrClass {
    if V4_KEPT.iter().any(|&(n, l)| in_v4(addr, n, l)) {
        return AddrClass::Kept;
    }
    match V4_RANGE_KEPT.iter().find(|&&(n, l)| in_v4(addr, n, l)) {
        Some(&(_, l)) => AddrClass::RangeKept(l),
        None => AddrClass::Anonymized,
    }
}

/// The class of an IPv6 address (IPv4-mapped addresses are handled by the caller).
pub fn class_v6(addr: u128) -> AddrClass {
    if V6_KEPT.iter().any(|&(n, l)| in_v6(addr, n, l)) {
        return AddrClass::Kept;
    }
    match V6_RANGE_KEPT.iter().find(|&&(n, l)| in_v6(addr, n, l)) {
        Some(&(_, l)) => AddrClass::RangeKept(l),
        None => AddrClass::Anonymized,
    }
}

/// True when the address is left as it is by design (so a leak scan skips it).
pub fn is_kept(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => class_v4(u32::from(a)) == AddrClass::Kept,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => class_v4(u32::from(v4)) == AddrClass::Kept,
            None => class_v6(u128::from(a)) == AddrClass::Kept,
        },
    }
}

/// Keyed address anonymizer with a cache (conntrack tables repeat addresses).
#[derive(Debug, Clone)]
pub struct AddrAnonymizer {
    pan: CryptoPan,
    cache: HashMap<IpAddr, IpAddr>,
}

/// Bound on the cache, so a table of a million distinct addresses stays bounded.
const CACHE_MAX: usize = 1 << 18;

impl AddrAnonymizer {
    /// An anonymizer for the Crypto-PAn key.
    pub fn new(key: &[u8; 32]) -> Self {
        AddrAnonymizer {
            pan: CryptoPan::new(key),
            cache: HashMap::new(),
        }
    }

    /// Anonymizes an IPv4 address.
    pub fn v4(&self, a: Ipv4Addr) -> Ipv4Addr {
        let x = u32::from(a);
        Ipv4Addr::from(match class_v4(x) {
            AddrClass::Kept => x,
            AddrClass::RangeKept(len) => {
                let mask = u32::MAX << (32 - len);
                (x & mask) | (self.pan.anonymize_v4(x) & !mask)
            }
            AddrClass::Anonymized => {
                let mut y = self.pan.anonymize_v4(x);
                // Cycle walking: bounded in practice (the special space is
                // small); the bound only guards against a pathological key.
                for _ in 0..64 {
                    if class_v4(y) == AddrClass::Anonymized {
                        break;
                    }
                    y = self.pan.anonymize_v4(y);
                }
                y
            }
        })
    }

    /// Anonymizes an IPv6 address (IPv4-mapped ones through [`Self::v4`]).
    pub fn v6(&self, a: Ipv6Addr) -> Ipv6Addr {
        if let Some(v4) = a.to_ipv4_mapped() {
            return self.v4(v4).to_ipv6_mapped();
        }
        let x = u128::from(a);
        Ipv6Addr::from(match class_v6(x) {
            AddrClass::Kept => x,
            AddrClass::RangeKept(len) => {
                let mask = u128::MAX << (128 - len);
                (x & mask) | (self.pan.anonymize_v6(x) & !mask)
            }
            AddrClass::Anonymized => {
                let mut y = self.pan.anonymize_v6(x);
                for _ in 0..64 {
                    if class_v6(y) == AddrClass::Anonymized {
                        break;
                    }
                    y = self.pan.anonymize_v6(y);
                }
                y
            }
        })
    }

    /// Anonymizes an address, cached.
    pub fn ip(&mut self, ip: IpAddr) -> IpAddr {
        if let Some(&out) = self.cache.get(&ip) {
            return out;
        }
        let out = match ip {
            IpAddr::V4(a) => IpAddr::V4(self.v4(a)),
            IpAddr::V6(a) => IpAddr::V6(self.v6(a)),
        };
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(ip, out);
        out
    }

    /// Anonymizes a network `ip/len`: when `ip` is the canonical network address
    /// (host bits zero), the result is canonical too; otherwise (an interface
    /// address with its prefix length) it is the address's own anonymization.
    pub fn net(&mut self, ip: IpAddr, len: u8) -> IpAddr {
        let out = self.ip(ip);
        match (ip, out) {
            (IpAddr::V4(a), IpAddr::V4(o)) if len <= 32 => {
                let mask = if len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(len))
                };
                if u32::from(a) & !mask == 0 {
                    IpAddr::V4(Ipv4Addr::from(u32::from(o) & mask))
                } else {
                    out
                }
            }
            (IpAddr::V6(a), IpAddr::V6(o)) if len <= 128 => {
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(len))
                };
                if u128::from(a) & !mask == 0 {
                    IpAddr::V6(Ipv6Addr::from(u128::from(o) & mask))
                } else {
                    out
                }
            }
            _ => out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn anon() -> AddrAnonymizer {
        AddrAnonymizer::new(&[7u8; 32])
    }

    fn common_prefix_v4(a: u32, b: u32) -> u32 {
        (a ^ b).leading_zeros()
    }

    fn common_prefix_v6(a: u128, b: u128) -> u32 {
        (a ^ b).leading_zeros()
    }

    #[test]
    fn special_ranges_are_kept() {
        let mut a = anon();
        for s in [
            "127.0.0.1",
            "0.0.0.0",
            "169.254.20.10",
            "224.0.0.251",
            "255.255.255.255",
            "192.0.2.7",
            "8.8.8.8",
            "::",
            "::1",
            "ff02::1",
            "2001:db8::5",
        ] {
            let ip: IpAddr = s.parse().expect("literal");
            assert_eq!(a.ip(ip), ip, "{s} must be kept");
        }
    }

    #[test]
    fn private_ranges_stay_private_and_change() {
        let a = anon();
        for (s, net, len) in [
            ("10.244.0.5", "10.0.0.0", 8),
            ("172.18.0.10", "172.16.0.0", 12),
            ("192.168.1.20", "192.168.0.0", 16),
            ("100.64.3.4", "100.64.0.0", 10),
        ] {
            let ip: Ipv4Addr = s.parse().expect("literal");
            let n: Ipv4Addr = net.parse().expect("literal");
            let out = a.v4(ip);
            assert_ne!(out, ip, "{s} must change");
            assert!(in_v4(u32::from(out), u32::from(n), len), "{s} → {out}");
        }
        let ll: Ipv6Addr = "fe80::1cd0:4ff:fed9:6f7d".parse().expect("literal");
        let out = a.v6(ll);
        assert_ne!(out, ll);
        assert_eq!(
            u128::from(out) >> 64,
            u128::from(ll) >> 64,
            "fe80::/64 kept"
        );
        let ula: Ipv6Addr = "fd00:10:244::5".parse().expect("literal");
        assert!(in_v6(u128::from(a.v6(ula)), 0xfc00 << 112, 7));
    }

    #[test]
    fn canonical_networks_stay_canonical() {
        let mut a = anon();
        let net: IpAddr = "10.244.0.0".parse().expect("literal");
        let host: IpAddr = "10.244.0.7".parse().expect("literal");
        let (IpAddr::V4(n), IpAddr::V4(h)) = (a.net(net, 16), a.ip(host)) else {
            panic!("families")
        };
        assert_eq!(u32::from(n) & 0xffff, 0, "host bits of {n} are zero");
        assert!(in_v4(u32::from(h), u32::from(n), 16), "{h} in {n}/16");
        // An interface address with a prefix length is the address itself.
        let ifa: IpAddr = "10.244.0.1".parse().expect("literal");
        assert_eq!(a.net(ifa, 24), a.ip(ifa));
    }

    #[test]
    fn mapped_v4_follows_v4() {
        let a = anon();
        let v4: Ipv4Addr = "10.1.2.3".parse().expect("literal");
        assert_eq!(a.v6(v4.to_ipv6_mapped()), a.v4(v4).to_ipv6_mapped());
    }

    proptest! {
        /// Prefix preservation inside each class: two addresses of the same
        /// kept range share exactly as many leading bits after as before.
        #[test]
        fn v4_prefix_preserving(x in any::<u32>(), y in any::<u32>()) {
            let a = anon();
            let (cx, cy) = (class_v4(x), class_v4(y));
            let (ox, oy) = (u32::from(a.v4(x.into())), u32::from(a.v4(y.into())));
            if cx == AddrClass::Kept {
                prop_assert_eq!(ox, x);
            } else {
                prop_assert_ne!(class_v4(ox), AddrClass::Kept);
            }
            if let (AddrClass::RangeKept(l1), AddrClass::RangeKept(l2)) = (cx, cy)
                && l1 == l2 && common_prefix_v4(x, y) >= l1 {
                    prop_assert_eq!(common_prefix_v4(ox, oy), common_prefix_v4(x, y));
            }
            // A bijection: distinct inputs stay distinct.
            if x != y { prop_assert_ne!(ox, oy); }
        }

        /// Within 10/8, any two addresses keep their exact common prefix.
        #[test]
        fn ten_slash_eight_prefix_preserving(x in 0u32..(1 << 24), y in 0u32..(1 << 24)) {
            let a = anon();
            let (x, y) = (0x0a00_0000 | x, 0x0a00_0000 | y);
            let (ox, oy) = (u32::from(a.v4(x.into())), u32::from(a.v4(y.into())));
            prop_assert_eq!(ox >> 24, 10);
            prop_assert_eq!(common_prefix_v4(ox, oy), common_prefix_v4(x, y));
        }

        /// IPv6 unique-local addresses keep their exact common prefix.
        #[test]
        fn v6_prefix_preserving(x in any::<u128>(), y in any::<u128>()) {
            let a = anon();
            let base = 0xfd00u128 << 112;
            let mask = u128::MAX >> 8;
            let (x, y) = (base | (x & mask), base | (y & mask));
            let (ox, oy) = (u128::from(a.v6(x.into())), u128::from(a.v6(y.into())));
            prop_assert_eq!(common_prefix_v6(ox, oy), common_prefix_v6(x, y));
            if x != y { prop_assert_ne!(ox, oy); }
        }

        /// Networks: an address inside `net/len` is inside the anonymized network.
        #[test]
        fn containment_preserved(host in 0u32..(1 << 24), len in 8u8..=32) {
            let mut a = anon();
            let addr = 0x0a00_0000 | host;
            let mask = u32::MAX << (32 - u32::from(len));
            let net = addr & mask;
            let IpAddr::V4(n) = a.net(IpAddr::V4(net.into()), len) else { panic!() };
            let IpAddr::V4(h) = a.ip(IpAddr::V4(addr.into())) else { panic!() };
            prop_assert_eq!(u32::from(n) & !mask, 0);
            prop_assert_eq!(u32::from(h) & mask, u32::from(n));
        }

        /// Public addresses never land in a special or private range.
        #[test]
        fn public_stays_public(x in any::<u32>()) {
            prop_assume!(class_v4(x) == AddrClass::Anonymized);
            let a = anon();
            prop_assert_eq!(class_v4(u32::from(a.v4(x.into()))), AddrClass::Anonymized);
        }
    }
}
