//! `ip route` (incl. `show table all`, `-6`), `ip rule` and `ip neigh` text.
//!
//! A route line is `[TYPE] DST key value … [flag …]` (iproute2 `iproute.c`); a
//! multipath route continues on tab-indented `nexthop …` lines. Unknown tokens are
//! kept in `extra` rather than failing the line.

use std::net::IpAddr;

use super::{Family, Neigh, Neighbours, Nexthop, Route, Routes, Rule, Rules, parse_prefix};
use crate::Unparsed;

const ROUTE_TYPES: &[&str] = &[
    "unicast",
    "local",
    "broadcast",
    "multicast",
    "blackhole",
    "unreachable",
    "prohibit",
    "throw",
    "nat",
    "anycast",
];

const NH_FLAGS: &[&str] = &[
    "onlink",
    "linkdown",
    "dead",
    "pervasive",
    "offload",
    "trap",
    "rt_offload",
    "rt_trap",
    "notify",
];

/// Parses `ip route` / `ip -6 route` / `ip route show table all` text.
pub fn parse_routes(text: &str) -> Routes {
    // `ip -j route` in a file named like the text form.
    if text.trim_start().starts_with('[') {
        return super::json::parse_json_routes(text).unwrap_or_else(|e| Routes {
            routes: Vec::new(),
            unparsed: vec![Unparsed::new(
                1,
                text.lines().next().unwrap_or(""),
                format!("ip -j output that does not parse: {e}"),
            )],
        });
    }
    let mut out = Routes::default();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end();
        if line.trim().is_empty() {
            continue;
        }
        let indented = line.starts_with(char::is_whitespace);
        let toks: Vec<&str> = line.split_whitespace().collect();
        if indented || toks[0] == "nexthop" {
            match (out.routes.last_mut(), toks[0]) {
                (Some(r), "nexthop") => r.nexthops.push(parse_nexthop(&toks[1..], line_no)),
                _ => out.unparsed.push(Unparsed::new(
                    line_no,
                    raw,
                    "continuation line without a route",
                )),
            }
            continue;
        }
        match parse_route_line(&toks, line_no) {
            Some(r) => out.routes.push(r),
            None => out
                .unparsed
                .push(Unparsed::new(line_no, raw, "not a route")),
        }
    }
    out
}

fn is_dst(s: &str) -> bool {
    s == "default" || parse_prefix(s).is_some()
}

fn parse_route_line(toks: &[&str], line_no: usize) -> Option<Route> {
    let mut i = 0;
    let mut route = Route {
        line: Some(line_no),
        route_type: "unicast".into(),
        table: "main".into(),
        ..Route::default()
    };
    if ROUTE_TYPES.contains(&toks[0]) && toks.get(1).is_some_and(|t| is_dst(t)) {
        route.route_type = toks[0].to_string();
        i = 1;
    }
    let dst = toks.get(i)?;
    if !is_dst(dst) {
        return None;
    }
    route.dst = dst.to_string();
    i += 1;
    let mut family = parse_prefix(dst).map(|(a, _)| Family::of(&a));
    while i < toks.len() {
        let t = toks[i];
        let v = toks.get(i + 1).copied();
        let mut consumed = 2;
        match (t, v) {
            ("via", Some(v)) => {
                // `via inet6 fe80::1` (IPv4 route over an IPv6 next hop) names the family first.
                let (addr_tok, extra) = if (v == "inet" || v == "inet6") && i + 2 < toks.len() {
                    (toks[i + 2], 1)
                } else {
                    (v, 0)
                };
                route.gateway = addr_tok.parse().ok();
                if route.gateway.is_none() {
                    route.extra.push(format!("via {addr_tok}"));
                }
                consumed += extra;
            }
            ("dev", Some(v)) => route.dev = Some(v.to_string()),
            ("table", Some(v)) => route.table = v.to_string(),
            ("proto", Some(v)) => route.protocol = Some(v.to_string()),
            ("scope", Some(v)) => route.scope = Some(v.to_string()),
            ("src", Some(v)) => {
                route.src = v.parse().ok();
                if route.src.is_none() {
                    route.extra.push(format!("src {v}"));
                }
            }
            ("metric", Some(v)) => route.metric = v.parse().ok(),
            (f, _) if NH_FLAGS.contains(&f) => {
                route.flags.push(f.to_string());
                consumed = 1;
            }
            (
                "pref" | "mtu" | "advmss" | "expires" | "weight" | "realm" | "realms" | "from"
                | "tos" | "dsfield" | "hoplimit" | "initcwnd" | "initrwnd" | "quickack" | "rto_min"
                | "features" | "congctl" | "error" | "nhid" | "encap" | "lock",
                Some(v),
            ) => {
                route.extra.push(format!("{t} {v}"));
            }
            _ => {
                route.extra.push(t.to_string());
                consumed = 1;
            }
        }
        i += consumed;
    }
    if family.is_none() {
        family = route.gateway.or(route.src).map(|a| Family::of(&a));
    }
    route.family = family;
    Some(route)
}

fn parse_nexthop(toks: &[&str], line_no: usize) -> Nexthop {
    let mut nh = Nexthop {
        line: Some(line_no),
        ..Nexthop::default()
    };
    let mut i = 0;
    while i < toks.len() {
        match (toks[i], toks.get(i + 1)) {
            ("via", Some(v)) => nh.gateway = v.parse().ok(),
            ("dev", Some(v)) => nh.dev = Some(v.to_string()),
            ("weight", Some(v)) => nh.weight = v.parse().ok(),
            (f, _) => {
                nh.flags.push(f.to_string());
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    nh
}

/// Parses `ip rule` / `ip -6 rule` text (`100:\tfrom 10.244.3.0/24 lookup 100`).
pub fn parse_rules(text: &str) -> Rules {
    let mut out = Rules::default();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let Some((prio, rest)) = raw.split_once(':') else {
            out.unparsed
                .push(Unparsed::new(line_no, raw, "no `PRIORITY:` prefix"));
            continue;
        };
        let Ok(priority) = prio.trim().parse::<u32>() else {
            out.unparsed
                .push(Unparsed::new(line_no, raw, "priority is not a number"));
            continue;
        };
        let mut rule = Rule {
            line: line_no,
            priority,
            ..Rule::default()
        };
        let toks: Vec<&str> = rest.split_whitespace().collect();
        let mut j = 0;
        while j < toks.len() {
            let v = toks.get(j + 1).map(|s| s.to_string());
            match (toks[j], v) {
                ("not", _) => {
                    rule.not = true;
                    j += 1;
                    continue;
                }
                ("from", Some(v)) => rule.from = Some(v),
                ("to", Some(v)) => rule.to = Some(v),
                ("iif", Some(v)) => rule.iif = Some(v),
                ("oif", Some(v)) => rule.oif = Some(v),
                ("fwmark", Some(v)) => rule.fwmark = Some(v),
                ("lookup" | "table", Some(v)) => rule.lookup = Some(v),
                ("goto", Some(v)) => rule.action = Some(format!("goto {v}")),
                (a @ ("unreachable" | "prohibit" | "blackhole" | "nop"), _) => {
                    rule.action = Some(a.to_string());
                    j += 1;
                    continue;
                }
                (t, _) => {
                    rule.extra.push(t.to_string());
                    j += 1;
                    continue;
                }
            }
            j += 2;
        }
        out.rules.push(rule);
    }
    out
}

/// Parses `ip neigh` text (`10.244.3.4 dev cni0 lladdr 32:2a:90:24:46:e6 REACHABLE`).
pub fn parse_neigh(text: &str) -> Neighbours {
    let mut out = Neighbours::default();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let toks: Vec<&str> = raw.split_whitespace().collect();
        let Ok(address) = toks[0].parse::<IpAddr>() else {
            out.unparsed.push(Unparsed::new(
                line_no,
                raw,
                "does not start with an address",
            ));
            continue;
        };
        let mut n = Neigh {
            line: line_no,
            address,
            dev: None,
            lladdr: None,
            states: Vec::new(),
            flags: Vec::new(),
        };
        let mut j = 1;
        while j < toks.len() {
            match (toks[j], toks.get(j + 1)) {
                ("dev", Some(v)) => {
                    n.dev = Some(v.to_string());
                    j += 2;
                }
                ("lladdr", Some(v)) => {
                    n.lladdr = Some(v.to_string());
                    j += 2;
                }
                (t, _) if t.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
                    n.states.push(t.to_string());
                    j += 1;
                }
                (t, _) => {
                    n.flags.push(t.to_string());
                    j += 1;
                }
            }
        }
        out.entries.push(n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_kinds() {
        let r = parse_routes(
            "blackhole 10.244.99.0/26 proto bird\nlocal 10.96.0.10 dev kube-ipvs0 table local proto kernel scope host src 10.96.0.10\ndefault proto static metric 100\n\tnexthop via 10.0.0.1 dev eth0 weight 1\n\tnexthop via 10.0.0.2 dev eth1 weight 1 dead\nwhat is this\n",
        );
        assert_eq!(r.routes.len(), 3);
        assert_eq!(r.routes[0].route_type, "blackhole");
        assert_eq!(r.routes[1].table, "local");
        assert_eq!(
            r.routes[1].dst_net(),
            Some(("10.96.0.10".parse().unwrap(), 32))
        );
        assert_eq!(r.routes[2].nexthops.len(), 2);
        assert_eq!(r.routes[2].nexthops[1].flags, vec!["dead"]);
        assert_eq!(r.unparsed.len(), 1);
        assert_eq!(r.unparsed[0].line, 6);
    }

    #[test]
    fn rules_and_neigh() {
        let r = parse_rules(
            "0:\tfrom all lookup local\n32765:\tnot from all fwmark 0x4000/0x4000 lookup 100\nx\n",
        );
        assert_eq!(r.rules[1].fwmark.as_deref(), Some("0x4000/0x4000"));
        assert!(r.rules[1].not);
        assert_eq!(r.unparsed.len(), 1);
        let n = parse_neigh("fe80::1 dev eth0 lladdr 52:54:00:12:35:02 router STALE\n");
        assert_eq!(n.entries[0].flags, vec!["router"]);
        assert_eq!(n.entries[0].states, vec!["STALE"]);
    }
}
