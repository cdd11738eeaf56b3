//! `ip addr`, `ip -d addr`, `ip link`, `ip -d link` text.
//!
//! Layout (iproute2 `ipaddress.c`): a header line `N: name[@peer]: <FLAGS> key value …`
//! at column 0, then 4-space-indented lines: `link/TYPE …`, with `-d` one detail line
//! per kind (`veth`, `bridge …`, `vxlan id …`, `bridge_slave …`), `altname X`,
//! `inet …` / `inet6 …`, and 7-space `valid_lft … preferred_lft …` lines that belong
//! to the address above them.

use std::net::IpAddr;

use super::{Addr, BridgePort, Family, Lifetime, Link, Links, Vxlan, parse_prefix};
use crate::Unparsed;

/// Parses `ip [-d] addr` or `ip [-d] link` text. Never fails; lines not understood are kept.
pub fn parse_addr(text: &str) -> Links {
    // `ip -j addr` / `ip -j link` in a file named like the text form.
    if text.trim_start().starts_with('[') {
        return super::json::parse_json_links(text).unwrap_or_else(|e| Links {
            links: Vec::new(),
            unparsed: vec![Unparsed::new(
                1,
                text.lines().next().unwrap_or(""),
                format!("ip -j output that does not parse: {e}"),
            )],
        });
    }
    let mut out = Links::default();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end();
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') && !line.starts_with('\t') {
            match parse_header(line, line_no).or_else(|| parse_brief(line, line_no)) {
                Some(link) => out.links.push(link),
                None => out
                    .unparsed
                    .push(Unparsed::new(line_no, raw, "not an interface header")),
            }
            continue;
        }
        let Some(link) = out.links.last_mut() else {
            out.unparsed.push(Unparsed::new(
                line_no,
                raw,
                "indented line before any interface",
            ));
            continue;
        };
        if let Err(reason) = parse_body_line(link, line.trim_start(), line_no) {
            out.unparsed.push(Unparsed::new(line_no, raw, reason));
        }
    }
    out
}

/// One `ip -br addr` (`v19-va@if2  UP  10.79.0.1/24 fe80::…/64`) or `ip -br link`
/// (`cni0  UNKNOWN  c2:9c:…:81 <BROADCAST,MULTICAST,UP,LOWER_UP>`) line. The brief form
/// prints no interface index: [`Link::index`] is 0.
fn parse_brief(line: &str, line_no: usize) -> Option<Link> {
    const STATES: [&str; 7] = [
        "UP",
        "DOWN",
        "UNKNOWN",
        "LOWERLAYERDOWN",
        "DORMANT",
        "NOTPRESENT",
        "TESTING",
    ];
    let mut words = line.split_whitespace();
    let full_name = words.next()?;
    let state = words.next()?;
    if !STATES.contains(&state) {
        return None;
    }
    let (name, peer_index, parent) = match full_name.split_once('@') {
        Some((n, p)) => match p.strip_prefix("if").and_then(|d| d.parse::<u32>().ok()) {
            Some(pi) => (n, Some(pi), None),
            None if p == "NONE" => (n, None, None),
            None => (n, None, Some(p.to_string())),
        },
        None => (full_name, None, None),
    };
    let mut link = Link {
        line: Some(line_no),
        name: name.to_string(),
        peer_index,
        parent,
        state: Some(state.to_string()),
        ..Link::default()
    };
    for w in words {
        if let Some(flags) = w.strip_prefix('<').and_then(|f| f.strip_suffix('>')) {
            link.flags = flags
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect();
        } else if let Some((address, prefix_len)) = parse_prefix(w).filter(|_| w.contains('/')) {
            link.addrs.push(Addr {
                line: Some(line_no),
                family: Family::of(&address),
                address,
                prefix_len,
                peer: None,
                broadcast: None,
                scope: None,
                label: None,
                flags: Vec::new(),
                valid_lft: None,
                preferred_lft: None,
            });
        } else if w.len() == 17 && w.bytes().filter(|b| *b == b':').count() == 5 {
            link.mac = Some(w.to_string());
        } else {
            return None;
        }
    }
    Some(link)
}

/// `10: eth0@if11: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue master cni0 state UP group default qlen 1000`
fn parse_header(line: &str, line_no: usize) -> Option<Link> {
    let (idx, rest) = line.split_once(": ")?;
    let index: u32 = idx.trim().parse().ok()?;
    let flags_start = rest.find(": <")?;
    let full_name = &rest[..flags_start];
    let after = &rest[flags_start + 3..];
    let (flags, attrs) = after.split_once('>')?;
    let (name, peer_index, parent) = match full_name.split_once('@') {
        Some((n, p)) => match p.strip_prefix("if").and_then(|d| d.parse::<u32>().ok()) {
            Some(pi) => (n, Some(pi), None),
            None if p == "NONE" => (n, None, None),
            None => (n, None, Some(p.to_string())),
        },
        None => (full_name, None, None),
    };
    if name.is_empty() {
        return None;
    }
    let mut link = Link {
        line: Some(line_no),
        index,
        name: name.to_string(),
        peer_index,
        parent,
        flags: flags
            .split(',')
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect(),
        ..Link::default()
    };
    let toks: Vec<&str> = attrs.split_whitespace().collect();
    let mut i = 0;
    while i < toks.len() {
        let val = toks.get(i + 1).copied();
        match (toks[i], val) {
            ("mtu", Some(v)) => link.mtu = v.parse().ok(),
            ("qdisc", Some(v)) => link.qdisc = Some(v.to_string()),
            ("master", Some(v)) => link.master = Some(v.to_string()),
            ("state", Some(v)) => link.state = Some(v.to_string()),
            ("group", Some(v)) => link.group = Some(v.to_string()),
            ("qlen", Some(v)) => link.qlen = v.parse().ok(),
            // `mode DEFAULT`, `link-netnsid` on some old versions, …: skip key and value.
            (_, Some(_)) => {}
            (_, None) => {}
        }
        i += 2;
    }
    Some(link)
}

fn parse_body_line(link: &mut Link, line: &str, line_no: usize) -> Result<(), &'static str> {
    let toks: Vec<&str> = line.split_whitespace().collect();
    let Some(&first) = toks.first() else {
        return Ok(());
    };
    if let Some(lt) = first.strip_prefix("link/") {
        link.link_type = Some(lt.to_string());
        let mut i = 1;
        if toks.get(1).is_some_and(|t| t.contains(':')) {
            link.mac = Some(toks[1].to_string());
            i = 2;
        }
        while i < toks.len() {
            match (toks[i], toks.get(i + 1)) {
                ("link-netnsid", Some(v)) => {
                    link.link_netnsid = v.parse().ok();
                    i += 1;
                }
                ("link-netns", Some(v)) => {
                    link.link_netns = Some(v.to_string());
                    i += 1;
                }
                _ => {}
            }
            i += 1;
        }
        return Ok(());
    }
    match first {
        "inet" | "inet6" => {
            let addr = parse_addr_line(&toks, line_no).ok_or("malformed address line")?;
            link.addrs.push(addr);
            Ok(())
        }
        "valid_lft" => {
            let addr = link
                .addrs
                .last_mut()
                .ok_or("lifetime line without an address")?;
            let mut i = 0;
            while i + 1 < toks.len() {
                let lt = parse_lifetime(toks[i + 1]);
                match toks[i] {
                    "valid_lft" => addr.valid_lft = lt,
                    "preferred_lft" => addr.preferred_lft = lt,
                    _ => {}
                }
                i += 2;
            }
            Ok(())
        }
        "altname" | "prop" => Ok(()),
        kind if is_kind_word(kind) => {
            apply_detail(link, &toks);
            Ok(())
        }
        _ => Err("unknown interface detail line"),
    }
}

fn is_kind_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && s.as_bytes()[0].is_ascii_lowercase()
}

/// A `-d` detail line: `veth`, `bridge …`, `vxlan id 1 local … dstport 8472 …`, `bridge_slave state forwarding … hairpin off …`.
fn apply_detail(link: &mut Link, toks: &[&str]) {
    let kind = toks[0];
    if kind.ends_with("_slave") {
        link.slave_kind = Some(kind.to_string());
        if kind == "bridge_slave" {
            let mut bp = BridgePort::default();
            for w in toks.windows(2) {
                match w[0] {
                    "state" => bp.state = Some(w[1].to_string()),
                    "hairpin" => bp.hairpin = Some(w[1] == "on"),
                    _ => {}
                }
            }
            link.bridge_port = Some(bp);
        }
        return;
    }
    // Only the first non-slave line names the kind; later ones (rare) are extra info.
    if link.kind.is_none() {
        link.kind = Some(kind.to_string());
    }
    if kind == "vxlan" {
        let mut vx = Vxlan::default();
        let mut i = 1;
        while i < toks.len() {
            let v = toks.get(i + 1).copied();
            match (toks[i], v) {
                ("id", Some(v)) => vx.id = v.parse().ok(),
                ("local", Some(v)) => vx.local = v.parse().ok(),
                ("remote" | "group", Some(v)) => vx.remote = v.parse().ok(),
                ("dev", Some(v)) => vx.dev = Some(v.to_string()),
                ("dstport", Some(v)) => vx.dstport = v.parse().ok(),
                ("nolearning", _) => {
                    vx.learning = Some(false);
                    i += 1;
                    continue;
                }
                ("learning", _) => {
                    vx.learning = Some(true);
                    i += 1;
                    continue;
                }
                ("srcport", _) => {
                    i += 3;
                    continue;
                }
                _ => {
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        link.vxlan = Some(vx);
    }
}

/// `inet 10.244.3.4/24 brd 10.244.3.255 scope global eth0`, `inet 10.0.0.1 peer 10.0.0.2/32 scope global tun0`,
/// `inet6 fe80::1/64 scope link nodad`.
fn parse_addr_line(toks: &[&str], line_no: usize) -> Option<Addr> {
    let family = if toks[0] == "inet" {
        Family::Inet
    } else {
        Family::Inet6
    };
    let (address, prefix_len) = parse_prefix(toks.get(1)?)?;
    if Family::of(&address) != family {
        return None;
    }
    let mut addr = Addr {
        line: Some(line_no),
        family,
        address,
        prefix_len,
        peer: None,
        broadcast: None,
        scope: None,
        label: None,
        flags: Vec::new(),
        valid_lft: None,
        preferred_lft: None,
    };
    let mut i = 2;
    while i < toks.len() {
        let v = toks.get(i + 1).copied();
        match (toks[i], v) {
            ("peer", Some(v)) => {
                let (p, l) = parse_prefix(v)?;
                addr.peer = Some(p);
                if v.contains('/') {
                    addr.prefix_len = l;
                }
                i += 2;
            }
            ("brd", Some(v)) => {
                addr.broadcast = v.parse::<IpAddr>().ok();
                i += 2;
            }
            ("scope", Some(v)) => {
                addr.scope = Some(v.to_string());
                i += 2;
            }
            ("metric", Some(_)) => i += 2,
            (t, _) => {
                // The IPv4 label is the last token and is an interface name; the
                // rest are lower-case flag words (`secondary`, `dynamic`, …).
                if family == Family::Inet && i + 1 == toks.len() && addr.scope.is_some() {
                    addr.label = Some(t.to_string());
                } else {
                    addr.flags.push(t.to_string());
                }
                i += 1;
            }
        }
    }
    Some(addr)
}

fn parse_lifetime(s: &str) -> Option<Lifetime> {
    if s == "forever" {
        return Some(Lifetime::Forever);
    }
    s.strip_suffix("sec")
        .and_then(|n| n.parse().ok())
        .map(Lifetime::Seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_with_peer_and_master() {
        let l = parse_addr(
            "11: veth4f7342d@if10: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue master cni0 state UP group default\n    link/ether e6:4d:7b:6f:56:4c brd ff:ff:ff:ff:ff:ff link-netnsid 2\n",
        );
        assert!(l.unparsed.is_empty());
        let v = &l.links[0];
        assert_eq!(
            (v.index, v.name.as_str(), v.peer_index),
            (11, "veth4f7342d", Some(10))
        );
        assert_eq!(v.master.as_deref(), Some("cni0"));
        assert_eq!(v.link_netnsid, Some(2));
        assert!(v.is_veth());
    }

    #[test]
    fn garbage_is_kept_not_dropped() {
        let l = parse_addr("hello\n    inet 1.2.3.4/8\n1: x: <UP> mtu 1\n    ???\n");
        assert_eq!(l.links.len(), 1);
        let lines: Vec<usize> = l.unparsed.iter().map(|u| u.line).collect();
        assert_eq!(lines, vec![1, 2, 4]);
    }

    #[test]
    fn vlan_parent_and_peer_address() {
        let l = parse_addr(
            "5: eth0.100@eth0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN\n    inet 10.0.0.1 peer 10.0.0.2/32 scope global eth0.100\n       valid_lft 300sec preferred_lft 0sec\n",
        );
        let v = &l.links[0];
        assert_eq!(v.parent.as_deref(), Some("eth0"));
        assert_eq!(v.addrs[0].peer, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(v.addrs[0].label.as_deref(), Some("eth0.100"));
        assert_eq!(v.addrs[0].valid_lft, Some(Lifetime::Seconds(300)));
    }
}
