//! Rewriting text: one pass over each line replaces addresses, MACs, names and
//! kube-proxy hashes, whatever the artifact (raw tool output or JSON).
//!
//! A line is cut into *chunks*, the maximal runs of `[A-Za-z0-9._:-]`; a chunk
//! that is a MAC or an IPv6 address is replaced whole, otherwise each
//! `:`-separated piece is tried as an IPv4 address, a reversed-octet PTR name
//! (`4.3.2.10.in-addr.arpa`), a kube-proxy chain hash (`KUBE-SVC-…`,
//! `service-XXXXXXXX-…`), a hex address (`/proc/net/ip_vs*`), and finally
//! against the name dictionary (whole tokens: a match must not be flanked by a
//! letter or digit, except for UIDs and container ids embedded in cgroup paths).
//! Replacements use only chunk characters, so JSON stays JSON and every line
//! keeps its line number.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aho_corasick::{AhoCorasick, MatchKind};

use crate::addr::AddrAnonymizer;
use crate::key::Key;
use crate::map::Map;
use crate::names::Shape;

/// How to read an artifact's text.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextMode {
    /// JSON text: backslash escapes (`\n`, `\u0041`) separate tokens.
    pub json: bool,
    /// `/proc/net/ip_vs*`: 8 and 32 hex digits are addresses (network order).
    pub hex_addrs: bool,
}

/// The rewriter: key, dictionary, and the map of what it replaced.
pub struct Rewriter {
    key: Key,
    addrs: AddrAnonymizer,
    names: Vec<(String, String)>,
    unbounded: Vec<bool>,
    matcher: Option<AhoCorasick>,
    v4_cache: std::collections::HashMap<String, String>,
    /// Every replacement made, for the owner's map.
    pub map: Map,
}

fn is_chunk_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-')
}

fn parse_mac(s: &str) -> Option<Vec<u8>> {
    let groups: Vec<&str> = s.split(':').collect();
    if groups.len() != 6 && groups.len() != 14 {
        return None;
    }
    groups
        .iter()
        .map(|g| {
            if g.len() == 2 {
                u8::from_str_radix(g, 16).ok()
            } else {
                None
            }
        })
        .collect()
}

fn is_base32_upper(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

const KUBE_HASH_PREFIXES: &[&str] = &[
    "KUBE-SVC-",
    "KUBE-SEP-",
    "KUBE-FW-",
    "KUBE-XLB-",
    "KUBE-EXT-",
    "KUBE-SVL-",
];
const NFT_HASH_PREFIXES: &[&str] = &["service-", "endpoint-", "external-", "firewall-"];

impl Rewriter {
    /// A rewriter for `key` with the name dictionary `dictionary` (name → replacement).
    pub fn new(key: &Key, dictionary: &BTreeMap<String, String>) -> Self {
        let names: Vec<(String, String)> = dictionary
            .iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect();
        let unbounded = names
            .iter()
            .map(|(n, _)| Shape::of(n).unbounded())
            .collect();
        let matcher = if names.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(names.iter().map(|(n, _)| n.as_str()))
                .ok()
        };
        let mut map = Map::new(key);
        for (n, r) in &names {
            map.names.insert(n.clone(), r.clone());
        }
        Rewriter {
            key: key.clone(),
            addrs: AddrAnonymizer::new(&key.cryptopan_key()),
            names,
            unbounded,
            matcher,
            v4_cache: std::collections::HashMap::new(),
            map,
        }
    }

    /// The anonymized form of one address (recorded in the map).
    pub fn ip(&mut self, ip: IpAddr) -> IpAddr {
        let out = self.addrs.ip(ip);
        if out != ip {
            self.map.addrs.insert(ip.to_string(), out.to_string());
        }
        out
    }

    /// The replacement of an IPv4 address as text, cached by its text: a
    /// conntrack table repeats a few thousand addresses a million times.
    fn v4_text(&mut self, text: &str, a: Ipv4Addr) -> String {
        if let Some(s) = self.v4_cache.get(text) {
            return s.clone();
        }
        let out = self.ip(IpAddr::V4(a)).to_string();
        if self.v4_cache.len() >= 1 << 16 {
            self.v4_cache.clear();
        }
        self.v4_cache.insert(text.to_string(), out.clone());
        out
    }

    fn net(&mut self, ip: IpAddr, len: u8) -> String {
        let out = self.addrs.net(ip, len);
        let plain = self.ip(ip);
        // Recorded whole when it differs from the address alone, and when an interface
        // address (host bits set) became a canonical-looking network by chance: unredact
        // must not read it as a network the analysis derived.
        if out != plain || (is_network(out, len) && !is_network(ip, len)) {
            self.map
                .addrs
                .insert(format!("{ip}/{len}"), format!("{out}/{len}"));
        }
        out.to_string()
    }

    /// The replacement of a MAC (I/G and U/L bits kept; multicast and broadcast kept).
    pub fn mac(&mut self, mac: &[u8]) -> Vec<u8> {
        if mac[0] & 1 == 1 || mac.iter().all(|b| *b == 0) {
            return mac.to_vec();
        }
        let d = self.key.derive("mac", mac);
        let mut out = d[..6].to_vec();
        out[0] = (out[0] & 0xfc) | (mac[0] & 0x03);
        let show = |m: &[u8]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        self.map.macs.insert(show(mac), show(&out));
        out
    }

    fn kube_hash(&mut self, prefix: &str, hash: &str) -> String {
        let d = self.key.derive("kube-proxy-hash", hash.as_bytes());
        // Base32 upper case as kube-proxy prints it, same length.
        const UPPER: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let out: String = d
            .iter()
            .take(hash.len())
            .map(|b| char::from(UPPER[usize::from(b & 31)]))
            .collect();
        self.map
            .hashes
            .insert(format!("{prefix}{hash}"), format!("{prefix}{out}"));
        out
    }

    /// Rewrites one line (or any string) into `out`.
    pub fn rewrite_into(&mut self, line: &str, mode: TextMode, out: &mut String) {
        let b = line.as_bytes();
        let mut i = 0;
        let mut plain_start = 0;
        while i < b.len() {
            if mode.json && b[i] == b'\\' {
                // An escape is a separator: `\n10.0.0.1` must still show the address.
                let n = if b.get(i + 1) == Some(&b'u') { 6 } else { 2 };
                i = (i + n).min(b.len());
                continue;
            }
            if !is_chunk_byte(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && is_chunk_byte(b[i]) && !(mode.json && b[i] == b'\\') {
                i += 1;
            }
            // A prefix length after the chunk: `10.244.0.0/16`.
            let prefix = if b.get(i) == Some(&b'/') {
                let digits: String = line[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .take(3)
                    .collect();
                digits.parse::<u8>().ok()
            } else {
                None
            };
            let chunk = &line[start..i];
            if let Cow::Owned(new) = self.chunk(chunk, prefix, mode) {
                out.push_str(&line[plain_start..start]);
                out.push_str(&new);
                plain_start = i;
            }
        }
        out.push_str(&line[plain_start..]);
    }

    /// Rewrites a string.
    pub fn rewrite(&mut self, s: &str, mode: TextMode) -> String {
        let mut out = String::with_capacity(s.len());
        self.rewrite_into(s, mode, &mut out);
        out
    }

    fn chunk<'a>(&mut self, chunk: &'a str, prefix: Option<u8>, mode: TextMode) -> Cow<'a, str> {
        if chunk.contains(':') {
            if let Some(mac) = parse_mac(chunk) {
                let mut out = Vec::with_capacity(mac.len());
                let (a, rest) = mac.split_at(6);
                out.extend(self.mac(a));
                if rest.len() == 8 {
                    // An iptables LOG `MAC=` field: destination, source, ethertype.
                    out.extend(self.mac(&rest[..6]));
                    out.extend(&rest[6..]);
                }
                let s = out
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":");
                return if s == chunk.to_ascii_lowercase() {
                    Cow::Borrowed(chunk)
                } else {
                    Cow::Owned(s)
                };
            }
            // A bridge id: `8000.12:67:21:6f:19:26` (priority, then the MAC).
            if let Some((prio, rest)) = chunk.split_once('.')
                && prio.len() == 4
                && prio.bytes().all(|c| c.is_ascii_hexdigit())
                && let Some(mac) = parse_mac(rest)
                && mac.len() == 6
            {
                let new = self
                    .mac(&mac)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":");
                return Cow::Owned(format!("{prio}.{new}"));
            }
            if chunk.matches(':').count() >= 2 {
                let trimmed = chunk.trim_end_matches(['.', ':']);
                let trimmed = if trimmed.ends_with(':') || trimmed.is_empty() {
                    chunk
                } else {
                    trimmed
                };
                for candidate in [chunk, trimmed] {
                    if let Ok(a) = candidate.parse::<Ipv6Addr>() {
                        let new = match prefix {
                            Some(len) if candidate.len() == chunk.len() => {
                                self.net(IpAddr::V6(a), len)
                            }
                            _ => self.ip(IpAddr::V6(a)).to_string(),
                        };
                        if new == candidate {
                            return Cow::Borrowed(chunk);
                        }
                        return Cow::Owned(format!("{new}{}", &chunk[candidate.len()..]));
                    }
                }
            }
            let pieces: Vec<&str> = chunk.split(':').collect();
            let last = pieces.len() - 1;
            let mut changed = false;
            let mut out = String::with_capacity(chunk.len());
            for (n, p) in pieces.iter().enumerate() {
                if n > 0 {
                    out.push(':');
                }
                let pfx = if n == last { prefix } else { None };
                let r = self.piece(p, pfx, mode);
                changed |= matches!(r, Cow::Owned(_));
                out.push_str(&r);
            }
            return if changed {
                Cow::Owned(out)
            } else {
                Cow::Borrowed(chunk)
            };
        }
        self.piece(chunk, prefix, mode)
    }

    fn piece<'a>(&mut self, p: &'a str, prefix: Option<u8>, mode: TextMode) -> Cow<'a, str> {
        if p.is_empty() {
            return Cow::Borrowed(p);
        }
        // kube-proxy (iptables/ipvs mode) chain names: KUBE-SVC-<16 base32>.
        for pre in KUBE_HASH_PREFIXES {
            if let Some(h) = p.strip_prefix(pre)
                && h.len() == 16
                && is_base32_upper(h)
            {
                return Cow::Owned(format!("{pre}{}", self.kube_hash(pre, h)));
            }
        }
        // kube-proxy nftables mode: service-<8 base32>-ns/name/… (the rest of the
        // name follows after separators and is rewritten as names).
        for pre in NFT_HASH_PREFIXES {
            if let Some(rest) = p.strip_prefix(pre)
                && rest.len() >= 9
                && rest.as_bytes()[8] == b'-'
                && is_base32_upper(&rest[..8])
            {
                let h = self.kube_hash(pre, &rest[..8]);
                let tail = self.piece(&rest[9..], prefix, mode);
                return Cow::Owned(format!("{pre}{h}-{tail}"));
            }
        }
        // IPv4, possibly ending a sentence with a dot.
        let core = p.strip_suffix('.').unwrap_or(p);
        if core.len() >= 7
            && core.bytes().all(|c| c.is_ascii_digit() || c == b'.')
            && let Ok(a) = core.parse::<Ipv4Addr>()
        {
            let new = match prefix {
                Some(len) if core.len() == p.len() => self.net(IpAddr::V4(a), len),
                _ => self.v4_text(core, a),
            };
            return if new == core {
                Cow::Borrowed(p)
            } else {
                Cow::Owned(format!("{new}{}", &p[core.len()..]))
            };
        }
        if let Some(r) = self.ptr(p) {
            return Cow::Owned(r);
        }
        if mode.hex_addrs
            && let Some(r) = self.hex_addr(p)
        {
            return Cow::Owned(r);
        }
        self.names_in(p)
    }

    /// `4.3.2.10.in-addr.arpa` and the nibble form under `ip6.arpa`.
    fn ptr(&mut self, p: &str) -> Option<String> {
        // Cheap test first: this runs on every word of every line.
        let tail = p.trim_end_matches('.');
        let ends = |suffix: &str| {
            tail.len() > suffix.len()
                && tail.is_char_boundary(tail.len() - suffix.len())
                && tail[tail.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        };
        if !ends(".in-addr.arpa") && !ends(".ip6.arpa") {
            return None;
        }
        let lower = p.to_ascii_lowercase();
        let body = lower.trim_end_matches('.');
        let dot = &p[body.len()..];
        if let Some(rev) = body.strip_suffix(".in-addr.arpa") {
            let octets: Vec<&str> = rev.split('.').collect();
            if octets.len() != 4 {
                return None;
            }
            let fwd: Vec<&str> = octets.iter().rev().copied().collect();
            let a: Ipv4Addr = fwd.join(".").parse().ok()?;
            let IpAddr::V4(n) = self.ip(IpAddr::V4(a)) else {
                return None;
            };
            let o = n.octets();
            return Some(format!(
                "{}.{}.{}.{}.in-addr.arpa{dot}",
                o[3], o[2], o[1], o[0]
            ));
        }
        if let Some(rev) = body.strip_suffix(".ip6.arpa") {
            let nibbles: Vec<&str> = rev.split('.').collect();
            if nibbles.len() != 32 || nibbles.iter().any(|n| n.len() != 1) {
                return None;
            }
            let hex: String = nibbles.iter().rev().copied().collect();
            let a = Ipv6Addr::from(u128::from_str_radix(&hex, 16).ok()?);
            let IpAddr::V6(n) = self.ip(IpAddr::V6(a)) else {
                return None;
            };
            let h = format!("{:032x}", u128::from(n));
            let rev: Vec<String> = h.chars().rev().map(String::from).collect();
            return Some(format!("{}.ip6.arpa{dot}", rev.join(".")));
        }
        None
    }

    /// `/proc/net/ip_vs*` addresses: `0A600001` (IPv4, network order) or 32 hex digits.
    fn hex_addr(&mut self, p: &str) -> Option<String> {
        if !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let upper = p.bytes().any(|c| c.is_ascii_uppercase());
        let s = match p.len() {
            8 => {
                let a = Ipv4Addr::from(u32::from_str_radix(p, 16).ok()?);
                let IpAddr::V4(n) = self.ip(IpAddr::V4(a)) else {
                    return None;
                };
                format!("{:08x}", u32::from(n))
            }
            32 => {
                let a = Ipv6Addr::from(u128::from_str_radix(p, 16).ok()?);
                let IpAddr::V6(n) = self.ip(IpAddr::V6(a)) else {
                    return None;
                };
                format!("{:032x}", u128::from(n))
            }
            _ => return None,
        };
        Some(if upper { s.to_ascii_uppercase() } else { s })
    }

    fn names_in<'a>(&mut self, p: &'a str) -> Cow<'a, str> {
        let Some(m) = &self.matcher else {
            return Cow::Borrowed(p);
        };
        let b = p.as_bytes();
        let mut out: Option<String> = None;
        let mut last = 0;
        for hit in m.find_iter(p) {
            let idx = hit.pattern().as_usize();
            if !self.unbounded[idx] {
                let before = hit.start().checked_sub(1).map(|i| b[i]);
                let after = b.get(hit.end()).copied();
                if before.is_some_and(|c| c.is_ascii_alphanumeric())
                    || after.is_some_and(|c| c.is_ascii_alphanumeric())
                {
                    continue;
                }
            }
            let o = out.get_or_insert_with(|| String::with_capacity(p.len() + 16));
            o.push_str(&p[last..hit.start()]);
            o.push_str(&self.names[idx].1);
            last = hit.end();
        }
        match out {
            Some(mut o) => {
                o.push_str(&p[last..]);
                Cow::Owned(o)
            }
            None => Cow::Borrowed(p),
        }
    }
}

/// True when `ip` has no host bits set under a `len`-bit prefix.
fn is_network(ip: IpAddr, len: u8) -> bool {
    match ip {
        IpAddr::V4(a) => len <= 32 && (len == 32 || u32::from(a) & (u32::MAX >> len) == 0),
        IpAddr::V6(a) => len <= 128 && (len == 128 || u128::from(a) & (u128::MAX >> len) == 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewriter(names: &[&str]) -> Rewriter {
        let key = Key::from_bytes([9; 32]);
        let mut set = crate::names::NameSet::default();
        for n in names {
            set.add(n);
        }
        Rewriter::new(&key, &set.dictionary(&key))
    }

    #[test]
    fn iptables_line() {
        let mut r = rewriter(&["web", "shop"]);
        let line = r#"-A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m comment --comment "shop/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-TCOU7JCQXEZGVUNU"#;
        let out = r.rewrite(line, TextMode::default());
        assert!(!out.contains("10.96.0.20"), "{out}");
        assert!(!out.contains("shop/web"), "{out}");
        assert!(!out.contains("TCOU7JCQXEZGVUNU"), "{out}");
        assert!(out.contains(":http cluster IP"), "{out}");
        assert!(out.contains("/32 -p tcp"), "{out}");
        assert_eq!(out, r.rewrite(line, TextMode::default()), "consistent");
        let sep = r.rewrite("-j KUBE-SEP-7QBKTOBWZOW2ADYZ", TextMode::default());
        assert!(
            sep.starts_with("-j KUBE-SEP-") && sep.len() == "-j KUBE-SEP-7QBKTOBWZOW2ADYZ".len(),
            "{sep}"
        );
    }

    #[test]
    fn addresses_macs_and_ptr() {
        let mut r = rewriter(&[]);
        let ip = r.rewrite("10.244.0.3", TextMode::default());
        let ptr = r.rewrite("3.0.244.10.in-addr.arpa.", TextMode::default());
        let want: Vec<&str> = ip.split('.').rev().collect();
        assert_eq!(ptr, format!("{}.in-addr.arpa.", want.join(".")));
        let mac = r.rewrite(
            "link/ether 1e:d0:04:d9:6f:7d brd ff:ff:ff:ff:ff:ff",
            TextMode::default(),
        );
        assert!(
            !mac.contains("1e:d0:04:d9:6f:7d") && mac.ends_with("brd ff:ff:ff:ff:ff:ff"),
            "{mac}"
        );
        let v6 = r.rewrite("inet6 fd00:10:244::3/64 scope global", TextMode::default());
        assert!(
            !v6.contains("fd00:10:244::3") && v6.contains("/64 scope global"),
            "{v6}"
        );
        let port = r.rewrite("--to-destination 10.244.0.3:53", TextMode::default());
        assert_eq!(port, format!("--to-destination {ip}:53"));
        let net = r.rewrite("10.244.0.0/16 dev cni0", TextMode::default());
        assert!(net.contains(".0.0/16"), "{net}");
        let json = r.rewrite(
            r#""cidr: 10.244.0.3\n""#,
            TextMode {
                json: true,
                hex_addrs: false,
            },
        );
        assert_eq!(json, format!(r#""cidr: {ip}\n""#));
        let hex = r.rewrite(
            "TCP  0AF40003:0050 rr",
            TextMode {
                json: false,
                hex_addrs: true,
            },
        );
        let h = u32::from(ip.parse::<Ipv4Addr>().expect("ip"));
        assert_eq!(hex, format!("TCP  {h:08X}:0050 rr"));
    }

    #[test]
    fn names_are_whole_tokens() {
        let mut r = rewriter(&["web", "06c23234-f1a6-4d05-a1eb-e87e95f84861"]);
        let out = r.rewrite("webhook web web-x web.shop", TextMode::default());
        let web = crate::names::replacement(&Key::from_bytes([9; 32]), "web");
        assert_eq!(out, format!("webhook {web} {web}-x {web}.shop"));
        let cg = r.rewrite(
            "/kubepods.slice/kubepods-besteffort-pod06c23234_f1a6_4d05_a1eb_e87e95f84861.slice",
            TextMode::default(),
        );
        assert!(!cg.contains("06c23234"), "{cg}");
    }
}
